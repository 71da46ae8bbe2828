/**
 * Slack `message` and `app_mention` events, read into what an inbound message needs. Pure
 * functions: the channel adds the message id, the sender's name and hands it to the host.
 * https://docs.slack.dev/reference/events/message, https://docs.slack.dev/reference/events/app_mention
 */
import type { ChatType, InboundAttachment, InboundMessageInput } from "@beamclaw/core";
import { mentionedUserIds, unescapeSlackText } from "./text.js";

/** The bot's own identity in its workspace (from `auth.test`). */
export interface SlackBotIdentity {
  /** The bot user's id (`U...`): what `<@U...>` mentions of the bot carry. */
  userId: string;
  /** The bot's id (`B...`): what its own messages carry as `bot_id`. */
  botId?: string;
  /** The bot user's name (`user` of `auth.test`), shown for mentions of it inside a text. */
  name?: string;
  teamId?: string;
}

/** A file shared with a message (`files[]` of a `file_share` message). */
export interface SlackFile {
  id?: string;
  name?: string;
  title?: string;
  mimetype?: string;
  size?: number;
  url_private?: string;
  url_private_download?: string;
  /**
   * `check_file_info` on a stub (`{ id, file_access }`, no name or URL) that Slack sends
   * instead of the file (Slack Connect, some large files): `files.info` has the rest.
   */
  file_access?: string;
}

/**
 * A file of a message, in the order Slack lists them: the attachment when the event carries
 * the file whole, or only the id of a stub the channel looks up with `files.info`.
 */
export interface SlackFileRef {
  /** The file's id (`F...`), when the event has one. */
  id?: string;
  /** The file as an attachment; absent for a `check_file_info` stub. */
  attachment?: InboundAttachment;
}

/** The fields of a Slack message event this channel reads. */
export interface SlackMessageEvent {
  type: "message" | "app_mention";
  subtype?: string;
  channel: string;
  channel_type?: "im" | "mpim" | "channel" | "group" | "app_home";
  user: string;
  bot_id?: string;
  text?: string;
  ts: string;
  thread_ts?: string;
  parent_user_id?: string;
  client_msg_id?: string;
  files?: SlackFile[];
  hidden?: boolean;
}

/** A user's message, read from an event. */
export interface SlackMessage {
  event: SlackMessageEvent;
  /** `<channel>:<ts>`: how Slack itself identifies a message. */
  key: string;
  chatType: ChatType;
  threadId?: string;
  text: string;
  mentionsBot: boolean;
  /** Other users it mentions. */
  peers: string[];
  /** The thread's parent, for a reply in a thread. */
  replyTo?: { messageId: string; peerId?: string };
  /** The files the event carries whole, as attachments (their `url` needs the bot token). */
  attachments: InboundAttachment[];
  /** Every file of the message in order, `check_file_info` stubs included. */
  files: SlackFileRef[];
  /** Epoch ms, from `ts`. */
  timestamp?: number;
}

/** Message subtypes that are still a person writing (others are edits, joins, bots...). */
const USER_SUBTYPES = new Set(["file_share", "thread_broadcast", "me_message"]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function nonEmpty(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

function kindOf(mimetype: string | undefined): InboundAttachment["kind"] {
  if (mimetype?.startsWith("image/")) return "image";
  if (mimetype?.startsWith("audio/")) return "audio";
  if (mimetype?.startsWith("video/")) return "video";
  return "file";
}

/**
 * A Slack file object (of an event, or of `files.info`) as an attachment: `url` is
 * `url_private_download` (else `url_private`), which only the bot token fetches, hence
 * `privateUrl: true`. `undefined` for a file without a URL (a tombstone, a file hidden by the
 * plan's limits, a `check_file_info` stub).
 */
export function attachmentOfSlackFile(file: unknown): InboundAttachment | undefined {
  if (!isObject(file)) return undefined;
  const url = nonEmpty(file.url_private_download) ? file.url_private_download : file.url_private;
  if (!nonEmpty(url)) return undefined;
  const mimetype = nonEmpty(file.mimetype) ? file.mimetype : undefined;
  const attachment: InboundAttachment = { kind: kindOf(mimetype), url, privateUrl: true };
  if (mimetype !== undefined) attachment.mediaType = mimetype;
  if (nonEmpty(file.name)) attachment.name = file.name;
  if (typeof file.size === "number" && Number.isSafeInteger(file.size) && file.size >= 0) {
    attachment.size = file.size;
  }
  return attachment;
}

/** The files of a message, in order: attachments, and the ids of stubs to look up. */
function attachmentsOf(files: unknown): SlackFileRef[] {
  if (!Array.isArray(files)) return [];
  const out: SlackFileRef[] = [];
  for (const file of files) {
    if (!isObject(file)) continue;
    const id = nonEmpty(file.id) ? file.id : undefined;
    const attachment = attachmentOfSlackFile(file);
    if (attachment !== undefined) {
      out.push(id === undefined ? { attachment } : { id, attachment });
    } else if (file.file_access === "check_file_info" && id !== undefined) {
      out.push({ id });
    }
    // Anything else without a URL is a tombstone or a file hidden by the plan's limits.
  }
  return out;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The text without the bot's own mention markup: a leading `<@BOT> ` (how people address a
 * bot) is dropped; one inside the text becomes `@<bot name>` when the name is known.
 */
function withoutBotMention(text: string, bot: SlackBotIdentity): string {
  if (bot.userId === "") return text;
  const mention = `<@${escapeRegExp(bot.userId)}(?:\\|[^<>]*)?>`;
  const leading = new RegExp(`^(?:\\s*${mention}[\\s,:]*)+`);
  const stripped = text.replace(leading, "");
  return bot.name === undefined
    ? stripped
    : stripped.replace(new RegExp(mention, "g"), `@${bot.name}`);
}

function chatTypeOf(event: Record<string, unknown>, channel: string): ChatType {
  const type = event.channel_type;
  if (type === "im" || type === "app_home") return "direct";
  if (type === "channel" || type === "group" || type === "mpim") return "group";
  // app_mention events carry no channel_type: a DM conversation's id starts with D.
  return channel.startsWith("D") ? "direct" : "group";
}

/**
 * Reads a Slack event. A person's message (or mention of the bot) comes back as a
 * {@link SlackMessage}; anything else — other event types, edits and deletions, joins, bot
 * messages (the bot's own included) — as the reason it is not one.
 *
 * @example
 * ```ts
 * const read = readSlackMessage(body.event, { userId: "U0LAN0Z89" });
 * if (typeof read === "string") logger.debug("ignored", { reason: read });
 * ```
 */
export function readSlackMessage(event: unknown, bot: SlackBotIdentity): SlackMessage | string {
  if (!isObject(event)) return "the event is not an object";
  if (event.type !== "message" && event.type !== "app_mention")
    return `not a message event (${String(event.type)})`;
  if (event.subtype !== undefined && !USER_SUBTYPES.has(event.subtype as string))
    return `message subtype ${String(event.subtype)}`;
  if (event.hidden === true) return "a hidden message";
  if (event.bot_id !== undefined && event.bot_id !== null) return "a bot's message";
  if (!nonEmpty(event.user)) return "a message without a user";
  if (event.user === bot.userId) return "the bot's own message";
  if (!nonEmpty(event.channel) || !nonEmpty(event.ts)) return "a message without channel or ts";
  if (event.text !== undefined && typeof event.text !== "string") return "text is not a string";
  const channel = event.channel;
  const ts = event.ts;
  const rawText = (event.text as string | undefined) ?? "";
  const threadTs =
    nonEmpty(event.thread_ts) && event.thread_ts !== ts ? event.thread_ts : undefined;
  const parent = nonEmpty(event.parent_user_id) ? event.parent_user_id : undefined;
  const mentioned = mentionedUserIds(rawText);
  const files = attachmentsOf(event.files);
  const message: SlackMessage = {
    event: event as unknown as SlackMessageEvent,
    key: `${channel}:${ts}`,
    chatType: chatTypeOf(event, channel),
    text: unescapeSlackText(withoutBotMention(rawText, bot)),
    mentionsBot:
      event.type === "app_mention" ||
      mentioned.includes(bot.userId) ||
      (threadTs !== undefined && parent === bot.userId),
    peers: mentioned.filter((id) => id !== bot.userId),
    attachments: files.flatMap((file) => (file.attachment === undefined ? [] : [file.attachment])),
    files,
  };
  if (threadTs !== undefined) {
    message.threadId = threadTs;
    // Slack's only reply is a thread: the reply answers the thread's parent message.
    message.replyTo = { messageId: threadTs, ...(parent === undefined ? {} : { peerId: parent }) };
  }
  const seconds = Number(ts);
  if (Number.isFinite(seconds) && seconds > 0) message.timestamp = Math.round(seconds * 1000);
  return message;
}

/**
 * A read message as the host's inbound message, under `messageId`: without the sender's
 * name, the files and the raw event, which the channel adds (and enough for `ctx.admits`).
 */
export function inboundOf(message: SlackMessage, messageId: string): InboundMessageInput {
  const input: InboundMessageInput = {
    peer: { id: message.event.user },
    chatType: message.chatType,
    chatId: message.event.channel,
    text: message.text,
    messageId,
    mentions: { bot: message.mentionsBot, peers: message.peers },
  };
  if (message.threadId !== undefined) input.threadId = message.threadId;
  if (message.replyTo !== undefined) input.replyTo = message.replyTo;
  if (message.timestamp !== undefined) input.timestamp = message.timestamp;
  return input;
}
