/**
 * Audit of device pairing over real sockets: an approver cannot hand out scopes it lacks, a
 * pending request cannot grow under the id operators were shown, and a non-admin cannot probe
 * or relabel devices that are not its own.
 */

import { MemoryStore } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity, signDeviceChallenge } from "../src/auth/device-identity.js";
import { authenticateConnect } from "../src/auth/handshake.js";
import { DevicePairing } from "../src/auth/pairing.js";
import {
  closeClients,
  rpcError,
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

const MANUAL = { auth: { mode: "token" as const, token: TOKEN, autoApproveLoopback: false } };

type Device = ReturnType<typeof createDeviceIdentity>;

/** Connects `device` asking for `scopes`; returns the pairing request id it was refused with. */
async function askPairing(
  url: string,
  device: Device,
  scopes: string[],
  extra: { role?: string; commands?: string[] } = {},
): Promise<string> {
  const client = await TestClient.open(url);
  const refused = await rpcError(client.sendConnect({ token: TOKEN, device, scopes, ...extra }));
  expect(refused.details).toMatchObject({ code: "PAIRING_REQUIRED" });
  await client.closed;
  return (refused.details as { requestId: string }).requestId;
}

/** Connects `device` with the gateway token and expects exactly `scopes` granted. */
async function expectAdmitted(url: string, device: Device, scopes: string[]): Promise<void> {
  const admitted = await TestClient.connect(url, { token: TOKEN, device, scopes });
  expect(admitted.hello.auth.scopes).toEqual(scopes);
}

describe("pairing approval bounds", () => {
  it("an operator holding only operator.pairing may not approve a device asking for operator.admin", async () => {
    const stack = await startStack({ gateway: MANUAL });
    const pairer = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.pairing"],
    });
    const device = createDeviceIdentity();
    const requestId = await askPairing(stack.url, device, ["operator.admin"]);
    const error = await rpcError(pairer.request("device.pair.approve", { requestId }));
    expect(error.code).toBe("FORBIDDEN");
    expect(error.details).toMatchObject({ code: "MISSING_SCOPE", missingScope: "operator.admin" });
    // Nothing changed: the device is not paired and the request still waits.
    expect(await stack.store.devices.get(device.deviceId)).toBeUndefined();
    const listed = await pairer.request("device.pair.list");
    expect(listed.pending.map((r: { requestId: string }) => r.requestId)).toEqual([requestId]);
    const stillRefused = await TestClient.open(stack.url);
    expect(
      (
        await rpcError(
          stillRefused.sendConnect({ token: TOKEN, device, scopes: ["operator.admin"] }),
        )
      ).details,
    ).toMatchObject({ code: "PAIRING_REQUIRED", requestId });

    // An admin may approve it.
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    await admin.request("device.pair.approve", { requestId });
    await expectAdmitted(stack.url, device, ["operator.admin"]);
  });

  it("an approver may grant the scopes it holds (write covers read)", async () => {
    const stack = await startStack({ gateway: MANUAL });
    const pairer = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.pairing", "operator.write"],
    });
    const device = createDeviceIdentity();
    const requestId = await askPairing(stack.url, device, ["operator.read"]);
    await pairer.request("device.pair.approve", { requestId });
    await expectAdmitted(stack.url, device, ["operator.read"]);
  });
});

describe("pending pairing requests", () => {
  it("asking again for more scopes makes a new, announced request; the old id no longer approves anything", async () => {
    const stack = await startStack({ gateway: MANUAL });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const device = createDeviceIdentity();
    const first = await askPairing(stack.url, device, ["operator.read"]);
    await admin.waitEvent("device.pair.requested", (p) => p.requestId === first);

    const second = await askPairing(stack.url, device, ["operator.admin"]);
    expect(second).not.toBe(first);
    const announced = await admin.waitEvent("device.pair.requested", (p) => p.requestId === second);
    expect(announced.payload.scopes).toEqual(["operator.admin"]);

    // The operator approves what it was shown first: that request is gone, nothing is granted.
    const error = await rpcError(admin.request("device.pair.approve", { requestId: first }));
    expect(error.details).toMatchObject({ code: "PAIRING_REQUEST_NOT_FOUND" });
    expect(await stack.store.devices.get(device.deviceId)).toBeUndefined();
    const listed = await admin.request("device.pair.list");
    expect(listed.pending).toEqual([
      expect.objectContaining({ requestId: second, scopes: ["operator.admin"] }),
    ]);
  });

  it("asking again for no more keeps the request, its id and its scopes", async () => {
    const stack = await startStack({ gateway: MANUAL });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const device = createDeviceIdentity();
    const first = await askPairing(stack.url, device, ["operator.read", "operator.write"]);
    const again = await askPairing(stack.url, device, ["operator.read"]);
    expect(again).toBe(first);
    const listed = await admin.request("device.pair.list");
    expect(listed.pending).toEqual([
      expect.objectContaining({ requestId: first, scopes: ["operator.read", "operator.write"] }),
    ]);
    expect(
      admin.events.filter((e) => e.event === "device.pair.requested").map((e) => e.payload),
    ).toEqual([expect.objectContaining({ requestId: first })]);
  });

  it("a node declaring more commands while it waits makes a new request", async () => {
    const stack = await startStack({ gateway: MANUAL });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const device = createDeviceIdentity();
    const first = await askPairing(stack.url, device, [], {
      role: "node",
      commands: ["canvas.snapshot"],
    });
    const second = await askPairing(stack.url, device, [], {
      role: "node",
      commands: ["canvas.snapshot", "system.run"],
    });
    expect(second).not.toBe(first);
    await admin.waitEvent("node.pair.requested", (p) => p.requestId === second);
    const listed = await admin.request("node.pair.list");
    expect(listed.pending).toEqual([
      expect.objectContaining({ requestId: second, commands: ["canvas.snapshot", "system.run"] }),
    ]);
    const error = await rpcError(admin.request("node.pair.approve", { requestId: first }));
    expect(error.details).toMatchObject({ code: "PAIRING_REQUEST_NOT_FOUND" });
  });
});

describe("managing other devices", () => {
  it("a non-admin gets the same refusal for another device and for one that does not exist", async () => {
    const { url } = await startStack();
    const other = createDeviceIdentity();
    await TestClient.connect(url, { token: TOKEN, device: other, scopes: ["operator.read"] });
    const pairingOnly = await TestClient.connect(url, {
      token: TOKEN,
      scopes: ["operator.pairing"],
    });
    const missing = createDeviceIdentity().deviceId;
    for (const deviceId of [other.deviceId, missing]) {
      for (const [method, params] of [
        ["device.token.revoke", { deviceId, role: "operator" }],
        ["device.token.rotate", { deviceId, role: "operator" }],
        ["device.pair.rename", { deviceId, label: "Alice's phone" }],
      ] as const) {
        const error = await rpcError(pairingOnly.request(method, params));
        expect({ method, code: error.code, details: error.details }).toEqual({
          method,
          code: "FORBIDDEN",
          details: { code: "DEVICE_NOT_OWNED", deviceId },
        });
      }
    }
    const admin = await TestClient.connect(url, { token: TOKEN });
    const listed = await admin.request("device.pair.list");
    expect(listed.paired).toEqual([expect.not.objectContaining({ label: expect.anything() })]);
  });
});

describe("answering a pairing request twice at once", () => {
  /** A device's pending request id, on a stack that pairs nobody by itself. */
  async function pendingStack() {
    const stack = await startStack({ gateway: MANUAL });
    const device = createDeviceIdentity();
    const requestId = await askPairing(stack.url, device, ["operator.read"]);
    return { stack, device, requestId };
  }

  it("of an approval and a rejection sent together, exactly one wins, and the outcome matches it", async () => {
    const { stack, device, requestId } = await pendingStack();
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const approving = admin.request("device.pair.approve", { requestId });
    const rejecting = admin.request("device.pair.reject", { requestId });
    const [approved, rejected] = await Promise.allSettled([approving, rejecting]);
    expect([approved.status, rejected.status].sort()).toEqual(["fulfilled", "rejected"]);
    const loser = (approved.status === "rejected" ? approved : rejected) as PromiseRejectedResult;
    expect(loser.reason.details).toMatchObject({ code: "PAIRING_REQUEST_NOT_FOUND" });
    const paired = await stack.store.devices.get(device.deviceId);
    expect(paired !== undefined).toBe(approved.status === "fulfilled");
    // A handler broadcasts its decision before it answers: both answers are in, so are the events.
    const decisions = admin.events
      .filter((e) => e.event === "device.pair.resolved")
      .map((e) => e.payload.decision);
    expect(decisions).toEqual([approved.status === "fulfilled" ? "approved" : "rejected"]);
  });

  it("of two approvals and a rejection in flight together, one succeeds and the others find the request answered", async () => {
    const { stack, device, requestId } = await pendingStack();
    const pairing = new DevicePairing(stack.store);
    const outcomes = await Promise.allSettled([
      pairing.approve(requestId),
      pairing.approve(requestId),
      pairing.reject(requestId),
    ]);
    const won = outcomes.flatMap((o, i) => (o.status === "fulfilled" ? [i] : []));
    expect(won).toHaveLength(1);
    for (const lost of outcomes.filter((o) => o.status === "rejected")) {
      expect(lost.reason.details).toMatchObject({ code: "PAIRING_REQUEST_NOT_FOUND" });
    }
    // Paired exactly when an approval won.
    expect((await stack.store.devices.get(device.deviceId)) !== undefined).toBe(won[0] !== 2);
  });
});

describe("loopback pairing in one process", () => {
  it("a connect whose request a concurrent connect approved first uses that approval", async () => {
    const store = new MemoryStore();
    await store.open();
    try {
      const pairing = new DevicePairing(store);
      const device = createDeviceIdentity();
      const resolved: string[] = [];
      const connect = (nonce: string, isLoopback = true) =>
        authenticateConnect({
          params: {
            minProtocol: 4,
            maxProtocol: 4,
            client: { id: "cli", version: "1", platform: "linux", mode: "cli" },
            role: "operator",
            scopes: ["operator.read"],
            auth: { token: TOKEN },
            device: signDeviceChallenge(device, {
              nonce,
              clientId: "cli",
              clientMode: "cli",
              role: "operator",
              scopes: ["operator.read"],
              token: TOKEN,
              platform: "linux",
            }),
          },
          nonce,
          isLoopback,
          remoteAddress: isLoopback ? "127.0.0.1" : "192.0.2.7",
          settings: { mode: "token", token: TOKEN, autoApproveLoopback: true },
          pairing,
          now: Date.now(),
          signatureSkewMs: 60_000,
          onPairingRequested: () => undefined,
          onPairingResolved: (r, decision) => resolved.push(`${r.requestId}:${decision}`),
        });
      // A pending request from an earlier, remote connect…
      await expect(connect("n0", false)).rejects.toMatchObject({
        shape: { details: { code: "PAIRING_REQUIRED" } },
      });
      // …that two loopback connects started together both find; one approval answers it.
      const outcomes = await Promise.all([connect("n1"), connect("n2")]);
      expect(outcomes.map((o) => o.scopes)).toEqual([["operator.read"], ["operator.read"]]);
      expect(resolved).toHaveLength(1);
      expect(await pairing.pendingRequests()).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
