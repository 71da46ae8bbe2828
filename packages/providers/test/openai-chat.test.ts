import type { ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createOpenAIProvider, type ProviderHttpOptions } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  collectFailure,
  expectWellFormed,
  fixture,
  sseResponse,
  textOf,
  userText,
} from "./support.js";
import { describeTransportContract } from "./transport-contract.js";

const URL_CHAT = "https://api.openai.com/v1/chat/completions";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const provider = (options: ProviderHttpOptions = {}) =>
  createOpenAIProvider({ api: "chat", apiKey: "sk-test", ...options });
const hello: ModelRequest = { model: "gpt-4.1-mini", messages: [userText("Hello")] };

function serve(name: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(URL_CHAT, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(fixture(name));
    }),
  );
  return seen;
}

const openaiError = (
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
) => ({
  error: { message, type, param, code },
});

describe("createOpenAIProvider({ api: 'chat' }): streaming", () => {
  it("streams content deltas, the final usage chunk with cached tokens, then finish stop at [DONE]", async () => {
    serve("openai-chat-text.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events[0]).toEqual({
      type: "response-start",
      id: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
      model: "gpt-4.1-mini-2025-04-14",
    });
    expect(textOf(events)).toBe("Hello!");
    expect(events.filter((e) => e.type === "usage")).toEqual([
      {
        type: "usage",
        usage: { inputTokens: 1200, outputTokens: 12, cacheReadTokens: 1024, reasoningTokens: 0 },
      },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "stop" });
  });

  it("assembles parallel tool calls from streamed argument fragments by index", async () => {
    serve("openai-chat-tool-calls.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "tool-call-start")).toEqual([
      {
        type: "tool-call-start",
        toolCallId: "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        toolName: "get_weather",
      },
      {
        type: "tool-call-start",
        toolCallId: "call_8Fq3kLMhZ0RrG1wTnXaBcD2e",
        toolName: "get_time",
      },
    ]);
    const weatherArgs = events.flatMap((e) =>
      e.type === "tool-call-delta" && e.toolCallId === "call_DdmO9pD3xa9XTPNJ32zg2hcA"
        ? [e.inputTextDelta]
        : [],
    );
    expect(weatherArgs).toEqual(['{"lo', 'cation": "Par', 'is, France"}']);
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      {
        type: "tool-call",
        toolCallId: "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        toolName: "get_weather",
        input: { location: "Paris, France" },
      },
      {
        type: "tool-call",
        toolCallId: "call_8Fq3kLMhZ0RrG1wTnXaBcD2e",
        toolName: "get_time",
        input: { tz: "Europe/Paris" },
      },
    ]);
    expect(events.at(-1)).toEqual({
      type: "finish",
      reason: "tool-calls",
      rawReason: "tool_calls",
    });
  });

  it("passes tool arguments that are not valid JSON on as the raw string, losing nothing", async () => {
    const text = fixture("openai-chat-tool-calls.sse.txt").replace('is, France\\"}', "is");
    server.use(http.post(URL_CHAT, () => sseResponse(text)));
    const events = await collect(provider().stream(hello));
    expect(events.find((e) => e.type === "tool-call")).toMatchObject({
      toolName: "get_weather",
      input: '{"location": "Par' + "is",
    });
  });

  it.each([
    ["length", "length"],
    ["content_filter", "content-filter"],
    ["function_call", "tool-calls"],
    ["something_new", "other"],
  ])("maps finish_reason %s to %s", async (raw, mapped) => {
    const text = fixture("openai-chat-text.sse.txt").replace(
      '"finish_reason":"stop"',
      `"finish_reason":"${raw}"`,
    );
    server.use(http.post(URL_CHAT, () => sseResponse(text)));
    const events = await collect(provider().stream(hello));
    expect(events.at(-1)).toEqual({ type: "finish", reason: mapped, rawReason: raw });
  });

  it("a refusal is streamed as text and finishes with reason refusal", async () => {
    const text = fixture("openai-chat-text.sse.txt")
      .replace('"delta":{"content":"Hello"}', '"delta":{"refusal":"I can\'t help with that."}')
      .replace('"delta":{"content":"!"}', '"delta":{}');
    server.use(http.post(URL_CHAT, () => sseResponse(text)));
    const events = await collect(provider().stream(hello));
    expect(textOf(events)).toBe("I can't help with that.");
    expect(events.at(-1)).toEqual({ type: "finish", reason: "refusal", rawReason: "stop" });
  });

  it("an error chunk mid-stream is a ProviderError of the kind its type names", async () => {
    serve("openai-chat-error-mid-stream.sse.txt");
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(textOf(events)).toBe("Hel");
    expect(error.kind).toBe("server");
    expect(error.isRetryable).toBe(true);
    expect(error.message).toContain("The server had an error");
  });

  it("a stream that ends after finish_reason but without [DONE] is cut (OpenAI always sends it)", async () => {
    const text = fixture("openai-chat-text.sse.txt").replace("data: [DONE]\n\n", "");
    server.use(http.post(URL_CHAT, () => sseResponse(text)));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("network");
  });
});

describe("createOpenAIProvider({ api: 'chat' }): request mapping", () => {
  it("sends Authorization: Bearer and asks for a final usage chunk", async () => {
    const seen = serve("openai-chat-text.sse.txt");
    await collect(provider().stream(hello, { headers: { "openai-project": "proj_1" } }));
    expect(seen[0]?.headers).toMatchObject({
      authorization: "Bearer sk-test",
      "openai-project": "proj_1",
      "content-type": "application/json",
    });
    expect(seen[0]?.body).toEqual({
      model: "gpt-4.1-mini",
      messages: [{ role: "user", content: "Hello" }],
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it("maps system, images, assistant tool calls, tool results, tools, choice, limits and reasoning effort", async () => {
    const seen = serve("openai-chat-text.sse.txt");
    await collect(
      provider().stream({
        model: "o4-mini",
        system: "Be brief.",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "What is this?" },
              { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
              { type: "image", mediaType: "image/jpeg", url: "https://example.com/a.jpg" },
            ],
          },
          {
            role: "assistant",
            content: [
              { type: "thinking", text: "private", signature: "sig" },
              { type: "text", text: "Let me look it up." },
              { type: "tool-call", toolCallId: "call_1", toolName: "lookup", input: { q: "cat" } },
            ],
          },
          {
            role: "tool",
            content: [
              {
                type: "tool-result",
                toolCallId: "call_1",
                toolName: "lookup",
                output: { hits: 3 },
              },
            ],
          },
          {
            role: "assistant",
            content: [{ type: "tool-call", toolCallId: "call_2", toolName: "lookup", input: {} }],
          },
          {
            role: "tool",
            content: [
              {
                type: "tool-result",
                toolCallId: "call_2",
                toolName: "lookup",
                output: "timeout",
                isError: true,
              },
            ],
          },
        ],
        tools: [
          {
            name: "lookup",
            description: "Search",
            inputSchema: { type: "object", properties: {} },
          },
        ],
        toolChoice: { toolName: "lookup" },
        maxOutputTokens: 500,
        temperature: 0.5,
        thinking: "high",
      }),
    );
    expect(seen[0]?.body).toEqual({
      model: "o4-mini",
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: "system", content: "Be brief." },
        {
          role: "user",
          content: [
            { type: "text", text: "What is this?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
            { type: "image_url", image_url: { url: "https://example.com/a.jpg" } },
          ],
        },
        {
          role: "assistant",
          content: "Let me look it up.",
          tool_calls: [
            {
              id: "call_1",
              type: "function",
              function: { name: "lookup", arguments: '{"q":"cat"}' },
            },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: '{"hits":3}' },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_2", type: "function", function: { name: "lookup", arguments: "{}" } },
          ],
        },
        { role: "tool", tool_call_id: "call_2", content: "timeout" },
      ],
      tools: [
        {
          type: "function",
          function: {
            name: "lookup",
            description: "Search",
            parameters: { type: "object", properties: {} },
          },
        },
      ],
      tool_choice: { type: "function", function: { name: "lookup" } },
      max_completion_tokens: 500,
      temperature: 0.5,
      reasoning_effort: "high",
    });
  });

  it.each(["auto", "none", "required"] as const)("sends toolChoice %s as is", async (choice) => {
    const seen = serve("openai-chat-text.sse.txt");
    await collect(
      provider().stream({
        ...hello,
        tools: [{ name: "t", description: "d", inputSchema: { type: "object" } }],
        toolChoice: choice,
      }),
    );
    expect(seen[0]?.body.tool_choice).toBe(choice);
  });

  it("thinking off sends no reasoning_effort", async () => {
    const seen = serve("openai-chat-text.sse.txt");
    await collect(provider().stream({ ...hello, thinking: "off" }));
    expect(seen[0]?.body).not.toHaveProperty("reasoning_effort");
  });

  it("uses OPENAI_API_KEY from the environment; without a key it fails with kind auth", async () => {
    vi.stubEnv("OPENAI_API_KEY", "sk-from-env");
    try {
      const seen = serve("openai-chat-text.sse.txt");
      await collect(createOpenAIProvider({ api: "chat" }).stream(hello));
      expect(seen[0]?.headers.authorization).toBe("Bearer sk-from-env");
      vi.stubEnv("OPENAI_API_KEY", "");
      const { error } = await collectFailure(createOpenAIProvider({ api: "chat" }).stream(hello));
      expect(error.kind).toBe("auth");
      expect(error.message).toMatch(/OPENAI_API_KEY/);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describeTransportContract({
  name: "openai chat completions",
  server,
  url: URL_CHAT,
  provider,
  request: hello,
  goodStream: fixture("openai-chat-tool-calls.sse.txt"),
  rateLimitBody: openaiError(
    "Rate limit reached for gpt-4.1-mini in organization org-x on requests per min (RPM): Limit 500, Used 500, Requested 1.",
    "requests",
    "rate_limit_exceeded",
  ),
  httpErrors: [
    {
      what: "invalid_request_error",
      status: 400,
      body: openaiError(
        "Invalid value for 'temperature'.",
        "invalid_request_error",
        null,
        "temperature",
      ),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "invalid_api_key",
      status: 401,
      body: openaiError(
        "Incorrect API key provided: sk-test.",
        "invalid_request_error",
        "invalid_api_key",
      ),
      kind: "auth",
      retryable: false,
    },
    {
      what: "model_not_found",
      status: 404,
      body: openaiError(
        "The model `gpt-nope` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
      ),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "rate_limit_exceeded",
      status: 429,
      body: openaiError(
        "Rate limit reached for gpt-4.1-mini on tokens per min (TPM).",
        "tokens",
        "rate_limit_exceeded",
      ),
      kind: "rate_limit",
      retryable: true,
    },
    {
      what: "insufficient_quota: no credit left, retrying cannot help",
      status: 429,
      body: openaiError(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
      ),
      kind: "rate_limit",
      retryable: false,
    },
    {
      what: "server_error",
      status: 500,
      body: openaiError(
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        null,
      ),
      kind: "server",
      retryable: true,
    },
    {
      what: "engine overloaded",
      status: 503,
      body: openaiError(
        "The engine is currently overloaded, please try again later",
        "server_error",
        null,
      ),
      kind: "overloaded",
      retryable: true,
    },
  ],
});
