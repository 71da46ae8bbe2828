/**
 * Telegram updates as inbound messages: chat types, forum topics, mentions of the bot,
 * replies, attachments, and the message ids the host deduplicates by.
 */
import type { InboundAttachment, InboundMessageInput } from "@beamclaw/core";
import type { Message, MessageEntity, Update, User } from "grammy/types";

/** The bot as `getMe` described it. */
export interface TelegramBotIdentity {
  id: number;
  /** Without the `@`. */
  username: string | undefined;
}

/** A file of an inbound message, as Telegram describes it (downloadable with `getFile`). */
export interface TelegramFileRef {
  fileId: string;
  fileUniqueId: string;
  kind: InboundAttachment["kind"];
  mediaType?: string;
  name?: string;
  /** Bytes, when Telegram says. */
  size?: number;
}

/** An update turned into what `ctx.receive` takes, and the files still to resolve. */
export interface NormalizedMessage {
  input: InboundMessageInput;
  files: TelegramFileRef[];
}

/** The update kinds the channel asks Telegram for (`allowed_updates`). */
export const ALLOWED_UPDATES = ["message", "channel_post"] as const;

/**
 * The channel's id of a Telegram message: `<chat_id>:<message_id>`. Telegram numbers messages
 * per chat, so the chat is part of the id (the host suppresses duplicates by it).
 *
 * @example
 * ```ts
 * telegramMessageId(-1001234567890, 42); // "-1001234567890:42"
 * ```
 */
export function telegramMessageId(chatId: number | string, messageId: number): string {
  return `${chatId}:${messageId}`;
}

/**
 * The chat and message of an id made by {@link telegramMessageId}, or `undefined` when it is
 * not one.
 *
 * @example
 * ```ts
 * parseTelegramMessageId("-1001234567890:42"); // { chatId: "-1001234567890", messageId: 42 }
 * ```
 */
export function parseTelegramMessageId(
  id: string,
): { chatId: string; messageId: number } | undefined {
  const match = /^(-?\d{1,20}|@\w{4,64}):(\d{1,12})$/.exec(id);
  if (match === null) return undefined;
  return { chatId: match[1]!, messageId: Number(match[2]) };
}

/** A field of an update that is not of the type the Bot API documents. */
export interface MalformedField {
  /** Where it is, e.g. `message.chat.id`. */
  field: string;
  problem: string;
}

type Shape = Record<string, unknown>;

function isShape(value: unknown): value is Shape {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks the fields of a Bot API object that the channel reads. `spec` maps a key to its
 * type; a key ending in `?` is optional (absent is fine; `null` is not: the Bot API leaves
 * out what it does not send).
 */
function check(
  value: unknown,
  path: string,
  spec: Record<string, "integer" | "string" | "boolean" | "object" | "array">,
): MalformedField | undefined {
  if (!isShape(value)) return { field: path, problem: "must be an object" };
  for (const [key, type] of Object.entries(spec)) {
    const optional = key.endsWith("?");
    const name = optional ? key.slice(0, -1) : key;
    const field = value[name];
    if (field === undefined) {
      if (optional) continue;
      return { field: `${path}.${name}`, problem: "is missing" };
    }
    const ok =
      type === "integer"
        ? Number.isSafeInteger(field)
        : type === "object"
          ? isShape(field)
          : type === "array"
            ? Array.isArray(field)
            : typeof field === type;
    if (!ok) return { field: `${path}.${name}`, problem: `must be ${article(type)}` };
  }
  return undefined;
}

function article(type: string): string {
  return type === "integer" || type === "object" || type === "array" ? `an ${type}` : `a ${type}`;
}

const USER_SPEC = {
  id: "integer",
  "first_name?": "string",
  "last_name?": "string",
  "username?": "string",
} as const;
const CHAT_SPEC = {
  id: "integer",
  type: "string",
  "title?": "string",
  "username?": "string",
} as const;
const FILE_SPEC = {
  file_id: "string",
  file_unique_id: "string",
  "file_size?": "integer",
  "mime_type?": "string",
  "file_name?": "string",
} as const;

function checkEntities(value: unknown, path: string): MalformedField | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) return { field: path, problem: "must be an array" };
  for (const [i, entity] of value.entries()) {
    const at = `${path}.${i}`;
    const wrong =
      check(entity, at, {
        type: "string",
        offset: "integer",
        length: "integer",
        "user?": "object",
      }) ??
      // A text_mention names its user; other entities have none.
      ((entity as Shape).type === "text_mention" || (entity as Shape).user !== undefined
        ? check((entity as Shape).user, `${at}.user`, USER_SPEC)
        : undefined);
    if (wrong !== undefined) return wrong;
  }
  return undefined;
}

/** The author fields of a message (`from`, `sender_chat`) and where it is (`chat`). */
function checkOrigin(message: Shape, path: string): MalformedField | undefined {
  const chat = check(message.chat, `${path}.chat`, CHAT_SPEC);
  if (chat !== undefined) return chat;
  if (message.from !== undefined) {
    const from = check(message.from, `${path}.from`, USER_SPEC);
    if (from !== undefined) return from;
  }
  if (message.sender_chat !== undefined) {
    const sender = check(message.sender_chat, `${path}.sender_chat`, CHAT_SPEC);
    if (sender !== undefined) return sender;
  }
  return undefined;
}

/**
 * What is wrong with a `message` or `channel_post` of an update, or `undefined` when every
 * field the channel reads has the type the Bot API documents (fields it does not read are
 * not looked at). A message with a wrong field is not handed over: the channel could only
 * guess who wrote it, where, or what.
 *
 * @example
 * ```ts
 * malformedMessageField({ message_id: 1, date: 0, chat: null }, "message");
 * // { field: "message.chat", problem: "must be an object" }
 * ```
 */
export function malformedMessageField(message: unknown, path: string): MalformedField | undefined {
  const top = check(message, path, {
    message_id: "integer",
    date: "integer",
    "text?": "string",
    "caption?": "string",
    "message_thread_id?": "integer",
    "is_topic_message?": "boolean",
    "reply_to_message?": "object",
    "quote?": "object",
    "photo?": "array",
    "document?": "object",
    "audio?": "object",
    "voice?": "object",
    "video?": "object",
    "video_note?": "object",
    "animation?": "object",
    "sticker?": "object",
  });
  if (top !== undefined) return top;
  const m = message as Shape;
  const wrong =
    checkOrigin(m, path) ??
    checkEntities(m.entities, `${path}.entities`) ??
    checkEntities(m.caption_entities, `${path}.caption_entities`);
  if (wrong !== undefined) return wrong;
  if (m.quote !== undefined) {
    const quote = check(m.quote, `${path}.quote`, { "text?": "string" });
    if (quote !== undefined) return quote;
  }
  if (m.reply_to_message !== undefined) {
    const at = `${path}.reply_to_message`;
    const reply = m.reply_to_message as Shape;
    const replyWrong =
      check(reply, at, {
        message_id: "integer",
        "text?": "string",
        "caption?": "string",
        "forum_topic_created?": "object",
      }) ?? checkOrigin(reply, at);
    if (replyWrong !== undefined) return replyWrong;
  }
  if (m.photo !== undefined) {
    for (const [i, size] of (m.photo as unknown[]).entries()) {
      const photo = check(size, `${path}.photo.${i}`, FILE_SPEC);
      if (photo !== undefined) return photo;
    }
  }
  for (const kind of ["document", "audio", "voice", "video", "video_note", "animation"]) {
    if (m[kind] === undefined) continue;
    const file = check(m[kind], `${path}.${kind}`, { ...FILE_SPEC, "title?": "string" });
    if (file !== undefined) return file;
  }
  if (m.sticker !== undefined) {
    const sticker = check(m.sticker, `${path}.sticker`, {
      ...FILE_SPEC,
      "is_animated?": "boolean",
      "is_video?": "boolean",
    });
    if (sticker !== undefined) return sticker;
  }
  return undefined;
}

/**
 * The message an update carries for the host: a new message or a channel post. Edits
 * (`edited_message`, `edited_channel_post`) and every other update kind give `undefined`:
 * the host answered the original already, and an edit would only be suppressed as its
 * duplicate.
 */
export function messageOfUpdate(update: Update): Message | undefined {
  return update.message ?? update.channel_post;
}

function nameOf(user: User): string | undefined {
  const name = [user.first_name, user.last_name].filter(Boolean).join(" ").trim();
  return name.length > 0 ? name : user.username;
}

/** Who wrote `message`: anonymous group admins and channels write as a chat, not a user. */
function peerOf(message: Message): { id: string; name?: string } {
  const chat = message.sender_chat;
  if (chat !== undefined) {
    const name = "title" in chat ? chat.title : chat.username;
    return { id: String(chat.id), ...(name === undefined ? {} : { name }) };
  }
  if (message.from !== undefined) {
    const name = nameOf(message.from);
    return { id: String(message.from.id), ...(name === undefined ? {} : { name }) };
  }
  const { chat: where } = message;
  const title = "title" in where ? where.title : undefined;
  return { id: String(where.id), ...(title === undefined ? {} : { name: title }) };
}

/** Telegram's own filler replies: a message in a forum topic "replies" to the topic's start. */
function isTopicStart(message: Message, reply: Message): boolean {
  return (
    reply.forum_topic_created !== undefined ||
    (message.is_topic_message === true && reply.message_id === message.message_thread_id)
  );
}

function filesOf(message: Message): TelegramFileRef[] {
  const files: TelegramFileRef[] = [];
  const add = (
    file: { file_id: string; file_unique_id: string; file_size?: number },
    kind: TelegramFileRef["kind"],
    mediaType?: string,
    name?: string,
  ) => {
    files.push({
      fileId: file.file_id,
      fileUniqueId: file.file_unique_id,
      kind,
      ...(mediaType === undefined ? {} : { mediaType }),
      ...(name === undefined ? {} : { name }),
      ...(file.file_size === undefined ? {} : { size: file.file_size }),
    });
  };
  const largest = message.photo?.at(-1);
  // Telegram re-encodes photos as JPEG.
  if (largest !== undefined) add(largest, "image", "image/jpeg");
  const { document, audio, voice, video, video_note, animation, sticker } = message;
  if (animation !== undefined) {
    add(animation, "video", animation.mime_type, animation.file_name);
  } else if (document !== undefined) {
    const image = document.mime_type?.startsWith("image/") === true;
    add(document, image ? "image" : "file", document.mime_type, document.file_name);
  }
  if (audio !== undefined) add(audio, "audio", audio.mime_type, audio.file_name ?? audio.title);
  if (voice !== undefined) add(voice, "audio", voice.mime_type ?? "audio/ogg");
  if (video !== undefined) add(video, "video", video.mime_type, video.file_name);
  if (video_note !== undefined) add(video_note, "video", "video/mp4");
  if (sticker !== undefined && !sticker.is_animated && !sticker.is_video) {
    add(sticker, "image", "image/webp");
  }
  return files;
}

function mentionsOf(
  message: Message,
  text: string,
  entities: readonly MessageEntity[],
  bot: TelegramBotIdentity,
): { bot: boolean; peers: string[] } {
  const handle = bot.username === undefined ? undefined : `@${bot.username.toLowerCase()}`;
  let mentionsBot = false;
  const peers = new Set<string>();
  for (const entity of entities) {
    // Offsets and lengths are UTF-16 code units, as JavaScript strings index.
    const span = text.slice(entity.offset, entity.offset + entity.length);
    if (entity.type === "mention" && handle !== undefined && span.toLowerCase() === handle) {
      mentionsBot = true;
    } else if (entity.type === "text_mention") {
      if (entity.user.id === bot.id) mentionsBot = true;
      else peers.add(String(entity.user.id));
    } else if (
      entity.type === "bot_command" &&
      handle !== undefined &&
      span.toLowerCase().endsWith(handle)
    ) {
      mentionsBot = true; // /command@thisbot
    }
  }
  const reply = message.reply_to_message;
  if (reply !== undefined && !isTopicStart(message, reply) && reply.from?.id === bot.id) {
    mentionsBot = true;
  }
  return { bot: mentionsBot, peers: [...peers] };
}

/**
 * Turns a Telegram message into an inbound message for `ctx.receive`, or `undefined` when it
 * is not one for the host: the bot's own message, or a service message with neither text nor
 * a file (a member joined, a topic was created, a pin).
 *
 * - private chats are `direct` (the chat id is the user's id); groups, supergroups and
 *   channels are `group`;
 * - a message in a forum topic (`is_topic_message`) gets the topic's `message_thread_id` as
 *   `threadId`; replies in a plain group do not open threads;
 * - `mentions.bot` is an `@botname` mention, a `text_mention` of the bot, a
 *   `/command@botname`, or a reply to one of the bot's messages; `mentions.peers` are the
 *   user ids of other `text_mention`s (an `@username` names no id);
 * - `messageId` is `<chat_id>:<message_id>`, the same on every redelivery.
 */
export function normalizeMessage(
  message: Message,
  bot: TelegramBotIdentity,
): NormalizedMessage | undefined {
  if (message.from?.id === bot.id) return undefined;
  const text = message.text ?? message.caption ?? "";
  const entities = message.entities ?? message.caption_entities ?? [];
  const files = filesOf(message);
  if (text.length === 0 && files.length === 0) return undefined;
  const { chat } = message;
  const peer = peerOf(message);
  const input: InboundMessageInput = {
    peer,
    chatType: chat.type === "private" ? "direct" : "group",
    chatId: String(chat.id),
    text,
    messageId: telegramMessageId(chat.id, message.message_id),
    mentions: mentionsOf(message, text, entities, bot),
    timestamp: message.date * 1000,
  };
  if (message.is_topic_message === true && message.message_thread_id !== undefined) {
    input.threadId = String(message.message_thread_id);
  }
  const reply = message.reply_to_message;
  if (reply !== undefined && !isTopicStart(message, reply)) {
    const quoted = message.quote?.text ?? reply.text ?? reply.caption;
    const author = reply.sender_chat ?? reply.from;
    input.replyTo = {
      messageId: telegramMessageId(reply.chat.id, reply.message_id),
      ...(quoted === undefined ? {} : { text: quoted }),
      ...(author === undefined ? {} : { peerId: String(author.id) }),
    };
  }
  return { input, files };
}
