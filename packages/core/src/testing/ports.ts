import { createServer } from "node:net";

/**
 * A TCP port nothing listened on a moment ago on `host`, for a test server (a webhook
 * channel, a fake vendor API) to listen on. The port is asked of the OS (port 0) and released
 * at once, so another process may take it in between: listen on it soon.
 *
 * @param host - The address to look on (default `127.0.0.1`).
 * @returns The port number.
 *
 * @example
 * ```ts
 * const port = await freePort();
 * const plugin = createMyWebhookChannel({ listen: { host: "127.0.0.1", port } });
 * ```
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Whether something could listen on `port` at `host` now: `false` while another server holds
 * it. For tests that check a `stop()` released its port, or that a failed `start()` left none
 * held. Listens for a moment and closes again; never throws.
 *
 * @param port - The TCP port.
 * @param host - The address (default `127.0.0.1`).
 */
export async function canListen(port: number, host = "127.0.0.1"): Promise<boolean> {
  const server = createServer();
  const ok = await new Promise<boolean>((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
  if (ok) await new Promise((resolve) => server.close(resolve));
  return ok;
}
