/**
 * Params fields a method does not take are refused, naming them, before the method runs:
 * OpenClaw's protocol closes every method's params (`additionalProperties: false`), so a
 * client's typo (`sessonKey`) is an `INVALID_PARAMS` error instead of a field silently
 * ignored. The protocol's fields and BeamClaw's own documented additions are accepted.
 * Over real sockets, every frame checked against the protocol schema.
 */
import { afterEach, describe, expect, it } from "vitest";
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
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

async function refusal(client: TestClient, method: string, params: Record<string, unknown>) {
  const error = await rpcError(client.requestUnchecked(method, params));
  return { code: error.code, message: error.message, details: error.details };
}

describe("unknown params fields", () => {
  it("a typo is refused, naming the field and the one meant; nothing is sent", async () => {
    const stack = await startStack({ responses: [{ text: "hello" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const refused = await refusal(client, "chat.send", {
      sessonKey: KEY,
      message: "hi",
      idempotencyKey: "typo-1",
    });
    expect(refused.code).toBe("INVALID_REQUEST");
    expect(refused.details).toEqual({
      code: "INVALID_PARAMS",
      field: "sessonKey",
      unknownFields: ["sessonKey"],
    });
    expect(refused.message).toBe(
      "invalid chat.send params: unknown field sessonKey (did you mean sessionKey?)",
    );
    expect(stack.provider.requests).toEqual([]);
    expect((await client.request("sessions.list", {})).sessions).toEqual([]);
  });

  it("several unknown fields are all named; a refused change changes nothing", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.create", { key: KEY, label: "before" });
    const refused = await refusal(client, "sessions.patch", {
      key: KEY,
      label: "after",
      lable: "after",
      zzz: 1,
    });
    expect(refused.details).toEqual({
      code: "INVALID_PARAMS",
      field: "lable",
      unknownFields: ["lable", "zzz"],
    });
    expect(refused.message).toBe(
      "invalid sessions.patch params: unknown fields lable (did you mean label?), zzz",
    );
    const { session } = await client.request("sessions.describe", { key: KEY });
    expect(session.label).toBe("before");
  });

  it("every built-in method refuses a field it does not take, before it runs", async () => {
    const stack = await startStack({ cron: true, gateway: { requestsPerSecond: 1_000_000 } });
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    const node = await connectNode(stack.url);
    // `wake`'s params are open in the protocol (`additionalProperties: true`).
    const methods = (operator.hello.features.methods as string[]).filter((m) => m !== "wake");
    expect(methods.length).toBeGreaterThan(70);
    for (const method of methods) {
      const client =
        method.startsWith("node.") && !method.startsWith("node.pair") ? node : operator;
      const refused = await refusal(client, method, { notAField: true });
      expect(refused, method).toMatchObject({
        code: "INVALID_REQUEST",
        details: { code: "INVALID_PARAMS", field: "notAField", unknownFields: ["notAField"] },
      });
    }
    expect(operator.ws.readyState).toBe(operator.ws.OPEN);
    expect(node.ws.readyState).toBe(node.ws.OPEN);
  }, 60_000);

  it("BeamClaw's own additions are taken", async () => {
    const stack = await startStack({ responses: [{ text: "one" }, { text: "two" }] });
    const operator = await TestClient.connect(stack.url, { token: TOKEN });
    // `sessions.send`: `sessionKey` for `key`, and `queueMode`.
    const sent = await operator.requestUnchecked("sessions.send", {
      sessionKey: KEY,
      message: "hi",
      queueMode: "followup",
      idempotencyKey: "add-1",
    });
    expect(sent.ok).toBe(true);
    await operator.waitEvent("chat", (p: Wire) => p.runId === "add-1" && p.state === "final");
    // `sessions.usage.logs` / `timeseries`: `agentId`.
    const logs = await operator.requestUnchecked("sessions.usage.logs", {
      key: KEY,
      agentId: "main",
      limit: 5,
    });
    expect(logs.logs.length).toBeGreaterThan(0);
    await operator.requestUnchecked("sessions.usage.timeseries", { key: KEY, agentId: "main" });
    // `sessions.describe` / `reset`: `sessionKey` for `key`.
    const described = await operator.requestUnchecked("sessions.describe", { sessionKey: KEY });
    expect(described.session.key).toBe(KEY);
    // `node.pending.pull`: `maxItems`, as `node.pending.drain`.
    const node = await connectNode(stack.url);
    const pulled = await node.requestUnchecked("node.pending.pull", { maxItems: 2 });
    expect(pulled.items).toEqual([]);
    // `wake`'s params are open in the protocol: an extra field is taken.
    const woken = await operator.requestUnchecked("wake", {
      mode: "next-heartbeat",
      text: "later",
      extra: "kept by the protocol",
    });
    expect(woken.ok).toBe(true);
  });
});
