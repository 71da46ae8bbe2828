/**
 * Two gateways on one Redis store (real Redis at 127.0.0.1:6379 unless `BEAMCLAW_REDIS_URL`
 * says otherwise, a key prefix of this test's own): a device token rotated or revoked, or a
 * device unpaired, through gateway A while a handshake of the device runs on gateway B is
 * refused on B as its connection registers. B's in-process record of changes knows nothing
 * of A's, so B reads the device's record and token from the store there. Races forced by
 * wrapping B's store (no sleeps); every frame is checked against the protocol schema.
 *
 * The device's connections already open on B are closed too, as A closes its own: at once
 * when the gateways run on cluster nodes (A's notice on the cluster pub/sub), else by B's
 * periodic re-check against the store (`deviceRecheckMs`).
 */
import { randomUUID } from "node:crypto";
import { AgentRuntime, ClusterNode, createProviderChain } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { createRedisBackplane, createRedisStore } from "@beamclaw/store-redis";
import { describe, expect, it } from "vitest";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import { DEVICE_CHANGES_TOPIC } from "../src/auth/device-watch.js";
import { hashToken } from "../src/auth/shared-secret.js";
import { createGateway, type GatewayServer } from "../src/index.js";
import {
  connectOutcome,
  holdOnce,
  holdTokenLookup,
  pairedDevice,
  refusalOf,
  SCOPES,
} from "./pairing-race-support.js";
import {
  closeWithin,
  type Gateway,
  REDIS_URL,
  useRedisGateways,
} from "./redis-gateways-support.js";
import { closeClients, MAIN, TestClient, TOKEN, useSchemaCheck, waitFor } from "./support.js";

useSchemaCheck();

const { started, prefixes } = useRedisGateways();

interface GatewaySetup {
  /** Runs the gateway on a `ClusterNode` of the store's cluster (its pub/sub the cluster's). */
  cluster?: boolean;
  deviceRecheckMs?: number | false;
}

/**
 * A gateway (with its own runtime and store connection) on the Redis keys under `prefix`: on
 * a plain runtime, or on a cluster node's.
 */
async function startGateway(prefix: string, setup: GatewaySetup = {}): Promise<Gateway> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  const provider = createScriptedProvider({ id: "scripted", responses: [] });
  const models = createProviderChain({
    providers: [provider],
    retry: { maxAttempts: 1 },
    circuitBreaker: false,
  });
  const node =
    setup.cluster === true
      ? new ClusterNode({
          backplane: createRedisBackplane({ url: REDIS_URL, prefix }),
          runtime: { store, models, agents: [MAIN] },
        })
      : undefined;
  const runtime = node?.runtime ?? new AgentRuntime({ store, models, agents: [MAIN] });
  await (node ?? runtime).start();
  const gateway: GatewayServer = createGateway({
    runtime,
    models,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
    ...(setup.deviceRecheckMs === undefined ? {} : { deviceRecheckMs: setup.deviceRecheckMs }),
  });
  const { port } = await gateway.start();
  // Other nodes' notices reach this one from here on.
  await node?.backplane.pubsub.whenSubscribed(DEVICE_CHANGES_TOPIC);
  const handle: Gateway = {
    store,
    url: `ws://127.0.0.1:${port}`,
    async stop() {
      await gateway.stop();
      await (node ?? runtime).stop();
      await store.close();
    },
  };
  started.push(handle);
  return handle;
}

/** Two gateways on one store. */
async function twoGateways(setup: GatewaySetup = {}): Promise<[Gateway, Gateway]> {
  const prefix = `beamclaw-test:gw-pairing-${randomUUID().slice(0, 12)}:`;
  prefixes.push(prefix);
  return [await startGateway(prefix, setup), await startGateway(prefix, setup)];
}

/** Whether `client` still answers. */
async function answers(client: TestClient): Promise<boolean> {
  return (await client.request("health")).ok === true;
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

const CHANGES = [
  { method: "device.token.rotate", reason: "device token rotated", closesSecret: false },
  { method: "device.token.revoke", reason: "device token revoked", closesSecret: false },
  { method: "device.pair.remove", reason: "device unpaired", closesSecret: true },
] as const;

/**
 * On B: a connection of a device paired through A that came in with the shared secret (its
 * token issued then), one that came in with that token, another device's token connection and
 * an admin's. `change` on A, through A's admin, is then expected to close, on B, what it
 * closes on a single gateway, with the same code and reason, within `withinMs`.
 */
async function changeOnAClosesOnB(
  a: Gateway,
  b: Gateway,
  { method, reason, closesSecret }: (typeof CHANGES)[number],
  withinMs: number,
) {
  const device = createDeviceIdentity();
  const bySecret = await TestClient.connect(b.url, { token: TOKEN, device, scopes: SCOPES });
  const token = bySecret.hello.auth.deviceToken as string;
  const byToken = await TestClient.connect(b.url, { deviceToken: token, device, scopes: SCOPES });
  const other = await pairedDevice(a.url);
  const otherByToken = await TestClient.connect(b.url, {
    deviceToken: other.token,
    device: other.device,
    scopes: SCOPES,
  });
  const adminOnB = await TestClient.connect(b.url, { token: TOKEN });
  const admin = await TestClient.connect(a.url, { token: TOKEN });
  const params =
    method === "device.pair.remove"
      ? { deviceId: device.deviceId }
      : { deviceId: device.deviceId, role: "operator" };
  await admin.request(method, params);
  expect(await closeWithin(byToken, withinMs)).toEqual({ code: 1008, reason });
  if (closesSecret) expect(await closeWithin(bySecret, withinMs)).toEqual({ code: 1008, reason });
  else expect(await answers(bySecret)).toBe(true);
  expect(await answers(otherByToken)).toBe(true);
  expect(await answers(adminOnB)).toBe(true);
}

describe("two gateways on one Redis store: connections already open", () => {
  for (const change of CHANGES) {
    it(`closes on B, at A's notice on the cluster pub/sub, what ${change.method} on A closes`, async () => {
      // No periodic re-check: only the notice can close them.
      const [a, b] = await twoGateways({ cluster: true, deviceRecheckMs: false });
      await changeOnAClosesOnB(a, b, change, 5_000);
    });

    it(`closes on B, by its periodic re-check without a shared pub/sub, what ${change.method} on A closes`, async () => {
      const [a, b] = await twoGateways({ deviceRecheckMs: 100 });
      await changeOnAClosesOnB(a, b, change, 5_000);
    });
  }

  it("closes on B, at A's notice, a node's connections node.pair.remove on A unpaired (node unpaired)", async () => {
    const [a, b] = await twoGateways({ cluster: true, deviceRecheckMs: false });
    const { device, token } = await pairedDevice(a.url, "node");
    const node = await TestClient.connect(b.url, {
      deviceToken: token,
      device,
      role: "node",
      scopes: [],
      clientId: "node-host",
      mode: "node",
    });
    const admin = await TestClient.connect(a.url, { token: TOKEN });
    await admin.request("node.pair.remove", { nodeId: device.deviceId });
    expect(await closeWithin(node, 5_000)).toEqual({ code: 1008, reason: "node unpaired" });
  });

  it("keeps open on B a connection whose device token a handshake on A superseded (as one gateway does)", async () => {
    const [a, b] = await twoGateways({ deviceRecheckMs: 50 });
    const { device, token } = await pairedDevice(a.url);
    const byToken = await TestClient.connect(b.url, { deviceToken: token, device, scopes: SCOPES });
    // A shared-secret handshake of the device issues it a new token: the old one is dead.
    await TestClient.connect(a.url, { token: TOKEN, device, scopes: SCOPES });
    expect(await a.store.devices.getToken(hashToken(token))).toBeUndefined();
    expect(await closeWithin(byToken, 500)).toBe("open");
    expect(await answers(byToken)).toBe(true);
  });

  it("re-checks while it runs and leaves no timer or store read behind after stop", async () => {
    const [a, b] = await twoGateways({ deviceRecheckMs: 20 });
    const { device, token } = await pairedDevice(a.url);
    await TestClient.connect(b.url, { deviceToken: token, device, scopes: SCOPES });
    let reads = 0;
    const devices = b.store.devices;
    const realGet = devices.get.bind(devices);
    devices.get = (deviceId: string) => {
      reads++;
      return realGet(deviceId);
    };
    await waitFor("a re-check on B", () => reads >= 2);
    await closeClients();
    await b.stop();
    started.splice(started.indexOf(b), 1);
    reads = 0;
    await new Promise<void>((resolve) => setTimeout(resolve, 200));
    expect(reads).toBe(0);
  });
});
