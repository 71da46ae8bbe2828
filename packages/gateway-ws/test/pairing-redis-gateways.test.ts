/**
 * Two gateways on one Redis store (real Redis at 127.0.0.1:6379 unless `BEAMCLAW_REDIS_URL`
 * says otherwise, a key prefix of this test's own): a device token rotated or revoked, or a
 * device unpaired, through gateway A while a handshake of the device runs on gateway B is
 * refused on B as its connection registers. B's in-process record of changes knows nothing
 * of A's, so B reads the device's record and token from the store there. Races forced by
 * wrapping B's store (no sleeps); every frame is checked against the protocol schema.
 */
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { AgentRuntime, createProviderChain } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { createRedisStore, type RedisStore } from "@beamclaw/store-redis";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, type GatewayServer } from "../src/index.js";
import {
  connectOutcome,
  holdOnce,
  holdTokenLookup,
  pairedDevice,
  refusalOf,
  SCOPES,
} from "./pairing-race-support.js";
import { closeClients, MAIN, TestClient, TOKEN, useSchemaCheck } from "./support.js";

const REDIS_URL = process.env.BEAMCLAW_REDIS_URL ?? "redis://127.0.0.1:6379";
// ioredis is store-redis' dependency, not this package's: resolved from there.
const requireFromStore = createRequire(
  fileURLToPath(new URL("../node_modules/@beamclaw/store-redis/package.json", import.meta.url)),
);
/** What the clean-up uses of an ioredis client. */
interface RedisKeys {
  scan(cursor: string, ...args: Array<string | number>): Promise<[string, string[]]>;
  del(...keys: string[]): Promise<number>;
  quit(): Promise<unknown>;
}
const { Redis: RedisClient } = requireFromStore("ioredis") as {
  Redis: new (url: string) => RedisKeys;
};

useSchemaCheck();

interface Gateway {
  store: RedisStore;
  url: string;
  stop(): Promise<void>;
}

const started: Gateway[] = [];
const prefixes: string[] = [];

afterEach(async () => {
  await closeClients();
  for (const gateway of started.splice(0).reverse()) await gateway.stop();
  const client = new RedisClient(REDIS_URL);
  try {
    for (const prefix of prefixes.splice(0)) {
      let cursor = "0";
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await client.del(...keys);
      } while (cursor !== "0");
    }
  } finally {
    await client.quit();
  }
});

/** A gateway (with its own runtime and store connection) on the Redis keys under `prefix`. */
async function startGateway(prefix: string): Promise<Gateway> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  const provider = createScriptedProvider({ id: "scripted", responses: [] });
  const models = createProviderChain({
    providers: [provider],
    retry: { maxAttempts: 1 },
    circuitBreaker: false,
  });
  const runtime = new AgentRuntime({ store, models, agents: [MAIN] });
  await runtime.start();
  const gateway: GatewayServer = createGateway({
    runtime,
    models,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
  });
  const { port } = await gateway.start();
  const handle: Gateway = {
    store,
    url: `ws://127.0.0.1:${port}`,
    async stop() {
      await gateway.stop();
      await runtime.stop();
      await store.close();
    },
  };
  started.push(handle);
  return handle;
}

/** Two gateways on one store. */
async function twoGateways(): Promise<[Gateway, Gateway]> {
  const prefix = `beamclaw-test:gw-pairing-${randomUUID().slice(0, 12)}:`;
  prefixes.push(prefix);
  return [await startGateway(prefix), await startGateway(prefix)];
}

/**
 * Holds `gateway`'s next handshake after its pairing work (it has written the device's
 * record), just before the store is read again as its connection registers.
 */
function holdAfterDeviceWrite(gateway: Gateway, deviceId: string) {
  const devices = gateway.store.devices;
  const realPut = devices.put.bind(devices);
  const h = holdOnce();
  devices.put = async (device) => {
    await realPut(device);
    await h.pass(device.deviceId === deviceId);
  };
  return h;
}

describe("two gateways on one Redis store", () => {
  for (const { method, reason, code, detail } of [
    {
      method: "device.token.rotate",
      reason: "device token rotated",
      code: "INVALID_REQUEST",
      detail: "AUTH_DEVICE_TOKEN_MISMATCH",
    },
    {
      method: "device.token.revoke",
      reason: "device token revoked",
      code: "INVALID_REQUEST",
      detail: "AUTH_DEVICE_TOKEN_MISMATCH",
    },
    {
      method: "device.pair.remove",
      reason: "device unpaired",
      code: "NOT_PAIRED",
      detail: "DEVICE_UNPAIRED",
    },
  ] as const) {
    it(`refuses on B a handshake that verified the device token before ${method} on A`, async () => {
      const [a, b] = await twoGateways();
      const { device, token } = await pairedDevice(a.url);
      const admin = await TestClient.connect(a.url, { token: TOKEN });
      const held = holdTokenLookup(b.store.devices, token);
      const late = await TestClient.open(b.url);
      const connecting = connectOutcome(late, { deviceToken: token, device, scopes: SCOPES });
      await held.reached;
      const params =
        method === "device.pair.remove"
          ? { deviceId: device.deviceId }
          : { deviceId: device.deviceId, role: "operator" };
      await admin.request(method, params);
      held.release();
      expect(refusalOf(await connecting)).toEqual({ code, detail, close: { code: 1008, reason } });
      // B serves on, and the device was not paired again through B.
      const list = await (await TestClient.connect(b.url, { token: TOKEN })).request(
        "device.pair.list",
      );
      const paired = (list.paired as Array<{ deviceId: string }>).some(
        (d) => d.deviceId === device.deviceId,
      );
      expect(paired).toBe(method !== "device.pair.remove");
    });
  }

  it("refuses on B a shared-secret handshake of a device device.pair.remove on A unpaired as it registered", async () => {
    const [a, b] = await twoGateways();
    const { device } = await pairedDevice(a.url);
    const admin = await TestClient.connect(a.url, { token: TOKEN });
    const held = holdAfterDeviceWrite(b, device.deviceId);
    const late = await TestClient.open(b.url);
    const connecting = connectOutcome(late, { token: TOKEN, device, scopes: SCOPES });
    await held.reached;
    expect(await admin.request("device.pair.remove", { deviceId: device.deviceId })).toMatchObject({
      removed: true,
    });
    held.release();
    expect(refusalOf(await connecting)).toEqual({
      code: "NOT_PAIRED",
      detail: "DEVICE_UNPAIRED",
      close: { code: 1008, reason: "device unpaired" },
    });
    // The token B issued the refused connection is not left behind for the unpaired device.
    expect(await a.store.devices.listTokens(device.deviceId)).toEqual([]);
  });

  it("opens on B a device-token connection whose token A left alone", async () => {
    const [a, b] = await twoGateways();
    const { device, token } = await pairedDevice(a.url);
    const client = await TestClient.connect(b.url, { deviceToken: token, device, scopes: SCOPES });
    expect(await client.request("health")).toMatchObject({ ok: true });
  });
});
