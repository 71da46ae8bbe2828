/**
 * Server-sent events over a fetch response body, as the WHATWG HTML standard parses them:
 * `data:` lines of one event joined with `\n`, `:` comment lines ignored, `\n`, `\r\n` and `\r`
 * line ends, UTF-8 split anywhere across chunks, and an event cut off by the end of the
 * stream discarded (so a connection cut mid-event is a cut, not a malformed event). One
 * departure: an `error:` line, which the standard ignores, is what llama.cpp servers built
 * before late 2025 send a failure mid-stream as (`error: {"code":400,...}`, then
 * `data: [DONE]`); an event with no `data:` but such a line is dispatched as an `error` event
 * whose data is the line's value, so that the failure is not taken for an empty answer.
 */
import type { ProviderError } from "@beamclaw/core";
import { abortedError, type CallContext, errorFromThrown, providerError } from "./errors.js";
import { MAX_TIMER_MS } from "./http.js";

/** One dispatched server-sent event. */
export interface SseEvent {
  /** The `event:` field, when the server named the event. */
  event: string | undefined;
  /** The `data:` lines of the event joined with `\n`. */
  data: string;
  /** The `id:` field, when given. */
  id: string | undefined;
}

/**
 * Incremental SSE parser: feed it decoded text in chunks of any size, get the events that
 * each chunk completes.
 */
export class SseParser {
  #buffer = "";
  #data: string[] = [];
  #event: string | undefined;
  #id: string | undefined;
  /** The value of a non-standard `error:` line of the current event (see the module comment). */
  #error: string | undefined;

  /** Parses `text` (which may end anywhere) and returns the events it completed. */
  push(text: string): SseEvent[] {
    this.#buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const char = this.#buffer[i];
      if (char !== "\n" && char !== "\r") continue;
      // A `\r` at the very end may be the first half of `\r\n`: wait for the next chunk.
      if (char === "\r" && i === this.#buffer.length - 1) break;
      this.#line(this.#buffer.slice(start, i), events);
      if (char === "\r" && this.#buffer[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.#buffer = this.#buffer.slice(start);
    return events;
  }

  /**
   * The stream ended. A trailing `\r` still ends its line, but an event that was never
   * followed by a blank line is dropped, as the standard says.
   */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    if (this.#buffer.endsWith("\r")) this.#line(this.#buffer.slice(0, -1), events);
    this.#buffer = "";
    this.#data = [];
    this.#event = undefined;
    this.#error = undefined;
    return events;
  }

  #line(line: string, events: SseEvent[]): void {
    if (line === "") {
      if (this.#data.length > 0) {
        events.push({ event: this.#event, data: this.#data.join("\n"), id: this.#id });
      } else if (this.#error !== undefined) {
        events.push({ event: "error", data: this.#error, id: this.#id });
      }
      this.#data = [];
      this.#event = undefined;
      this.#error = undefined;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
    else if (field === "id" && !value.includes("\0")) this.#id = value;
    else if (field === "error") this.#error = value;
    // `retry` and unknown fields are ignored: reconnection is the provider chain's job.
  }
}

/** Options of {@link readSse}. */
export interface ReadSseOptions {
  context: CallContext;
  /** Cancels the body read; the generator then throws `AbortedError`. */
  signal?: AbortSignal | undefined;
  /** Longest wait for the next chunk before failing with kind `timeout`. */
  idleTimeoutMs?: number | undefined;
  /**
   * True once the caller has seen the stream's terminal event (`data: [DONE]`,
   * `message_stop`, ...). When the caller stops reading after that, the rest of the body
   * (normally just its end, which a server sends right after the terminal event, often in a
   * later packet) is read in the background instead of cancelled, so that the keep-alive
   * connection goes back to the pool rather than being closed: without this, every call to a
   * vendor would open a new TCP and TLS connection. See {@link releaseBody}.
   */
  complete?: () => boolean;
  /** Called once when the generator is done with the body: ended, failed or cancelled. */
  release?: (() => void) | undefined;
}

type ReadResult = Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>>;

/**
 * The idle limit of one body: fails a read that waits longer than `idleTimeoutMs` for its
 * chunk, by cancelling the reader. One timer per body, re-armed (`refresh()`) before each
 * read, rather than a timer, a promise and a race per chunk. Time the consumer spends between
 * reads does not count: the timer does nothing when no read is waiting.
 */
class IdleLimit {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #timer: ReturnType<typeof setTimeout>;
  #reading = false;
  /** True once a read waited too long. */
  expired = false;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, idleTimeoutMs: number) {
    this.#reader = reader;
    this.#timer = setTimeout(this.#onIdle, idleTimeoutMs);
  }

  async read(): Promise<ReadResult> {
    this.#timer.refresh();
    this.#reading = true;
    try {
      return await this.#reader.read();
    } finally {
      this.#reading = false;
    }
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  readonly #onIdle = (): void => {
    if (!this.#reading) return;
    this.expired = true;
    this.#reader.cancel().catch(() => {});
  };
}

/** Longest wait for the end of a body after its terminal event; see {@link releaseBody}. */
export const RELEASE_GRACE_MS = 1_000;
/** Most bytes read after a body's terminal event before it is cancelled instead. */
export const RELEASE_MAX_BYTES = 64 * 1024;

/**
 * Lets a response body whose terminal event has been read end by itself, in the background:
 * it is read to its end (undici then returns the connection to its pool), or cancelled
 * (which closes the connection) if more than {@link RELEASE_MAX_BYTES} follow or the end does
 * not come within {@link RELEASE_GRACE_MS}. Nothing waits for it; its timer does not hold
 * the process open.
 */
export function releaseBody(reader: ReadableStreamDefaultReader<Uint8Array>): void {
  const cancel = () => {
    reader.cancel().catch(() => {});
  };
  const timer = setTimeout(cancel, RELEASE_GRACE_MS);
  timer.unref?.();
  let bytes = 0;
  const step = (result: ReadResult): void => {
    if (result.done) {
      clearTimeout(timer);
      return;
    }
    bytes += result.value.byteLength;
    if (bytes > RELEASE_MAX_BYTES) {
      clearTimeout(timer);
      cancel();
      return;
    }
    reader.read().then(step, failed);
  };
  // A read that fails (the connection reset, or the cancel above) ends it all the same.
  const failed = () => {
    clearTimeout(timer);
  };
  reader.read().then(step, failed);
}

/**
 * Yields the events of an SSE response body. Ending early (a `break`, or an error thrown by
 * the consumer's loop) cancels the body, which closes the connection; unless the caller has
 * seen the terminal event (`options.complete`), when the body is left to end by itself (see
 * {@link releaseBody}).
 *
 * Throws `AbortedError` when `signal` aborts, `ProviderError` kind `timeout` when no chunk
 * arrives within `idleTimeoutMs`, and kind `network` when reading fails (connection reset).
 * A stream that simply ends is not an error here: whether it ended too early depends on the
 * vendor's terminal event, which the adapter checks (see {@link streamCutError}).
 */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  options: ReadSseOptions,
): AsyncGenerator<SseEvent, void, undefined> {
  const { context, signal, idleTimeoutMs } = options;
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let finished = false;
  const idle =
    idleTimeoutMs !== undefined && idleTimeoutMs < MAX_TIMER_MS
      ? new IdleLimit(reader, idleTimeoutMs)
      : undefined;
  // A mocked or proxied body may ignore the request's signal once headers are in; cancelling
  // the reader ourselves makes abort work whatever produced the body. The idle timer stops
  // too: a caller that aborts and then leaves the stream must not be held by it.
  const onAbort = () => {
    idle?.stop();
    reader.cancel(signal?.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    while (true) {
      if (signal?.aborted) throw abortedError(context, signal);
      let chunk: ReadResult | undefined;
      try {
        chunk = idle === undefined ? await reader.read() : await idle.read();
      } catch (error) {
        if (idle?.expired !== true || signal?.aborted === true) {
          throw errorFromThrown(error, context, signal);
        }
      }
      if (signal?.aborted) throw abortedError(context, signal);
      if (idle?.expired === true || chunk === undefined) {
        throw providerError(
          "timeout",
          `no data received for ${idleTimeoutMs} ms (stream stalled)`,
          context,
        );
      }
      if (chunk.done) {
        finished = true;
        yield* parser.push(decoder.decode());
        yield* parser.end();
        return;
      }
      yield* parser.push(decoder.decode(chunk.value, { stream: true }));
    }
  } finally {
    idle?.stop();
    signal?.removeEventListener("abort", onAbort);
    options.release?.();
    if (!finished) {
      if (options.complete?.() === true && signal?.aborted !== true) releaseBody(reader);
      else reader.cancel().catch(() => {});
    }
  }
}

/**
 * Parses an event's data as JSON, or throws `ProviderError` kind `malformed_stream` (not
 * retryable: the same request is likely to produce the same bytes).
 */
export function parseSseJson(event: SseEvent, context: CallContext): unknown {
  try {
    return JSON.parse(event.data);
  } catch (error) {
    const name = event.event === undefined ? "" : ` "${event.event}"`;
    const snippet = event.data.length > 200 ? `${event.data.slice(0, 200)}…` : event.data;
    throw providerError("malformed_stream", `event${name} is not valid JSON: ${snippet}`, context, {
      cause: error,
      responseBody: event.data,
    });
  }
}

/**
 * The error for a stream that ended before the vendor's terminal event: the connection was
 * cut mid-stream, which is a retryable `network` failure.
 */
export function streamCutError(context: CallContext, terminal: string): ProviderError {
  return providerError(
    "network",
    `the stream ended before ${terminal} (connection cut mid-stream)`,
    context,
  );
}
