/**
 * A run's events as server-sent events: what an HTTP route (a Next.js route handler, a Hono
 * or Fastify handler, anything that answers with a web `Response`) streams to a browser.
 */
import { InvalidArgumentError } from "../errors.js";
import { MAX_TIMER_DELAY_MS } from "../runtime/timers.js";
import { errorInfo, type RunEvent } from "./types.js";

/** Options of `RunHandle.toEventStream()`. */
export interface RunEventStreamOptions {
  /**
   * An SSE comment (`: keepalive`) is written when nothing else was for this long, so that
   * proxies do not close a stream whose run waits (for an approval, a slow tool). Default
   * 15,000 ms; 0 for none.
   */
  keepaliveMs?: number;
  /**
   * Abort the run when the reader cancels the stream (the client went away). Default true.
   * The run is the message's: a message that joined another's run (steered, collected, a
   * duplicate) aborts that run.
   */
  abortOnCancel?: boolean;
  /**
   * The `id` of the last event the client has: only later events are sent. Pass a
   * reconnecting client's `Last-Event-ID` header; `null` or `""` (no header) sends them all.
   */
  lastEventId?: string | number | null;
  /** Which events to send; default all of them. */
  filter?: (event: RunEvent) => boolean;
}

/** Options of `RunHandle.toResponse()`. */
export interface RunResponseOptions extends RunEventStreamOptions {
  /** Added to (or replacing) the event-stream headers. */
  headers?: Record<string, string>;
  /** Default 200. */
  status?: number;
}

/** The headers of an event stream that no cache or proxy buffers. */
export const EVENT_STREAM_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/event-stream; charset=utf-8",
  // `no-transform` keeps compressing servers (`next start`) and proxies from buffering it.
  "cache-control": "no-cache, no-transform",
  // nginx buffers responses unless told not to.
  "x-accel-buffering": "no",
};

const DEFAULT_KEEPALIVE_MS = 15_000;

/** The index of the first event to send, from a client's last event id. */
function firstIndex(lastEventId: RunEventStreamOptions["lastEventId"]): number {
  if (lastEventId === undefined || lastEventId === null || lastEventId === "") return 0;
  const id =
    typeof lastEventId === "number"
      ? lastEventId
      : /^\s*\d{1,15}\s*$/.test(String(lastEventId))
        ? Number(lastEventId)
        : Number.NaN;
  if (!(Number.isSafeInteger(id) && id >= 0)) {
    throw new InvalidArgumentError(
      `lastEventId must be the id of an event of this run (an integer >= 0), got ${JSON.stringify(lastEventId)}`,
    );
  }
  return id + 1;
}

/** Checks the options before anything is read from the run. */
function checkOptions(options: RunEventStreamOptions): { keepaliveMs: number; from: number } {
  const keepaliveMs = options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
  if (!(Number.isInteger(keepaliveMs) && keepaliveMs >= 0 && keepaliveMs <= MAX_TIMER_DELAY_MS)) {
    throw new InvalidArgumentError(
      `keepaliveMs must be a whole number of milliseconds from 0 to ${MAX_TIMER_DELAY_MS}, got ${String(options.keepaliveMs)}`,
    );
  }
  if (options.filter !== undefined && typeof options.filter !== "function") {
    throw new InvalidArgumentError("filter must be a function");
  }
  return { keepaliveMs, from: firstIndex(options.lastEventId) };
}

/** What the event stream reads of a run handle. */
export interface StreamableRun extends AsyncIterable<RunEvent> {
  readonly runId: string;
  readonly sessionKey: string;
  abort(): Promise<boolean>;
}

/**
 * The run's events as SSE bytes: per event `id: <its index in the run>` and one `data:` line
 * of JSON, from `run-start` to `run-end`. A message that could not run at all (the session
 * was deleted, the runtime stopped) ends the stream with an `error` event. See
 * {@link RunEventStreamOptions}.
 * @throws InvalidArgumentError on bad options, before anything is read.
 */
export function runEventStream(
  run: StreamableRun,
  options: RunEventStreamOptions = {},
): ReadableStream<Uint8Array> {
  const { keepaliveMs, from } = checkOptions(options);
  const filter = options.filter;
  const abortOnCancel = options.abortOnCancel ?? true;
  const encoder = new TextEncoder();
  let closed = false;
  let keepalive: ReturnType<typeof setInterval> | undefined;
  let wrote = false;
  // Made here, not by `for await`: a cancel lets go of it at once, not at the run's next event
  // (a quiet run, waiting for an approval or a slow tool, would keep it waiting meanwhile).
  const iterator = run[Symbol.asyncIterator]();
  const stop = () => {
    closed = true;
    if (keepalive !== undefined) clearInterval(keepalive);
    keepalive = undefined;
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (chunk: string) => {
        if (closed) return;
        wrote = true;
        try {
          controller.enqueue(encoder.encode(chunk));
        } catch {
          stop(); // the stream went away without a cancel
        }
      };
      if (keepaliveMs > 0) {
        keepalive = setInterval(() => {
          // Only after a quiet interval: a streaming answer needs no keepalive.
          if (!wrote) write(": keepalive\n\n");
          wrote = false;
        }, keepaliveMs);
        keepalive.unref?.();
      }
      void (async () => {
        let index = 0;
        try {
          for await (const event of { [Symbol.asyncIterator]: () => iterator }) {
            if (closed) break;
            const id = index++;
            if (id < from || (filter !== undefined && !filter(event))) continue;
            write(`id: ${id}\ndata: ${JSON.stringify(event)}\n\n`);
          }
        } catch (error) {
          const event: RunEvent = {
            type: "error",
            runId: run.runId,
            sessionKey: run.sessionKey,
            error: errorInfo(error),
          };
          write(`data: ${JSON.stringify(event)}\n\n`);
        } finally {
          if (!closed) {
            stop();
            try {
              controller.close();
            } catch {
              // already closed
            }
          }
        }
      })();
    },
    cancel() {
      stop();
      void Promise.resolve()
        .then(() => iterator.return?.())
        .catch(() => undefined);
      if (abortOnCancel) void run.abort().catch(() => undefined);
    },
  });
}

/**
 * A `Response` streaming the run's events (see {@link runEventStream}) with headers that keep
 * caches, compression and proxies from buffering it.
 * @throws InvalidArgumentError on bad options, before anything is read.
 */
export function runEventResponse(run: StreamableRun, options: RunResponseOptions = {}): Response {
  const status = options.status ?? 200;
  if (!(Number.isInteger(status) && status >= 200 && status <= 599)) {
    throw new InvalidArgumentError(
      `status must be an HTTP status from 200 to 599, got ${String(status)}`,
    );
  }
  const body = runEventStream(run, options);
  return new Response(body, { status, headers: { ...EVENT_STREAM_HEADERS, ...options.headers } });
}
