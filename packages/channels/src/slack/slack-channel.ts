/**
 * The Slack channel: Socket Mode or the Events API over HTTP in, the Web API out, on Slack's
 * official `@slack/web-api` and `@slack/socket-mode`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import {
  AbortedError,
  AlreadyStartedError,
  BeamClawError,
  type ChannelCapabilities,
  type ChannelContext,
  type ChannelGatewayMethod,
  type ChannelLogger,
  type ChannelPlugin,
  ChannelSendError,
  type ChannelSendOptions,
  type ChannelTarget,
  type InboundAttachment,
  type InboundMessageInput,
  InvalidArgumentError,
  InvalidInboundError,
  type JsonValue,
  NoProcessError,
  type ReceiveResult,
  type SentMessage,
} from "@beamclaw/core";
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
import { integerOption, MAX_TIMER_MS } from "../shared/options.js";
import { closesGracefully, STOP_DRAIN_MS, settlesWithin } from "../shared/settle.js";
import { Stops } from "../shared/stops.js";
import { eventsApiListener, type SlackDelivery } from "./events-api.js";
import {
  attachmentOfSlackFile,
  inboundOf,
  readSlackMessage,
  type SlackBotIdentity,
  type SlackFileRef,
  type SlackMessage,
} from "./inbound.js";
import { RecentMap } from "./recent.js";
import { SLACK_DEFAULT_TOLERANCE_MS } from "./signature.js";
import { SocketModeConnection, type SocketModeEnvelope } from "./socket-mode.js";
import {
  escapeSlackText,
  SLACK_MENTION_KINDS,
  type SlackAllowedMentions,
  type SlackMentionKind,
} from "./text.js";
import {
  SlackApiError,
  SlackWebApi,
  slackErrorDetails,
  toChannelSendError,
  toSlackApiError,
  toSlackLogger,
} from "./web-api.js";

/** How the channel receives events. */
export type SlackMode = "socket" | "http";

/** Options of {@link createSlackChannel}. */
export interface SlackChannelOptions {
  /** The channel id (and session-key segment). Default `slack`. */
  id?: string;
  /** The bot token (`xoxb-...`): every Web API call, `chat:write` to reply. */
  botToken: string;
  /**
   * `socket`: Socket Mode, a WebSocket the app opens (no public URL). `http`: the Events API,
   * Slack POSTs to this channel's HTTP endpoint. Default `socket` when `appToken` is given,
   * else `http`.
   */
  mode?: SlackMode;
  /** The app-level token (`xapp-...`, scope `connections:write`) for Socket Mode. */
  appToken?: string;
  /** The app's signing secret, to verify Events API requests (HTTP mode). */
  signingSecret?: string;
  /** HTTP mode: interface to listen on. Default `127.0.0.1` (put a reverse proxy in front). */
  host?: string;
  /** HTTP mode: port; 0 picks a free one (see `url` after `start`). Default 3000. */
  port?: number;
  /** HTTP mode: the Request URL's path. Default `/slack/events`. */
  path?: string;
  /** HTTP mode: the replay window of request signatures. Default 300 000 (five minutes). */
  toleranceMs?: number;
  /** HTTP mode: the largest request body. Default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * The bot user's id (`U...`). Given, `start` skips its `auth.test` call; else it learns the
   * id (to recognise mentions of the bot and its own messages) from `auth.test`.
   */
  botUserId?: string;
  /** Where the Web API is. Default `https://slack.com/api/`. */
  slackApiUrl?: string;
  /** Time limit of one Web API request, ms. Default 10 000. */
  timeoutMs?: number;
  /**
   * The text limit declared to the host, which chunks longer replies (1..8000). Default 4000,
   * Slack's recommendation; Slack truncates `text` at 40 000 and escaping can grow a text up
   * to five times, hence the ceiling.
   */
  maxMessageLength?: number;
  /**
   * Look senders' names up with `users.info` (scope `users:read`; cached for an hour). Slack's
   * events carry only user ids. Default true.
   */
  resolveUserNames?: boolean;
  /**
   * Answer a group message that was not in a thread by starting a thread under it (the host
   * passes the message it answers as `replyToMessageId`). Default false: the answer goes to
   * the channel. Answers to messages in a thread always stay in the thread.
   */
  replyInThread?: boolean;
  /**
   * Which mentions in the bot's messages may ping. Default users only: `<!here>`,
   * `<!channel>`, `<!everyone>` and user groups (`<!subteam^ID>`) in a model's text are sent
   * escaped, shown as written, and ping nobody. `{ parse: ["users", "everyone"] }` lets
   * broadcasts through.
   */
  allowedMentions?: SlackAllowedMentions;
  /**
   * What to do with the files people share (`files` of a `file_share` message). Images (PNG,
   * JPEG, GIF, WebP) and PDFs up to the limits (default 5 MiB and 10 MiB) are downloaded
   * from Slack with the bot token — scope `files:read` — and handed to the host inline
   * (base64 `data`), so that the model sees or reads them; each download has 30 s (or
   * `timeoutMs`, if longer). Other files, larger ones and ones that could not be downloaded
   * are handed over described (kind, type, name, size, and Slack's private URL, which the
   * host never gives to a model). 0 turns a kind of download off.
   */
  attachments?: InlineAttachmentOptions;
  /**
   * Events API over HTTP: how long an event may take to be handed to the host before its
   * request is answered 200 anyway, ms (1..2999). Default 2500. Slack counts a delivery not
   * answered within 3 s as failed (`http_timeout`), retries it at once, then after 1 and 5
   * minutes, and may turn event delivery off for an app whose deliveries keep failing;
   * downloading a message's files (up to 30 s) or looking its sender's name up can take
   * longer than that.
   *
   * The trade-off: an event taken within the deadline keeps at-least-once delivery (a host
   * failure answers 500 or 503, and Slack retries). One still being taken when the deadline
   * passes is answered `{ ok: true, status: "pending" }` and goes on; should it fail later
   * (the host refuses it, or the channel stops before it was handed over), Slack is not told:
   * the failure is logged (`error`, with the `event_id`) and the event is lost. A redelivery
   * of an event still being taken is not handed over a second time: it waits for the same
   * taking (up to its own deadline) and gets its answer.
   */
  ackDeadlineMs?: number;
  /** Socket Mode heartbeat settings of `@slack/socket-mode` (defaults 5 000 and 30 000). */
  socketMode?: { clientPingTimeoutMs?: number; serverPingTimeoutMs?: number };
  /** Socket Mode: how long `start` waits for Slack's `hello`. Default 10 000. */
  connectTimeoutMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** How long an Events API request waits for its event to be taken, ms (Slack waits 3 s). */
const SLACK_DEFAULT_ACK_DEADLINE_MS = 2_500;
/** The shortest time limit of one file download, ms (`timeoutMs` when it is longer). */
const FILE_DOWNLOAD_TIMEOUT_MS = 30_000;
/** File downloads under way at once, across channels (more wait for a slot). */
const MAX_DOWNLOADS = 8;

/** Hosts Slack serves files from (`url_private`): the only ones the bot token is sent to. */
const SLACK_FILE_HOSTS = ["slack.com", "slack-gov.com"];

/** Slack asks for a new connection with these `disconnect` reasons; the channel reconnects itself. */
const REFRESH_REASONS = new Set(["refresh_requested", "warning"]);

/** Slack errors that no retry will fix: the channel is `failed` until an operator acts. */
const CREDENTIAL_ERRORS = new Set([
  "invalid_auth",
  "not_authed",
  "account_inactive",
  "token_revoked",
  "token_expired",
  "missing_scope",
  "not_allowed_token_type",
  "invalid_token",
]);

/**
 * A Socket Mode connection was lost (dropped, or closed by Slack for a reason other than a
 * routine refresh). The channel reports it with `ctx.disconnected`; the host reconnects.
 */
export class SlackConnectionError extends BeamClawError {
  /** The `reason` of Slack's `disconnect` message, when Slack sent one. */
  readonly reason: string | undefined;
  constructor(message: string, reason?: string) {
    super("SLACK_CONNECTION_LOST", message);
    this.reason = reason;
  }
  static override isInstance = (value: unknown): value is SlackConnectionError =>
    BeamClawError.isInstance(value) && value.code === "SLACK_CONNECTION_LOST";
}

/** What a `stop()` took over from the run it ends. */
interface StoppedRun {
  readonly logger: ChannelLogger;
  readonly opening: Promise<void> | null;
  readonly receiving: ReadonlySet<Promise<void>>;
  readonly socket: SocketModeConnection | null;
  readonly reconnecting: Promise<void> | null;
  readonly closeServer: (() => Promise<number>) | null;
}

/** `allowedMentions`, checked: `InvalidArgumentError` for a kind Slack text has no mention of. */
function allowedMentionsOf(allowed: SlackAllowedMentions | undefined): SlackAllowedMentions {
  const parse: unknown = allowed?.parse ?? ["users"];
  if (!Array.isArray(parse)) {
    throw new InvalidArgumentError(
      `allowedMentions.parse must be an array of ${SLACK_MENTION_KINDS.map((k) => JSON.stringify(k)).join(", ")}`,
    );
  }
  for (const kind of parse) {
    if (!SLACK_MENTION_KINDS.includes(kind as SlackMentionKind)) {
      throw new InvalidArgumentError(`allowedMentions.parse: unknown kind ${JSON.stringify(kind)}`);
    }
  }
  return { parse: [...(parse as SlackMentionKind[])] };
}

function nonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** An HTML page where a file should be: Slack's sign-in page, served when the token lacks `files:read`. */
function isHtml(contentType: string | undefined, data: Buffer): boolean {
  if (contentType?.toLowerCase().includes("text/html")) return true;
  const head = data.subarray(0, 64).toString("latin1").trimStart().toLowerCase();
  return head.startsWith("<!doctype html") || head.startsWith("<html");
}

/** Splits a message id of the form `<channel>:<ts>`; a bare ts belongs to `fallbackChannel`. */
function locate(messageId: string, fallbackChannel: string): { channel: string; ts: string } {
  const colon = messageId.lastIndexOf(":");
  return colon <= 0
    ? { channel: fallbackChannel, ts: messageId }
    : { channel: messageId.slice(0, colon), ts: messageId.slice(colon + 1) };
}

/**
 * The Slack channel (v1 channel plugin).
 *
 * Inbound: `message` events (channels, private channels, group DMs, DMs: `message.channels`,
 * `message.groups`, `message.mpim`, `message.im`) and `app_mention`, by Socket Mode (`mode:
 * "socket"`) or the Events API over HTTP (`mode: "http"`, signatures verified, 401 otherwise,
 * `url_verification` answered). Each event is acknowledged only after `ctx.receive`
 * resolved, so an event the host did not take is redelivered by Slack. A message's id is its
 * `client_msg_id` (the same on every redelivery) or `<channel>:<ts>`; a message in a thread
 * has `threadId` = the thread's `ts`. Bots' messages (this one's included), edits, deletions
 * and joins are acknowledged and ignored. `im` chats are `direct`; channels, private channels
 * and group DMs are `group`.
 *
 * Inbound files (`files` of a `file_share` message) become attachments whose `url` is
 * Slack's `url_private_download` with `privateUrl: true` (only the bot token fetches it).
 * Images (PNG, JPEG, GIF, WebP) and PDFs up to the `attachments` limits are downloaded with
 * the bot token (scope `files:read`) before the message is handed over, side by side, and
 * carried inline as base64 `data` once their bytes proved to be what they claim; other files,
 * larger ones and failed downloads (logged as warnings; an HTML sign-in page means the app
 * lacks `files:read`) are handed over described, without `data`. A `check_file_info` stub
 * (Slack Connect, some large files) is looked up with `files.info` first (skipped with a
 * warning if that fails).
 *
 * Outbound: `chat.postMessage` (into the target's thread when it has one) and `chat.update`;
 * sent message ids are `<channel>:<ts>`. Text is escaped, Slack markup kept, except mentions
 * `allowedMentions` does not allow (by default broadcasts and user groups: `<!here>`,
 * `<!channel>`, `<!everyone>`, `<!subteam^ID>` are sent escaped and ping nobody). Slack has
 * no typing indicator for bots and no
 * idempotency key for posts. A rate limit (HTTP 429) becomes a retryable `ChannelSendError`
 * with Slack's `Retry-After` as `retryAfterMs`: the web client does not retry by itself, the
 * host's durable outbox does, in order.
 *
 * @example
 * ```ts
 * const slack = createSlackChannel({
 *   botToken: process.env.SLACK_BOT_TOKEN!, // xoxb-...
 *   appToken: process.env.SLACK_APP_TOKEN!, // xapp-..., Socket Mode
 * });
 * const channels = new ChannelManager({
 *   runtime,
 *   channels: [{ plugin: slack, dmPolicy: "pairing", groupPolicy: "open" }],
 * });
 * await channels.start();
 * ```
 */
export class SlackChannel implements ChannelPlugin {
  readonly specificationVersion = "v1" as const;
  readonly id: string;
  readonly meta = {
    label: "Slack",
    description: "Slack workspaces through a Slack app: Socket Mode or the Events API.",
    docsUrl: "https://github.com/beamclaw/beamclaw/tree/main/packages/channels#slack",
    caseInsensitiveIds: true,
  };
  readonly capabilities: ChannelCapabilities;
  readonly gatewayMethods: Readonly<Record<string, ChannelGatewayMethod>>;
  /** How events come in. */
  readonly mode: SlackMode;
  readonly #options: SlackChannelOptions;
  readonly #now: () => number;
  readonly #web: SlackWebApi;
  readonly #inline: InlineLimits;
  readonly #allowedMentions: SlackAllowedMentions;
  readonly #downloadTimeoutMs: number;
  /** `slackApiUrl`: files on its host, by its protocol (a Slack-compatible server's), get the token too. */
  readonly #apiUrl: URL;
  #ctx: ChannelContext | null = null;
  /** Bumped by every start and stop: work of an older connection recognises itself as stale. */
  #generation = 0;
  #identity: SlackBotIdentity | null = null;
  /** HTTP mode: closes the Events API endpoint (letting requests under way be answered). */
  #closeServer: (() => Promise<number>) | null = null;
  #url: string | undefined;
  #socket: SocketModeConnection | null = null;
  /** A reconnect Slack asked for, in progress. */
  #reconnecting: Promise<void> | null = null;
  /** The `start()` under way: settles once it is connected, or has closed what it opened. */
  #opening: Promise<void> | null = null;
  /**
   * Socket Mode: envelopes being handed to the host, each until its acknowledgement went out
   * (or failed). A `stop()` lets them finish before it closes the connection.
   */
  #receiving = new Set<Promise<void>>();
  /** Aborts this start's requests and connection attempts on `stop`. */
  #lifetime: AbortController | null = null;
  /**
   * The `stop()` under way (the Socket Mode connection, a reconnect or the HTTP server
   * closing): a second one waits for it.
   */
  readonly #stops = new Stops();
  /**
   * Each Slack channel's (conversation's) messages are read one after another, by channel id,
   * so that `ctx.receive` is called in their arrival order; channels do not wait for each
   * other (one message's slow file download or name lookup holds only its own channel). An
   * entry is removed once its last message is read.
   */
  readonly #chains = new KeyedChains();
  /** File downloads under way at once, across channels (more wait for a slot). */
  readonly #downloadSlots = pLimit(MAX_DOWNLOADS);
  /** `<channel>:<ts>` → the message id given to it: the same message as `message` and `app_mention`. */
  readonly #ids: RecentMap<string, string>;
  /** Message id → where it is, for `replyInThread` answers to messages known by `client_msg_id`. */
  readonly #locations: RecentMap<string, { channel: string; ts: string }>;
  readonly #names: RecentMap<string, Promise<string | undefined>>;
  /** `<channel>:<ts>` → its files being fetched, until the host took (or refused) the message. */
  readonly #fileWork = new Map<string, Promise<InboundAttachment[]>>();
  #namesUnavailable = false;

  constructor(options: SlackChannelOptions) {
    if (!nonEmptyString(options?.botToken)) {
      throw new InvalidArgumentError("a Slack channel needs a botToken (xoxb-...)");
    }
    const mode = options.mode ?? (options.appToken === undefined ? "http" : "socket");
    if (mode !== "socket" && mode !== "http") {
      throw new InvalidArgumentError('mode must be "socket" or "http"');
    }
    if (mode === "socket" && !nonEmptyString(options.appToken)) {
      throw new InvalidArgumentError("Socket Mode needs an appToken (xapp-...)");
    }
    if (mode === "http" && !nonEmptyString(options.signingSecret)) {
      throw new InvalidArgumentError("the Events API over HTTP needs the app's signingSecret");
    }
    const path = options.path ?? "/slack/events";
    if (!path.startsWith("/")) throw new InvalidArgumentError('path must start with "/"');
    const maxMessageLength = options.maxMessageLength ?? 4000;
    if (!Number.isInteger(maxMessageLength) || maxMessageLength < 8 || maxMessageLength > 8000) {
      throw new InvalidArgumentError("maxMessageLength must be an integer from 8 to 8000");
    }
    integerOption(options.timeoutMs, "timeoutMs", 1, MAX_TIMER_MS);
    integerOption(options.toleranceMs, "toleranceMs", 0);
    integerOption(options.maxBodyBytes, "maxBodyBytes", 1);
    integerOption(options.ackDeadlineMs, "ackDeadlineMs", 1, 2_999);
    integerOption(options.port, "port", 0, 65_535);
    integerOption(options.connectTimeoutMs, "connectTimeoutMs", 1, MAX_TIMER_MS);
    let slackApiUrl = options.slackApiUrl ?? "https://slack.com/api/";
    try {
      const parsed = new URL(slackApiUrl);
      if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new Error();
    } catch {
      throw new InvalidArgumentError(
        `slackApiUrl is not an http(s) URL: ${JSON.stringify(slackApiUrl)}`,
      );
    }
    if (!slackApiUrl.endsWith("/")) slackApiUrl += "/";
    this.#inline = inlineLimits(options.attachments, "attachments");
    this.#allowedMentions = allowedMentionsOf(options.allowedMentions);
    this.id = options.id ?? "slack";
    this.mode = mode;
    this.#options = { ...options, path };
    this.#now = options.now ?? Date.now;
    this.#apiUrl = new URL(slackApiUrl);
    this.#downloadTimeoutMs = Math.max(options.timeoutMs ?? 10_000, FILE_DOWNLOAD_TIMEOUT_MS);
    this.#web = new SlackWebApi(options.botToken, {
      slackApiUrl,
      timeoutMs: options.timeoutMs ?? 10_000,
      logger: toSlackLogger(() => this.#ctx?.logger),
    });
    this.#ids = new RecentMap(10_000, 15 * 60_000, this.#now);
    this.#locations = new RecentMap(10_000, 60 * 60_000, this.#now);
    this.#names = new RecentMap(5_000, 60 * 60_000, this.#now);
    this.capabilities = {
      directMessages: true,
      groups: true,
      threads: true,
      media: false,
      edits: true,
      reactions: false,
      typing: false,
      maxMessageLength,
    };
    this.gatewayMethods = {
      info: {
        description: "How the Slack channel is connected: mode, bot user, team, listening URL.",
        scope: "operator.read",
        handler: () => ({
          mode: this.mode,
          running: this.#ctx !== null,
          botUserId: this.#identity?.userId ?? null,
          teamId: this.#identity?.teamId ?? null,
          url: this.#url ?? null,
        }),
      },
    };
  }

  /** HTTP mode: the Request URL to give Slack once started, e.g. `http://127.0.0.1:3000/slack/events`. */
  get url(): string | undefined {
    return this.#url;
  }

  /** The bot's identity once started. */
  get identity(): Readonly<SlackBotIdentity> | undefined {
    return this.#identity ?? undefined;
  }

  async start(ctx: ChannelContext): Promise<void> {
    if (this.#ctx !== null) {
      throw new AlreadyStartedError(`Slack channel "${this.id}" is already started`);
    }
    this.#ctx = ctx;
    const generation = ++this.#generation;
    const lifetime = new AbortController();
    this.#lifetime = lifetime;
    const signal = AbortSignal.any([ctx.signal, lifetime.signal]);
    this.#chains.clear();
    let opened!: () => void;
    const opening = new Promise<void>((resolve) => {
      opened = resolve;
    });
    this.#opening = opening;
    try {
      const identity = await this.#identify(signal);
      this.#assertCurrent(generation);
      this.#identity = identity;
      if (this.mode === "http") {
        const { close, url } = await this.#listen(ctx);
        if (this.#generation !== generation) {
          await close();
          this.#assertCurrent(generation);
        }
        this.#closeServer = close;
        this.#url = url;
      } else {
        const socket = await this.#connect(ctx, generation, signal);
        if (this.#generation !== generation) {
          await socket.close();
          this.#assertCurrent(generation);
        }
        this.#socket = socket;
      }
      ctx.logger.info("slack connected", {
        mode: this.mode,
        botUserId: identity.userId,
        ...(this.#url === undefined ? {} : { url: this.#url }),
      });
    } catch (error) {
      // Done with what it opened itself; the stop closes what the channel holds.
      opened();
      if (this.#generation === generation) await this.stop();
      else if (!AbortedError.isInstance(error)) {
        // A `stop()` came meanwhile: whatever failed, the start was stopped.
        throw new AbortedError(`Slack channel "${this.id}" was stopped while starting`, {
          cause: error,
        });
      }
      throw this.#startError(error);
    } finally {
      opened();
      if (this.#opening === opening) this.#opening = null;
    }
  }

  /**
   * Disconnects: no further event is handed to the host, and requests and file downloads
   * under way are aborted. Events the host is already taking get up to 5 s for `ctx.receive`
   * to settle and are then acknowledged (a Socket Mode envelope on its connection, an Events
   * API request answered 200), so that Slack does not deliver them again; what is not
   * acknowledged by then (and what arrives meanwhile) Slack redelivers. An Events API event
   * already answered `pending` (see `ackDeadlineMs`) but not yet handed over is lost, and
   * logged. Then the Socket Mode
   * connection (and a reconnect Slack asked for) is closed, or the Events API endpoint stops
   * listening and its connections are closed. Resolves once all of that is done, nothing of
   * the channel left open; a `stop()` while another is under way resolves with it, one after
   * the channel stopped resolves at once. A `stop()` while `start()` is under way ends the
   * start (it rejects with `AbortedError`) and resolves only once that start has closed what
   * it opened (its WebSocket, its HTTP server).
   */
  async stop(): Promise<void> {
    const ctx = this.#ctx;
    if (ctx === null) return this.#stops.pending;
    this.#generation++;
    this.#ctx = null;
    this.#lifetime?.abort();
    this.#lifetime = null;
    const run: StoppedRun = {
      logger: ctx.logger,
      opening: this.#opening,
      receiving: this.#receiving,
      socket: this.#socket,
      reconnecting: this.#reconnecting,
      closeServer: this.#closeServer,
    };
    this.#opening = null;
    this.#receiving = new Set();
    this.#socket = null;
    this.#closeServer = null;
    this.#reconnecting = null;
    this.#url = undefined;
    return this.#stops.run(() => this.#shutDown(run));
  }

  /**
   * Ends a run: its start first (which closes what it opened), then its hand-overs under way,
   * its Socket Mode connection, its reconnect in progress and its HTTP server.
   */
  async #shutDown(run: StoppedRun): Promise<void> {
    await run.opening;
    const closeSocket = async () => {
      // The acknowledgements go out on the connection: it stays open until they did.
      if (!(await settlesWithin(run.receiving, STOP_DRAIN_MS))) {
        run.logger.warn("slack stop: the host did not finish taking events in time", {
          events: run.receiving.size,
        });
      }
      await run.socket?.close();
    };
    const closeServer = async () => {
      const dropped = (await run.closeServer?.()) ?? 0;
      if (dropped > 0) {
        run.logger.warn("slack stop: Events API requests the host did not answer were dropped", {
          requests: dropped,
        });
      }
    };
    await Promise.all([closeSocket(), run.reconnecting, closeServer()]);
  }

  #assertCurrent(generation: number): void {
    if (this.#generation !== generation) {
      throw new AbortedError(`Slack channel "${this.id}" was stopped while starting`);
    }
  }

  async sendText(
    target: ChannelTarget,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    const threadTs = target.threadId ?? this.#threadFor(target, options?.replyToMessageId);
    const result = await this.#send<{ channel?: string; ts?: string }>(
      "chat.postMessage",
      {
        channel: target.chatId,
        text: escapeSlackText(text, this.#allowedMentions),
        ...(threadTs === undefined ? {} : { thread_ts: threadTs }),
      },
      options,
    );
    if (!nonEmptyString(result.ts)) {
      throw new ChannelSendError(this.id, "chat.postMessage answered without a ts", {
        isRetryable: false,
      });
    }
    return { messageId: `${result.channel ?? target.chatId}:${result.ts}` };
  }

  async edit(
    target: ChannelTarget,
    messageId: string,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    const { channel, ts } = locate(messageId, target.chatId);
    await this.#send(
      "chat.update",
      // chat.update formats as the Slack client does unless told otherwise (chat.postMessage's
      // default is "none"): an edit must read, and ping, exactly as the message it replaces.
      { channel, ts, text: escapeSlackText(text, this.#allowedMentions), parse: "none" },
      options,
    );
  }

  // ------------------------------------------------------------------ connecting

  async #identify(signal: AbortSignal): Promise<SlackBotIdentity> {
    if (this.#options.botUserId !== undefined) return { userId: this.#options.botUserId };
    let answer: { user_id?: unknown; user?: unknown; bot_id?: unknown; team_id?: unknown };
    try {
      answer = await this.#web.call("auth.test", {}, signal);
    } catch (error) {
      throw toSlackApiError("auth.test", error);
    }
    if (!nonEmptyString(answer.user_id)) {
      throw new SlackApiError("auth.test", "auth.test answered without a user_id", {
        isRetryable: false,
      });
    }
    return {
      userId: answer.user_id,
      ...(nonEmptyString(answer.bot_id) ? { botId: answer.bot_id } : {}),
      ...(nonEmptyString(answer.user) ? { name: answer.user } : {}),
      ...(nonEmptyString(answer.team_id) ? { teamId: answer.team_id } : {}),
    };
  }

  /**
   * What a failed start throws. A Slack refusal is retried by the host unless it is about
   * credentials or scopes (`isRetryable: false`: the channel is failed until fixed).
   */
  #startError(error: unknown): unknown {
    const code = (error as { code?: unknown } | null)?.code;
    const apiError = SlackApiError.isInstance(error)
      ? error
      : typeof code === "string" && code.startsWith("slack_webapi_")
        ? toSlackApiError("apps.connections.open", error)
        : undefined;
    if (apiError === undefined) return error;
    const isRetryable =
      apiError.slackError === undefined
        ? apiError.isRetryable
        : !CREDENTIAL_ERRORS.has(apiError.slackError);
    if (isRetryable === apiError.isRetryable) return apiError;
    return new SlackApiError(apiError.method, apiError.message, {
      isRetryable,
      ...(apiError.slackError === undefined ? {} : { slackError: apiError.slackError }),
      ...(apiError.retryAfterMs === undefined ? {} : { retryAfterMs: apiError.retryAfterMs }),
      ...(apiError.statusCode === undefined ? {} : { statusCode: apiError.statusCode }),
      cause: apiError.cause,
    });
  }

  async #listen(ctx: ChannelContext): Promise<{ close: () => Promise<number>; url: string }> {
    const options = this.#options;
    const server = http.createServer(
      eventsApiListener({
        signingSecret: options.signingSecret!,
        path: options.path!,
        maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
        toleranceMs: options.toleranceMs ?? SLACK_DEFAULT_TOLERANCE_MS,
        ackDeadlineMs: options.ackDeadlineMs ?? SLACK_DEFAULT_ACK_DEADLINE_MS,
        now: this.#now,
        logger: () => this.#ctx?.logger,
        onEventCallback: (payload, delivery) => this.#onEventCallback(ctx, payload, delivery),
      }),
    );
    server.requestTimeout = 30_000;
    const close = closesGracefully(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 3000, options.host ?? "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (error) => ctx.disconnected(error));
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return { close, url: `http://${host}:${address.port}${options.path}` };
  }

  async #connect(
    ctx: ChannelContext,
    generation: number,
    signal: AbortSignal,
  ): Promise<SocketModeConnection> {
    const options = this.#options;
    return SocketModeConnection.open(
      {
        appToken: options.appToken!,
        clientOptions: this.#web.clientOptions(),
        logger: toSlackLogger(() => this.#ctx?.logger),
        clientPingTimeoutMs: options.socketMode?.clientPingTimeoutMs,
        serverPingTimeoutMs: options.socketMode?.serverPingTimeoutMs,
        connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
        onEnvelope: (envelope) => this.#onEnvelope(ctx, envelope),
        onClose: ({ reason }) => this.#onSocketClosed(ctx, generation, signal, reason),
      },
      signal,
    );
  }

  /** A Socket Mode connection ended by itself. */
  #onSocketClosed(
    ctx: ChannelContext,
    generation: number,
    signal: AbortSignal,
    reason: string | undefined,
  ): void {
    if (this.#generation !== generation) return;
    this.#socket = null;
    if (reason === undefined || !REFRESH_REASONS.has(reason)) {
      ctx.disconnected(
        new SlackConnectionError(
          reason === undefined
            ? "the Socket Mode connection was lost"
            : `Slack closed the Socket Mode connection (${reason})`,
          reason,
        ),
      );
      return;
    }
    // Slack recycles connections routinely: reconnect in place, without bothering the host.
    // Envelopes not acknowledged on the old connection are redelivered on the new one.
    ctx.logger.debug("slack asked for a new Socket Mode connection", { reason });
    const reconnecting = this.#connect(ctx, generation, signal).then(
      async (socket) => {
        if (this.#generation !== generation) await socket.close();
        else this.#socket = socket;
      },
      (error: unknown) => {
        if (this.#generation === generation) ctx.disconnected(this.#startError(error));
      },
    );
    const tracked: Promise<void> = reconnecting.finally(() => {
      if (this.#reconnecting === tracked) this.#reconnecting = null;
    });
    this.#reconnecting = tracked;
  }

  // ------------------------------------------------------------------ inbound

  #onEnvelope(ctx: ChannelContext, envelope: SocketModeEnvelope): void {
    // Stopping (the connection stays open while earlier events are acknowledged): not taken
    // nor acknowledged, so Slack delivers it again on the next connection.
    if (this.#ctx !== ctx) return;
    const ack = () =>
      envelope.ack().catch((error: unknown) => {
        // The connection is gone: Slack redelivers the envelope, and the host answers it once.
        ctx.logger.debug("slack envelope not acknowledged", {
          envelopeId: envelope.envelopeId,
          error,
        });
      });
    const payload = envelope.payload as Record<string, unknown> | undefined;
    if (envelope.type !== "events_api" || payload?.type !== "event_callback") {
      ctx.logger.debug("slack envelope ignored", { type: envelope.type });
      void ack();
      return;
    }
    if (envelope.retryAttempt !== undefined && envelope.retryAttempt > 0) {
      ctx.logger.debug("slack redelivered an event", {
        retryAttempt: envelope.retryAttempt,
        retryReason: envelope.retryReason,
      });
    }
    const handing = this.#dispatch(ctx, payload).then(
      () => ack(),
      async (error: unknown) => {
        if (InvalidInboundError.isInstance(error)) {
          // Redelivering it would not make it well-formed.
          ctx.logger.error("slack message refused as malformed; dropped", { error });
          await ack();
        } else if (!NoProcessError.isInstance(error)) {
          ctx.logger.warn("slack message not taken; Slack will redeliver it", { error });
        }
      },
    );
    const receiving = this.#receiving;
    receiving.add(handing);
    void handing.then(() => receiving.delete(handing));
  }

  async #onEventCallback(
    ctx: ChannelContext,
    payload: Record<string, unknown>,
    delivery: SlackDelivery,
  ): Promise<JsonValue> {
    if (this.#ctx !== ctx) throw new NoProcessError(`Slack channel "${this.id}" is not running`);
    if (delivery.retryNum !== undefined) {
      ctx.logger.debug("slack redelivered an event", {
        retryNum: delivery.retryNum,
        retryReason: delivery.retryReason,
      });
    }
    const result = await this.#dispatch(ctx, payload);
    return result === undefined
      ? { ok: true, status: "ignored" }
      : { ok: true, status: result.status };
  }

  /**
   * Hands an `event_callback` to the host. Resolves with the host's answer (undefined for an
   * event that is not a person's message); rejects when the host did not take it.
   */
  #dispatch(
    ctx: ChannelContext,
    payload: Record<string, unknown>,
  ): Promise<ReceiveResult | undefined> {
    const read = readSlackMessage(payload.event, this.#identity ?? { userId: "" });
    if (typeof read === "string") {
      ctx.logger.debug("slack event ignored", { reason: read });
      return Promise.resolve(undefined);
    }
    const signal = this.#lifetime?.signal ?? ctx.signal;
    // The files are fetched from now on, beside the messages before this one; a redelivery
    // of the message (Slack retries an event not answered within 3 s, and sends a mention as
    // `message` and `app_mention`) shares the downloads still under way.
    let files = this.#fileWork.get(read.key);
    if (files === undefined) {
      files = this.#filesOf(ctx, read, signal);
      if (read.files.length > 0) this.#fileWork.set(read.key, files);
    }
    const attachments = files;
    const step = this.#chains.run(read.event.channel, () =>
      this.#toInbound(read, attachments, payload, signal),
    );
    // `receive` is called from `step`'s reaction, before the next event's reading starts.
    const received = step.then((input) => {
      // Stopped while it was read (its files cut short): not handed over; Slack delivers it
      // again. Only hand-overs already under way are waited for by `stop()`.
      if (this.#ctx !== ctx) throw new NoProcessError(`Slack channel "${this.id}" is not running`);
      return ctx.receive(input);
    });
    if (read.files.length > 0) {
      const forget = () => {
        if (this.#fileWork.get(read.key) === attachments) this.#fileWork.delete(read.key);
      };
      received.then(forget, forget);
    }
    return received;
  }

  /**
   * The id `message` is handed over under: its `client_msg_id`, else `<channel>:<ts>`. The
   * same message may come as `message` and as `app_mention`: it keeps the first id.
   */
  #messageIdOf(message: SlackMessage): string {
    const { client_msg_id: clientId } = message.event;
    return this.#ids.get(message.key) ?? (nonEmptyString(clientId) ? clientId : message.key);
  }

  async #toInbound(
    message: SlackMessage,
    files: Promise<InboundAttachment[]>,
    payload: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<InboundMessageInput> {
    const event = message.event;
    const messageId = this.#messageIdOf(message);
    if (this.#ids.get(message.key) === undefined) this.#ids.set(message.key, messageId);
    this.#locations.set(messageId, { channel: event.channel, ts: event.ts });
    const [name, attachments] = await Promise.all([this.#nameOf(event.user, signal), files]);
    const input = inboundOf(message, messageId);
    if (name !== undefined) input.peer = { id: event.user, name };
    input.raw = payload;
    if (attachments.length > 0) input.attachments = attachments;
    return input;
  }

  /**
   * The message's files as attachments, once the host said it takes the message
   * (`ctx.admits`): nothing is downloaded, nor a stub looked up, for a sender or chat it
   * turns away; that message gets the files the event describes, not downloaded.
   */
  async #filesOf(
    ctx: ChannelContext,
    message: SlackMessage,
    signal: AbortSignal,
  ): Promise<InboundAttachment[]> {
    if (message.files.length === 0) return [];
    // Asked under the id the message is handed over under.
    if (!(await shouldDownloadFiles(ctx, inboundOf(message, this.#messageIdOf(message))))) {
      return message.attachments;
    }
    return this.#attachmentsOf(message.files, ctx.logger, signal);
  }

  /** The sender's display name, from `users.info` (cached); undefined when it cannot be had. */
  #nameOf(userId: string, signal: AbortSignal): Promise<string | undefined> {
    if (this.#options.resolveUserNames === false || this.#namesUnavailable) {
      return Promise.resolve(undefined);
    }
    const cached = this.#names.get(userId);
    if (cached !== undefined) return cached;
    const lookup = this.#web
      .call<{ user?: Record<string, unknown> }>(
        "users.info",
        { user: userId },
        AbortSignal.any([signal, AbortSignal.timeout(2_000)]),
      )
      .then(
        ({ user }) => {
          const profile = (user?.profile ?? {}) as Record<string, unknown>;
          const name = [profile.display_name, profile.real_name, user?.real_name, user?.name].find(
            nonEmptyString,
          );
          return name;
        },
        (error: unknown) => {
          this.#names.delete(userId);
          const { slackError, description } = slackErrorDetails(error);
          if (slackError !== undefined && CREDENTIAL_ERRORS.has(slackError)) {
            // Without users:read no lookup will ever succeed: stop trying.
            this.#namesUnavailable = true;
            this.#ctx?.logger.warn("slack user names unavailable (add the users:read scope)", {
              slackError,
            });
          } else {
            this.#ctx?.logger.debug("slack user name lookup failed", { userId, description });
          }
          return undefined;
        },
      );
    this.#names.set(userId, lookup);
    return lookup;
  }

  /**
   * The message's files as attachments, in order: stubs looked up, images and PDFs within
   * the limits downloaded (side by side). Never rejects: a file that could not be had is
   * handed over without `data`, or left out when not even its description could be had.
   */
  async #attachmentsOf(
    files: readonly SlackFileRef[],
    logger: ChannelLogger,
    signal: AbortSignal,
  ): Promise<InboundAttachment[]> {
    if (files.length === 0) return [];
    const resolved = await Promise.all(
      files.map(async (file) => {
        const attachment = file.attachment ?? (await this.#lookUpFile(file.id!, logger, signal));
        return attachment === undefined
          ? undefined
          : this.#withContent(attachment, file.id, logger, signal);
      }),
    );
    return resolved.filter((a): a is InboundAttachment => a !== undefined);
  }

  /** A `check_file_info` stub's file, from `files.info`; undefined when it cannot be had. */
  async #lookUpFile(
    fileId: string,
    logger: ChannelLogger,
    signal: AbortSignal,
  ): Promise<InboundAttachment | undefined> {
    let answer: { file?: unknown };
    try {
      answer = await this.#web.call<{ file?: unknown }>("files.info", { file: fileId }, signal);
    } catch (error) {
      if (signal.aborted) return undefined;
      const { slackError, description } = slackErrorDetails(error);
      logger.warn(
        slackError === "missing_scope"
          ? "slack file could not be looked up; skipped (add the files:read scope)"
          : "slack file could not be looked up; skipped",
        { fileId, error: description },
      );
      return undefined;
    }
    const attachment = attachmentOfSlackFile(answer.file);
    if (attachment === undefined) {
      logger.warn("slack file could not be looked up; skipped", {
        fileId,
        error: "files.info answered a file without a URL",
      });
    }
    return attachment;
  }

  /**
   * The attachment with its content inline when it is an image or a PDF within the limits
   * and the download succeeds; else as it is (the text still reaches the host).
   */
  async #withContent(
    attachment: InboundAttachment,
    fileId: string | undefined,
    logger: ChannelLogger,
    signal: AbortSignal,
  ): Promise<InboundAttachment> {
    const limit = inlineLimitOf(attachment, this.#inline);
    const url = attachment.url;
    if (limit <= 0 || url === undefined) return attachment;
    try {
      if (!this.#isSlackFileUrl(url)) {
        throw new FileDownloadError(
          "the file is not on a Slack file host; the bot token is not sent there",
        );
      }
      const downloaded = await this.#downloadSlots(() =>
        downloadFile(url, {
          headers: { authorization: `Bearer ${this.#options.botToken}` },
          maxBytes: limit,
          timeoutMs: this.#downloadTimeoutMs,
          signal,
        }),
      );
      if (downloaded === undefined) {
        throw new FileDownloadError(`the file is larger than ${limit} bytes`);
      }
      // (An HTML file someone shared is HTML too: only a file of another type gives it away.)
      const claimsHtml = attachment.mediaType?.toLowerCase().startsWith("text/html") === true;
      if (!claimsHtml && isHtml(downloaded.contentType, downloaded.data)) {
        throw new FileDownloadError(
          "Slack answered with an HTML page (its sign-in page) instead of the file: add the files:read scope to the app and reinstall it",
        );
      }
      return withInlineData(attachment, downloaded.data);
    } catch (error) {
      // Stopping: the message is not handed over (see `#dispatch`), and Slack redelivers it.
      if (signal.aborted) return attachment;
      logger.warn("slack file could not be downloaded", {
        ...(fileId === undefined ? {} : { fileId }),
        error: describeError(error),
      });
      return attachment;
    }
  }

  /**
   * Whether the bot token may be sent to `url`: https on Slack's file hosts, or
   * `slackApiUrl`'s host by its protocol.
   */
  #isSlackFileUrl(url: string): boolean {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return false;
    }
    const host = parsed.hostname.toLowerCase();
    if (host === this.#apiUrl.hostname && parsed.protocol === this.#apiUrl.protocol) return true;
    return (
      parsed.protocol === "https:" &&
      SLACK_FILE_HOSTS.some((domain) => host === domain || host.endsWith(`.${domain}`))
    );
  }

  // ------------------------------------------------------------------ outbound

  /** The thread a reply starts under (`replyInThread`), if the message it answers is known. */
  #threadFor(target: ChannelTarget, replyToMessageId: string | undefined): string | undefined {
    if (this.#options.replyInThread !== true || replyToMessageId === undefined) return undefined;
    if (target.chatType !== "group") return undefined;
    const known = this.#locations.get(replyToMessageId);
    if (known !== undefined) return known.channel === target.chatId ? known.ts : undefined;
    const { channel, ts } = locate(replyToMessageId, target.chatId);
    return channel === target.chatId && /^\d+\.\d+$/.test(ts) ? ts : undefined;
  }

  async #send<T>(
    method: string,
    args: Record<string, unknown>,
    options: ChannelSendOptions | undefined,
  ): Promise<T> {
    const signal = options?.signal;
    if (signal?.aborted) throw new AbortedError(`${method} was aborted`, { cause: signal.reason });
    try {
      return await this.#web.call<T>(method, args, signal);
    } catch (error) {
      if (signal?.aborted) throw new AbortedError(`${method} was aborted`, { cause: error });
      throw toChannelSendError(this.id, method, error);
    }
  }
}

/**
 * Creates a {@link SlackChannel}.
 *
 * @throws InvalidArgumentError for a missing token or secret, a bad path or URL, or a limit or
 * time limit out of range (`maxMessageLength`, `timeoutMs`, `toleranceMs`, `maxBodyBytes`,
 * `port`, `connectTimeoutMs`).
 * @example
 * ```ts
 * // The Events API: Slack POSTs to https://<your host>/slack/events (proxied to port 3000).
 * const slack = createSlackChannel({
 *   botToken: process.env.SLACK_BOT_TOKEN!,
 *   signingSecret: process.env.SLACK_SIGNING_SECRET!,
 *   port: 3000,
 * });
 * ```
 */
export function createSlackChannel(options: SlackChannelOptions): SlackChannel {
  return new SlackChannel(options);
}
