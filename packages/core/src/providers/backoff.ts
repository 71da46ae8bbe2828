/**
 * Retry delays and abortable waits for the provider chain.
 */
import { AbortedError } from "../errors.js";
import { withLazySignal } from "../runtime/lazy-abort.js";
import { keepShape } from "../runtime/shapes.js";
import { startTimer } from "../runtime/timers.js";

/** How a provider chain retries one `provider/model` reference. */
export interface RetryOptions {
  /** Attempts per ref, the first call included. Default 3. */
  maxAttempts?: number;
  /** Ceiling of the first retry's delay; it doubles with each retry. Default 500. */
  baseDelayMs?: number;
  /**
   * Upper bound of any delay. A `retry-after` longer than this is not waited for: the chain
   * moves on to the next ref instead. While another ref follows, a `retry-after` longer than
   * the retry's backoff ceiling is not waited for either. Default 30 000.
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
  const ceiling = backoffCeiling(failedAttempts, options);
  const backoff = options.jitter === "full" ? Math.floor(random() * ceiling) : ceiling;
  return Math.max(backoff, retryAfterMs ?? 0);
}

/**
 * The ceiling of the backoff before retry number `failedAttempts`:
 * `min(maxDelayMs, baseDelayMs * 2^(failedAttempts - 1))` (a base of 0 stays 0).
 */
export function backoffCeiling(failedAttempts: number, options: ResolvedRetryOptions): number {
  if (options.baseDelayMs === 0) return 0;
  return Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (failedAttempts - 1));
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

/**
 * The cancellation of one provider-chain call: the `AbortSignal` handed to its provider
 * calls, and a race that ends the call's current wait at once when it is aborted.
 *
 * Cheap on the streaming path, where every event is a wait: one `abort` listener per call
 * (on the caller's signal, by the chain) instead of one per wait, and the signal itself is
 * made only when someone reads it (Node makes an `AbortSignal` lazily, and making one costs
 * as much as a dozen promises), which a provider that ignores its signal never does.
 * @internal
 */
export class CallCancellation {
  readonly #controller = new AbortController();
  #aborted = false;
  /** Rejects the wait in flight; only one wait is in flight at a time. */
  #rejectWait: ((error: unknown) => void) | undefined;

  /** True once {@link CallCancellation.abort} was called. */
  get aborted(): boolean {
    return this.#aborted;
  }

  /** The call's signal; aborted with the reason given to `abort`. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Aborts the signal and rejects the wait in flight with `AbortedError`. Idempotent. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#controller.abort(reason);
    const reject = this.#rejectWait;
    this.#rejectWait = undefined;
    reject?.(this.error());
  }

  /** The error an aborted call throws. */
  error(): AbortedError {
    return abortedBy(this.#controller.signal);
  }

  /**
   * Settles like `promise`, or rejects with `AbortedError` the moment the call is aborted,
   * whichever comes first (a stream that ignores its signal cannot hold the caller).
   */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.#aborted) {
      promise.catch(() => {});
      return Promise.reject(this.error());
    }
    return new Promise<T>((resolve, reject) => {
      this.#rejectWait = reject;
      promise.then(resolve, reject);
    });
  }

  /**
   * Makes `reject` the wait in flight: it is called (once) with `AbortedError` if the call is
   * aborted before the next wait replaces it. For a waiter that settles its own promise, so
   * that a wait costs no promise of its own (see {@link CallCancellation.race}).
   */
  awaitWith(reject: (error: unknown) => void): void {
    this.#rejectWait = reject;
  }

  /**
   * `options` plus this call's signal, as an own enumerable property that makes the signal
   * only when read (spreading the object reads it). Every call's object has the same hidden
   * class for the same option keys (see {@link withLazySignal}).
   */
  withSignal<T extends object>(
    options: T,
    skip?: readonly string[],
  ): T & { readonly signal: AbortSignal } {
    return withLazySignal(options, this.#controller, skip);
  }
}

// An inert instance that keeps the class's hidden classes alive between calls (see keepShape).
keepShape(CallCancellation, new CallCancellation());
