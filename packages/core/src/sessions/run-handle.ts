import type { JsonValue } from "../providers/types.js";
import { keepShape } from "../runtime/shapes.js";
import { parseOutput, type RunOutput } from "./output.js";
import { type DeepPartial, parsePartialJson } from "./partial-json.js";
import {
  type RunEventStreamOptions,
  type RunResponseOptions,
  runEventResponse,
  runEventStream,
} from "./run-stream.js";
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
  /**
   * Who to wake after the next push or close: nobody, one reader (nearly always: the caller
   * iterating the run), or several. No array per wake-up: a run pushes many events.
   */
  #waiters: (() => void) | Array<() => void> | undefined;
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
    if (waiters === undefined) return;
    this.#waiters = undefined;
    if (typeof waiters === "function") waiters();
    else for (const wake of waiters) wake();
  }

  /** The event at `index`, if it has been pushed. @internal */
  at(index: number): RunEvent | undefined {
    return this.#events[index];
  }

  /** Calls `wake` once after the next push or close. @internal */
  waitFrom(wake: () => void): void {
    const waiters = this.#waiters;
    if (waiters === undefined) this.#waiters = wake;
    else if (typeof waiters === "function") this.#waiters = [waiters, wake];
    else waiters.push(wake);
  }

  /**
   * Iterates the events from the first. A hand-written iterator rather than an async
   * generator: a run streams many events, and each generator step costs several promises.
   */
  iterate(): AsyncIterator<RunEvent, void, undefined> & AsyncIterable<RunEvent> {
    return new RunEventIterator(this);
  }
}

type EventResult = IteratorResult<RunEvent, void>;

const END: EventResult = Object.freeze({ done: true, value: undefined });

type Resolver = (result: EventResult | Promise<EventResult>) => void;

/** One reader of a {@link RunEventLog}; see `RunEventLog.iterate`. */
class RunEventIterator implements AsyncIterator<RunEvent, void, undefined> {
  readonly #log: RunEventLog;
  #index = 0;
  #done = false;
  /**
   * `next()` calls waiting for an event, oldest first: the first in a field (a reader that
   * awaits each `next()` never has more than one), any others in an array.
   */
  #first: Resolver | undefined;
  #rest: Resolver[] | undefined;
  #listening = false;
  readonly #onPush = () => {
    this.#listening = false;
    while (this.#first !== undefined) {
      const result = this.#take();
      if (result === undefined) {
        this.#listen();
        return;
      }
      const resolve = this.#first;
      this.#first = this.#rest?.shift();
      resolve(result);
    }
  };
  /** The executor of a waiting `next()`'s promise, made once per reader, not per call. */
  readonly #wait = (resolve: Resolver): void => {
    if (this.#first === undefined) this.#first = resolve;
    else if (this.#rest === undefined) this.#rest = [resolve];
    else this.#rest.push(resolve);
    this.#listen();
  };

  constructor(log: RunEventLog) {
    this.#log = log;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<EventResult> {
    if (this.#first === undefined) {
      const result = this.#take();
      if (result !== undefined) return Promise.resolve(result);
    }
    return new Promise(this.#wait);
  }

  return(): Promise<EventResult> {
    this.#done = true;
    const first = this.#first;
    const rest = this.#rest;
    this.#first = undefined;
    this.#rest = undefined;
    first?.(END);
    if (rest !== undefined) for (const resolve of rest) resolve(END);
    return Promise.resolve(END);
  }

  #listen(): void {
    if (this.#listening) return;
    this.#listening = true;
    this.#log.waitFrom(this.#onPush);
  }

  /** The next result if it is known now: an event, the end, or the log's failure. */
  #take(): EventResult | Promise<EventResult> | undefined {
    if (this.#done) return END;
    const event = this.#log.at(this.#index);
    if (event !== undefined) {
      this.#index++;
      return { done: false, value: event };
    }
    if (!this.#log.closed) return undefined;
    this.#done = true;
    // A log that failed before running: surface the error to the iterating caller.
    return this.#log.result.then(() => END);
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
export class RunHandle<TOutput = JsonValue> implements AsyncIterable<RunEvent> {
  /** The run this message belongs to (shared by collected and steered messages). */
  readonly runId: string;
  readonly sessionKey: string;
  readonly disposition: SendDisposition;
  /**
   * Resolves with the run's result; rejects if the message could not run at all. When the
   * message asked for a structured answer with a zod schema, `output` is that schema's parse
   * of the answer (transforms and defaults applied).
   */
  readonly result: Promise<RunResult<TOutput>>;
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
    this.result = log.result as Promise<RunResult<TOutput>>;
    this.#abort = abort;
  }

  /**
   * This handle, its `result` parsed by the caller's zod schema (see {@link RunResult.output}).
   * A run that another process validated against the schema's JSON form, and that a
   * refinement of the zod schema refuses, ends `failed` with `OUTPUT_INVALID` here.
   * @internal
   */
  withOutput<T>(output: RunOutput | undefined): RunHandle<T> {
    const handle = this as unknown as RunHandle<T>;
    if (output === undefined || !output.live) return handle;
    (handle as { result: Promise<RunResult<T>> }).result = this.#log.result.then((result) =>
      parsedResult<T>(result, output),
    );
    handle.result.catch(() => undefined);
    return handle;
  }

  /** Aborts the run (its provider request and tools). Resolves false if it already ended. */
  abort(): Promise<boolean> {
    return this.#abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<RunEvent> {
    return this.#log.iterate();
  }

  /**
   * A structured answer (`SendOptions.output`) while it streams: after each text chunk that
   * changes what the answer's JSON holds so far, that value (see `parsePartialJson`: open
   * strings, arrays and objects closed where the text stops); last, the run's `output` once it
   * is validated. The values are the JSON as written, before a zod schema's transforms. A text
   * before a tool call, or an answer the schema rejected (a `text-reset`), starts over. Ends
   * with the run; reads the events independently of other readers.
   *
   * @example
   * ```ts
   * const run = await session.send("Plan the trip", { output: Plan });
   * for await (const plan of run.partialOutputs()) render(plan); // { days: [{ city: "Ly" }] } ...
   * ```
   */
  async *partialOutputs(): AsyncGenerator<DeepPartial<TOutput>, void, undefined> {
    let text = "";
    let last: string | undefined;
    for await (const event of this) {
      switch (event.type) {
        case "text-delta": {
          text += event.text;
          const value = parsePartialJson(text);
          if (typeof value !== "object" || value === null) break;
          const seen = JSON.stringify(value);
          if (seen === last) break;
          last = seen;
          yield value as DeepPartial<TOutput>;
          break;
        }
        case "text-reset":
        case "tool-call":
          text = "";
          break;
        case "run-end": {
          const output = event.result.output;
          if (output !== undefined && JSON.stringify(output) !== last) {
            yield output as DeepPartial<TOutput>;
          }
          break;
        }
        default:
          break;
      }
    }
  }

  /**
   * The run's events as server-sent events (`id: <index>` and one `data:` line of JSON per
   * event), with a keepalive comment while the run is quiet; cancelling the stream aborts the
   * run unless `abortOnCancel` is false.
   * @throws InvalidArgumentError on bad options.
   */
  toEventStream(options?: RunEventStreamOptions): ReadableStream<Uint8Array> {
    return runEventStream(this, options);
  }

  /**
   * A `Response` streaming {@link toEventStream}, with headers that keep caches, compression
   * and proxies from buffering it: what a route handler returns.
   *
   * @example
   * ```ts
   * // app/api/chat/route.ts (Next.js)
   * export async function POST(request: Request) {
   *   const { sessionKey, text } = await request.json();
   *   const run = await runtime.session(sessionKey).send(text, { signal: request.signal });
   *   return run.toResponse({ lastEventId: request.headers.get("last-event-id") });
   * }
   * ```
   * @throws InvalidArgumentError on bad options.
   */
  toResponse(options?: RunResponseOptions): Response {
    return runEventResponse(this, options);
  }
}

/** `result` with its `output` parsed by the caller's live zod schema. */
function parsedResult<T>(result: RunResult, output: RunOutput): RunResult<T> {
  if (result.output === undefined) return result as RunResult<T>;
  const parsed = parseOutput(output, result.output);
  if (parsed.ok) return { ...result, output: parsed.value as T };
  const { output: _refused, ...rest } = result;
  return {
    ...rest,
    status: "failed",
    error: {
      code: "OUTPUT_INVALID",
      message: `the answer does not conform to the ${output.format.name} schema: ${parsed.problems}`,
    },
  };
}

// Inert instances that keep these per-run classes' hidden classes alive (see keepShape).
const SHAPE_LOG = keepShape(RunEventLog, new RunEventLog());
keepShape(RunEventLog, SHAPE_LOG.iterate());
keepShape(
  RunHandle,
  new RunHandle("run-0", "agent:main:main", "started", SHAPE_LOG, () => Promise.resolve(false)),
);
