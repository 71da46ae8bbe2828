/**
 * `ProviderChain`: one streamed model call over an ordered list of `provider/model` refs,
 * with retries, circuit breakers, client-side rate limits and failover that stays honest
 * about output already streamed.
 */
import {
  AbortedError,
  AllProvidersFailedError,
  CircuitOpenError,
  InvalidArgumentError,
  type ProviderAttempt,
  ProviderError,
} from "../errors.js";
import { cancellationOf } from "../runtime/lazy-abort.js";
import { keepShape } from "../runtime/shapes.js";
import {
  describeArg,
  optionalFunction,
  optionalObject,
  optionalSignal,
} from "../runtime/validate.js";
import { beginTelemetryTrace, emitTelemetry, type TelemetryTrace } from "../telemetry.js";
import {
  backoffCeiling,
  CallCancellation,
  sleep as defaultSleep,
  type ResolvedRetryOptions,
  type RetryOptions,
  retryDelay,
  type SleepFunction,
} from "./backoff.js";
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitPermit,
  type CircuitState,
} from "./circuit-breaker.js";
import { computeCost } from "./cost.js";
import {
  acquireLimits,
  estimateRequestTokens,
  Limiter,
  type LimiterLease,
  type RateLimits,
} from "./rate-limiter.js";
import type {
  ModelCallOptions,
  ModelProvider,
  ModelRequest,
  ModelStreamEvent,
  ModelUsage,
} from "./types.js";

/** The key of {@link ProviderChain}'s state-size probe, for tests. @internal */
export const CHAIN_STATE_SIZES: unique symbol = Symbol("beamclaw.chainStateSizes");

/** Options of {@link createProviderChain}. */
export interface ProviderChainOptions {
  /**
   * The providers refs may name: an array (each known by its `id`) or a record (each known by
   * its key, so that two instances of one adapter can live side by side).
   */
  providers: readonly ModelProvider[] | Readonly<Record<string, ModelProvider>>;
  /**
   * `provider/model` refs in order of preference, e.g.
   * `["anthropic/claude-sonnet-4-5", "openai/gpt-4.1"]`. The provider is the part before the
   * first `/`; the rest is the model id (`openrouter/meta-llama/llama-3-70b` works).
   * May be left out (or empty) when every call passes its own `models`.
   */
  models?: readonly string[];
  /** Retries per ref. Defaults: 3 attempts, 500 ms base, 30 s cap, full jitter. */
  retry?: RetryOptions;
  /** One circuit per ref. Defaults: 5 failures in 60 s open it for 30 s. `false` disables. */
  circuitBreaker?: CircuitBreakerOptions | false;
  /**
   * Client-side limits keyed by ref (`anthropic/claude-sonnet-4-5`) or by provider
   * (`anthropic`, shared by all its models). A call waits (abortably) until every limit that
   * applies to it has room.
   */
  limits?: Readonly<Record<string, RateLimits>>;
  /** Token estimate of a request for `tpm` limits. Default: about 4 characters per token. */
  estimateTokens?: (request: Omit<ModelRequest, "model">) => number;
  /** Clock in ms for windows, circuit pauses and durations. Default `performance.now()`. */
  now?: () => number;
  /** Waits between retries and for rate limits; injectable for tests. Default a timer. */
  sleep?: SleepFunction;
  /** Source of jitter in `[0, 1)`. Default `Math.random`. */
  random?: () => number;
}

/** Who a call is made for; attached to its telemetry events. */
export interface ChainTelemetryContext {
  tenant?: string;
  agent?: string;
  session?: string;
}

/** Options of one {@link ProviderChain.stream} call. */
export interface ChainCallOptions extends ModelCallOptions {
  /** Refs to use for this call instead of the chain's `models`. */
  models?: readonly string[];
  /** Attached to this call's `beamclaw:provider.call` events. */
  telemetry?: ChainTelemetryContext;
}

/**
 * The chain is about to call `ref`; the events that follow, up to the next chain event, are
 * its output.
 */
export type AttemptStartEvent = {
  type: "attempt-start";
  ref: string;
  provider: string;
  model: string;
  /** 1-based attempt number for this ref. */
  attempt: number;
};

/** An attempt failed; `willRetry` says whether another attempt follows. */
export type AttemptFailedEvent = {
  type: "attempt-failed";
  ref: string;
  attempt: number;
  error: unknown;
  /**
   * True when another attempt follows (on this ref after `delayMs`, on the next ref, or, after
   * the last ref, on a ref that was skipped or left for its `retry-after`).
   */
  willRetry: boolean;
  /**
   * Wait before the next attempt; 0 when moving on to the next ref or when none follows. After
   * the last ref, the wait before retrying a ref that was left for its `retry-after`.
   */
  delayMs: number;
  /**
   * True when this attempt had already streamed content (text, thinking or tool-call events):
   * drop everything it streamed since its `attempt-start`. The next attempt starts over
   * from the beginning of the answer.
   */
  discardOutput: boolean;
};

// The chain events are type aliases, not interfaces, so that they fit consumers typed as
// `{ type: string; [key: string]: unknown }`.

/** What {@link ProviderChain.stream} yields: the model's events plus the chain's own. */
export type ChainStreamEvent = ModelStreamEvent | AttemptStartEvent | AttemptFailedEvent;

interface Target {
  ref: string;
  providerKey: string;
  model: string;
  provider: ModelProvider;
  limiters: Limiter[];
}

/**
 * A ref to try once more after every ref of a call has failed: one skipped for its open
 * circuit (`readyAt` undefined: tried if the circuit has half-opened by then), or one left
 * for a fallback instead of waiting out its `retry-after` (tried once the wait, counted from
 * the failure, is over).
 */
interface Revisit {
  target: Target;
  /** The attempt number of the try. */
  attempt: number;
  /** When the ref's `retry-after` is over (clock ms). */
  readyAt?: number;
}

type AttemptResult = { ok: true } | { ok: false; error: unknown; discardOutput: boolean };

/** The state of one attempt on one ref, for the bookkeeping when it ends. */
class Attempt {
  lease: LimiterLease | undefined;
  iterator: AsyncIterator<ModelStreamEvent> | undefined;
  streamEnded = false;
  streamedContent = false;
  startedAt: number | undefined;
  trace: TelemetryTrace<"beamclaw:provider.call"> | undefined;
  usage: ModelUsage | undefined;
  outcome: "success" | "error" | "aborted" = "aborted";
  failure: unknown;

  constructor(
    readonly target: Target,
    readonly attempt: number,
    public permit: CircuitPermit,
    public circuitSettled: boolean,
  ) {}
}

const CONTENT_EVENTS: ReadonlySet<ChainStreamEvent["type"]> = new Set([
  "text-delta",
  "thinking-delta",
  "thinking-end",
  "tool-call-start",
  "tool-call-delta",
  "tool-call",
]);

/** How many resolved refs a chain caches (its own `models` are kept apart, always). */
const REF_CACHE_LIMIT = 1_024;

const DEFAULT_RETRY: ResolvedRetryOptions = {
  maxAttempts: 3,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  jitter: "full",
};

const DEFAULT_CIRCUIT: Required<CircuitBreakerOptions> = {
  failureThreshold: 5,
  windowMs: 60_000,
  openMs: 30_000,
};

/**
 * Streams one model call over an ordered list of `provider/model` refs.
 *
 * - **Order.** Refs are tried in order. Each gets up to `retry.maxAttempts` attempts.
 * - **Retries.** Only errors with `isRetryable: true` (`ProviderError` of kind `rate_limit`,
 *   `overloaded`, `server`, `network`, `timeout`) are retried on the same ref, after
 *   exponential backoff with full jitter that is never shorter than the provider's
 *   `retry-after`. A `retry-after` longer than `retry.maxDelayMs` is not waited for: the
 *   chain moves on to the next ref at once. While another ref follows, neither is one longer
 *   than the retry's backoff ceiling (`baseDelayMs * 2^(attempt - 1)`, at most `maxDelayMs`):
 *   a 429 that asks for 30 s fails over to a healthy fallback now instead of sleeping.
 * - **Non-retryable errors** (`auth`, `invalid_request`, `malformed_stream`, anything that is
 *   not a `ProviderError`) move on to the next ref without retrying. `invalid_request` does
 *   not stop the chain: the next ref is another vendor or model, with its own context size,
 *   tool-schema rules and model names, so one vendor's 400 does not prove the next will
 *   refuse.
 * - **Circuit breakers**, one per ref: `failureThreshold` failures within `windowMs` open it;
 *   an open circuit is skipped without a call (the attempt fails with `CircuitOpenError` and
 *   the chain moves on to the next ref, since waiting out the pause is what the breaker is
 *   there to avoid); after `openMs` it is half-open and lets one trial call through, whose
 *   success closes it and whose failure opens it again. A call that waited for a limit asks
 *   its circuit again when the wait is over, so a circuit that opened (or half-opened)
 *   meanwhile is honoured. `invalid_request` errors and aborts do not count as failures.
 * - **Limits** (`rpm`, `tpm`, `concurrency`) per ref or per provider: a call waits for room.
 * - **Failover after partial output.** When an attempt fails after it streamed content, the
 *   chain still fails over, and says so: its `attempt-failed` event has
 *   `discardOutput: true`, and the consumer must drop what that attempt streamed. Text is
 *   never silently streamed twice. A consumer that cannot take output back (it already
 *   forwarded it) stops reading at that event, which ends the call.
 * - **Abort.** `signal` cancels waits, limit queues and the provider's stream at once; the
 *   iterator throws `AbortedError`.
 * - **A last look at skipped refs.** When every ref has been tried and failed, the refs
 *   that were passed over without a real try get one more attempt each, in order: a ref
 *   skipped for its open circuit, if the circuit has half-opened (or closed) meanwhile (as its
 *   trial call); and a ref left for a fallback instead of waiting out its `retry-after`
 *   (within `maxDelayMs`), once that wait, counted from its failure, is over. The wait is cut
 *   short by `signal`. A circuit still open stays skipped.
 * - When every attempt has failed, the iterator throws `AllProvidersFailedError`, whose
 *   `attempts` list every ref, attempt number and error in order; a ref skipped for its open
 *   circuit is listed with `skipped: true` (and "skipped" in the message).
 *
 * Nothing runs between calls: circuits and windows are updated when a call asks, so an idle
 * chain holds no timer. Refs may be given per call in any number (a session's model
 * override): what the chain keeps per ref is bounded, a circuit is kept only while it has
 * recent failures or is open or half-open, and an open or half-open circuit is never
 * forgotten.
 *
 * @example
 * ```ts
 * const chain = createProviderChain({
 *   providers: [anthropic, openai],
 *   models: ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1"],
 *   limits: { anthropic: { rpm: 50, concurrency: 4 } },
 * });
 * let text = "";
 * for await (const event of chain.stream({ messages }, { signal })) {
 *   if (event.type === "attempt-failed" && event.discardOutput) text = "";
 *   if (event.type === "text-delta") text += event.text;
 * }
 * ```
 */
export class ProviderChain {
  readonly #providers = new Map<string, ModelProvider>();
  /** Whether a provider of the chain knows prices (`modelInfo`): see {@link ProviderChain.cost}. */
  get priced(): boolean {
    return this.#priced;
  }
  #priced = false;
  readonly #refs: readonly Target[];
  readonly #targets = new Map<string, Target>();
  readonly #limiters = new Map<string, Limiter>();
  readonly #retry: ResolvedRetryOptions;
  readonly #breaker: CircuitBreaker | undefined;
  readonly #estimate: (request: Omit<ModelRequest, "model">) => number;
  readonly #now: () => number;
  readonly #sleep: SleepFunction;
  readonly #random: () => number;

  constructor(options: ProviderChainOptions) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("createProviderChain needs an options object");
    }
    this.#registerProviders(options.providers);
    for (const name of ["now", "sleep", "random", "estimateTokens"] as const) {
      optionalFunction(options[name], name);
    }
    if (options.limits !== null) optionalObject(options.limits, "limits");
    this.#retry = resolveRetry(options.retry);
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ?? defaultSleep;
    this.#random = options.random ?? Math.random;
    this.#estimate = options.estimateTokens ?? estimateRequestTokens;
    for (const [key, limits] of Object.entries(options.limits ?? {})) {
      this.#limiters.set(key, new Limiter(key, validateLimits(key, limits, this.#providers)));
    }
    this.#breaker =
      options.circuitBreaker === false
        ? undefined
        : new CircuitBreaker(resolveCircuit(options.circuitBreaker), this.#now, (ref, from, to) =>
            emitTelemetry("beamclaw:provider.circuit", () => ({ ref, from, to })),
          );
    this.#refs =
      options.models === undefined || (Array.isArray(options.models) && options.models.length === 0)
        ? []
        : this.#resolveRefs(options.models, "models");
  }

  /** The chain's refs, in order. */
  get models(): readonly string[] {
    return this.#refs.map((target) => target.ref);
  }

  /**
   * How many refs the chain holds state for: resolved refs cached, and circuits (see
   * `CircuitBreaker`). For tests of its bounds. @internal
   */
  [CHAIN_STATE_SIZES](): { refs: number; circuits: number } {
    return { refs: this.#targets.size, circuits: this.#breaker?.size ?? 0 };
  }

  /** The current state of `ref`'s circuit (`closed` when circuit breaking is disabled). */
  circuitState(ref: string): CircuitState {
    return this.#breaker?.state(ref) ?? "closed";
  }

  /**
   * Streams `request` from the first ref that answers. The model id of each ref is filled
   * in. A call with no refs, or bad refs in `options.models`, throws `InvalidArgumentError`
   * here, synchronously; call failures are thrown from the iterator
   * (`AllProvidersFailedError`, `AbortedError`).
   *
   * @example
   * ```ts
   * for await (const event of chain.stream({ messages }, { models: ["openai/gpt-4.1"] })) {
   *   if (event.type === "text-delta") process.stdout.write(event.text);
   * }
   * ```
   */
  stream(
    request: Omit<ModelRequest, "model">,
    options: ChainCallOptions = {},
  ): AsyncIterable<ChainStreamEvent> {
    if (typeof request !== "object" || request === null || !Array.isArray(request.messages)) {
      throw new InvalidArgumentError("stream() needs a request with a messages array");
    }
    optionalObject(options, "stream() options");
    // Read through the descriptor: a lazy signal (a getter) must not be made by this check.
    const signal = Object.getOwnPropertyDescriptor(options, "signal");
    if (signal !== undefined && "value" in signal) {
      optionalSignal(signal.value, "stream() options.signal");
    }
    const targets =
      options.models === undefined
        ? this.#refs
        : this.#resolveRefs(options.models, "options.models");
    if (targets.length === 0) {
      throw new InvalidArgumentError(
        'no models to call: give "provider/model" refs to createProviderChain or to stream()',
      );
    }
    const call = new CallCancellation();
    return new ChainStream(call, this.#run(call, targets, request, options));
  }

  /**
   * The control flow of one call: attempts, retries, failover, limits, bookkeeping. It yields
   * the chain's own events, and, for each attempt that reaches its provider, the `Attempt`
   * itself: {@link ChainStream} then forwards the provider's events and resumes this
   * generator when the provider's stream ends (`next()`) or fails (`throw(error)`).
   */
  async *#run(
    call: CallCancellation,
    targets: readonly Target[],
    request: Omit<ModelRequest, "model">,
    options: ChainCallOptions,
  ): AsyncGenerator<ChainStreamEvent | Attempt, void, undefined> {
    // The agent loop's options carry the run's cancellation, watched here without making the
    // run's AbortSignal (and without an EventTarget listener per call); any other caller's
    // signal is listened to.
    const cancellation = cancellationOf(options);
    const outer = cancellation === undefined ? options.signal : undefined;
    let unlink: (() => void) | undefined;
    if (cancellation !== undefined) {
      if (cancellation.aborted) call.abort(cancellation.reason);
      else unlink = cancellation.onAbort(() => call.abort(cancellation.reason));
    }
    let onAbort: (() => void) | undefined;
    if (outer !== undefined) {
      if (outer.aborted) call.abort(outer.reason);
      else {
        onAbort = () => call.abort(outer.reason);
        outer.addEventListener("abort", onAbort, { once: true });
      }
    }
    const attempts: ProviderAttempt[] = [];
    try {
      const tokens = anyLimited(targets) ? this.#estimate(request) : 0;
      // NaN or a negative count would switch a TPM limit off for a minute, silently.
      if (!(tokens >= 0 && tokens !== Infinity)) {
        throw new InvalidArgumentError(
          `estimateTokens returned ${describeArg(tokens)}; it must be a finite number >= 0`,
        );
      }
      // Refs to come back to once every ref has been tried (see `Revisit`): the loop's steps
      // after the refs' own.
      const revisits: Revisit[] = [];
      for (let index = 0; index < targets.length + revisits.length; index++) {
        const revisit = index < targets.length ? undefined : revisits[index - targets.length]!;
        const target = revisit === undefined ? targets[index]! : revisit.target;
        const isLastRef = index >= targets.length - 1;
        if (revisit !== undefined) {
          if (revisit.readyAt === undefined) {
            // Skipped for its open circuit: tried again only if it has half-opened (or
            // closed) since; still open, its skip stands in the attempts.
            if (this.circuitState(target.ref) === "open") continue;
          } else {
            const waitMs = revisit.readyAt - this.#now();
            if (waitMs > 0) await call.race(this.#sleep(waitMs, call.signal));
          }
        }
        for (let attempt = revisit?.attempt ?? 1; ; attempt++) {
          if (call.aborted) throw call.error();
          // The attempt runs inline, not as a nested generator, so that its bookkeeping runs
          // in this generator's `finally` however the caller stops.
          let result: AttemptResult;
          const state = this.#openAttempt(target, attempt);
          if (!(state instanceof Attempt)) {
            result = { ok: false, error: state, discardOutput: false };
          } else {
            try {
              let refused: CircuitOpenError | undefined;
              if (target.limiters.length > 0) {
                state.lease = await acquireLimits(
                  target.limiters,
                  tokens,
                  call.signal,
                  this.#now,
                  this.#sleep,
                );
                refused = this.#recheckCircuit(state);
              }
              if (refused !== undefined) {
                result = { ok: false, error: refused, discardOutput: false };
              } else {
                yield {
                  type: "attempt-start",
                  ref: target.ref,
                  provider: target.providerKey,
                  model: target.model,
                  attempt,
                };
                // Aborted while the caller handled `attempt-start`: no call is made.
                if (call.aborted) throw call.error();
                state.startedAt = this.#now();
                state.trace = beginTelemetryTrace("beamclaw:provider.call", () => ({
                  ref: target.ref,
                  provider: target.providerKey,
                  model: target.model,
                  attempt,
                  ...telemetryContext(options.telemetry),
                }));
                try {
                  // Not `{ ...request, model }`: on Node 20 a spread followed by a new property
                  // costs about 1 µs.
                  const providerRequest = Object.assign({}, request) as ModelRequest;
                  providerRequest.model = target.model;
                  const iterator: unknown = target.provider
                    .stream(
                      providerRequest,
                      call.withSignal(options as ModelCallOptions, CHAIN_KEYS),
                    )
                    [Symbol.asyncIterator]();
                  // Without an iterator there is no stream: a broken provider, not an empty
                  // answer (ChainStream would take a missing iterator for an ended stream).
                  if (typeof iterator !== "object" || iterator === null) {
                    throw new TypeError(
                      `the provider's stream gave ${describeArg(iterator)} as its iterator`,
                    );
                  }
                  state.iterator = iterator as AsyncIterator<ModelStreamEvent>;
                  // ChainStream streams the provider's events and comes back here when its
                  // stream has ended, or throws its error (an abort's included) in here.
                  yield state;
                  state.streamEnded = true;
                  result = this.#attemptSucceeded(state);
                } catch (error) {
                  if (call.aborted) throw call.error();
                  result = this.#attemptFailed(state, error);
                }
              }
            } finally {
              this.#closeAttempt(state, call, options);
            }
          }
          if (result.ok) return;
          const { error } = result;
          const skipped = CircuitOpenError.isInstance(error);
          attempts.push(
            skipped
              ? { ref: target.ref, attempt, error, skipped: true }
              : { ref: target.ref, attempt, error },
          );
          let delayMs: number | undefined;
          if (skipped) {
            // No call was made: worth another look at the end, if the circuit half-opens.
            if (revisit === undefined) revisits.push({ target, attempt: attempt + 1 });
          } else if (
            revisit === undefined &&
            attempt < this.#retry.maxAttempts &&
            isRetryable(error)
          ) {
            const retryAfterMs = retryAfterOf(error);
            delayMs = this.#delayBeforeRetry(attempt, retryAfterMs, isLastRef);
            if (delayMs === undefined && retryAfterMs !== undefined) {
              // Left for a fallback rather than waited for: worth another try at the end,
              // once the wait is over, if every fallback fails too.
              if (retryAfterMs <= this.#retry.maxDelayMs) {
                revisits.push({
                  target,
                  attempt: attempt + 1,
                  readyAt: this.#now() + retryAfterMs,
                });
              }
            }
          }
          const nextWaitMs =
            delayMs === undefined ? this.#nextStepWait(targets, revisits, index) : undefined;
          yield {
            type: "attempt-failed",
            ref: target.ref,
            attempt,
            error,
            willRetry: delayMs !== undefined || nextWaitMs !== undefined,
            delayMs: delayMs ?? nextWaitMs ?? 0,
            discardOutput: result.discardOutput,
          };
          if (delayMs === undefined) break;
          if (delayMs > 0) await call.race(this.#sleep(delayMs, call.signal));
        }
      }
      throw new AllProvidersFailedError(attempts);
    } finally {
      unlink?.();
      if (onAbort !== undefined) outer?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * After the attempt of step `index` failed with no retry on its ref: the wait before the
   * next step that will make an attempt (0 for the next ref), or `undefined` when none will.
   * A revisit of a ref skipped for its open circuit is made only if the circuit is no longer
   * open.
   */
  #nextStepWait(
    targets: readonly Target[],
    revisits: readonly Revisit[],
    index: number,
  ): number | undefined {
    if (index + 1 < targets.length) return 0;
    for (let next = Math.max(0, index + 1 - targets.length); next < revisits.length; next++) {
      const revisit = revisits[next]!;
      if (revisit.readyAt !== undefined) return Math.max(0, revisit.readyAt - this.#now());
      if (this.circuitState(revisit.target.ref) !== "open") return 0;
    }
    return undefined;
  }

  /**
   * The wait before retrying the same ref, or `undefined` to move on to the next ref now.
   * With a fallback ref still to try, a `retry-after` longer than this retry's backoff
   * ceiling is not slept through: a healthy fallback answers now.
   */
  #delayBeforeRetry(
    attempt: number,
    retryAfterMs: number | undefined,
    isLastRef: boolean,
  ): number | undefined {
    if (!isLastRef && retryAfterMs !== undefined) {
      const ceiling = backoffCeiling(attempt, this.#retry);
      if (retryAfterMs > ceiling) return undefined;
    }
    return retryDelay(attempt, retryAfterMs, this.#retry, this.#random);
  }

  /** Starts an attempt on `target`: its circuit's permit, or the open circuit's error. */
  #openAttempt(target: Target, attempt: number): Attempt | CircuitOpenError {
    const breaker = this.#breaker;
    if (breaker === undefined) return new Attempt(target, attempt, { trial: false }, true);
    const acquired = breaker.acquire(target.ref);
    if (CircuitOpenError.isInstance(acquired)) return acquired;
    return new Attempt(target, attempt, acquired, false);
  }

  /**
   * After a wait for limits, asks `state`'s circuit again: a circuit that opened during the
   * wait is skipped (the attempt fails with `CircuitOpenError`, its lease is taken back as
   * never used), and one that half-opened lets the call through only as its single trial.
   * The permit given before the wait is handed back either way.
   */
  #recheckCircuit(state: Attempt): CircuitOpenError | undefined {
    const breaker = this.#breaker;
    if (breaker === undefined) return undefined;
    const ref = state.target.ref;
    breaker.released(ref, state.permit);
    const acquired = breaker.acquire(ref);
    if (!CircuitOpenError.isInstance(acquired)) {
      state.permit = acquired;
      return undefined;
    }
    state.circuitSettled = true;
    state.lease?.cancel();
    return acquired;
  }

  #attemptSucceeded(state: Attempt): AttemptResult {
    state.outcome = "success";
    if (this.#breaker !== undefined) {
      this.#breaker.succeeded(state.target.ref, state.permit);
      state.circuitSettled = true;
    }
    return { ok: true };
  }

  #attemptFailed(state: Attempt, error: unknown): AttemptResult {
    state.streamEnded = true;
    state.outcome = "error";
    state.failure = error;
    const breaker = this.#breaker;
    if (breaker !== undefined) {
      if (countsAgainstCircuit(error)) breaker.failed(state.target.ref, state.permit);
      else breaker.released(state.target.ref, state.permit);
      state.circuitSettled = true;
    }
    return { ok: false, error, discardOutput: state.streamedContent };
  }

  /** The bookkeeping after an attempt, however it ended (the caller may have stopped reading). */
  #closeAttempt(state: Attempt, call: CallCancellation, options: ChainCallOptions): void {
    const { target, attempt, usage, outcome, failure, startedAt } = state;
    if (!state.streamEnded && state.iterator !== undefined) {
      // Aborted, or the caller stopped reading: cancel the provider's request and close its
      // stream without waiting for it (a stream stuck in a read must not hold the caller).
      if (!call.aborted) call.abort(new AbortedError("the caller stopped reading"));
      closeQuietly(state.iterator);
    }
    if (!state.circuitSettled) this.#breaker?.released(target.ref, state.permit);
    // No provider was called (aborted, or the caller stopped reading, at `attempt-start`):
    // the request was never made, so it leaves the per-minute windows as it found them.
    if (startedAt === undefined) state.lease?.cancel();
    else
      state.lease?.release(
        usage === undefined ? undefined : usage.inputTokens + usage.outputTokens,
      );
    if (startedAt !== undefined) {
      // Arguments are not evaluated when there is no trace (nobody listens).
      state.trace?.end(
        usage === undefined ? { outcome } : { outcome, usage },
        outcome === "error" ? failure : undefined,
      );
      const durationMs = this.#now() - startedAt;
      emitTelemetry("beamclaw:provider.call", () => ({
        ref: target.ref,
        provider: target.providerKey,
        model: target.model,
        attempt,
        durationMs,
        outcome,
        ...(usage === undefined ? {} : { usage }),
        ...(outcome === "error" ? { error: failure } : {}),
        ...telemetryContext(options.telemetry),
      }));
    }
  }

  #registerProviders(providers: ProviderChainOptions["providers"]): void {
    if (typeof providers !== "object" || providers === null) {
      throw new InvalidArgumentError("providers must be an array or a record of providers");
    }
    const entries: Array<[string, unknown]> = Array.isArray(providers)
      ? providers.map((provider: ModelProvider) => [provider?.id, provider])
      : Object.entries(providers);
    for (const [key, provider] of entries) {
      if (!isProvider(provider)) {
        throw new InvalidArgumentError(
          `provider ${JSON.stringify(key)} is not a ModelProvider (it needs specificationVersion "v1", an id and stream())`,
        );
      }
      if (typeof key !== "string" || key === "" || key.includes("/")) {
        throw new InvalidArgumentError(
          `provider key ${JSON.stringify(key)} must be a non-empty string without "/"`,
        );
      }
      if (this.#providers.has(key)) {
        throw new InvalidArgumentError(`two providers are known as ${JSON.stringify(key)}`);
      }
      this.#providers.set(key, provider);
      if (typeof provider.modelInfo === "function") this.#priced = true;
    }
  }

  /**
   * The cost in US dollars of a call's `usage` on `ref` (`provider/model`), priced by what
   * its provider says of the model (`modelInfo`: the built-in list prices of
   * `@beamclaw/providers`, with the caller's `models` corrections); 0 for a model or provider
   * without a known price. `AgentRuntime` uses it when given no `cost` of its own.
   *
   * @example
   * ```ts
   * const chain = createProviderChain({ providers: [createAnthropicProvider()] });
   * chain.cost("anthropic/claude-sonnet-4-5", { inputTokens: 1_000_000, outputTokens: 0 }); // 3
   * ```
   */
  cost(ref: string, usage: ModelUsage): number {
    if (!this.priced) return 0;
    const slash = typeof ref === "string" ? ref.indexOf("/") : -1;
    if (slash <= 0) return 0;
    const provider = this.#providers.get(ref.slice(0, slash));
    const pricing = provider?.modelInfo?.(ref.slice(slash + 1))?.pricing;
    if (pricing === undefined) return 0;
    try {
      return computeCost(usage, pricing);
    } catch {
      // A price list with a price that is not a number >= 0 prices nothing, rather than fail
      // the run whose usage it was asked about.
      return 0;
    }
  }

  #resolveRefs(refs: readonly string[] | undefined, what: string): Target[] {
    if (!Array.isArray(refs) || refs.length === 0) {
      throw new InvalidArgumentError(`${what} must list at least one "provider/model" ref`);
    }
    return refs.map((ref: unknown) => this.#target(ref, what));
  }

  #target(ref: unknown, what: string): Target {
    if (typeof ref === "string") {
      const cached = this.#targets.get(ref);
      if (cached !== undefined) return cached;
    }
    const slash = typeof ref === "string" ? ref.indexOf("/") : -1;
    if (typeof ref !== "string" || slash <= 0 || slash === ref.length - 1) {
      throw new InvalidArgumentError(
        `${what}: ${JSON.stringify(ref)} is not a "provider/model" ref`,
      );
    }
    const providerKey = ref.slice(0, slash);
    const provider = this.#providers.get(providerKey);
    if (provider === undefined) {
      throw new InvalidArgumentError(
        `${what}: ${JSON.stringify(ref)} names provider "${providerKey}", which is not one of ${knownList(this.#providers)}`,
      );
    }
    const limiters = [this.#limiters.get(providerKey), this.#limiters.get(ref)].filter(
      (limiter): limiter is Limiter => limiter !== undefined,
    );
    const target = { ref, providerKey, model: ref.slice(slash + 1), provider, limiters };
    // Refs given per call (a session's model override) are any number: the cache keeps the
    // newest. One forgotten is resolved again when next named (its limits and circuit are
    // not kept here).
    if (this.#targets.size >= REF_CACHE_LIMIT) {
      this.#targets.delete(this.#targets.keys().next().value as string);
    }
    this.#targets.set(ref, target);
    return target;
  }
}

const END: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * The key of a stream's push-mode reader: `stream[DRAIN_EVENTS](sink)` hands every event to
 * `sink`, synchronously as it arrives, and resolves when the stream has ended (or rejects
 * with its error, or with what `sink` threw, after closing the stream). It does what
 * `for await (const event of stream) sink(event)` does, without a promise and a wake-up of
 * the reader per event. A stream is read one way at a time: draining one that a `next()` call
 * waits on, and `next()` or a second drain while it drains, are refused with
 * `InvalidArgumentError`. The agent loop uses it when its model source's stream has it (a
 * `ProviderChain`'s does); any other stream is read with `for await`.
 * @internal
 */
export const DRAIN_EVENTS: unique symbol = Symbol("beamclaw.drainEvents");

/** A stream that can be read in push mode; see {@link DRAIN_EVENTS}. @internal */
export interface DrainableStream<T> {
  [DRAIN_EVENTS](sink: (event: T) => void): Promise<void>;
}

/**
 * Hands every event of `stream` to `sink`: in push mode when the stream has it (see
 * {@link DRAIN_EVENTS}), else with `for await`. Resolves at the end of the stream, rejects
 * with its error or with what `sink` threw (the stream closed first, either way).
 * @internal
 */
export function readEvents<T>(stream: AsyncIterable<T>, sink: (event: T) => void): Promise<void> {
  const drain = (stream as Partial<DrainableStream<T>>)[DRAIN_EVENTS];
  return typeof drain === "function" ? drain.call(stream, sink) : iterateInto(stream, sink);
}

async function iterateInto<T>(stream: AsyncIterable<T>, sink: (event: T) => void): Promise<void> {
  for await (const event of stream) sink(event);
}

/** A `next()` call waiting for its result. */
interface PendingNext {
  resolve(result: IteratorResult<ChainStreamEvent>): void;
  reject(error: unknown): void;
}

/**
 * The keys of a chain call's options that its provider is not given (the run's cancellation
 * is not copied either): the provider gets the rest, as `{ models, telemetry, signal, ...rest }`
 * would give, except that a lazy `signal` getter is never called, and the call's own signal.
 */
const CHAIN_KEYS: readonly string[] = ["models", "telemetry", "signal"];

/**
 * The iterator {@link ProviderChain.stream} returns. The control generator decides what
 * happens; the provider's events, which are nearly all of a call's events, are handed from the
 * provider's iterator to the caller here, with one promise per event (the one `next()`
 * returns; none in push mode) and no generator step or race promise in between: a call
 * streams hundreds of events, and each generator step and race cost several promises.
 * `next()` calls made before the last one settled are answered in order, as an async
 * generator answers them.
 *
 * What an event touches is kept to this object, the provider's iterator and the caller's
 * sink: with a thousand calls streaming at once, every other object an event reads is
 * likely a cache miss (the attempt's iterator and content flag are mirrored here, and the
 * abort callback is registered once per attempt, not per event).
 */
class ChainStream
  implements AsyncIterableIterator<ChainStreamEvent>, DrainableStream<ChainStreamEvent>
{
  readonly #call: CallCancellation;
  readonly #control: AsyncGenerator<ChainStreamEvent | Attempt, void, undefined>;
  /** The attempt whose provider stream is being forwarded, if any. */
  #attempt: Attempt | undefined;
  /** That attempt's provider iterator. */
  #iterator: AsyncIterator<ModelStreamEvent> | undefined;
  /** Whether that attempt has streamed content (mirrored on the attempt when first set). */
  #streamedContent = false;
  /** Set when the call is aborted while an attempt streams. */
  #abortSeen = false;
  /** True while a provider `next()` is in flight and its result still wanted. */
  #waiting = false;
  /** True while a `next()` of the control generator is in flight. */
  #controlling = false;
  #finished = false;
  /** What the control generator is resumed with: `undefined`, or the provider's error. */
  #resume: { error: unknown } | undefined;
  readonly #pending: PendingNext[] = [];
  /** Push mode: where every event goes, and how the drain's promise is settled. */
  #sink: ((event: ChainStreamEvent) => void) | undefined;
  #drainResolve: (() => void) | undefined;
  #drainReject: ((error: unknown) => void) | undefined;

  constructor(call: CallCancellation, control: AsyncGenerator<ChainStreamEvent | Attempt>) {
    this.#call = call;
    this.#control = control;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * Push mode (see {@link DRAIN_EVENTS}): every event is handed to `sink` as it is settled,
   * with no queue of `next()` calls and no promise per event. Failover, retries, aborts and
   * the attempt's bookkeeping are the same code as for `next()`.
   */
  [DRAIN_EVENTS](sink: (event: ChainStreamEvent) => void): Promise<void> {
    if (this.#pending.length > 0 || this.#sink !== undefined) {
      return Promise.reject(
        new InvalidArgumentError("a stream cannot be drained while it is being read"),
      );
    }
    if (this.#finished) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#sink = sink;
      this.#drainResolve = resolve;
      this.#drainReject = reject;
      this.#advance();
    });
  }

  next(): Promise<IteratorResult<ChainStreamEvent>> {
    if (this.#sink !== undefined) {
      return Promise.reject(
        new InvalidArgumentError("a stream cannot be read with next() while it is being drained"),
      );
    }
    if (this.#finished && this.#pending.length === 0) return Promise.resolve(END);
    return new Promise<IteratorResult<ChainStreamEvent>>((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      if (this.#pending.length === 1) this.#advance();
    });
  }

  /** Stops the call: the provider's request is cancelled and its stream closed. */
  async return(): Promise<IteratorResult<ChainStreamEvent>> {
    if (!this.#finished) {
      this.#finished = true;
      this.#waiting = false;
      this.#attempt = undefined;
      this.#iterator = undefined;
      for (const pending of this.#pending.splice(0)) pending.resolve(END);
      // A drain stopped this way ends as if the stream had.
      this.#endDrain()?.resolve();
      // A wait of the control generator (a retry's delay, a rate limit) ends at once.
      if (this.#controlling) this.#call.abort(new AbortedError("the caller stopped reading"));
      // Runs the control generator's `finally` blocks (the attempt's bookkeeping).
      await this.#control.return(undefined);
    }
    return END;
  }

  /** Works on the oldest waiting `next()`, or on the drain. */
  #advance(): void {
    if (this.#finished) {
      this.#settle(END);
      return;
    }
    const iterator = this.#iterator;
    if (iterator === undefined) {
      this.#controlling = true;
      const resume = this.#resume;
      this.#resume = undefined;
      const step = resume === undefined ? this.#control.next() : this.#control.throw(resume.error);
      step.then(this.#onControl, this.#onControlError);
      return;
    }
    if (this.#abortSeen) {
      this.#endAttempt({ error: this.#call.error() });
      return;
    }
    this.#waiting = true;
    let next: Promise<IteratorResult<ModelStreamEvent>>;
    try {
      next = iterator.next();
    } catch (error) {
      this.#onProviderError(error);
      return;
    }
    // A provider's next() may return any thenable; resolve() turns it into a promise.
    Promise.resolve(next).then(this.#onProviderResult, this.#onProviderError);
  }

  /** Starts forwarding `attempt`'s provider stream. */
  #beginAttempt(attempt: Attempt): void {
    this.#attempt = attempt;
    this.#iterator = attempt.iterator;
    this.#streamedContent = false;
    // No other wait of the call can start while the attempt streams (the control generator
    // is suspended), so one registration covers every event of the attempt.
    if (this.#call.aborted) this.#abortSeen = true;
    else this.#call.awaitWith(this.#onAbort);
    this.#advance();
  }

  readonly #onProviderResult = (result: IteratorResult<ModelStreamEvent>): void => {
    if (!this.#waiting) return;
    this.#waiting = false;
    if (typeof result !== "object" || result === null) {
      this.#endAttempt({
        error: new TypeError("the provider's iterator gave a non-object result"),
      });
      return;
    }
    if (result.done === true) {
      this.#endAttempt(undefined);
      return;
    }
    const event = result.value;
    try {
      if (event.type === "usage") (this.#attempt as Attempt).usage = event.usage;
      else if (!this.#streamedContent && CONTENT_EVENTS.has(event.type)) {
        this.#streamedContent = true;
        (this.#attempt as Attempt).streamedContent = true;
      }
    } catch (error) {
      // Not an event (a broken provider): the attempt fails, like any other provider error.
      this.#endAttempt({ error });
      return;
    }
    this.#settle(result);
  };

  readonly #onProviderError = (error: unknown): void => {
    if (!this.#waiting) return;
    this.#waiting = false;
    this.#endAttempt({ error });
  };

  /** The call was aborted while an attempt streamed: stop waiting for the provider. */
  readonly #onAbort = (error: unknown): void => {
    this.#abortSeen = true;
    if (!this.#waiting) return;
    this.#waiting = false;
    this.#endAttempt({ error });
  };

  /** Hands the attempt back to the control generator, with the provider's error if any. */
  #endAttempt(resume: { error: unknown } | undefined): void {
    this.#attempt = undefined;
    this.#iterator = undefined;
    this.#resume = resume;
    this.#advance();
  }

  readonly #onControl = (result: IteratorResult<ChainStreamEvent | Attempt, void>): void => {
    this.#controlling = false;
    if (this.#finished) return;
    if (result.done === true) {
      this.#finished = true;
      this.#settle(END);
      return;
    }
    const value = result.value;
    if (value instanceof Attempt) {
      this.#beginAttempt(value);
      return;
    }
    this.#settle({ done: false, value });
  };

  readonly #onControlError = (error: unknown): void => {
    this.#controlling = false;
    if (this.#finished) return;
    this.#finished = true;
    const drain = this.#endDrain();
    if (drain !== undefined) {
      drain.reject(error);
      return;
    }
    const pending = this.#pending.shift();
    pending?.reject(error);
    // Later calls, like an async generator's after it threw, report the end.
    for (const rest of this.#pending.splice(0)) rest.resolve(END);
  };

  /**
   * Hands `result` to the drain's sink (and goes on), or answers the oldest waiting `next()`
   * (and works on the next one, if any).
   */
  #settle(result: IteratorResult<ChainStreamEvent>): void {
    const sink = this.#sink;
    if (sink !== undefined) {
      if (result.done === true) {
        this.#endDrain()?.resolve();
        return;
      }
      try {
        sink(result.value);
      } catch (error) {
        // As `for await` does when its body throws: close the stream, then fail.
        const drain = this.#endDrain();
        const fail = () => drain?.reject(error);
        this.return().then(fail, fail);
        return;
      }
      this.#advance();
      return;
    }
    const pending = this.#pending.shift();
    pending?.resolve(result);
    if (this.#pending.length > 0) this.#advance();
  }

  /** Leaves push mode; returns how to settle the drain's promise, if there was one. */
  #endDrain(): { resolve: () => void; reject: (error: unknown) => void } | undefined {
    const resolve = this.#drainResolve;
    const reject = this.#drainReject;
    if (resolve === undefined || reject === undefined) return undefined;
    this.#sink = undefined;
    this.#drainResolve = undefined;
    this.#drainReject = undefined;
    return { resolve, reject };
  }
}

// Inert instances that keep the per-call classes' hidden classes alive (see keepShape).
keepShape(
  Attempt,
  new Attempt(
    {
      ref: "anchor/anchor",
      providerKey: "anchor",
      model: "anchor",
      provider: {
        specificationVersion: "v1",
        id: "anchor",
        stream: async function* () {},
      },
      limiters: [],
    },
    1,
    { trial: false },
    true,
  ),
);
keepShape(ChainStream, new ChainStream(new CallCancellation(), (async function* () {})()));

/**
 * Creates a {@link ProviderChain}.
 *
 * @example
 * ```ts
 * const chain = createProviderChain({
 *   providers: [createAnthropicProvider(), createOpenAIProvider()],
 *   models: ["anthropic/claude-sonnet-4-5", "openai/gpt-4.1"],
 *   retry: { maxAttempts: 2 },
 * });
 * ```
 */
export function createProviderChain(options: ProviderChainOptions): ProviderChain {
  return new ProviderChain(options);
}

function telemetryContext(context: ChainTelemetryContext | undefined): ChainTelemetryContext {
  if (context === undefined) return {};
  const { tenant, agent, session } = context;
  return {
    ...(tenant === undefined ? {} : { tenant }),
    ...(agent === undefined ? {} : { agent }),
    ...(session === undefined ? {} : { session }),
  };
}

/** Whether any of `targets` has a rate limit (then a call's tokens are estimated). */
function anyLimited(targets: readonly Target[]): boolean {
  for (const target of targets) if (target.limiters.length > 0) return true;
  return false;
}

function isProvider(value: unknown): value is ModelProvider {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as ModelProvider).specificationVersion === "v1" &&
    typeof (value as ModelProvider).id === "string" &&
    typeof (value as ModelProvider).stream === "function"
  );
}

function knownList(providers: Map<string, ModelProvider>): string {
  const keys = [...providers.keys()].map((key) => `"${key}"`);
  return keys.length === 0 ? "(no providers given)" : keys.join(", ");
}

function isRetryable(error: unknown): boolean {
  return (
    typeof error === "object" &&
    error !== null &&
    (error as { isRetryable?: unknown }).isRetryable === true
  );
}

function retryAfterOf(error: unknown): number | undefined {
  const value =
    typeof error === "object" && error !== null
      ? (error as { retryAfterMs?: unknown }).retryAfterMs
      : undefined;
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** A bad request says nothing about the health of the ref that refused it. */
function countsAgainstCircuit(error: unknown): boolean {
  return !(ProviderError.isInstance(error) && error.kind === "invalid_request");
}

function closeQuietly(iterator: AsyncIterator<unknown>): void {
  try {
    const closing = iterator.return?.();
    if (closing !== undefined) Promise.resolve(closing).catch(() => {});
  } catch {
    // A stream that cannot be closed is abandoned; its signal has been aborted.
  }
}

function resolveRetry(retry: RetryOptions | undefined): ResolvedRetryOptions {
  optionalObject(retry, "retry");
  const resolved = { ...DEFAULT_RETRY, ...definedOnly(retry) };
  if (!Number.isInteger(resolved.maxAttempts) || resolved.maxAttempts < 1) {
    throw new InvalidArgumentError(
      `retry.maxAttempts must be an integer >= 1, got ${describeArg(resolved.maxAttempts)}`,
    );
  }
  for (const key of ["baseDelayMs", "maxDelayMs"] as const) {
    if (typeof resolved[key] !== "number" || !(resolved[key] >= 0)) {
      throw new InvalidArgumentError(
        `retry.${key} must be a number >= 0, got ${describeArg(resolved[key])}`,
      );
    }
  }
  if (resolved.jitter !== "full" && resolved.jitter !== "none") {
    throw new InvalidArgumentError(
      `retry.jitter must be "full" or "none", got ${describeArg(resolved.jitter)}`,
    );
  }
  return resolved;
}

function resolveCircuit(
  options: CircuitBreakerOptions | undefined,
): Required<CircuitBreakerOptions> {
  optionalObject(options, "circuitBreaker");
  const resolved = { ...DEFAULT_CIRCUIT, ...definedOnly(options) };
  if (!Number.isInteger(resolved.failureThreshold) || resolved.failureThreshold < 1) {
    throw new InvalidArgumentError(
      `circuitBreaker.failureThreshold must be an integer >= 1, got ${describeArg(resolved.failureThreshold)}`,
    );
  }
  for (const key of ["windowMs", "openMs"] as const) {
    if (typeof resolved[key] !== "number" || !(resolved[key] >= 0)) {
      throw new InvalidArgumentError(
        `circuitBreaker.${key} must be a number >= 0, got ${describeArg(resolved[key])}`,
      );
    }
  }
  return resolved;
}

function validateLimits(
  key: string,
  limits: RateLimits,
  providers: Map<string, ModelProvider>,
): RateLimits {
  const providerKey = key.split("/", 1)[0] ?? "";
  if (!providers.has(providerKey)) {
    throw new InvalidArgumentError(
      `limits: ${JSON.stringify(key)} names provider "${providerKey}", which is not one of ${knownList(providers)}`,
    );
  }
  if (typeof limits !== "object" || limits === null) {
    throw new InvalidArgumentError(`limits[${JSON.stringify(key)}] must be an object`);
  }
  for (const name of ["rpm", "tpm", "concurrency"] as const) {
    const value = limits[name];
    if (value !== undefined && !(Number.isInteger(value) && value >= 1)) {
      throw new InvalidArgumentError(
        `limits[${JSON.stringify(key)}].${name} must be an integer >= 1, got ${String(value)}`,
      );
    }
  }
  return { ...limits };
}

function definedOnly<T extends object>(value: T | undefined): Partial<T> {
  if (value === undefined) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
