/**
 * A tenant's spent token budget (`tokensPerDay`: core's `BudgetExceededError`,
 * `BUDGET_EXCEEDED`), over real sockets on 127.0.0.1. It is not an overload: no retry gets
 * through before the budget resets, and the official `openai` SDKs retry a 500 at once (and a
 * 429 after a wait) unless told not to. So the OpenAI-compatible API answers it as OpenAI
 * answers a spent quota, 429 `insufficient_quota`, with `x-should-retry: false` (which
 * openai-node and openai-python read before anything else) and a `Retry-After` to the
 * budget's reset; a stream whose run the budget stopped ends with that error; the WebSocket
 * protocol's error is not retryable and has no `retryAfterMs`; the webhook ingress answers
 * 429 with `Retry-After` to the reset.
 */
import { createProviderChain, limitModelSource, type ModelSource } from "@beamclaw/core";
import OpenAI, { type APIError } from "openai";
import { describe, expect, it } from "vitest";
import type { GatewayServerOptions } from "../src/index.js";
import {
  HOOK_TOKEN,
  hookSettings,
  startTenantGateway,
  useOverloadTests,
} from "./overload-support.js";
import { AUTH, httpCall, rpcError, sseData, sseEvents, TestClient, TOKEN } from "./support.js";

useOverloadTests();

const DAY_MS = 86_400_000;
const BUDGET = 1_000;

/** Seconds from `at` to the next UTC midnight, when a day's budget resets (rounded up). */
function secondsToReset(at: number): number {
  return Math.ceil((Math.floor(at / DAY_MS) * DAY_MS + DAY_MS - at) / 1000);
}

/**
 * A tenant of `BUDGET` tokens a day, whose first answer ("first") used `used` of them; its
 * next answers are `then`.
 */
async function spentTenant(
  used: number,
  then: string[] = ["never sent"],
  extra: Partial<GatewayServerOptions> = {},
) {
  const gateway = await startTenantGateway({
    limits: { tokensPerDay: BUDGET },
    responses: [{ text: "first", usage: { inputTokens: used - 10, outputTokens: 10 } }, ...then],
    gateway: { http: { responses: true }, hooks: hookSettings(), ...extra },
  });
  const first = await chat(gateway.port);
  expect(first.status).toBe(200);
  expect(gateway.tenant.limiter.usage.dayTokens).toBe(used);
  return gateway;
}

function chat(port: number, extra: Record<string, unknown> = {}, content = "hi") {
  return httpCall(port, "/v1/chat/completions", {
    method: "POST",
    headers: AUTH,
    body: { model: "beamclaw", messages: [{ role: "user", content }], ...extra },
  });
}

function responses(port: number, extra: Record<string, unknown> = {}, input = "hi") {
  return httpCall(port, "/v1/responses", {
    method: "POST",
    headers: AUTH,
    body: { model: "beamclaw", input, ...extra },
  });
}

/** A message whose estimate (4 characters a token) is more than the 10 tokens left. */
const LONG = "tell me more ".repeat(40);

describe("a budget spent before the answer starts", () => {
  it("/v1/chat/completions is a 429 insufficient_quota not to retry, with Retry-After to the reset", async () => {
    const { port, provider } = await spentTenant(BUDGET);
    const before = Date.now();
    const reply = await chat(port);
    const after = Date.now();
    expect(reply.status).toBe(429);
    expect(reply.json.error).toEqual({
      message: expect.stringContaining("day budget"),
      type: "insufficient_quota",
      param: null,
      code: "BUDGET_EXCEEDED",
    });
    expect(reply.headers["x-should-retry"]).toBe("false");
    const retryAfter = Number(reply.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThanOrEqual(secondsToReset(after));
    expect(retryAfter).toBeLessThanOrEqual(secondsToReset(before));
    // Not a wait before a retry: a spent budget is not retried.
    expect(reply.headers["retry-after-ms"]).toBeUndefined();
    expect(provider.requests).toHaveLength(1);
  });

  it("a streaming request gets the same 429, not a stream", async () => {
    const { port } = await spentTenant(BUDGET);
    const reply = await chat(port, { stream: true });
    expect(reply.status).toBe(429);
    expect(reply.headers["content-type"]).toContain("application/json");
    expect(reply.json.error).toMatchObject({ type: "insufficient_quota", code: "BUDGET_EXCEEDED" });
    expect(reply.headers["x-should-retry"]).toBe("false");
  });

  it("/v1/responses is the same 429, streaming or not", async () => {
    const { port } = await spentTenant(BUDGET);
    for (const extra of [{}, { stream: true }]) {
      const reply = await responses(port, extra);
      expect(reply.status).toBe(429);
      expect(reply.json.error).toMatchObject({
        type: "insufficient_quota",
        code: "BUDGET_EXCEEDED",
      });
      expect(reply.headers["x-should-retry"]).toBe("false");
      expect(Number(reply.headers["retry-after"])).toBeGreaterThan(0);
    }
  });

  it("the openai SDK, retrying twice by default, sends the request once and throws a RateLimitError", async () => {
    const { port, provider } = await spentTenant(BUDGET);
    const statuses: number[] = [];
    const client = new OpenAI({
      apiKey: TOKEN,
      baseURL: `http://127.0.0.1:${port}/v1`,
      maxRetries: 2,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        statuses.push(response.status);
        return response;
      },
    });
    const error = await client.chat.completions
      .create({ model: "beamclaw", messages: [{ role: "user", content: "hi" }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error).toMatchObject({
      status: 429,
      type: "insufficient_quota",
      code: "BUDGET_EXCEEDED",
    });
    expect((error as APIError).headers?.get("x-should-retry")).toBe("false");
    expect(statuses).toEqual([429]);
    expect(provider.requests).toHaveLength(1);
  });

  it("chat.send on the WebSocket protocol is UNAVAILABLE BUDGET_EXCEEDED, not retryable, without retryAfterMs", async () => {
    const { url } = await spentTenant(BUDGET);
    const client = await TestClient.connect(url, { token: TOKEN });
    const error = await rpcError(
      client.request("chat.send", {
        sessionKey: "agent:main:main",
        message: "hi",
        idempotencyKey: "budget-1",
      }),
    );
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.retryable).toBe(false);
    expect(error.retryAfterMs).toBeUndefined();
    expect(error.details).toEqual({ code: "BUDGET_EXCEEDED" });
  });

  it("/hooks/agent is a 429 BUDGET_EXCEEDED with Retry-After to the reset, not a 500 internal error", async () => {
    const { port } = await spentTenant(BUDGET);
    const reply = await httpCall(port, "/hooks/agent", {
      method: "POST",
      headers: { authorization: `Bearer ${HOOK_TOKEN}` },
      body: { message: "hi", sessionKey: "agent:main:hooked", deliver: false },
    });
    expect(reply.status).toBe(429);
    expect(Number(reply.headers["retry-after"])).toBeGreaterThan(0);
    expect(reply.json).toEqual({
      ok: false,
      error: { code: "BUDGET_EXCEEDED", message: expect.stringContaining("day budget") },
    });
  });
});

describe("a budget spent when the run calls the model (its message was taken)", () => {
  // 990 of 1000 tokens used: a message is taken (one token is left), and the model call it
  // makes is refused for its estimate.
  const USED = BUDGET - 10;

  it("/v1/chat/completions is a 429 BUDGET_EXCEEDED not to retry, not a 502", async () => {
    const { port, provider } = await spentTenant(USED);
    const reply = await chat(port, { user: "alice" }, LONG);
    expect(reply.status).toBe(429);
    expect(reply.json.error).toMatchObject({ type: "insufficient_quota", code: "BUDGET_EXCEEDED" });
    expect(reply.headers["x-should-retry"]).toBe("false");
    expect(provider.requests).toHaveLength(1);
  });

  it("a stream ends with the insufficient_quota error and [DONE], never a finish_reason", async () => {
    const { port } = await spentTenant(USED);
    const reply = await chat(port, { stream: true }, LONG);
    expect(reply.status).toBe(200);
    const events = sseData(reply.text);
    expect(events.at(-1)).toBe("[DONE]");
    expect(events.at(-2).error).toEqual({
      message: expect.stringContaining("day budget"),
      type: "insufficient_quota",
      param: null,
      code: "BUDGET_EXCEEDED",
    });
    const chunks = events.slice(0, -2);
    expect(chunks.every((c) => c.choices[0].finish_reason === null)).toBe(true);
  });

  it("the SDK throws the stream's error as an APIError of type insufficient_quota", async () => {
    const { port } = await spentTenant(USED);
    const client = new OpenAI({ apiKey: TOKEN, baseURL: `http://127.0.0.1:${port}/v1` });
    const stream = await client.chat.completions.create({
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: LONG }],
    });
    const error = await (async () => {
      for await (const _chunk of stream) {
        // read to the end
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error).toMatchObject({ type: "insufficient_quota", code: "BUDGET_EXCEEDED" });
  });

  it("a /v1/responses stream ends with response.failed carrying BUDGET_EXCEEDED", async () => {
    const { port } = await spentTenant(USED);
    const reply = await responses(port, { stream: true }, LONG);
    const events = sseEvents(reply.text);
    const last = events.at(-1)!;
    expect(last.event).toBe("response.failed");
    expect(last.data.response.error).toEqual({
      code: "BUDGET_EXCEEDED",
      message: expect.stringContaining("day budget"),
    });
  });
});

describe("client tools answered by the gateway's model source, limited by the tenant", () => {
  it("a spent budget is the 429 not to retry, streaming or not, not a 502", async () => {
    // The gateway's `models`, wrapped as a tenant's runtime wraps its own.
    let limited: ModelSource | undefined;
    const models: ModelSource = { stream: (request, options) => limited!.stream(request, options) };
    const { port, provider, tenant } = await spentTenant(BUDGET, ["never sent"], { models });
    limited = limitModelSource(createProviderChain({ providers: [provider] }), tenant.limiter);
    const tools = [
      { type: "function", function: { name: "lookup", parameters: { type: "object" } } },
    ];
    const reply = await chat(port, { tools });
    expect(reply.status).toBe(429);
    expect(reply.json.error).toMatchObject({ type: "insufficient_quota", code: "BUDGET_EXCEEDED" });
    expect(reply.headers["x-should-retry"]).toBe("false");
    expect(Number(reply.headers["retry-after"])).toBeGreaterThan(0);
    // A stream opens with the model source's first event: refused before it, the same 429.
    const streamed = await chat(port, { tools, stream: true });
    expect(streamed.status).toBe(429);
    expect(streamed.headers["content-type"]).toContain("application/json");
    expect(streamed.json.error).toMatchObject({
      type: "insufficient_quota",
      code: "BUDGET_EXCEEDED",
    });
    expect(streamed.headers["x-should-retry"]).toBe("false");
    expect(provider.requests).toHaveLength(1);
  });

  it("a tenant over its request rate is a 429 RATE_LIMITED with Retry-After, streaming or not, not a 502", async () => {
    let limited: ModelSource | undefined;
    const models: ModelSource = { stream: (request, options) => limited!.stream(request, options) };
    const gateway = await startTenantGateway({
      limits: { requestsPerMinute: 1 },
      responses: ["first", "never sent"],
      gateway: { models },
    });
    limited = limitModelSource(
      createProviderChain({ providers: [gateway.provider] }),
      gateway.tenant.limiter,
    );
    // The minute's one request.
    expect((await chat(gateway.port)).status).toBe(200);
    const tools = [
      { type: "function", function: { name: "lookup", parameters: { type: "object" } } },
    ];
    for (const stream of [false, true]) {
      const reply = await chat(gateway.port, { tools, stream });
      expect(reply.status).toBe(429);
      expect(reply.json.error).toMatchObject({ code: "RATE_LIMITED" });
      expect(Number(reply.headers["retry-after"])).toBeGreaterThan(0);
    }
    expect(gateway.provider.requests).toHaveLength(1);
  });
});
