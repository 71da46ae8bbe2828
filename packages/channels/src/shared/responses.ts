/**
 * HTTP answers handed to a vendor's client library that reads only their status and headers
 * (a 429's `Retry-After`, a 5xx it retries): their body, never read nor cancelled, would keep
 * its connection out of undici's pool, and its bytes in memory, until the response is
 * garbage-collected. Shared by the Slack and Discord channels.
 */

/** A response body: a web stream (`fetch`), or a Node stream (a custom `makeRequest`). */
type Body = { cancel(): Promise<void> } | { destroy(): unknown } | null;

/**
 * The same answer (status, status text, headers) without a body; the body of `response` is
 * cancelled, which frees its connection at once. Not awaited: a cancel may linger.
 */
export function withoutBody(response: {
  status: number;
  statusText: string;
  headers: Headers;
  body: Body;
}): Response {
  const body = response.body;
  if (body !== null && "cancel" in body) void body.cancel().catch(() => undefined);
  else if (body !== null && "destroy" in body) body.destroy();
  return new Response(null, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}
