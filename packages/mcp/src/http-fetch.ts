/**
 * The `fetch` of {@link McpToolServer}'s Streamable HTTP transport: the global `fetch`, except
 * that the response of a request the client has cancelled is closed once the server has the
 * cancellation. The protocol has the server send no answer to a cancelled request, so that
 * POST's response (an SSE stream, usually) would stay open, holding a connection on both sides,
 * until the session ends: one more for every call that timed out or was aborted.
 *
 * It also holds a server's messages to the stdio transport's limit (the MCP SDK's 10 MiB): a
 * JSON body or an SSE event past it is left unread and its connection closed.
 */
import { STDIO_DEFAULT_MAX_BUFFER_SIZE } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";

/**
 * A `fetch` that follows the POSTs carrying a JSON-RPC request (by id) while their responses
 * are open, and, after it has sent `notifications/cancelled` for one of them, closes that one's
 * response. The closing is no cancellation by itself (the spec says a server must not take a
 * dropped connection for one): the notification, sent first, is.
 *
 * Every response's messages are held to `maxMessageBytes` (default: the stdio transport's
 * 10 MiB): a JSON body past it fails (its request fails with it); an SSE event past it is left
 * unread and, on a request's stream, becomes an error answer to that request (a stream of no
 * request fails). Either way the response is cancelled there, nothing held past the limit,
 * and the SDK's reconnection to such an SSE stream (a GET with its `Last-Event-ID`, which would
 * fetch the same event again) is answered 405 here, which the SDK takes for no stream and does
 * not retry.
 *
 * A POST answered 404 without having carried an `Mcp-Session-Id` fails with an error naming the
 * status and the URL (its origin and path): only a 404 to a request carrying a session id means
 * that session expired (and the request is sent again in a new one).
 */
export function closingCancelledFetch(
  base: FetchLike = fetch,
  maxMessageBytes: number = STDIO_DEFAULT_MAX_BUFFER_SIZE,
): FetchLike {
  /** The open responses of requests, by JSON-RPC id. */
  const open = new Map<string | number, AbortController>();
  /** The last event ids of the SSE streams cancelled at the limit that could be resumed. */
  const cancelled = new Set<string>();
  const onCancelled = (lastEventId: string | undefined) => {
    if (lastEventId !== undefined) cancelled.add(lastEventId);
  };
  const limited = async (url: string | URL, init?: RequestInit, id?: string | number) => {
    const response = await base(url, init);
    await refuseNotFound(url, init, response);
    return capped(response, maxMessageBytes, id, onCancelled);
  };
  return async (url, init) => {
    // The SDK resuming a stream cancelled at the limit (a GET with its Last-Event-ID) would
    // fetch the same event again: it is answered here with what the SDK does not retry.
    const resumes = init?.method === "GET" ? new Headers(init.headers).get("last-event-id") : null;
    if (resumes !== null && cancelled.delete(resumes)) {
      return new Response(null, {
        status: 405,
        statusText: "Not resumed: an event of this stream exceeded the message limit",
      });
    }
    const message = postedMessage(init);
    if (message === undefined) return limited(url, init);
    if (message.method === "notifications/cancelled") {
      const response = await limited(url, init);
      const requestId = (message.params as { requestId?: unknown } | undefined)?.requestId;
      if (typeof requestId === "string" || typeof requestId === "number") {
        open.get(requestId)?.abort(new Error(`request ${requestId} was cancelled`));
        open.delete(requestId);
      }
      return response;
    }
    const id = message.id;
    // A request (not a response to one of the server's, whose id is the server's).
    if (typeof message.method !== "string" || (typeof id !== "string" && typeof id !== "number")) {
      return limited(url, init);
    }
    const controller = new AbortController();
    open.set(id, controller);
    // The transport's own signal (aborted when it closes) reaches this request while it is open;
    // a listener, taken off after, not `AbortSignal.any` (whose links a long-lived signal keeps).
    const outer = init?.signal ?? undefined;
    const onAbort = () => controller.abort(outer?.reason);
    if (outer?.aborted) onAbort();
    else outer?.addEventListener("abort", onAbort, { once: true });
    const forget = () => {
      outer?.removeEventListener("abort", onAbort);
      if (open.get(id) === controller) open.delete(id);
    };
    let response: Response;
    try {
      response = await limited(url, { ...init, signal: controller.signal }, id);
    } catch (error) {
      forget();
      throw error;
    }
    if (!response.ok || response.body === null) {
      forget();
      return response;
    }
    // Followed until its body ends, however it ends (read to the end, failed, cancelled).
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    void response.body.pipeTo(writable).then(forget, forget);
    return new Response(readable, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

/**
 * `response` with its body held to `max` bytes a message: the whole body of JSON (or any type
 * but SSE), each event of an SSE stream (held back until it is whole, so that none reaches the
 * parser in part). Past it, the body is cancelled, and the reader gets an error, or, for an SSE
 * event of the request `id`'s stream, an error answer to that request and the stream's end; an
 * SSE stream's cancellation is told to `cancelled` (see {@link sseEvents}).
 */
function capped(
  response: Response,
  max: number,
  id: string | number | undefined,
  cancelled: (lastEventId: string | undefined) => void,
): Response {
  if (response.body === null) return response;
  const sse = response.headers.get("content-type")?.toLowerCase().includes("text/event-stream");
  const limit = sse === true ? sseEvents(max, id, cancelled) : wholeBody(max);
  return new Response(response.body.pipeThrough(limit), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** The error of a message past the limit. */
function tooLarge(max: number, what: string): string {
  return `a message of the server exceeded ${max} bytes: ${what} was left unread`;
}

/** A body passed on as it comes, failed once it passes `max` bytes. */
function wholeBody(max: number): TransformStream<Uint8Array, Uint8Array> {
  let bytes = 0;
  return new TransformStream({
    transform(chunk, controller) {
      bytes += chunk.length;
      if (bytes > max) controller.error(new Error(tooLarge(max, "its response body")));
      else controller.enqueue(chunk);
    },
  });
}

const LF = 10;
const CR = 13;

/**
 * An SSE stream passed on an event at a time (an event ends at an empty line: LF, CR or CRLF
 * twice), each at most `max` bytes. Past it, `cancelled` is told the id of the last event
 * passed on (the one a reconnection would resume after), if it had one.
 */
function sseEvents(
  max: number,
  id: string | number | undefined,
  cancelled: (lastEventId: string | undefined) => void,
): TransformStream<Uint8Array, Uint8Array> {
  /** The current event's bytes so far. */
  let held: Uint8Array[] = [];
  let size = 0;
  /** Whether the last byte ended a line (true at the start), and whether it was a CR. */
  let lineStart = true;
  let afterCr = false;
  const fields = new EventFields();
  const encoder = new TextEncoder();
  return new TransformStream({
    transform(chunk, controller) {
      /** Where the part of `chunk` not passed on yet starts, and where the scan is. */
      let from = 0;
      let at = 0;
      let lf = chunk.indexOf(LF);
      let cr = chunk.indexOf(CR);
      while (at < chunk.length) {
        if (lf !== -1 && lf < at) lf = chunk.indexOf(LF, at);
        if (cr !== -1 && cr < at) cr = chunk.indexOf(CR, at);
        const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
        if (end !== at) {
          // Bytes of a line, up to its end or the chunk's.
          fields.line(chunk.subarray(at, end === -1 ? chunk.length : end));
          lineStart = false;
          afterCr = false;
          if (end === -1) break;
        }
        at = end + 1;
        const byte = chunk[end];
        if (afterCr && byte === LF) {
          afterCr = false; // a CRLF's LF
          continue;
        }
        afterCr = byte === CR;
        if (!lineStart) {
          lineStart = true;
          fields.lineEnd();
          continue;
        }
        // An empty line: the event ends here.
        const piece = chunk.subarray(from, at);
        if (size + piece.length > max) break;
        for (const part of held) controller.enqueue(part);
        controller.enqueue(piece);
        held = [];
        size = 0;
        from = at;
        fields.eventEnd();
      }
      const rest = chunk.subarray(from);
      if (size + rest.length <= max) {
        if (rest.length > 0) held.push(rest);
        size += rest.length;
        return;
      }
      held = [];
      cancelled(fields.lastEventId);
      const what = "an SSE event";
      if (id === undefined) {
        controller.error(new Error(tooLarge(max, what)));
        return;
      }
      const answer = { jsonrpc: "2.0", id, error: { code: -32603, message: tooLarge(max, what) } };
      controller.enqueue(encoder.encode(`event: message\ndata: ${JSON.stringify(answer)}\n\n`));
      controller.terminate();
    },
    // The end of the last line (a CRLF's LF), or an event the stream ended in, as before.
    flush(controller) {
      for (const part of held) controller.enqueue(part);
    },
  });
}

/**
 * The fields of an SSE stream's events that tell where a reconnection resumes: as the MCP SDK's
 * parser reads them, an event's `id` counts when the event has `data` (it is dispatched), and
 * the SDK resumes after the last non-empty one.
 */
class EventFields {
  /** The id of the last event passed on that had one. */
  lastEventId: string | undefined;
  /** The current line's first bytes (up to 5, as Latin-1). */
  #head = "";
  /** The current line's bytes, while it may be an `id` field. */
  #id: Uint8Array[] | undefined = [];
  /** The current event's `id` and whether it has `data`. */
  #eventId: string | undefined;
  #hasData = false;
  readonly #decoder = new TextDecoder();

  /** Bytes of the current line (no line end). */
  line(bytes: Uint8Array): void {
    if (this.#head.length < 5) {
      this.#head += String.fromCharCode(...bytes.subarray(0, 5 - this.#head.length));
    }
    if (this.#id === undefined) return;
    if (this.#head.startsWith("id:") || "id:".startsWith(this.#head)) this.#id.push(bytes);
    else this.#id = undefined;
  }

  lineEnd(): void {
    const head = this.#head;
    if (head === "data" || head.startsWith("data:")) this.#hasData = true;
    else if (this.#id !== undefined && (head === "id" || head.startsWith("id:"))) {
      const text = this.#decoder.decode(concat(this.#id));
      const value = text.slice(text.startsWith("id: ") ? 4 : 3);
      if (!value.includes("\0")) this.#eventId = value;
    }
    this.#head = "";
    this.#id = [];
  }

  eventEnd(): void {
    if (this.#hasData && this.#eventId) this.lastEventId = this.#eventId;
    this.#eventId = undefined;
    this.#hasData = false;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

/**
 * Fails a POST that got 404 without carrying a session id: the protocol reads a 404 as an
 * expired session (to be started again) only for a request that carried one (`Mcp-Session-Id`);
 * without one, no MCP endpoint is there (a wrong URL), and the request is not sent again.
 */
async function refuseNotFound(
  url: string | URL,
  init: RequestInit | undefined,
  response: Response,
): Promise<void> {
  if (response.status !== 404 || init?.method !== "POST") return;
  if (new Headers(init.headers).has("mcp-session-id")) return;
  await response.body?.cancel().catch(() => undefined);
  const where = new URL(url);
  // Without its userinfo, query or fragment: they may hold credentials.
  const shown = `${where.origin}${where.pathname}`;
  const status = `HTTP 404${response.statusText === "" ? "" : ` ${response.statusText}`}`;
  throw new Error(
    `${status} from ${shown}: no MCP endpoint there (the request carried no session id, so no session expired)`,
  );
}

/** The JSON-RPC message a POST carries (one, not a batch), or undefined. */
function postedMessage(
  init: RequestInit | undefined,
): { id?: unknown; method?: unknown; params?: unknown } | undefined {
  if (init?.method !== "POST" || typeof init.body !== "string") return undefined;
  let message: unknown;
  try {
    message = JSON.parse(init.body);
  } catch {
    return undefined;
  }
  return typeof message === "object" && message !== null && !Array.isArray(message)
    ? (message as { id?: unknown; method?: unknown; params?: unknown })
    : undefined;
}
