import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity, type DeviceIdentity } from "../src/auth/device-identity.js";
import {
  closeClients,
  MAIN,
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

describe("exec approvals", () => {
  it("shows a tool call waiting for approval; resolving it lets the run go on", async () => {
    const stack = await startStack({
      agents: [{ ...MAIN, tools: ["*"] }],
      runtime: {
        approvals: { mode: "always", timeoutMs: 10_000 },
        tools: [
          {
            name: "clock",
            description: "The time",
            inputSchema: { type: "object" },
            execute: () => "noon",
          },
        ],
      },
      responses: [{ toolCalls: [{ toolName: "clock", input: {} }] }, { text: "It is noon" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: "agent:main:main",
      message: "time?",
      idempotencyKey: "t1",
    });
    const requested = await client.waitEvent("exec.approval.requested");
    expect(requested.payload).toMatchObject({
      kind: "tool",
      request: { toolName: "clock", sessionKey: "agent:main:main" },
    });
    const { approvals } = await client.request("exec.approval.list", {});
    expect(approvals.map((a: { id: string }) => a.id)).toEqual([requested.payload.id]);
    expect(
      await client.request("exec.approval.resolve", {
        id: requested.payload.id,
        decision: "allow-once",
      }),
    ).toMatchObject({ ok: true });
    await client.waitEvent(
      "exec.approval.resolved",
      (p) => p.id === requested.payload.id && p.decision === "allow-once",
    );
    const final = await client.waitEvent("chat", (p) => p.runId === "t1" && p.state === "final");
    expect(final.payload.message.content[0].text).toBe("It is noon");
    expect((await client.request("exec.approval.list", {})).approvals).toEqual([]);
  });

  it("relays a client's exec.approval.request to approvers and its decision back", async () => {
    const stack = await startStack();
    const asker = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.approvals"],
    });
    const approver = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.approvals"],
    });
    const accepted = await asker.request("exec.approval.request", {
      id: "ap-1",
      command: "rm -rf build",
      cwd: "/srv",
      twoPhase: true,
    });
    expect(accepted).toMatchObject({ status: "accepted", id: "ap-1" });
    const seen = await approver.waitEvent("exec.approval.requested", (p) => p.id === "ap-1");
    expect(seen.payload.request).toMatchObject({ command: "rm -rf build", cwd: "/srv" });
    const waiting = asker.request("exec.approval.waitDecision", { id: "ap-1" });
    await approver.request("exec.approval.resolve", { id: "ap-1", decision: "deny" });
    expect(await waiting).toMatchObject({ id: "ap-1", decision: "deny" });
    expect(await asker.request("exec.approval.waitDecision", { id: "ap-1" })).toMatchObject({
      decision: "deny",
    });
  });

  it("an unanswered request expires into a null decision", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const outcome = await client.request("exec.approval.request", {
      command: "make deploy",
      timeoutMs: 30,
    });
    expect(outcome.decision).toBeNull();
    await client.waitEvent("exec.approval.resolved", (p) => p.decision === "expired");
  });

  it("refuses an unknown approval with APPROVAL_NOT_FOUND and a bad decision with INVALID_REQUEST", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(
      (
        await rpcError(
          client.request("exec.approval.resolve", { id: "nope", decision: "allow-once" }),
        )
      ).code,
    ).toBe("APPROVAL_NOT_FOUND");
    expect(
      (await rpcError(client.request("exec.approval.waitDecision", { id: "nope" }))).code,
    ).toBe("APPROVAL_NOT_FOUND");
    await client.request("exec.approval.request", { id: "ap-2", command: "ls", twoPhase: true });
    expect(
      (await rpcError(client.request("exec.approval.resolve", { id: "ap-2", decision: "maybe" })))
        .code,
    ).toBe("INVALID_REQUEST");
    expect((await rpcError(client.request("exec.approval.request", {}))).code).toBe(
      "INVALID_REQUEST",
    );
  });
});

/** A node that answers `echo.say` with its params, and fails `fail.me`. */
async function startNode(url: string, device: DeviceIdentity = createDeviceIdentity()) {
  const node = await TestClient.connect(url, {
    token: TOKEN,
    role: "node",
    scopes: [],
    device,
    clientId: "node-host",
    mode: "node",
    caps: ["exec"],
    commands: ["echo.say", "fail.me", "system.run"],
  });
  let answered = 0;
  const answer = () => {
    for (const event of node.events.slice(answered)) {
      answered++;
      if (event.event !== "node.invoke.request") continue;
      const { id, nodeId, command, paramsJSON } = event.payload;
      const reply =
        command === "fail.me"
          ? { id, nodeId, ok: false, error: { code: "BOOM", message: "it failed on the node" } }
          : { id, nodeId, ok: true, payloadJSON: paramsJSON ?? "null" };
      // The test may close the node before the gateway acknowledges its answer.
      node.request("node.invoke.result", reply).catch(() => undefined);
    }
  };
  node.ws.on("message", () => setImmediate(answer));
  return { node, device };
}

describe("nodes", () => {
  it("lists a connected node and relays node.invoke to it", async () => {
    const stack = await startStack();
    const { device } = await startNode(stack.url);
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const { nodes } = await operator.request("node.list", {});
    expect(nodes).toEqual([
      expect.objectContaining({
        nodeId: device.deviceId,
        connected: true,
        paired: true,
        commands: ["echo.say", "fail.me", "system.run"],
      }),
    ]);
    expect(await operator.request("node.describe", { nodeId: device.deviceId })).toMatchObject({
      nodeId: device.deviceId,
      caps: ["exec"],
    });
    const result = await operator.request("node.invoke", {
      nodeId: device.deviceId,
      command: "echo.say",
      params: { text: "hi" },
      idempotencyKey: "i1",
    });
    expect(result).toMatchObject({
      ok: true,
      nodeId: device.deviceId,
      command: "echo.say",
      payload: { text: "hi" },
    });
  });

  it("lets the host run a command on a node through gateway.invokeNode", async () => {
    const stack = await startStack();
    const { device } = await startNode(stack.url);
    const result = await stack.gateway.invokeNode({
      nodeId: device.deviceId,
      command: "echo.say",
      params: { n: 1 },
    });
    expect(result).toEqual({ ok: true, payloadJSON: '{"n":1}' });
    await expect(
      stack.gateway.invokeNode({ nodeId: "nobody", command: "echo.say" }),
    ).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });

  it("reports a node's failure, a command it does not offer, and a node that is gone", async () => {
    const stack = await startStack();
    const { node, device } = await startNode(stack.url);
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const failed = await rpcError(
      operator.request("node.invoke", {
        nodeId: device.deviceId,
        command: "fail.me",
        idempotencyKey: "i2",
      }),
    );
    expect(failed).toMatchObject({ code: "UNAVAILABLE", message: "it failed on the node" });
    const unknown = await rpcError(
      operator.request("node.invoke", {
        nodeId: device.deviceId,
        command: "camera.snap",
        idempotencyKey: "i3",
      }),
    );
    expect(unknown.details).toMatchObject({ code: "NODE_COMMAND_NOT_ALLOWED" });
    await node.close();
    const gone = await rpcError(
      operator.request("node.invoke", {
        nodeId: device.deviceId,
        command: "echo.say",
        idempotencyKey: "i4",
      }),
    );
    expect(gone.details).toMatchObject({ code: "NODE_NOT_CONNECTED" });
    expect(
      (await rpcError(operator.request("node.describe", { nodeId: "missing" }))).details,
    ).toMatchObject({ code: "NODE_NOT_FOUND" });
  });

  it("needs operator.admin to run programs on a node (system.run)", async () => {
    const stack = await startStack();
    const { device } = await startNode(stack.url);
    const writer = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.write"],
    });
    const error = await rpcError(
      writer.request("node.invoke", {
        nodeId: device.deviceId,
        command: "system.run",
        params: { argv: ["ls"] },
        idempotencyKey: "i5",
      }),
    );
    expect(error.details).toMatchObject({ missingScope: "operator.admin" });
  });

  it("pairs a node through node.pair.*: exec commands need an admin to approve; removing it disconnects it", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "token", token: TOKEN, autoApproveLoopback: false } },
    });
    const pairer = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.pairing"],
    });
    const device = createDeviceIdentity();
    const asking = await TestClient.open(stack.url);
    const refused = await rpcError(
      asking.sendConnect({
        token: TOKEN,
        role: "node",
        scopes: [],
        device,
        mode: "node",
        commands: ["system.run"],
      }),
    );
    expect(refused.code).toBe("NOT_PAIRED");
    const requested = await pairer.waitEvent("node.pair.requested");
    const pending = (await pairer.request("node.pair.list", {})).pending;
    expect(pending).toEqual([
      expect.objectContaining({ requestId: requested.payload.requestId, commands: ["system.run"] }),
    ]);
    const denied = await rpcError(
      pairer.request("node.pair.approve", { requestId: requested.payload.requestId }),
    );
    expect(denied.details).toMatchObject({ missingScope: "operator.admin" });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    await admin.request("node.pair.approve", { requestId: requested.payload.requestId });
    const { node } = await startNode(stack.url, device);
    expect((await admin.request("node.list", {})).nodes[0]).toMatchObject({
      nodeId: device.deviceId,
      connected: true,
      commands: ["system.run"],
    });
    await admin.request("node.pair.remove", { nodeId: device.deviceId });
    expect((await node.closed).code).toBe(1008);
    expect((await admin.request("node.pair.list", {})).paired).toEqual([]);
  });

  it("device.pair.rename and device.pair.remove manage paired devices", async () => {
    const stack = await startStack();
    const device = createDeviceIdentity();
    const phone = await TestClient.connect(stack.url, {
      token: TOKEN,
      device,
      scopes: ["operator.read"],
    });
    const admin = await TestClient.connect(stack.url, { token: TOKEN });
    expect(
      (await admin.request("device.pair.rename", { deviceId: device.deviceId, label: "Phone" }))
        .device.label,
    ).toBe("Phone");
    expect((await admin.request("device.pair.list", {})).paired).toEqual([
      expect.objectContaining({ deviceId: device.deviceId, label: "Phone" }),
    ]);
    expect(await admin.request("device.pair.remove", { deviceId: device.deviceId })).toEqual({
      ok: true,
      deviceId: device.deviceId,
      removed: true,
    });
    expect((await phone.closed).code).toBe(1008);
    expect(
      (
        await rpcError(
          admin.request("device.pair.rename", { deviceId: device.deviceId, label: "x" }),
        )
      ).details,
    ).toMatchObject({ code: "DEVICE_NOT_FOUND" });
  });
});
