/**
 * The `fetch` of {@link McpToolServer}'s Streamable HTTP transport: the global `fetch`, except
 * that the response of a request the client has cancelled is closed once the server has the
 * cancellation. The protocol has the server send no answer to a cancelled request, so that
 * POST's response (an SSE stream, usually) would stay open, holding a connection on both sides,
 * until the session ends: one more for every call that timed out or was aborted.
 */
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";

/**
 * A `fetch` that follows the POSTs carrying a JSON-RPC request (by id) while their responses
 * are open, and, after it has sent `notifications/cancelled` for one of them, closes that one's
 * response. The closing is no cancellation by itself (the spec says a server must not take a
 * dropped connection for one): the notification, sent first, is.
 */
export function closingCancelledFetch(base: FetchLike = fetch): FetchLike {
  /** The open responses of requests, by JSON-RPC id. */
  const open = new Map<string | number, AbortController>();
  return async (url, init) => {
    const message = postedMessage(init);
    if (message === undefined) return base(url, init);
    if (message.method === "notifications/cancelled") {
      const response = await base(url, init);
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
      return base(url, init);
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
      response = await base(url, { ...init, signal: controller.signal });
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
