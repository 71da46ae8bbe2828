/**
 * Races between handshakes and pairing state, forced deterministically over real sockets by
 * wrapping the stack's store (no sleeps):
 * - a handshake that verified a device token just before `device.token.rotate` / `revoke`
 *   finishes after the close sweep: it is refused with the sweep's 1008 reason, not left open
 *   on a dead token;
 * - many devices asking to pair at once: exactly the cap on pending requests is admitted.
 * Every frame is checked against the protocol schema.
 */
import type { DeviceTokenRecord } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity, type DeviceIdentity } from "../src/auth/device-identity.js";
import { hashToken } from "../src/auth/shared-secret.js";
import {
  closeClients,
  deferred,
  RpcError,
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

const SCOPES = ["operator.read", "operator.pairing"];

/**
 * Holds the store's lookup of `token` once: the record is read (the token is live then), and
 * handed back only when `release` is called. `reached` resolves when the read is done.
 */
function holdTokenLookup(stack: Stack, token: string) {
  const devices = stack.store.devices;
  const realGetToken = devices.getToken.bind(devices);
  const reached = deferred();
  const released = deferred();
  const target = hashToken(token);
  let armed = true;
  devices.getToken = async (tokenHash: string): Promise<DeviceTokenRecord | undefined> => {
    const record = await realGetToken(tokenHash);
    if (armed && tokenHash === target) {
      armed = false;
      reached.resolve();
      await released.promise;
    }
    return record;
  };
  return { reached: reached.promise, release: () => released.resolve() };
}

/** A device paired through the shared secret, and its first device token. */
async function pairedDevice(url: string): Promise<{ device: DeviceIdentity; token: string }> {
  const device = createDeviceIdentity();
  const bySecret = await TestClient.connect(url, { token: TOKEN, device, scopes: SCOPES });
  const token = bySecret.hello.auth.deviceToken as string;
  await bySecret.close();
  return { device, token };
}

/** The outcome of a `connect` sent on `client`: its hello, or its error and close. */
async function connectOutcome(
  connecting: Promise<unknown>,
  client: TestClient,
): Promise<{ ok: true } | { ok: false; error: RpcError; close: { code: number; reason: string } }> {
  try {
    await connecting;
    return { ok: true };
  } catch (error) {
    if (!(error instanceof RpcError)) throw error;
    return { ok: false, error, close: await client.closed };
  }
}

describe("a handshake verifying a device token while it is rotated or revoked", () => {
  for (const { method, reason } of [
    { method: "device.token.rotate", reason: "device token rotated" },
    { method: "device.token.revoke", reason: "device token revoked" },
  ] as const) {
    it(`is refused with 1008 "${reason}" when ${method} swept before it opened`, async () => {
      const stack = await startStack();
      const { device, token } = await pairedDevice(stack.url);
      const admin = await TestClient.connect(stack.url, { token: TOKEN });
      const held = holdTokenLookup(stack, token);
      const late = await TestClient.open(stack.url);
      const connecting = late.sendConnect({ deviceToken: token, device, scopes: SCOPES });
      // The handshake found the token live; now it is rotated (or revoked) and the sweep runs
      // while the handshake is still on its way to opening.
      await held.reached;
      const answer = await admin.request(method, { deviceId: device.deviceId, role: "operator" });
      if (method === "device.token.revoke") expect(answer).toMatchObject({ revoked: 1 });
      held.release();
      const outcome = await connectOutcome(connecting, late);
      expect(outcome).toMatchObject({
        ok: false,
        error: { code: "INVALID_REQUEST", details: { code: "AUTH_DEVICE_TOKEN_MISMATCH" } },
        close: { code: 1008, reason },
      });
      // Nothing of the refused connection is left: the device shows no presence.
      const presence = (await admin.request("system-presence")) as Array<{ deviceId?: string }>;
      expect(presence.filter((p) => p.deviceId === device.deviceId)).toEqual([]);
      // The gateway still serves the admin, and the old token is dead for new connects too.
      const again = await TestClient.open(stack.url);
      const retry = await connectOutcome(
        again.sendConnect({ deviceToken: token, device, scopes: SCOPES }),
        again,
      );
      expect(retry).toMatchObject({ ok: false, close: { code: 1008 } });
    });
  }

  it("opens a device-token connection whose token changed for another role only", async () => {
    const stack = await startStack();
    const { device, token } = await pairedDevice(stack.url);
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
    const held = holdTokenLookup(stack, token);
    const client = await TestClient.open(stack.url);
    const connecting = client.sendConnect({ deviceToken: token, device, scopes: SCOPES });
    await held.reached;
    await admin.request("device.token.rotate", { deviceId: device.deviceId, role: "node" });
    held.release();
    expect(await connectOutcome(connecting, client)).toEqual({ ok: true });
    expect(await client.request("health")).toMatchObject({ ok: true });
  });
});

/**
 * Devices asking to pair all at once: every handshake reads the device first (in parallel,
 * before it asks for pairing); the store holds each read of the pending requests until all
 * of the devices were read, so that every request is in flight before any is recorded.
 */
async function pairAllAtOnce(
  stack: Stack,
  devices: readonly DeviceIdentity[],
  localAddressOf: (index: number) => string,
) {
  const ids = new Set(devices.map((d) => d.deviceId));
  const allRead = deferred();
  const realGet = stack.store.devices.get.bind(stack.store.devices);
  stack.store.devices.get = async (deviceId: string) => {
    const record = await realGet(deviceId);
    if (ids.delete(deviceId) && ids.size === 0) allRead.resolve();
    return record;
  };
  const kv = stack.store.kv;
  const realKeys = kv.keys.bind(kv);
  kv.keys = async (prefix: string) => {
    if (prefix === "gateway:pairing:") await allRead.promise;
    return realKeys(prefix);
  };
  const clients = await Promise.all(
    devices.map((_, i) => TestClient.open(stack.url, { localAddress: localAddressOf(i) })),
  );
  const outcomes = await Promise.all(
    clients.map((client, i) =>
      connectOutcome(
        client.sendConnect({ token: TOKEN, device: devices[i]!, scopes: ["operator.read"] }),
        client,
      ),
    ),
  );
  const codes = outcomes.map((o) => (o.ok ? "opened" : (o.error.details as { code: string }).code));
  return {
    required: codes.filter((c) => c === "PAIRING_REQUIRED").length,
    full: codes.filter((c) => c === "PAIRING_REQUESTS_FULL").length,
    other: codes.filter((c) => c !== "PAIRING_REQUIRED" && c !== "PAIRING_REQUESTS_FULL"),
  };
}

/** A stack whose pairing requests wait for an operator, within `pairingRequests`. */
const startCapped = (pairingRequests: { maxPending: number; maxPendingPerAddress: number }) =>
  startStack({
    gateway: { auth: { mode: "token", token: TOKEN, autoApproveLoopback: false, pairingRequests } },
  });

async function pendingCount(url: string): Promise<number> {
  const admin = await TestClient.connect(url, { token: TOKEN });
  const list = await admin.request("device.pair.list");
  await admin.close();
  return (list.pending as unknown[]).length;
}

describe("pending pairing request caps under concurrent connects", () => {
  it("admits exactly maxPending of many devices asking at once", async () => {
    const stack = await startCapped({ maxPending: 3, maxPendingPerAddress: 100 });
    const devices = Array.from({ length: 12 }, () => createDeviceIdentity());
    const result = await pairAllAtOnce(stack, devices, (i) => `127.0.0.${i + 2}`);
    expect(result).toEqual({ required: 3, full: 9, other: [] });
    expect(await pendingCount(stack.url)).toBe(3);
  });

  it("admits exactly maxPendingPerAddress of many devices asking at once from one address", async () => {
    const stack = await startCapped({ maxPending: 100, maxPendingPerAddress: 4 });
    const devices = Array.from({ length: 12 }, () => createDeviceIdentity());
    const result = await pairAllAtOnce(stack, devices, () => "127.0.0.2");
    expect(result).toEqual({ required: 4, full: 8, other: [] });
    expect(await pendingCount(stack.url)).toBe(4);
  });
});
