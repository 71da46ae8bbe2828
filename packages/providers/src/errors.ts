/**
 * Building the errors every adapter throws: `ProviderError` (with the kind, status, retry
 * hint, headers and body of the failed call) and `AbortedError`. Vendor-specific parts (how
 * an error body names its type) live in each adapter; the rules shared by all are here.
 */
import { AbortedError, ProviderError, type ProviderErrorKind } from "@beamclaw/core";

/** Which call failed: attached to every error an adapter throws. */
export interface CallContext {
  provider: string;
  model?: string;
}

/** What an adapter learned from a vendor's error payload. */
export interface VendorErrorInfo {
  /** The vendor's error type or code, e.g. `overloaded_error`, `insufficient_quota`. */
  type?: string;
  message?: string;
  /** The kind the vendor's type implies; overrides the one derived from the status. */
  kind?: ProviderErrorKind;
  /**
   * The kind a generic vendor type (`server_error`, `invalid_request_error`) implies, used
   * only for error events inside a stream, where there is no status to go by.
   */
  streamKind?: ProviderErrorKind;
  /** Set when the vendor's type says retrying cannot help although the kind usually can. */
  isRetryable?: boolean;
  /**
   * How long the vendor's body asks to wait, in ms (Google's `RetryInfo.retryDelay`); a
   * `retry-after` header takes precedence.
   */
  retryAfterMs?: number;
}

/** Reads a vendor error payload (HTTP error body or mid-stream error event). */
export type VendorErrorParser = (body: unknown) => VendorErrorInfo;

/** Response bodies kept on errors are cut to this many characters. */
const MAX_BODY_CHARS = 16_000;

/**
 * The kind of failure an HTTP status means, before the vendor's body is considered. 402
 * (Payment Required: Anthropic's `billing_error`, OpenRouter's insufficient credits) is the
 * account's, not the request's: `auth`, like a key that is refused.
 */
export function kindFromStatus(status: number): ProviderErrorKind {
  if (status === 429) return "rate_limit";
  if (status === 503 || status === 529) return "overloaded";
  if (status === 408) return "timeout";
  if (status === 401 || status === 402 || status === 403) return "auth";
  if (status >= 500) return "server";
  if (status >= 400) return "invalid_request";
  return "unknown";
}

/**
 * How long the server asked us to wait, in milliseconds: `retry-after-ms` (OpenAI) first,
 * then `retry-after` as seconds or as an HTTP date. Undefined when absent or unreadable.
 */
export function parseRetryAfter(headers: Headers, now: number = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "") {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return Math.round(value);
  }
  const after = headers.get("retry-after");
  if (after === null || after.trim() === "") return undefined;
  const seconds = Number(after);
  if (Number.isFinite(seconds)) return seconds >= 0 ? Math.round(seconds * 1000) : undefined;
  const date = Date.parse(after);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

const DURATION_UNIT_MS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  µs: 0.001,
  ns: 0.000_001,
};

/** A Go duration (`1s`, `6m0s`, `20ms`, `1m30.5s`) in ms; undefined when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  const value = text.trim();
  if (!/^(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s))+$/.test(value)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/g)) {
    ms += Number(amount) * (DURATION_UNIT_MS[unit ?? ""] ?? 0);
  }
  return Math.round(ms);
}

/**
 * How long until a rate limit lets requests through again, from OpenAI's `x-ratelimit-*`
 * headers (sent by compatible servers such as Groq too), for a 429 without `retry-after`:
 * `x-ratelimit-reset-requests` and `x-ratelimit-reset-tokens` say, as Go durations (`1s`,
 * `6m0s`), when each budget is full again. The later reset of the budgets whose
 * `x-ratelimit-remaining-*` is 0, or of both when neither says it is spent. Undefined when
 * there is no such header.
 */
export function parseRateLimitReset(headers: Headers): number | undefined {
  const budgets = ["requests", "tokens"].flatMap((budget) => {
    const reset = headers.get(`x-ratelimit-reset-${budget}`);
    const ms = reset === null ? undefined : parseGoDuration(reset);
    if (ms === undefined) return [];
    return [{ ms, spent: headers.get(`x-ratelimit-remaining-${budget}`)?.trim() === "0" }];
  });
  const spent = budgets.filter((budget) => budget.spent);
  const chosen = spent.length > 0 ? spent : budgets;
  return chosen.length === 0 ? undefined : Math.max(...chosen.map((budget) => budget.ms));
}

/** Headers as a plain object (lower-case names), for `ProviderError.responseHeaders`. */
export function headersToRecord(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => {
    out[name] = value;
  });
  return out;
}

function truncate(body: string): string {
  return body.length > MAX_BODY_CHARS ? `${body.slice(0, MAX_BODY_CHARS)}…` : body;
}

function tryParseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function label(context: CallContext): string {
  return context.model === undefined ? context.provider : `${context.provider}/${context.model}`;
}

/** The error for a non-2xx response, from its status, headers and `body` (as read). */
export function errorFromResponse(
  response: Response,
  body: string,
  context: CallContext,
  parseVendorError: VendorErrorParser,
): ProviderError {
  const info = parseVendorError(tryParseJson(body));
  const kind = info.kind ?? kindFromStatus(response.status);
  // Anthropic and OpenAI say outright whether a retry can help; their own SDKs obey it.
  const shouldRetry = response.headers.get("x-should-retry");
  const isRetryable =
    shouldRetry === "true" ? true : shouldRetry === "false" ? false : info.isRetryable;
  const what = [info.type, info.message].filter(Boolean).join(": ") || response.statusText;
  return new ProviderError(`${label(context)}: HTTP ${response.status}${what ? ` ${what}` : ""}`, {
    kind,
    provider: context.provider,
    ...(context.model === undefined ? {} : { model: context.model }),
    statusCode: response.status,
    ...(isRetryable === undefined ? {} : { isRetryable }),
    retryAfterMs:
      parseRetryAfter(response.headers) ??
      info.retryAfterMs ??
      (response.status === 429 ? parseRateLimitReset(response.headers) : undefined),
    responseHeaders: headersToRecord(response.headers),
    responseBody: truncate(body),
  });
}

/** The error for an error event inside a stream that started with HTTP 200. */
export function errorFromStreamEvent(
  data: unknown,
  raw: string,
  context: CallContext,
  parseVendorError: VendorErrorParser,
  defaultKind: ProviderErrorKind = "server",
): ProviderError {
  const info = parseVendorError(data);
  const what = [info.type, info.message].filter(Boolean).join(": ") || "error event";
  return new ProviderError(`${label(context)}: error in stream: ${what}`, {
    kind: info.kind ?? info.streamKind ?? defaultKind,
    provider: context.provider,
    ...(context.model === undefined ? {} : { model: context.model }),
    ...(info.isRetryable === undefined ? {} : { isRetryable: info.isRetryable }),
    // A wait the event's body asks for (Google's `RetryInfo`): no header comes mid-stream.
    ...(info.retryAfterMs === undefined ? {} : { retryAfterMs: info.retryAfterMs }),
    responseBody: truncate(raw),
  });
}

/** A `ProviderError` of the given kind, without HTTP details. */
export function providerError(
  kind: ProviderErrorKind,
  message: string,
  context: CallContext,
  extra: { cause?: unknown; responseBody?: string } = {},
): ProviderError {
  return new ProviderError(`${label(context)}: ${message}`, {
    kind,
    provider: context.provider,
    ...(context.model === undefined ? {} : { model: context.model }),
    ...(extra.cause === undefined ? {} : { cause: extra.cause }),
    ...(extra.responseBody === undefined ? {} : { responseBody: truncate(extra.responseBody) }),
  });
}

/**
 * `error` (a vendor's refusal of a request) said again as `what`, the vendor's own words
 * (`vendor`) kept after it: same kind, status, headers and body, never retryable (the same
 * request is refused the same way), the original error as its `cause`.
 */
export function restatedError(
  error: ProviderError,
  context: CallContext,
  what: string,
  vendor: string,
): ProviderError {
  const status = error.statusCode === undefined ? "" : ` HTTP ${error.statusCode}`;
  return new ProviderError(`${label(context)}:${status} ${what} (${vendor})`, {
    kind: error.kind,
    provider: context.provider,
    ...(context.model === undefined ? {} : { model: context.model }),
    ...(error.statusCode === undefined ? {} : { statusCode: error.statusCode }),
    isRetryable: false,
    ...(error.responseHeaders === undefined ? {} : { responseHeaders: error.responseHeaders }),
    ...(error.responseBody === undefined ? {} : { responseBody: error.responseBody }),
    cause: error,
  });
}

/** The error for a call cancelled through its `AbortSignal`. */
export function abortedError(context: CallContext, signal: AbortSignal): AbortedError {
  return new AbortedError(`${label(context)}: the call was aborted`, { cause: signal.reason });
}

/**
 * Maps whatever a fetch or a body read threw: an abort by the caller's signal becomes
 * `AbortedError`; our own errors pass through; anything else (connection refused or reset,
 * socket closed, DNS) is a retryable `network` error.
 */
export function errorFromThrown(
  error: unknown,
  context: CallContext,
  signal: AbortSignal | undefined,
): Error {
  if (signal?.aborted) return abortedError(context, signal);
  if (ProviderError.isInstance(error) || AbortedError.isInstance(error)) return error;
  const detail = describeCause(error);
  return providerError("network", `connection failed: ${detail}`, context, { cause: error });
}

function describeCause(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // undici wraps the socket error ("ECONNRESET", "other side closed") in `cause`.
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message !== error.message) {
    return `${error.message} (${cause.message})`;
  }
  return error.message;
}
