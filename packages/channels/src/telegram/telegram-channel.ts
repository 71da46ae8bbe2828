/**
 * The Telegram channel: the Bot API through grammY's client, long polling or a webhook in,
 * `sendMessage` and friends out.
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
  type ChannelTarget,
  chunkText,
  type InboundAttachment,
  type InboundMessageInput,
  InvalidArgumentError,
  InvalidInboundError,
  NoProcessError,
  type OutboundMedia,
  type SentMessage,
} from "@beamclaw/core";
import type { Api, InputFile } from "grammy";
import type { Message, ReactionTypeEmoji, Update } from "grammy/types";
import { shouldDownloadFiles } from "../shared/admission.js";
import {
  downloadFile,
  type InlineAttachmentOptions,
  type InlineLimits,
  inlineLimitOf,
  inlineLimits,
  withInlineData,
} from "../shared/files.js";
import { integerOption, MAX_TIMER_MS } from "../shared/options.js";
import { STOP_DRAIN_MS, settlesWithin } from "../shared/settle.js";
import { Stops } from "../shared/stops.js";
import {
  TelegramApiError,
  telegramFailureOf,
  toChannelSendError,
  toTelegramApiError,
} from "./errors.js";
import {
  ALLOWED_UPDATES,
  malformedMessageField,
  messageOfUpdate,
  normalizeMessage,
  parseTelegramMessageId,
  type TelegramBotIdentity,
  type TelegramFileRef,
  telegramMessageId,
} from "./inbound.js";
import { toTelegramMarkdownV2 } from "./markdown.js";
import { type BatchOutcome, runLongPolling, type TelegramPollingOptions } from "./polling.js";
import {
  listenForTelegramWebhook,
  type TelegramWebhookOptions,
  type TelegramWebhookServer,
} from "./webhook-server.js";

/**
 * What to do with the files of inbound messages: images and PDFs up to the limits of
 * {@link InlineAttachmentOptions} are downloaded and handed over inline (the Bot API serves
 * files up to 20 MB); anything else is handed over described (kind, type, name, size).
 */
export interface TelegramAttachmentOptions extends InlineAttachmentOptions {
  /**
   * A URL for a file, for `InboundAttachment.url` (e.g. your own proxy that fetches it with
   * `getFile`). Telegram's own file URLs carry the bot token, so the channel never hands
   * them out. Return `undefined` to fall back to the default.
   */
  url?: (file: TelegramFileRef) => string | undefined;
}

/** Options of {@link createTelegramChannel}. */
export interface TelegramChannelOptions {
  /** The channel id (and session-key segment). Default `telegram`. */
  id?: string;
  /** The bot token from @BotFather, `<bot id>:<secret>`. */
  token: string;
  /** How updates arrive. Default `polling`. */
  mode?: "polling" | "webhook";
  /** Long polling (mode `polling`). */
  polling?: TelegramPollingOptions;
  /** The webhook endpoint (mode `webhook`; required there). */
  webhook?: TelegramWebhookOptions;
  /** The Bot API server. Default `https://api.telegram.org` (or your local Bot API server). */
  apiRoot?: string;
  /** The `fetch` the Bot API client uses. Default the global `fetch`. */
  fetch?: typeof globalThis.fetch;
  /**
   * How outbound text is sent: `markdown` converts the agent's Markdown to MarkdownV2 (and
   * falls back to plain text if Telegram refuses it); `plain` sends it as written. Default
   * `markdown`.
   */
  format?: "markdown" | "plain";
  /** Link previews under messages with URLs. Default true. */
  linkPreviews?: boolean;
  attachments?: TelegramAttachmentOptions;
  /** Time limit of one outbound call. Default 30 000. */
  requestTimeoutMs?: number;
}

type Grammy = typeof import("grammy");
/** grammY types its signals as its `abort-controller` polyfill's; a standard one works. */
type GrammySignal = Parameters<Api["getMe"]>[0];
const grammySignal = (signal: AbortSignal): GrammySignal => signal as unknown as GrammySignal;
let grammy: Promise<Grammy> | undefined;

/** grammY is loaded on first use, not on import. */
function loadGrammy(): Promise<Grammy> {
  grammy ??= import("grammy").catch((error: unknown) => {
    grammy = undefined;
    throw error;
  });
  return grammy;
}

/**
 * Telegram's front end answers some failures (502, 504, a bare 429) with HTML or nothing;
 * grammY parses every answer as JSON. This gives it the Bot API's error shape instead, so
 * the status (and `Retry-After`) survive.
 */
function withBotApiErrors(fetchFn: typeof globalThis.fetch): typeof globalThis.fetch {
  return async (input, init) => {
    // grammY may hand over a polyfilled AbortSignal, which Node 24's fetch refuses: pass a
    // native one that follows it.
    const signal = init?.signal;
    if (signal != null && !(signal instanceof AbortSignal)) {
      const native = new AbortController();
      const follow = signal as unknown as {
        aborted: boolean;
        reason?: unknown;
        addEventListener(type: "abort", fn: () => void, options?: { once: boolean }): void;
      };
      if (follow.aborted) native.abort(follow.reason);
      else follow.addEventListener("abort", () => native.abort(follow.reason), { once: true });
      init = { ...init, signal: native.signal };
    }
    const response = await fetchFn(input, init);
    if (response.ok || (response.headers.get("content-type") ?? "").includes("json")) {
      return response;
    }
    // Read to the end (error pages are small) so the connection can be reused.
    await response.arrayBuffer().catch(() => undefined);
    const retryAfter = Number(response.headers.get("retry-after") ?? Number.NaN);
    return Response.json(
      {
        ok: false,
        error_code: response.status,
        description: response.statusText || `HTTP ${response.status}`,
        ...(Number.isFinite(retryAfter) && retryAfter >= 0
          ? { parameters: { retry_after: retryAfter } }
          : {}),
      },
      { status: response.status },
    );
  };
}

const TOKEN = /^\d{1,20}:[A-Za-z0-9_-]{20,}$/;
const SECRET_TOKEN = /^[A-Za-z0-9_-]{16,256}$/;
const CAPTION_LIMIT = 1024;
/** How long `stop()`'s last `getUpdates` (confirming what the host took) may take. */
const CONFIRM_TIMEOUT_MS = 3_000;
const silent: ChannelLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** One connection: from `start` to `stop` (or a lost connection). */
interface Connection {
  readonly ctx: ChannelContext;
  readonly controller: AbortController;
  readonly signal: AbortSignal;
  /**
   * Aborted when `stop()` gives up waiting for the host's answers to updates already handed
   * over (after {@link STOP_DRAIN_MS}): those updates are left unconfirmed.
   */
  readonly abandon: AbortController;
  loop: Promise<void> | undefined;
  server: TelegramWebhookServer | undefined;
  /** Settles once `start` is done with it: connected, or failed and closed what it opened. */
  readonly opened: Promise<void>;
}

function chatIdOf(channel: string, chatId: string): number | string {
  if (/^-?\d{1,20}$/.test(chatId)) return Number(chatId);
  if (/^@\w{4,64}$/.test(chatId)) return chatId; // a public channel's @username
  throw new ChannelSendError(channel, `not a Telegram chat id: ${JSON.stringify(chatId)}`, {
    isRetryable: false,
  });
}

function threadOf(channel: string, target: ChannelTarget): { message_thread_id?: number } {
  if (target.threadId === undefined) return {};
  if (!/^\d{1,12}$/.test(target.threadId)) {
    throw new ChannelSendError(
      channel,
      `not a Telegram topic id: ${JSON.stringify(target.threadId)}`,
      { isRetryable: false },
    );
  }
  return { message_thread_id: Number(target.threadId) };
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The Telegram channel (v1 channel plugin), on the Bot API through grammY's client.
 *
 * Inbound, by long polling (default) or a webhook: private chats are direct messages;
 * groups, supergroups and channels are groups; forum topics are threads. A message
 * addresses the bot (`mentions.bot`) with an `@botname` mention, a `text_mention` of it, a
 * `/command@botname`, or a reply to one of its messages. Message ids are
 * `<chat_id>:<message_id>`. An update is confirmed to Telegram (the polling offset moves past
 * it, or the webhook answers 200) only after `ctx.receive` resolved.
 *
 * Outbound: `sendMessage` (Markdown converted to MarkdownV2; replies and topics), `sendPhoto`
 * / `sendVideo` / `sendAudio` / `sendDocument` (a caption over 1,024 characters follows the
 * file as messages of its own, each recorded with the host's `progress` so that a retry
 * resumes after those sent), `editMessageText`, `sendChatAction` typing,
 * `setMessageReaction`. A 429 becomes a retryable `ChannelSendError` with `retryAfterMs` from
 * `retry_after`; the host's outbox waits and retries.
 *
 * @example
 * ```ts
 * const telegram = createTelegramChannel({ token: process.env.TELEGRAM_BOT_TOKEN! });
 * const channels = new ChannelManager({
 *   runtime,
 *   channels: [{ plugin: telegram, dmPolicy: "pairing", groupPolicy: "open" }],
 * });
 * await channels.start(); // polling getUpdates
 * ```
 */
export class TelegramChannel implements ChannelPlugin {
  readonly specificationVersion = "v1" as const;
  readonly id: string;
  readonly meta = {
    label: "Telegram",
    description: "Telegram bots: private chats, groups and forum topics, by polling or webhook.",
    docsUrl: "https://github.com/beamclaw/beamclaw/tree/main/packages/channels#telegram",
  };
  readonly capabilities: ChannelCapabilities = {
    directMessages: true,
    groups: true,
    threads: true,
    media: true,
    edits: true,
    reactions: true,
    typing: true,
    maxMessageLength: 4096,
  };
  readonly gatewayMethods: Readonly<Record<string, ChannelGatewayMethod>>;
  readonly #options: TelegramChannelOptions;
  readonly #mode: "polling" | "webhook";
  readonly #apiRoot: string;
  readonly #fetch: typeof globalThis.fetch;
  readonly #requestTimeoutMs: number;
  readonly #inline: InlineLimits;
  #api: Promise<Api> | undefined;
  #connection: Connection | null = null;
  /** The `stop()` under way (polling or the endpoint ending): a second one waits for it. */
  readonly #stops = new Stops();
  #bot: TelegramBotIdentity | undefined;
  /** The next `getUpdates` offset; kept across restarts so nothing confirmed comes back. */
  #offset: number | undefined;

  constructor(options: TelegramChannelOptions) {
    if (typeof options?.token !== "string" || !TOKEN.test(options.token)) {
      throw new InvalidArgumentError(
        "token must be a Telegram bot token (<bot id>:<secret>, as @BotFather gives it)",
      );
    }
    const mode = options.mode ?? "polling";
    if (mode !== "polling" && mode !== "webhook") {
      throw new InvalidArgumentError(`mode must be "polling" or "webhook", got ${String(mode)}`);
    }
    if (mode === "webhook") {
      const secret = options.webhook?.secretToken;
      if (typeof secret !== "string" || !SECRET_TOKEN.test(secret)) {
        throw new InvalidArgumentError(
          "webhook mode needs webhook.secretToken: 16-256 characters of A-Z, a-z, 0-9, _ and -",
        );
      }
      const path = options.webhook?.path;
      if (path !== undefined && !path.startsWith("/")) {
        throw new InvalidArgumentError('webhook.path must start with "/"');
      }
      if (options.webhook?.url !== undefined) {
        let url: URL;
        try {
          url = new URL(options.webhook.url);
        } catch {
          throw new InvalidArgumentError(
            `webhook.url is not a URL: ${JSON.stringify(options.webhook.url)}`,
          );
        }
        if (url.protocol !== "https:") {
          throw new InvalidArgumentError("webhook.url must be https (Telegram requires it)");
        }
      }
    }
    const limit = options.polling?.limit;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 100)) {
      throw new InvalidArgumentError("polling.limit must be an integer from 1 to 100");
    }
    const timeout = options.polling?.timeoutSeconds;
    // 0 would be short polling: a request after request while nothing happens.
    if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 1)) {
      throw new InvalidArgumentError("polling.timeoutSeconds must be an integer >= 1");
    }
    const failures = options.polling?.disconnectAfterFailures;
    if (failures !== undefined && (!Number.isInteger(failures) || failures < 1)) {
      throw new InvalidArgumentError("polling.disconnectAfterFailures must be an integer >= 1");
    }
    integerOption(options.requestTimeoutMs, "requestTimeoutMs", 1, MAX_TIMER_MS);
    integerOption(options.polling?.baseDelayMs, "polling.baseDelayMs", 0, MAX_TIMER_MS);
    integerOption(options.polling?.maxDelayMs, "polling.maxDelayMs", 0, MAX_TIMER_MS);
    if (mode === "webhook") {
      integerOption(options.webhook?.port, "webhook.port", 0, 65_535);
      integerOption(options.webhook?.maxBodyBytes, "webhook.maxBodyBytes", 1);
      // setWebhook's max_connections: 1-100.
      integerOption(options.webhook?.maxConnections, "webhook.maxConnections", 1, 100);
    }
    const format = options.format ?? "markdown";
    if (format !== "markdown" && format !== "plain") {
      throw new InvalidArgumentError(`format must be "markdown" or "plain", got ${String(format)}`);
    }
    let apiRoot = options.apiRoot ?? "https://api.telegram.org";
    try {
      apiRoot = new URL(apiRoot).href.replace(/\/+$/, "");
    } catch {
      throw new InvalidArgumentError(`apiRoot is not a URL: ${JSON.stringify(apiRoot)}`);
    }
    this.id = options.id ?? "telegram";
    this.#options = options;
    this.#mode = mode;
    this.#apiRoot = apiRoot;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#inline = inlineLimits(options.attachments, "attachments");
    this.gatewayMethods = {
      info: {
        description: "The bot, how updates arrive, and where the webhook listens.",
        scope: "operator.read",
        handler: () => ({
          mode: this.#mode,
          connected: this.#connection !== null,
          bot:
            this.#bot === undefined
              ? null
              : { id: this.#bot.id, username: this.#bot.username ?? null },
          webhookUrl: this.#connection?.server?.localUrl ?? null,
          offset: this.#offset ?? null,
        }),
      },
    };
  }

  /** The bot, as `getMe` described it at the last `start`. */
  get bot(): TelegramBotIdentity | undefined {
    return this.#bot;
  }

  /** Where the webhook endpoint listens while started in webhook mode. */
  get localUrl(): string | undefined {
    return this.#connection?.server?.localUrl;
  }

  async start(ctx: ChannelContext): Promise<void> {
    if (this.#connection !== null) {
      throw new AlreadyStartedError(`telegram channel "${this.id}" is already started`);
    }
    const controller = new AbortController();
    let opened!: () => void;
    const connection: Connection = {
      ctx,
      controller,
      signal: AbortSignal.any([ctx.signal, controller.signal]),
      abandon: new AbortController(),
      loop: undefined,
      server: undefined,
      opened: new Promise<void>((resolve) => {
        opened = resolve;
      }),
    };
    this.#connection = connection;
    const { signal } = connection;
    try {
      const api = await this.#client();
      const me = await this.#connectCall("getMe", () => api.getMe(grammySignal(signal)));
      this.#bot = { id: me.id, username: me.username };
      if (this.#mode === "polling") {
        // getUpdates refuses to work while a webhook is set.
        await this.#connectCall("deleteWebhook", () =>
          api.deleteWebhook({ drop_pending_updates: false }, grammySignal(signal)),
        );
        connection.loop = this.#poll(connection, api);
      } else {
        const webhook = this.#options.webhook!;
        connection.server = await listenForTelegramWebhook(
          webhook,
          (update) => this.#handleWebhookUpdate(connection, update as unknown as Update),
          ctx.logger,
          (error) => ctx.disconnected(error),
        );
        if (webhook.url !== undefined) {
          await this.#connectCall("setWebhook", () =>
            api.setWebhook(
              webhook.url!,
              {
                secret_token: webhook.secretToken,
                allowed_updates: [...ALLOWED_UPDATES],
                ...(webhook.maxConnections === undefined
                  ? {}
                  : { max_connections: webhook.maxConnections }),
              },
              grammySignal(signal),
            ),
          );
        }
      }
      // A `stop()` (or the host's abort) that came while the endpoint was opening: nothing
      // of this start may stay listening or polling.
      if (signal.aborted) {
        throw new AbortedError(`telegram channel "${this.id}" was stopped while starting`);
      }
      ctx.logger.info("telegram connected", {
        mode: this.#mode,
        bot: me.username,
        ...(connection.server === undefined ? {} : { url: connection.server.localUrl }),
      });
    } catch (error) {
      await this.#close(connection);
      if (this.#connection === connection) this.#connection = null;
      throw error;
    } finally {
      opened();
    }
  }

  /**
   * Stops polling or closes the webhook endpoint. Polling: the waiting `getUpdates` is
   * aborted and no further update is handed over; updates the host is already being handed
   * get up to 5 s for `ctx.receive` to settle. Those it took are confirmed — the offset moves
   * past them and, if no poll carried that offset yet, a last `getUpdates` (`timeout` 0) tells
   * Telegram, so they are not delivered again after a restart (unless polling ended because
   * Telegram refuses `getUpdates`: a bad token, a conflict, polls that kept failing, a 429
   * still to wait out; the next start's first poll carries the offset); one whose
   * `ctx.receive` did not settle in time, or failed, stays unconfirmed and is fetched again.
   * Resolves once the channel stopped (no request, timer or socket of its own left); a `stop()`
   * while another is under way resolves with it, one after the channel stopped resolves at once. A
   * `stop()` while `start()` is under way ends the start with `AbortedError`, and resolves once
   * that start has closed what it opened.
   */
  async stop(): Promise<void> {
    const connection = this.#connection;
    if (connection === null) return this.#stops.pending;
    this.#connection = null;
    return this.#stops.run(() => this.#shutDown(connection));
  }

  /** Ends `connection`. */
  async #shutDown(connection: Connection): Promise<void> {
    connection.controller.abort();
    // A start still under way ends first (with AbortedError), closing what it opened.
    await connection.opened;
    await this.#close(connection);
  }

  async sendText(
    target: ChannelTarget,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    const thread = threadOf(this.id, target);
    const sent = await this.#call(
      "sendMessage",
      target.chatId,
      options,
      (api, chatId, signal, migrated) =>
        this.#formatted(text, (body, parseMode) =>
          api.sendMessage(
            chatId,
            body,
            {
              ...thread,
              ...this.#replyTo(chatId, options?.replyToMessageId, migrated),
              ...(parseMode === undefined ? {} : { parse_mode: parseMode }),
              ...this.#linkPreviews(),
            },
            signal,
          ),
        ),
    );
    return { messageId: telegramMessageId(sent.chat.id, sent.message_id) };
  }

  /**
   * Sends a file with its caption; a caption over Telegram's 1,024 characters follows the file
   * as messages of its own. Each message is recorded with `options.progress` as Telegram
   * confirms it, and a retry of the delivery skips those already sent (the Bot API has no
   * idempotency key: a file sent again would appear twice).
   */
  async sendMedia(
    target: ChannelTarget,
    media: OutboundMedia,
    options?: ChannelSendOptions,
  ): Promise<SentMessage> {
    const thread = threadOf(this.id, target);
    const caption = media.caption ?? "";
    // A caption over Telegram's limit follows the file as messages of its own.
    const inline = caption.length <= CAPTION_LIMIT ? caption : "";
    const progress = options?.progress;
    const done = progress?.sent ?? [];
    // An earlier attempt sent the file (and maybe some of the caption): its chat is where the
    // file went (a group that became a supergroup has a new id).
    const earlier = done.length > 0 ? parseTelegramMessageId(done[0]!) : undefined;
    let file: { messageId: string; chatId: string };
    if (earlier !== undefined) {
      file = { messageId: done[0]!, chatId: earlier.chatId };
    } else {
      const sent = await this.#sendFile(target, media, inline, thread, options);
      file = {
        messageId: telegramMessageId(sent.chat.id, sent.message_id),
        chatId: String(sent.chat.id),
      };
      await progress?.record(file.messageId);
    }
    if (inline !== caption) {
      const pieces = chunkText(caption, this.capabilities.maxMessageLength);
      // `done` holds the file, then the pieces sent before.
      const skip = earlier === undefined ? 0 : done.length - 1;
      for (const piece of pieces.slice(skip)) {
        const sent = await this.sendText(
          { ...target, chatId: file.chatId },
          piece,
          options?.signal === undefined ? {} : { signal: options.signal },
        );
        await progress?.record(sent.messageId);
      }
    }
    return { messageId: file.messageId };
  }

  /** `sendPhoto` / `sendVideo` / `sendAudio` / `sendDocument` with `caption` (may be ""). */
  async #sendFile(
    target: ChannelTarget,
    media: OutboundMedia,
    caption: string,
    thread: { message_thread_id?: number },
    options: ChannelSendOptions | undefined,
  ): Promise<Message> {
    const { InputFile } = await loadGrammy();
    const file: string | InputFile | undefined =
      media.data !== undefined
        ? new InputFile(Buffer.from(media.data, "base64"), media.name ?? defaultFileName(media))
        : media.url;
    if (file === undefined) {
      throw new ChannelSendError(this.id, "media needs a url or data", { isRetryable: false });
    }
    const method = MEDIA_METHODS[media.kind];
    return this.#call(method, target.chatId, options, (api, chatId, signal, migrated) =>
      this.#formatted(caption, (body, parseMode) => {
        const other = {
          ...thread,
          ...this.#replyTo(chatId, options?.replyToMessageId, migrated),
          ...(body.length === 0
            ? {}
            : { caption: body, ...(parseMode === undefined ? {} : { parse_mode: parseMode }) }),
        };
        const sending: Promise<Message> =
          media.kind === "image"
            ? api.sendPhoto(chatId, file, other, signal)
            : media.kind === "video"
              ? api.sendVideo(chatId, file, other, signal)
              : media.kind === "audio"
                ? api.sendAudio(chatId, file, other, signal)
                : api.sendDocument(chatId, file, other, signal);
        return sending;
      }),
    );
  }

  async edit(
    target: ChannelTarget,
    messageId: string,
    text: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    const ref = messageRefOf(target, messageId);
    if (ref === undefined) {
      throw new ChannelSendError(this.id, `not a Telegram message id: ${messageId}`, {
        isRetryable: false,
      });
    }
    try {
      await this.#call("editMessageText", ref.chatId, options, (api, chatId, signal) =>
        this.#formatted(text, (body, parseMode) =>
          api.editMessageText(
            chatId,
            ref.messageId,
            body,
            {
              ...(parseMode === undefined ? {} : { parse_mode: parseMode }),
              // An edit without it would turn previews on: Telegram's default.
              ...this.#linkPreviews(),
            },
            signal,
          ),
        ),
      );
    } catch (error) {
      // Telegram refuses an edit to the same text; the message already says it.
      const cause = (error as { cause?: unknown }).cause;
      if (/message is not modified/i.test(telegramFailureOf(cause)?.description ?? "")) {
        return;
      }
      throw error;
    }
  }

  async typing(target: ChannelTarget, options?: ChannelSendOptions): Promise<void> {
    const thread = threadOf(this.id, target);
    await this.#call("sendChatAction", target.chatId, options, (api, chatId, signal) =>
      api.sendChatAction(chatId, "typing", thread, signal),
    );
  }

  async react(
    target: ChannelTarget,
    messageId: string,
    emoji: string,
    options?: ChannelSendOptions,
  ): Promise<void> {
    const ref = messageRefOf(target, messageId);
    if (ref === undefined) {
      throw new ChannelSendError(this.id, `not a Telegram message id: ${messageId}`, {
        isRetryable: false,
      });
    }
    await this.#call("setMessageReaction", ref.chatId, options, (api, chatId, signal) =>
      api.setMessageReaction(
        chatId,
        ref.messageId,
        [{ type: "emoji", emoji: emoji as ReactionTypeEmoji["emoji"] }],
        {},
        signal,
      ),
    );
  }

  // ------------------------------------------------------------------ connection

  #client(): Promise<Api> {
    this.#api ??= loadGrammy().then(
      ({ Api }) =>
        new Api(this.#options.token, {
          apiRoot: this.#apiRoot,
          fetch: withBotApiErrors(this.#fetch) as never,
          // grammY's own limit must outlast a long poll; outbound calls get a tighter signal.
          timeoutSeconds:
            (this.#options.polling?.timeoutSeconds ?? 30) +
            Math.ceil(this.#requestTimeoutMs / 1000),
        }),
      (error: unknown) => {
        this.#api = undefined;
        throw new TelegramApiError("load", `grammy could not be loaded: ${describeError(error)}`, {
          isRetryable: false,
          cause: error,
        });
      },
    );
    return this.#api;
  }

  async #connectCall<T>(method: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toTelegramApiError(method, error);
    }
  }

  async #close(connection: Connection): Promise<void> {
    connection.controller.abort();
    const { loop } = connection;
    // Updates handed to the host finish first (the loop confirms those it took), but a host
    // that does not answer cannot hold the stop for ever.
    if (loop !== undefined && !(await settlesWithin([loop], STOP_DRAIN_MS))) {
      connection.ctx.logger.warn(
        "telegram stop: the host did not finish taking updates in time; they stay unconfirmed",
        { waitedMs: STOP_DRAIN_MS },
      );
      connection.abandon.abort();
      await loop;
    }
    await connection.server?.close();
  }

  #poll(connection: Connection, api: Api): Promise<void> {
    const polling = this.#options.polling ?? {};
    const { ctx, signal } = connection;
    return runLongPolling(
      this.#offset,
      polling,
      {
        getUpdates: (offset, abort) =>
          api.getUpdates(
            {
              ...(offset === undefined ? {} : { offset }),
              limit: polling.limit ?? 100,
              timeout: polling.timeoutSeconds ?? 30,
              allowed_updates: [...ALLOWED_UPDATES],
            },
            grammySignal(abort),
          ),
        deliver: (updates, abort) => this.#deliverBatch(connection, updates, abort),
        onOffset: (offset) => {
          this.#offset = offset;
        },
        // "An update is considered confirmed as soon as getUpdates is called with an offset
        // higher than its update_id" (https://core.telegram.org/bots/api#getupdates); timeout 0
        // answers at once, and what it answers stays unconfirmed (fetched at the next start).
        confirm: async (offset) => {
          try {
            await api.getUpdates(
              { offset, limit: 1, timeout: 0 },
              grammySignal(AbortSignal.timeout(CONFIRM_TIMEOUT_MS)),
            );
          } catch (error) {
            ctx.logger.warn(
              "telegram could not confirm the updates the host took; they may come again after a restart",
              { offset, error: describeError(error) },
            );
          }
        },
        onLost: (error) => {
          ctx.logger.warn("telegram polling lost its connection", {
            error: describeError(error),
          });
          ctx.disconnected(error);
        },
        logger: ctx.logger,
      },
      signal,
    ).catch((error: unknown) => {
      // A bug in the loop must not pass silently: the host reconnects.
      if (!signal.aborted) ctx.disconnected(error);
    });
  }

  // ------------------------------------------------------------------ inbound

  /**
   * Hands a batch to the host: prepared side by side (downloads); each chat's updates
   * received in order, chats without waiting for each other (one update's slow download holds
   * only the updates behind it in its own chat), and none waiting for the host to be done
   * with another (the host keeps a conversation's order, and merges bursts when it debounces);
   * confirmed up to the first the host could not take. Once `signal` aborts nothing more is
   * handed over, but the host's answers to what was are waited for (until `stop()` abandons
   * them), so that an update it took is confirmed.
   */
  async #deliverBatch(
    connection: Connection,
    updates: Update[],
    signal: AbortSignal,
  ): Promise<BatchOutcome> {
    const { ctx } = connection;
    /** Per chat: settles once the chat's latest update so far was handed over (or skipped). */
    const handedOver = new Map<string, Promise<unknown>>();
    const turns = updates.map((update) => {
      const prepared = this.#prepare(update, ctx, signal).then(
        (input): InboundMessageInput | undefined => input,
        (error: unknown) => {
          if (InvalidInboundError.isInstance(error)) {
            // Malformed: fetching it again would not make it well-formed.
            ctx.logger.error("telegram update is malformed; confirming it", {
              updateId: update.update_id,
              error: error.message,
              field: error.field,
            });
            return undefined;
          }
          // A bug, not a passing trouble: fetching the update again would fail again.
          ctx.logger.error("telegram update could not be read; confirming it", {
            updateId: update.update_id,
            error: describeError(error),
          });
          return undefined;
        },
      );
      const chat = chatKeyOf(update);
      const turn = Promise.all([handedOver.get(chat), prepared]).then(([, input]) => {
        // Stopped meanwhile: not handed over (nor confirmed; it is fetched again).
        if (signal.aborted) return undefined;
        const receipt: Promise<{ error?: unknown }> =
          input === undefined
            ? Promise.resolve({})
            : ctx.receive(input).then(
                () => ({}),
                (error: unknown) => ({ error }),
              );
        return { receipt };
      });
      handedOver.set(chat, turn);
      return turn;
    });
    const abandoned = connection.abandon.signal;
    let done = 0;
    for (const turn of turns) {
      const handed = await untilAborted(turn, abandoned);
      if (handed === undefined) return { done, stale: true };
      const outcome = await untilAborted(handed.receipt, abandoned);
      if (outcome === undefined) return { done, stale: true };
      const { error } = outcome;
      if (error !== undefined) {
        if (NoProcessError.isInstance(error)) return { done, stale: true };
        if (!InvalidInboundError.isInstance(error)) return { done, error };
        // Fetching it again would not make it valid: confirm it, and say so.
        ctx.logger.error("telegram update refused by the host as malformed", {
          updateId: updates[done]!.update_id,
          error: error.message,
          field: error.field,
        });
      }
      done++;
    }
    return { done, ...(signal.aborted ? { stale: true } : {}) };
  }

  async #handleWebhookUpdate(connection: Connection, update: Update): Promise<void> {
    if (this.#connection !== connection) {
      throw new NoProcessError(`telegram channel "${this.id}" is not running`);
    }
    const input = await this.#prepare(update, connection.ctx, connection.signal);
    if (input !== undefined) await connection.ctx.receive(input);
  }

  /**
   * The update as an inbound message (files resolved: downloaded only when the host takes the
   * message, `ctx.admits`), or `undefined` when none is due.
   */
  async #prepare(
    update: Update,
    ctx: ChannelContext,
    signal: AbortSignal,
  ): Promise<InboundMessageInput | undefined> {
    const { logger } = ctx;
    const message: Message | undefined = messageOfUpdate(update);
    if (message !== undefined && message !== null) {
      // Telegram's documented types, checked before anything is read: a message with a field
      // of another type is confirmed and logged, never handed over half-read.
      const path = update.message === message ? "message" : "channel_post";
      const malformed = malformedMessageField(message, path);
      if (malformed !== undefined) {
        throw new InvalidInboundError(this.id, malformed.field, malformed.problem);
      }
    }
    const normalized =
      message === undefined || this.#bot === undefined
        ? undefined
        : normalizeMessage(message, this.#bot);
    if (normalized === undefined) {
      logger.debug("telegram update skipped", {
        updateId: update.update_id,
        kinds: Object.keys(update).filter((k) => k !== "update_id"),
      });
      return undefined;
    }
    const { input, files } = normalized;
    if (files.length > 0) {
      // Nothing is fetched for a sender or chat the host turns away: described, the files
      // still let it answer the message as it does (a pairing code, once).
      const download = await shouldDownloadFiles(ctx, input);
      input.attachments = await Promise.all(
        files.map((f) => this.#attachment(f, logger, signal, download)),
      );
    }
    input.raw = update;
    return input;
  }

  async #attachment(
    file: TelegramFileRef,
    logger: ChannelLogger,
    signal: AbortSignal,
    download: boolean,
  ): Promise<InboundAttachment> {
    const attachment: InboundAttachment = {
      kind: file.kind,
      ...(file.mediaType === undefined ? {} : { mediaType: file.mediaType }),
      ...(file.name === undefined ? {} : { name: file.name }),
      ...(file.size === undefined ? {} : { size: file.size }),
    };
    let url: string | undefined;
    try {
      url = this.#options.attachments?.url?.(file);
    } catch (error) {
      logger.warn("telegram attachments.url failed", {
        fileId: file.fileId,
        error: describeError(error),
      });
    }
    if (url !== undefined) return { ...attachment, url };
    const limit = inlineLimitOf(attachment, this.#inline);
    if (limit <= 0 || !download) return attachment;
    try {
      const data = await this.#download(file.fileId, limit, signal);
      if (data !== undefined) return withInlineData(attachment, data);
    } catch (error) {
      // The text still reaches the host; only the file's content is missing.
      logger.warn("telegram file could not be downloaded", {
        fileId: file.fileId,
        error: describeError(error),
      });
    }
    return attachment;
  }

  /** The file's bytes, or `undefined` when it is over `limit`. Never logs its URL (the token is in it). */
  async #download(fileId: string, limit: number, signal: AbortSignal): Promise<Buffer | undefined> {
    const api = await this.#client();
    const timeout = AbortSignal.any([signal, AbortSignal.timeout(this.#requestTimeoutMs)]);
    const file = await api.getFile(fileId, grammySignal(timeout));
    if (file.file_path === undefined) return undefined;
    if ((file.file_size ?? 0) > limit) return undefined;
    const downloaded = await downloadFile(
      `${this.#apiRoot}/file/bot${this.#options.token}/${file.file_path}`,
      { fetch: this.#fetch, maxBytes: limit, timeoutMs: this.#requestTimeoutMs, signal },
    );
    return downloaded?.data;
  }

  // ------------------------------------------------------------------ outbound

  #logger(): ChannelLogger {
    return this.#connection?.ctx.logger ?? silent;
  }

  /**
   * Runs an outbound Bot API call with a time limit and the caller's signal, and maps its
   * failure. A group that became a supergroup (`migrate_to_chat_id`) is sent to once more,
   * at its new id (`migrated` true). An edit or a reaction is not: its message stays in the
   * old group, and the supergroup numbers its messages afresh, so the same `message_id`
   * there is another message.
   */
  async #call<T>(
    method: string,
    chat: string,
    options: ChannelSendOptions | undefined,
    run: (api: Api, chatId: number | string, signal: GrammySignal, migrated: boolean) => Promise<T>,
  ): Promise<T> {
    let chatId = chatIdOf(this.id, chat);
    const caller = options?.signal;
    if (caller?.aborted) {
      throw new AbortedError(`telegram ${method} was aborted`, { cause: caller.reason });
    }
    let api: Api;
    try {
      api = await this.#client();
    } catch (error) {
      throw new ChannelSendError(this.id, describeError(error), {
        isRetryable: false,
        cause: error,
      });
    }
    for (let attempt = 1; ; attempt++) {
      const timeout = AbortSignal.timeout(this.#requestTimeoutMs);
      const signal = caller === undefined ? timeout : AbortSignal.any([caller, timeout]);
      try {
        return await run(api, chatId, grammySignal(signal), attempt > 1);
      } catch (error) {
        if (caller?.aborted) {
          throw new AbortedError(`telegram ${method} was aborted`, { cause: error });
        }
        const migrated = telegramFailureOf(error)?.migrateToChatId;
        if (migrated !== undefined && attempt === 1 && !MESSAGE_METHODS.has(method)) {
          this.#logger().warn("telegram group became a supergroup; sending to its new id", {
            from: chatId,
            to: migrated,
          });
          chatId = migrated;
          continue;
        }
        throw toChannelSendError(this.id, method, error);
      }
    }
  }

  /** Sends `text` formatted, or as written when Telegram cannot parse the formatted text. */
  async #formatted<T>(
    text: string,
    send: (body: string, parseMode: "MarkdownV2" | undefined) => Promise<T>,
  ): Promise<T> {
    if ((this.#options.format ?? "markdown") === "plain" || text.length === 0) {
      return send(text, undefined);
    }
    const markdown = toTelegramMarkdownV2(text);
    if (markdown.trim().length === 0) return send(text, undefined);
    try {
      return await send(markdown, "MarkdownV2");
    } catch (error) {
      const failure = telegramFailureOf(error);
      if (
        failure?.errorCode !== 400 ||
        !/can't parse entities|can't find end/i.test(failure.description)
      ) {
        throw error;
      }
      this.#logger().warn("telegram refused the MarkdownV2 of a message; sending it as written", {
        description: failure.description,
      });
      return send(text, undefined);
    }
  }

  /** `link_preview_options` of `sendMessage` and `editMessageText` (`linkPreviews: false`). */
  #linkPreviews(): { link_preview_options?: { is_disabled: true } } {
    return this.#options.linkPreviews === false
      ? { link_preview_options: { is_disabled: true } }
      : {};
  }

  /**
   * `reply_parameters` for a reply to `messageId` (a `<chat_id>:<message_id>`). Once the
   * chat turned out to have become a supergroup (`migrated`), a message of another chat is
   * not quoted: it is the old group's, which Telegram refuses to name.
   */
  #replyTo(
    chatId: number | string,
    messageId: string | undefined,
    migrated: boolean,
  ): {
    reply_parameters?: {
      message_id: number;
      chat_id?: number | string;
      allow_sending_without_reply: boolean;
    };
  } {
    if (messageId === undefined) return {};
    const ref = parseTelegramMessageId(messageId);
    if (ref === undefined) {
      this.#logger().debug("telegram reply target is not a Telegram message id; not quoting", {
        messageId,
      });
      return {};
    }
    if (migrated && ref.chatId !== String(chatId)) {
      this.#logger().debug(
        "telegram reply target is in the group before it became a supergroup; not quoting",
        {
          messageId,
        },
      );
      return {};
    }
    return {
      reply_parameters: {
        message_id: ref.messageId,
        // A reply to a message of another chat names that chat.
        ...(ref.chatId === String(chatId) ? {} : { chat_id: chatIdOf(this.id, ref.chatId) }),
        // The quoted message may be gone; the answer still matters.
        allow_sending_without_reply: true,
      },
    };
  }
}

/** The chat and message of `messageId`: `<chat_id>:<message_id>`, or a bare id in the target's chat. */
function messageRefOf(
  target: ChannelTarget,
  messageId: string,
): { chatId: string; messageId: number } | undefined {
  if (/^\d{1,12}$/.test(messageId)) return { chatId: target.chatId, messageId: Number(messageId) };
  return parseTelegramMessageId(messageId);
}

/** Bot API methods on one message: they do not follow a group to its supergroup. */
const MESSAGE_METHODS: ReadonlySet<string> = new Set(["editMessageText", "setMessageReaction"]);

const MEDIA_METHODS: Record<OutboundMedia["kind"], string> = {
  image: "sendPhoto",
  video: "sendVideo",
  audio: "sendAudio",
  file: "sendDocument",
};

function defaultFileName(media: OutboundMedia): string {
  const extension = media.mediaType?.split("/")[1]?.replace(/[^\w]/g, "") ?? "bin";
  return `${media.kind}.${extension}`;
}

/**
 * The chat an update belongs to, its key in a batch's per-chat order; "" for an update that
 * names none (they keep their order among themselves).
 */
function chatKeyOf(update: Update): string {
  const id = (messageOfUpdate(update) as { chat?: { id?: unknown } } | undefined)?.chat?.id;
  return typeof id === "number" || typeof id === "string" ? String(id) : "";
}

/** `promise`'s value, or `undefined` once `signal` aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    void promise.then((value) => {
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    });
  });
}

/**
 * Creates a {@link TelegramChannel}. Nothing connects until the host starts it.
 *
 * @throws InvalidArgumentError for a malformed token, a missing or weak webhook secret, a
 * non-HTTPS webhook URL, or out-of-range polling options, `requestTimeoutMs` or webhook numbers.
 * @example
 * ```ts
 * const telegram = createTelegramChannel({
 *   token: process.env.TELEGRAM_BOT_TOKEN!,
 *   mode: "webhook",
 *   webhook: { secretToken: process.env.TELEGRAM_WEBHOOK_SECRET!, url: "https://bot.example.com/telegram", port: 8443 },
 * });
 * ```
 */
export function createTelegramChannel(options: TelegramChannelOptions): TelegramChannel {
  return new TelegramChannel(options);
}
