/**
 * A `node.invoke` the gateway gives up (its caller disconnected, or the node did not answer in
 * time) is cancelled on the node too: the node's connection gets a `node.invoke.cancel` event
 * `{ invokeId, nodeId, reason }` naming the `node.invoke.request` it was sent, and the node's
 * answer, if it still sends one, is ignored. An invoke the node answers is never cancelled.
 * Over real sockets against a started gateway; the node is a real WebSocket client.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type ConnectionCloseInfo, createNodeExecHost } from "../src/index.js";
import {
  closeClients,
  connectNode,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

async function setUp() {
  const closes: ConnectionCloseInfo[] = [];
  const stack = await startStack({ gateway: { onConnectionClose: (info) => closes.push(info) } });
  const node = await connectNode(stack.url, { commands: ["slow.op"] });
  const operator = await TestClient.connect(stack.url, { token: TOKEN });
  const { nodes } = (await operator.request("node.list", {})) as { nodes: Wire[] };
  return { stack, node, operator, closes, nodeId: nodes[0]!.nodeId as string };
}

describe("node.invoke cancelled on the node", () => {
  it("when the caller disconnects: the node is told, and its late answer is ignored", async () => {
    const { node, operator, nodeId } = await setUp();
    const invoking = operator
      .request("node.invoke", {
        nodeId,
        command: "slow.op",
        idempotencyKey: "gone-1",
        timeoutMs: 600_000,
      })
      .catch((error: unknown) => error);
    const request = await node.waitEvent("node.invoke.request");
    await operator.close();
    await invoking;

    const cancel = await node.waitEvent("node.invoke.cancel");
    expect(cancel.payload).toEqual({
      invokeId: request.payload.id,
      nodeId,
      reason: "caller-gone",
    });
    const late = await node.request("node.invoke.result", {
      id: request.payload.id,
      nodeId,
      ok: true,
      payloadJSON: "1",
    });
    expect(late).toEqual({ ok: true, ignored: true });
    expect(node.events.filter((e) => e.event === "node.invoke.cancel")).toHaveLength(1);
  });

  it("when the node does not answer in time: the caller gets the timeout, the node the cancel", async () => {
    const { node, operator, nodeId } = await setUp();
    const invoking = rpcError(
      operator.request("node.invoke", {
        nodeId,
        command: "slow.op",
        idempotencyKey: "slow-1",
        timeoutMs: 100,
      }),
    );
    const request = await node.waitEvent("node.invoke.request");
    const error = await invoking;
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.details).toEqual({ code: "NODE_INVOKE_TIMEOUT" });

    const cancel = await node.waitEvent("node.invoke.cancel");
    expect(cancel.payload).toEqual({ invokeId: request.payload.id, nodeId, reason: "timeout" });
    const late = await node.request("node.invoke.result", {
      id: request.payload.id,
      nodeId,
      ok: true,
      payloadJSON: "1",
    });
    expect(late).toEqual({ ok: true, ignored: true });
    // The operator, still connected, is not told anything more.
    expect(operator.events.filter((e) => e.event === "node.invoke.cancel")).toEqual([]);
  });

  it("an invoke the node answers is not cancelled", async () => {
    const { node, operator, closes, nodeId } = await setUp();
    const invoking = operator.request("node.invoke", {
      nodeId,
      command: "slow.op",
      idempotencyKey: "fine-1",
      timeoutMs: 600_000,
    });
    const request = await node.waitEvent("node.invoke.request");
    expect(
      await node.request("node.invoke.result", {
        id: request.payload.id,
        nodeId,
        ok: true,
        payloadJSON: '{"done":true}',
      }),
    ).toEqual({ ok: true });
    expect((await invoking).payload).toEqual({ done: true });
    // The caller leaving afterwards cancels nothing: once the gateway has seen it go, a round
    // trip on the node's socket (frames arrive in order) shows no cancel was sent before it.
    await operator.close();
    await waitFor("the gateway to see the operator go", () => closes.length === 1);
    await node.request("node.pending.pull", {});
    expect(node.events.filter((e) => e.event === "node.invoke.cancel")).toEqual([]);
  });

  it("when the gateway's own caller gives it up (invokeNode's signal): the node is told", async () => {
    const { stack, node, nodeId } = await setUp();
    const controller = new AbortController();
    const invoking = stack.gateway
      .invokeNode({ nodeId, command: "slow.op", timeoutMs: 600_000, signal: controller.signal })
      .catch((error: unknown) => error);
    const request = await node.waitEvent("node.invoke.request");
    const reason = new Error("given up");
    controller.abort(reason);
    expect(await invoking).toBe(reason);
    const cancel = await node.waitEvent("node.invoke.cancel");
    expect(cancel.payload).toEqual({
      invokeId: request.payload.id,
      nodeId,
      reason: "caller-gone",
    });
  });

  it("an exec command on a node killed on the gateway's side is cancelled on the node", async () => {
    const stack = await startStack();
    const node = await connectNode(stack.url, { commands: ["system.run"] });
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const { nodes } = (await operator.request("node.list", {})) as { nodes: Wire[] };
    const nodeId = nodes[0]!.nodeId as string;
    const host = createNodeExecHost(stack.gateway, { nodeId, workdir: "/srv" });
    const child = await host.spawn({
      script: "sleep 600",
      cwd: "/srv",
      env: {},
      timeoutMs: 600_000,
    });
    const request = await node.waitEvent("node.invoke.request");
    expect(request.payload.command).toBe("system.run");
    child.signal("SIGTERM");
    const cancel = await node.waitEvent("node.invoke.cancel");
    expect(cancel.payload).toEqual({
      invokeId: request.payload.id,
      nodeId,
      reason: "caller-gone",
    });
  });
});
