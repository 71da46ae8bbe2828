/**
 * How a channel's `stop()` waits for its inbound work: messages already handed to the host
 * finish (so that they are acknowledged to the platform, and not delivered again after a
 * restart), but a host that never answers cannot hold the stop for ever.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { settlesWithin } from "@beamclaw/core";

// The bounded wait itself is core's; re-exported for the plugins' stop().
export { settlesWithin };

/**
 * How long a channel's `stop()` waits for messages being handed to the host. Well inside the
 * host's own `reconnect.stopTimeoutMs` (10 s by default), so the channel still closes its
 * connection (and confirms what the host took) before the host moves on.
 */
export const STOP_DRAIN_MS = 5_000;

/**
 * Makes the stop of an HTTP endpoint graceful. The function it returns stops listening and
 * closes idle connections, gives the requests under way up to {@link STOP_DRAIN_MS} to be
 * answered (a platform event the host is taking gets its 2xx rather than a dropped
 * connection, and is not delivered again), then closes every connection left; it resolves
 * once the server closed, with how many requests were still unanswered (the platform
 * delivers those again). Call it before the server takes requests.
 *
 * @example
 * ```ts
 * const server = http.createServer(handler);
 * const close = closesGracefully(server);
 * // ... on stop:
 * const dropped = await close();
 * ```
 */
export function closesGracefully(server: Server): () => Promise<number> {
  /** One per request not answered yet: settles once its answer went out or its socket closed. */
  const answering = new Set<Promise<void>>();
  // Before the handler, so that no answer can go out unseen.
  server.prependListener("request", (_req: IncomingMessage, res: ServerResponse) => {
    const answered = new Promise<void>((resolve) => {
      res.once("finish", resolve);
      res.once("close", resolve);
    });
    answering.add(answered);
    void answered.then(() => answering.delete(answered));
  });
  return async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const dropped = (await settlesWithin(answering, STOP_DRAIN_MS)) ? 0 : answering.size;
    server.closeAllConnections();
    await closed;
    return dropped;
  };
}
