/**
 * An operator that disconnects while a `node.invoke` of its waits for the node: the gateway
 * forgets the invoke at once (its timer, up to 10 minutes, is cleared) and ignores the node's
 * late answer, instead of holding both until the node answers or the time limit passes.
 * Over real sockets against a started gateway.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import type { ConnectionCloseInfo } from "../src/index.js";
import { startStack, stopStacks, TestClient, TOKEN, waitFor } from "./support.js";

afterEach(stopStacks);

describe("node.invoke whose caller disconnects", () => {
  it("is forgotten: the node's late answer is ignored", async () => {
    const closes: ConnectionCloseInfo[] = [];
    const stack = await startStack({ gateway: { onConnectionClose: (info) => closes.push(info) } });
    const node = await TestClient.connect(stack.url, {
      token: TOKEN,
      role: "node",
      scopes: [],
      device: createDeviceIdentity(),
      clientId: "node-host",
      mode: "node",
      caps: [],
      commands: ["slow.op"],
    });
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const listed = (await operator.request("node.list", {})) as {
      nodes: Array<{ nodeId: string }>;
    };
    const target = listed.nodes[0]!.nodeId;
    const invoking = operator
      .request("node.invoke", {
        nodeId: target,
        command: "slow.op",
        idempotencyKey: "k1",
        timeoutMs: 600_000,
      })
      .catch(() => undefined);
    const request = await waitFor("the node to be asked", () =>
      node.events.find((e) => e.event === "node.invoke.request"),
    );
    await operator.close();
    await invoking;
    await waitFor("the gateway to see the operator go", () => closes.length === 1);
    const late = await node.request("node.invoke.result", {
      id: request.payload.id,
      nodeId: target,
      ok: true,
      payloadJSON: "1",
    });
    expect(late).toEqual({ ok: true, ignored: true });
  });
});
