/**
 * Prompt caching. Anthropic caches a prompt's prefix only up to the breakpoints a request
 * marks (`cache_control`); OpenAI caches by itself and routes requests with the same
 * `prompt_cache_key` to where their prefix is cached. The vendors are faked with msw; the
 * runtime drives real sessions over them.
 */
import {
  computeCost,
  InvalidArgumentError,
  type ModelProvider,
  type ModelRequest,
  promptCacheKey,
} from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type AnthropicProviderOptions,
  createAnthropicProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  fixture,
  runtimeOver,
  sseResponse,
  userText,
} from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const ANTHROPIC_URL = "https://api.anthropic.com/v1/messages";
const EPHEMERAL = { type: "ephemeral" };
const EPHEMERAL_1H = { type: "ephemeral", ttl: "1h" };

const anthropic = (options: AnthropicProviderOptions = {}) =>
  createAnthropicProvider({ apiKey: "sk-ant-test", ...options });

/** Records every request to `url`; answers with `answers(n)` for the n-th (0-based). */
function record(url: string, answers: (n: number) => string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(answers(seen.length - 1));
    }),
  );
  return seen;
}

type Block = Record<string, unknown>;
type Turn = { role: string; content: Block[] };

/** Where a body's breakpoints are, as readable paths. */
function breakpoints(body: Record<string, unknown>): string[] {
  const out: string[] = [];
  const tools = (body.tools ?? []) as Block[];
  tools.forEach((tool, i) => {
    if (tool.cache_control !== undefined) out.push(`tools[${i}]`);
  });
  if (Array.isArray(body.system)) {
    (body.system as Block[]).forEach((block, i) => {
      if (block.cache_control !== undefined) out.push(`system[${i}]`);
    });
  }
  (body.messages as Turn[]).forEach((turn, i) => {
    turn.content.forEach((block, j) => {
      if (block.cache_control !== undefined) out.push(`messages[${i}][${j}]`);
    });
  });
  return out;
}

/** A body's messages without their breakpoints: what Anthropic's cache compares. */
function unmarked(messages: Turn[]): Turn[] {
  return messages.map((turn) => ({
    role: turn.role,
    content: turn.content.map(({ cache_control: _, ...block }) => block),
  }));
}

const WEATHER_TOOL = {
  name: "get_weather",
  description: "Weather for a city",
  inputSchema: { type: "object", properties: { location: { type: "string" } } },
};

const conversation: ModelRequest = {
  model: "claude-sonnet-4-5",
  system: "You are terse.",
  tools: [WEATHER_TOOL, { ...WEATHER_TOOL, name: "get_time" }],
  messages: [
    userText("Weather in Paris?"),
    {
      role: "assistant",
      content: [
        {
          type: "tool-call",
          toolCallId: "t1",
          toolName: "get_weather",
          input: { location: "Paris" },
        },
      ],
    },
    {
      role: "tool",
      content: [{ type: "tool-result", toolCallId: "t1", toolName: "get_weather", output: "21C" }],
    },
    { role: "assistant", content: [{ type: "text", text: "21C." }] },
    userText("And Rome?"),
  ],
};

describe("Anthropic prompt caching: where the breakpoints go", () => {
  it("by default: the last tool, the system prompt, the user turn before the last, the last message", async () => {
    const seen = record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    await collect(anthropic().stream(conversation));
    const body = seen[0]!.body;
    expect(breakpoints(body)).toEqual([
      "tools[1]",
      "system[0]",
      "messages[2][0]",
      "messages[4][0]",
    ]);
    expect(body.system).toEqual([
      { type: "text", text: "You are terse.", cache_control: EPHEMERAL },
    ]);
    const tools = body.tools as Block[];
    expect(tools[1]!.cache_control).toEqual(EPHEMERAL);
    expect(tools[0]!.cache_control).toBeUndefined();
    // The tool result's turn was the last message of the request before this one.
    const turns = body.messages as Turn[];
    expect(turns[2]!.content[0]).toMatchObject({ type: "tool_result", cache_control: EPHEMERAL });
  });

  it("never marks more than the four breakpoints Anthropic allows, however long the conversation", async () => {
    const seen = record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    const messages: ModelRequest["messages"] = [];
    for (let n = 0; n < 30; n++) {
      messages.push(userText(`question ${n}`));
      messages.push({ role: "assistant", content: [{ type: "text", text: `answer ${n}` }] });
    }
    messages.push(userText("last question"));
    await collect(anthropic().stream({ ...conversation, messages }));
    expect(breakpoints(seen[0]!.body)).toEqual([
      "tools[1]",
      "system[0]",
      "messages[58][0]",
      "messages[60][0]",
    ]);
  });

  it("a lone message gets the only breakpoint; nothing else is marked", async () => {
    const seen = record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    await collect(anthropic().stream({ model: "claude-sonnet-4-5", messages: [userText("Hi")] }));
    expect(seen[0]!.body.system).toBeUndefined();
    expect(breakpoints(seen[0]!.body)).toEqual(["messages[0][0]"]);
  });

  it("marks the last block of a turn that may carry one, never a thinking block", async () => {
    const seen = record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    await collect(
      anthropic().stream({
        model: "claude-sonnet-4-5",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "What is this?" },
              { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
            ],
          },
          {
            role: "assistant",
            content: [{ type: "thinking", text: "Looking.", signature: "sig-1" }],
          },
        ],
      }),
    );
    // The image closes the user turn; the assistant turn holds only thinking: left unmarked.
    expect(breakpoints(seen[0]!.body)).toEqual(["messages[0][1]"]);
  });

  it("prefixTtl 1h caches the tools and the system prompt for an hour, the conversation for five minutes", async () => {
    const seen = record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    await collect(anthropic({ promptCache: { prefixTtl: "1h" } }).stream(conversation));
    const body = seen[0]!.body;
    expect((body.tools as Block[])[1]!.cache_control).toEqual(EPHEMERAL_1H);
    expect((body.system as Block[])[0]!.cache_control).toEqual(EPHEMERAL_1H);
    const turns = body.messages as Turn[];
    expect(turns[4]!.content[0]!.cache_control).toEqual(EPHEMERAL);
    expect(turns[2]!.content[0]!.cache_control).toEqual(EPHEMERAL);
  });

  it("conversationTtl 1h with prefixTtl 1h marks every breakpoint for an hour", async () => {
    const seen = record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    await collect(
      anthropic({ promptCache: { prefixTtl: "1h", conversationTtl: "1h" } }).stream(conversation),
    );
    const text = JSON.stringify(seen[0]!.body);
    expect(text.split('"cache_control"').length - 1).toBe(4);
    expect(text.split('{"type":"ephemeral","ttl":"1h"}').length - 1).toBe(4);
  });

  it("promptCache false sends the request without breakpoints, the system prompt as a string", async () => {
    const seen = record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    await collect(anthropic({ promptCache: false }).stream(conversation));
    expect(seen[0]!.body.system).toBe("You are terse.");
    expect(JSON.stringify(seen[0]!.body)).not.toContain("cache_control");
  });

  it.each([
    [{ conversationTtl: "1h" }, 'conversationTtl "1h" needs prefixTtl "1h"'],
    [{ prefixTtl: "2h" }, 'promptCache.prefixTtl must be "5m" or "1h", got "2h"'],
    [{ conversationTtl: 300 }, 'promptCache.conversationTtl must be "5m" or "1h", got 300'],
    ["yes", "promptCache must be a boolean or { prefixTtl, conversationTtl }"],
    [null, "promptCache must be a boolean or { prefixTtl, conversationTtl }"],
  ])("rejects promptCache %j when the provider is made", (promptCache, message) => {
    const make = () => anthropic({ promptCache } as unknown as AnthropicProviderOptions);
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(message);
  });
});

describe("Anthropic prompt caching: usage and cost", () => {
  const ONE_HOUR_WRITE = [
    "event: message_start",
    `data: ${JSON.stringify({
      type: "message_start",
      message: {
        id: "msg_01XFDUDYJgAACzvnptvVoYEL",
        type: "message",
        role: "assistant",
        model: "claude-sonnet-4-5-20250929",
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: {
          input_tokens: 50,
          cache_creation_input_tokens: 3000,
          cache_read_input_tokens: 10_000,
          cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 2000 },
          output_tokens: 1,
        },
      },
    })}`,
    "",
    "event: content_block_start",
    'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    "",
    "event: content_block_delta",
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi."}}',
    "",
    "event: content_block_stop",
    'data: {"type":"content_block_stop","index":0}',
    "",
    "event: message_delta",
    'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":100}}',
    "",
    "event: message_stop",
    'data: {"type":"message_stop"}',
    "",
    "",
  ].join("\n");

  it("reports the writes to the one-hour cache apart, and prices them at twice the input price", async () => {
    record(ANTHROPIC_URL, () => ONE_HOUR_WRITE);
    const provider = anthropic({ promptCache: { prefixTtl: "1h" } });
    const events = await collect(provider.stream(conversation));
    const usage = events.filter((e) => e.type === "usage").at(-1);
    expect(usage).toEqual({
      type: "usage",
      usage: {
        inputTokens: 13_050,
        outputTokens: 100,
        cacheReadTokens: 10_000,
        cacheWriteTokens: 3000,
        cacheWrite1hTokens: 2000,
      },
    });
    const sonnet = (await provider.listModels!()).find((m) => m.id === "claude-sonnet-4-5");
    expect(sonnet?.pricing?.cacheWrite1hPerMTok).toBe(6);
    const cost = computeCost(
      (usage as { usage: Parameters<typeof computeCost>[0] }).usage,
      sonnet!.pricing!,
    );
    // 50 uncached at $3, 10,000 read at $0.30, 1,000 5-minute writes at $3.75, 2,000
    // one-hour writes at $6, 100 output at $15 (per million).
    expect(cost).toBeCloseTo((50 * 3 + 10_000 * 0.3 + 1000 * 3.75 + 2000 * 6 + 100 * 15) / 1e6, 12);
  });

  it("without one-hour writes the usage carries no cacheWrite1hTokens", async () => {
    record(ANTHROPIC_URL, () => fixture("anthropic-text.sse.txt"));
    const events = await collect(anthropic().stream(conversation));
    const usage = events.filter((e) => e.type === "usage").at(-1) as { usage: object };
    expect(usage.usage).not.toHaveProperty("cacheWrite1hTokens");
  });
});

/** A runtime over `provider` with one agent that has a system prompt and a tool. */
async function startRuntime(provider: ModelProvider, model: string) {
  return runtimeOver(
    [provider],
    {
      agents: [{ id: "main", model, systemPrompt: "You report the weather.", tools: ["*"] }],
      tools: [
        {
          name: "get_weather",
          description: WEATHER_TOOL.description,
          inputSchema: WEATHER_TOOL.inputSchema,
          execute: () => "21C and sunny",
        },
        {
          name: "get_current_weather",
          description: WEATHER_TOOL.description,
          inputSchema: WEATHER_TOOL.inputSchema,
          execute: () => "12C and rain",
        },
      ],
    },
    cleanups,
  );
}

describe("Anthropic prompt caching through the agent loop", () => {
  it("each request's prefix up to its last breakpoint is the next request's, marked there again", async () => {
    // Per run: a tool call, then the answer.
    const seen = record(ANTHROPIC_URL, (n) =>
      fixture(n % 2 === 0 ? "anthropic-tool-use.sse.txt" : "anthropic-text.sse.txt"),
    );
    const runtime = await startRuntime(anthropic(), "anthropic/claude-sonnet-4-5");
    const session = runtime.session("agent:main:main");
    for (const question of ["Weather in San Francisco?", "And tomorrow?", "And in Rome?"]) {
      expect((await (await session.send(question)).result).status).toBe("completed");
    }
    expect(seen).toHaveLength(6);
    for (let k = 1; k < seen.length; k++) {
      const before = seen[k - 1]!.body;
      const after = seen[k]!.body;
      // Tools and system prompt, with their breakpoints, do not change from request to request.
      expect(after.tools).toEqual(before.tools);
      expect(after.system).toEqual(before.system);
      const previous = before.messages as Turn[];
      const next = after.messages as Turn[];
      // The conversation only grows: the earlier request is a prefix of the later one ...
      expect(unmarked(next).slice(0, previous.length)).toEqual(unmarked(previous));
      // ... and the later request marks the earlier one's last message again, where its
      // cached prefix ends, and its own last message.
      const last = previous.length - 1;
      const marks = breakpoints(after);
      expect(marks).toContain(`messages[${last}][${previous[last]!.content.length - 1}]`);
      expect(marks.at(-1)).toBe(`messages[${next.length - 1}][${next.at(-1)!.content.length - 1}]`);
      expect(marks).toHaveLength(4);
    }
    // The fixtures' cache reads reach the session's counters.
    const info = await session.info();
    expect(info.metadata.cacheReadTokens).toBeGreaterThan(0);
  });
});

describe("prompt_cache_key", () => {
  const SESSION = "agent:main:telegram:direct:15551234567";

  it.each([
    {
      name: "OpenAI Responses",
      url: "https://api.openai.com/v1/responses",
      provider: () => createOpenAIProvider({ apiKey: "sk-test" }),
      answers: ["openai-responses-function-call.sse.txt", "openai-responses-text.sse.txt"],
    },
    {
      name: "OpenAI Chat Completions",
      url: "https://api.openai.com/v1/chat/completions",
      provider: () => createOpenAIProvider({ api: "chat", apiKey: "sk-test" }),
      answers: ["openai-chat-tool-calls.sse.txt", "openai-chat-text.sse.txt"],
    },
  ])(
    "$name: every request of a session carries a digest of its key, never the key",
    async (vendor) => {
      const seen = record(vendor.url, (n) => fixture(vendor.answers[n % 2]!));
      const runtime = await startRuntime(vendor.provider(), "openai/gpt-4.1");
      for (const key of [SESSION, SESSION, "agent:main:main"]) {
        const result = await (await runtime.session(key).send("Weather?")).result;
        expect(result.status).toBe("completed");
      }
      expect(seen).toHaveLength(6);
      const keys = seen.map((request) => request.body.prompt_cache_key);
      const digest = promptCacheKey(SESSION);
      expect(keys).toEqual([
        digest,
        digest,
        digest,
        digest,
        ...Array(2).fill(promptCacheKey("agent:main:main")),
      ]);
      expect(digest).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(digest).not.toBe(promptCacheKey("agent:main:main"));
      for (const request of seen) expect(JSON.stringify(request.body)).not.toContain("15551234567");
    },
  );

  it("an OpenAI-compatible server gets none unless promptCacheKey is set", async () => {
    const url = "http://127.0.0.1:8000/v1/chat/completions";
    const seen = record(url, () => fixture("openai-chat-text.sse.txt"));
    const request = { ...conversation, model: "qwen2.5-7b", cacheKey: "k-1" };
    const plain = createOpenAICompatibleProvider({
      id: "vllm",
      baseUrl: "http://127.0.0.1:8000/v1",
    });
    await collect(plain.stream(request));
    const routed = createOpenAICompatibleProvider({
      id: "vllm",
      baseUrl: "http://127.0.0.1:8000/v1",
      promptCacheKey: true,
    });
    await collect(routed.stream(request));
    expect(seen.map((r) => r.body.prompt_cache_key)).toEqual([undefined, "k-1"]);
  });

  it("createOpenAIProvider({ promptCacheKey: false }) sends none", async () => {
    const seen = record("https://api.openai.com/v1/responses", () =>
      fixture("openai-responses-text.sse.txt"),
    );
    const request = { ...conversation, model: "gpt-4.1", cacheKey: "k-1" };
    await collect(createOpenAIProvider({ apiKey: "sk-test" }).stream(request));
    await collect(
      createOpenAIProvider({ apiKey: "sk-test", promptCacheKey: false }).stream(request),
    );
    expect(seen.map((r) => r.body.prompt_cache_key)).toEqual(["k-1", undefined]);
  });

  it("a cacheKey that is not a string is an invalid_request before anything is sent", async () => {
    const seen = record("https://api.openai.com/v1/responses", () =>
      fixture("openai-responses-text.sse.txt"),
    );
    const provider = createOpenAIProvider({ apiKey: "sk-test" });
    await expect(
      collect(provider.stream({ ...conversation, cacheKey: 42 } as unknown as ModelRequest)),
    ).rejects.toMatchObject({
      kind: "invalid_request",
      message: expect.stringContaining("cacheKey"),
    });
    expect(seen).toHaveLength(0);
  });
});
