/**
 * Refusals for capacity, over real sockets on 127.0.0.1: the runtime's cap on live sessions
 * (`maxActiveSessions`: core's `DynamicSupervisor` refuses with `MAX_CHILDREN`) and a tenant's
 * request rate (`requestsPerMinute`: `RATE_LIMITED`, with its own `retryAfterMs`) are
 * overloads a client retries later, never a 500: the official `openai` SDK retries a 500 at
 * once, without waiting (openai-node `shouldRetry`/`retryRequest` in src/client.ts: 429 and
 * every 5xx are retried, after `retry-after-ms` when the answer has one).
 */
import { describe, expect, it } from "vitest";
import {
  HOOK_TOKEN,
  heldAnswer,
  hookSettings,
  startTenantGateway,
  useOverloadTests,
} from "./overload-support.js";
import { AUTH, httpCall, rpcError, startStack, TestClient, TOKEN, waitFor } from "./support.js";

useOverloadTests();

/** A stack that keeps one session alive at most, with that one busy. */
async function fullSupervisor() {
  const stack = await startStack({
    responses: [heldAnswer().entry],
    runtime: { maxActiveSessions: 1 },
    gateway: { http: { responses: true }, hooks: hookSettings() },
  });
  await stack.runtime.session("agent:main:busy").send("hold on");
  await waitFor("the first run to start", () => stack.provider.requests.length === 1);
  return stack;
}

function chat(port: number, extra: Record<string, unknown> = {}) {
  return httpCall(port, "/v1/chat/completions", {
    method: "POST",
    headers: AUTH,
    body: { model: "beamclaw", messages: [{ role: "user", content: "hi" }], ...extra },
  });
}

describe("too many live sessions (MAX_CHILDREN)", () => {
  it("/v1/chat/completions answers 503 with Retry-After and retry-after-ms, not 500", async () => {
    const stack = await fullSupervisor();
    const reply = await chat(stack.port);
    expect(reply.status).toBe(503);
    expect(reply.json.error).toMatchObject({ type: "server_error", code: "MAX_CHILDREN" });
    expect(reply.headers["retry-after"]).toBe("1");
    expect(reply.headers["retry-after-ms"]).toBe("1000");
  });

  it("/v1/responses answers 503 with Retry-After and retry-after-ms, not 500", async () => {
    const stack = await fullSupervisor();
    const reply = await httpCall(stack.port, "/v1/responses", {
      method: "POST",
      headers: AUTH,
      body: { model: "beamclaw", input: "hi" },
    });
    expect(reply.status).toBe(503);
    expect(reply.json.error).toMatchObject({ code: "MAX_CHILDREN" });
    expect(reply.headers["retry-after-ms"]).toBe("1000");
  });

  it("chat.send is a retryable UNAVAILABLE with retryAfterMs", async () => {
    const stack = await fullSupervisor();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const error = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:other",
        message: "hi",
        idempotencyKey: "mc-1",
      }),
    );
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.retryable).toBe(true);
    expect(error.retryAfterMs).toBe(1_000);
    expect(error.details).toEqual({ code: "MAX_CHILDREN" });
  });

  it("/hooks/agent answers 503 with Retry-After, not a 500 internal error", async () => {
    const stack = await fullSupervisor();
    const reply = await httpCall(stack.port, "/hooks/agent", {
      method: "POST",
      headers: { authorization: `Bearer ${HOOK_TOKEN}` },
      body: { message: "hi", sessionKey: "agent:main:other", deliver: false },
    });
    expect(reply.status).toBe(503);
    expect(reply.headers["retry-after-ms"]).toBe("1000");
    expect(reply.json).toEqual({
      ok: false,
      error: { code: "MAX_CHILDREN", message: expect.any(String), retryAfterMs: 1_000 },
    });
  });
});

describe("a tenant over its request rate (RATE_LIMITED)", () => {
  function rateLimitedGateway() {
    return startTenantGateway({ limits: { requestsPerMinute: 1 }, responses: ["first", "second"] });
  }

  it("/v1/chat/completions answers 429 with the limiter's wait, not 500", async () => {
    const { port, provider } = await rateLimitedGateway();
    expect((await chat(port)).status).toBe(200);
    const reply = await chat(port);
    expect(reply.status).toBe(429);
    expect(reply.json.error).toMatchObject({ code: "RATE_LIMITED" });
    const ms = Number(reply.headers["retry-after-ms"]);
    expect(ms).toBeGreaterThan(50_000);
    expect(ms).toBeLessThanOrEqual(60_000);
    expect(reply.headers["retry-after"]).toBe(String(Math.ceil(ms / 1000)));
    expect(provider.requests).toHaveLength(1);
  });

  it("chat.send is a retryable UNAVAILABLE with the limiter's retryAfterMs", async () => {
    const { port, url } = await rateLimitedGateway();
    expect((await chat(port)).status).toBe(200);
    const client = await TestClient.connect(url, { token: TOKEN });
    const error = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:main",
        message: "hi",
        idempotencyKey: "rl-1",
      }),
    );
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.retryable).toBe(true);
    expect(error.retryAfterMs).toBeGreaterThan(50_000);
    expect(error.details).toEqual({ code: "RATE_LIMITED" });
  });
});
