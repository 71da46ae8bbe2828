/**
 * The Slack Web API as this channel uses it: one `@slack/web-api` `WebClient` whose own
 * retries are off (the host's durable outbox retries, honouring `Retry-After`), a fetch that
 * honours each call's `AbortSignal`, and Slack's errors read into BeamClaw's.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  BeamClawError,
  type BeamClawErrorOptions,
  type ChannelLogger,
  ChannelSendError,
} from "@beamclaw/core";
import {
  type FetchFunction,
  LogLevel,
  type Logger as SlackLogger,
  WebClient,
  type WebClientOptions,
} from "@slack/web-api";
import { withoutBody } from "../shared/responses.js";

/** A Slack Web API call failed (outside of sending, which throws `ChannelSendError`). */
export class SlackApiError extends BeamClawError {
  /** The Web API method, e.g. `auth.test`. */
  readonly method: string;
  /** Slack's error code (`invalid_auth`, `ratelimited`, ...), when Slack answered one. */
  readonly slackError: string | undefined;
  /** False for errors a retry cannot fix: bad or revoked tokens, missing scopes. */
  readonly isRetryable: boolean;
  /** How long Slack asked us to wait, in ms (rate limits). */
  readonly retryAfterMs: number | undefined;
  /** The HTTP status, when it was not 200. */
  readonly statusCode: number | undefined;
  constructor(method: string, message: string, details: BeamClawErrorOptions & SlackErrorDetails) {
    super("SLACK_API_ERROR", message, details);
    this.method = method;
    this.slackError = details.slackError;
    this.isRetryable = details.isRetryable;
    this.retryAfterMs = details.retryAfterMs;
    this.statusCode = details.statusCode;
  }
  static override isInstance = (value: unknown): value is SlackApiError =>
    BeamClawError.isInstance(value) && value.code === "SLACK_API_ERROR";
}

/** What is known about a failed Web API call. */
export interface SlackErrorDetails {
  isRetryable: boolean;
  slackError?: string;
  retryAfterMs?: number;
  statusCode?: number;
}

/** Slack error codes that say "try again later" rather than "this will never work". */
const TRANSIENT_ERRORS = new Set([
  "ratelimited",
  "rate_limited",
  "internal_error",
  "fatal_error",
  "service_unavailable",
  "request_timeout",
  "team_added_to_org",
]);

/** Reads an error thrown by `@slack/web-api` (by its `code`, so any copy of the package works). */
export function slackErrorDetails(error: unknown): SlackErrorDetails & { description: string } {
  const e = error as {
    code?: unknown;
    message?: unknown;
    retryAfter?: unknown;
    statusCode?: unknown;
    headers?: Record<string, string>;
    data?: { error?: unknown; response_metadata?: { retryAfter?: unknown } };
  } | null;
  switch (e?.code) {
    case "slack_webapi_rate_limited_error": {
      // 0: Slack gave no usable wait (see `readableRetryAfter`); the host's backoff applies.
      const seconds =
        typeof e.retryAfter === "number" && e.retryAfter > 0 ? e.retryAfter : undefined;
      return {
        description: `rate limited by Slack${seconds === undefined ? "" : `; retry after ${seconds} s`}`,
        isRetryable: true,
        slackError: "ratelimited",
        statusCode: 429,
        ...(seconds === undefined ? {} : { retryAfterMs: seconds * 1000 }),
      };
    }
    case "slack_webapi_platform_error": {
      const slackError = typeof e.data?.error === "string" ? e.data.error : "unknown_error";
      // `ok: false` with `ratelimited` may come with a `Retry-After` header, which
      // @slack/web-api keeps as `response_metadata.retryAfter` (seconds).
      const seconds = e.data?.response_metadata?.retryAfter;
      const retryable = TRANSIENT_ERRORS.has(slackError);
      return {
        description: `Slack answered ${slackError}`,
        isRetryable: retryable,
        slackError,
        ...(retryable && typeof seconds === "number" && Number.isFinite(seconds) && seconds >= 0
          ? { retryAfterMs: seconds * 1000 }
          : {}),
      };
    }
    case "slack_webapi_http_error": {
      const status = typeof e.statusCode === "number" ? e.statusCode : 0;
      const header = e.headers?.["retry-after"];
      const seconds = header === undefined ? Number.NaN : Number(header);
      return {
        description: `Slack answered HTTP ${status}`,
        isRetryable: status >= 500 || status === 408 || status === 425 || status === 429,
        statusCode: status,
        ...(Number.isFinite(seconds) && seconds >= 0 ? { retryAfterMs: seconds * 1000 } : {}),
      };
    }
    default: {
      // A network failure (`slack_webapi_request_error`) or anything unexpected: worth a retry.
      const message = error instanceof Error ? error.message : String(error);
      return { description: `Slack could not be reached: ${message}`, isRetryable: true };
    }
  }
}

/**
 * The error an outbound call throws for a Web API failure, with Slack's `error` as
 * `platformCode`. Its waits hold up the whole channel (`scope: "channel"`): Slack rate-limits
 * each Web API method per workspace, and an answer does not say which limit it was.
 */
export function toChannelSendError(
  channel: string,
  method: string,
  error: unknown,
): ChannelSendError {
  const { description, slackError, ...details } = slackErrorDetails(error);
  return new ChannelSendError(channel, `${method} failed: ${description}`, {
    ...details,
    ...(slackError === undefined ? {} : { platformCode: slackError }),
    scope: "channel",
    cause: error,
  });
}

/** The error any other call throws for a Web API failure. */
export function toSlackApiError(method: string, error: unknown): SlackApiError {
  const { description, ...details } = slackErrorDetails(error);
  return new SlackApiError(method, `${method} failed: ${description}`, {
    ...details,
    cause: error,
  });
}

/**
 * Slack's libraries log through this: into the channel's logger (`info` and below as
 * `debug`: they narrate connection steps the channel reports itself).
 */
export function toSlackLogger(target: () => ChannelLogger | undefined): SlackLogger {
  let level = LogLevel.INFO;
  const forward =
    (kind: "debug" | "warn") =>
    (...parts: unknown[]) =>
      target()?.[kind](
        parts.map((part) => (typeof part === "string" ? part : String(part))).join(" "),
        { source: "@slack" },
      );
  return {
    debug: forward("debug"),
    info: forward("debug"),
    warn: forward("warn"),
    error: forward("warn"),
    setLevel(next) {
      level = next;
    },
    getLevel: () => level,
    setName() {},
  };
}

/**
 * A 429 whose `Retry-After` `@slack/web-api` can read. It reads whole seconds only, and for a
 * 429 without them throws a plain error that would pass for a network failure: an HTTP date
 * (RFC 9110 allows one) becomes the seconds until it, a missing or unreadable value 0 (no
 * hint: the host's own backoff applies).
 */
function readableRetryAfter(response: Response): Response {
  const header = response.headers.get("retry-after");
  if (header !== null && /^\s*\d/.test(header)) return response;
  const date = header === null ? Number.NaN : Date.parse(header);
  const seconds = Number.isNaN(date) ? 0 : Math.max(0, Math.ceil((date - Date.now()) / 1000));
  const headers = new Headers(response.headers);
  headers.set("retry-after", String(seconds));
  return new Response(null, { status: 429, statusText: response.statusText, headers });
}

/** Options of {@link SlackWebApi}. */
export interface SlackWebApiOptions {
  slackApiUrl: string;
  timeoutMs: number;
  logger: SlackLogger;
}

/**
 * A `WebClient` whose calls take an `AbortSignal`. `@slack/web-api` has no per-call signal,
 * so the signal travels to its fetch in an `AsyncLocalStorage`.
 */
export class SlackWebApi {
  readonly client: WebClient;
  readonly #signals = new AsyncLocalStorage<AbortSignal | undefined>();
  readonly #options: SlackWebApiOptions;

  constructor(token: string, options: SlackWebApiOptions) {
    this.#options = options;
    this.client = new WebClient(token, this.clientOptions());
  }

  /**
   * Options for a `WebClient` in this channel's style: no retries of its own and rate limits
   * rejected at once (the host's outbox retries after `retryAfterMs`), requests through
   * {@link SlackWebApi.fetch}.
   */
  clientOptions(): WebClientOptions {
    return {
      slackApiUrl: this.#options.slackApiUrl,
      logger: this.#options.logger,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: this.#options.timeoutMs,
      fetch: this.fetch,
    };
  }

  /**
   * `globalThis.fetch` (looked up per request) with the calling context's signal. A 429 is
   * handed on without its body: `@slack/web-api` reads only its `Retry-After`, and the body,
   * left unread, would hold its connection until garbage collection.
   */
  readonly fetch: FetchFunction = async (url, init) => {
    const signals = [init?.signal, this.#signals.getStore()].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    const signal =
      signals.length === 0
        ? undefined
        : signals.length === 1
          ? signals[0]
          : AbortSignal.any(signals);
    const response = await globalThis.fetch(url, {
      ...init,
      ...(signal === undefined ? {} : { signal }),
    });
    return response.status === 429 ? readableRetryAfter(withoutBody(response)) : response;
  };

  /** Calls a Web API method; `signal` aborts the request. */
  call<T = Record<string, unknown>>(
    method: string,
    args: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<T> {
    return this.#signals.run(signal, () => this.client.apiCall(method, args)) as Promise<T>;
  }
}
