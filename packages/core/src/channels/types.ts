/**
 * The channel contract, version 1: what a chat platform adapter (Discord, Telegram, Slack, a
 * webhook, your own) implements so that BeamClaw can talk through it. Types only.
 *
 * A plugin does four things: it connects (`start`) and disconnects (`stop`); it turns every
 * platform event it receives into one {@link InboundMessage} shape and hands it to
 * `ctx.receive` (asking `ctx.admits` first when it would download the message's files); and
 * it performs outbound calls (`sendText`, and `sendMedia`, `edit`, `typing`, `react` when it
 * declares them). Everything else — session routing, DM and group
 * policy, pairing, duplicate suppression, debounce, chunking, typing while a run streams,
 * approvals, durable replies, reconnecting with backoff — is done by the host
 * (`ChannelManager`), the same way for every channel.
 */
import type { JsonValue } from "../providers/types.js";

/** Version of this contract. A v2 can live beside it later. */
export type ChannelSpecificationVersion = "v1";

/**
 * What a channel can do. The host only calls what is declared, and the conformance suite
 * tests exactly what is declared.
 */
export interface ChannelCapabilities {
  /** One-to-one conversations. */
  directMessages: boolean;
  /** Group chats (rooms, guild channels, supergroups). */
  groups: boolean;
  /** Threads inside a chat (`threadId` on inbound messages and targets). */
  threads: boolean;
  /** Attachments in and `sendMedia` out. */
  media: boolean;
  /** `edit` of a message the channel sent. */
  edits: boolean;
  /** `react` to a message. */
  reactions: boolean;
  /** `typing` indicators. */
  typing: boolean;
  /**
   * The longest text one platform message may carry, in UTF-16 code units (JavaScript string
   * length, which never undercounts a platform that counts code points): 2000 on Discord,
   * 4096 on Telegram. The host splits longer replies with `chunkText` before `sendText`.
   */
  maxMessageLength: number;
}

/** Who the plugin is, for people. */
export interface ChannelMeta {
  /** Display name, e.g. `Discord`. */
  label: string;
  /** One sentence about the channel. */
  description?: string;
  /** Where the channel's setup is documented. */
  docsUrl?: string;
  /**
   * True when the platform's ids ignore case (Slack's `U024BE7LH`), so that session keys may
   * use them lower-cased as they are. Default false: upper-case letters are encoded so that
   * `Alice` and `alice` never share a session.
   */
  caseInsensitiveIds?: boolean;
}

/** A direct (one-to-one) conversation or a group chat. */
export type ChatType = "direct" | "group";

/** The person (or bot) who sent an inbound message. */
export interface InboundPeer {
  /** The platform's stable user id. */
  id: string;
  /** Display name, when the platform gives one. */
  name?: string;
}

/** A file that came with an inbound message. */
export interface InboundAttachment {
  kind: "image" | "audio" | "video" | "file";
  /** MIME type, e.g. `image/png`. */
  mediaType?: string;
  /**
   * Where to fetch it. An attachment may have neither `url` nor `data` (a file the channel
   * could not or would not fetch: a voice note, a file over its size limit): it is still
   * described by `kind`, `mediaType`, `name` and `size`.
   */
  url?: string;
  /**
   * True when `url` is for the channel's own use only: fetching it needs the bot's
   * credentials (Slack's `url_private`) or it expires (Discord's signed CDN links). The host
   * never hands such a URL to a model, which could not fetch it (or not for long) and would
   * fail the run, and every later run of the conversation with it.
   */
  privateUrl?: boolean;
  /** The content, base64, for small files the platform delivers inline (or the channel downloaded). */
  data?: string;
  /** File name. */
  name?: string;
  /** Size in bytes. */
  size?: number;
}

/** Who an inbound message mentions. */
export interface InboundMentions {
  /**
   * True when the message addresses the bot: an @-mention of it, or a reply to one of its
   * messages. Group policy's mention gating reads this.
   */
  bot: boolean;
  /** Platform ids of the other peers it mentions. */
  peers: string[];
}

/** The message an inbound message replies to. */
export interface InboundReplyTo {
  /** Platform id of the message replied to. */
  messageId: string;
  /** Its text, when the platform includes it. */
  text?: string;
  /** Its author. */
  peerId?: string;
}

/**
 * One inbound message, normalized: every channel hands the host this same shape.
 *
 * @example
 * ```ts
 * const message: InboundMessage = {
 *   channel: "discord", accountId: "default",
 *   peer: { id: "81234", name: "alice" },
 *   chatType: "group", chatId: "1100", threadId: "1201",
 *   text: "@bot what's the build status?",
 *   attachments: [], mentions: { bot: true, peers: [] },
 *   messageId: "1300", timestamp: 1735689600000,
 * };
 * ```
 */
export interface InboundMessage {
  /** The channel id (the plugin's `id`). */
  channel: string;
  /** Which of the channel's accounts (bot identities) received it. `default` for one. */
  accountId: string;
  /** The sender. */
  peer: InboundPeer;
  chatType: ChatType;
  /**
   * Where the conversation happens and where replies go: the group's id, or the DM
   * conversation's id (the peer's id on platforms without separate DM channels).
   */
  chatId: string;
  /** The thread inside the chat, when there is one. */
  threadId?: string;
  /** The text, as the user wrote it (may be empty when only attachments came). */
  text: string;
  attachments: InboundAttachment[];
  mentions: InboundMentions;
  replyTo?: InboundReplyTo;
  /** The platform's id of this message: the key of duplicate suppression. */
  messageId: string;
  /** When it was sent, epoch ms. */
  timestamp: number;
  /** The platform's own event, for plugins' hooks and debugging; never stored. */
  raw?: unknown;
}

/**
 * What a plugin passes to `ctx.receive`: an {@link InboundMessage} where the host fills in
 * the defaults — `channel` (the plugin id), `accountId` (`default`), `chatId` of a direct
 * message (the peer's id), `attachments` (none), `mentions` (none), `timestamp` (now).
 */
export type InboundMessageInput = Omit<
  InboundMessage,
  "channel" | "accountId" | "chatId" | "attachments" | "mentions" | "timestamp"
> & {
  channel?: string;
  accountId?: string;
  chatId?: string;
  attachments?: InboundAttachment[];
  mentions?: Partial<InboundMentions>;
  timestamp?: number;
};

/** What became of a received message. */
export type ReceiveStatus =
  /** Written to the session's durable inbound queue; a reply will follow. */
  | "accepted"
  /** The same platform message was received before; nothing was done. */
  | "duplicate"
  /** Not for the bot: a group message without a mention where one is required, or empty. */
  | "ignored"
  /** Refused by DM or group policy. */
  | "blocked"
  /** An unknown sender under DM policy `pairing`: a pairing code was (or had been) sent. */
  | "pairing"
  /** A channel command (`/approve`, `/deny`, `/pair`) the host answered itself. */
  | "command";

/** The answer of `ctx.receive`. */
export interface ReceiveResult {
  status: ReceiveStatus;
  /** The session the message went to (`accepted`, `duplicate` of an accepted one). */
  sessionKey?: string;
  /** The run that answers it (`accepted`). */
  runId?: string;
  /** Why it was not accepted, for logs. */
  reason?: string;
}

/** Where an outbound message goes. */
export interface ChannelTarget {
  accountId: string;
  chatType: ChatType;
  /** The chat: a group's id, or the DM conversation's id. */
  chatId: string;
  threadId?: string;
}

/** Options of the outbound calls. */
export interface ChannelSendOptions {
  /** Reply to (quote) this platform message, where the platform supports it. */
  replyToMessageId?: string;
  /**
   * The same for every retry of one delivery (the outbox entry and part). Pass it to the
   * platform when it can deduplicate (Discord's `nonce`, a webhook's delivery id).
   */
  idempotencyKey?: string;
  /** Aborts the call (the channel is stopping). */
  signal?: AbortSignal;
  /**
   * Given by the host's outbox: what earlier attempts of this same delivery (the outbox
   * entry and part) got confirmed, for a send that takes several platform messages — a file
   * and the caption that did not fit in it. Record each message as the platform confirms it;
   * on a retry, skip the ones in `sent`. The outbox keeps the record with the delivery (in
   * the store, so across a restart too), so a retry resumes where the failed attempt stopped
   * instead of posting again what a platform without idempotency keys cannot deduplicate.
   */
  progress?: ChannelSendProgress;
}

/**
 * The messages of one multi-message send that the platform confirmed, kept by the host's
 * outbox with the delivery (see {@link ChannelSendOptions.progress}).
 *
 * @example
 * ```ts
 * async sendMedia(target, media, options) {
 *   const done = options?.progress?.sent ?? [];
 *   const file = done[0] ?? (await postFile(target, media)).id;
 *   if (done.length === 0) await options?.progress?.record(file);
 *   for (const [i, piece] of overflowOf(media.caption).entries()) {
 *     if (i + 1 < done.length) continue; // sent by an earlier attempt
 *     await options?.progress?.record((await postText(target, piece)).id);
 *   }
 *   return { messageId: file };
 * }
 * ```
 */
export interface ChannelSendProgress {
  /** The platform ids of the messages earlier attempts got confirmed, in the order sent. */
  readonly sent: readonly string[];
  /**
   * Records that the platform confirmed the next message of this send. Resolves once it is
   * stored; never rejects (a store that failed is logged, and the record is kept in memory
   * for the retries of this process). Calls after the send settled are ignored.
   */
  record(messageId: string): Promise<void>;
}

/** A file to send. */
export interface OutboundMedia {
  kind: "image" | "audio" | "video" | "file";
  /** Where the platform can fetch it, or... */
  url?: string;
  /** ...its content, base64. */
  data?: string;
  mediaType?: string;
  name?: string;
  /** Text shown with it. */
  caption?: string;
}

/** A message the platform confirmed. */
export interface SentMessage {
  /** The platform's id of the sent message (for `edit`, `react`, reply references). */
  messageId: string;
}

/** A structured logger; `console` fits. */
export interface ChannelLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/**
 * A plugin's own small durable state (cursors, the last message it handed over), kept by the
 * host in the runtime's store under the channel's id and the given account, so that it
 * outlives a restart of the process or a reload of the channel. Values are JSON. Meant for a
 * few keys written now and then (debounce frequent updates), not for message data.
 *
 * @example
 * ```ts
 * const saved = await ctx.state?.get<{ cursor: string }>("default", "poll");
 * await ctx.state?.set("default", "poll", { cursor: "4711" });
 * ```
 */
export interface ChannelStateStore {
  /** The value stored under `key` for `accountId`, or `undefined`. */
  get<T extends JsonValue = JsonValue>(accountId: string, key: string): Promise<T | undefined>;
  /** Stores `value` under `key` for `accountId`, replacing what was there. */
  set(accountId: string, key: string, value: JsonValue): Promise<void>;
  /** Removes `key` of `accountId`. Returns whether it was there. */
  delete(accountId: string, key: string): Promise<boolean>;
}

/**
 * What the host gives a plugin in `start`. A new context is made for every (re)start; a
 * stale one's `receive` rejects.
 */
export interface ChannelContext<TConfig = unknown> {
  /** The channel id. */
  readonly channel: string;
  /** The channel's settings section (e.g. `channels.<id>` of `beamclaw.yaml`), as given. */
  readonly config: TConfig;
  readonly logger: ChannelLogger;
  /**
   * Aborts when this connection ends: the channel stops, restarts, or was reported
   * disconnected. Pass it to sockets, `fetch` and timers.
   */
  readonly signal: AbortSignal;
  /**
   * The plugin's durable state in the host's store, namespaced by channel id and account.
   * Unlike `receive`, it stays usable after this context went stale (a plugin saves its
   * state in `stop`). Absent when the host keeps no state (a plugin must work without it).
   */
  readonly state?: ChannelStateStore;
  /**
   * Hands the host one inbound message. Resolves once the host is done with it: written to
   * the durable inbound queue (`accepted`; acknowledge the platform event only now), or
   * turned away with the reason. Concurrent calls are fine; messages of one conversation
   * reach their session in the order `receive` was called.
   *
   * @throws InvalidInboundError for a malformed message (nothing is recorded).
   * @throws NoProcessError once this context is stale (the channel stopped or restarted).
   */
  receive(message: InboundMessageInput): Promise<ReceiveResult>;
  /**
   * Asks, before the plugin fetches a message's files, whether `receive` would hand this
   * message to a session: the same decision `receive` makes — DM policy (pairing included),
   * group policy, `groupAllowFrom`, mention gating, and the channel and session commands the
   * host answers itself — taken now, from the same settings and pairing approvals. It does
   * not judge what only the files could change (a message without text is not empty once
   * its files are counted) nor duplicates. It has no side effects: nothing is recorded, no
   * pairing code is sent.
   *
   * Resolves `false` when `receive` would turn the message away (`blocked`, `ignored`,
   * `pairing`) or answer it itself (`command`): the files would never be used. The plugin
   * then still calls `receive` with the message, its attachments described (`kind`,
   * `mediaType`, `name`, `size`, a `url` marked `privateUrl`) but not downloaded, so that
   * the host does what it does for such a message once (sends an unknown sender's pairing
   * code, answers the command, records the message id). A sender approved between the two
   * calls has that message taken without the files' content, which the text then names.
   *
   * Optional: hosts written before it (and test contexts) do not have it; a plugin treats a
   * missing `admits` as `true` and downloads as before.
   *
   * @throws InvalidInboundError for a malformed message (as `receive` would).
   * @throws NoProcessError once this context is stale (the channel stopped or restarted).
   * @example
   * ```ts
   * const message = describe(event); // attachments with their URLs, not downloaded
   * const admitted = (await ctx.admits?.(message)) ?? true;
   * await ctx.receive(admitted ? await withDownloadedFiles(message) : message);
   * ```
   */
  admits?(message: InboundMessageInput): Promise<boolean>;
  /**
   * Reports that the connection was lost and the plugin will not recover it by itself. The
   * host calls `stop()`, waits (exponential backoff with jitter; at least the error's
   * `retryAfterMs`, up to an hour, when the platform asked for a wait) and calls `start()`
   * again with a new context. Calls on a stale context are ignored.
   */
  disconnected(error?: unknown): void;
}

/**
 * What the host gives a plugin's `logout`. The channel is stopped by then (its connection
 * context is stale), so this carries what dropping a login needs.
 */
export interface ChannelLogoutContext<TConfig = unknown> {
  /** The channel id. */
  readonly channel: string;
  /** The account to log out: `default` (the host runs one account per channel). */
  readonly accountId: string;
  /** The channel's settings section, as `start` gets it. */
  readonly config: TConfig;
  readonly logger: ChannelLogger;
  /** The plugin's durable state (as `ctx.state` in `start`): where a login it keeps may live. */
  readonly state?: ChannelStateStore;
}

/** What a plugin's `logout` did (OpenClaw's `logoutAccount` result). */
export interface ChannelLogoutResult {
  /** Login state (a linked session, cached credentials) was found and removed. */
  cleared: boolean;
  /** The account is logged out now, whatever was stored. Default: `cleared`. */
  loggedOut?: boolean;
}

/** Who calls a gateway method, as the gateway authenticated them. */
export interface ChannelMethodCaller {
  /** The client's scopes, e.g. `operator.admin`. */
  scopes: readonly string[];
  /** For logs. */
  clientId?: string;
}

/** One problem a {@link ChannelMethodParamsSchema} found. */
export interface ChannelMethodParamsIssue {
  readonly message: string;
  /** Where in the params, e.g. `["chat", "id"]`. */
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }>;
}

/** What a {@link ChannelMethodParamsSchema} says about some params. */
export type ChannelMethodParamsResult =
  | { readonly value: unknown; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<ChannelMethodParamsIssue> };

/**
 * A schema of a gateway method's params: any [Standard Schema](https://standardschema.dev)
 * v1 validator — a zod 4, valibot or ArkType schema as it is.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * const params: ChannelMethodParamsSchema = z.object({ chatId: z.string() });
 * ```
 */
export interface ChannelMethodParamsSchema {
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    validate(value: unknown): ChannelMethodParamsResult | Promise<ChannelMethodParamsResult>;
  };
}

/**
 * An extra RPC method a channel registers on the gateway, callable as `<channel id>.<name>`.
 * The gateway checks the caller's `scope` and the `params` schema before the handler runs;
 * whatever the handler throws is answered as a protocol error (a `BeamClawError` keeps its
 * code), and never closes the caller's connection. A name the gateway already has is refused
 * when the gateway starts (`AlreadyRegisteredError`).
 */
export interface ChannelGatewayMethod {
  description?: string;
  /** The scope a client needs to call it. Default `operator.admin`. */
  scope?: string;
  /**
   * Validates the params first (they are an object, `{}` when the client sent none); the
   * handler gets the schema's output. Refused params are answered `INVALID_REQUEST` with the
   * issues. Default: the params are passed as the client sent them.
   */
  params?: ChannelMethodParamsSchema;
  handler(
    params: JsonValue | undefined,
    caller: ChannelMethodCaller,
  ): JsonValue | Promise<JsonValue>;
}

/**
 * A channel plugin (v1). Implement it to bring a chat platform to BeamClaw; run the channel
 * conformance suite (`channelConformanceSuite` in `@beamclaw/core/testing`) to prove it.
 *
 * Rules:
 * - Nothing happens on construction or import. `start` connects and resolves once inbound
 *   messages can flow; `stop` releases every socket and timer and is safe to call twice. The
 *   host may call `start` again after `stop` (reconnects).
 * - Outbound methods throw `ChannelSendError` (`isRetryable`, `retryAfterMs`) when the
 *   platform refuses or cannot be reached; anything else thrown counts as retryable.
 * - `sendText` gets at most `capabilities.maxMessageLength` characters; the host chunks.
 * - A redelivered platform event must normalize to the same `messageId`.
 *
 * @example
 * ```ts
 * const echoRoom: ChannelPlugin = {
 *   specificationVersion: "v1",
 *   id: "room",
 *   meta: { label: "Room" },
 *   capabilities: { directMessages: true, groups: false, threads: false, media: false,
 *     edits: false, reactions: false, typing: false, maxMessageLength: 500 },
 *   async start(ctx) { room.on("line", (l) => ctx.receive({ peer: { id: l.user },
 *     chatType: "direct", text: l.text, messageId: l.id })); },
 *   async stop() { room.removeAllListeners("line"); },
 *   async sendText(target, text) { return { messageId: room.say(target.chatId, text) }; },
 * };
 * ```
 */
export interface ChannelPlugin<TConfig = unknown> {
  readonly specificationVersion: ChannelSpecificationVersion;
  /** Unique channel id, `^[a-z][a-z0-9_-]{0,31}$`: it appears in session keys. */
  readonly id: string;
  readonly meta: ChannelMeta;
  readonly capabilities: ChannelCapabilities;
  /** Connects. Resolves once inbound messages can flow; rejects if that failed. */
  start(ctx: ChannelContext<TConfig>): Promise<void>;
  /** Disconnects and releases everything. Idempotent. */
  stop(): Promise<void>;
  /** Sends text of at most `maxMessageLength` characters. */
  sendText(target: ChannelTarget, text: string, options?: ChannelSendOptions): Promise<SentMessage>;
  /** Sends a file (`capabilities.media`). */
  sendMedia?(
    target: ChannelTarget,
    media: OutboundMedia,
    options?: ChannelSendOptions,
  ): Promise<SentMessage>;
  /** Replaces the text of a message this channel sent (`capabilities.edits`). */
  edit?(
    target: ChannelTarget,
    messageId: string,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<void>;
  /** Shows a typing indicator for a few seconds (`capabilities.typing`); the host repeats it. */
  typing?(target: ChannelTarget, options?: ChannelSendOptions): Promise<void>;
  /** Adds a reaction (`capabilities.reactions`). */
  react?(
    target: ChannelTarget,
    messageId: string,
    emoji: string,
    options?: ChannelSendOptions,
  ): Promise<void>;
  /**
   * Drops the channel's login: the session or credentials the plugin keeps itself (a linked
   * WhatsApp Web device, a cached OAuth token, usually in `ctx.state`), so that the next
   * `start` has to log in anew. The host stops the channel first and leaves it stopped
   * (`ChannelManager.logoutChannel`, the gateway's `channels.logout`). Leave it out when the
   * credentials live in the channel's configuration (a bot token): a logout is then refused
   * with `NotSupportedError` and nothing changes.
   *
   * @example
   * ```ts
   * async logout(ctx) {
   *   const cleared = await ctx.state?.delete(ctx.accountId, "session") ?? false;
   *   return { cleared, loggedOut: true };
   * }
   * ```
   */
  logout?(ctx: ChannelLogoutContext<TConfig>): Promise<ChannelLogoutResult>;
  /**
   * Extra gateway RPC methods, registered as `<channel id>.<name>` (`name` matches
   * `^[a-zA-Z][a-zA-Z0-9._-]{0,63}$`).
   */
  readonly gatewayMethods?: Readonly<Record<string, ChannelGatewayMethod>>;
}
