import {
  AbortedError,
  AlreadyStartedError,
  CallingSelfError,
  InvalidArgumentError,
  NoProcessError,
  OverloadedError,
  TimeoutError,
} from "../errors.js";
import { emitTelemetry } from "../telemetry.js";
import { armDeadline, cancelDeadline, type DeadlineEntry } from "./deadlines.js";
import { type ExitReason, formatExitReason, isNormalExit, toExitError } from "./exit.js";
import { Cancellation } from "./lazy-abort.js";
import { keepShape } from "./shapes.js";
import { type LongTimer, startTimer } from "./timers.js";
import { describeArg, optionalString, requireObject } from "./validate.js";

/** Default time a `call` waits for its reply. */
export const DEFAULT_CALL_TIMEOUT_MS = 5_000;
/** Default bound of an actor's mailbox. */
export const DEFAULT_MAILBOX_LIMIT = 1_000;
/** Default time `stop()` gives the in-flight handler and `terminate` before a forced stop. */
export const DEFAULT_SHUTDOWN_MS = 5_000;

/**
 * Return this from `handleCall` to reply later through the `from` handle, while the actor
 * goes on with its mailbox (OTP's `{:noreply, state}` followed by `GenServer.reply/2`).
 */
export const noReply: unique symbol = Symbol.for("beamclaw.noReply");

/**
 * The key of an actor's stop watch: `actor[STOPPING]()` is the {@link Cancellation} that aborts
 * when the actor begins to stop (its `signal` is that cancellation's), so that the library's own
 * actors can watch their stop (`aborted`, `reason`, `onAbort`) without making an `AbortSignal`
 * and an `EventTarget` listener, about a kilobyte and several microseconds per actor on Node 20.
 * @internal
 */
export const STOPPING: unique symbol = Symbol("beamclaw.actorStopping");
/** The type of {@link noReply}. */
export type NoReply = typeof noReply;

/** The lifecycle of an actor. */
export type ActorStatus = "new" | "starting" | "running" | "stopping" | "stopped";

/** Options every actor accepts. */
export interface ActorOptions {
  /** A display name for errors and telemetry. Defaults to the class name. */
  name?: string;
  /** Maximum number of queued messages; one more is refused with `OverloadedError`. Default 1000. */
  mailboxLimit?: number;
  /** Default `call` timeout in milliseconds for this actor. Default 5000. */
  callTimeoutMs?: number;
}

/** Options of a single `call`. */
export interface CallOptions {
  /** How long to wait for the reply, in ms. `Infinity` waits forever. Default 5000. */
  timeoutMs?: number;
}

/** Options of `stop()`. */
export interface StopOptions {
  /**
   * How long the in-flight handler and `terminate` may take before the actor is killed
   * (exit reason `killed`). `Infinity` waits forever. Default 5000.
   */
  timeoutMs?: number;
}

/** The reply handle passed to `handleCall`, for replying later after returning {@link noReply}. */
export interface ReplyTo<TReply> {
  /** Sends the reply. Later calls, and calls after the caller timed out, are ignored. */
  reply(value: TReply): void;
  /** Rejects the call with `error`. Ignored once the call is settled. */
  fail(error: unknown): void;
  /** True once the call has a reply, has failed, or has timed out. */
  readonly settled: boolean;
}

/** The message delivered to `handleInfo` when a process watched with `watch()` exits. */
export interface DownMessage {
  readonly type: "DOWN";
  /** The process that exited. */
  readonly process: Process;
  /** Why it exited. */
  readonly reason: ExitReason;
}

/**
 * Anything with a process lifecycle: actors, supervisors, task supervisors. Supervisors
 * supervise `Process`es and registries hold them.
 */
export interface Process {
  /** Unique id within this Node.js process (like a pid). */
  readonly pid: number;
  /** Display name. */
  readonly name: string;
  /** Where the process is in its lifecycle. */
  readonly status: ActorStatus;
  /** The exit reason once stopped, otherwise `undefined`. */
  readonly exitReason: ExitReason | undefined;
  /**
   * Calls `onExit` once when the process stops (immediately, on a microtask, if it already
   * has). Returns a function that removes the monitor.
   */
  monitor(onExit: (reason: ExitReason, process: Process) => void): () => void;
  /** Stops the process with `reason` (default `normal`); resolves once it has stopped. */
  stop(reason?: ExitReason, options?: StopOptions): Promise<void>;
  /** Stops the process at once with reason `killed`, without waiting for anything. */
  kill(): void;
}

const S_NEW = 0;
const S_STARTING = 1;
const S_RUNNING = 2;
const S_STOPPING = 3;
const S_STOPPED = 4;
const STATUS_NAMES: readonly ActorStatus[] = ["new", "starting", "running", "stopping", "stopped"];

const K_CALL = 0;
const K_CAST = 1;
const K_INFO = 2;

let nextPid = 1;

/** How many actors are currently running a message synchronously, nested in each other. */
let syncDepth = 0;
const MAX_SYNC_DEPTH = 16;

/**
 * The actor whose callback (`init` or a handler) is running on the current stack, if any:
 * the "self" of the code running now, as far as the runtime can know it. A handler that runs
 * another (idle) actor's handler on its stack, by calling or casting to it, gets it back when
 * that returns. Past the first `await` of an async callback the code runs from a microtask
 * that no actor is running, and this says nothing about it: knowing the caller there would
 * take an `AsyncLocalStorage`, which on Node 20 costs every promise of the process a hook.
 */
let running: object | null = null;

type Queued = CallEnvelope | MessageEnvelope;

class MessageEnvelope {
  next: Queued | null = null;
  constructor(
    readonly kind: typeof K_CAST | typeof K_INFO,
    readonly msg: unknown,
  ) {}
}

class CallEnvelope implements DeadlineEntry, ReplyTo<unknown> {
  readonly kind = K_CALL;
  next: Queued | null = null;
  settled = false;
  /** The actor's set of calls awaiting a deferred reply, while this one is in it. */
  deferredIn: Set<CallEnvelope> | null = null;
  dlBucket: DeadlineEntry["dlBucket"] = null;
  dlPrev: DeadlineEntry | null = null;
  dlNext: DeadlineEntry | null = null;
  dlGeneration = 0;

  constructor(
    readonly msg: unknown,
    private readonly resolveFn: (value: unknown) => void,
    private readonly rejectFn: (error: unknown) => void,
    /** Only read when the call times out: resolving the name on every call costs ~20 ns. */
    private readonly actor: { readonly name: string },
    private readonly timeoutMs: number,
  ) {}

  reply(value: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (this.dlBucket !== null) cancelDeadline(this);
    if (this.deferredIn !== null) this.#undefer();
    this.resolveFn(value);
  }

  fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (this.dlBucket !== null) cancelDeadline(this);
    if (this.deferredIn !== null) this.#undefer();
    this.rejectFn(error);
  }

  #undefer(): void {
    this.deferredIn?.delete(this);
    this.deferredIn = null;
  }

  expire(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.deferredIn !== null) this.#undefer();
    this.rejectFn(
      new TimeoutError(
        `call to ${this.actor.name} timed out after ${this.timeoutMs} ms`,
        this.timeoutMs,
      ),
    );
  }
}

// Inert envelopes that keep the envelopes' hidden classes alive between messages (see
// keepShape); the call's timeout is the default's kind (a small integer).
keepShape(MessageEnvelope, new MessageEnvelope(K_CAST, undefined));
keepShape(
  CallEnvelope,
  new CallEnvelope(
    undefined,
    () => {},
    () => {},
    { name: "" },
    5_000,
  ),
);

interface AsyncContinuations {
  fulfilled: (value: unknown) => void;
  rejected: (thrown: unknown) => void;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

function checkTimeout(timeoutMs: number, what: string): number {
  if (timeoutMs === Infinity || (Number.isFinite(timeoutMs) && timeoutMs > 0)) return timeoutMs;
  throw new InvalidArgumentError(
    `${what} must be a positive number of ms or Infinity, got ${describeArg(timeoutMs)}`,
  );
}

/**
 * An actor: private state behind a mailbox, handling one message at a time (even when its
 * handlers are async), in the manner of an Erlang/OTP `gen_server`.
 *
 * Subclass it and override the callbacks you need: `init`, `handleCall` (request/reply),
 * `handleCast` (fire-and-forget), `handleInfo` (everything else: timers, `DOWN` messages,
 * pub/sub), `terminate`. A callback that throws (or rejects) crashes the actor: it stops with
 * the error as its exit reason, its monitors and supervisor are told, and pending callers
 * are rejected with `NoProcessError`.
 *
 * @typeParam TCall - messages accepted by `call`
 * @typeParam TReply - replies `handleCall` returns
 * @typeParam TCast - messages accepted by `cast`
 * @typeParam TInfo - messages accepted by `send` (and `DownMessage`s if you `watch`)
 *
 * @example
 * ```ts
 * class Counter extends Actor<"get", number, "inc"> {
 *   private n = 0;
 *   protected override handleCall() { return this.n; }
 *   protected override handleCast() { this.n++; }
 * }
 * const counter = await new Counter().start();
 * counter.cast("inc");
 * console.log(await counter.call("get")); // 1
 * await counter.stop();
 * ```
 */
export abstract class Actor<TCall = unknown, TReply = unknown, TCast = unknown, TInfo = unknown>
  implements Process
{
  /** @inheritDoc */
  readonly pid: number = nextPid++;
  #name: string | undefined;
  #state: number = S_NEW;
  #exitReason: ExitReason | undefined;
  readonly #mailboxLimit: number;
  readonly #callTimeoutMs: number;
  #head: Queued | null = null;
  #tail: Queued | null = null;
  #queued = 0;
  /** A pump is scheduled or a handler is running. */
  #busy = false;
  /** An async handler (or init) is in flight. */
  #inFlight = false;
  #current: CallEnvelope | null = null;
  #onIdle: (() => void) | null = null;
  #controller: Cancellation | null = null;
  #monitors: Set<(reason: ExitReason, process: Process) => void> | null = null;
  #timers: Set<LongTimer> | null = null;
  /** The unwatch functions of this actor's live `watch()`es, released when it stops. */
  #watches: Set<() => void> | null = null;
  /** Calls whose handler returned `noReply` and that are still waiting for their reply. */
  #deferred: Set<CallEnvelope> | null = null;
  #stopped: Promise<void> | null = null;
  #resolveStopped: (() => void) | null = null;
  #stopTimer: LongTimer | null = null;
  /** Bound continuations, made on first use so that an idle actor does not carry them. */
  #pump: (() => void) | null = null;
  #settle: AsyncContinuations | null = null;
  /** The message whose async handler is in flight. */
  #flight: Queued | null = null;

  constructor(options: ActorOptions = {}) {
    // The message is built only when the check fails: an actor starts on every revival.
    if (typeof options !== "object" || options === null || Array.isArray(options)) {
      requireObject(options, `${new.target.name} options`);
    }
    optionalString(options.name, "name");
    if (options.name !== undefined) this.#name = options.name;
    const limit = options.mailboxLimit ?? DEFAULT_MAILBOX_LIMIT;
    if (!Number.isInteger(limit) || limit < 1) {
      throw new InvalidArgumentError(
        `mailboxLimit must be a positive integer, got ${describeArg(limit)}`,
      );
    }
    this.#mailboxLimit = limit;
    this.#callTimeoutMs = checkTimeout(
      options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      "callTimeoutMs",
    );
  }

  // ---------------------------------------------------------------- callbacks

  /**
   * Runs once in `start()`, before any message is handled. Throwing fails `start()`; the
   * actor is then stopped with that error and `terminate` is not called.
   */
  protected init(): void | Promise<void> {}

  /**
   * Handles a `call`; the returned value (or resolved value) is the reply. Return
   * {@link noReply} to reply later with `from.reply(...)`. The default crashes the actor: a
   * call it does not understand is a bug.
   */
  protected handleCall(
    message: TCall,
    from: ReplyTo<TReply>,
  ): TReply | NoReply | Promise<TReply | NoReply> {
    void from;
    throw new InvalidArgumentError(`${this.name} does not handle calls (got ${String(message)})`);
  }

  /** Handles a `cast`. The default crashes the actor: a cast it does not understand is a bug. */
  protected handleCast(message: TCast): void | Promise<void> {
    throw new InvalidArgumentError(`${this.name} does not handle casts (got ${String(message)})`);
  }

  /** Handles `send`, `sendAfter` and `DOWN` messages. The default ignores them. */
  protected handleInfo(message: TInfo | DownMessage): void | Promise<void> {
    void message;
  }

  /**
   * Runs once when the actor stops for any reason other than `kill()` or a failed `init`,
   * after the in-flight handler has finished. Must finish within the stop timeout.
   */
  protected terminate(reason: ExitReason): void | Promise<void> {
    void reason;
  }

  // ---------------------------------------------------------------- public API

  /** Display name: the `name` option, or the class name. */
  get name(): string {
    return this.#name ?? this.constructor.name;
  }

  /** @inheritDoc */
  get status(): ActorStatus {
    return STATUS_NAMES[this.#state]!;
  }

  /** True while the actor is starting or running (it accepts messages). */
  get alive(): boolean {
    return this.#state === S_RUNNING || this.#state === S_STARTING;
  }

  /** @inheritDoc */
  get exitReason(): ExitReason | undefined {
    return this.#exitReason;
  }

  /** Number of messages waiting in the mailbox (not counting the one being handled). */
  get mailboxSize(): number {
    return this.#queued;
  }

  /**
   * Aborts when the actor begins to stop, for any reason. Pass it to `fetch`, child
   * processes and timers started by handlers so that stopping cancels them.
   */
  get signal(): AbortSignal {
    return this[STOPPING]().signal;
  }

  /** See {@link STOPPING}. @internal */
  [STOPPING](): Cancellation {
    if (this.#controller === null) {
      this.#controller = new Cancellation();
      if (this.#state >= S_STOPPING) this.#controller.abort(this.#abortReason());
    }
    return this.#controller;
  }

  /**
   * Starts the actor: runs `init`, then begins handling messages. Resolves to the actor
   * itself, so `const a = await new MyActor().start()` reads naturally.
   *
   * @throws AlreadyStartedError if called twice; whatever `init` threw if it failed.
   */
  async start(): Promise<this> {
    if (this.#state !== S_NEW) {
      throw new AlreadyStartedError(`${this.name} (pid ${this.pid}) was already started`);
    }
    this.#state = S_STARTING;
    this.#inFlight = true;
    try {
      const outer = running;
      running = this;
      let initialized: void | Promise<void>;
      try {
        initialized = this.init();
      } finally {
        running = outer;
      }
      await initialized;
    } catch (thrown) {
      const error = toExitError(thrown);
      this.#inFlight = false;
      emitTelemetry("beamclaw:actor.crash", () => ({ ...this.#identity(), error, phase: "init" }));
      // A failed init never runs terminate, even when a stop() was already waiting for it.
      if (this.#state === S_STARTING) this.#beginStop(error);
      this.#finish(error);
      throw thrown;
    }
    this.#inFlight = false;
    if (this.#state === S_STARTING) {
      this.#state = S_RUNNING;
      emitTelemetry("beamclaw:actor.start", () => this.#identity());
      if (this.#head !== null) this.#schedule();
    } else {
      // stop() was called while init ran; it is waiting for us.
      this.#idle();
      throw new NoProcessError(`${this.name} was stopped while starting`, this.#exitReason);
    }
    return this;
  }

  /**
   * Sends a request and waits for the reply.
   *
   * An actor cannot call itself: it would wait for a reply that only it could give, once
   * the handler that waits is over. A call made from the actor's own `init` or handler (by
   * `this`, by a registered name, by any reference) is refused at once with
   * `CallingSelfError`, as Erlang's `gen_server:call` exits with `calling_self`; use `cast` or
   * `send` for a message to self. The runtime knows the caller while the callback runs
   * synchronously, i.e. in an async callback up to its first `await`: a call to self after
   * that still waits for its timeout.
   *
   * @throws NoProcessError if the actor is not running, or stops before replying.
   * @throws CallingSelfError if the actor calls itself from its own callback (see above).
   * @throws OverloadedError if the mailbox is full.
   * @throws TimeoutError if no reply arrives within `timeoutMs` (default 5000). A call that
   *   times out while still queued is never handled; a late reply is dropped.
   */
  call(message: TCall, options?: CallOptions): Promise<TReply> {
    if (this.#state > S_RUNNING || this.#state === S_NEW) {
      return Promise.reject(this.#noProcess());
    }
    if (running === this) return Promise.reject(this.#callingSelf());
    if (this.#queued >= this.#mailboxLimit) {
      return Promise.reject(this.#overloaded("call"));
    }
    let timeoutMs = this.#callTimeoutMs;
    if (options?.timeoutMs !== undefined) {
      try {
        timeoutMs = checkTimeout(options.timeoutMs, "timeoutMs");
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise<TReply>((resolve, reject) => {
      const envelope = new CallEnvelope(
        message,
        resolve as (value: unknown) => void,
        reject,
        this,
        timeoutMs,
      );
      if (timeoutMs !== Infinity) armDeadline(envelope, timeoutMs);
      this.#enqueue(envelope);
    });
  }

  /**
   * Sends a fire-and-forget message to `handleCast`. Returns `false` if the actor is not
   * alive (the message is dropped, as in OTP).
   *
   * @throws OverloadedError if the mailbox is full.
   */
  cast(message: TCast): boolean {
    return this.#deliver(K_CAST, message);
  }

  /**
   * Sends a message to `handleInfo` (OTP's `send/2`). Returns `false` if the actor is not
   * alive (the message is dropped).
   *
   * @throws OverloadedError if the mailbox is full.
   */
  send(message: TInfo): boolean {
    return this.#deliver(K_INFO, message);
  }

  /** @inheritDoc */
  monitor(onExit: (reason: ExitReason, process: Process) => void): () => void {
    if (this.#state === S_STOPPED) {
      let active = true;
      const reason = this.#exitReason!;
      queueMicrotask(() => {
        if (active) onExit(reason, this);
      });
      return () => {
        active = false;
      };
    }
    if (this.#monitors === null) this.#monitors = new Set();
    // Wrap so that the same callback can monitor twice and be removed independently.
    const entry = (reason: ExitReason, process: Process) => onExit(reason, process);
    this.#monitors.add(entry);
    return () => {
      this.#monitors?.delete(entry);
    };
  }

  /** Resolves with the exit reason once the actor has stopped. */
  whenStopped(): Promise<ExitReason> {
    return new Promise((resolve) => {
      this.monitor((reason) => resolve(reason));
    });
  }

  /**
   * Stops the actor: the mailbox is closed (queued calls are rejected with
   * `NoProcessError`), `signal` aborts, the in-flight handler is awaited, then `terminate`
   * runs. If that takes longer than `timeoutMs` the actor is killed (reason `killed`).
   * Calling it again returns the same promise. Stopping a never-started actor just marks it
   * stopped.
   */
  stop(reason: ExitReason = "normal", options?: StopOptions): Promise<void> {
    if (this.#stopped !== null) return this.#stopped;
    let timeoutMs: number;
    try {
      timeoutMs = checkTimeout(options?.timeoutMs ?? DEFAULT_SHUTDOWN_MS, "timeoutMs");
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#state === S_NEW) {
      this.#beginStop(reason);
      this.#finish(reason);
      return this.#stopped!;
    }
    this.#beginStop(reason);
    void this.#runStop(reason, timeoutMs);
    return this.#stopped!;
  }

  /** @inheritDoc */
  kill(): void {
    if (this.#state === S_STOPPED) return;
    if (this.#state !== S_STOPPING) this.#beginStop("killed");
    this.#finish("killed");
  }

  // ---------------------------------------------------------------- helpers for subclasses

  /**
   * Delivers `message` to this actor's `handleInfo` after `delayMs` (OTP's
   * `Process.send_after`). The timer is cleared when the actor stops. Returns a cancel
   * function.
   *
   * @throws InvalidArgumentError when `delayMs` is not a number of milliseconds from 0 up.
   */
  protected sendAfter(message: TInfo, delayMs: number): () => void {
    if (typeof delayMs !== "number" || !(delayMs >= 0)) {
      throw new InvalidArgumentError(
        `sendAfter delayMs must be a number >= 0, got ${String(delayMs)}`,
      );
    }
    if (this.#state >= S_STOPPING) return () => {};
    if (this.#timers === null) this.#timers = new Set();
    const timers = this.#timers;
    const timer = startTimer(() => {
      timers.delete(timer);
      if (this.alive) {
        try {
          this.#deliver(K_INFO, message);
        } catch {
          // A full mailbox drops a timer message, as a full OTP mailbox would not; the
          // overload is already reported on the telemetry channel.
        }
      }
    }, delayMs);
    timers.add(timer);
    return () => {
      timer.cancel();
      timers.delete(timer);
    };
  }

  /**
   * Watches another process: when it exits, this actor receives a {@link DownMessage} in
   * `handleInfo`. Returns a function that stops watching. The watch ends by itself when this
   * actor stops, so a long-lived process keeps no monitor of a watcher that is gone.
   */
  protected watch(process: Process): () => void {
    if (this.#state >= S_STOPPING) return () => {};
    if (this.#watches === null) this.#watches = new Set();
    const watches = this.#watches;
    let unmonitor: (() => void) | null = null;
    let watching = true;
    const unwatch = () => {
      if (!watching) return;
      watching = false;
      watches.delete(unwatch);
      unmonitor?.();
    };
    unmonitor = process.monitor((reason) => {
      if (!watching) return;
      watching = false;
      watches.delete(unwatch);
      if (this.alive) {
        try {
          this.#deliver(K_INFO, { type: "DOWN", process, reason } satisfies DownMessage);
        } catch {
          // overload already reported on telemetry
        }
      }
    });
    if (watching) watches.add(unwatch);
    return unwatch;
  }

  // ---------------------------------------------------------------- internals

  #deliver(kind: typeof K_CAST | typeof K_INFO, message: unknown): boolean {
    if (this.#state > S_RUNNING || this.#state === S_NEW) return false;
    if (this.#queued >= this.#mailboxLimit)
      throw this.#overloaded(kind === K_CAST ? "cast" : "info");
    this.#enqueue(new MessageEnvelope(kind, message));
    return true;
  }

  #enqueue(envelope: Queued): void {
    if (this.#tail === null) this.#head = envelope;
    else this.#tail.next = envelope;
    this.#tail = envelope;
    this.#queued++;
    if (!this.#busy && this.#state === S_RUNNING) this.#schedule();
  }

  /**
   * An idle actor handles a new message at once, on the sender's stack: that halves the
   * cost of a `call`. Messages between actors can chain (A's handler casts to B, whose
   * handler casts to C, ...), so past a small nesting depth the run is deferred to a
   * microtask and the stack never grows with the length of a chain.
   */
  #schedule(): void {
    this.#busy = true;
    if (syncDepth >= MAX_SYNC_DEPTH) {
      if (this.#pump === null) this.#pump = () => this.#run();
      queueMicrotask(this.#pump);
      return;
    }
    syncDepth++;
    try {
      this.#run();
    } finally {
      syncDepth--;
    }
  }

  /** Handles messages until the mailbox is empty or a handler goes async. */
  #run(): void {
    while (this.#state === S_RUNNING) {
      const envelope = this.#head;
      if (envelope === null) {
        this.#busy = false;
        return;
      }
      this.#head = envelope.next;
      if (this.#head === null) this.#tail = null;
      envelope.next = null;
      this.#queued--;
      if (envelope.kind === K_CALL && envelope.settled) continue; // timed out while queued: never handled
      let result: unknown;
      // This actor is "self" while its handler runs on this stack (see `running`).
      const outer = running;
      running = this;
      try {
        if (envelope.kind === K_CALL) {
          this.#current = envelope;
          result = this.handleCall(envelope.msg as TCall, envelope as ReplyTo<TReply>);
        } else if (envelope.kind === K_CAST) {
          result = this.handleCast(envelope.msg as TCast);
        } else {
          result = this.handleInfo(envelope.msg as TInfo);
        }
      } catch (thrown) {
        running = outer;
        this.#crash(thrown, envelope);
        return;
      }
      running = outer;
      if (isThenable(result)) {
        this.#inFlight = true;
        this.#flight = envelope;
        // One pair of continuations per actor, not two closures per message.
        if (this.#settle === null) {
          this.#settle = {
            fulfilled: (value) => this.#afterAsync(this.#takeFlight(), value),
            rejected: (thrown) => this.#afterAsyncCrash(this.#takeFlight(), thrown),
          };
        }
        result.then(this.#settle.fulfilled, this.#settle.rejected);
        return;
      }
      if (envelope.kind === K_CALL) {
        this.#current = null;
        if (result !== noReply) envelope.reply(result);
        else if (!envelope.settled) this.#defer(envelope);
      }
    }
    this.#busy = false;
  }

  #takeFlight(): Queued {
    const envelope = this.#flight!;
    this.#flight = null;
    return envelope;
  }

  #afterAsync(envelope: Queued, value: unknown): void {
    this.#inFlight = false;
    if (envelope.kind === K_CALL) {
      this.#current = null;
      if (value !== noReply) {
        if (this.#state !== S_STOPPED) envelope.reply(value);
      } else if (!envelope.settled) {
        if (this.#state === S_STOPPED) envelope.fail(this.#noProcess());
        else this.#defer(envelope);
      }
    }
    if (this.#state === S_RUNNING) {
      this.#run();
    } else {
      this.#busy = false;
      this.#idle();
    }
  }

  #afterAsyncCrash(envelope: Queued, thrown: unknown): void {
    this.#inFlight = false;
    if (this.#state === S_RUNNING) {
      this.#crash(thrown, envelope);
    } else {
      // Already stopping (the handler likely failed because `signal` aborted): the stop
      // that is under way decides the exit reason.
      if (envelope.kind === K_CALL) {
        this.#current = null;
        envelope.fail(this.#noProcess(thrown));
      }
      this.#busy = false;
      this.#idle();
    }
  }

  #crash(thrown: unknown, envelope: Queued): void {
    this.#busy = false;
    const error = toExitError(thrown);
    const phase =
      envelope.kind === K_CALL
        ? "handleCall"
        : envelope.kind === K_CAST
          ? "handleCast"
          : "handleInfo";
    emitTelemetry("beamclaw:actor.crash", () => ({ ...this.#identity(), error, phase }));
    void this.stop(error);
  }

  #defer(envelope: CallEnvelope): void {
    if (this.#deferred === null) this.#deferred = new Set();
    envelope.deferredIn = this.#deferred;
    this.#deferred.add(envelope);
  }

  #idle(): void {
    const waiter = this.#onIdle;
    if (waiter !== null) {
      this.#onIdle = null;
      waiter();
    }
  }

  /** Closes the mailbox and aborts `signal`. The actor is `stopping` afterwards. */
  #beginStop(reason: ExitReason): void {
    this.#state = S_STOPPING;
    this.#exitReason = reason;
    this.#stopped = new Promise<void>((resolve) => {
      this.#resolveStopped = resolve;
    });
    this.#controller?.abort(this.#abortReason());
    if (this.#timers !== null) {
      for (const timer of this.#timers) timer.cancel();
      this.#timers = null;
    }
    if (this.#watches !== null) {
      const watches = this.#watches;
      this.#watches = null;
      for (const unwatch of Array.from(watches)) unwatch();
    }
    let envelope = this.#head;
    this.#head = this.#tail = null;
    this.#queued = 0;
    while (envelope !== null) {
      if (envelope.kind === K_CALL) envelope.fail(this.#noProcess());
      envelope = envelope.next;
    }
  }

  async #runStop(reason: ExitReason, timeoutMs: number): Promise<void> {
    let finalReason: ExitReason = reason;
    const work = (async () => {
      // stop() may be called from inside a synchronous handler: let it return first, so
      // that terminate never runs beside it.
      await null;
      if (this.#inFlight) {
        await new Promise<void>((resolve) => {
          this.#onIdle = resolve;
        });
      }
      if (this.#state === S_STOPPED) return;
      try {
        await this.terminate(reason);
      } catch (thrown) {
        const error = toExitError(thrown);
        emitTelemetry("beamclaw:actor.crash", () => ({
          ...this.#identity(),
          error,
          phase: "terminate",
        }));
        if (isNormalExit(reason)) finalReason = error;
      }
    })();
    if (timeoutMs !== Infinity) {
      this.#stopTimer = startTimer(() => {
        this.#stopTimer = null;
        this.#finish("killed");
      }, timeoutMs);
    }
    await work;
    this.#finish(finalReason);
  }

  /** Marks the actor stopped and tells everyone who asked. Idempotent. */
  #finish(reason: ExitReason): void {
    if (this.#state === S_STOPPED) return;
    this.#state = S_STOPPED;
    this.#exitReason = reason;
    if (this.#stopTimer !== null) {
      this.#stopTimer.cancel();
      this.#stopTimer = null;
    }
    // Release a stop sequence still waiting for a handler that will now never matter.
    this.#idle();
    const current = this.#current;
    if (current !== null) {
      this.#current = null;
      current.fail(this.#noProcess(typeof reason === "string" ? undefined : reason));
    }
    const deferred = this.#deferred;
    if (deferred !== null) {
      this.#deferred = null;
      for (const envelope of Array.from(deferred)) envelope.fail(this.#noProcess());
    }
    emitTelemetry("beamclaw:actor.stop", () => ({ ...this.#identity(), reason }));
    const monitors = this.#monitors;
    this.#monitors = null;
    if (monitors !== null) {
      for (const onExit of monitors) {
        try {
          onExit(reason, this);
        } catch (error) {
          process.emitWarning(
            `a monitor of ${this.name} threw: ${toExitError(error).message}`,
            "BeamClawWarning",
          );
        }
      }
    }
    this.#resolveStopped?.();
    this.#resolveStopped = null;
  }

  #abortReason(): AbortedError {
    return new AbortedError(
      `${this.name} is stopping: ${formatExitReason(this.#exitReason ?? "normal")}`,
      { cause: this.#exitReason },
    );
  }

  #noProcess(cause?: unknown): NoProcessError {
    const reason = this.#exitReason;
    const why = reason === undefined ? "is not running" : `exited (${formatExitReason(reason)})`;
    return new NoProcessError(
      `${this.name} (pid ${this.pid}) ${why}`,
      reason,
      cause === undefined ? undefined : { cause },
    );
  }

  #callingSelf(): CallingSelfError {
    return new CallingSelfError(
      `${this.name} (pid ${this.pid}) called itself: it cannot answer while its handler waits for the reply (use cast or send for a message to self)`,
      this.pid,
    );
  }

  #overloaded(kind: "call" | "cast" | "info"): OverloadedError {
    const limit = this.#mailboxLimit;
    emitTelemetry("beamclaw:actor.overload", () => ({ ...this.#identity(), limit, kind }));
    return new OverloadedError(`${this.name} mailbox is full (${limit} messages)`, limit);
  }

  #identity() {
    return { actorId: this.pid, actor: this.name };
  }
}
