import { InvalidArgumentError, type ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
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
  thinkingOf,
  userText,
} from "./support.js";
import { describeTransportContract } from "./transport-contract.js";

const URL_RESPONSES = "https://api.openai.com/v1/responses";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const provider = (options: ProviderHttpOptions = {}) =>
  createOpenAIProvider({ apiKey: "sk-test", ...options });
const hello: ModelRequest = { model: "gpt-4.1", messages: [userText("Hello")] };

function serve(name: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(URL_RESPONSES, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(fixture(name));
    }),
  );
  return seen;
}

describe("createOpenAIProvider (Responses API, the default): streaming", () => {
  it("streams output_text deltas, usage with cached input, and finishes stop on response.completed", async () => {
    serve("openai-responses-text.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events[0]).toEqual({
      type: "response-start",
      id: "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654",
      model: "gpt-4.1-2025-04-14",
    });
    expect(textOf(events)).toBe("Hi there!");
    expect(events.filter((e) => e.type === "usage")).toEqual([
      {
        type: "usage",
        usage: { inputTokens: 2100, outputTokens: 11, cacheReadTokens: 2048, reasoningTokens: 0 },
      },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "completed" });
  });

  it("streams a function call: start with call_id, argument deltas, parsed input, finish tool-calls", async () => {
    serve("openai-responses-function-call.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events.find((e) => e.type === "tool-call-start")).toEqual({
      type: "tool-call-start",
      toolCallId: "call_unLAR8MvFNptuiZK6K6HCy5k",
      toolName: "get_current_weather",
    });
    const fragments = events.flatMap((e) =>
      e.type === "tool-call-delta" ? [e.inputTextDelta] : [],
    );
    expect(fragments.join("")).toBe('{"location":"Boston, MA"}');
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      {
        type: "tool-call",
        toolCallId: "call_unLAR8MvFNptuiZK6K6HCy5k",
        toolName: "get_current_weather",
        input: { location: "Boston, MA" },
      },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "tool-calls", rawReason: "completed" });
  });

  it("streams the reasoning summary as thinking, ending with the item id (paired with the next item's) and encrypted content", async () => {
    serve("openai-responses-reasoning.sse.txt");
    const events = await collect(
      provider().stream({ ...hello, model: "o4-mini", thinking: "medium" }),
    );
    expectWellFormed(events);
    expect(thinkingOf(events)).toBe(
      "**Answering a simple question**\n\nI'm checking the arithmetic: two plus two.",
    );
    const end = events.findIndex((e) => e.type === "thinking-end");
    expect(events[end]).toEqual({
      type: "thinking-end",
      // The message that followed the reasoning: OpenAI wants the two sent back together.
      signature:
        "rs_6876cf02e0bc8192b74af0fb64b715ff06fa2fcced15a5ac|msg_6876cf054f58819284ecc1058131305506fa2fcced15a5ac",
      redacted: "gAAAAABodsoIeG3A5x0dQ-ENCRYPTED-REASONING",
    });
    expect(end).toBeLessThan(events.findIndex((e) => e.type === "text-delta"));
    expect(textOf(events)).toBe("2 + 2 = 4.");
    expect(events.find((e) => e.type === "usage")).toEqual({
      type: "usage",
      usage: { inputTokens: 13, outputTokens: 80, cacheReadTokens: 0, reasoningTokens: 64 },
    });
  });

  it("response.incomplete for max_output_tokens finishes with length, after usage", async () => {
    serve("openai-responses-incomplete.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(textOf(events)).toBe("Once upon a");
    expect(events.at(-1)).toEqual({
      type: "finish",
      reason: "length",
      rawReason: "max_output_tokens",
    });
  });

  it("response.failed is a ProviderError of the kind its error code names", async () => {
    serve("openai-responses-failed.sse.txt");
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(events.map((e) => e.type)).toEqual(["response-start"]);
    expect(error.kind).toBe("server");
    expect(error.isRetryable).toBe(true);
    expect(error.message).toContain("server_error: The model failed to generate a response.");
  });

  it("an error event mid-stream is a ProviderError (rate_limit_exceeded is rate_limit)", async () => {
    serve("openai-responses-error-event.sse.txt");
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(textOf(events)).toBe("Hel");
    expect(error.kind).toBe("rate_limit");
    expect(error.isRetryable).toBe(true);
  });
});

describe("createOpenAIProvider (Responses API): request mapping", () => {
  it("maps system to instructions, messages to input items, tools (not strict), choice, limits and reasoning", async () => {
    const seen = serve("openai-responses-text.sse.txt");
    await collect(
      provider().stream({
        model: "o4-mini",
        system: "Be brief.",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "Weather in this city?" },
              { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
            ],
          },
          {
            role: "assistant",
            content: [
              {
                type: "thinking",
                text: "Need the tool.",
                signature: "rs_abc",
                redacted: "gAAAA-enc",
              },
              { type: "thinking", text: "Anthropic thinking", signature: "EqQBCgIY" },
              { type: "text", text: "Checking." },
              {
                type: "tool-call",
                toolCallId: "call_1",
                toolName: "weather",
                input: { city: "Oslo" },
              },
            ],
          },
          {
            role: "tool",
            content: [
              { type: "tool-result", toolCallId: "call_1", toolName: "weather", output: "-3 C" },
            ],
          },
        ],
        tools: [{ name: "weather", description: "Weather", inputSchema: { type: "object" } }],
        toolChoice: "required",
        maxOutputTokens: 800,
        temperature: 1,
        thinking: "low",
      }),
    );
    expect(seen[0]?.headers.authorization).toBe("Bearer sk-test");
    expect(seen[0]?.body).toEqual({
      model: "o4-mini",
      stream: true,
      instructions: "Be brief.",
      input: [
        {
          role: "user",
          content: [
            { type: "input_text", text: "Weather in this city?" },
            { type: "input_image", image_url: "data:image/png;base64,iVBORw0KGgo=" },
          ],
        },
        {
          // Its following item unknown: the encrypted content goes without the id.
          type: "reasoning",
          summary: [{ type: "summary_text", text: "Need the tool." }],
          encrypted_content: "gAAAA-enc",
        },
        { role: "assistant", content: "Checking." },
        { type: "function_call", call_id: "call_1", name: "weather", arguments: '{"city":"Oslo"}' },
        { type: "function_call_output", call_id: "call_1", output: "-3 C" },
      ],
      tools: [
        {
          type: "function",
          name: "weather",
          description: "Weather",
          parameters: { type: "object" },
          strict: false,
        },
      ],
      tool_choice: "required",
      max_output_tokens: 800,
      temperature: 1,
      reasoning: { effort: "low", summary: "auto" },
    });
  });

  it("maps a named toolChoice to a function choice", async () => {
    const seen = serve("openai-responses-text.sse.txt");
    await collect(
      provider().stream({
        ...hello,
        tools: [{ name: "weather", description: "Weather", inputSchema: { type: "object" } }],
        toolChoice: { toolName: "weather" },
      }),
    );
    expect(seen[0]?.body.tool_choice).toEqual({ type: "function", name: "weather" });
  });

  it("merges providerOptions.openai over the body (store: false, include encrypted reasoning)", async () => {
    const seen = serve("openai-responses-text.sse.txt");
    await collect(
      provider().stream({
        ...hello,
        providerOptions: { openai: { store: false, include: ["reasoning.encrypted_content"] } },
      }),
    );
    expect(seen[0]?.body).toMatchObject({ store: false, include: ["reasoning.encrypted_content"] });
  });

  it("rejects an unknown api option", () => {
    expect(() => createOpenAIProvider({ api: "completions" as "chat" })).toThrow(
      InvalidArgumentError,
    );
  });

  it("lists built-in models with prices per million tokens", async () => {
    const models = await provider().listModels!();
    expect(models.find((m) => m.id === "gpt-4.1-mini")).toEqual({
      id: "gpt-4.1-mini",
      contextWindow: 1_047_576,
      pricing: { inputPerMTok: 0.4, outputPerMTok: 1.6, cacheReadPerMTok: 0.1 },
    });
  });
});

describeTransportContract({
  name: "openai responses",
  server,
  url: URL_RESPONSES,
  provider,
  request: hello,
  goodStream: fixture("openai-responses-function-call.sse.txt"),
  rateLimitBody: {
    error: {
      message: "Rate limit reached for gpt-4.1 on requests per min (RPM).",
      type: "requests",
      param: null,
      code: "rate_limit_exceeded",
    },
  },
  httpErrors: [
    {
      what: "invalid_request_error",
      status: 400,
      body: {
        error: {
          message: "Invalid type for 'input': expected a string or array.",
          type: "invalid_request_error",
          param: "input",
          code: "invalid_type",
        },
      },
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "invalid_api_key",
      status: 401,
      body: {
        error: {
          message: "Incorrect API key provided.",
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key",
        },
      },
      kind: "auth",
      retryable: false,
    },
    {
      what: "model_not_found",
      status: 404,
      body: {
        error: {
          message: "The model `gpt-nope` does not exist.",
          type: "invalid_request_error",
          param: "model",
          code: "model_not_found",
        },
      },
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "server_error",
      status: 500,
      body: {
        error: { message: "An error occurred.", type: "server_error", param: null, code: null },
      },
      kind: "server",
      retryable: true,
    },
    {
      what: "service unavailable",
      status: 503,
      body: {
        error: { message: "Service unavailable.", type: "server_error", param: null, code: null },
      },
      kind: "overloaded",
      retryable: true,
    },
  ],
});
