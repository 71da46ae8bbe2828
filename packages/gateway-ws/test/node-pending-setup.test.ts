/**
 * `node.pending.*` (work queued for a node) and setup codes (`device.pair.setupCode`,
 * `device.pair.setupStatus`, connecting with `auth.bootstrapToken`), over real sockets, with
 * every frame, request and result checked against the protocol schema.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity, type DeviceIdentity } from "../src/auth/device-identity.js";
import { decodeSetupCode } from "../src/index.js";
import {
  closeClients,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  validatorOf,
  type Wire,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

/** Fails unless `value` matches the protocol definition `def`. */
function expectSchema(def: string, value: unknown): void {
  const validate = validatorOf(def);
  const ok = validate(value);
  expect(ok, `${def}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(value)}`).toBe(true);
}

/** A request whose params are checked against `paramsDef` first and result against `resultDef`. */
async function call(
  client: TestClient,
  method: string,
  params: Record<string, unknown>,
  paramsDef: string,
  resultDef?: string,
): Promise<Wire> {
  expectSchema(paramsDef, params);
  const result = await client.request(method, params);
  if (resultDef !== undefined) expectSchema(resultDef, result);
  return result;
}

async function connectNode(url: string, device: DeviceIdentity = createDeviceIdentity()) {
  const node = await TestClient.connect(url, {
    token: TOKEN,
    role: "node",
    scopes: [],
    device,
    clientId: "node-host",
    mode: "node",
    commands: ["location.get"],
  });
  return { node, device };
}

describe("node.pending.*", () => {
  it("queues work for a node, wakes it, and lets it pull, acknowledge and drain", async () => {
    const stack = await startStack();
    const { node, device } = await connectNode(stack.url);
    const writer = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.write"],
    });
    const first = await call(
      writer,
      "node.pending.enqueue",
      { nodeId: device.deviceId, type: "location.request", priority: "normal" },
      "NodePendingEnqueueParams",
      "NodePendingEnqueueResult",
    );
    expect(first).toMatchObject({
      nodeId: device.deviceId,
      revision: 1,
      wakeTriggered: true,
      queued: { type: "location.request", priority: "normal", expiresAtMs: null },
    });
    const woken = await node.waitEvent("node.pending", (p) => p.revision === 1);
    expect(woken.payload).toMatchObject({ nodeId: device.deviceId, type: "location.request" });

    const urgent = await call(
      writer,
      "node.pending.enqueue",
      { nodeId: device.deviceId, type: "status.request", priority: "high", wake: false },
      "NodePendingEnqueueParams",
      "NodePendingEnqueueResult",
    );
    expect(urgent.wakeTriggered).toBe(false);
    // The same type again refreshes the waiting item instead of adding one.
    const again = await call(
      writer,
      "node.pending.enqueue",
      { nodeId: device.deviceId, type: "location.request", priority: "high", wake: false },
      "NodePendingEnqueueParams",
      "NodePendingEnqueueResult",
    );
    expect(again.queued).toMatchObject({ id: first.queued.id, priority: "high" });
    expect(again.revision).toBe(3);

    // pull: the most urgent (then oldest) first, nothing removed.
    const pulled = await call(
      node,
      "node.pending.pull",
      { maxItems: 1 },
      "NodePendingDrainParams",
      "NodePendingDrainResult",
    );
    expect(pulled).toMatchObject({ nodeId: device.deviceId, revision: 3, hasMore: true });
    expect(pulled.items.map((i: Wire) => i.id)).toEqual([first.queued.id]);
    const pulledAgain = await call(
      node,
      "node.pending.pull",
      {},
      "NodePendingDrainParams",
      "NodePendingDrainResult",
    );
    expect(pulledAgain.items.map((i: Wire) => i.id)).toEqual([first.queued.id, urgent.queued.id]);

    const acked = await call(
      node,
      "node.pending.ack",
      { ids: [first.queued.id, "no-such-item"] },
      "NodePendingAckParams",
    );
    expect(acked).toMatchObject({
      ok: true,
      acked: [first.queued.id],
      unknown: ["no-such-item"],
      remaining: 1,
      revision: 4,
    });

    // drain: takes what is left.
    const drained = await call(
      node,
      "node.pending.drain",
      {},
      "NodePendingDrainParams",
      "NodePendingDrainResult",
    );
    expect(drained).toMatchObject({ revision: 5, hasMore: false });
    expect(drained.items.map((i: Wire) => i.id)).toEqual([urgent.queued.id]);
    const empty = await call(
      node,
      "node.pending.drain",
      { maxItems: 10 },
      "NodePendingDrainParams",
      "NodePendingDrainResult",
    );
    expect(empty).toEqual({ nodeId: device.deviceId, revision: 5, items: [], hasMore: false });
  });

  it("keeps work for an offline node until it connects; expired items are dropped", async () => {
    let shift = 0;
    const stack = await startStack({ gateway: { now: () => Date.now() + shift } });
    const device = createDeviceIdentity();
    const { node } = await connectNode(stack.url, device);
    await node.close();
    const writer = await TestClient.connect(stack.url, { token: TOKEN });
    const queued = await call(
      writer,
      "node.pending.enqueue",
      { nodeId: device.deviceId, type: "status.request", expiresInMs: 60_000 },
      "NodePendingEnqueueParams",
      "NodePendingEnqueueResult",
    );
    expect(queued.wakeTriggered).toBe(false);
    expect(queued.queued.expiresAtMs).toBeGreaterThan(queued.queued.createdAtMs);
    await call(
      writer,
      "node.pending.enqueue",
      { nodeId: device.deviceId, type: "location.request", expiresInMs: 1_000 },
      "NodePendingEnqueueParams",
      "NodePendingEnqueueResult",
    );
    shift = 5_000; // the location request expired; the status request did not
    const { node: back } = await connectNode(stack.url, device);
    const drained = await call(
      back,
      "node.pending.drain",
      {},
      "NodePendingDrainParams",
      "NodePendingDrainResult",
    );
    expect(drained.items.map((i: Wire) => i.type)).toEqual(["status.request"]);
  });

  it("enforces roles and scopes and refuses bad input", async () => {
    const stack = await startStack();
    const { node, device } = await connectNode(stack.url);
    const reader = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.read"],
    });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const denied = await rpcError(
      reader.request("node.pending.enqueue", { nodeId: device.deviceId, type: "status.request" }),
    );
    expect(denied.code).toBe("FORBIDDEN");
    expect(denied.details).toMatchObject({ missingScope: "operator.write" });
    // Only nodes drain, pull and acknowledge; nodes do not enqueue.
    for (const method of ["node.pending.drain", "node.pending.pull"]) {
      const refused = await rpcError(admin.request(method, {}));
      expect(refused.code).toBe("FORBIDDEN");
      expect(refused.details).toMatchObject({ code: "ROLE_NOT_ALLOWED", requiredRole: "node" });
    }
    expect((await rpcError(admin.request("node.pending.ack", { ids: ["x"] }))).code).toBe(
      "FORBIDDEN",
    );
    expect(
      (
        await rpcError(
          node.request("node.pending.enqueue", { nodeId: device.deviceId, type: "status.request" }),
        )
      ).details,
    ).toMatchObject({ code: "ROLE_NOT_ALLOWED" });

    const unknown = await rpcError(
      admin.request("node.pending.enqueue", { nodeId: "no-such-node", type: "status.request" }),
    );
    expect(unknown).toMatchObject({ code: "INVALID_REQUEST", details: { code: "NODE_NOT_FOUND" } });
    const badType = await rpcError(
      admin.requestUnchecked("node.pending.enqueue", {
        nodeId: device.deviceId,
        type: "camera.request",
      }),
    );
    expect(badType.details).toMatchObject({ field: "type" });
    const badExpiry = await rpcError(
      admin.requestUnchecked("node.pending.enqueue", {
        nodeId: device.deviceId,
        type: "status.request",
        expiresInMs: 5,
      }),
    );
    expect(badExpiry.details).toMatchObject({ field: "expiresInMs" });
    expect(
      (await rpcError(node.requestUnchecked("node.pending.drain", { maxItems: 11 }))).details,
    ).toMatchObject({ field: "maxItems" });
    expect(
      (await rpcError(node.requestUnchecked("node.pending.ack", { ids: [] }))).details,
    ).toMatchObject({ field: "ids" });
    // Nothing was queued by the refused requests.
    expect((await node.request("node.pending.pull", {})) as { items: unknown[] }).toMatchObject({
      items: [],
    });
  });

  it("forgets a node's queue when it is unpaired", async () => {
    const stack = await startStack();
    const { device } = await connectNode(stack.url);
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    await admin.request("node.pending.enqueue", {
      nodeId: device.deviceId,
      type: "status.request",
    });
    expect(await stack.store.kv.get(`gateway:node-pending:${device.deviceId}`)).toBeDefined();
    await admin.request("node.pair.remove", { nodeId: device.deviceId });
    expect(await stack.store.kv.get(`gateway:node-pending:${device.deviceId}`)).toBeUndefined();
    const gone = await rpcError(
      admin.request("node.pending.enqueue", { nodeId: device.deviceId, type: "status.request" }),
    );
    expect(gone.details).toMatchObject({ code: "NODE_NOT_FOUND" });
  });
});

/** Opens a socket and sends `connect` with a setup code's bootstrap token (no shared secret). */
async function connectWithSetup(
  url: string,
  bootstrapToken: string,
  device: DeviceIdentity | undefined,
  options: { role?: string; scopes?: string[] } = {},
): Promise<{ client: TestClient; hello: Promise<Wire> }> {
  const client = await TestClient.open(url);
  const params = client.connectParams({
    role: options.role ?? "operator",
    scopes: options.scopes ?? ["operator.read", "operator.write"],
    ...(device === undefined ? {} : { device }),
    clientId: "openclaw-ios",
    mode: "ui",
  });
  params.auth = { bootstrapToken };
  return { client, hello: client.request("connect", params) };
}

describe("setup codes", () => {
  it("a setup code pairs a device after an operator's approval, once", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "token", token: TOKEN, autoApproveLoopback: false } },
    });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const setup = await call(
      admin,
      "device.pair.setupCode",
      { bootstrapProfile: "limited" },
      "DevicePairSetupCodeParams",
      "DevicePairSetupCodeResult",
    );
    expect(setup).toMatchObject({
      gatewayUrl: stack.url,
      auth: "token",
      urlSource: "request",
      access: "limited",
    });
    const decoded = decodeSetupCode(setup.setupCode);
    expect(decoded?.url).toBe(stack.url);
    expect(decoded?.bootstrapToken).not.toBe(TOKEN);
    expect(
      await call(
        admin,
        "device.pair.setupStatus",
        { setupId: setup.setupId },
        "DevicePairSetupStatusParams",
        "DevicePairSetupStatusResult",
      ),
    ).toEqual({});

    // The device presents the token: its pairing waits for an operator.
    const device = createDeviceIdentity();
    const firstTry = await connectWithSetup(decoded!.url, decoded!.bootstrapToken, device);
    const pending = await rpcError(firstTry.hello);
    expect(pending).toMatchObject({ code: "NOT_PAIRED", details: { code: "PAIRING_REQUIRED" } });
    const requested = await admin.waitEvent(
      "device.pair.requested",
      (p) => p.deviceId === device.deviceId,
    );
    await admin.request("device.pair.approve", { requestId: requested.payload.requestId });

    const secondTry = await connectWithSetup(decoded!.url, decoded!.bootstrapToken, device);
    const hello = await secondTry.hello;
    expect(hello.auth).toMatchObject({
      role: "operator",
      scopes: ["operator.read", "operator.write"],
    });
    expect(typeof hello.auth.deviceToken).toBe("string");
    const completed = await admin.waitEvent("device.pair.setup.completed");
    expectSchema("DevicePairSetupCompletedEvent", completed.payload);
    expect(completed.payload).toMatchObject({
      setupId: setup.setupId,
      deviceId: device.deviceId,
      access: "limited",
    });
    const status = await call(
      admin,
      "device.pair.setupStatus",
      { setupId: setup.setupId },
      "DevicePairSetupStatusParams",
      "DevicePairSetupStatusResult",
    );
    expect(status.completion).toMatchObject({ setupId: setup.setupId, deviceId: device.deviceId });
    // The paired device now works as any operator with its scopes.
    expect((await secondTry.client.request("sessions.list", {})).sessions).toEqual([]);

    // The token is used up: another device (or the same one again) cannot use it.
    const reuse = await connectWithSetup(
      decoded!.url,
      decoded!.bootstrapToken,
      createDeviceIdentity(),
    );
    const refused = await rpcError(reuse.hello);
    expect(refused).toMatchObject({
      code: "INVALID_REQUEST",
      details: { code: "AUTH_BOOTSTRAP_TOKEN_INVALID" },
    });
    expect((await reuse.client.closed).code).toBe(1008);
  });

  it("bounds access by the code's profile and needs a device identity", async () => {
    const stack = await startStack();
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    const limited = decodeSetupCode(
      (await admin.request("device.pair.setupCode", {}))?.setupCode ?? "",
    )!;
    const tooMuch = await connectWithSetup(
      stack.url,
      limited.bootstrapToken,
      createDeviceIdentity(),
      {
        scopes: ["operator.admin"],
      },
    );
    expect((await rpcError(tooMuch.hello)).details).toMatchObject({
      code: "AUTH_SCOPE_MISMATCH",
      access: "limited",
    });
    const anonymous = await connectWithSetup(stack.url, limited.bootstrapToken, undefined);
    expect((await rpcError(anonymous.hello)).details).toMatchObject({
      code: "DEVICE_IDENTITY_REQUIRED",
    });
    const nodeOnly = await admin.request("device.pair.setupCode", { bootstrapProfile: "node" });
    expect(nodeOnly.access).toBe("node");
    const operatorWithNodeCode = await connectWithSetup(
      stack.url,
      decodeSetupCode(nodeOnly.setupCode)!.bootstrapToken,
      createDeviceIdentity(),
    );
    expect((await rpcError(operatorWithNodeCode.hello)).details).toMatchObject({
      code: "AUTH_SCOPE_MISMATCH",
    });
    // A node with the node code pairs (loopback is approved at once here) and completes it.
    const nodeDevice = createDeviceIdentity();
    const asNode = await connectWithSetup(
      stack.url,
      decodeSetupCode(nodeOnly.setupCode)!.bootstrapToken,
      nodeDevice,
      { role: "node", scopes: [] },
    );
    expect((await asNode.hello).auth).toMatchObject({ role: "node", scopes: [] });
    expect(
      (await admin.request("device.pair.setupStatus", { setupId: nodeOnly.setupId })).completion,
    ).toMatchObject({ deviceId: nodeDevice.deviceId, access: "node" });
    const garbage = await connectWithSetup(stack.url, "not-a-real-token", createDeviceIdentity());
    expect((await rpcError(garbage.hello)).details).toMatchObject({
      code: "AUTH_BOOTSTRAP_TOKEN_INVALID",
    });
  });

  it("needs operator.admin, takes a public URL, and refuses bad params", async () => {
    const stack = await startStack({ gateway: { auth: { mode: "password", password: "pw-1" } } });
    const pairer = await TestClient.connect(stack.url, {
      password: "pw-1",
      scopes: ["operator.pairing"],
    });
    const denied = await rpcError(pairer.request("device.pair.setupCode", {}));
    expect(denied).toMatchObject({
      code: "FORBIDDEN",
      details: { missingScope: "operator.admin" },
    });
    expect((await rpcError(pairer.request("device.pair.setupStatus", { setupId: "x" }))).code).toBe(
      "FORBIDDEN",
    );
    const admin = await TestClient.connect(stack.url, { password: "pw-1" });
    const publicCode = await call(
      admin,
      "device.pair.setupCode",
      { publicUrl: "https://gateway.example.com/", includeQr: true },
      "DevicePairSetupCodeParams",
      "DevicePairSetupCodeResult",
    );
    expect(publicCode).toMatchObject({
      gatewayUrl: "wss://gateway.example.com",
      urlSource: "publicUrl",
      auth: "password",
    });
    expect(decodeSetupCode(publicCode.setupCode)?.url).toBe("wss://gateway.example.com");
    const badUrl = await rpcError(
      admin.request("device.pair.setupCode", { publicUrl: "ftp://gateway.example.com" }),
    );
    expect(badUrl.details).toMatchObject({ field: "publicUrl" });
    const unknownField = await rpcError(
      admin.requestUnchecked("device.pair.setupCode", { lifetime: 5 }),
    );
    expect(unknownField.details).toMatchObject({ field: "lifetime" });
    const missing = await rpcError(
      admin.request("device.pair.setupStatus", { setupId: "no-such-setup" }),
    );
    expect(missing.details).toMatchObject({ code: "SETUP_NOT_FOUND" });
  });
});
