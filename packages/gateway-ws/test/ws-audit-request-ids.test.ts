/**
 * Audit of the WebSocket methods as a demanding client sees them: a request id reused while
 * its first request is still in flight is refused (`DUPLICATE_REQUEST_ID`) instead of run a
 * second time under an id that already names one, and `sessions.cleanup`'s refusals carry a
 * typed `details.code` naming the field. Over real sockets, every frame checked against the
 * protocol schema.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  type Frame,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  waitFor,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

function answersTo(client: TestClient, id: string): Frame[] {
  return client.frames.filter((f) => f.type === "res" && f.id === id);
}

describe("request ids", () => {
  it("a request reusing the id of one in flight is refused; the first is answered once; the id is free again after", async () => {
    const stack = await startStack({});
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const wait = (timeoutMs: number) =>
      JSON.stringify({
        type: "req",
        id: "same",
        method: "agent.wait",
        params: { runId: "never-started", timeoutMs },
      });
    client.sendRaw(wait(400));
    client.sendRaw(wait(50));
    const [refusal] = await waitFor("the refusal", () => {
      const frames = answersTo(client, "same");
      return frames.length > 0 ? frames : undefined;
    });
    expect(refusal).toMatchObject({
      ok: false,
      error: { code: "INVALID_REQUEST", details: { code: "DUPLICATE_REQUEST_ID" } },
    });
    const both = await waitFor("the first answer", () => {
      const frames = answersTo(client, "same");
      return frames.length === 2 ? frames : undefined;
    });
    expect(both[1]).toMatchObject({
      ok: true,
      payload: { runId: "never-started", status: "timeout" },
    });
    // Once answered, the id may name a new request.
    client.sendRaw(wait(10));
    const third = await waitFor("the answer to the reused id", () => {
      const frames = answersTo(client, "same");
      return frames.length === 3 ? frames[2] : undefined;
    });
    expect(third).toMatchObject({ ok: true, payload: { status: "timeout" } });
    expect(answersTo(client, "same")).toHaveLength(3);
  });

  it("the same id on two connections is two requests", async () => {
    const stack = await startStack({});
    const a = await TestClient.connect(stack.url, { token: TOKEN });
    const b = await TestClient.connect(stack.url, { token: TOKEN });
    const frame = JSON.stringify({ type: "req", id: "shared", method: "health", params: {} });
    a.sendRaw(frame);
    b.sendRaw(frame);
    for (const client of [a, b]) {
      const answer = await waitFor("health", () => answersTo(client, "shared")[0]);
      expect(answer).toMatchObject({ ok: true });
    }
  });
});

describe("sessions.cleanup refusals are typed", () => {
  it("an unknown agent is UNKNOWN_AGENT_ID naming the field, agent with allAgents names allAgents; nothing is deleted", async () => {
    const stack = await startStack({
      agents: [
        { id: "main", model: "scripted/m1" },
        { id: "ops", model: "scripted/m1" },
      ],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("sessions.create", { key: "agent:main:direct:one" });
    const unknown = await rpcError(
      client.request("sessions.cleanup", { agent: "ghost", enforce: true }),
    );
    expect(unknown.code).toBe("INVALID_REQUEST");
    expect(unknown.message).toMatch(/no agent ghost \(the agents are main, ops\)/);
    expect(unknown.details).toEqual({ code: "UNKNOWN_AGENT_ID", field: "agent", agentId: "ghost" });
    const both = await rpcError(
      client.request("sessions.cleanup", { agent: "main", allAgents: true }),
    );
    expect(both.details).toEqual({ code: "INVALID_PARAMS", field: "allAgents" });
    expect(await stack.store.sessions.count()).toBe(1);
  });
});

describe("message and key refusals name their field", () => {
  const KEY = "agent:main:main";
  const field = (name: string) => ({ code: "INVALID_PARAMS", field: name });

  it("chat.send, sessions.send, chat.inject and sessions.abort; no run starts, no session is created", async () => {
    const stack = await startStack({});
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const refusals = [
      ["chat.send", { sessionKey: KEY, message: "a\u0000b", idempotencyKey: "n1" }, "message"],
      ["chat.send", { sessionKey: KEY, message: "  \u0007 ", idempotencyKey: "n2" }, "message"],
      ["sessions.send", { key: KEY, message: "nul\u0000", idempotencyKey: "n3" }, "message"],
      ["sessions.abort", {}, "key"],
    ] as const;
    for (const [method, params, name] of refusals) {
      const error = await rpcError(client.requestUnchecked(method, params));
      expect([method, error.code, error.details]).toEqual([method, "INVALID_REQUEST", field(name)]);
    }
    expect(await stack.store.sessions.count()).toBe(0);
    await client.request("sessions.create", { key: KEY });
    const blank = await rpcError(
      client.request("chat.inject", { sessionKey: KEY, message: " \t " }),
    );
    expect(blank.details).toEqual(field("message"));
    expect((await client.request("chat.history", { sessionKey: KEY })).messages).toEqual([]);
  });

  it("a string over its bound says the bound, not only that it must be a string", async () => {
    const stack = await startStack({});
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const error = await rpcError(
      client.requestUnchecked("sessions.create", {
        key: "agent:main:long",
        label: "x".repeat(513),
      }),
    );
    expect(error.details).toEqual(field("label"));
    expect(error.message).toMatch(/label must be a non-empty string of at most 512 characters/);
    expect(await stack.store.sessions.count()).toBe(0);
  });
});
