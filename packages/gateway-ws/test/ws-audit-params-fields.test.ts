/**
 * Params of the wrong type or outside their field's set are `INVALID_REQUEST` with `details:
 * { code: "INVALID_PARAMS", field }` naming the field (the README's "Params" contract), for
 * the checks written by hand outside the shared params readers. Over real sockets, every
 * frame checked against the protocol schema.
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
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

async function refusal(client: TestClient, method: string, params: Record<string, unknown>) {
  const error = await rpcError(client.requestUnchecked(method, params));
  return { code: error.code, details: error.details };
}

function invalid(field: string) {
  return { code: "INVALID_REQUEST", details: { code: "INVALID_PARAMS", field } };
}

describe("hand-written params checks name the field", () => {
  it("sessions.patch: thinkingLevel and verboseLevel outside their sets; nothing is changed", async () => {
    const stack = await startStack({ responses: [{ text: "hello" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "hi", idempotencyKey: "p1" });
    await client.waitEvent("chat", (p) => p.runId === "p1" && p.state === "final");
    expect(
      await refusal(client, "sessions.patch", { key: KEY, label: "x", thinkingLevel: "max" }),
    ).toEqual(invalid("thinkingLevel"));
    expect(await refusal(client, "sessions.patch", { key: KEY, verboseLevel: 3 })).toEqual(
      invalid("verboseLevel"),
    );
    const { session } = await client.request("sessions.describe", { key: KEY });
    expect(session.label).toBeUndefined();
  });

  it("cron.add and cron.update: name, schedule, payload and patch of the wrong type; no job is added", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const job = {
      name: "daily",
      schedule: { kind: "every", everyMs: 60_000 },
      payload: { kind: "agentTurn", message: "hi" },
    };
    expect(await refusal(client, "cron.add", { ...job, name: 5 })).toEqual(invalid("name"));
    expect(await refusal(client, "cron.add", { ...job, schedule: "daily" })).toEqual(
      invalid("schedule"),
    );
    expect(await refusal(client, "cron.add", { ...job, schedule: [] })).toEqual(
      invalid("schedule"),
    );
    expect(await refusal(client, "cron.add", { ...job, payload: ["hi"] })).toEqual(
      invalid("payload"),
    );
    expect(await refusal(client, "cron.update", { id: "some-job", patch: "x" })).toEqual(
      invalid("patch"),
    );
    expect((await client.request("cron.list", {})).jobs).toEqual([]);
  });

  it("agent and sessions.send: attachments that are not an array", async () => {
    const stack = await startStack();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect(
      await refusal(client, "agent", { message: "hi", idempotencyKey: "a1", attachments: "x" }),
    ).toEqual(invalid("attachments"));
    expect(
      await refusal(client, "chat.send", {
        sessionKey: KEY,
        message: "hi",
        idempotencyKey: "a2",
        attachments: { content: "aGk=" },
      }),
    ).toEqual(invalid("attachments"));
    expect(stack.provider.requests).toEqual([]);
  });

  it("node.invoke.result: ok that is not a boolean", async () => {
    const stack = await startStack();
    const node = await connectNode(stack.url);
    const nodeId = node.hello.auth.deviceId ?? stack.gateway.nodes()[0]!.nodeId;
    expect(await refusal(node, "node.invoke.result", { id: "inv-1", nodeId, ok: "yes" })).toEqual(
      invalid("ok"),
    );
  });
});
