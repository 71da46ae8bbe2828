/**
 * What went wrong talking to the Bot API, in the host's terms: `TelegramApiError` for
 * connecting and polling, `ChannelSendError` for outbound calls.
 */
import { BeamClawError, ChannelSendError } from "@beamclaw/core";

/** The Bot API's answer to a failed call (`ok: false`), as grammY's `GrammyError` carries it. */
export interface TelegramFailure {
  /** `error_code`: the HTTP status. */
  errorCode: number;
  description: string;
  /** `parameters.retry_after`, in ms. */
  retryAfterMs?: number;
  /** `parameters.migrate_to_chat_id`: the group became this supergroup. */
  migrateToChatId?: number;
}

/**
 * A Bot API call made while connecting or polling failed: the token was refused
 * (`errorCode` 401, not retryable), another instance polls with the same token (409), a
 * webhook could not be set (400), or Telegram could not be reached (no `errorCode`).
 */
export class TelegramApiError extends BeamClawError {
  /** The Bot API method, e.g. `getUpdates`. */
  readonly method: string;
  /** Telegram's `error_code` (the HTTP status); `undefined` when it could not be reached. */
  readonly errorCode: number | undefined;
  readonly isRetryable: boolean;
  /** How long Telegram asked us to wait, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(
    method: string,
    message: string,
    details: {
      errorCode?: number;
      isRetryable: boolean;
      retryAfterMs?: number;
      cause?: unknown;
    },
  ) {
    super("TELEGRAM_API_ERROR", message, { cause: details.cause });
    this.method = method;
    this.errorCode = details.errorCode;
    this.isRetryable = details.isRetryable;
    this.retryAfterMs = details.retryAfterMs;
  }
  static override isInstance = (value: unknown): value is TelegramApiError =>
    BeamClawError.isInstance(value) && value.code === "TELEGRAM_API_ERROR";
}

/** The Bot API's error answer inside `error` (a grammY `GrammyError`), if it is one. */
export function telegramFailureOf(error: unknown): TelegramFailure | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as {
    name?: unknown;
    error_code?: unknown;
    description?: unknown;
    parameters?: { retry_after?: unknown; migrate_to_chat_id?: unknown };
  };
  if (e.name !== "GrammyError" || typeof e.error_code !== "number") return undefined;
  const retryAfter = e.parameters?.retry_after;
  const migrateTo = e.parameters?.migrate_to_chat_id;
  return {
    errorCode: e.error_code,
    description: typeof e.description === "string" ? e.description : "",
    ...(typeof retryAfter === "number" && retryAfter >= 0
      ? { retryAfterMs: Math.round(retryAfter * 1000) }
      : {}),
    ...(typeof migrateTo === "number" ? { migrateToChatId: migrateTo } : {}),
  };
}

/** A status worth trying again: flood control, and Telegram's own trouble. */
function retryableStatus(code: number): boolean {
  return code === 429 || code >= 500;
}

/** Why a call failed, for people, without the token (grammY's messages never carry it). */
function describe(method: string, error: unknown, failure: TelegramFailure | undefined): string {
  if (failure !== undefined) return `${method} failed: ${failure.errorCode} ${failure.description}`;
  const inner = (error as { error?: unknown } | undefined)?.error;
  const reason =
    inner instanceof Error ? inner.message : error instanceof Error ? error.message : "";
  return `${method} could not reach Telegram${reason ? `: ${reason}` : ""}`;
}

/**
 * `error` from a connecting or polling call as a {@link TelegramApiError}: 401 (bad token) and
 * 404 (a token of the wrong shape) are not retryable, nor is a 400 (a request Telegram will
 * refuse again, like a webhook URL it cannot use).
 */
export function toTelegramApiError(method: string, error: unknown): TelegramApiError {
  if (TelegramApiError.isInstance(error)) return error;
  const failure = telegramFailureOf(error);
  const code = failure?.errorCode;
  return new TelegramApiError(method, describe(method, error, failure), {
    isRetryable: code === undefined || (code !== 400 && code !== 401 && code !== 404),
    ...(code === undefined ? {} : { errorCode: code }),
    ...(failure?.retryAfterMs === undefined ? {} : { retryAfterMs: failure.retryAfterMs }),
    cause: error,
  });
}

/**
 * `error` from an outbound call as a `ChannelSendError`: 429 (with `retry_after` as
 * `retryAfterMs`), 5xx and network failures are retryable; any other answer of Telegram
 * (400 bad request, 403 blocked by the user, 401 revoked token) is not. Telegram's
 * `description` is the `platformCode` (its `error_code` is the HTTP status, `statusCode`). A
 * 429 (Telegram's flood control is per chat) holds up only its chat in the outbox
 * (`scope: "chat"`); Telegram's own trouble (5xx) and network failures the whole channel.
 */
export function toChannelSendError(
  channel: string,
  method: string,
  error: unknown,
): ChannelSendError {
  if (ChannelSendError.isInstance(error)) return error;
  const failure = telegramFailureOf(error);
  return new ChannelSendError(channel, describe(method, error, failure), {
    isRetryable: failure === undefined || retryableStatus(failure.errorCode),
    ...(failure === undefined ? {} : { statusCode: failure.errorCode }),
    ...(failure?.retryAfterMs === undefined ? {} : { retryAfterMs: failure.retryAfterMs }),
    ...(failure === undefined || failure.description === ""
      ? {}
      : { platformCode: failure.description }),
    scope: failure === undefined || failure.errorCode >= 500 ? "channel" : "chat",
    cause: error,
  });
}
