/**
 * The Discord channel: a bot account on the Discord gateway (`@discordjs/ws`) and REST API
 * (`@discordjs/rest`, called through `@discordjs/core`'s `API`).
 */
import {
  AbortedError,
  AlreadyStartedError,
  type ChannelCapabilities,
  type ChannelContext,
  type ChannelGatewayMethod,
  type ChannelLogger,
  type ChannelPlugin,
  ChannelSendError,
  type ChannelSendOptions,
  type ChannelStateStore,
  type ChannelTarget,
  chunkText,
  type InboundAttachment,
  type InboundMessageInput,
  InvalidArgumentError,
  InvalidInboundError,
  type JsonObject,
  NoProcessError,
  type OutboundMedia,
  type SentMessage,
} from "@beamclaw/core";
import type { API, APIAllowedMentions } from "@discordjs/core/http-only";
import type { RateLimitData, REST, RESTOptions } from "@discordjs/rest";
import pLimit from "p-limit";
import { shouldDownloadFiles } from "../shared/admission.js";
import {
  downloadFile,
  FileDownloadError,
  type InlineAttachmentOptions,
  type InlineLimits,
  inlineLimitOf,
  inlineLimits,
  withInlineData,
} from "../shared/files.js";
import { KeyedChains } from "../shared/keyed-chains.js";
import { withoutBody } from "../shared/responses.js";
import { STOP_DRAIN_MS, settlesWithin } from "../shared/settle.js";
import { Stops } from "../shared/stops.js";
import { DiscordDirectory, type KnownChannel, toKnownChannel } from "./directory.js";
import type { DiscordGatewayError } from "./errors.js";
import {
  type DiscordGatewaySettings,
  GatewayConnection,
  type GatewayDispatch,
  IdentifyThrottle,
} from "./gateway.js";
import { discordMessageAttachments, skipReason, toInbound } from "./inbound.js";
import { type DiscordLibraries, loadDiscordLibraries } from "./libraries.js";
import { nonceFor, reactionEmoji, toSendError } from "./outbound.js";
import { guardRateLimits } from "./rate-limits.js";
import { GatewaySessions } from "./sessions.js";

/**
 * Gateway intents (bit flags), for `intents`.
 * https://discord.com/developers/docs/events/gateway#gateway-intents
 *
 * @example
 * ```ts
 * // Without the privileged Message Content intent: DMs and mentions only.
 * createDiscordChannel({
 *   token,
 *   intents: DiscordIntents.Guilds | DiscordIntents.GuildMessages | DiscordIntents.DirectMessages,
 * });
 * ```
 */
export const DiscordIntents = {
  Guilds: 1 << 0,
  GuildMessages: 1 << 9,
  GuildMessageReactions: 1 << 10,
  DirectMessages: 1 << 12,
  DirectMessageReactions: 1 << 13,
  /** Privileged: enable it in the Developer Portal (Bot → Privileged Gateway Intents). */
  MessageContent: 1 << 15,
} as const;

/** GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT: what the channel needs. */
export const DEFAULT_DISCORD_INTENTS =
  DiscordIntents.Guilds |
  DiscordIntents.GuildMessages |
  DiscordIntents.DirectMessages |
  DiscordIntents.MessageContent;

/** Discord's limit of a message's `content`. */
export const DISCORD_MAX_MESSAGE_LENGTH = 2000;

/** Which mentions in the bot's messages may ping (Discord's `allowed_mentions`). */
export interface DiscordAllowedMentions {
  /** Mention kinds parsed from the text. Default `["users"]`: never `@everyone` or roles. */
  parse?: Array<"users" | "roles" | "everyone">;
  /** Whether a reply pings the author of the message replied to. Default true. */
  repliedUser?: boolean;
}

/** Options of {@link createDiscordChannel}. */
export interface DiscordChannelOptions {
  /** The bot token (Developer Portal → your application → Bot → Reset Token). */
  token: string;
  /** The channel id (and session-key segment). Default `discord`. */
  id?: string;
  /** The account id inbound messages carry (several bots side by side). Default `default`. */
  accountId?: string;
  /**
   * Gateway intents. Default {@link DEFAULT_DISCORD_INTENTS}. Without `MessageContent` the
   * bot sees the text of DMs and of messages that mention it only.
   */
  intents?: number;
  /** Take messages of other bots and webhooks too (beware of two bots answering each other). Default false. */
  allowBots?: boolean;
  /** Which mentions in the bot's messages may ping. Default users only. */
  allowedMentions?: DiscordAllowedMentions;
  /**
   * The longest rate-limit wait `@discordjs/rest` may sit out inside one send. A longer one
   * (a global limit, a long route limit) fails the send with a retryable `ChannelSendError`
   * carrying `retryAfterMs`, and the host's outbox retries after it. Default 5000.
   */
  maxRateLimitWaitMs?: number;
  /** How long `start` waits for READY (or RESUMED). Default 30 000. */
  connectTimeoutMs?: number;
  /**
   * The least time between two IDENTIFYs of one rate-limit bucket (Discord allows
   * `max_concurrency` per 5 s). Default 5000.
   */
  identifyIntervalMs?: number;
  /**
   * `@discordjs/rest` options: `api` (base URL, default `https://discord.com/api`),
   * `timeout`, `retries`, `offset`, `makeRequest` (default: the global `fetch`; the body of
   * a 429 or 5xx answer it gives is cancelled, as `@discordjs/rest` reads only its headers), ...
   */
  rest?: Partial<
    Omit<
      RESTOptions,
      "rejectOnRateLimit" | "authPrefix" | "hashSweepInterval" | "handlerSweepInterval"
    >
  >;
  /** `@discordjs/ws` options: sharding, compression, presence. */
  gateway?: DiscordGatewaySettings;
  /**
   * When a gateway session cannot be resumed (INVALID_SESSION with `d: false`, a RESUME that
   * fails, a session Discord ended), the events missed while disconnected are not replayed:
   * the channel fetches them over REST instead (`GET /channels/{id}/messages?after=<last
   * taken>`) for the channels that had activity, hands them over in order, and skips any
   * message it handed over before. Where the host keeps plugin state (`ctx.state`, as the
   * `ChannelManager` does in the runtime's store), what the backfill needs is saved per
   * account, so that a restarted process (or a reloaded channel) fetches what was posted
   * while it was away. `false` turns that off.
   */
  backfill?: DiscordBackfillOptions | false;
  /**
   * Inbound files. Discord hands a message's files over as links to its CDN that are signed
   * and expire (after about a day), so none of them is ever given to a model by its URL: a
   * conversation's history keeps what it was given, and a link that expired would fail every
   * later run of it. Images (PNG, JPEG, GIF, WebP) up to `inlineImageMaxBytes` (default 5 MiB)
   * and PDFs up to `inlineDocumentMaxBytes` (default 10 MiB) are downloaded from the CDN
   * (with the global `fetch`, at most 30 s each; the files of one message side by side,
   * before it is handed over) and handed over inline (base64 `data`, the type taken from the
   * bytes), so the conversation keeps them after the link expired. Anything else — other
   * files, larger ones, one whose download failed or whose content is not what it claims — is
   * handed over described (kind, type, name, size) with its expiring URL, marked `privateUrl`.
   * 0 turns a kind of download off.
   */
  attachments?: InlineAttachmentOptions;
}

/** Bounds of the backfill after a session that could not be resumed. */
export interface DiscordBackfillOptions {
  /** The channels with the most recent activity that are backfilled. Default 50. */
  maxChannels?: number;
  /** Messages fetched per channel at most (100 per request). Default 200. */
  maxMessagesPerChannel?: number;
  /**
   * How long after a change the backfill position is saved to `ctx.state` (changes in
   * between are saved together; `stop` saves at once). Default 2000.
   */
  saveDelayMs?: number;
}

/** The `ctx.state` key of the saved backfill position (per account). */
const BACKFILL_STATE_KEY = "discord.backfill";

/**
 * The saved backfill position: per channel with activity (least recent first), the id after
 * which a backfill fetches, and the channel's guild.
 */
interface SavedBackfill {
  v: 1;
  channels: Array<[channelId: string, after: string, guildId: string | null]>;
}

/** What the channel knows of one Discord channel (guild channel, thread or DM) with activity. */
interface Activity {
  /** The newest message id of the channel that was taken (or skipped as not for the host). */
  lastTaken: string | undefined;
  guildId: string | undefined;
  /** Messages received but not taken yet: a backfill starts before the oldest of them. */
  inFlight: Set<string>;
}

/** Channels with activity remembered at most. */
const MAX_ACTIVITY = 1_000;
/** Taken message ids remembered for duplicate suppression. */
const MAX_TAKEN_IDS = 10_000;

const SNOWFLAKE = /^\d{1,20}$/;

/** Orders two message ids: snowflakes by value, anything else by text. */
function compareIds(a: string, b: string): number {
  if (SNOWFLAKE.test(a) && SNOWFLAKE.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Where a backfill of a channel starts: after the last message taken, or before the oldest
 * still in flight when that is earlier. `undefined` when there is nothing to go by.
 */
function backfillAfter(activity: Activity): string | undefined {
  let after = activity.lastTaken;
  const pending = [...activity.inFlight].filter((id) => SNOWFLAKE.test(id));
  if (pending.length > 0) {
    const oldest = pending.reduce((a, b) => (compareIds(a, b) <= 0 ? a : b));
    const before = (BigInt(oldest) - 1n).toString();
    if (after === undefined || compareIds(before, after) < 0) after = before;
  }
  return after !== undefined && SNOWFLAKE.test(after) ? after : undefined;
}

/** What is in flight for one `start` (one gateway connection and its inbound work). */
interface Run {
  readonly ctx: ChannelContext;
  readonly connection: GatewayConnection;
  /** Aborted by `stop`: lookups end, no further message is handed to the host. */
  readonly controller: AbortController;
  /**
   * Settles when live messages may be handed over: at once, or once the backfill of what
   * was missed while away is done (so that each channel's messages stay in order).
   */
  gate: Promise<void>;
  /**
   * The MESSAGE_CREATEs of each Discord channel (DM, guild channel, thread), by channel id:
   * normalized and handed over one after another, in arrival order. Channels do not wait
   * for each other, so one message's slow file download or channel lookup holds only the
   * messages behind it in its own conversation. An entry is removed once its last message is
   * done.
   */
  readonly chains: KeyedChains;
  /** `ctx.receive` calls not yet settled. */
  readonly receiving: Set<Promise<void>>;
  /** `ctx.disconnected` was called: the next start resumes. */
  reported: boolean;
  /** A loss to report once `start` resolved (the host ignores reports before). */
  pendingReport: { error: unknown } | undefined;
  /**
   * The host failed to take a message: no further message is handed over on this
   * connection (they are replayed, in order, after the reconnect).
   */
  refused: boolean;
  started: boolean;
  /**
   * File downloads started when their message arrived, by URL, until it is handled. One
   * resolves `undefined` when the host did not admit the message on its arrival (nothing was
   * fetched; its turn hands it over described), or could not be asked then (its turn asks).
   */
  readonly downloads: Map<string, Promise<InboundAttachment | undefined>>;
}

/** Receives in flight above which normalizing waits (backpressure on a slow host). */
const MAX_RECEIVING = 256;
/** Downloads started ahead of their message's turn, at most (more wait for their turn). */
const MAX_PREFETCHED = 16;
/** File downloads from the CDN under way at once, across channels (more wait for a slot). */
const MAX_DOWNLOADS = 8;
/**
 * Messages with files being prepared (downloaded, then handed over) at once, across channels:
 * with each channel's messages handled beside the others', this bounds the memory their
 * files take while they wait for the host.
 */
const MAX_PREPARING = 16;
/** The time limit of one file download from Discord's CDN. */
const FILE_DOWNLOAD_TIMEOUT_MS = 30_000;

const silentLogger: ChannelLogger = { debug() {}, info() {}, warn() {}, error() {} };

function positiveInteger(value: number | undefined, name: string, fallback: number, min = 0) {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < min) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return n;
}

/**
 * The Discord channel (v1 channel plugin): a bot in guild channels, threads and DMs.
 *
 * Inbound, from the gateway (intents GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES,
 * MESSAGE_CONTENT): a message in a guild channel is a `group` message of that channel; in a
 * thread (forum posts included), of the thread's parent with `threadId`; a DM is `direct`
 * with `chatId` = the author's user id (replies open or reuse the DM channel). `mentions.bot`
 * is an @-mention of the bot (or of its role) or a reply to one of its messages; `<@id>`
 * mentions read as `@name`. The bot's own messages, other bots', webhooks' and system
 * messages are ignored. Files arrive as Discord's CDN links, which expire: images and PDFs
 * (up to the `attachments` limits) are downloaded before the message is handed over and
 * go to the host inline, so a conversation keeps them; the others are described, their
 * link marked `privateUrl` (never given to a model).
 *
 * Delivery: the gateway session is resumed after a lost connection, and the sequence it
 * resumes from is the last event the host *took* (`ctx.receive` resolved): nothing received
 * but not yet taken is lost, nothing taken is handed over twice.
 *
 * Outbound, over REST: `POST /channels/{id}/messages` with `nonce` + `enforce_nonce` from
 * the host's idempotency key (a retried send cannot post twice) and `message_reference`
 * for replies; `PATCH` for edits; `POST .../typing`; reactions; files as attachments (a
 * caption over 2,000 characters follows the file as messages of its own, each recorded with
 * the host's `progress` so that a retry after Discord forgot the nonces resumes after them).
 * Rate limits are `@discordjs/rest`'s: short waits are sat out, long ones surface as a
 * retryable `ChannelSendError` with `retryAfterMs`.
 *
 * @example
 * ```ts
 * const discord = createDiscordChannel({ token: process.env.DISCORD_TOKEN! });
 * const channels = new ChannelManager({
 *   runtime,
 *   channels: [{ plugin: discord, dmPolicy: "pairing", groupPolicy: "open", requireMention: true }],
 * });
 * await channels.start(); // connected: the bot answers DMs and @-mentions
 * ```
 */
export class DiscordChannel implements ChannelPlugin {
  readonly specificationVersion = "v1" as const;
  readonly id: string;
  readonly meta = {
    label: "Discord",
    description: "A Discord bot: guild channels, threads and direct messages.",
    docsUrl: "https://github.com/beamclaw/beamclaw/tree/main/packages/channels#discord",
  };
  readonly capabilities: ChannelCapabilities = {
    directMessages: true,
    groups: true,
    threads: true,
    media: true,
    edits: true,
    reactions: true,
    typing: true,
    maxMessageLength: DISCORD_MAX_MESSAGE_LENGTH,
  };
  readonly gatewayMethods: Readonly<Record<string, ChannelGatewayMethod>>;

  readonly #options: DiscordChannelOptions;
  readonly #token: string;
  readonly #accountId: string;
  readonly #intents: number;
  readonly #maxRateLimitWaitMs: number;
  readonly #connectTimeoutMs: number;
  readonly #allowedMentions: APIAllowedMentions;
  readonly #directory = new DiscordDirectory();
  readonly #sessions = new GatewaySessions();
  readonly #identify: IdentifyThrottle;
  readonly #dmOpening = new Map<string, Promise<string>>();
  /** Channels with activity, least recent first. */
  readonly #activity = new Map<string, Activity>();
  /** Message ids taken (or skipped), oldest first: a backfill hands none of them over. */
  readonly #taken = new Set<string>();
  /** Message ids a backfill handed over: should Discord deliver one live too, it is skipped. */
  readonly #backfilled = new Set<string>();
  readonly #backfill: Required<DiscordBackfillOptions> | false;
  /** How much of inbound images and PDFs is downloaded and handed over inline. */
  readonly #inline: InlineLimits;
  /** CDN downloads under way, at most MAX_DOWNLOADS (prefetched or not). */
  readonly #downloadSlots = pLimit(MAX_DOWNLOADS);
  /** Messages with files being downloaded and handed over, at most MAX_PREPARING. */
  readonly #preparing = pLimit(MAX_PREPARING);
  /** Where the backfill position is saved (the last context's `state`). */
  #state: ChannelStateStore | undefined;
  /** The saved position was read (once per instance; memory knows better after). */
  #restored = false;
  /** The backfill position changed since it was last saved. */
  #dirty = false;
  #saveTimer: NodeJS.Timeout | undefined;
  /** The save in progress (saves run one after another). */
  #saving: Promise<void> = Promise.resolve();
  #libraries: DiscordLibraries | undefined;
  #client: { rest: REST; api: API } | undefined;
  #run: Run | null = null;
  /** A `start()` still loading or restoring, before its run exists (`stop()` aborts it). */
  #opening: AbortController | null = null;
  /** The `stop()` under way (draining, closing, saving): a second one waits for it. */
  readonly #stops = new Stops();

  constructor(options: DiscordChannelOptions) {
    if (typeof options?.token !== "string" || options.token.trim().length === 0) {
      throw new InvalidArgumentError("a Discord channel needs the bot token (options.token)");
    }
    // A token pasted with its HTTP prefix still works.
    this.#token = options.token.trim().replace(/^Bot\s+/i, "");
    this.id = options.id ?? "discord";
    this.#accountId = options.accountId ?? "default";
    this.#intents = positiveInteger(options.intents, "intents", DEFAULT_DISCORD_INTENTS);
    this.#maxRateLimitWaitMs = positiveInteger(
      options.maxRateLimitWaitMs,
      "maxRateLimitWaitMs",
      5_000,
    );
    this.#connectTimeoutMs = positiveInteger(
      options.connectTimeoutMs,
      "connectTimeoutMs",
      30_000,
      1,
    );
    this.#identify = new IdentifyThrottle(
      positiveInteger(options.identifyIntervalMs, "identifyIntervalMs", 5_000),
    );
    const parse = options.allowedMentions?.parse ?? ["users"];
    for (const kind of parse) {
      if (kind !== "users" && kind !== "roles" && kind !== "everyone") {
        throw new InvalidArgumentError(
          `allowedMentions.parse: unknown kind ${JSON.stringify(kind)}`,
        );
      }
    }
    this.#allowedMentions = {
      // The API's enum values are these strings.
      parse: [...parse] as unknown as NonNullable<APIAllowedMentions["parse"]>,
      replied_user: options.allowedMentions?.repliedUser ?? true,
    };
    this.#backfill =
      options.backfill === false
        ? false
        : {
            maxChannels: positiveInteger(
              options.backfill?.maxChannels,
              "backfill.maxChannels",
              50,
              1,
            ),
            maxMessagesPerChannel: positiveInteger(
              options.backfill?.maxMessagesPerChannel,
              "backfill.maxMessagesPerChannel",
              200,
              1,
            ),
            saveDelayMs: positiveInteger(
              options.backfill?.saveDelayMs,
              "backfill.saveDelayMs",
              2_000,
            ),
          };
    this.#inline = inlineLimits(options.attachments, "attachments");
    this.#options = options;
    this.gatewayMethods = {
      info: {
        description: "The bot user and the state of its gateway connection.",
        scope: "operator.read",
        handler: () => {
          const run = this.#run;
          const bot = this.#directory.bot;
          return {
            connected: run?.connection.open ?? false,
            user: bot === undefined ? null : { id: bot.id, username: bot.username },
            resumable: this.#sessions.resumable,
            resumed: run?.connection.resumed ?? false,
            latencyMs: run?.connection.latencyMs ?? null,
          };
        },
      },
    };
  }

  /** The bot's user once READY was received: `{ id, username }`. */
  get user(): { id: string; username: string } | undefined {
    const bot = this.#directory.bot;
    return bot === undefined ? undefined : { id: bot.id, username: bot.username };
  }

  /**
   * Connects. A second `start()` before `stop()` (also while the first is under way) throws
   * `AlreadyStartedError`; a `stop()` while this is under way ends it with `AbortedError`,
   * connecting nothing.
   */
  async start(ctx: ChannelContext): Promise<void> {
    if (this.#run !== null || this.#opening !== null) {
      throw new AlreadyStartedError(`discord channel "${this.id}" is already started`);
    }
    const controller = new AbortController();
    this.#opening = controller;
    let libraries: DiscordLibraries;
    try {
      libraries = await this.#load();
      if (this.#backfill !== false && ctx.state !== undefined) {
        this.#state = ctx.state;
        await this.#restore(ctx);
      }
    } finally {
      this.#opening = null;
    }
    if (controller.signal.aborted) {
      throw new AbortedError(`discord channel "${this.id}" was stopped while starting`);
    }
    const { rest } = this.#restClient(libraries);
    this.#sessions.newConnection();
    const run: Run = {
      ctx,
      controller,
      gate: Promise.resolve(),
      chains: new KeyedChains(),
      receiving: new Set(),
      reported: false,
      pendingReport: undefined,
      refused: false,
      downloads: new Map(),
      started: false,
      connection: new GatewayConnection({
        libraries,
        rest,
        token: this.#token,
        intents: this.#intents,
        sessions: this.#sessions,
        identify: this.#identify,
        settings: this.#options.gateway ?? {},
        logger: ctx.logger,
        onDispatch: (payload, shardId) => this.#dispatch(run, payload, shardId),
        onLost: (error) => this.#lost(run, error),
      }),
    };
    this.#run = run;
    // Channels had activity before: should this connection not resume the session, what was
    // missed is fetched first, and live messages wait behind it (so each channel's stay in
    // order).
    let openGate: (() => void) | undefined;
    if (this.#backfill !== false && this.#activity.size > 0) {
      run.gate = new Promise<void>((resolve) => {
        openGate = resolve;
      });
    }
    try {
      await run.connection.connect(
        AbortSignal.any([ctx.signal, controller.signal]),
        this.#connectTimeoutMs,
      );
    } catch (error) {
      openGate?.();
      if (this.#run === run) this.#run = null;
      controller.abort();
      await run.connection.close(true);
      throw error;
    }
    run.started = true;
    if (openGate !== undefined) {
      if (run.connection.resumed) openGate();
      else {
        void this.#backfillMissed(run)
          .catch((error: unknown) => ctx.logger.error("discord backfill failed", { error }))
          .finally(openGate);
      }
    }
    if (run.pendingReport !== undefined) this.#report(run, run.pendingReport.error);
    ctx.logger.info("discord connected", {
      user: this.#directory.bot?.username,
      resumed: run.connection.resumed,
    });
  }

  /**
   * Disconnects: messages already being handed to the host finish first (for up to 5 s), then
   * the gateway session is closed and the backfill position saved (where the host keeps
   * state). Resolves once all of that is done; a `stop()` while another is under way resolves
   * with it, one after the channel stopped resolves at once. A `stop()` while `start()` is
   * under way ends the start (see `start`).
   */
  async stop(): Promise<void> {
    this.#opening?.abort();
    const run = this.#run;
    if (run === null) return this.#stops.pending;
    this.#run = null;
    return this.#stops.run(() => this.#shutDown(run));
  }

  /** Ends `run`. */
  async #shutDown(run: Run): Promise<void> {
    run.controller.abort();
    // Messages already handed to the host finish first, so that their sequence is
    // acknowledged before the session is closed (and resumed after them next time).
    await settlesWithin([run.chains.drained(), ...run.receiving], STOP_DRAIN_MS);
    await run.connection.close(run.reported || run.connection.lost);
    clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    await this.#save(run.ctx.logger);
  }

  sendText(
    target: ChannelTarget,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    return this.#call("send a message", options, async (api, signal) => {
      this.#checkLength(text, "text");
      if (text.length === 0) {
        throw new ChannelSendError(this.id, "Discord cannot send an empty message", {
          isRetryable: false,
        });
      }
      const channelId = await this.#channelOf(target, signal);
      const message = await api.channels.createMessage(
        channelId,
        { content: text, ...this.#common(options) },
        { signal },
      );
      return { messageId: message.id };
    });
  }

  sendMedia(
    target: ChannelTarget,
    media: OutboundMedia,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    return this.#call("send a file", options, async (api, signal) => {
      const full = media.caption ?? "";
      const link = media.data === undefined && media.url !== undefined && media.kind !== "image";
      // A caption that does not fit in the file's message (with the link, for a link) follows
      // the file as messages of its own, rather than failing the file with it.
      const fits =
        (link ? full.length + 1 + media.url!.length : full.length) <= DISCORD_MAX_MESSAGE_LENGTH;
      const caption = fits ? full : "";
      let body: Parameters<API["channels"]["createMessage"]>[1];
      if (media.data !== undefined) {
        const data = Buffer.from(media.data, "base64");
        const name = media.name ?? `${media.kind}${extensionOf(media.mediaType)}`;
        body = {
          ...(caption.length > 0 ? { content: caption } : {}),
          files: [
            {
              name,
              data,
              ...(media.mediaType === undefined ? {} : { contentType: media.mediaType }),
            },
          ],
        };
      } else if (media.url !== undefined) {
        // Discord takes files as uploads only; a URL is shown as an embedded image, or as a
        // link Discord unfurls.
        body =
          media.kind === "image"
            ? {
                ...(caption.length > 0 ? { content: caption } : {}),
                embeds: [{ image: { url: media.url } }],
              }
            : { content: caption.length > 0 ? `${caption}\n${media.url}` : media.url };
      } else {
        throw new ChannelSendError(this.id, "media needs a url or data", { isRetryable: false });
      }
      this.#checkLength(body.content ?? "", "caption");
      const channelId = await this.#channelOf(target, signal);
      // The messages an earlier attempt of this delivery got confirmed (the host's outbox
      // keeps them): the file first, then the caption's pieces. Discord drops a repeated
      // `nonce` for a few minutes only, so a retry after a longer wait skips them itself.
      const progress = options?.progress;
      const done = progress?.sent ?? [];
      let fileId = done[0];
      if (fileId === undefined) {
        const message = await api.channels.createMessage(
          channelId,
          { ...body, ...this.#common(options) },
          { signal },
        );
        fileId = message.id;
        await progress?.record(fileId);
      }
      if (!fits) {
        const parts = chunkText(full, DISCORD_MAX_MESSAGE_LENGTH);
        const key = options?.idempotencyKey;
        for (let i = Math.max(0, done.length - 1); i < parts.length; i++) {
          const message = await api.channels.createMessage(
            channelId,
            {
              content: parts[i]!,
              ...this.#common(key === undefined ? {} : { idempotencyKey: `${key}:caption:${i}` }),
            },
            { signal },
          );
          await progress?.record(message.id);
        }
      }
      return { messageId: fileId };
    });
  }

  async edit(
    target: ChannelTarget,
    messageId: string,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    await this.#call("edit a message", options, async (api, signal) => {
      this.#checkLength(text, "text");
      const channelId = await this.#channelOf(target, signal);
      await api.channels.editMessage(
        channelId,
        messageId,
        { content: text, allowed_mentions: this.#allowedMentions },
        { signal },
      );
    });
  }

  async typing(target: ChannelTarget, options?: ChannelSendOptions): Promise<void> {
    await this.#call("show typing", options, async (api, signal) => {
      await api.channels.showTyping(await this.#channelOf(target, signal), { signal });
    });
  }

  async react(
    target: ChannelTarget,
    messageId: string,
    emoji: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    await this.#call("add a reaction", options, async (api, signal) => {
      const channelId = await this.#channelOf(target, signal);
      await api.channels.addMessageReaction(channelId, messageId, reactionEmoji(emoji), {
        signal,
      });
    });
  }

  // ------------------------------------------------------------------ inbound

  #dispatch(run: Run, payload: GatewayDispatch, shardId: number): void {
    this.#directory.apply(payload.t, payload.d);
    const ticket = this.#sessions.begin(shardId, payload.s);
    if (ticket === "replayed") {
      run.ctx.logger.debug("discord event replayed after a resume; already taken", {
        type: payload.t,
        sequence: payload.s,
      });
      return;
    }
    if (payload.t !== "MESSAGE_CREATE") {
      ticket.complete();
      return;
    }
    const { urls: prefetched, admitted } = this.#prefetch(run, payload.d);
    const channelId = (payload.d as { channel_id?: unknown } | null)?.channel_id;
    const key = typeof channelId === "string" ? channelId : "";
    void run.chains.run(
      key,
      () =>
        this.#handleMessage(run, payload, ticket, admitted)
          .catch((error: unknown) => {
            // toInbound does not throw on odd payloads; this is a bug. Skip the one message
            // rather than replay it into the same failure after every reconnect.
            run.ctx.logger.error("discord message could not be handled; skipped", {
              sequence: payload.s,
              error,
            });
            ticket.complete();
          })
          .finally(() => {
            // A message skipped (or not handed over) leaves no download behind.
            for (const url of prefetched) run.downloads.delete(url);
          }),
      run.gate,
    );
  }

  /**
   * Normalizes a MESSAGE_CREATE in its turn and hands it over, its files downloaded first
   * when the host takes it: `admitted` is the host's answer (`ctx.admits`) given as the
   * message arrived, if it was asked then (undefined otherwise: asked now), so that it is
   * asked once per message.
   */
  async #handleMessage(
    run: Run,
    payload: GatewayDispatch,
    ticket: { complete(): void },
    admitted: Promise<boolean | undefined> | undefined,
  ): Promise<void> {
    const { ctx, controller } = run;
    const data = payload.d as { id?: unknown; channel_id?: unknown; guild_id?: unknown };
    const messageId = typeof data?.id === "string" ? data.id : undefined;
    const channelId = typeof data?.channel_id === "string" ? data.channel_id : undefined;
    if (messageId !== undefined && this.#backfilled.has(messageId)) {
      // Handed over already by a backfill: not twice. (Other redeliveries go to the host,
      // which suppresses duplicates itself.)
      ticket.complete();
      return;
    }
    const taken = { complete: () => ticket.complete() };
    if (messageId !== undefined && channelId !== undefined) {
      this.#seen(
        channelId,
        messageId,
        typeof data.guild_id === "string" ? data.guild_id : undefined,
      );
      taken.complete = () => {
        this.#markTaken(channelId, messageId);
        ticket.complete();
      };
    }
    // Not taken now: left unacknowledged, the resumed session replays it.
    if (controller.signal.aborted || ctx.signal.aborted || run.refused) return;
    const decision = await toInbound(payload.d, {
      directory: this.#directory,
      allowBots: this.#options.allowBots ?? false,
      lookupChannel: (id) => this.#lookupChannel(id, controller.signal, ctx.logger),
    });
    if (decision.kind === "skip") {
      if (decision.reason.startsWith("malformed")) {
        ctx.logger.warn("discord message skipped", {
          reason: decision.reason,
          sequence: payload.s,
        });
      }
      taken.complete();
      return;
    }
    // Its files are downloaded before it is handed over (if the host takes it: nothing is
    // fetched for a sender or chat it turns away); later messages of its channel wait
    // behind it (the channel's chain), so they still reach the host in order. At most
    // MAX_PREPARING such messages across channels hold their files at once.
    if (
      decision.input.attachments?.some((a) => this.#due(a)) === true &&
      ((await admitted) ?? (await this.#filesWanted(run, decision.input)))
    ) {
      await this.#preparing(async () => {
        const withFiles = await this.#inlineFiles(run, decision.input);
        this.#handOver(run, await this.#capacity(run, withFiles), taken);
      });
    } else {
      this.#handOver(run, await this.#capacity(run, decision.input), taken);
    }
  }

  /**
   * `input` once the host has room for it (fewer than MAX_RECEIVING hand-overs in flight),
   * or undefined when it must not be handed over any more: stopped meanwhile (not taken, the
   * resumed session replays it) or the host refused an earlier message.
   */
  async #capacity(run: Run, input: InboundMessageInput): Promise<InboundMessageInput | undefined> {
    while (run.receiving.size >= MAX_RECEIVING) await Promise.race(run.receiving);
    if (run.controller.signal.aborted || run.ctx.signal.aborted || run.refused) return undefined;
    return input;
  }

  /** Hands `message` to the host; `taken` once it is in its durable queue (or refused for good). */
  #handOver(run: Run, message: InboundMessageInput | undefined, taken: { complete(): void }): void {
    if (message === undefined) return;
    const { ctx } = run;
    const input = { ...message, accountId: this.#accountId };
    let receiving: Promise<void>;
    try {
      receiving = ctx.receive(input).then(
        (result) => {
          taken.complete();
          ctx.logger.debug("discord message taken", {
            messageId: input.messageId,
            status: result.status,
          });
        },
        (error: unknown) => this.#refused(run, error, input.messageId, () => taken.complete()),
      );
    } catch (error) {
      receiving = Promise.resolve(
        this.#refused(run, error, input.messageId, () => taken.complete()),
      );
    }
    run.receiving.add(receiving);
    void receiving.finally(() => run.receiving.delete(receiving));
  }

  /** What a failed `ctx.receive` means for the message. */
  #refused(run: Run, error: unknown, messageId: string, acknowledge: () => void): void {
    if (InvalidInboundError.isInstance(error)) {
      // It will never be taken: acknowledge it rather than have it replayed for ever.
      run.ctx.logger.warn("discord message refused as malformed", { messageId, error });
      acknowledge();
      return;
    }
    if (NoProcessError.isInstance(error)) return; // a stale context: the next connection replays it
    // The host could not take it (its store failed, say): reconnect, and the resumed session
    // replays it from the last acknowledged event.
    run.refused = true;
    run.ctx.logger.error("discord message could not be handed to the host; reconnecting", {
      messageId,
      error,
    });
    this.#report(run, error);
  }

  /** A message of `channelId` arrived: the channel had activity, the message is in flight. */
  #seen(channelId: string, messageId: string, guildId: string | undefined): void {
    const activity = this.#activity.get(channelId) ?? {
      lastTaken: undefined,
      guildId,
      inFlight: new Set<string>(),
    };
    // Most recent activity last.
    this.#activity.delete(channelId);
    this.#activity.set(channelId, activity);
    if (guildId !== undefined) activity.guildId = guildId;
    activity.inFlight.add(messageId);
    if (this.#activity.size > MAX_ACTIVITY) {
      this.#activity.delete(this.#activity.keys().next().value!);
    }
    this.#changed();
  }

  /** A message was taken by the host (or skipped as not for it): never hand it over again. */
  #markTaken(channelId: string, messageId: string): void {
    const activity = this.#activity.get(channelId);
    if (activity !== undefined) {
      activity.inFlight.delete(messageId);
      if (activity.lastTaken === undefined || compareIds(messageId, activity.lastTaken) > 0) {
        activity.lastTaken = messageId;
      }
      this.#changed();
    }
    this.#taken.add(messageId);
    if (this.#taken.size > MAX_TAKEN_IDS) this.#taken.delete(this.#taken.values().next().value!);
  }

  /**
   * After a connection that identified afresh (the old session could not be resumed, so its
   * missed events will not be replayed): fetches, per channel with activity (the most recent
   * first, up to `maxChannels`), the messages after the last one taken — or before the oldest
   * still in flight — and hands them over oldest first, skipping what was taken before.
   */
  async #backfillMissed(run: Run): Promise<void> {
    const backfill = this.#backfill;
    if (backfill === false) return;
    const { ctx, controller } = run;
    const signal = AbortSignal.any([ctx.signal, controller.signal]);
    const { api } = this.#restClient(await this.#load());
    const channels = [...this.#activity.entries()].reverse().slice(0, backfill.maxChannels);
    let handed = 0;
    for (const [channelId, activity] of channels) {
      let after = backfillAfter(activity);
      if (after === undefined) continue;
      let fetched = 0;
      while (fetched < backfill.maxMessagesPerChannel) {
        if (signal.aborted || run.refused) return;
        const limit = Math.min(100, backfill.maxMessagesPerChannel - fetched);
        let page: Array<Record<string, unknown>>;
        try {
          page = (await api.channels.getMessages(
            channelId,
            { after, limit },
            { signal },
          )) as unknown as Array<Record<string, unknown>>;
        } catch (error) {
          if (signal.aborted) return;
          // A channel the bot may no longer read (deleted, permissions): the others go on.
          ctx.logger.warn("discord backfill of a channel failed", { channelId, error });
          break;
        }
        // Discord lists the newest first; hand them over oldest first.
        page.sort((a, b) => compareIds(String(a.id), String(b.id)));
        for (const message of page) {
          const id = String(message.id);
          fetched++;
          after = id;
          if (this.#taken.has(id)) continue;
          const data = {
            ...message,
            channel_id: channelId,
            ...(activity.guildId === undefined ? {} : { guild_id: activity.guildId }),
          };
          if (!(await this.#takeBackfilled(run, channelId, id, data))) return;
          handed++;
        }
        if (page.length < limit) break;
      }
    }
    if (handed > 0) {
      ctx.logger.info("discord session could not be resumed; missed messages fetched", {
        messages: handed,
      });
    }
  }

  /** Reads the saved backfill position into memory (once; before the first connection). */
  async #restore(ctx: ChannelContext): Promise<void> {
    if (this.#restored || this.#state === undefined) return;
    this.#restored = true;
    let saved: SavedBackfill | undefined;
    try {
      saved = await this.#state.get<SavedBackfill & JsonObject>(
        this.#accountId,
        BACKFILL_STATE_KEY,
      );
    } catch (error) {
      ctx.logger.warn("discord: the saved backfill position could not be read", { error });
      return;
    }
    if (saved?.v !== 1 || !Array.isArray(saved.channels)) return;
    let restored = 0;
    for (const entry of saved.channels) {
      if (!Array.isArray(entry)) continue;
      const [channelId, after, guildId] = entry;
      if (typeof channelId !== "string" || typeof after !== "string" || !SNOWFLAKE.test(after)) {
        continue;
      }
      if (this.#activity.has(channelId)) continue;
      this.#activity.set(channelId, {
        lastTaken: after,
        guildId: typeof guildId === "string" ? guildId : undefined,
        inFlight: new Set(),
      });
      restored++;
    }
    if (restored > 0) {
      ctx.logger.debug("discord: saved backfill position read", { channels: restored });
    }
  }

  /** The backfill position changed: saved after `saveDelayMs` (never armed while stopped). */
  #changed(): void {
    if (this.#backfill === false || this.#state === undefined) return;
    this.#dirty = true;
    const run = this.#run;
    if (this.#saveTimer !== undefined || run === null) return; // stop saves what is left
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      void this.#save(run.ctx.logger);
    }, this.#backfill.saveDelayMs);
  }

  /** Saves the backfill position if it changed. Never throws. */
  #save(logger: ChannelLogger): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      const state = this.#state;
      const backfill = this.#backfill;
      if (!this.#dirty || state === undefined || backfill === false) return;
      this.#dirty = false;
      const channels: SavedBackfill["channels"] = [];
      for (const [channelId, activity] of [...this.#activity].slice(-backfill.maxChannels)) {
        const after = backfillAfter(activity);
        if (after !== undefined) channels.push([channelId, after, activity.guildId ?? null]);
      }
      try {
        await state.set(this.#accountId, BACKFILL_STATE_KEY, {
          v: 1,
          channels,
        } satisfies SavedBackfill);
      } catch (error) {
        this.#dirty = true;
        logger.warn("discord: the backfill position could not be saved", { error });
      }
    });
    return this.#saving;
  }

  /** Hands one backfilled message over. False when the host could not take it (stop here). */
  async #takeBackfilled(
    run: Run,
    channelId: string,
    messageId: string,
    data: Record<string, unknown>,
  ): Promise<boolean> {
    const { ctx, controller } = run;
    this.#seen(channelId, messageId, undefined);
    const decision = await toInbound(data, {
      directory: this.#directory,
      allowBots: this.#options.allowBots ?? false,
      lookupChannel: (id) => this.#lookupChannel(id, controller.signal, ctx.logger),
    });
    if (decision.kind === "skip") {
      this.#markTaken(channelId, messageId);
      return true;
    }
    if (controller.signal.aborted || ctx.signal.aborted || run.refused) return false;
    const withFiles = (await this.#filesWanted(run, decision.input))
      ? await this.#inlineFiles(run, decision.input)
      : decision.input;
    if (controller.signal.aborted || ctx.signal.aborted || run.refused) return false;
    const input = { ...withFiles, accountId: this.#accountId };
    try {
      await ctx.receive(input);
      this.#markTaken(channelId, messageId);
      this.#backfilled.add(messageId);
      if (this.#backfilled.size > MAX_TAKEN_IDS) {
        this.#backfilled.delete(this.#backfilled.values().next().value!);
      }
      return true;
    } catch (error) {
      this.#refused(run, error, messageId, () => this.#markTaken(channelId, messageId));
      return InvalidInboundError.isInstance(error);
    }
  }

  /** Whether an attachment is one this channel downloads (an image, PDF, text or audio within the limits). */
  #due(attachment: InboundAttachment): boolean {
    return (
      attachment.url !== undefined &&
      attachment.data === undefined &&
      inlineLimitOf(attachment, this.#inline) > 0
    );
  }

  /**
   * Starts downloading a MESSAGE_CREATE's files as it arrives (at most
   * {@link MAX_PREFETCHED} at once), before the messages ahead of it are handed over: a slow
   * download then holds its own message only while those ahead are still being handled.
   * Nothing is downloaded for a message that will not be handed over: one the channel skips
   * (see `skipReason`), one a backfill handed over already, one arriving after the host
   * refused an earlier message or the run ended; nor, where the host says whom it takes
   * (`ctx.admits`), before it said it takes this one. Returns the URLs whose downloads it
   * started, and the host's answer when it asked (for the message's turn, not to ask twice).
   */
  #prefetch(run: Run, data: unknown): { urls: string[]; admitted?: Promise<boolean | undefined> } {
    if (run.controller.signal.aborted || run.ctx.signal.aborted || run.refused) return { urls: [] };
    const allowBots = this.#options.allowBots ?? false;
    if (skipReason(data, { directory: this.#directory, allowBots }) !== undefined) {
      return { urls: [] };
    }
    // A string id: skipReason checked it.
    const message = data as { id: string };
    if (this.#backfilled.has(message.id)) return { urls: [] };
    const messageId = message.id;
    const due = discordMessageAttachments(message).filter((a) => this.#due(a));
    if (due.length === 0 || run.downloads.size >= MAX_PREFETCHED) return { urls: [] };
    const admitted = run.ctx.admits === undefined ? undefined : this.#admittedAhead(run, data);
    const started: string[] = [];
    for (const attachment of due) {
      if (run.downloads.size >= MAX_PREFETCHED) break;
      if (run.downloads.has(attachment.url!)) continue;
      run.downloads.set(
        attachment.url!,
        admitted === undefined
          ? this.#download(run, attachment, messageId)
          : admitted.then((yes) =>
              yes === true ? this.#download(run, attachment, messageId) : undefined,
            ),
      );
      started.push(attachment.url!);
    }
    return { urls: started, ...(admitted === undefined ? {} : { admitted }) };
  }

  /**
   * Whether the host takes a message as it arrives, for its downloads to start ahead of its
   * turn: asked from what the channel knows of its chat now, without a look-up. `undefined`
   * when it was not asked (a message in a channel the channel does not know yet is not
   * fetched ahead; its turn asks). Never rejects.
   */
  async #admittedAhead(run: Run, data: unknown): Promise<boolean | undefined> {
    let unknown = false;
    try {
      const decision = await toInbound(data, {
        directory: this.#directory,
        allowBots: this.#options.allowBots ?? false,
        lookupChannel: async () => {
          unknown = true;
          return undefined;
        },
      });
      if (decision.kind !== "message" || unknown) return undefined;
      return await this.#filesWanted(run, decision.input);
    } catch {
      return undefined;
    }
  }

  /** Whether the host takes the message, so that its files are worth downloading. */
  #filesWanted(run: Run, input: InboundMessageInput): Promise<boolean> {
    return shouldDownloadFiles(run.ctx, { ...input, accountId: this.#accountId });
  }

  /**
   * The message with its images, PDFs, text files and audio (within the `attachments`
   * limits) downloaded from Discord's CDN, side by side (those prefetched when the event
   * arrived are taken as they are), and inline. Never throws: a file that could not be
   * downloaded is handed over without its content. Should the run end meanwhile (the
   * channel stopping), the downloads end at once and the caller does not hand the message
   * over.
   */
  async #inlineFiles(run: Run, input: InboundMessageInput): Promise<InboundMessageInput> {
    const attachments = input.attachments;
    if (attachments === undefined || !attachments.some((a) => this.#due(a))) return input;
    const resolved = await Promise.all(
      attachments.map(async (attachment) => {
        if (!this.#due(attachment)) return attachment;
        const url = attachment.url!;
        const started = run.downloads.get(url);
        run.downloads.delete(url);
        return (await started) ?? this.#download(run, attachment, input.messageId);
      }),
    );
    return { ...input, attachments: resolved };
  }

  /**
   * One file from the CDN, inline once its bytes proved to be what it claims; as it was when
   * the download failed (logged: an error status, an expired link, over the limit, content
   * that is not what it claims, the time limit) or the run ended. Never rejects.
   */
  async #download(
    run: Run,
    attachment: InboundAttachment,
    messageId: string | undefined,
  ): Promise<InboundAttachment> {
    const limit = inlineLimitOf(attachment, this.#inline);
    const signal = AbortSignal.any([run.ctx.signal, run.controller.signal]);
    try {
      // The global fetch, looked up now: the process's HTTP stack (dispatcher, proxy).
      // The CDN needs no credentials; the bot token is never sent to it.
      const downloaded = await this.#downloadSlots(() =>
        downloadFile(attachment.url!, {
          maxBytes: limit,
          timeoutMs: FILE_DOWNLOAD_TIMEOUT_MS,
          signal,
        }),
      );
      if (downloaded === undefined) {
        throw new FileDownloadError(`the file is larger than ${limit} bytes`);
      }
      return withInlineData(attachment, downloaded.data);
    } catch (error) {
      // Stopping: the message is not handed over, nothing to report.
      if (signal.aborted) return attachment;
      // The text still reaches the host; only the file's content is missing.
      run.ctx.logger.warn("discord file could not be downloaded", {
        messageId,
        name: attachment.name,
        error,
      });
      return attachment;
    }
  }

  #lost(run: Run, error: DiscordGatewayError): void {
    run.ctx.logger.warn("discord gateway connection lost", {
      closeCode: error.closeCode,
      error,
    });
    this.#report(run, error);
  }

  #report(run: Run, error: unknown): void {
    if (run.reported || this.#run !== run) return;
    if (!run.started) {
      run.pendingReport ??= { error };
      return;
    }
    run.reported = true;
    run.ctx.disconnected(error);
  }

  async #lookupChannel(
    channelId: string,
    signal: AbortSignal,
    logger: ChannelLogger,
  ): Promise<KnownChannel | undefined> {
    try {
      const { api } = this.#restClient(await this.#load());
      const channel = toKnownChannel(await api.channels.get(channelId, { signal }));
      if (channel !== undefined) this.#directory.rememberChannel(channel);
      return channel;
    } catch (error) {
      // The message still goes to the host, under its own channel: better than losing it.
      logger.warn("discord channel look-up failed; the message is taken as the channel's own", {
        channelId,
        error,
      });
      return undefined;
    }
  }

  // ------------------------------------------------------------------ outbound

  async #load(): Promise<DiscordLibraries> {
    this.#libraries ??= await loadDiscordLibraries();
    return this.#libraries;
  }

  /** The REST client, made once: its rate-limit buckets outlive reconnects. No timers. */
  #restClient(libraries: DiscordLibraries): { rest: REST; api: API } {
    if (this.#client === undefined) {
      // The global fetch: REST traffic goes through the process's own HTTP stack (its
      // dispatcher and proxy settings).
      const makeRequest =
        this.#options.rest?.makeRequest ??
        (((url: string, init: RequestInit) =>
          fetch(url, init)) as unknown as RESTOptions["makeRequest"]);
      const rest = new libraries.rest.REST({
        ...this.#options.rest,
        // @discordjs/rest reads only the headers of a 429 and of a 5xx (retried, or an
        // `HTTPError`): their body is cancelled, not left holding its connection.
        makeRequest: async (url, init) => {
          const response = await makeRequest(url, init);
          return response.status === 429 || response.status >= 500
            ? withoutBody(response)
            : response;
        },
        // The library's sweeps run on intervals, and stop leaves no timer: the guard below
        // drops idle handlers (one per route and channel) itself.
        hashSweepInterval: 0,
        handlerSweepInterval: 0,
        rejectOnRateLimit: (limit: RateLimitData) => this.#rejectRateLimit(limit),
      });
      // A known limit is refused or waited out before @discordjs/rest arms a timer for it.
      guardRateLimits(rest, libraries, this.#maxRateLimitWaitMs);
      rest.on("rateLimited", (limit) => {
        const logger = this.#run?.ctx.logger ?? silentLogger;
        // A route's bucket running dry is routine; a global limit is worth a look.
        (limit.global ? logger.warn : logger.debug).call(logger, "discord rate limit", {
          route: limit.route,
          global: limit.global,
          retryAfterMs: limit.retryAfter,
        });
      });
      this.#client = { rest, api: new libraries.core.API(rest) };
    }
    // Set again on each use: @discordjs/rest forgets the token after a 401.
    this.#client.rest.setToken(this.#token);
    return this.#client;
  }

  #rejectRateLimit(limit: RateLimitData): boolean {
    return limit.retryAfter > this.#maxRateLimitWaitMs;
  }

  async #call<T>(
    what: string,
    options: ChannelSendOptions | undefined,
    body: (api: API, signal: AbortSignal | undefined) => Promise<T>,
  ): Promise<T> {
    const signal = options?.signal;
    try {
      if (signal?.aborted) throw signal.reason ?? new Error("aborted");
      const { api } = this.#restClient(await this.#load());
      return await body(api, signal);
    } catch (error) {
      throw toSendError(this.id, what, error, this.#libraries, signal);
    }
  }

  #checkLength(text: string, what: string): void {
    if (text.length > DISCORD_MAX_MESSAGE_LENGTH) {
      throw new ChannelSendError(
        this.id,
        `the ${what} is ${text.length} characters; Discord takes at most ${DISCORD_MAX_MESSAGE_LENGTH}`,
        { isRetryable: false },
      );
    }
  }

  /** `nonce`, `allowed_mentions` and `message_reference` of a new message. */
  #common(options: ChannelSendOptions | undefined) {
    return {
      allowed_mentions: this.#allowedMentions,
      ...(options?.idempotencyKey === undefined
        ? {}
        : { nonce: nonceFor(options.idempotencyKey), enforce_nonce: true }),
      ...(options?.replyToMessageId === undefined
        ? {}
        : {
            // A reply to a deleted message is still sent, as a plain message.
            message_reference: { message_id: options.replyToMessageId, fail_if_not_exists: false },
          }),
    };
  }

  /** The Discord channel a target means: its thread, its DM channel, or the channel itself. */
  async #channelOf(target: ChannelTarget, signal: AbortSignal | undefined): Promise<string> {
    if (typeof target?.chatId !== "string" || target.chatId.length === 0) {
      throw new ChannelSendError(this.id, "target.chatId must be a non-empty string", {
        isRetryable: false,
      });
    }
    if (target.threadId !== undefined && target.threadId.length > 0) return target.threadId;
    if (target.chatType !== "direct") return target.chatId;
    return this.#dmChannel(target.chatId, signal);
  }

  /** The DM channel with a user: known from their messages, else opened (`POST /users/@me/channels`). */
  async #dmChannel(userId: string, signal: AbortSignal | undefined): Promise<string> {
    const known = this.#directory.dmChannelOf(userId);
    if (known !== undefined) return known;
    let opening = this.#dmOpening.get(userId);
    if (opening === undefined) {
      opening = (async () => {
        const { api } = this.#restClient(await this.#load());
        const channel = await api.users.createDM(userId, signal === undefined ? {} : { signal });
        this.#directory.rememberDmChannel(userId, channel.id);
        return channel.id;
      })().finally(() => this.#dmOpening.delete(userId));
      this.#dmOpening.set(userId, opening);
    }
    return opening;
  }
}

function extensionOf(mediaType: string | undefined): string {
  const subtype = mediaType?.split("/")[1]?.split(/[;+]/)[0];
  return subtype === undefined || subtype.length === 0 ? "" : `.${subtype}`;
}

/**
 * Creates a {@link DiscordChannel}.
 *
 * @throws InvalidArgumentError for a missing token or an invalid option.
 * @example
 * ```ts
 * const discord = createDiscordChannel({ token: process.env.DISCORD_TOKEN! });
 * ```
 */
export function createDiscordChannel(options: DiscordChannelOptions): DiscordChannel {
  return new DiscordChannel(options);
}
