/**
 * Long polling with acknowledge-after-durable semantics. `getUpdates` confirms every update
 * below its `offset`; the offset only moves past an update once the host has it, so an
 * update is never confirmed before it is safe, and never fetched again after (when the loop
 * ends before its next poll, Telegram is told with a last `getUpdates`: see `confirm`).
 */
import type { ChannelLogger } from "@beamclaw/core";
import type { Update } from "grammy/types";
import { TelegramApiError, telegramFailureOf, toTelegramApiError } from "./errors.js";

/** How the long-polling loop waits and gives up. */
export interface TelegramPollingOptions {
  /** `getUpdates`' long-poll timeout in seconds (at least 1). Default 30. */
  timeoutSeconds?: number;
  /** Updates per `getUpdates`, 1-100. Default 100. */
  limit?: number;
  /** The first retry after a failed poll waits between half of this and all of it; it doubles per failure. Default 500. */
  baseDelayMs?: number;
  /** Longest wait between retries. Default 30 000. */
  maxDelayMs?: number;
  /**
   * After this many failures in a row the channel reports itself disconnected and the host
   * reconnects it with its own backoff (its status shows the trouble). Default 5.
   */
  disconnectAfterFailures?: number;
}

/** What a batch came to: how many updates, from the first, the host is done with. */
export interface BatchOutcome {
  done: number;
  /** Why the rest are not done (they are fetched again). */
  error?: unknown;
  /** The context is stale: the loop ends without confirming the rest. */
  stale?: boolean;
}

/** What the loop needs from the channel. */
export interface LongPollerHooks {
  getUpdates(offset: number | undefined, signal: AbortSignal): Promise<Update[]>;
  /**
   * Hands a batch to the host in order. Once `signal` aborts, hands over nothing more, but
   * still settles with how many the host is done with (the channel bounds how long it waits
   * for the host's answers to those already handed over).
   */
  deliver(updates: Update[], signal: AbortSignal): Promise<BatchOutcome>;
  /** The offset moved (the channel keeps it across restarts). */
  onOffset(offset: number): void;
  /**
   * The loop ends with an offset no `getUpdates` carried yet (the host took updates, and the
   * loop stopped before its next poll): tells Telegram, so that those updates are confirmed
   * and not delivered again after a restart of the process. Never rejects; bounded in time.
   * Without it, Telegram learns the offset from the next `getUpdates` of a later start. Not
   * called when the loop ends because `getUpdates` is refused (a bad token, a conflict, polls
   * that kept failing, or a stop while a 429's `retry_after` runs): it would be refused too.
   */
  confirm?(offset: number): Promise<void>;
  /** The connection is lost for good: the host should reconnect. */
  onLost(error: unknown): void;
  logger: ChannelLogger;
  random?: () => number;
}

/** An object with the non-negative integer `update_id` every Update has. */
function isUpdate(value: unknown): value is Update {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const id = (value as { update_id?: unknown }).update_id;
  return Number.isSafeInteger(id) && (id as number) >= 0;
}

/** Resolves after `ms`, or with `false` at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `getUpdates` until `signal` aborts or the connection is lost. Failed polls are retried
 * with jittered exponential backoff (`retry_after` when Telegram gives one); a refused token
 * (401, 404) or a conflict (409: another instance polls, or a webhook is set) is reported to
 * the host at once. A result that is not a list counts as a failed poll; entries without a
 * non-negative integer `update_id` are skipped (logged), as they can be neither ordered nor
 * confirmed; an answer of nothing but such entries (or of updates below the offset) counts as
 * a failed poll too.
 */
export async function runLongPolling(
  initialOffset: number | undefined,
  options: TelegramPollingOptions,
  hooks: LongPollerHooks,
  signal: AbortSignal,
): Promise<void> {
  const baseDelayMs = options.baseDelayMs ?? 500;
  const maxDelayMs = options.maxDelayMs ?? 30_000;
  const disconnectAfter = options.disconnectAfterFailures ?? 5;
  const random = hooks.random ?? Math.random;
  let offset = initialOffset;
  /** The offset of the last `getUpdates` Telegram answered: what it knows to be confirmed. */
  let told = initialOffset;
  let failures = 0;
  /**
   * Until when (`Date.now()`) Telegram refuses `getUpdates`, so that a last one confirming the
   * offset would be refused too: for good after a refused token (401, 404), a conflict (409)
   * or a loss after polls that kept failing; until its `retry_after` has passed after a 429.
   */
  let refusedUntil = 0;

  /** Waits before the next poll; false when the loop must end. */
  const failed = async (error: unknown, retryAfterMs: number | undefined): Promise<boolean> => {
    failures++;
    if (failures >= disconnectAfter) {
      hooks.onLost(toTelegramApiError("getUpdates", error));
      return false;
    }
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (failures - 1));
    const delay = Math.max(retryAfterMs ?? 0, Math.floor(ceiling / 2 + random() * (ceiling / 2)));
    hooks.logger.warn("telegram polling failed; retrying", {
      failures,
      retryInMs: delay,
      error: error instanceof Error ? error.message : String(error),
    });
    return sleep(delay, signal);
  };

  try {
    await poll();
  } finally {
    if (offset !== undefined && offset !== told && Date.now() >= refusedUntil) {
      await hooks.confirm?.(offset);
    }
  }

  async function poll(): Promise<void> {
    while (!signal.aborted) {
      let updates: Update[];
      try {
        updates = await hooks.getUpdates(offset, signal);
        // Answered: Telegram has the offset (a failed call may not have reached it).
        told = offset;
        refusedUntil = 0;
      } catch (error) {
        if (signal.aborted) return;
        const failure = telegramFailureOf(error);
        const code = failure?.errorCode;
        if (code === 401 || code === 404 || code === 409) {
          // A bad token or another poller (or a webhook): no getUpdates can confirm anything.
          refusedUntil = Number.POSITIVE_INFINITY;
          hooks.onLost(toTelegramApiError("getUpdates", error));
          return;
        }
        if (failure?.retryAfterMs !== undefined) {
          refusedUntil = Date.now() + failure.retryAfterMs;
        }
        if (!(await failed(error, failure?.retryAfterMs))) {
          // Given up on polls that keep failing: one more would fail as well (the offset is
          // kept, and the next start's first poll carries it).
          if (failures >= disconnectAfter) refusedUntil = Number.POSITIVE_INFINITY;
          return;
        }
        continue;
      }
      if (!Array.isArray(updates)) {
        // Not the documented Array of Update: a failed poll, retried with backoff.
        const error = new TelegramApiError(
          "getUpdates",
          "getUpdates answered a result that is not a list of updates",
          { isRetryable: true },
        );
        if (!(await failed(error, undefined))) return;
        continue;
      }
      // Entries without a usable update_id cannot be confirmed or ordered: left out, logged.
      const wellFormed = updates.filter(isUpdate);
      if (wellFormed.length < updates.length) {
        hooks.logger.error("telegram getUpdates answered entries that are not updates; skipped", {
          skipped: updates.length - wellFormed.length,
        });
      }
      // Never hand over what was confirmed already, whatever the server sent.
      const fresh = wellFormed.filter((u) => offset === undefined || u.update_id >= offset);
      if (fresh.length === 0) {
        if (updates.length === 0) {
          failures = 0; // a long poll that ended without news
          continue;
        }
        // Only entries that can be neither handed over nor confirmed: the server answers them
        // again at once, so wait as after a failed poll rather than ask in a tight loop.
        const error = new TelegramApiError(
          "getUpdates",
          "getUpdates answered nothing usable (entries without update_id, or below the offset)",
          { isRetryable: true },
        );
        if (!(await failed(error, undefined))) return;
        continue;
      }
      const outcome = await hooks.deliver(fresh, signal);
      if (outcome.done > 0) {
        offset = fresh[outcome.done - 1]!.update_id + 1;
        hooks.onOffset(offset);
      }
      if (outcome.stale === true || signal.aborted) return;
      if (outcome.done < fresh.length) {
        // The host could not take an update: fetch it again (from the new offset) later.
        if (!(await failed(outcome.error, undefined))) return;
        continue;
      }
      failures = 0;
    }
  }
}
