/**
 * The periodic re-check of open device connections (`deviceRecheckMs`) on two gateways A and B
 * over one Redis store, without a shared pub/sub (so A's notices never reach B): B closes what
 * a change made on A closes on a single gateway, with the same 1008 reason, however the store
 * looks by the time B re-checks. B's re-check is held (its store reads wait) while A makes
 * several changes, so that B sees only their end state; no sleeps.
 */
import { randomUUID } from "node:crypto";
import { AgentRuntime, createProviderChain } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { createRedisStore, type RedisStore } from "@beamclaw/store-redis";
import { describe, expect, it } from "vitest";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import { createGateway } from "../src/index.js";
import { pairedDevice, SCOPES } from "./pairing-race-support.js";
import {
  closeWithin,
  type Gateway,
  REDIS_URL,
  useRedisGateways,
} from "./redis-gateways-support.js";
import { deferred, MAIN, TestClient, TOKEN, useSchemaCheck, waitFor } from "./support.js";

useSchemaCheck();

const { started, prefixes } = useRedisGateways();

/** A gateway on its own runtime (its own in-process pub/sub) and store connection. */
async function startGateway(prefix: string): Promise<Gateway> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  const models = createProviderChain({
    providers: [createScriptedProvider({ id: "scripted", responses: [] })],
    retry: { maxAttempts: 1 },
    circuitBreaker: false,
  });
  const runtime = new AgentRuntime({ store, models, agents: [MAIN] });
  await runtime.start();
  const gateway = createGateway({
    runtime,
    models,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
    deviceRecheckMs: 50,
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

/** Two gateways on one store, each with its own pub/sub: only the re-check links them. */
async function twoGateways(): Promise<[Gateway, Gateway]> {
  const prefix = `beamclaw-test:gw-recheck-${randomUUID().slice(0, 12)}:`;
  prefixes.push(prefix);
  return [await startGateway(prefix), await startGateway(prefix)];
}

/**
 * Counts the device and key-value reads of `store` (what the re-check reads) and, while held,
 * makes each wait until `release()`: then it reads the store as it is by then.
 */
function watchReads(store: RedisStore) {
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const counter = { reads: 0 };
  const wrap = <A extends unknown[], R>(call: (...args: A) => Promise<R>) => {
    return async (...args: A): Promise<R> => {
      counter.reads++;
      if (gate !== undefined) await gate;
      return call(...args);
    };
  };
  const devices = store.devices;
  devices.get = wrap(devices.get.bind(devices));
  devices.getToken = wrap(devices.getToken.bind(devices));
  devices.listTokens = wrap(devices.listTokens.bind(devices));
  const kv = store.kv;
  kv.get = wrap(kv.get.bind(kv)) as typeof kv.get;
  return {
    counter,
    hold() {
      const d = deferred();
      gate = d.promise;
      open = d.resolve;
    },
    release() {
      gate = undefined;
      open?.();
    },
  };
}

/** Waits for B to re-check a few more times, then tells whether `clients` all still answer. */
async function stillAnswerAfterRechecks(
  counter: { reads: number },
  clients: readonly TestClient[],
): Promise<boolean[]> {
  const target = counter.reads + 8 * clients.length;
  await waitFor("B's re-checks", () => counter.reads >= target);
  return Promise.all(clients.map(async (c) => (await c.request("health")).ok === true));
}

/**
 * A device paired through A, a connection of it on B with its first token, B's re-check held,
 * and that token rotated on A through an admin's connection.
 */
async function rotatedWhileHeld(a: Gateway, b: Gateway) {
  const reads = watchReads(b.store);
  const { device, token } = await pairedDevice(a.url);
  const byOld = await TestClient.connect(b.url, { deviceToken: token, device, scopes: SCOPES });
  reads.hold();
  const admin = await TestClient.connect(a.url, { token: TOKEN });
  await admin.request("device.token.rotate", { deviceId: device.deviceId, role: "operator" });
  return { reads, device, byOld, admin };
}

describe("re-check of open device connections against the store (no shared pub/sub)", () => {
  it("closes a node-only device's node connections on B with `node unpaired` after node.pair.remove on A", async () => {
    const [a, b] = await twoGateways();
    const { device, token, options } = await pairedDevice(a.url, "node");
    const bySecret = await TestClient.connect(b.url, options);
    const current = bySecret.hello.auth.deviceToken as string;
    expect(current).not.toBe(token);
    const byToken = await TestClient.connect(b.url, {
      ...options,
      token: undefined,
      deviceToken: current,
    });
    const admin = await TestClient.connect(a.url, { token: TOKEN });
    expect(await admin.request("node.pair.remove", { nodeId: device.deviceId })).toMatchObject({
      ok: true,
      removed: true,
    });
    // The device had no other role: it is gone from the store, as after device.pair.remove.
    expect(await a.store.devices.get(device.deviceId)).toBeUndefined();
    expect(await closeWithin(byToken)).toEqual({ code: 1008, reason: "node unpaired" });
    expect(await closeWithin(bySecret)).toEqual({ code: 1008, reason: "node unpaired" });
  });

  it("closes on B the connections of a token rotated on A although a shared-secret handshake issued a newer token since; the others stay", async () => {
    const [a, b] = await twoGateways();
    const { reads, device, byOld } = await rotatedWhileHeld(a, b);
    // The device comes back with the shared secret: a newer token, issued by that handshake.
    const again = await TestClient.connect(a.url, { token: TOKEN, device, scopes: SCOPES });
    expect(again.hello.auth.deviceToken).toEqual(expect.any(String));
    reads.release();
    expect(await closeWithin(byOld)).toEqual({ code: 1008, reason: "device token rotated" });
    // Connections made since, with the shared secret or the device's current token, stay.
    const bySecret = await TestClient.connect(b.url, { token: TOKEN, device, scopes: SCOPES });
    const current = bySecret.hello.auth.deviceToken as string;
    const byCurrent = await TestClient.connect(b.url, {
      deviceToken: current,
      device,
      scopes: SCOPES,
    });
    expect(await stillAnswerAfterRechecks(reads.counter, [again, bySecret, byCurrent])).toEqual([
      true,
      true,
      true,
    ]);
  });

  it("keeps on B a shared-secret connection across a rotation on A, and closes it on an unpairing though the device paired again since", async () => {
    const [a, b] = await twoGateways();
    const reads = watchReads(b.store);
    const { device } = await pairedDevice(a.url);
    const bySecret = await TestClient.connect(b.url, { token: TOKEN, device, scopes: SCOPES });
    const admin = await TestClient.connect(a.url, { token: TOKEN });
    await admin.request("device.token.rotate", { deviceId: device.deviceId, role: "operator" });
    expect(await stillAnswerAfterRechecks(reads.counter, [bySecret])).toEqual([true]);
    reads.hold();
    await admin.request("device.pair.remove", { deviceId: device.deviceId });
    // Paired again at once (loopback), with the same key.
    await TestClient.connect(a.url, { token: TOKEN, device, scopes: SCOPES });
    expect(await a.store.devices.get(device.deviceId)).toMatchObject({
      publicKey: device.publicKey,
    });
    reads.release();
    expect(await closeWithin(bySecret)).toEqual({ code: 1008, reason: "device unpaired" });
  });

  it("closes on B with the reason of the first change that reached the connection (rotated, then revoked on A)", async () => {
    const [a, b] = await twoGateways();
    const { reads, device, byOld, admin } = await rotatedWhileHeld(a, b);
    await admin.request("device.token.revoke", { deviceId: device.deviceId, role: "operator" });
    reads.release();
    expect(await closeWithin(byOld)).toEqual({ code: 1008, reason: "device token rotated" });
  });

  it("closes on B the node connections of a device that keeps its operator role, with `node unpaired`, and leaves its operator connection", async () => {
    const [a, b] = await twoGateways();
    const reads = watchReads(b.store);
    const { device, options } = await pairedDevice(a.url, "node");
    // The same device paired as an operator too (loopback: approved at once).
    const operator = await TestClient.connect(b.url, { token: TOKEN, device, scopes: SCOPES });
    const node = await TestClient.connect(b.url, options);
    const admin = await TestClient.connect(a.url, { token: TOKEN });
    await admin.request("node.pair.remove", { nodeId: device.deviceId });
    expect(await closeWithin(node)).toEqual({ code: 1008, reason: "node unpaired" });
    expect(await stillAnswerAfterRechecks(reads.counter, [operator])).toEqual([true]);
  });

  it("leaves another device's connections alone", async () => {
    const [a, b] = await twoGateways();
    const reads = watchReads(b.store);
    const other = createDeviceIdentity();
    const otherConn = await TestClient.connect(b.url, {
      token: TOKEN,
      device: other,
      scopes: SCOPES,
    });
    const { device, token } = await pairedDevice(a.url);
    const byToken = await TestClient.connect(b.url, { deviceToken: token, device, scopes: SCOPES });
    const admin = await TestClient.connect(a.url, { token: TOKEN });
    await admin.request("device.pair.remove", { deviceId: device.deviceId });
    expect(await closeWithin(byToken)).toEqual({ code: 1008, reason: "device unpaired" });
    expect(await stillAnswerAfterRechecks(reads.counter, [otherConn])).toEqual([true]);
  });
});
