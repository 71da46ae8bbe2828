/**
 * A `GatewayServer.start()` that fails part-way releases what it opened (the port, the
 * server) and leaves the gateway `stopped`; and the configuration's heartbeat settings reach
 * the gateway's heartbeat.
 */
import { InvalidArgumentError, parseConfig } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway } from "../src/index.js";
import {
  canListen,
  closeClients,
  freePort,
  MAIN,
  startIdleRuntime,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a start that fails part-way", () => {
  it("heartbeat settings the heartbeat refuses: start() rejects, the port is released, the gateway is stopped", async () => {
    const port = await freePort();
    const gateway = createGateway({
      runtime: await startIdleRuntime(cleanups),
      host: "127.0.0.1",
      port,
      auth: { mode: "token", token: TOKEN },
      dashboardDir: false,
      heartbeat: {
        enabled: true,
        everyMs: 60_000,
        activeHours: { start: "09:00", end: "17:00", timezone: "Mars/Olympus" },
      },
    });
    cleanups.push(() => gateway.stop());
    await expect(gateway.start()).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(gateway.phase).toBe("stopped");
    expect(await canListen(port)).toBe(true);
    await gateway.stop();
    expect(gateway.phase).toBe("stopped");
  });

  it("a TLS certificate and key that are not PEM: start() rejects and the gateway is stopped", async () => {
    const gateway = createGateway({
      runtime: await startIdleRuntime(cleanups),
      host: "127.0.0.1",
      port: 0,
      auth: { mode: "token", token: TOKEN },
      dashboardDir: false,
      tls: { cert: "not a certificate", key: "not a key" },
    });
    cleanups.push(() => gateway.stop());
    await expect(gateway.start()).rejects.toThrow(/PEM|certificate|key/i);
    expect(gateway.phase).toBe("stopped");
    expect(gateway.address).toBeUndefined();
  });
});

describe("the configuration's heartbeat", () => {
  it("takes heartbeat.prompt from the configuration", async () => {
    const config = parseConfig(
      {
        agents: [MAIN],
        heartbeat: { prompt: "Check the build queue. Reply HEARTBEAT_OK if idle." },
      },
      { env: {} },
    );
    const stack = await startStack({ gateway: { config } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const health = await client.request("health");
    expect(health.agents[0].heartbeat.prompt).toBe(
      "Check the build queue. Reply HEARTBEAT_OK if idle.",
    );
  });
});
