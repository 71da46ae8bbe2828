/**
 * The gateway's HTTP(S) server, as the standalone gateway and the tenant front server both
 * run it: open sockets tracked (so that a stop can close them), a malformed request answered
 * 400, upgrades handed on; and listening on a host and port.
 * @internal
 */
import { createServer as createHttpServer, type RequestListener, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

/** Creates the server; `sockets` holds its open sockets until they close. */
export function createGatewayHttpServer(
  tls: { cert: string | Buffer; key: string | Buffer } | undefined,
  listener: RequestListener,
  sockets: Set<Socket>,
  onUpgrade: (req: Parameters<RequestListener>[0], socket: Duplex, head: Buffer) => void,
): Server {
  const server =
    tls === undefined
      ? createHttpServer(listener)
      : createHttpsServer({ cert: tls.cert, key: tls.key }, listener);
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("clientError", (_error, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    else socket.destroy();
  });
  server.on("upgrade", onUpgrade);
  return server;
}

/**
 * Answers an upgrade the gateway will not take (`status` like `"403 Forbidden"`) and closes the
 * socket. Node leaves an upgrade's socket with no `error` listener: one is added first, so that
 * a client that resets the connection meanwhile (ECONNRESET, EPIPE) is only disconnected and
 * does not end the process with an uncaught `error` event.
 */
export function refuseUpgrade(socket: Duplex, status: string): void {
  socket.on("error", () => socket.destroy());
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
}

/** Listens on `host`:`port`; resolves with the port bound (port 0 picks one). */
export async function listenOn(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address();
  return typeof bound === "object" && bound !== null ? bound.port : port;
}
