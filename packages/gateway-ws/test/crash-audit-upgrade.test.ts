/**
 * Crash audit: an upgrade the gateway refuses (another origin, an unknown tenant) whose client
 * resets the connection must only drop that connection, never end the process with an
 * uncaught `error` event (vitest reports one as an error of the run).
 */
import { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createTenantGateway } from "../src/tenant-gateway.js";
import { closeClients, startStack, stopStacks, TestClient, TOKEN } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Sends an upgrade request, waits for the refusal's first bytes, then resets the connection
 * (RST): the server's socket then gets ECONNRESET. Resolves with the status line it was sent.
 */
function upgradeThenReset(port: number, path: string, origin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    socket.on("error", () => undefined);
    socket.connect(port, "127.0.0.1", () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          (origin === undefined ? "" : `Origin: ${origin}\r\n`) +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      );
    });
    socket.once("data", (data) => {
      socket.resetAndDestroy();
      resolve(data.toString("latin1").split("\r\n")[0] ?? "");
    });
    socket.once("close", () => reject(new Error("closed before an answer")));
  });
}

/** Resolves once a fresh connection to `port` has been accepted and closed by the client. */
function roundTrip(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.on("error", () => undefined);
    socket.connect(port, "127.0.0.1", () => socket.end());
    socket.once("close", () => resolve());
  });
}

describe("a refused upgrade reset by its client", () => {
  it("from another origin: the gateway answers 403, survives the reset and still serves", async () => {
    const stack = await startStack({ gateway: { allowedOrigins: ["https://ops.example.com"] } });
    for (let i = 0; i < 10; i++) {
      expect(await upgradeThenReset(stack.port, "/", "https://evil.example")).toBe(
        "HTTP/1.1 403 Forbidden",
      );
    }
    // The server has read the resets by the time it accepts and serves new connections.
    for (let i = 0; i < 3; i++) await roundTrip(stack.port);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(client.hello.type).toBe("hello-ok");
  });

  it("to an unknown tenant: the front server answers 404 and survives the reset", async () => {
    const front = createTenantGateway({ host: "127.0.0.1", port: 0 });
    const { port } = await front.start();
    cleanups.push(() => front.stop());
    for (let i = 0; i < 10; i++) {
      expect(await upgradeThenReset(port, "/tenants/nobody")).toBe("HTTP/1.1 404 Not Found");
    }
    for (let i = 0; i < 3; i++) await roundTrip(port);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
  });
});
