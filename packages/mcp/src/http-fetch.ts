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
 * request fails). Either way the response is cancelled there, nothing held past the limit.
 */
export function closingCancelledFetch(
  base: FetchLike = fetch,
  maxMessageBytes: number = STDIO_DEFAULT_MAX_BUFFER_SIZE,
): FetchLike {
  /** The open responses of requests, by JSON-RPC id. */
  const open = new Map<string | number, AbortController>();
  const limited = async (url: string | URL, init?: RequestInit, id?: string | number) =>
    capped(await base(url, init), maxMessageBytes, id);
  return async (url, init) => {
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
 * event of the request `id`'s stream, an error answer to that request and the stream's end.
 */
function capped(response: Response, max: number, id: string | number | undefined): Response {
  if (response.body === null) return response;
  const sse = response.headers.get("content-type")?.toLowerCase().includes("text/event-stream");
  const limit = sse === true ? sseEvents(max, id) : wholeBody(max);
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
 * twice), each at most `max` bytes.
 */
function sseEvents(
  max: number,
  id: string | number | undefined,
): TransformStream<Uint8Array, Uint8Array> {
  /** The current event's bytes so far. */
  let held: Uint8Array[] = [];
  let size = 0;
  /** Whether the last byte ended a line (true at the start), and whether it was a CR. */
  let lineStart = true;
  let afterCr = false;
  const encoder = new TextEncoder();
  return new TransformStream({
    transform(chunk, controller) {
      let from = 0;
      for (let i = 0; i < chunk.length; i++) {
        const byte = chunk[i];
        if (afterCr && byte === LF) {
          afterCr = false;
          continue;
        }
        afterCr = byte === CR;
        if (byte !== LF && byte !== CR) {
          lineStart = false;
          continue;
        }
        if (!lineStart) {
          lineStart = true;
          continue;
        }
        // An empty line: the event ends here.
        const piece = chunk.subarray(from, i + 1);
        if (size + piece.length > max) break;
        for (const part of held) controller.enqueue(part);
        controller.enqueue(piece);
        held = [];
        size = 0;
        from = i + 1;
      }
      const rest = chunk.subarray(from);
      if (size + rest.length <= max) {
        held.push(rest);
        size += rest.length;
        return;
      }
      held = [];
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
