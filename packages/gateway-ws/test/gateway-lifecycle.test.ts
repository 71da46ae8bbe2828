/**
 * `GatewayServer`'s lifecycle under overlap: a `stop()` while `start()` is under way, and
 * `stop()` called again while one is in progress.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createGateway } from "../src/index.js";
import {
  canListen,
  closeClients,
  freePort,
  startIdleRuntime,
  TestClient,
  TOKEN,
} from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeClients();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function gatewayOnFreePort() {
  const port = await freePort();
  const gateway = createGateway({
    runtime: await startIdleRuntime(cleanups),
    host: "127.0.0.1",
    port,
    auth: { mode: "token", token: TOKEN },
    dashboardDir: false,
    tickIntervalMs: 60_000,
  });
  cleanups.push(() => gateway.stop());
  return { gateway, port };
}

describe("stop() while start() is under way", () => {
  it("ends stopped with the port released, however start() settles", async () => {
    const { gateway, port } = await gatewayOnFreePort();
    const starting = gateway.start().then(
      () => "started",
      () => "refused",
    );
    await gateway.stop();
    await starting;
    expect(gateway.phase).toBe("stopped");
    expect(await canListen(port)).toBe(true);
  });
});

describe("stop() called again while stopping", () => {
  it("resolves only once the gateway has stopped and its port is released", async () => {
    const { gateway, port } = await gatewayOnFreePort();
    await gateway.start();
    // A connected client: the first stop() waits for its close handshake.
    await TestClient.connect(`ws://127.0.0.1:${port}`, { token: TOKEN });
    const first = gateway.stop();
    await gateway.stop();
    expect(gateway.phase).toBe("stopped");
    expect(await canListen(port)).toBe(true);
    await first;
  });
});
