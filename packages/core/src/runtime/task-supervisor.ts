import {
  AbortedError,
  InvalidArgumentError,
  NoProcessError,
  OverloadedError,
  TaskCrashedError,
  TimeoutError,
} from "../errors.js";
import { Actor, type ActorOptions } from "./actor.js";
import type { ExitReason } from "./exit.js";
import { CANCELLATION, type Cancellation, cancellationOf, defineLazySignal } from "./lazy-abort.js";
import { type LongTimer, startTimer } from "./timers.js";

/** Options of a {@link TaskSupervisor}. */
export interface TaskSupervisorOptions extends Pick<ActorOptions, "name"> {
  /** Refuse `run` with `OverloadedError` beyond this many concurrent tasks. Default unlimited. */
  maxTasks?: number;
  /** Timeout for tasks that do not set one, in ms. Default `Infinity`. */
  defaultTimeoutMs?: number;
}

/** Options of one task. */
export interface TaskOptions {
  /** Reject with `TimeoutError` (and abort the task's signal) after this many ms. */
  timeoutMs?: number;
  /** Aborting this signal aborts the task and rejects it with `AbortedError`. */
  signal?: AbortSignal;
  /** A label for error messages. */
  name?: string;
  /** Instead of `signal`: the library's own run cancellation, watched without a signal. @internal */
  [CANCELLATION]?: Cancellation;
}

/** What a running task gets: its abort signal. */
export interface TaskContext {
  /** Aborts on timeout, on the caller's signal, or when the supervisor stops. */
  signal: AbortSignal;
}

interface RunningTask {
  controller: AbortController;
  settled: Promise<unknown>;
}

/** What a task's caller can cancel it with: its signal, or the run's cancellation. */
interface Outer {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** Calls `callback` once on abort; returns what removes it. */
  onAbort(callback: () => void): () => void;
}

class SignalOuter implements Outer {
  readonly #signal: AbortSignal;

  constructor(signal: AbortSignal) {
    this.#signal = signal;
  }

  get aborted(): boolean {
    return this.#signal.aborted;
  }

  get reason(): unknown {
    return this.#signal.reason;
  }

  onAbort(callback: () => void): () => void {
    const signal = this.#signal;
    signal.addEventListener("abort", callback, { once: true });
    return () => signal.removeEventListener("abort", callback);
  }
}

function outerOf(options: TaskOptions): Outer | undefined {
  // A Cancellation is an Outer, watched without making its signal.
  const cancellation = cancellationOf(options);
  if (cancellation !== undefined) return cancellation;
  return options.signal === undefined ? undefined : new SignalOuter(options.signal);
}

/**
 * Runs one-shot async work (tool calls, fetches) with a timeout and abort, isolated from the
 * caller, in the manner of OTP's `Task.Supervisor`. Tasks are never restarted: a task
 * settles with its result or a typed error, and the caller decides whether to retry.
 *
 * - A task that throws an `Error` rejects with that same error (its type drives retries);
 *   one that throws anything else rejects with `TaskCrashedError`.
 * - A task that overruns `timeoutMs` rejects with `TimeoutError` at once, and its signal
 *   aborts so that it can clean up.
 * - Stopping the supervisor aborts every running task (they reject with `AbortedError`) and
 *   waits for them to settle, within the stop timeout. Killing it aborts them too.
 *
 * @example
 * ```ts
 * const tasks = await new TaskSupervisor({ maxTasks: 64 }).start();
 * const page = await tasks.run(({ signal }) => fetch(url, { signal }).then((r) => r.text()), {
 *   timeoutMs: 10_000,
 * });
 * await tasks.stop();
 * ```
 */
export class TaskSupervisor extends Actor<never, never, never, never> {
  readonly maxTasks: number;
  readonly defaultTimeoutMs: number;
  readonly #running = new Set<RunningTask>();

  constructor(options: TaskSupervisorOptions = {}) {
    super(options.name === undefined ? {} : { name: options.name });
    this.maxTasks = options.maxTasks ?? Infinity;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? Infinity;
    if (!(this.maxTasks === Infinity || (Number.isInteger(this.maxTasks) && this.maxTasks > 0))) {
      throw new InvalidArgumentError(`maxTasks must be a positive integer, got ${this.maxTasks}`);
    }
    validTimeout(this.defaultTimeoutMs, "defaultTimeoutMs");
    // Killed (by kill(), or a stop that overran its timeout), terminate may never run: the
    // tasks are aborted all the same, so that none of them, nor its caller, is left behind.
    this.monitor((reason) => {
      if (reason !== "killed") return;
      for (const task of this.#running) {
        task.controller.abort(new AbortedError(`${this.name} was killed`));
      }
    });
  }

  /** Tasks currently running. */
  get activeCount(): number {
    return this.#running.size;
  }

  /**
   * Runs `fn` as a supervised task and settles with its result.
   *
   * @throws NoProcessError if the supervisor is not running.
   * @throws OverloadedError if `maxTasks` tasks are already running.
   * @throws TimeoutError, AbortedError, TaskCrashedError, or the task's own error.
   */
  run<T>(fn: (context: TaskContext) => T | Promise<T>, options: TaskOptions = {}): Promise<T> {
    if (this.status !== "running") {
      return Promise.reject(
        new NoProcessError(`${this.name} is ${this.status}; it runs no tasks`, this.exitReason),
      );
    }
    if (this.#running.size >= this.maxTasks) {
      return Promise.reject(
        new OverloadedError(`${this.name} already runs ${this.maxTasks} tasks`, this.maxTasks),
      );
    }
    let timeoutMs: number;
    try {
      timeoutMs = validTimeout(options.timeoutMs ?? this.defaultTimeoutMs, "timeoutMs");
    } catch (error) {
      return Promise.reject(error);
    }
    const label = options.name ?? "task";
    const outer = outerOf(options);
    if (outer?.aborted) {
      return Promise.reject(
        new AbortedError(`${label} was aborted before it started`, { cause: outer.reason }),
      );
    }
    // The task's signal is made when first read: making an AbortSignal costs as much as a
    // dozen promises, and a task that never reads it (or finishes synchronously) needs none.
    // (Node makes an AbortController's signal when it is first read.)
    const controller = new AbortController();
    const context: TaskContext = defineLazySignal({}, controller);
    let started: T | Promise<T>;
    try {
      started = fn(context);
    } catch (thrown) {
      return Promise.reject(crashError(thrown, label));
    }
    // Finished synchronously: there is nothing left to time out, abort or wait for.
    if (!isThenable(started)) return Promise.resolve(started);
    if (outer?.aborted) {
      // The task itself aborted its caller.
      const error = new AbortedError(`${label} was aborted`, { cause: outer.reason });
      controller.abort(error);
      Promise.resolve(started).catch(() => undefined);
      return Promise.reject(error);
    }
    return this.#supervise(Promise.resolve(started), controller, timeoutMs, label, outer);
  }

  /** Times out, aborts and tracks a task that is still running after its synchronous start. */
  #supervise<T>(
    running: Promise<T>,
    controller: AbortController,
    timeoutMs: number,
    label: string,
    outer: Outer | undefined,
  ): Promise<T> {
    let timer: LongTimer | undefined;
    let unwatch: (() => void) | undefined;
    const stopped = new Promise<never>((_, reject) => {
      if (timeoutMs !== Infinity) {
        timer = startTimer(() => {
          const error = new TimeoutError(`${label} timed out after ${timeoutMs} ms`, timeoutMs);
          controller.abort(error);
          reject(error);
        }, timeoutMs);
      }
      if (outer !== undefined) {
        unwatch = outer.onAbort(() => {
          const error = new AbortedError(`${label} was aborted`, { cause: outer.reason });
          controller.abort(error);
          reject(error);
        });
      }
      controller.signal.addEventListener(
        "abort",
        () => {
          const reason: unknown = controller.signal.reason;
          reject(
            reason instanceof TimeoutError || reason instanceof AbortedError
              ? reason
              : new AbortedError(`${label} was aborted`, { cause: reason }),
          );
        },
        { once: true },
      );
    });

    const work = running.catch((thrown: unknown) => {
      throw crashError(thrown, label);
    });
    const task: RunningTask = { controller, settled: work.catch(() => undefined) };
    this.#running.add(task);
    void task.settled.then(() => {
      this.#running.delete(task);
      timer?.cancel();
      unwatch?.();
    });
    return Promise.race([work, stopped]).finally(() => {
      timer?.cancel();
    });
  }

  /** Aborts every task and waits for them to settle. */
  protected override async terminate(reason: ExitReason): Promise<void> {
    const tasks = Array.from(this.#running);
    for (const task of tasks) {
      task.controller.abort(
        new AbortedError(
          `${this.name} is stopping (${typeof reason === "string" ? reason : reason.message})`,
        ),
      );
    }
    await Promise.all(tasks.map((t) => t.settled));
  }
}

/** What a task that threw `thrown` rejects with: the error itself, or `TaskCrashedError`. */
function crashError(thrown: unknown, label: string): Error {
  return thrown instanceof Error
    ? thrown
    : new TaskCrashedError(`${label} threw a non-error value`, { cause: thrown });
}

function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

function validTimeout(timeoutMs: number, what: string): number {
  if (timeoutMs === Infinity || (Number.isFinite(timeoutMs) && timeoutMs > 0)) return timeoutMs;
  throw new InvalidArgumentError(
    `${what} must be a positive number of ms or Infinity, got ${timeoutMs}`,
  );
}
