/**
 * Retry delays and abortable waits for the provider chain.
 */
import { AbortedError } from "../errors.js";
import { startTimer } from "../runtime/timers.js";

/** How a provider chain retries one `provider/model` reference. */
export interface RetryOptions {
  /** Attempts per ref, the first call included. Default 3. */
  maxAttempts?: number;
  /** Ceiling of the first retry's delay; it doubles with each retry. Default 500. */
  baseDelayMs?: number;
  /**
   * Upper bound of any delay. A `retry-after` longer than this is not waited for: the chain
   * moves on to the next ref instead. Default 30 000.
   */
  maxDelayMs?: number;
  /**
   * `full` (default): each delay is drawn uniformly from `[0, ceiling)` ("full jitter"), so
   * that callers that failed together do not retry together. `none`: the ceiling itself.
   */
  jitter?: "full" | "none";
}

/** {@link RetryOptions} with every default filled in. */
export type ResolvedRetryOptions = Required<RetryOptions>;

/** Sleeps `ms` milliseconds; rejects with `AbortedError` as soon as `signal` aborts. */
export type SleepFunction = (ms: number, signal: AbortSignal) => Promise<void>;

/**
 * The delay before retry number `failedAttempts` (1 after the first failure), or `undefined`
 * when the provider asked for a longer wait (`retryAfterMs`) than `maxDelayMs` allows.
 *
 * Exponential backoff with optional full jitter: the ceiling is
 * `min(maxDelayMs, baseDelayMs * 2^(failedAttempts - 1))`; the delay is never shorter than
 * `retryAfterMs`.
 */
export function retryDelay(
  failedAttempts: number,
  retryAfterMs: number | undefined,
  options: ResolvedRetryOptions,
  random: () => number,
): number | undefined {
  if (retryAfterMs !== undefined && retryAfterMs > options.maxDelayMs) return undefined;
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (failedAttempts - 1));
  const backoff = options.jitter === "full" ? Math.floor(random() * ceiling) : ceiling;
  return Math.max(backoff, retryAfterMs ?? 0);
}

/** The error a wait or call rejects with when `signal` aborts. */
export function abortedBy(signal: AbortSignal, what = "provider call"): AbortedError {
  const reason: unknown = signal.reason;
  if (AbortedError.isInstance(reason)) return reason;
  return new AbortedError(`${what} was aborted`, { cause: reason });
}

/** The default {@link SleepFunction}: a timer that is cleared when `signal` aborts. */
export const sleep: SleepFunction = (ms, signal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortedBy(signal));
      return;
    }
    const onAbort = () => {
      timer.cancel();
      reject(abortedBy(signal));
    };
    const timer = startTimer(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });

/**
 * Settles like `promise`, or rejects with `AbortedError` the moment `signal` aborts, whichever
 * comes first; so that a wait or a stream that ignores its signal still cannot hold the caller.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(abortedBy(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedBy(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
