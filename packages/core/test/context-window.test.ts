/**
 * Keeping requests inside the model's context window: the token estimate, the cut that leaves
 * whole older turns out of a request, the recognition of providers' "too long" refusals, and
 * the runtime's recovery from one (cut, try again, remember), with an agent's `contextTokens`
 * budget applied before anything is refused. The transcript and the history keep everything.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  AllProvidersFailedError,
  InvalidArgumentError,
  ProviderError,
  subscribeTelemetry,
  type TelemetryEvents,
} from "../src/index.js";
import type { ModelMessage, ModelRequest } from "../src/providers/types.js";
import {
  estimateMessageTokens,
  fitMessages,
  isContextOverflow,
} from "../src/sessions/context-window.js";
import { AgentRuntime, type AgentRuntimeOptions, type ModelSource } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

const KEY = "agent:main:main";
const MAIN = { id: "main", model: "test/model-1" };

const user = (text: string): ModelMessage => ({ role: "user", content: [{ type: "text", text }] });
const assistant = (text: string): ModelMessage => ({
  role: "assistant",
  content: [{ type: "text", text }],
});
const call = (id: string): ModelMessage => ({
  role: "assistant",
  content: [{ type: "tool-call", toolCallId: id, toolName: "look", input: { q: "x".repeat(36) } }],
});
const result = (id: string, output: string): ModelMessage => ({
  role: "tool",
  content: [{ type: "tool-result", toolCallId: id, toolName: "look", output }],
});

/** OpenAI's documented refusal of a prompt longer than the model's context window. */
function openAiOverflow(): ProviderError {
  const body = JSON.stringify({
    error: {
      message:
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9013 tokens. Please reduce the length of the messages.",
      type: "invalid_request_error",
      param: "messages",
      code: "context_length_exceeded",
    },
  });
  return new ProviderError(
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9013 tokens. Please reduce the length of the messages.",
    {
      kind: "invalid_request",
      provider: "openai",
      model: "gpt-4o",
      statusCode: 400,
      responseBody: body,
    },
  );
}

/** Anthropic's documented refusal (HTTP 400, `invalid_request_error`). */
function anthropicOverflow(): ProviderError {
  return new ProviderError("prompt is too long: 208310 tokens > 200000 maximum", {
    kind: "invalid_request",
    provider: "anthropic",
    model: "claude-sonnet-4-5",
    statusCode: 400,
  });
}

describe("the estimate and the cut", () => {
  it("estimates about four characters a token, 1,600 an image, 4 a message", () => {
    expect(estimateMessageTokens(user("a".repeat(400)))).toBe(104);
    expect(
      estimateMessageTokens({
        role: "user",
        content: [
          { type: "text", text: "abcd" },
          { type: "image", mediaType: "image/png", data: "AAAA" },
        ],
      }),
    ).toBe(4 + 1 + 1_600);
    // Tool output as text; tool input as JSON ({"q":"xxx…"} is 44 characters).
    expect(estimateMessageTokens(result("c1", "z".repeat(80)))).toBe(24);
    expect(estimateMessageTokens(call("c1"))).toBe(4 + 1 + 11);
  });

  it("leaves a request that fits untouched (the same array)", () => {
    const messages = [user("hello"), assistant("hi")];
    const fitted = fitMessages(messages, 1_000, 100, 1);
    expect(fitted).toEqual({ messages, dropped: 0, tokens: 100 + 6 + 5 });
    expect(fitted.messages).toBe(messages);
  });

  it("leaves whole turns out from the front: it starts with a user message, no tool result without its call", () => {
    const big = "b".repeat(400); // 104 tokens a message
    const messages = [
      user(big),
      call("c1"),
      result("c1", big),
      assistant(big),
      user(big),
      call("c2"),
      result("c2", big),
      assistant(big),
      user("now"),
    ];
    // Room for about three big messages and the last turn.
    const fitted = fitMessages(messages, 450, 0, 8);
    expect(fitted.messages[0]).toBe(messages[4]);
    expect(fitted.dropped).toBe(4);
    expect(fitted.messages.map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "tool",
      "assistant",
      "user",
    ]);
    expect(fitted.tokens).toBe(
      fitted.messages.reduce((sum, m) => sum + estimateMessageTokens(m), 0),
    );
  });

  it("starts again where the previous cut did while that fits, and cuts down to the low-water mark when it moves", () => {
    const turn = (n: number) => [
      user(`q${n} ${"q".repeat(392)}`),
      assistant(`a${n} ${"a".repeat(392)}`),
    ];
    const messages = [1, 2, 3, 4, 5, 6].flatMap(turn); // 103 tokens a message, 1,236 in all
    // The previous cut started at turn 3 (index 4): 8 messages, 824 tokens, fit 900.
    const again = fitMessages(messages, 900, 0, 12, { from: 4, lowWater: 600 });
    expect(again.dropped).toBe(4);
    expect(again.messages[0]).toBe(messages[4]);
    // Two more turns do not fit from there (1,236): the cut moves, down to 600 (turns 7 and
    // 8: 412), not just under 900.
    const grown = [...messages, ...turn(7), ...turn(8)];
    const moved = fitMessages(grown, 900, 0, 16, { from: 4, lowWater: 600 });
    expect(moved.messages[0]).toBe(grown[12]);
    expect(moved.tokens).toBe(412);
    expect(fitMessages(grown, 900, 0, 16, { from: 4 }).messages[0]).toBe(grown[8]);
    // A `from` that is not a user message's index (the history changed) is not trusted.
    expect(fitMessages(messages, 900, 0, 12, { from: 5 }).messages[0]).toBe(messages[4]);
  });

  it("never leaves out the current run's messages, even when they alone do not fit", () => {
    const messages = [user("old"), assistant("old answer"), user("x".repeat(4_000))];
    const fitted = fitMessages(messages, 100, 0, 2);
    expect(fitted.messages).toEqual([messages[2]]);
    expect(fitted.dropped).toBe(2);
    expect(fitMessages(messages, 100, 0, 0).messages).toBe(messages);
  });
});

describe("recognizing a refusal of the request's length", () => {
  it("knows OpenAI's, Anthropic's and a 413's; not other invalid requests or rate limits", () => {
    expect(isContextOverflow(openAiOverflow())).toBe(true);
    expect(isContextOverflow(anthropicOverflow())).toBe(true);
    expect(
      isContextOverflow(
        new ProviderError("HTTP 413", {
          kind: "unknown",
          provider: "vllm",
          statusCode: 413,
          responseBody: "Request Entity Too Large: request too large",
        }),
      ),
    ).toBe(true);
    // The body alone may say it (a compatible server with a terse message).
    expect(
      isContextOverflow(
        new ProviderError("HTTP 400", {
          kind: "invalid_request",
          provider: "ollama",
          statusCode: 400,
          responseBody: '{"error":"input is too long for the context window"}',
        }),
      ),
    ).toBe(true);
    // llama.cpp's server, in its older and newer words.
    for (const [message, body] of [
      [
        "llamacpp/qwen3: error in stream: invalid_request_error: the request exceeds the available context size. try increasing the context size or enable context shift",
        undefined,
      ],
      [
        "HTTP 400",
        '{"error":{"code":400,"message":"request (9000 tokens) exceeds the available context size (8192 tokens), try increasing it","type":"exceed_context_size_error"}}',
      ],
    ] as const) {
      expect(
        isContextOverflow(
          new ProviderError(message, {
            kind: "invalid_request",
            provider: "llamacpp",
            ...(body === undefined ? {} : { statusCode: 400, responseBody: body }),
          }),
        ),
      ).toBe(true);
    }
    // Hugging Face text-generation-inference: HTTP 422 `{"error": "...", "error_type":
    // "validation"}`, as the providers adapter reads it (an invalid request).
    const tgi = (error: string) =>
      new ProviderError(`tgi/tgi: HTTP 422 validation: ${error}`, {
        kind: "invalid_request",
        provider: "tgi",
        statusCode: 422,
        responseBody: JSON.stringify({ error, error_type: "validation" }),
      });
    expect(
      isContextOverflow(
        tgi(
          "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 3980 `inputs` tokens and 512 `max_new_tokens`",
        ),
      ),
    ).toBe(true);
    expect(
      isContextOverflow(
        tgi("Input validation error: `inputs` must have less than 4096 tokens. Given: 5000"),
      ),
    ).toBe(true);
    // The answer's budget alone passes the window: no shorter history can help.
    expect(
      isContextOverflow(
        tgi(
          "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 32769. Given: 30 `inputs` tokens and 999999999 `max_new_tokens`",
        ),
      ),
    ).toBe(false);
    expect(
      isContextOverflow(
        new ProviderError("max_tokens: 100000 > 8192, which is the maximum allowed", {
          kind: "invalid_request",
          provider: "anthropic",
          statusCode: 400,
        }),
      ),
    ).toBe(false);
    expect(
      isContextOverflow(
        new ProviderError("Request too large for gpt-4o on tokens per min (TPM)", {
          kind: "rate_limit",
          provider: "openai",
          statusCode: 429,
        }),
      ),
    ).toBe(false);
    expect(isContextOverflow(new Error("prompt is too long"))).toBe(false);
    expect(isContextOverflow(undefined)).toBe(false);
  });

  it("sees through a chain's error when one of its models refused the length", () => {
    const refused = new AllProvidersFailedError([
      { ref: "openai/gpt-4o", attempt: 1, error: openAiOverflow() },
      {
        ref: "local/m",
        attempt: 1,
        error: new ProviderError("connection refused", { kind: "network", provider: "local" }),
      },
    ]);
    expect(isContextOverflow(refused)).toBe(true);
    const other = new AllProvidersFailedError([
      {
        ref: "local/m",
        attempt: 1,
        error: new ProviderError("connection refused", { kind: "network", provider: "local" }),
      },
    ]);
    expect(isContextOverflow(other)).toBe(false);
  });
});

// ------------------------------------------------------------------ through the runtime

/**
 * A model with a context window of `window` estimated tokens (messages only): it refuses a
 * longer request the way OpenAI does, before any output, and answers `answer <n>` otherwise.
 */
class WindowedModel implements ModelSource {
  readonly requests: ModelMessage[][] = [];
  refusals = 0;
  window: number;
  /** A refusal after some output (a mid-stream failure), for the next request. */
  failMidStream = false;

  constructor(window: number) {
    this.window = window;
  }

  async *stream(request: Omit<ModelRequest, "model">) {
    const messages = [...request.messages];
    this.requests.push(messages);
    if (this.failMidStream) {
      this.failMidStream = false;
      yield { type: "text-delta", text: "partial" };
      throw openAiOverflow();
    }
    const tokens = messages.reduce((sum, m) => sum + estimateMessageTokens(m), 0);
    if (tokens > this.window) {
      this.refusals++;
      throw openAiOverflow();
    }
    yield { type: "text-delta", text: `answer ${this.requests.length}` };
    yield { type: "usage", usage: { inputTokens: tokens, outputTokens: 2 } };
  }
}

const offs: Array<() => void> = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const off of offs.splice(0)) off();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function telemetry(): TelemetryEvents["beamclaw:session.context"][] {
  const seen: TelemetryEvents["beamclaw:session.context"][] = [];
  offs.push(subscribeTelemetry("beamclaw:session.context", (event) => seen.push(event)));
  return seen;
}

async function runtimeOver(model: ModelSource, options: Partial<AgentRuntimeOptions> = {}) {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({ store, models: model, agents: [MAIN], ...options });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { runtime, store, session: runtime.session(KEY) };
}

/** A message of about 500 estimated tokens, numbered. */
const long = (n: number) => `message ${n}: ${"word ".repeat(400)}`;

describe("the runtime within the context window", () => {
  it("a refused request is cut and tried again; the session remembers the cut; the transcript keeps everything", async () => {
    const model = new WindowedModel(3_000);
    const seen = telemetry();
    const { session, store } = await runtimeOver(model);
    for (let n = 1; n <= 5; n++) {
      expect(await (await session.send(long(n))).result).toMatchObject({ status: "completed" });
    }
    // 5 × ~510 tokens of questions and short answers fit; the 6th does not.
    expect(model.refusals).toBe(0);
    const sixth = await (await session.send(long(6))).result;
    expect(sixth).toMatchObject({ status: "completed", steps: 1 });
    expect(model.refusals).toBe(1);
    const [refused, retried] = model.requests.slice(-2);
    expect(retried!.length).toBeLessThan(refused!.length);
    expect(retried![0]!.role).toBe("user");
    expect(retried!.at(-1)).toEqual(refused!.at(-1));
    expect(seen).toEqual([
      expect.objectContaining({
        session: KEY,
        agent: "main",
        runId: sixth.runId,
        reason: "overflow",
        droppedMessages: refused!.length - retried!.length,
        sentMessages: retried!.length,
      }),
    ]);
    // The next run is cut before it is sent: no second refusal. Its request starts where the
    // retried one did (the prompt's beginning, what a prompt cache keeps, did not move), so
    // no new cut is announced.
    const before = model.requests.length;
    expect(await (await session.send(long(7))).result).toMatchObject({ status: "completed" });
    expect(model.refusals).toBe(1);
    expect(model.requests.length).toBe(before + 1);
    expect(model.requests.at(-1)![0]).toEqual(retried![0]);
    expect(model.requests.at(-1)!.length).toBe(retried!.length + 2);
    expect(seen).toHaveLength(1);
    // Only the requests were cut: the transcript has every message of all seven turns.
    const transcript = await store.transcripts.read(KEY);
    expect(
      transcript.filter((r) => (r.entry as { message?: ModelMessage }).message?.role === "user"),
    ).toHaveLength(7);
    expect((await session.info()).historyLength).toBe(14);
  });

  it("the learned cut is kept with the session: after hibernation and after a restart the refusal does not come back", async () => {
    const model = new WindowedModel(3_000);
    const { runtime, session, store } = await runtimeOver(model);
    for (let n = 1; n <= 6; n++) await (await session.send(long(n))).result;
    expect(model.refusals).toBe(1);
    const learned = (await session.info()).metadata.contextLimit;
    expect(learned).toEqual({ model: "test/model-1", maxTokens: expect.any(Number) });
    expect((await store.sessions.get(KEY))?.contextLimit).toEqual(learned);

    expect(runtime.hibernateIdleSessions()).toBe(1);
    await vi.waitFor(() => expect(runtime.activeSessions()).not.toContain(KEY));
    expect(await (await session.send(long(7))).result).toMatchObject({ status: "completed" });
    expect(model.refusals).toBe(1);

    await runtime.stop();
    const again = new AgentRuntime({ store, models: model, agents: [MAIN] });
    cleanups.push(() => again.stop());
    await again.start();
    const sent = model.requests.length;
    expect(await (await again.session(KEY).send(long(8))).result).toMatchObject({
      status: "completed",
    });
    expect(model.refusals).toBe(1);
    expect(model.requests.length).toBe(sent + 1);
    expect((await again.session(KEY).info()).metadata.contextLimit).toEqual(learned);
  });

  it("a learned cut is for one model: a session moved to another model forgets it", async () => {
    const model = new WindowedModel(3_000);
    const { session, store } = await runtimeOver(model);
    for (let n = 1; n <= 6; n++) await (await session.send(long(n))).result;
    expect((await session.info()).metadata.contextLimit?.model).toBe("test/model-1");
    // The other model's window is larger: the whole history is sent to it.
    model.window = 1_000_000;
    expect(await (await session.send("short", { model: "test/model-2" })).result).toMatchObject({
      status: "completed",
    });
    expect(model.requests.at(-1)).toHaveLength(13);
    expect((await session.info()).metadata.contextLimit).toBeUndefined();
    expect((await store.sessions.get(KEY))?.contextLimit).toBeUndefined();
  });

  it("a stored contextLimit that makes no sense is ignored and dropped, not trusted", async () => {
    const model = new WindowedModel(1_000_000);
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const at = Date.now();
    await store.sessions.put({
      key: KEY,
      agentId: "main",
      createdAt: at,
      updatedAt: at,
      contextLimit: { model: "test/model-1", maxTokens: -5 },
    });
    const runtime = new AgentRuntime({ store, models: model, agents: [MAIN] });
    cleanups.push(() => runtime.stop());
    await runtime.start();
    const session = runtime.session(KEY);
    expect(await (await session.send(long(1))).result).toMatchObject({ status: "completed" });
    expect(model.requests.at(-1)).toHaveLength(1);
    expect((await session.info()).metadata.contextLimit).toBeUndefined();
  });

  it("an agent's contextTokens cuts every request before the model sees it", async () => {
    const model = new WindowedModel(1_000_000);
    const seen = telemetry();
    const { session } = await runtimeOver(model, {
      agents: [{ ...MAIN, systemPrompt: "s".repeat(400), contextTokens: 1_300 }],
    });
    for (let n = 1; n <= 6; n++) await (await session.send(long(n))).result;
    expect(model.refusals).toBe(0);
    for (const request of model.requests) {
      const tokens = request.reduce((sum, m) => sum + estimateMessageTokens(m), 0);
      // The system prompt's 100 tokens count against the budget too.
      expect(tokens + 100).toBeLessThanOrEqual(1_300);
      expect(request[0]!.role).toBe("user");
    }
    expect(model.requests.at(-1)!.length).toBeLessThan(11);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((e) => e.reason === "budget" && e.maxTokens === 1_300)).toBe(true);
  });

  it("with contextTokens, the beginning of the requests moves only once in a while (prompt-cache friendly)", async () => {
    const model = new WindowedModel(1_000_000);
    const seen = telemetry();
    const { session } = await runtimeOver(model, {
      agents: [{ ...MAIN, contextTokens: 2_100 }],
    });
    // About 110 tokens a turn: the budget holds about 19 turns.
    for (let n = 1; n <= 40; n++) {
      await (await session.send(`message ${n}: ${"word ".repeat(80)}`)).result;
    }
    const starts = model.requests.map((request) => request[0]);
    const moves = starts.filter((first, i) => i > 0 && first !== starts[i - 1]).length;
    // Every request over the budget was cut, but the start moved only when the room left at
    // the last cut (a quarter of the budget) ran out: every few turns, not on every request.
    const cutRequests = model.requests.filter((request, i) => request.length < 2 * i + 1).length;
    expect(cutRequests).toBeGreaterThan(15);
    expect(moves).toBeGreaterThan(1);
    expect(moves).toBeLessThan(cutRequests / 3);
    expect(seen).toHaveLength(moves);
    for (const request of model.requests) {
      expect(request.reduce((sum, m) => sum + estimateMessageTokens(m), 0)).toBeLessThanOrEqual(
        2_100,
      );
    }
  });

  it("a run whose own messages are too long fails with the provider's refusal after at most three tries", async () => {
    const model = new WindowedModel(300);
    const { session } = await runtimeOver(model);
    await (await session.send("short")).result;
    const result = await (await session.send(long(1))).result;
    expect(result.status).toBe("failed");
    expect(result.error?.code).toBe("PROVIDER_ERROR");
    expect(result.error?.message).toContain("maximum context length");
    // Once with the history, once without it; nothing more can be left out.
    expect(model.refusals).toBe(2);
    expect(model.requests.at(-1)!.length).toBe(1);
    // The session is not stuck: a short message runs.
    expect(await (await session.send("short again")).result).toMatchObject({ status: "completed" });
  });

  it("a refusal after output has started is not tried again", async () => {
    const model = new WindowedModel(1_000_000);
    const { session } = await runtimeOver(model);
    model.failMidStream = true;
    const result = await (await session.send("hello")).result;
    expect(result.status).toBe("failed");
    expect(model.requests).toHaveLength(1);
  });

  it("refuses a contextTokens that is not a whole number >= 1", async () => {
    const store = new MemoryStore();
    for (const bad of [0, -5, 1.5, "1000", Number.NaN]) {
      expect(
        () =>
          new AgentRuntime({
            store,
            models: new WindowedModel(1),
            agents: [{ ...MAIN, contextTokens: bad as number }],
          }),
      ).toThrow(InvalidArgumentError);
    }
  });
});
