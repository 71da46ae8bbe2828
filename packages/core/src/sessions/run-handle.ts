import type { RunEvent, RunResult } from "./types.js";

/**
 * The events of one run, buffered so that a consumer that starts iterating late still sees
 * every event from `run-start` on. Each iterator reads independently; iteration ends after
 * `run-end`.
 * @internal
 */
export class RunEventLog {
  readonly #events: RunEvent[] = [];
  #closed = false;
  #waiters: Array<() => void> = [];
  #resolveResult!: (result: RunResult) => void;
  #rejectResult!: (error: unknown) => void;
  readonly result: Promise<RunResult>;

  constructor() {
    this.result = new Promise<RunResult>((resolve, reject) => {
      this.#resolveResult = resolve;
      this.#rejectResult = reject;
    });
    // A caller that only iterates must not get an unhandled rejection.
    this.result.catch(() => undefined);
  }

  get closed(): boolean {
    return this.#closed;
  }

  push(event: RunEvent): void {
    if (this.#closed) return;
    this.#events.push(event);
    if (event.type === "run-end") {
      this.#closed = true;
      this.#resolveResult(event.result);
    }
    this.#wake();
  }

  /** Ends the log without a `run-end` (the message never ran); `result` rejects. */
  fail(error: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#rejectResult(error);
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  async *iterate(): AsyncGenerator<RunEvent, void, undefined> {
    let index = 0;
    while (true) {
      while (index < this.#events.length) yield this.#events[index++]!;
      if (this.#closed) {
        if (index >= this.#events.length) {
          // A log that failed before running: surface the error to the iterating caller.
          await this.result;
          return;
        }
        continue;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }
}

/** How a sent message was taken. */
export type SendDisposition =
  /** It started a run at once. */
  | "started"
  /** It waits for the active run to end (followup/collect). */
  | "queued"
  /** It was injected into the active run. */
  | "steered"
  /** It aborted the active run and runs now. */
  | "interrupted"
  /** Its idempotency key was seen before; this handle follows the original's run. */
  | "duplicate";

/**
 * The handle of a sent message: iterate it for the run's events, await `result` for the
 * final message.
 *
 * @example
 * ```ts
 * const run = await runtime.session("agent:main:main").send({ text: "hi" });
 * for await (const event of run) {
 *   if (event.type === "text-delta") process.stdout.write(event.text);
 * }
 * const { text, usage } = await run.result;
 * ```
 */
export class RunHandle implements AsyncIterable<RunEvent> {
  /** The run this message belongs to (shared by collected and steered messages). */
  readonly runId: string;
  readonly sessionKey: string;
  readonly disposition: SendDisposition;
  /** Resolves with the run's result; rejects if the message could not run at all. */
  readonly result: Promise<RunResult>;
  readonly #log: RunEventLog;
  readonly #abort: () => Promise<boolean>;

  /** @internal */
  constructor(
    runId: string,
    sessionKey: string,
    disposition: SendDisposition,
    log: RunEventLog,
    abort: () => Promise<boolean>,
  ) {
    this.runId = runId;
    this.sessionKey = sessionKey;
    this.disposition = disposition;
    this.#log = log;
    this.result = log.result;
    this.#abort = abort;
  }

  /** Aborts the run (its provider request and tools). Resolves false if it already ended. */
  abort(): Promise<boolean> {
    return this.#abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<RunEvent> {
    return this.#log.iterate();
  }
}
