import {
  InvalidArgumentError,
  type ModelMessage,
  type ModelRequest,
  ProviderError,
} from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createAnthropicProvider, type ProviderHttpOptions } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  collectFailure,
  expectWellFormed,
  fixture,
  sseResponse,
  textOf,
  thinkingOf,
  userText,
} from "./support.js";
import { describeTransportContract } from "./transport-contract.js";

const URL_MESSAGES = "https://api.anthropic.com/v1/messages";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const provider = (options: ProviderHttpOptions = {}) =>
  createAnthropicProvider({ apiKey: "sk-ant-test", ...options });
const hello: ModelRequest = { model: "claude-sonnet-4-5", messages: [userText("Hello")] };

/** Serves `name` and records the request. */
function serve(name: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(URL_MESSAGES, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(fixture(name));
    }),
  );
  return seen;
}

const anthropicError = (type: string, message: string) => ({
  type: "error",
  error: { type, message },
  request_id: "req_011CSHoEeqs5C35K2UUqR7Fy",
});

describe("createAnthropicProvider: streaming", () => {
  it("streams text, then usage with prompt-cache reads and writes, then finish stop", async () => {
    serve("anthropic-text.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events[0]).toEqual({
      type: "response-start",
      id: "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
      model: "claude-sonnet-4-5-20250929",
    });
    expect(textOf(events)).toBe("Hello!");
    expect(events.filter((e) => e.type === "usage").at(-1)).toEqual({
      type: "usage",
      // input_tokens counts only uncached input; inputTokens is the whole prompt.
      usage: { inputTokens: 2025, outputTokens: 15, cacheReadTokens: 1800, cacheWriteTokens: 200 },
    });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "end_turn" });
  });

  it("assembles a tool call from partial JSON deltas and finishes with tool-calls", async () => {
    serve("anthropic-tool-use.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(textOf(events)).toBe("Okay, let's check the weather for San Francisco, CA:");
    expect(events.find((e) => e.type === "tool-call-start")).toEqual({
      type: "tool-call-start",
      toolCallId: "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
      toolName: "get_weather",
    });
    const fragments = events.flatMap((e) =>
      e.type === "tool-call-delta" ? [e.inputTextDelta] : [],
    );
    expect(fragments.join("")).toBe('{"location": "San Francisco, CA", "unit": "fahrenheit"}');
    expect(events.find((e) => e.type === "tool-call")).toEqual({
      type: "tool-call",
      toolCallId: "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
      toolName: "get_weather",
      input: { location: "San Francisco, CA", unit: "fahrenheit" },
    });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "tool-calls", rawReason: "tool_use" });
  });

  it("streams thinking and ends the block with its signature before the answer", async () => {
    serve("anthropic-thinking.sse.txt");
    const events = await collect(provider().stream({ ...hello, thinking: "medium" }));
    expectWellFormed(events);
    expect(thinkingOf(events)).toContain("1071 = 2 × 462 + 147\n462 = 3 × 147 + 21");
    const end = events.findIndex((e) => e.type === "thinking-end");
    expect(events[end]).toEqual({
      type: "thinking-end",
      signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...",
    });
    expect(end).toBeLessThan(events.findIndex((e) => e.type === "text-delta"));
    expect(textOf(events)).toBe("The greatest common divisor (GCD) of 1071 and 462 is **21**.");
    expect(events.filter((e) => e.type === "usage").at(-1)).toEqual({
      type: "usage",
      usage: { inputTokens: 41, outputTokens: 242 },
    });
  });

  it("gives redacted thinking back as thinking-end with its opaque data", async () => {
    const text = [
      'data: {"type":"message_start","message":{"id":"msg_r","model":"claude-sonnet-4-5","usage":{"input_tokens":5,"output_tokens":1}}}',
      'data: {"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4a"}}',
      'data: {"type":"content_block_stop","index":0}',
      'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}',
      'data: {"type":"message_stop"}',
      "",
    ].join("\n\n");
    server.use(http.post(URL_MESSAGES, () => sseResponse(text)));
    const events = await collect(provider().stream(hello));
    expect(events).toContainEqual({
      type: "thinking-end",
      redacted: "EmwKAhgBEgy3va3pzix/LafPsn4a",
    });
  });

  it.each([
    ["max_tokens", "length"],
    ["stop_sequence", "stop"],
    ["refusal", "refusal"],
    ["pause_turn", "other"],
    ["model_context_window_exceeded", "length"],
    ["a_reason_added_later", "other"],
  ])("maps stop_reason %s to finish reason %s and keeps the raw reason", async (raw, mapped) => {
    const text = fixture("anthropic-text.sse.txt").replace('"end_turn"', JSON.stringify(raw));
    server.use(http.post(URL_MESSAGES, () => sseResponse(text)));
    const events = await collect(provider().stream(hello));
    expect(events.at(-1)).toEqual({ type: "finish", reason: mapped, rawReason: raw });
  });

  it("an error event mid-stream (overloaded_error) is a retryable overloaded ProviderError", async () => {
    serve("anthropic-overloaded-mid-stream.sse.txt");
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(textOf(events)).toBe("Hel");
    expect(error.kind).toBe("overloaded");
    expect(error.isRetryable).toBe(true);
    expect(error.statusCode).toBeUndefined();
    expect(error.message).toContain("overloaded_error: Overloaded");
  });

  it("a delta for a block that never started is malformed_stream", async () => {
    const text = `${fixture("anthropic-text.sse.txt").split("\n\n")[0]}\n\ndata: {"type":"content_block_delta","index":7,"delta":{"type":"text_delta","text":"x"}}\n\n`;
    server.use(http.post(URL_MESSAGES, () => sseResponse(text)));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("malformed_stream");
  });

  it("ignores event types it does not know, as Anthropic's versioning policy asks", async () => {
    const text = fixture("anthropic-text.sse.txt").replace(
      "event: ping",
      'event: something_new\ndata: {"type":"something_new","x":1}\n\nevent: ping',
    );
    server.use(http.post(URL_MESSAGES, () => sseResponse(text)));
    expect(textOf(await collect(provider().stream(hello)))).toBe("Hello!");
  });
});

describe("createAnthropicProvider: request mapping", () => {
  it("sends x-api-key, anthropic-version 2023-06-01, extra headers, and per-call headers", async () => {
    const seen = serve("anthropic-text.sse.txt");
    await collect(
      createAnthropicProvider({
        apiKey: "sk-ant-test",
        headers: { "anthropic-beta": "interleaved-thinking-2025-05-14" },
      }).stream(hello, { headers: { "x-trace": "t-1" } }),
    );
    expect(seen[0]?.headers).toMatchObject({
      "x-api-key": "sk-ant-test",
      "anthropic-version": "2023-06-01",
      "anthropic-beta": "interleaved-thinking-2025-05-14",
      "x-trace": "t-1",
      "content-type": "application/json",
    });
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });

  it("maps system, images, assistant thinking with signature, tool calls and tool results", async () => {
    const seen = serve("anthropic-text.sse.txt");
    await collect(
      provider().stream({
        model: "claude-sonnet-4-5",
        system: "You are terse.",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "What is in this picture, and the weather?" },
              { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
              { type: "image", mediaType: "image/jpeg", url: "https://example.com/cat.jpg" },
            ],
          },
          {
            role: "assistant",
            content: [
              { type: "thinking", text: "Look, then call the tool.", signature: "sig-1" },
              { type: "thinking", text: "from another provider, unsigned" },
              // Gemini's thought signature: Anthropic would reject it, so it is left out.
              { type: "thinking", text: "", signature: "CiQB0e2Kb2s=", format: "google" },
              {
                type: "thinking",
                text: "marked as Anthropic's",
                signature: "sig-2",
                format: "anthropic",
              },
              { type: "thinking", text: "", redacted: "opaque-bytes" },
              { type: "text", text: "A cat. Checking the weather." },
              {
                type: "tool-call",
                toolCallId: "toolu_1",
                toolName: "get_weather",
                input: { city: "Paris" },
              },
            ],
          },
          {
            role: "tool",
            content: [
              {
                type: "tool-result",
                toolCallId: "toolu_1",
                toolName: "get_weather",
                output: { c: 21 },
              },
            ],
          },
          { role: "user", content: [{ type: "text", text: "And tomorrow?" }] },
          {
            role: "assistant",
            content: [
              { type: "tool-call", toolCallId: "toolu_2", toolName: "get_weather", input: {} },
            ],
          },
          {
            role: "tool",
            content: [
              {
                type: "tool-result",
                toolCallId: "toolu_2",
                toolName: "get_weather",
                output: "service down",
                isError: true,
              },
            ],
          },
        ],
        tools: [
          {
            name: "get_weather",
            description: "Weather for a city",
            inputSchema: { type: "object", properties: { city: { type: "string" } } },
          },
        ],
        toolChoice: { toolName: "get_weather" },
        maxOutputTokens: 1000,
        temperature: 0.2,
      }),
    );
    expect(seen[0]?.body).toEqual({
      model: "claude-sonnet-4-5",
      max_tokens: 1000,
      stream: true,
      // Prompt caching (on by default): breakpoints on the tools, the system prompt, the
      // user turn before the last and the last message.
      system: [{ type: "text", text: "You are terse.", cache_control: { type: "ephemeral" } }],
      temperature: 0.2,
      tools: [
        {
          name: "get_weather",
          description: "Weather for a city",
          input_schema: { type: "object", properties: { city: { type: "string" } } },
          cache_control: { type: "ephemeral" },
        },
      ],
      tool_choice: { type: "tool", name: "get_weather" },
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is in this picture, and the weather?" },
            {
              type: "image",
              source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" },
            },
            { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "Look, then call the tool.", signature: "sig-1" },
            { type: "thinking", thinking: "marked as Anthropic's", signature: "sig-2" },
            { type: "redacted_thinking", data: "opaque-bytes" },
            { type: "text", text: "A cat. Checking the weather." },
            { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
          ],
        },
        {
          // The tool result and the next user text share one user turn, results first.
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: '{"c":21}' },
            { type: "text", text: "And tomorrow?", cache_control: { type: "ephemeral" } },
          ],
        },
        {
          role: "assistant",
          content: [{ type: "tool_use", id: "toolu_2", name: "get_weather", input: {} }],
        },
        {
          role: "user",
          content: [
            {
              type: "tool_result",
              tool_use_id: "toolu_2",
              content: "service down",
              is_error: true,
              cache_control: { type: "ephemeral" },
            },
          ],
        },
      ],
    });
  });

  it.each([
    ["auto", { type: "auto" }],
    ["none", { type: "none" }],
    ["required", { type: "any" }],
  ] as const)("maps toolChoice %s to %j", async (choice, expected) => {
    const seen = serve("anthropic-text.sse.txt");
    await collect(
      provider().stream({
        ...hello,
        tools: [{ name: "t", description: "d", inputSchema: { type: "object" } }],
        toolChoice: choice,
      }),
    );
    expect(seen[0]?.body.tool_choice).toEqual(expected);
  });

  it.each([
    ["minimal", 1024],
    ["low", 2048],
    ["medium", 8192],
    ["high", 16_384],
  ] as const)(
    "thinking %s enables extended thinking with a %i-token budget on top of the default max_tokens",
    async (level, budget) => {
      const seen = serve("anthropic-thinking.sse.txt");
      await collect(provider().stream({ ...hello, thinking: level }));
      expect(seen[0]?.body.thinking).toEqual({ type: "enabled", budget_tokens: budget });
      expect(seen[0]?.body.max_tokens).toBe(4096 + budget);
    },
  );

  it.each([
    ["claude-opus-4-6", "minimal", "low", 1024],
    ["claude-sonnet-4-6", "medium", "medium", 8192],
    ["claude-opus-4-7-20260415", "high", "high", 16_384],
    ["claude-opus-5", "low", "low", 2048],
    ["claude-sonnet-5-5", "medium", "medium", 8192],
    ["claude-mythos-preview", "high", "high", 16_384],
    ["claude-fable-5-1", "low", "low", 2048],
  ] as const)(
    "thinking on %s (4.6 and later) is adaptive: %s thinking asks for %s effort, with room in max_tokens",
    async (model, level, effort, room) => {
      const seen = serve("anthropic-thinking.sse.txt");
      await collect(provider().stream({ ...hello, model, thinking: level }));
      expect(seen[0]?.body.thinking).toEqual({ type: "adaptive" });
      expect(seen[0]?.body.output_config).toEqual({ effort });
      expect(seen[0]?.body.max_tokens).toBe(4096 + room);
    },
  );

  it.each([
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "claude-opus-4-20250514",
    "claude-3-7-sonnet-20250219",
  ])("thinking on %s (before 4.6) keeps a token budget", async (model) => {
    const seen = serve("anthropic-thinking.sse.txt");
    await collect(provider().stream({ ...hello, model, thinking: "low" }));
    expect(seen[0]?.body.thinking).toEqual({ type: "enabled", budget_tokens: 2048 });
    expect(seen[0]?.body.output_config).toBeUndefined();
  });

  it("thinkingMode chooses the mode whatever the model; adaptive keeps a structured output's format and a small maxOutputTokens", async () => {
    const seen = serve("anthropic-thinking.sse.txt");
    const budget = createAnthropicProvider({ apiKey: "sk-ant-test", thinkingMode: "budget" });
    await collect(budget.stream({ ...hello, model: "claude-opus-4-6", thinking: "low" }));
    expect(seen[0]?.body.thinking).toEqual({ type: "enabled", budget_tokens: 2048 });
    const adaptive = createAnthropicProvider({ apiKey: "sk-ant-test", thinkingMode: "adaptive" });
    await collect(
      adaptive.stream({
        ...hello,
        thinking: "high",
        maxOutputTokens: 1500,
        responseFormat: { type: "json-schema", name: "answer", schema: { type: "object" } },
      }),
    );
    expect(seen[1]?.body.thinking).toEqual({ type: "adaptive" });
    expect(seen[1]?.body.max_tokens).toBe(1500);
    expect(seen[1]?.body.output_config).toEqual({
      effort: "high",
      format: { type: "json_schema", schema: { type: "object" } },
    });
    expect(() => createAnthropicProvider({ apiKey: "k", thinkingMode: "fast" as "auto" })).toThrow(
      /thinkingMode/,
    );
  });

  it("budget thinking is left off for a tool loop whose last assistant message has no Anthropic thinking (after a failover), and kept otherwise", async () => {
    const seen = serve("anthropic-thinking.sse.txt");
    const call = { type: "tool-call", toolCallId: "call_1", toolName: "t", input: {} } as const;
    const result: ModelMessage = {
      role: "tool",
      content: [{ type: "tool-result", toolCallId: "call_1", toolName: "t", output: "ok" }],
    };
    const signed = { type: "thinking", text: "Use t.", signature: "EqQBCkgIARABGAIi" } as const;
    const tools = [{ name: "t", description: "d", inputSchema: { type: "object" } }];
    const conversations: Array<[string, ModelRequest["messages"], boolean]> = [
      // Another vendor called the tool: Anthropic would refuse thinking for this turn.
      ["foreign call", [userText("go"), { role: "assistant", content: [call] }, result], false],
      ["own call", [userText("go"), { role: "assistant", content: [signed, call] }, result], true],
      // The loop ended with an answer and the user spoke again: a new turn may think.
      [
        "new turn",
        [
          userText("go"),
          { role: "assistant", content: [call] },
          result,
          { role: "assistant", content: [{ type: "text", text: "done" }] },
          userText("and now?"),
        ],
        true,
      ],
      // A message steered in beside the tool result still goes on the same turn.
      [
        "steered",
        [userText("go"), { role: "assistant", content: [call] }, result, userText("hurry")],
        false,
      ],
    ];
    for (const [what, messages, thinks] of conversations) {
      await collect(provider().stream({ ...hello, messages, tools, thinking: "low" }));
      const body = seen.at(-1)?.body;
      expect(body?.thinking, what).toEqual(
        thinks ? { type: "enabled", budget_tokens: 2048 } : undefined,
      );
    }
  });

  it("thinking off sends no thinking field, and no maxOutputTokens means max_tokens 4096", async () => {
    const seen = serve("anthropic-text.sse.txt");
    await collect(provider().stream({ ...hello, thinking: "off" }));
    expect(seen[0]?.body.thinking).toBeUndefined();
    expect(seen[0]?.body.max_tokens).toBe(4096);
  });

  it("maxOutputTokens caps thinking and answer together: the budget shrinks to leave 1024 for the answer", async () => {
    const seen = serve("anthropic-thinking.sse.txt");
    await collect(provider().stream({ ...hello, thinking: "high", maxOutputTokens: 5000 }));
    expect(seen[0]?.body.max_tokens).toBe(5000);
    expect(seen[0]?.body.thinking).toEqual({ type: "enabled", budget_tokens: 3976 });
  });

  it("rejects thinking with too small a maxOutputTokens before sending anything", async () => {
    let requests = 0;
    server.use(
      http.post(URL_MESSAGES, () => {
        requests++;
        return sseResponse(fixture("anthropic-text.sse.txt"));
      }),
    );
    const { error } = await collectFailure(
      provider().stream({ ...hello, thinking: "low", maxOutputTokens: 1500 }),
    );
    expect(error.kind).toBe("invalid_request");
    expect(error.message).toMatch(/at least 2048/);
    expect(requests).toBe(0);
  });

  it("rejects a temperature other than 1 together with thinking", async () => {
    const { error } = await collectFailure(
      provider().stream({ ...hello, thinking: "low", temperature: 0.3 }),
    );
    expect(error.kind).toBe("invalid_request");
  });

  it("rejects an image part without data or url", async () => {
    const { error } = await collectFailure(
      provider().stream({
        model: "claude-sonnet-4-5",
        messages: [{ role: "user", content: [{ type: "image", mediaType: "image/png" }] }],
      }),
    );
    expect(error.kind).toBe("invalid_request");
    expect(error.message).toMatch(/data.*url/);
  });

  it("merges providerOptions for its id over the mapped body", async () => {
    const seen = serve("anthropic-text.sse.txt");
    await collect(
      provider().stream({
        ...hello,
        providerOptions: { anthropic: { metadata: { user_id: "u-1" } }, openai: { store: false } },
      }),
    );
    expect(seen[0]?.body.metadata).toEqual({ user_id: "u-1" });
    expect(seen[0]?.body.store).toBeUndefined();
  });

  it("uses ANTHROPIC_API_KEY from the environment and a custom baseUrl", async () => {
    vi.stubEnv("ANTHROPIC_API_KEY", "sk-ant-from-env");
    try {
      const seen: CapturedRequest[] = [];
      server.use(
        http.post("https://proxy.example.com/anthropic/v1/messages", async ({ request }) => {
          seen.push(await capture(request));
          return sseResponse(fixture("anthropic-text.sse.txt"));
        }),
      );
      await collect(
        createAnthropicProvider({ baseUrl: "https://proxy.example.com/anthropic/v1/" }).stream(
          hello,
        ),
      );
      expect(seen[0]?.headers["x-api-key"]).toBe("sk-ant-from-env");
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it("without any API key fails with kind auth before sending anything", async () => {
    vi.stubEnv("ANTHROPIC_API_KEY", "");
    try {
      const { error } = await collectFailure(createAnthropicProvider().stream(hello));
      expect(error.kind).toBe("auth");
      expect(error.message).toMatch(/ANTHROPIC_API_KEY/);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it("uses an injected fetch", async () => {
    const urls: string[] = [];
    const events = await collect(
      createAnthropicProvider({
        apiKey: "k",
        fetch: async (input) => {
          urls.push(input instanceof Request ? input.url : String(input));
          return new Response(fixture("anthropic-text.sse.txt"), {
            headers: { "content-type": "text/event-stream" },
          });
        },
      }).stream(hello),
    );
    expect(urls).toEqual([URL_MESSAGES]);
    expect(textOf(events)).toBe("Hello!");
  });
});

describe("createAnthropicProvider: options and models", () => {
  it.each([
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ idleTimeoutMs: -5 }, /idleTimeoutMs/],
    [{ baseUrl: "ftp://example.com" }, /baseUrl/],
    [{ defaultMaxOutputTokens: 1.5 }, /defaultMaxOutputTokens/],
    [{ thinkingBudgets: { low: 100 } }, /thinkingBudgets.low/],
  ])("rejects the invalid option %j with InvalidArgumentError", (options, message) => {
    expect(() => createAnthropicProvider(options)).toThrow(InvalidArgumentError);
    expect(() => createAnthropicProvider(options)).toThrow(message);
  });

  it("is a v1 provider with id anthropic, or the id given", () => {
    expect(provider().specificationVersion).toBe("v1");
    expect(provider().id).toBe("anthropic");
    expect(createAnthropicProvider({ id: "claude-eu" }).id).toBe("claude-eu");
  });

  it("lists built-in models with prices per million tokens, and applies overrides", async () => {
    const models = await createAnthropicProvider({
      models: [
        { id: "claude-sonnet-4-5", pricing: { inputPerMTok: 2, outputPerMTok: 10 } },
        { id: "claude-private-1", contextWindow: 50_000 },
      ],
    }).listModels!();
    expect(models.find((m) => m.id === "claude-haiku-4-5")).toEqual({
      id: "claude-haiku-4-5",
      contextWindow: 200_000,
      pricing: {
        inputPerMTok: 1,
        outputPerMTok: 5,
        cacheWritePerMTok: 1.25,
        cacheWrite1hPerMTok: 2,
        cacheReadPerMTok: 0.1,
      },
    });
    expect(models.find((m) => m.id === "claude-sonnet-4-5")).toEqual({
      id: "claude-sonnet-4-5",
      contextWindow: 200_000,
      pricing: { inputPerMTok: 2, outputPerMTok: 10 },
    });
    expect(models.find((m) => m.id === "claude-private-1")).toEqual({
      id: "claude-private-1",
      contextWindow: 50_000,
    });
  });

  it("errors it throws are ProviderErrors recognised across package copies", async () => {
    server.use(
      http.post(URL_MESSAGES, () =>
        sseResponse(fixture("anthropic-overloaded-mid-stream.sse.txt")),
      ),
    );
    const { error } = await collectFailure(provider().stream(hello));
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.code).toBe("PROVIDER_ERROR");
  });
});

describeTransportContract({
  name: "anthropic",
  server,
  url: URL_MESSAGES,
  provider,
  request: hello,
  goodStream: fixture("anthropic-tool-use.sse.txt"),
  rateLimitBody: anthropicError(
    "rate_limit_error",
    "Number of request tokens has exceeded your per-minute rate limit",
  ),
  httpErrors: [
    {
      what: "invalid_request_error",
      status: 400,
      body: anthropicError("invalid_request_error", "messages: at least one message is required"),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "authentication_error",
      status: 401,
      body: anthropicError("authentication_error", "invalid x-api-key"),
      kind: "auth",
      retryable: false,
    },
    {
      what: "permission_error",
      status: 403,
      body: anthropicError("permission_error", "Your API key does not have permission"),
      kind: "auth",
      retryable: false,
    },
    {
      what: "not_found_error",
      status: 404,
      body: anthropicError("not_found_error", "model: claude-nope"),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "request_too_large",
      status: 413,
      body: anthropicError(
        "request_too_large",
        "Request exceeds the maximum allowed number of bytes.",
      ),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "rate_limit_error",
      status: 429,
      body: anthropicError(
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
      ),
      kind: "rate_limit",
      retryable: true,
    },
    {
      what: "api_error",
      status: 500,
      body: anthropicError("api_error", "Internal server error"),
      kind: "server",
      retryable: true,
    },
    {
      what: "a plain-text 503 from a load balancer",
      status: 503,
      body: "upstream connect error or disconnect/reset before headers",
      kind: "overloaded",
      retryable: true,
    },
    {
      what: "overloaded_error",
      status: 529,
      body: anthropicError("overloaded_error", "Overloaded"),
      kind: "overloaded",
      retryable: true,
    },
  ],
});
