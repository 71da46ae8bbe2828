/**
 * The generic webhook channel: anything that can send and receive signed HTTP requests
 * becomes a chat channel.
 */
import { randomUUID } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import {
  AbortedError,
  type ChannelCapabilities,
  type ChannelContext,
  type ChannelGatewayMethod,
  type ChannelPlugin,
  ChannelSendError,
  type ChannelSendOptions,
  type ChannelTarget,
  type InboundMessageInput,
  InvalidArgumentError,
  InvalidInboundError,
  isBeamClawError,
  type JsonValue,
  loneSurrogatePath,
  NoProcessError,
  type OutboundMedia,
  type SentMessage,
} from "@beamclaw/core";
import { integerOption, MAX_TIMER_MS } from "../shared/options.js";
import { Stops } from "../shared/stops.js";
import {
  DEFAULT_TOLERANCE_MS,
  DELIVERY_HEADER,
  SIGNATURE_HEADER,
  signWebhookPayload,
  verifyWebhookSignature,
  WebhookSignatureError,
} from "./signature.js";

/** How outbound callbacks are retried within one send. */
export interface WebhookRetryOptions {
  /** Tries per send, the first included. Default 4. */
  maxAttempts?: number;
  /** The first retry waits between half of this and all of it; it doubles per try. Default 500. */
  baseDelayMs?: number;
  /** Longest wait; a longer `Retry-After` ends the send (the outbox retries later). Default 10 000. */
  maxDelayMs?: number;
}

/** Options of {@link createWebhookChannel}. */
export interface WebhookChannelOptions {
  /** The channel id (and session-key segment). Default `webhook`. */
  id?: string;
  /** Signs outbound callbacks and verifies inbound requests (at least 16 characters). */
  secret: string;
  /** Verifies inbound requests instead of `secret` (e.g. while rotating). */
  inboundSecret?: string;
  /** Signs outbound callbacks instead of `secret`. */
  outboundSecret?: string;
  /** Where outbound messages are POSTed (http or https). */
  callbackUrl: string;
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; 0 picks a free one (see `url` after `start`). Default 8787. */
  port?: number;
  /** Path of the inbound endpoint. Default `/webhook`. */
  path?: string;
  /** Replay window of inbound signatures. Default 300 000 (five minutes). */
  toleranceMs?: number;
  /** Largest inbound body. Default 1 MiB. */
  maxBodyBytes?: number;
  /** The text limit declared to the host (it chunks longer replies). Default 4000. */
  maxMessageLength?: number;
  /** Turn declared capabilities off (all are on by default). */
  capabilities?: Partial<Omit<ChannelCapabilities, "maxMessageLength">>;
  retry?: WebhookRetryOptions;
  /** Time limit of one outbound request. Default 10 000. */
  timeoutMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** The JSON an inbound POST carries. */
export interface WebhookInboundEvent {
  type: "message";
  /** The sender's id for this message; the key of duplicate suppression. */
  id: string;
  accountId?: string;
  chat: { type: "direct" | "group"; id?: string; threadId?: string };
  from: { id: string; name?: string };
  text?: string;
  attachments?: InboundMessageInput["attachments"];
  mentions?: { bot?: boolean; ids?: string[] };
  replyTo?: { id: string; text?: string; from?: string };
  /** Epoch ms. */
  timestamp?: number;
}

/** What an outbound callback is about. */
export type WebhookOutboundPayload =
  | { type: "message.text"; target: ChannelTarget; text: string; replyToMessageId?: string }
  | {
      type: "message.media";
      target: ChannelTarget;
      media: OutboundMedia;
      replyToMessageId?: string;
    }
  | { type: "message.edit"; target: ChannelTarget; messageId: string; text: string }
  | { type: "message.reaction"; target: ChannelTarget; messageId: string; emoji: string }
  | { type: "typing"; target: ChannelTarget };

/** The JSON an outbound callback carries. */
export type WebhookOutboundEvent = WebhookOutboundPayload & {
  /** Unique per delivery, the same for each retry of it (also in `X-BeamClaw-Delivery`). */
  deliveryId: string;
  /** The channel id. */
  channel: string;
};

// `fatal`: bytes that are not UTF-8 are refused rather than read as U+FFFD. A BOM is dropped.
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Callback answers worth another try: timeouts, too early, rate limits and every 5xx. */
function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599);
}

function json(
  res: ServerResponse,
  status: number,
  body: JsonValue,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Closes a server and the connections still open on it. */
function closeServer(server: http.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The generic webhook channel (v1 channel plugin).
 *
 * Inbound: `POST <path>` with a JSON {@link WebhookInboundEvent} and an
 * `X-BeamClaw-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` header.
 * A missing, wrong or stale signature (outside the replay window) is refused with 401
 * before the body is read as JSON. The response comes once the host is done with the
 * message: 202 `{ "status": "accepted" }` when it is in the durable queue, 200 with
 * `duplicate`, `ignored`, `blocked`, `pairing` or `command`; 400 for a malformed event (or
 * a body that is not UTF-8 JSON, or holds a lone surrogate), 413 for a body over the limit,
 * 503 while the channel stops. Retry on 5xx and network errors with the same `id`:
 * duplicates are suppressed.
 *
 * Outbound: `POST <callbackUrl>` with a JSON {@link WebhookOutboundEvent}, signed the same
 * way, with `X-BeamClaw-Delivery` (the same for every retry). A 2xx answer confirms it; its
 * JSON `messageId` (if any) becomes the message's id for later edits. 408, 425, 429 and 5xx
 * and network errors are retried with backoff (honouring `Retry-After`); other statuses fail
 * at once.
 *
 * @example
 * ```ts
 * const webhook = createWebhookChannel({
 *   secret: process.env.WEBHOOK_SECRET!,
 *   callbackUrl: "https://example.com/beamclaw/outbound",
 *   port: 8787,
 * });
 * const channels = new ChannelManager({ runtime, channels: [{ plugin: webhook, dmPolicy: "open" }] });
 * await channels.start(); // listening on http://127.0.0.1:8787/webhook
 * ```
 */
export class WebhookChannel implements ChannelPlugin {
  readonly specificationVersion = "v1" as const;
  readonly id: string;
  readonly meta = {
    label: "Webhook",
    description: "Signed HTTP in, signed HTTP callbacks out: a channel for anything else.",
    docsUrl: "https://github.com/beamclaw/beamclaw/tree/main/packages/channels#webhook",
  };
  readonly capabilities: ChannelCapabilities;
  readonly gatewayMethods: Readonly<Record<string, ChannelGatewayMethod>>;
  readonly #options: WebhookChannelOptions;
  readonly #callback: URL;
  readonly #path: string;
  readonly #now: () => number;
  #server: http.Server | null = null;
  /** The server of a `start()` still listening (a `stop()` meanwhile closes it). */
  #opening: { server: http.Server; listening: Promise<void> } | null = null;
  /** The `stop()` under way (its server closing): a second one waits for it. */
  readonly #stops = new Stops();
  #agent: http.Agent | null = null;
  /** Aborted by `stop()`: ends callbacks in flight and their retry waits. */
  #sends: AbortController | null = null;
  #ctx: ChannelContext | null = null;
  #url: string | undefined;

  constructor(options: WebhookChannelOptions) {
    const secrets = [options.secret, options.inboundSecret, options.outboundSecret];
    for (const secret of secrets) {
      if (secret !== undefined && (typeof secret !== "string" || secret.length < 16)) {
        throw new InvalidArgumentError("webhook secrets must be strings of at least 16 characters");
      }
    }
    if (
      options.secret === undefined &&
      (options.inboundSecret === undefined || options.outboundSecret === undefined)
    ) {
      throw new InvalidArgumentError("a webhook channel needs a secret");
    }
    let callback: URL;
    try {
      callback = new URL(options.callbackUrl);
    } catch {
      throw new InvalidArgumentError(
        `callbackUrl is not a URL: ${JSON.stringify(options.callbackUrl)}`,
      );
    }
    if (callback.protocol !== "http:" && callback.protocol !== "https:") {
      throw new InvalidArgumentError("callbackUrl must be http or https");
    }
    const path = options.path ?? "/webhook";
    if (!path.startsWith("/")) throw new InvalidArgumentError('path must start with "/"');
    const maxMessageLength = options.maxMessageLength ?? 4000;
    if (!Number.isInteger(maxMessageLength) || maxMessageLength < 8) {
      throw new InvalidArgumentError("maxMessageLength must be an integer >= 8");
    }
    integerOption(options.retry?.maxAttempts, "retry.maxAttempts", 1);
    integerOption(options.retry?.baseDelayMs, "retry.baseDelayMs", 0, MAX_TIMER_MS);
    integerOption(options.retry?.maxDelayMs, "retry.maxDelayMs", 0, MAX_TIMER_MS);
    integerOption(options.timeoutMs, "timeoutMs", 1, MAX_TIMER_MS);
    integerOption(options.toleranceMs, "toleranceMs", 0);
    integerOption(options.maxBodyBytes, "maxBodyBytes", 1);
    integerOption(options.port, "port", 0, 65_535);
    this.id = options.id ?? "webhook";
    this.#options = options;
    this.#callback = callback;
    this.#path = path;
    this.#now = options.now ?? Date.now;
    this.capabilities = {
      directMessages: true,
      groups: true,
      threads: true,
      media: true,
      edits: true,
      reactions: true,
      typing: true,
      ...options.capabilities,
      maxMessageLength,
    };
    this.gatewayMethods = {
      info: {
        description: "Where the webhook listens and where it calls back.",
        scope: "operator.read",
        handler: () => ({
          url: this.#url ?? null,
          callbackUrl: this.#callback.href,
          listening: this.#server !== null,
        }),
      },
    };
  }

  /** The inbound endpoint's URL once started, e.g. `http://127.0.0.1:8787/webhook`. */
  get url(): string | undefined {
    return this.#url;
  }

  /**
   * Listens for inbound messages. A second `start()` before `stop()` (also while the first is
   * still listening) throws `InvalidArgumentError`; a `stop()` while this is under way ends it
   * with `AbortedError`, leaving nothing listening.
   */
  async start(ctx: ChannelContext): Promise<void> {
    if (this.#server !== null || this.#opening !== null)
      throw new InvalidArgumentError(`webhook channel "${this.id}" is already started`);
    const server = http.createServer((req, res) => {
      void this.#handle(req, res);
    });
    server.requestTimeout = 30_000;
    const host = this.#options.host ?? "127.0.0.1";
    const listening = new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#options.port ?? 8787, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const opening = { server, listening };
    this.#opening = opening;
    const failed = await listening.then(
      () => undefined,
      (error: unknown) => ({ error }),
    );
    // Stopped meanwhile: that `stop()` closes the server.
    if (this.#opening !== opening) {
      throw new AbortedError(`webhook channel "${this.id}" was stopped while starting`);
    }
    this.#opening = null;
    if (failed !== undefined) throw failed.error;
    const address = server.address() as AddressInfo;
    const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.#url = `http://${shownHost}:${address.port}${this.#path}`;
    this.#server = server;
    this.#agent = new (this.#callback.protocol === "https:" ? https.Agent : http.Agent)({
      keepAlive: true,
    });
    this.#sends = new AbortController();
    this.#ctx = ctx;
    server.on("error", (error) => ctx.disconnected(error));
    ctx.logger.info("webhook listening", { url: this.#url });
  }

  /**
   * Stops listening: new requests are refused, open connections closed. Resolves once the
   * server is closed; a `stop()` while another is under way resolves with it, one after the
   * channel stopped resolves at once. A `stop()` while `start()` is under way ends the start
   * with `AbortedError`, and resolves once its server is closed. A callback in flight, or
   * waiting to be retried, ends at once with `AbortedError` (the host's outbox sends it again
   * after the next start, under the same delivery id).
   */
  async stop(): Promise<void> {
    const opening = this.#opening;
    const server = this.#server;
    if (opening === null && server === null) return this.#stops.pending;
    this.#opening = null;
    this.#server = null;
    this.#ctx = null;
    this.#sends?.abort();
    this.#sends = null;
    this.#agent?.destroy();
    this.#agent = null;
    return this.#stops.run(() => this.#shutDown(opening, server));
  }

  /**
   * Closes the server of a start under way (`opening`) or of a run.
   */
  async #shutDown(
    opening: { server: http.Server; listening: Promise<void> } | null,
    server: http.Server | null,
  ): Promise<void> {
    if (opening !== null) {
      await opening.listening.catch(() => undefined);
      await closeServer(opening.server);
    }
    if (server !== null) await closeServer(server);
  }

  sendText(
    target: ChannelTarget,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    return this.#deliver(
      {
        type: "message.text",
        target,
        text,
        ...(options?.replyToMessageId === undefined
          ? {}
          : { replyToMessageId: options.replyToMessageId }),
      },
      options,
    );
  }

  sendMedia(
    target: ChannelTarget,
    media: OutboundMedia,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    return this.#deliver(
      {
        type: "message.media",
        target,
        media,
        ...(options?.replyToMessageId === undefined
          ? {}
          : { replyToMessageId: options.replyToMessageId }),
      },
      options,
    );
  }

  async edit(
    target: ChannelTarget,
    messageId: string,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    await this.#deliver({ type: "message.edit", target, messageId, text }, options);
  }

  async typing(target: ChannelTarget, options?: ChannelSendOptions): Promise<void> {
    await this.#deliver({ type: "typing", target }, { ...options, attempts: 1 });
  }

  async react(
    target: ChannelTarget,
    messageId: string,
    emoji: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    await this.#deliver({ type: "message.reaction", target, messageId, emoji }, options);
  }

  // ------------------------------------------------------------------ inbound

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== this.#path) return json(res, 404, { error: "not found" });
      if (req.method !== "POST") return json(res, 405, { error: "use POST" }, { allow: "POST" });
      const body = await this.#readBody(req);
      if (body === undefined) {
        json(
          res,
          413,
          { error: `the body is larger than ${this.#maxBody()} bytes` },
          { connection: "close" },
        );
        req.destroy();
        return;
      }
      try {
        verifyWebhookSignature(
          this.#options.inboundSecret ?? this.#options.secret,
          body,
          req.headers[SIGNATURE_HEADER],
          {
            toleranceMs: this.#options.toleranceMs ?? DEFAULT_TOLERANCE_MS,
            now: this.#now(),
          },
        );
      } catch (error) {
        if (!WebhookSignatureError.isInstance(error)) throw error;
        return json(res, 401, { error: error.message, problem: error.problem });
      }
      let text: string;
      try {
        text = utf8.decode(body);
      } catch {
        return json(res, 400, { error: "the body is not UTF-8" });
      }
      let event: unknown;
      try {
        event = JSON.parse(text);
      } catch {
        return json(res, 400, { error: "the body is not JSON" });
      }
      // A `\ud800` escape would reach the session's history, and every model call after it.
      const surrogate = loneSurrogatePath(event, text);
      if (surrogate !== undefined) {
        return json(res, 400, {
          error: `${surrogate || "the body"} holds a lone surrogate; send well-formed Unicode`,
        });
      }
      const input = this.#toInbound(event);
      if (typeof input === "string") return json(res, 400, { error: input });
      const ctx = this.#ctx;
      if (ctx === null)
        return json(res, 503, { error: "the channel is stopping" }, { "retry-after": "5" });
      const result = await ctx.receive(input);
      json(res, result.status === "accepted" ? 202 : 200, result as unknown as JsonValue);
    } catch (error) {
      if (InvalidInboundError.isInstance(error)) {
        json(res, 400, { error: error.message, field: error.field });
      } else if (NoProcessError.isInstance(error)) {
        json(res, 503, { error: "the channel is not running" }, { "retry-after": "5" });
      } else {
        this.#ctx?.logger.error("webhook request failed", { error });
        if (!res.headersSent) json(res, 500, { error: "internal error; retry later" });
        else res.destroy();
      }
    }
  }

  #maxBody(): number {
    return this.#options.maxBodyBytes ?? 1024 * 1024;
  }

  /** The raw body, or `undefined` when it is over the limit. */
  async #readBody(req: IncomingMessage): Promise<Buffer | undefined> {
    const limit = this.#maxBody();
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) return undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > limit) return undefined;
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  /** The event as an inbound message, or what is wrong with it. */
  #toInbound(event: unknown): InboundMessageInput | string {
    if (!isObject(event)) return "the body must be a JSON object";
    if (event.type !== "message") return `unsupported event type ${JSON.stringify(event.type)}`;
    const chat = event.chat;
    const from = event.from;
    if (!isObject(chat)) return "chat must be an object";
    if (!isObject(from)) return "from must be an object";
    if (event.text !== undefined && typeof event.text !== "string") return "text must be a string";
    const mentions = event.mentions;
    if (mentions !== undefined && !isObject(mentions)) return "mentions must be an object";
    const replyTo = event.replyTo;
    if (replyTo !== undefined && !isObject(replyTo)) return "replyTo must be an object";
    const input: InboundMessageInput = {
      peer:
        from.name === undefined
          ? { id: from.id as string }
          : { id: from.id as string, name: from.name as string },
      chatType: chat.type as "direct" | "group",
      text: (event.text as string | undefined) ?? "",
      messageId: event.id as string,
    };
    if (event.accountId !== undefined) input.accountId = event.accountId as string;
    if (chat.id !== undefined) input.chatId = chat.id as string;
    if (chat.threadId !== undefined) input.threadId = chat.threadId as string;
    if (event.attachments !== undefined)
      input.attachments = event.attachments as InboundMessageInput["attachments"];
    if (event.timestamp !== undefined) input.timestamp = event.timestamp as number;
    if (mentions !== undefined) {
      input.mentions = {
        ...(mentions.bot === undefined ? {} : { bot: mentions.bot as boolean }),
        ...(mentions.ids === undefined ? {} : { peers: mentions.ids as string[] }),
      };
    }
    if (replyTo !== undefined) {
      input.replyTo = {
        messageId: replyTo.id as string,
        ...(replyTo.text === undefined ? {} : { text: replyTo.text as string }),
        ...(replyTo.from === undefined ? {} : { peerId: replyTo.from as string }),
      };
    }
    input.raw = event;
    return input;
  }

  // ------------------------------------------------------------------ outbound

  async #deliver(
    event: WebhookOutboundPayload,
    options: (ChannelSendOptions & { attempts?: number }) | undefined,
  ): Promise<SentMessage> {
    const deliveryId = options?.idempotencyKey ?? randomUUID();
    const body = JSON.stringify({ ...event, deliveryId, channel: this.id });
    const retry = this.#options.retry ?? {};
    const maxAttempts = options?.attempts ?? retry.maxAttempts ?? 4;
    const baseDelayMs = retry.baseDelayMs ?? 500;
    const maxDelayMs = retry.maxDelayMs ?? 10_000;
    const signal = options?.signal;
    let lastError: ChannelSendError | undefined;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (signal?.aborted) throw new AbortedError("the send was aborted", { cause: signal.reason });
      const agent = this.#agent;
      const sends = this.#sends;
      if (agent === null || sends === null) {
        throw new ChannelSendError(this.id, `webhook channel "${this.id}" is not started`, {
          isRetryable: true,
        });
      }
      // The caller's signal, and `stop()`: a stopped channel neither sends nor waits to retry.
      const abort = signal === undefined ? sends.signal : AbortSignal.any([signal, sends.signal]);
      let retryAfterMs: number | undefined;
      try {
        const response = await this.#post(body, deliveryId, agent, abort);
        if (response.status >= 200 && response.status < 300) {
          let messageId = deliveryId;
          try {
            const parsed = JSON.parse(response.body) as { messageId?: unknown };
            if (typeof parsed?.messageId === "string" && parsed.messageId.length > 0)
              messageId = parsed.messageId;
          } catch {
            // An empty or non-JSON answer is fine: the delivery id names the message.
          }
          return { messageId };
        }
        const retryable = isRetryableStatus(response.status);
        retryAfterMs = parseRetryAfter(response.retryAfter, this.#now());
        lastError = new ChannelSendError(
          this.id,
          `the callback answered ${response.status}${response.body ? `: ${response.body.slice(0, 200)}` : ""}`,
          {
            isRetryable: retryable,
            statusCode: response.status,
            ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
            // One callback for every chat: its waits hold up the whole channel.
            scope: "channel",
          },
        );
        if (!retryable) throw lastError;
      } catch (error) {
        if (error === lastError) throw error;
        if (signal?.aborted) throw new AbortedError("the send was aborted", { cause: error });
        if (sends.signal.aborted) throw this.#stoppedDuringSend(error);
        if (isBeamClawError(error)) throw error;
        lastError = new ChannelSendError(
          this.id,
          `the callback could not be reached: ${(error as Error).message}`,
          {
            isRetryable: true,
            scope: "channel",
            cause: error,
          },
        );
      }
      if (attempt === maxAttempts) break;
      const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
      const delay = Math.max(
        Math.floor(ceiling / 2 + Math.random() * (ceiling / 2)),
        retryAfterMs ?? 0,
      );
      if (delay > maxDelayMs) break; // the caller's outbox waits longer than we should block
      await sleep(delay, abort).catch((error: unknown) => {
        throw signal?.aborted ? error : this.#stoppedDuringSend(error);
      });
    }
    throw lastError!;
  }

  #stoppedDuringSend(cause: unknown): AbortedError {
    return new AbortedError(`webhook channel "${this.id}" was stopped during the send`, { cause });
  }

  #post(
    body: string,
    deliveryId: string,
    agent: http.Agent,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; body: string; retryAfter: string | undefined }> {
    const timeout = AbortSignal.timeout(this.#options.timeoutMs ?? 10_000);
    const abort = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
    const client = this.#callback.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = client.request(
        this.#callback,
        {
          method: "POST",
          agent,
          signal: abort,
          headers: {
            "content-type": "application/json; charset=utf-8",
            "content-length": Buffer.byteLength(body),
            [SIGNATURE_HEADER]: signWebhookPayload(
              this.#options.outboundSecret ?? this.#options.secret,
              body,
              this.#now(),
            ),
            [DELIVERY_HEADER]: deliveryId,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size <= 64 * 1024) chunks.push(chunk);
          });
          res.on("end", () => {
            const header = res.headers["retry-after"];
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString("utf8"),
              retryAfter: Array.isArray(header) ? header[0] : header,
            });
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }
}

/** `Retry-After` as ms: seconds or an HTTP date. */
function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortedError("the send was aborted"));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError("the send was aborted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Creates a {@link WebhookChannel}.
 *
 * @throws InvalidArgumentError for a short secret, a bad callback URL or path, or a numeric option
 * (`retry`, `timeoutMs`, `toleranceMs`, `maxBodyBytes`, `port`) out of range.
 * @example
 * ```ts
 * const webhook = createWebhookChannel({ secret, callbackUrl: "http://127.0.0.1:9000/out", port: 0 });
 * ```
 */
export function createWebhookChannel(options: WebhookChannelOptions): WebhookChannel {
  return new WebhookChannel(options);
}
