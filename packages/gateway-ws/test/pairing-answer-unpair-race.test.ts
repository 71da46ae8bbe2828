/**
 * Races between pairing answers, unpairing and handshakes, forced over real sockets by
 * wrapping the stack's store (no sleeps):
 * - a device asking again while an operator approves or rejects its request: the answer
 *   stands (the request is not written back after it, nor asked again once approved);
 * - a device unpaired (`device.pair.remove`, `node.pair.remove`) while a handshake of it runs:
 *   the handshake is refused with the unpairing's 1008 reason and the device stays unpaired;
 * - a device unpairing itself is answered before its connections are closed.
 * Every frame is checked against the protocol schema.
 */
import type { DeviceRecord, JsonObject, JsonValue } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity, type DeviceIdentity } from "../src/auth/device-identity.js";
import {
  connectOutcome,
  type Hold,
  holdOnce,
  holdTokenLookup,
  pairedDevice,
  refusalOf,
  SCOPES,
} from "./pairing-race-support.js";
import {
  closeClients,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const REQUEST_PREFIX = "gateway:pairing:";

/** Holds the first write of pending request `requestId` (after it was read, before it is written). */
function holdRequestWrite(stack: Stack, requestId: string): Hold {
  const kv = stack.store.kv;
  const realSet = kv.set.bind(kv);
  const h = holdOnce();
  kv.set = async (key: string, value: JsonObject, options?: { ttlMs?: number }) => {
    await h.pass(key === `${REQUEST_PREFIX}${requestId}`);
    return realSet(key, value, options);
  };
  return h;
}

/** Holds the next read of the device's record, returning what was read then. */
function holdDeviceRead(stack: Stack, deviceId: string): Hold {
  const devices = stack.store.devices;
  const realGet = devices.get.bind(devices);
  const h = holdOnce();
  devices.get = async (id: string): Promise<DeviceRecord | undefined> => {
    const record = await realGet(id);
    await h.pass(id === deviceId);
    return record;
  };
  return h;
}

/**
 * Holds the next handshake after its pairing work, just before its connection opens (the
 * gateway reads its health there, counting sessions).
 */
function holdBeforeOpen(stack: Stack): Hold {
  const sessions = stack.store.sessions;
  const realCount = sessions.count.bind(sessions);
  const h = holdOnce();
  sessions.count = async (...args: Parameters<typeof realCount>) => {
    await h.pass(true);
    return realCount(...args);
  };
  return h;
}

/** Calls `then` on the turn after the next read of `key`, once what could run without waiting did. */
function onNextRead(stack: Stack, key: string, then: () => void): void {
  const kv = stack.store.kv;
  const realGet = kv.get.bind(kv);
  let armed = true;
  kv.get = async <T extends JsonValue = JsonValue>(k: string): Promise<T | undefined> => {
    const value = await realGet<T>(k);
    if (armed && k === key) {
      armed = false;
      // The store answers within the event loop's microtasks: by the next turn, whatever the
      // caller could do without waiting on something else is done.
      setImmediate(then);
    }
    return value;
  };
}

/** A stack whose pairing requests wait for an operator, and an admin connection to it. */
async function operatorStack() {
  const stack = await startStack({
    gateway: { auth: { mode: "token", token: TOKEN, autoApproveLoopback: false } },
  });
  const admin = await TestClient.connect(stack.url, { token: TOKEN });
  return { stack, admin };
}

/** A device asks to be paired; resolves with its request id. */
async function askToPair(url: string, device: DeviceIdentity): Promise<string> {
  const client = await TestClient.open(url);
  const outcome = await connectOutcome(client, { token: TOKEN, device, scopes: SCOPES });
  if (outcome.ok) throw new Error("the device was paired at once");
  return (outcome.error.details as { requestId: string }).requestId;
}

async function pairingState(admin: TestClient, deviceId: string) {
  const list = await admin.request("device.pair.list");
  return {
    pending: (list.pending as Array<{ deviceId: string; requestId: string }>)
      .filter((r) => r.deviceId === deviceId)
      .map((r) => r.requestId),
    paired: (list.paired as Array<{ deviceId: string }>).some((d) => d.deviceId === deviceId),
  };
}

describe("a device asking again while its pairing request is answered", () => {
  for (const answer of ["approve", "reject"] as const) {
    it(`does not write the request back after device.pair.${answer}`, async () => {
      const { stack, admin } = await operatorStack();
      const device = createDeviceIdentity();
      const requestId = await askToPair(stack.url, device);
      // The device asks again: its request is read (still pending) and is about to be
      // refreshed when the operator answers it.
      const held = holdRequestWrite(stack, requestId);
      const repeat = await TestClient.open(stack.url);
      const repeating = connectOutcome(repeat, { token: TOKEN, device, scopes: SCOPES });
      await held.reached;
      onNextRead(stack, `${REQUEST_PREFIX}${requestId}`, () => held.release());
      const answered = await admin.request(`device.pair.${answer}`, { requestId });
      expect(answered).toMatchObject({ ok: true, requestId });
      expect(refusalOf(await repeating)).toMatchObject({ detail: "PAIRING_REQUIRED" });
      // The answer stands: nothing waits for an operator any more.
      expect(await pairingState(admin, device.deviceId)).toEqual({
        pending: [],
        paired: answer === "approve",
      });
    });
  }

  it("opens a device whose request was approved after its handshake read it unpaired", async () => {
    const { stack, admin } = await operatorStack();
    const device = createDeviceIdentity();
    const requestId = await askToPair(stack.url, device);
    const held = holdDeviceRead(stack, device.deviceId);
    const repeat = await TestClient.open(stack.url);
    const repeating = connectOutcome(repeat, { token: TOKEN, device, scopes: SCOPES });
    await held.reached;
    await admin.request("device.pair.approve", { requestId });
    held.release();
    // Not asked again for what the operator just granted.
    expect(refusalOf(await repeating)).toEqual({ opened: true });
    expect(await pairingState(admin, device.deviceId)).toEqual({ pending: [], paired: true });
  });
});

describe("a handshake of a device unpaired while it runs", () => {
  it("is refused when device.pair.remove ran as the handshake verified the device token", async () => {
    const stack = await startStack();
    const { device, token } = await pairedDevice(stack.url);
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const held = holdTokenLookup(stack.store.devices, token);
    const late = await TestClient.open(stack.url);
    const connecting = connectOutcome(late, { deviceToken: token, device, scopes: SCOPES });
    await held.reached;
    expect(await admin.request("device.pair.remove", { deviceId: device.deviceId })).toEqual({
      ok: true,
      deviceId: device.deviceId,
      removed: true,
    });
    held.release();
    expect(refusalOf(await connecting)).toEqual({
      code: "NOT_PAIRED",
      detail: "DEVICE_UNPAIRED",
      close: { code: 1008, reason: "device unpaired" },
    });
    // Not paired again behind the operator's back (loopback would approve a new request).
    expect(await pairingState(admin, device.deviceId)).toEqual({ pending: [], paired: false });
  });

  it("is refused, and the device not written back, when removed after the handshake read it", async () => {
    const stack = await startStack();
    const { device } = await pairedDevice(stack.url);
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const held = holdDeviceRead(stack, device.deviceId);
    const late = await TestClient.open(stack.url);
    const connecting = connectOutcome(late, { token: TOKEN, device, scopes: SCOPES });
    await held.reached;
    await admin.request("device.pair.remove", { deviceId: device.deviceId });
    held.release();
    expect(refusalOf(await connecting)).toEqual({
      code: "NOT_PAIRED",
      detail: "DEVICE_UNPAIRED",
      close: { code: 1008, reason: "device unpaired" },
    });
    expect(await pairingState(admin, device.deviceId)).toEqual({ pending: [], paired: false });
  });

  for (const { by, role, method, reason } of [
    {
      by: "shared secret",
      role: "operator",
      method: "device.pair.remove",
      reason: "device unpaired",
    },
    {
      by: "device token",
      role: "operator",
      method: "device.pair.remove",
      reason: "device unpaired",
    },
    { by: "shared secret", role: "node", method: "node.pair.remove", reason: "node unpaired" },
  ] as const) {
    it(`is refused with 1008 "${reason}" when ${method} swept before a ${role} connection by ${by} opened`, async () => {
      const stack = await startStack();
      const { device, token, options } = await pairedDevice(stack.url, role);
      const admin = await TestClient.connect(stack.url, { token: TOKEN });
      const held = holdBeforeOpen(stack);
      const late = await TestClient.open(stack.url);
      const connecting = connectOutcome(
        late,
        by === "device token" ? { ...options, token: undefined, deviceToken: token } : options,
      );
      await held.reached;
      const params =
        method === "node.pair.remove" ? { nodeId: device.deviceId } : { deviceId: device.deviceId };
      expect(await admin.request(method, params)).toMatchObject({ ok: true, removed: true });
      held.release();
      expect(refusalOf(await connecting)).toEqual({
        code: "NOT_PAIRED",
        detail: "DEVICE_UNPAIRED",
        close: { code: 1008, reason },
      });
      const presence = (await admin.request("system-presence")) as Array<{ deviceId?: string }>;
      expect(presence.filter((p) => p.deviceId === device.deviceId)).toEqual([]);
    });
  }

  it("leaves a handshake of the device for another role than the one node.pair.remove took", async () => {
    const stack = await startStack();
    const { device } = await pairedDevice(stack.url);
    // The same device also paired as a node.
    const node = await TestClient.connect(stack.url, {
      token: TOKEN,
      device,
      role: "node",
      scopes: [],
      clientId: "node-host",
      mode: "node",
    });
    await node.close();
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const held = holdBeforeOpen(stack);
    const late = await TestClient.open(stack.url);
    const connecting = connectOutcome(late, { token: TOKEN, device, scopes: SCOPES });
    await held.reached;
    await admin.request("node.pair.remove", { nodeId: device.deviceId });
    held.release();
    const outcome = await connecting;
    expect(refusalOf(outcome)).toEqual({ opened: true });
    expect(await late.request("health")).toMatchObject({ ok: true });
  });
});

describe("device.pair.remove of the caller's own device", () => {
  it("answers the caller, then closes every connection of the device with 1008", async () => {
    const { url } = await startStack();
    const { device, token } = await pairedDevice(url);
    const self = await TestClient.connect(url, { deviceToken: token, device, scopes: SCOPES });
    const other = await TestClient.connect(url, { token: TOKEN, device, scopes: SCOPES });
    const answer = await self.request("device.pair.remove", { deviceId: device.deviceId });
    expect(answer).toEqual({ ok: true, deviceId: device.deviceId, removed: true });
    expect(await self.closed).toEqual({ code: 1008, reason: "device unpaired" });
    expect(await other.closed).toEqual({ code: 1008, reason: "device unpaired" });
  });
});
