/**
 * Outbound helpers: Discord's `nonce` from the host's idempotency key, and what a failed
 * REST call means for the host (`ChannelSendError` with `isRetryable`, `retryAfterMs`,
 * `statusCode`).
 */
import { createHash } from "node:crypto";
import { AbortedError, ChannelSendError, isBeamClawError } from "@beamclaw/core";
import type { DiscordLibraries } from "./libraries.js";

/** Discord's longest `nonce`. */
const NONCE_LENGTH = 25;

/**
 * The `nonce` Discord deduplicates on (with `enforce_nonce`) for an idempotency key: the
 * same for every retry of one delivery, at most 25 characters.
 *
 * @example
 * ```ts
 * nonceFor("000001735689600000-000000001-a1b2c3:0"); // "Xq2...": 25 characters
 * ```
 */
export function nonceFor(idempotencyKey: string): string {
  if (idempotencyKey.length <= NONCE_LENGTH) return idempotencyKey;
  return createHash("sha256").update(idempotencyKey).digest("base64url").slice(0, NONCE_LENGTH);
}

/** Statuses worth trying again later: timeouts, rate limits, Discord's own failures. */
function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Maps what a REST call threw to the host's error. `what` names the call for the message
 * (`send a message to channel 123`). Discord's JSON error `code` becomes `platformCode`; a
 * rate limit holds up the outbox's whole channel only when it is Discord's global one
 * (`scope: "channel"`; a route's bucket: `"chat"`), as do Discord's 5xx and network failures.
 */
export function toSendError(
  channel: string,
  what: string,
  error: unknown,
  libraries: DiscordLibraries | undefined,
  signal: AbortSignal | undefined,
): Error {
  if (isBeamClawError(error)) return error;
  if (signal?.aborted) return new AbortedError(`aborted: ${what}`, { cause: error });
  const rest = libraries?.rest;
  if (rest !== undefined && error instanceof rest.RateLimitError) {
    const retryAfterMs = Math.max(0, Math.ceil(error.retryAfter));
    return new ChannelSendError(
      channel,
      `Discord rate limit (${error.global ? "global" : error.scope}) on ${error.method.toUpperCase()} ${error.route}: ${what} can be retried in ${retryAfterMs} ms`,
      {
        isRetryable: true,
        retryAfterMs,
        statusCode: 429,
        scope: error.global ? "channel" : "chat",
        cause: error,
      },
    );
  }
  if (rest !== undefined && error instanceof rest.DiscordAPIError) {
    return new ChannelSendError(
      channel,
      `Discord refused to ${what}: ${error.message} (HTTP ${error.status}, code ${error.code})`,
      {
        isRetryable: retryableStatus(error.status),
        statusCode: error.status,
        platformCode: String(error.code),
        scope: error.status >= 500 ? "channel" : "chat",
        cause: error,
      },
    );
  }
  if (rest !== undefined && error instanceof rest.HTTPError) {
    return new ChannelSendError(
      channel,
      `Discord answered HTTP ${error.status} when trying to ${what}`,
      {
        isRetryable: retryableStatus(error.status),
        statusCode: error.status,
        scope: error.status >= 500 ? "channel" : "chat",
        cause: error,
      },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ChannelSendError(channel, `could not reach Discord to ${what}: ${message}`, {
    isRetryable: true,
    scope: "channel",
    cause: error,
  });
}

/** `<:name:id>` and `<a:name:id>` (as users paste custom emoji) -> `name:id` (as the API wants). */
export function reactionEmoji(emoji: string): string {
  const custom = /^<a?:([^:>]+):([^>]+)>$/.exec(emoji.trim());
  return custom === null ? emoji.trim() : `${custom[1]}:${custom[2]}`;
}
