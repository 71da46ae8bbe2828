/**
 * Checks at the boundary between a plugin and the host: a plugin's declaration, and every
 * inbound message a plugin hands in.
 */
import { InvalidArgumentError, InvalidInboundError } from "../errors.js";
import type {
  ChannelPlugin,
  InboundAttachment,
  InboundMessage,
  InboundMessageInput,
} from "./types.js";

/** The pattern a channel id must match: it becomes a session-key segment. */
export const CHANNEL_ID_PATTERN: RegExp = /^[a-z][a-z0-9_-]{0,31}$/;
/** Words with a meaning in session keys, which a channel id cannot be. */
const RESERVED_CHANNEL_IDS = new Set([
  "main",
  "direct",
  "group",
  "thread",
  "subagent",
  "agent",
  "cron",
]);
const METHOD_NAME_PATTERN = /^[a-zA-Z][a-zA-Z0-9._-]{0,63}$/;
const ATTACHMENT_KINDS = new Set(["image", "audio", "video", "file"]);
const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;
/** Longest platform id the host accepts; longer ones are not ids. */
const MAX_ID_LENGTH = 512;

const CAPABILITY_FLAGS = [
  "directMessages",
  "groups",
  "threads",
  "media",
  "edits",
  "reactions",
  "typing",
] as const;

/**
 * Checks that `plugin` is a well-formed v1 channel plugin: id, meta, capabilities, and a
 * method for every declared capability.
 *
 * @throws InvalidArgumentError naming what is wrong.
 * @example
 * ```ts
 * assertChannelPlugin(createWebhookChannel({ ... })); // throws if malformed
 * ```
 */
export function assertChannelPlugin(plugin: ChannelPlugin): void {
  const fail = (problem: string): never => {
    const id = typeof plugin?.id === "string" ? ` "${plugin.id}"` : "";
    throw new InvalidArgumentError(`channel plugin${id}: ${problem}`);
  };
  if (typeof plugin !== "object" || plugin === null) fail("must be an object");
  if (plugin.specificationVersion !== "v1") {
    fail(`specificationVersion must be "v1", got ${JSON.stringify(plugin.specificationVersion)}`);
  }
  if (typeof plugin.id !== "string" || !CHANNEL_ID_PATTERN.test(plugin.id)) {
    fail(`id must match ${CHANNEL_ID_PATTERN.source}, got ${JSON.stringify(plugin.id)}`);
  }
  if (RESERVED_CHANNEL_IDS.has(plugin.id)) {
    fail(`id "${plugin.id}" is a word session keys reserve; choose another`);
  }
  if (typeof plugin.meta?.label !== "string" || plugin.meta.label.length === 0) {
    fail("meta.label must be a non-empty string");
  }
  const caps = plugin.capabilities;
  if (typeof caps !== "object" || caps === null) fail("capabilities must be an object");
  for (const flag of CAPABILITY_FLAGS) {
    if (typeof caps[flag] !== "boolean") fail(`capabilities.${flag} must be a boolean`);
  }
  if (!Number.isInteger(caps.maxMessageLength) || caps.maxMessageLength < 1) {
    fail(
      `capabilities.maxMessageLength must be a positive integer, got ${String(caps.maxMessageLength)}`,
    );
  }
  if (!caps.directMessages && !caps.groups) fail("must support direct messages or groups");
  for (const method of ["start", "stop", "sendText"] as const) {
    if (typeof plugin[method] !== "function") fail(`${method} must be a function`);
  }
  const needs: Array<[keyof typeof caps, keyof ChannelPlugin]> = [
    ["media", "sendMedia"],
    ["edits", "edit"],
    ["typing", "typing"],
    ["reactions", "react"],
  ];
  for (const [flag, method] of needs) {
    if (caps[flag] === true && typeof plugin[method] !== "function") {
      fail(`declares capabilities.${flag} but has no ${method} method`);
    }
  }
  if (plugin.logout !== undefined && typeof plugin.logout !== "function") {
    fail("logout must be a function when present");
  }
  if (plugin.gatewayMethods !== undefined) {
    for (const [name, method] of Object.entries(plugin.gatewayMethods)) {
      if (!METHOD_NAME_PATTERN.test(name)) {
        fail(
          `gateway method name ${JSON.stringify(name)} must match ${METHOD_NAME_PATTERN.source}`,
        );
      }
      if (typeof method?.handler !== "function") fail(`gateway method "${name}" needs a handler`);
      if (
        method.params !== undefined &&
        typeof method.params?.["~standard"]?.validate !== "function"
      ) {
        fail(`gateway method "${name}": params must be a Standard Schema (e.g. a zod schema)`);
      }
    }
  }
}

function isId(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

/**
 * Validates an inbound message from plugin `channel` and fills in the defaults (see
 * {@link InboundMessageInput}). Unknown fields are dropped. A lone surrogate (half of a UTF-16
 * pair) in the text, the sender's name, a quoted reply or an attachment's name becomes U+FFFD:
 * the person's message gets through, and no model call of the session is refused over it.
 *
 * @throws InvalidInboundError naming the offending field.
 * @example
 * ```ts
 * normalizeInbound("room", { peer: { id: "alice" }, chatType: "direct", text: "hi", messageId: "m1" });
 * // { channel: "room", accountId: "default", chatId: "alice", attachments: [], mentions: { bot: false, peers: [] }, ... }
 * ```
 */
export function normalizeInbound(
  channel: string,
  input: InboundMessageInput,
  now: () => number = Date.now,
): InboundMessage {
  const bad = (field: string, problem: string): never => {
    throw new InvalidInboundError(channel, field, problem);
  };
  if (typeof input !== "object" || input === null) bad("message", "must be an object");
  if (input.channel !== undefined && input.channel !== channel) {
    bad("channel", `must be "${channel}" (the plugin's id), got ${JSON.stringify(input.channel)}`);
  }
  const accountId = input.accountId ?? "default";
  if (!isId(accountId)) bad("accountId", "must be a non-empty string");
  if (typeof input.peer !== "object" || input.peer === null) bad("peer", "must be an object");
  if (!isId(input.peer.id)) bad("peer.id", "must be a non-empty string");
  if (input.peer.name !== undefined && typeof input.peer.name !== "string") {
    bad("peer.name", "must be a string");
  }
  if (input.chatType !== "direct" && input.chatType !== "group") {
    bad("chatType", `must be "direct" or "group", got ${JSON.stringify(input.chatType)}`);
  }
  const chatId = input.chatId ?? (input.chatType === "direct" ? input.peer.id : undefined);
  if (!isId(chatId)) bad("chatId", "must be a non-empty string (required for group messages)");
  if (input.threadId !== undefined && !isId(input.threadId)) {
    bad("threadId", "must be a non-empty string when present");
  }
  if (typeof input.text !== "string") bad("text", "must be a string");
  if (!isId(input.messageId)) bad("messageId", "must be a non-empty string");
  const timestamp = input.timestamp ?? now();
  if (!Number.isFinite(timestamp)) bad("timestamp", "must be a finite number (epoch ms)");
  const attachments: InboundAttachment[] = [];
  if (input.attachments !== undefined) {
    if (!Array.isArray(input.attachments)) bad("attachments", "must be an array");
    input.attachments.forEach((a, i) => {
      const field = `attachments[${i}]`;
      if (typeof a !== "object" || a === null) bad(field, "must be an object");
      if (!ATTACHMENT_KINDS.has(a.kind))
        bad(`${field}.kind`, "must be image, audio, video or file");
      for (const key of ["url", "data", "mediaType", "name"] as const) {
        if (a[key] !== undefined && typeof a[key] !== "string") {
          bad(`${field}.${key}`, "must be a string");
        }
      }
      if (typeof a.data === "string" && !BASE64_TEXT.test(a.data)) {
        bad(`${field}.data`, "must be base64 (without a data: prefix)");
      }
      if (a.privateUrl !== undefined && typeof a.privateUrl !== "boolean") {
        bad(`${field}.privateUrl`, "must be a boolean");
      }
      if (a.size !== undefined && !(Number.isInteger(a.size) && a.size >= 0)) {
        bad(`${field}.size`, "must be a non-negative integer");
      }
      const copy: InboundAttachment = { kind: a.kind };
      if (a.mediaType !== undefined) copy.mediaType = a.mediaType;
      if (a.url !== undefined) copy.url = a.url;
      if (a.privateUrl === true && a.url !== undefined) copy.privateUrl = true;
      if (a.data !== undefined) copy.data = a.data;
      if (a.name !== undefined) copy.name = a.name.toWellFormed();
      if (a.size !== undefined) copy.size = a.size;
      attachments.push(copy);
    });
  }
  const mentionsBot = input.mentions?.bot ?? false;
  if (typeof mentionsBot !== "boolean") bad("mentions.bot", "must be a boolean");
  const peers = input.mentions?.peers ?? [];
  if (!Array.isArray(peers) || !peers.every(isId)) {
    bad("mentions.peers", "must be an array of non-empty strings");
  }
  const message: InboundMessage = {
    channel,
    accountId,
    peer:
      input.peer.name === undefined
        ? { id: input.peer.id }
        : { id: input.peer.id, name: input.peer.name.toWellFormed() },
    chatType: input.chatType,
    chatId: chatId!,
    text: input.text.toWellFormed(),
    attachments,
    mentions: { bot: mentionsBot, peers: [...peers] },
    messageId: input.messageId,
    timestamp,
  };
  if (input.threadId !== undefined) message.threadId = input.threadId;
  if (input.replyTo !== undefined) {
    if (typeof input.replyTo !== "object" || input.replyTo === null) {
      bad("replyTo", "must be an object");
    }
    if (!isId(input.replyTo.messageId)) bad("replyTo.messageId", "must be a non-empty string");
    for (const key of ["text", "peerId"] as const) {
      if (input.replyTo[key] !== undefined && typeof input.replyTo[key] !== "string") {
        bad(`replyTo.${key}`, "must be a string");
      }
    }
    message.replyTo = { messageId: input.replyTo.messageId };
    if (input.replyTo.text !== undefined) message.replyTo.text = input.replyTo.text.toWellFormed();
    if (input.replyTo.peerId !== undefined) message.replyTo.peerId = input.replyTo.peerId;
  }
  if (input.raw !== undefined) message.raw = input.raw;
  return message;
}
