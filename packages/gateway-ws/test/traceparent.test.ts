/**
 * A request frame's W3C Trace Context `traceparent` (a field the protocol's request frame
 * allows) reaches the run of the message the method sends: `chat.send`, `agent` and
 * `sessions.send` send it with the message (`SendOptions.traceparent`), so the run's
 * `beamclaw:session.run` trace carries it and an OpenTelemetry bridge makes the run's span a
 * child of the client's span. A malformed one is ignored, as the specification asks (the
 * request is served, its run starts its own trace). The OpenAI-compatible HTTP endpoints take
 * it from the `traceparent` header likewise, with the `tracestate` header (dropped when
 * malformed, the traceparent kept), and so does `POST /hooks/agent` (a retry under the same
 * idempotency key from another span is still the same request). Over real sockets.
 */
import { type SessionRunTrace, subscribeTrace } from "@beamclaw/core";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import {
  AUTH,
  closeClients,
  httpCall,
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

const CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/** The session runs' trace contexts seen until the test ends. */
function recordRuns(): SessionRunTrace[] {
  const runs: SessionRunTrace[] = [];
  const off = subscribeTrace("beamclaw:session.run", { start: (c) => runs.push(c) });
  onTestFinished(off);
  return runs;
}

let nextId = 0;

/** Sends a request frame with a `traceparent` field; resolves with its (first) response. */
async function tracedRequest(
  client: TestClient,
  method: string,
  params: Record<string, unknown>,
  traceparent: unknown,
) {
  const id = `traced-${++nextId}`;
  client.sendRaw(JSON.stringify({ type: "req", id, method, params, traceparent }));
  return waitFor(`the response to ${id}`, () => client.responses(id)[0]);
}

describe("a request frame's traceparent", () => {
  it("is sent with the message of chat.send, agent and sessions.send", async () => {
    const runs = recordRuns();
    const stack = await startStack({
      responses: [{ text: "one" }, { text: "two" }, { text: "three" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const requests: Array<[string, Record<string, unknown>]> = [
      ["chat.send", { sessionKey: "agent:main:a", message: "hi", idempotencyKey: "c1" }],
      ["agent", { sessionKey: "agent:main:b", message: "hi", idempotencyKey: "c2" }],
      ["sessions.send", { key: "agent:main:c", message: "hi", idempotencyKey: "c3" }],
    ];
    for (const [method, params] of requests) {
      const response = await tracedRequest(client, method, params, CALLER);
      expect(response, method).toMatchObject({ ok: true });
    }
    await waitFor("three runs", () => (runs.length >= 3 ? runs : undefined));
    expect(runs.map((run) => [run.session, run.traceparent]).sort()).toEqual([
      ["agent:main:a", CALLER],
      ["agent:main:b", CALLER],
      ["agent:main:c", CALLER],
    ]);
  });

  it("is ignored when malformed: the request is served, its run has none", async () => {
    const runs = recordRuns();
    const stack = await startStack({ responses: [{ text: "one" }, { text: "two" }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const bad = [`${CALLER.toUpperCase()}`, 42];
    for (const [i, traceparent] of bad.entries()) {
      const response = await tracedRequest(
        client,
        "chat.send",
        { sessionKey: `agent:main:bad${i}`, message: "hi", idempotencyKey: `b${i}` },
        traceparent,
      );
      expect(response).toMatchObject({ ok: true });
    }
    await waitFor("two runs", () => (runs.length >= 2 ? runs : undefined));
    expect(runs.map((run) => run.traceparent)).toEqual([undefined, undefined]);
  });
});

describe("an HTTP request's trace context headers", () => {
  it("are sent with the /v1 turn's message; a malformed traceparent or tracestate is ignored", async () => {
    const runs = recordRuns();
    const stack = await startStack({
      responses: [{ text: "one" }, { text: "two" }, { text: "three" }, { text: "four" }],
    });
    const cases: Array<Record<string, string>> = [
      { traceparent: CALLER, tracestate: "congo=t61rcWkgMzE" },
      { traceparent: CALLER, tracestate: "not a tracestate" },
      { traceparent: "00-nonsense", tracestate: "congo=t61rcWkgMzE" },
      { traceparent: CALLER },
    ];
    for (const headers of cases) {
      const reply = await httpCall(stack.port, "/v1/chat/completions", {
        method: "POST",
        headers: { ...AUTH, ...headers },
        body: { model: "beamclaw", messages: [{ role: "user", content: "hi" }] },
      });
      expect(reply.status).toBe(200);
    }
    expect(runs.map((run) => [run.traceparent, run.tracestate])).toEqual([
      [CALLER, "congo=t61rcWkgMzE"],
      // The bad tracestate is dropped, the traceparent kept.
      [CALLER, undefined],
      [undefined, undefined],
      [CALLER, undefined],
    ]);
  });
});

describe("a webhook's trace context headers", () => {
  it("are sent with the run of POST /hooks/agent, and are not part of its idempotency", async () => {
    const runs = recordRuns();
    const hookToken = "hook-token-0123456789abcdef";
    const stack = await startStack({
      responses: [{ text: "one" }, { text: "two" }],
      gateway: { hooks: { settings: { enabled: true, token: hookToken } } },
    });
    const post = (headers: Record<string, string>) =>
      httpCall(stack.port, "/hooks/agent", {
        method: "POST",
        headers: { authorization: `Bearer ${hookToken}`, ...headers },
        body: { message: "build failed", deliver: false, waitForCompletion: true },
      });
    const first = await post({ traceparent: CALLER, tracestate: "congo=t61rcWkgMzE" });
    expect(first.status).toBe(200);
    // A retry of a keyed request from another span: the same request, not a conflict.
    const keyed = { "idempotency-key": "deploy-7" };
    const retriedFrom = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    expect((await post({ ...keyed, traceparent: CALLER })).status).toBe(200);
    const retry = await post({ ...keyed, traceparent: retriedFrom });
    expect(retry.status).toBe(200);
    expect(retry.json).toMatchObject({ replayed: true });
    expect(runs.map((run) => [run.traceparent, run.tracestate])).toEqual([
      [CALLER, "congo=t61rcWkgMzE"],
      [CALLER, undefined],
    ]);
  });
});
