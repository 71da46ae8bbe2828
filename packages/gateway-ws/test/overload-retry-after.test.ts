/**
 * Every overload the gateway answers says when to try again, over real sockets on 127.0.0.1:
 * a session whose queue is full (`maxQueuedMessages`) or whose mailbox is full, on the
 * OpenAI-compatible HTTP API (`Retry-After` in seconds and `retry-after-ms`, which the
 * official `openai` SDK waits for before its retry), on the WebSocket protocol
 * (`retryAfterMs` of the error) and on the webhook ingress (`Retry-After`, and `retryAfterMs`
 * in the answer's error, a batch item's too).
 *
 * The runtime suggests when a full queue has room (its active run's likely end, 1 s when it
 * has nothing to go by, as here); an overload that comes without a suggestion (a full
 * mailbox) gets the gateway's 1 s.
 */
import { type Actor, MemoryPressureMonitor } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import OpenAI, { type APIError } from "openai";
import { describe, expect, it } from "vitest";
import {
  afterTest,
  HOOK_TOKEN,
  heldAnswer,
  hookSettings,
  useOverloadTests,
} from "./overload-support.js";
import {
  AUTH,
  deferred,
  httpCall,
  rpcError,
  startStack,
  TestClient,
  TOKEN,
  waitFor,
} from "./support.js";

useOverloadTests();

const KEY = "agent:main:busy";

/**
 * A stack whose sessions queue one message at most, with `KEY`'s queue full: a run held
 * until `release`, one message waiting behind it.
 */
async function fullQueue(
  responses: ScriptEntry[] = [],
  gateway: Parameters<typeof startStack>[0] = {},
) {
  const held = heldAnswer("first");
  const stack = await startStack({
    ...gateway,
    responses: [held.entry, "second", ...responses],
    runtime: { maxQueuedMessages: 1 },
  });
  const session = stack.runtime.session(KEY);
  const first = await session.send("first");
  await waitFor("the first run to start", () => stack.provider.requests.length === 1);
  const second = await session.send("second");
  expect(second.disposition).toBe("queued");
  return { stack, release: held.release, first, second };
}

/**
 * A stack whose sessions' mailboxes take one message, with `KEY` held inside a handler (a
 * metadata write) until `release`: the first message sent waits in its mailbox (see
 * `mailboxFilled`), the next is refused.
 */
async function fullMailbox(responses: ScriptEntry[]) {
  const stack = await startStack({ responses, runtime: { mailboxLimit: 1 } });
  const session = stack.runtime.session(KEY);
  await session.info(); // the session is alive
  const put = stack.store.sessions.put.bind(stack.store.sessions);
  const entered = deferred();
  const held = deferred();
  afterTest(() => held.resolve());
  let hold = true;
  stack.store.sessions.put = async (record) => {
    if (hold) {
      hold = false;
      entered.resolve();
      await held.promise;
    }
    return put(record);
  };
  const patching = session.patch({ displayName: "busy" });
  await entered.promise;
  const actor = stack.runtime.registry.whereis<Actor>(`session:${KEY}`);
  return {
    stack: {
      ...stack,
      mailboxFilled: () => waitFor("the mailbox to fill", () => actor!.mailboxSize === 1),
    },
    async release() {
      held.resolve();
      await patching;
    },
  };
}

/** A chat completion in session `KEY`. */
function completion(port: number) {
  return httpCall(port, "/v1/chat/completions", {
    method: "POST",
    headers: { ...AUTH, "x-beamclaw-session-key": KEY },
    body: { model: "beamclaw", messages: [{ role: "user", content: "one more" }] },
  });
}

describe("the OpenAI-compatible API", () => {
  it("a full session queue is a 429 with Retry-After and retry-after-ms from the runtime's suggestion", async () => {
    const { stack, release, first } = await fullQueue();
    const reply = await completion(stack.port);
    expect(reply.status).toBe(429);
    expect(reply.json.error).toMatchObject({ type: "server_error", code: "OVERLOADED" });
    expect(reply.headers["retry-after"]).toBe("1");
    expect(reply.headers["retry-after-ms"]).toBe("1000");
    release();
    expect((await first.result).status).toBe("completed");
  });

  it("the openai SDK waits as long as asked before its retry, which gets through once the queue drained", async () => {
    const { stack, release } = await fullQueue(["answered on the retry"]);
    const seen: Array<{ status: number; at: number; retryAfterMs: string | null }> = [];
    let retriedAt: number | undefined;
    const client = new OpenAI({
      apiKey: TOKEN,
      baseURL: `http://127.0.0.1:${stack.port}/v1`,
      defaultHeaders: { "x-beamclaw-session-key": KEY },
      maxRetries: 1,
      fetch: async (input, init) => {
        if (seen.length > 0) retriedAt ??= performance.now();
        const response = await fetch(input, init);
        seen.push({
          status: response.status,
          at: performance.now(),
          retryAfterMs: response.headers.get("retry-after-ms"),
        });
        // The queue drains as soon as the refusal reaches the client.
        if (response.status === 429) release();
        return response;
      },
    });
    const answer = await client.chat.completions.create({
      model: "beamclaw",
      messages: [{ role: "user", content: "one more" }],
    });
    expect(answer.choices[0]!.message.content).toBe("answered on the retry");
    expect(seen.map((s) => [s.status, s.retryAfterMs])).toEqual([
      [429, "1000"],
      [200, null],
    ]);
    // The SDK slept the 1 s asked for, not its own 0.5 s backoff (less up to 25 % jitter).
    expect(retriedAt! - seen[0]!.at).toBeGreaterThanOrEqual(990);
  });

  it("with maxRetries 0 the SDK surfaces the 429 as a RateLimitError carrying the hint", async () => {
    const { stack, release } = await fullQueue();
    const client = new OpenAI({
      apiKey: TOKEN,
      baseURL: `http://127.0.0.1:${stack.port}/v1`,
      defaultHeaders: { "x-beamclaw-session-key": KEY },
      maxRetries: 0,
    });
    const error = await client.chat.completions
      .create({ model: "beamclaw", messages: [{ role: "user", content: "one more" }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect((error as APIError).headers?.get("retry-after")).toBe("1");
    expect((error as APIError).headers?.get("retry-after-ms")).toBe("1000");
    release();
  });

  it("an overload without a suggestion (a full session mailbox) gets the gateway's 1 s", async () => {
    const { stack, release } = await fullMailbox(["answered"]);
    // Its mailbox takes one message; the next is refused at once.
    const waiting = completion(stack.port);
    await stack.mailboxFilled();
    const refused = await completion(stack.port);
    expect(refused.status).toBe(429);
    expect(refused.json.error).toMatchObject({ code: "OVERLOADED" });
    expect(refused.headers["retry-after"]).toBe("1");
    expect(refused.headers["retry-after-ms"]).toBe("1000");
    await release();
    expect((await waiting).status).toBe(200);
  });
});

describe("memory pressure on the OpenAI-compatible API", () => {
  it("is a 503 whose wait is in retry-after-ms too", async () => {
    const MiB = 1024 * 1024;
    const reading = { rssBytes: 100 * MiB, heapUsedBytes: 150 * MiB, heapLimitBytes: 1024 * MiB };
    const monitor = new MemoryPressureMonitor({
      maxHeapUsedBytes: 100 * MiB,
      retryAfterMs: 2_500,
      read: () => ({ ...reading }),
    });
    const stack = await startStack({
      runtime: { memoryPressure: monitor },
      gateway: { memoryPressure: monitor },
    });
    monitor.check();
    const reply = await completion(stack.port);
    expect(reply.status).toBe(503);
    expect(reply.json.error).toMatchObject({ code: "memory_pressure" });
    expect(reply.headers["retry-after"]).toBe("3");
    expect(reply.headers["retry-after-ms"]).toBe("2500");
  });
});

describe("the WebSocket protocol", () => {
  /** A `chat.send` to `KEY` refused as overloaded, with the protocol's wait of 1 s. */
  async function expectRefused(client: TestClient, idempotencyKey: string): Promise<void> {
    const error = await rpcError(
      client.request("chat.send", { sessionKey: KEY, message: "refused", idempotencyKey }),
    );
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.retryable).toBe(true);
    expect(error.retryAfterMs).toBe(1_000);
    expect(error.details).toEqual({ code: "OVERLOADED" });
  }

  it("chat.send to a full session queue is a retryable UNAVAILABLE OVERLOADED with retryAfterMs", async () => {
    const { stack, release, first } = await fullQueue();
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await expectRefused(client, "full-1");
    release();
    expect((await first.result).status).toBe("completed");
  });

  it("an overload without a suggestion (a full session mailbox) gets retryAfterMs 1000", async () => {
    const { stack, release } = await fullMailbox(["answered"]);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const waiting = client.request("chat.send", {
      sessionKey: KEY,
      message: "waits",
      idempotencyKey: "mb-1",
    });
    await stack.mailboxFilled();
    await expectRefused(client, "mb-2");
    await release();
    expect(await waiting).toEqual({ runId: "mb-1", status: "started" });
  });
});

describe("the webhook ingress", () => {
  const hooks = {
    gateway: {
      hooks: hookSettings({
        mappings: [
          {
            match: { path: "batch" },
            forEach: "events",
            sessionKey: KEY,
            messageTemplate: "{{events[0].text}}",
            deliver: false,
          },
        ],
      }),
    },
  };

  function hook(port: number, path: string, body: unknown) {
    return httpCall(port, path, {
      method: "POST",
      headers: { authorization: `Bearer ${HOOK_TOKEN}` },
      body,
    });
  }

  it("/hooks/agent to a full session queue is a 503 with Retry-After and retryAfterMs in its error", async () => {
    const { stack, release } = await fullQueue([], hooks);
    const reply = await hook(stack.port, "/hooks/agent", {
      message: "one more",
      sessionKey: KEY,
      deliver: false,
    });
    expect(reply.status).toBe(503);
    expect(reply.headers["retry-after"]).toBe("1");
    expect(reply.headers["retry-after-ms"]).toBe("1000");
    expect(reply.json).toEqual({
      ok: false,
      error: { code: "OVERLOADED", message: expect.any(String), retryAfterMs: 1_000 },
    });
    release();
  });

  it("a batch item refused for a full queue makes the batch a 503 to retry, not a 500", async () => {
    const { stack, release } = await fullQueue([], hooks);
    const reply = await hook(stack.port, "/hooks/batch", {
      events: [{ text: "a" }, { text: "b" }],
    });
    expect(reply.status).toBe(503);
    expect(reply.headers["retry-after"]).toBe("1");
    expect(reply.headers["retry-after-ms"]).toBe("1000");
    expect(reply.json).toMatchObject({
      ok: false,
      error: { code: "partial_batch", message: "2 of 2 items failed", retryAfterMs: 1_000 },
    });
    expect(reply.json.results).toEqual([
      {
        ok: false,
        error: { code: "OVERLOADED", message: expect.any(String), retryAfterMs: 1_000 },
      },
      {
        ok: false,
        error: { code: "OVERLOADED", message: expect.any(String), retryAfterMs: 1_000 },
      },
    ]);
    expect(stack.provider.requests).toHaveLength(1);
    release();
  });
});
