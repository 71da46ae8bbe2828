/**
 * MESSAGE_CREATE -> the host's inbound message: who wrote it, where replies go (guild
 * channel, thread under its parent, or the DM with its author), whom it mentions, what it
 * replies to, its files.
 */
import type { InboundAttachment, InboundMessageInput } from "@beamclaw/core";
import { type DiscordDirectory, isThreadType, type KnownChannel } from "./directory.js";

/** Message types that carry something a person wrote (DEFAULT, REPLY). */
const USER_MESSAGE_TYPES: ReadonlySet<number> = new Set([0, 19]);
const REPLY = 19;
/** `message_reference.type` of a forward: the forwarded message is in `message_snapshots`. */
const FORWARD = 1;

/** What {@link toInbound} needs besides the event. */
export interface InboundOptions {
  directory: DiscordDirectory;
  /** Messages of other bots and of webhooks are ignored unless this is true. */
  allowBots: boolean;
  /** Looks a channel up (REST) when the directory does not know it; `undefined` when that failed. */
  lookupChannel(channelId: string): Promise<KnownChannel | undefined>;
}

/** A message for the host, or why there is none. */
export type InboundDecision =
  | { kind: "message"; input: InboundMessageInput }
  | { kind: "skip"; reason: string };

type Json = Record<string, unknown>;

function record(value: unknown): Json | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Json)
    : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

/** A guild member's nickname, else the user's display name, else the username. */
function displayName(user: Json | undefined, member: Json | undefined): string | undefined {
  return text(member?.nick) ?? text(user?.global_name) ?? text(user?.username);
}

function attachmentKind(mediaType: string | undefined): InboundAttachment["kind"] {
  if (mediaType?.startsWith("image/")) return "image";
  if (mediaType?.startsWith("audio/")) return "audio";
  if (mediaType?.startsWith("video/")) return "video";
  return "file";
}

/**
 * A message's files, described: `kind` from the content type, the CDN `url` (marked
 * `privateUrl`: it expires), `mediaType`, `name`, `size`. The channel downloads the images and
 * PDFs among them afterwards.
 */
export function discordAttachments(raw: unknown): InboundAttachment[] {
  if (!Array.isArray(raw)) return [];
  const out: InboundAttachment[] = [];
  for (const item of raw) {
    const attachment = record(item);
    const url = text(attachment?.url);
    if (attachment === undefined || url === undefined) continue;
    const mediaType = text(attachment.content_type);
    // Discord's CDN links are signed and expire (about a day): never for a model to fetch.
    const file: InboundAttachment = { kind: attachmentKind(mediaType), url, privateUrl: true };
    if (mediaType !== undefined) file.mediaType = mediaType;
    const name = text(attachment.filename);
    if (name !== undefined) file.name = name;
    if (typeof attachment.size === "number") file.size = attachment.size;
    out.push(file);
  }
  return out;
}

/**
 * The message a forward carries (`message_snapshots[0].message`: a subset of its fields, no
 * author), or `undefined` when `message` is not a forward.
 */
function forwardedOf(message: Json): Json | undefined {
  if (record(message.message_reference)?.type !== FORWARD) return undefined;
  const snapshots = message.message_snapshots;
  return Array.isArray(snapshots) ? record(record(snapshots[0])?.message) : undefined;
}

/**
 * A MESSAGE_CREATE payload's files, described (see {@link discordAttachments}): its own, then
 * those of the message it forwards.
 */
export function discordMessageAttachments(data: unknown): InboundAttachment[] {
  const message = record(data);
  if (message === undefined) return [];
  return [
    ...discordAttachments(message.attachments),
    ...discordAttachments(forwardedOf(message)?.attachments),
  ];
}

/**
 * Turns `<@id>` mentions of users the message names into `@name`, and `<#id>` mentions of
 * known channels into `#name`, so the agent reads what the user saw.
 */
function renderMentions(
  content: string,
  names: ReadonlyMap<string, string>,
  directory: DiscordDirectory,
): string {
  return content
    .replace(/<@!?([^>\s]+)>/g, (token, id: string) => {
      const name = names.get(id);
      return name === undefined ? token : `@${name}`;
    })
    .replace(/<#([^>\s]+)>/g, (token, id: string) => {
      const name = directory.channel(id)?.name;
      return name === undefined ? token : `#${name}`;
    });
}

/**
 * Why a MESSAGE_CREATE payload is not for the host, or `undefined` when it is: the bot's own
 * message, another bot's or a webhook's (unless `allowBots`), a system message (joins, pins,
 * ...), or a malformed payload (no string `id`, `channel_id` or `author.id`, a `guild_id`
 * that is not a string), whose reason starts with `malformed`. Decided from the payload
 * alone, before anything is looked up or downloaded for it.
 */
export function skipReason(
  data: unknown,
  options: Pick<InboundOptions, "directory" | "allowBots">,
): string | undefined {
  const message = record(data);
  const author = record(message?.author);
  const authorId = text(author?.id);
  if (
    message === undefined ||
    text(message.id) === undefined ||
    text(message.channel_id) === undefined
  ) {
    return "malformed: no id or channel_id";
  }
  if (author === undefined || authorId === undefined) return "malformed: no author";
  if (
    message.guild_id !== undefined &&
    message.guild_id !== null &&
    text(message.guild_id) === undefined
  ) {
    // Read as a DM, a guild message would be answered in private.
    return "malformed: guild_id is not a string";
  }
  if (authorId === options.directory.bot?.id) return "the bot's own message";
  if (!options.allowBots && (author.bot === true || text(message.webhook_id) !== undefined)) {
    return "a bot's or webhook's message";
  }
  const type = typeof message.type === "number" ? message.type : 0;
  if (!USER_MESSAGE_TYPES.has(type)) return `system message type ${type}`;
  return undefined;
}

/**
 * Normalizes one MESSAGE_CREATE payload. A guild message goes to its channel (`group`), a
 * message in a thread to the thread's parent with `threadId`, a DM to its author (`direct`,
 * `chatId` = the user's id: replies find the DM channel from it). A forward (whose own
 * content is empty) reads as the message it forwards: its text and files. What
 * {@link skipReason} names a reason for is skipped with that reason.
 */
export async function toInbound(data: unknown, options: InboundOptions): Promise<InboundDecision> {
  const { directory } = options;
  const reason = skipReason(data, options);
  if (reason !== undefined) return { kind: "skip", reason };
  // Checked by skipReason: an object with a string id, channel_id and author.id.
  const message = data as Json;
  const id = text(message.id)!;
  const channelId = text(message.channel_id)!;
  const author = record(message.author)!;
  const authorId = text(author.id)!;
  const type = typeof message.type === "number" ? message.type : 0;

  const guildId = text(message.guild_id);
  const member = record(message.member);
  const peerName = displayName(author, member);
  const input: InboundMessageInput = {
    peer: peerName === undefined ? { id: authorId } : { id: authorId, name: peerName },
    chatType: guildId === undefined ? "direct" : "group",
    text: "",
    messageId: id,
    raw: message,
  };

  // Where the conversation is: a DM is keyed by its author; a thread sits under its parent.
  let channel = directory.channel(channelId);
  const declaredType = typeof message.channel_type === "number" ? message.channel_type : undefined;
  const thread = isThreadType(declaredType ?? channel?.type);
  if (guildId === undefined) {
    input.chatId = authorId;
    if (!thread) directory.rememberDmChannel(authorId, channelId);
    else input.threadId = channelId;
  } else {
    if (channel === undefined || (thread && channel.parentId === undefined)) {
      // Unknown to the gateway so far (or a thread without its parent): ask REST, unless the
      // event says it is a plain channel.
      if (declaredType === undefined || thread) {
        channel = (await options.lookupChannel(channelId)) ?? channel;
      }
    }
    if (isThreadType(declaredType ?? channel?.type) && channel?.parentId !== undefined) {
      input.chatId = channel.parentId;
      input.threadId = channelId;
    } else {
      input.chatId = channelId;
    }
  }

  // Mentions: the bot when @-mentioned (as a user or through its managed role) or replied to.
  const botId = directory.bot?.id;
  const names = new Map<string, string>();
  const peers: string[] = [];
  let mentionsBot = false;
  if (Array.isArray(message.mentions)) {
    for (const raw of message.mentions) {
      const user = record(raw);
      const userId = text(user?.id);
      if (userId === undefined) continue;
      const name = displayName(user, record(user?.member));
      if (name !== undefined) names.set(userId, name);
      if (userId === botId) mentionsBot = true;
      else if (!peers.includes(userId)) peers.push(userId);
    }
  }
  if (botId !== undefined && !names.has(botId) && directory.bot !== undefined) {
    names.set(botId, directory.bot.globalName ?? directory.bot.username);
  }
  const roles = Array.isArray(message.mention_roles)
    ? message.mention_roles.filter((r): r is string => typeof r === "string")
    : [];
  if (directory.isBotRole(guildId, roles)) mentionsBot = true;

  const reference = record(message.message_reference);
  const referenced = record(message.referenced_message);
  const replyToId = text(reference?.message_id);
  if (type === REPLY && replyToId !== undefined) {
    const replyAuthor = text(record(referenced?.author)?.id);
    input.replyTo = { messageId: replyToId };
    const quoted = typeof referenced?.content === "string" ? referenced.content : undefined;
    if (quoted !== undefined && quoted.length > 0) input.replyTo.text = quoted;
    if (replyAuthor !== undefined) input.replyTo.peerId = replyAuthor;
    if (replyAuthor !== undefined && replyAuthor === botId) mentionsBot = true;
  }

  // A forward's own content is empty: the text is the forwarded message's. Whom that one
  // mentions is named, but not addressed by this message.
  const forwarded = forwardedOf(message);
  if (forwarded !== undefined && Array.isArray(forwarded.mentions)) {
    for (const raw of forwarded.mentions) {
      const user = record(raw);
      const userId = text(user?.id);
      const name = displayName(user, record(user?.member));
      if (userId !== undefined && name !== undefined && !names.has(userId)) names.set(userId, name);
    }
  }
  const content = [message.content, forwarded?.content]
    .filter((part): part is string => typeof part === "string" && part.length > 0)
    .join("\n");
  input.text = renderMentions(content, names, directory);
  input.mentions = { bot: mentionsBot, peers };
  const attachments = discordMessageAttachments(message);
  if (attachments.length > 0) input.attachments = attachments;
  const timestamp = typeof message.timestamp === "string" ? Date.parse(message.timestamp) : NaN;
  if (Number.isFinite(timestamp)) input.timestamp = timestamp;
  return { kind: "message", input };
}
