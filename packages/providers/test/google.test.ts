/**
 * The Google Gemini API adapter (`models/{model}:streamGenerateContent?alt=sse`), against
 * msw replaying Gemini's documented `GenerateContentResponse` chunks and error bodies.
 */
import {
  InvalidArgumentError,
  type JsonObject,
  type ModelMessage,
  type ModelRequest,
  type ModelStreamEvent,
  ProviderError,
  type ThinkingPart,
  type ToolCallPart,
} from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  createGoogleProvider,
  DEFAULT_GOOGLE_THINKING_BUDGETS,
  GOOGLE_SKIP_SIGNATURE,
  GOOGLE_THINKING_FORMAT,
  type GoogleProviderOptions,
} from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  collectFailure,
  errorResponse,
  expectWellFormed,
  fixture,
  sseResponse,
  textOf,
  thinkingOf,
  userText,
} from "./support.js";
import { describeTransportContract } from "./transport-contract.js";

const BASE = "https://generativelanguage.googleapis.com/v1beta";

/**
 * The msw handler URL of a model's streaming call. msw reads `:name` in a path as a
 * parameter, so the colon of `:streamGenerateContent` is escaped to match it literally; the
 * `?alt=sse` query is not part of a handler URL (msw matches paths only).
 */
function streamUrl(path: string): string {
  return `${BASE}/${path}\\:streamGenerateContent`;
}

const FLASH_URL = streamUrl("models/gemini-2.5-flash");

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const API_KEY = "AIzaSyTest-0123456789abcdefghijklmnopq";
const provider = (options: GoogleProviderOptions = {}) =>
  createGoogleProvider({ apiKey: API_KEY, ...options });
const hello: ModelRequest = { model: "gemini-2.5-flash", messages: [userText("Hello")] };

/** Serves the fixture `name` (or a stream text) at `url` and records the requests. */
function serve(name: string, url = FLASH_URL, text = fixture(name)): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(text);
    }),
  );
  return seen;
}

/** Sends `request` (to the URL of its model) and returns the body Gemini received. */
async function sentBody(
  request: ModelRequest,
  options: GoogleProviderOptions = {},
): Promise<Record<string, unknown>> {
  const seen = serve("google-text.sse.txt", streamUrl(`models/${request.model}`));
  await collect(provider(options).stream(request));
  expect(seen).toHaveLength(1);
  return seen[0]!.body;
}

const SIG_CALL =
  "CiQB0e2Kb1mW4zJqXH3sVq8uD1gkK0iE6tq3x9YbP5w2JfJ8aQ0SdgHR7Ypv6XbYw+8aQ2Qf5L0u3kVJxZc1mP7rT4nH0cE=";
const SIG_PARALLEL =
  "CiIB0e2Kb8tq2xLw9Vn4YpR0cJk7e1uQm3Hs5fD6gZ0aEmQKYgHR7Ypv0Jx3mN1qW2e8tY6uI4oP0aS9dF7gH5jK3lZ2xC1vB8nM=";
const SIG_GEMINI3 =
  "EqoDCqcDAdHtim9uXb0mXz3nYc8R1wVq4kB6sJp2yT7eLf0hD9aQ5uG3iK8oN1rS4vW6xZ2bC5eF8hJ0kM3nP6qR9tU1wY4zA7cE0gI=";
const SIG_TEXT =
  "CikB0e2Kb2Xn7vY1cQ8eR3tU5iO9pA2sD4fG6hJ8kL0zX1cV3bN5mQpKIgHR7Ypv4nM6bV8cX0zL2kJ4hG6fD8sA0pO2iU4yT6rE8wQ=";

/** Google's error body: `{"error":{"code","message","status","details"}}`. */
function googleError(code: number, status: string, message: string, details?: JsonObject[]) {
  return { error: { code, message, status, ...(details === undefined ? {} : { details }) } };
}

const QUOTA_FAILURE: JsonObject = {
  "@type": "type.googleapis.com/google.rpc.QuotaFailure",
  violations: [
    {
      quotaMetric: "generativelanguage.googleapis.com/generate_content_free_tier_requests",
      quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
      quotaDimensions: { location: "global", model: "gemini-2.5-flash" },
      quotaValue: "10",
    },
  ],
};
const HELP: JsonObject = {
  "@type": "type.googleapis.com/google.rpc.Help",
  links: [
    {
      description: "Learn more about Gemini API quotas",
      url: "https://ai.google.dev/gemini-api/docs/rate-limits",
    },
  ],
};
const RATE_LIMITED = googleError(
  429,
  "RESOURCE_EXHAUSTED",
  "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
  [QUOTA_FAILURE, HELP, { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "33s" }],
);
const INVALID_KEY = googleError(
  400,
  "INVALID_ARGUMENT",
  "API key not valid. Please pass a valid API key.",
  [
    {
      "@type": "type.googleapis.com/google.rpc.ErrorInfo",
      reason: "API_KEY_INVALID",
      domain: "googleapis.com",
      metadata: { service: "generativelanguage.googleapis.com" },
    },
    {
      "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
      locale: "en-US",
      message: "API key not valid. Please pass a valid API key.",
    },
  ],
);
const CONTEXT_OVERFLOW = googleError(
  400,
  "INVALID_ARGUMENT",
  "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
);

/**
 * The assistant message the agent loop builds from a step's events: thinking parts (one per
 * `thinking-end`, with its signature and format), then the text, then the tool calls.
 */
function assistantFrom(events: ModelStreamEvent[]): ModelMessage {
  const thinking: ThinkingPart[] = [];
  const calls: ToolCallPart[] = [];
  let thinkingText = "";
  let text = "";
  for (const event of events) {
    if (event.type === "thinking-delta") thinkingText += event.text;
    else if (event.type === "text-delta") text += event.text;
    else if (event.type === "thinking-end") {
      const part: ThinkingPart = { type: "thinking", text: thinkingText };
      if (event.signature !== undefined) part.signature = event.signature;
      if (event.format !== undefined) part.format = event.format;
      thinking.push(part);
      thinkingText = "";
    } else if (event.type === "tool-call") {
      calls.push({
        type: "tool-call",
        toolCallId: event.toolCallId,
        toolName: event.toolName,
        input: event.input,
      });
    }
  }
  if (thinkingText !== "") thinking.push({ type: "thinking", text: thinkingText });
  return {
    role: "assistant",
    content: [...thinking, ...(text === "" ? [] : [{ type: "text" as const, text }]), ...calls],
  };
}

describe("createGoogleProvider: streaming", () => {
  it("streams text deltas, then usage with cached and thinking tokens, then finish stop", async () => {
    serve("google-text.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events[0]).toEqual({
      type: "response-start",
      id: "Xk0laOWqJ4-m1MkPrpPZ2Qs",
      model: "gemini-2.5-flash",
    });
    expect(events.filter((e) => e.type === "text-delta")).toHaveLength(4);
    expect(textOf(events)).toBe(
      "The capital of France is Paris. It sits on the Seine, in the north of the country, and has been the seat of French government for most of the last thousand years.",
    );
    // One usage event, from the last chunk: candidates + thoughts are the output.
    expect(events.filter((e) => e.type === "usage")).toEqual([
      {
        type: "usage",
        usage: {
          inputTokens: 2060,
          outputTokens: 41 + 73,
          cacheReadTokens: 2048,
          reasoningTokens: 73,
        },
      },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "STOP" });
  });

  it("reads the same stream with CRLF line ends", async () => {
    serve("google-text.sse.txt");
    const lf = await collect(provider().stream(hello));
    serve("", FLASH_URL, fixture("google-text.sse.txt").replaceAll("\n", "\r\n"));
    const crlf = await collect(provider().stream(hello));
    expect(crlf).toEqual(lf);
    expect(textOf(crlf)).toMatch(/^The capital of France is Paris\./);
  });

  it("adds toolUsePromptTokenCount to the input and leaves out counts Gemini did not send", async () => {
    const chunk = {
      candidates: [
        { content: { parts: [{ text: "Done." }], role: "model" }, finishReason: "STOP", index: 0 },
      ],
      usageMetadata: {
        promptTokenCount: 50,
        toolUsePromptTokenCount: 320,
        candidatesTokenCount: 4,
        totalTokenCount: 374,
      },
      modelVersion: "gemini-2.5-flash",
      responseId: "tU1laAbC",
    };
    serve("", FLASH_URL, `data: ${JSON.stringify(chunk)}\n\n`);
    const events = await collect(provider().stream(hello));
    expect(events.find((e) => e.type === "usage")).toEqual({
      type: "usage",
      usage: { inputTokens: 370, outputTokens: 4 },
    });
  });

  it("streams a function call: thought summary, its signature, then start, JSON args and the call; finish tool-calls although Gemini says STOP", async () => {
    serve("google-function-call.sse.txt");
    const events = await collect(provider().stream({ ...hello, thinking: "low" }));
    expectWellFormed(events);
    expect(events).toEqual([
      { type: "response-start", id: "fC1laKP3Dc6B1MkP8LbQwAk", model: "gemini-2.5-flash" },
      {
        type: "thinking-delta",
        text: "**Looking up the weather**\n\nThe user asks about Paris. ",
      },
      { type: "thinking-delta", text: "I should call `get_weather` with the city." },
      { type: "thinking-end", signature: SIG_CALL, format: "google" },
      { type: "tool-call-start", toolCallId: "gemini_call_1", toolName: "get_weather" },
      {
        type: "tool-call-delta",
        toolCallId: "gemini_call_1",
        inputTextDelta: '{"city":"Paris","unit":"celsius"}',
      },
      {
        type: "tool-call",
        toolCallId: "gemini_call_1",
        toolName: "get_weather",
        input: { city: "Paris", unit: "celsius" },
      },
      {
        type: "usage",
        usage: { inputTokens: 96, outputTokens: 19 + 57, reasoningTokens: 57 },
      },
      { type: "finish", reason: "tool-calls", rawReason: "STOP" },
    ]);
  });

  it("gives parallel calls without an id the ids gemini_call_1 and gemini_call_2, the signature before the first", async () => {
    serve("google-parallel-calls.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(textOf(events)).toBe("I'll check both cities.");
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      {
        type: "tool-call",
        toolCallId: "gemini_call_1",
        toolName: "get_weather",
        input: { city: "Paris" },
      },
      {
        type: "tool-call",
        toolCallId: "gemini_call_2",
        toolName: "get_weather",
        input: { city: "London" },
      },
    ]);
    expect(events.filter((e) => e.type === "tool-call-start").map((e) => e.toolCallId)).toEqual([
      "gemini_call_1",
      "gemini_call_2",
    ]);
    const ends = events.filter((e) => e.type === "thinking-end");
    expect(ends).toEqual([{ type: "thinking-end", signature: SIG_PARALLEL, format: "google" }]);
    const end = events.findIndex((e) => e.type === "thinking-end");
    expect(events[end + 1]).toEqual({
      type: "tool-call-start",
      toolCallId: "gemini_call_1",
      toolName: "get_weather",
    });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "tool-calls", rawReason: "STOP" });
  });

  it("made-up ids start again at gemini_call_1 for each call", async () => {
    serve("google-parallel-calls.sse.txt");
    await collect(provider().stream(hello));
    const events = await collect(provider().stream(hello));
    expect(events.find((e) => e.type === "tool-call-start")).toMatchObject({
      toolCallId: "gemini_call_1",
    });
  });

  it("uses the id Gemini 3 gives its function call", async () => {
    serve("google-function-call-id.sse.txt", streamUrl("models/gemini-3-pro-preview"));
    const events = await collect(provider().stream({ ...hello, model: "gemini-3-pro-preview" }));
    expectWellFormed(events);
    expect(events[0]).toEqual({
      type: "response-start",
      id: "g3aLaN2mHq6T1MkPyL7b0Qg",
      model: "gemini-3-pro-preview",
    });
    expect(events.slice(1, 5)).toEqual([
      { type: "thinking-end", signature: SIG_GEMINI3, format: GOOGLE_THINKING_FORMAT },
      { type: "tool-call-start", toolCallId: "c1q2w3e4", toolName: "get_weather" },
      { type: "tool-call-delta", toolCallId: "c1q2w3e4", inputTextDelta: '{"city":"Tokyo"}' },
      {
        type: "tool-call",
        toolCallId: "c1q2w3e4",
        toolName: "get_weather",
        input: { city: "Tokyo" },
      },
    ]);
    expect(events.find((e) => e.type === "usage")).toEqual({
      type: "usage",
      usage: { inputTokens: 64, outputTokens: 216, reasoningTokens: 201 },
    });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "tool-calls", rawReason: "STOP" });
  });

  it("a call without args gets {} as its input", async () => {
    const chunk = {
      candidates: [
        {
          content: { parts: [{ functionCall: { name: "list_files" } }], role: "model" },
          finishReason: "STOP",
          index: 0,
        },
      ],
      modelVersion: "gemini-2.5-flash",
      responseId: "nA1la",
    };
    serve("", FLASH_URL, `data: ${JSON.stringify(chunk)}\n\n`);
    const events = await collect(provider().stream(hello));
    expect(events.filter((e) => e.type.startsWith("tool-call"))).toEqual([
      { type: "tool-call-start", toolCallId: "gemini_call_1", toolName: "list_files" },
      { type: "tool-call-delta", toolCallId: "gemini_call_1", inputTextDelta: "{}" },
      { type: "tool-call", toolCallId: "gemini_call_1", toolName: "list_files", input: {} },
    ]);
  });

  it("streams thought parts as thinking, the answer as text, and a signature on a final empty text part as thinking-end", async () => {
    serve("google-thinking.sse.txt");
    const events = await collect(provider().stream({ ...hello, thinking: "medium" }));
    expectWellFormed(events);
    expect(thinkingOf(events)).toBe(
      "**Computing the GCD**\n\nUsing Euclid: 1071 = 2 × 462 + 147, 462 = 3 × 147 + 21, 147 = 7 × 21.",
    );
    expect(textOf(events)).toBe("The greatest common divisor of 1071 and 462 is **21**.");
    // The empty text part gives no text-delta, only its signature.
    expect(events.filter((e) => e.type === "text-delta")).toHaveLength(2);
    const end = events.findIndex((e) => e.type === "thinking-end");
    expect(events[end]).toEqual({ type: "thinking-end", signature: SIG_TEXT, format: "google" });
    expect(end).toBeGreaterThan(events.findLastIndex((e) => e.type === "text-delta"));
    expect(events.filter((e) => e.type === "usage")).toEqual([
      { type: "usage", usage: { inputTokens: 31, outputTokens: 156, reasoningTokens: 140 } },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "STOP" });
  });

  it.each([
    ["MAX_TOKENS", "length"],
    ["SAFETY", "content-filter"],
    ["RECITATION", "content-filter"],
    ["PROHIBITED_CONTENT", "content-filter"],
    ["MALFORMED_FUNCTION_CALL", "error"],
    ["OTHER", "other"],
    ["A_REASON_ADDED_LATER", "other"],
  ])("maps finishReason %s to %s and keeps the raw reason", async (raw, mapped) => {
    serve("", FLASH_URL, fixture("google-text.sse.txt").replace('"STOP"', JSON.stringify(raw)));
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events.at(-1)).toEqual({ type: "finish", reason: mapped, rawReason: raw });
  });

  it("MAX_TOKENS after a function call is length, not tool-calls", async () => {
    serve("", FLASH_URL, fixture("google-function-call.sse.txt").replace('"STOP"', '"MAX_TOKENS"'));
    const events = await collect(provider().stream(hello));
    expect(events.at(-1)).toEqual({ type: "finish", reason: "length", rawReason: "MAX_TOKENS" });
  });

  it("a MALFORMED_FUNCTION_CALL candidate without content finishes with error", async () => {
    const chunk = {
      candidates: [{ finishReason: "MALFORMED_FUNCTION_CALL", index: 0 }],
      usageMetadata: { promptTokenCount: 212, totalTokenCount: 212 },
      modelVersion: "gemini-2.5-flash",
      responseId: "mF1laQw",
    };
    serve("", FLASH_URL, `data: ${JSON.stringify(chunk)}\n\n`);
    const events = await collect(provider().stream(hello));
    expect(events).toEqual([
      { type: "response-start", id: "mF1laQw", model: "gemini-2.5-flash" },
      { type: "usage", usage: { inputTokens: 212, outputTokens: 0 } },
      { type: "finish", reason: "error", rawReason: "MALFORMED_FUNCTION_CALL" },
    ]);
  });

  it("a prompt blocked outright finishes content-filter with rawReason prompt:SAFETY, after usage", async () => {
    serve("google-prompt-blocked.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events).toEqual([
      { type: "response-start", id: "bL0laKa1NPqk1MkP7dLh4Ao", model: "gemini-2.5-flash" },
      { type: "usage", usage: { inputTokens: 14, outputTokens: 0 } },
      { type: "finish", reason: "content-filter", rawReason: "prompt:SAFETY" },
    ]);
  });

  it("an error chunk after the 200 (UNAVAILABLE) is a retryable overloaded ProviderError, after the events before it", async () => {
    serve("google-error-mid-stream.sse.txt");
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(events.map((e) => e.type)).toEqual(["response-start", "text-delta"]);
    expect(textOf(events)).toBe("The");
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("overloaded");
    expect(error.isRetryable).toBe(true);
    expect(error.statusCode).toBeUndefined();
    expect(error.provider).toBe("google");
    expect(error.model).toBe("gemini-2.5-flash");
    expect(error.message).toContain(
      "UNAVAILABLE: The model is overloaded. Please try again later.",
    );
    expect(error.responseBody).toBe(
      '{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}',
    );
  });

  it.each([
    ["RESOURCE_EXHAUSTED", 429, "rate_limit", true],
    ["INTERNAL", 500, "server", true],
    ["DEADLINE_EXCEEDED", 504, "timeout", true],
    ["INVALID_ARGUMENT", 400, "invalid_request", false],
    ["PERMISSION_DENIED", 403, "auth", false],
  ])("an error chunk with status %s is kind %s", async (status, code, kind, retryable) => {
    const text = `${fixture("google-text.sse.txt").split("\n\n")[0]}\n\ndata: ${JSON.stringify(
      googleError(code, status, "failed"),
    )}\n\n`;
    serve("", FLASH_URL, text);
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(events.map((e) => e.type)).toEqual(["response-start", "text-delta"]);
    expect(error.kind).toBe(kind);
    expect(error.isRetryable).toBe(retryable);
  });

  it("parts that are not an array, or a functionCall without a name, are malformed_stream", async () => {
    const first = fixture("google-text.sse.txt").split("\n\n")[0];
    const notArray = {
      candidates: [{ content: { parts: { text: "x" }, role: "model" }, index: 0 }],
    };
    serve("", FLASH_URL, `${first}\n\ndata: ${JSON.stringify(notArray)}\n\n`);
    const bad = await collectFailure(provider().stream(hello));
    expect(bad.error.kind).toBe("malformed_stream");
    expect(bad.error.isRetryable).toBe(false);
    expect(bad.error.responseBody).toBe(JSON.stringify(notArray));

    const unnamed = {
      candidates: [
        { content: { parts: [{ functionCall: { args: { a: 1 } } }], role: "model" }, index: 0 },
      ],
    };
    serve("", FLASH_URL, `data: ${JSON.stringify(unnamed)}\n\n`);
    const noName = await collectFailure(provider().stream(hello));
    expect(noName.error.kind).toBe("malformed_stream");
    expect(noName.error.message).toMatch(/functionCall without a name/);
  });

  it("a body that ends after chunks without a finishReason is a retryable network error", async () => {
    const withoutLast = fixture("google-text.sse.txt").split("\n\n").slice(0, 3).join("\n\n");
    serve("", FLASH_URL, `${withoutLast}\n\n`);
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(events.filter((e) => e.type === "text-delta")).toHaveLength(3);
    expect(error.kind).toBe("network");
    expect(error.isRetryable).toBe(true);
    expect(error.message).toMatch(/finishReason/);
  });
});

describe("createGoogleProvider: request mapping", () => {
  it("POSTs to models/{model}:streamGenerateContent?alt=sse with x-goog-api-key and per-call headers", async () => {
    const seen = serve("google-text.sse.txt");
    await collect(
      createGoogleProvider({ apiKey: API_KEY, headers: { "x-goog-user-project": "p-1" } }).stream(
        hello,
        { headers: { "x-trace": "t-1" } },
      ),
    );
    expect(seen).toHaveLength(1);
    expect(seen[0]?.url).toBe(`${BASE}/models/gemini-2.5-flash:streamGenerateContent?alt=sse`);
    expect(new URL(seen[0]!.url).searchParams.get("alt")).toBe("sse");
    expect(seen[0]?.headers).toMatchObject({
      "x-goog-api-key": API_KEY,
      "x-goog-user-project": "p-1",
      "x-trace": "t-1",
      "content-type": "application/json",
    });
    expect(seen[0]?.headers.authorization).toBeUndefined();
    // The key goes in the header only, never in the URL.
    expect(seen[0]?.url).not.toContain("key=");
  });

  it.each([
    ["gemini-2.5-flash", "models/gemini-2.5-flash"],
    ["models/gemini-2.5-flash", "models/gemini-2.5-flash"],
    ["tunedModels/my-model", "tunedModels/my-model"],
  ])("the model %s is called at %s", async (model, path) => {
    const seen = serve("google-text.sse.txt", streamUrl(path));
    const events = await collect(provider().stream({ ...hello, model }));
    expect(seen[0]?.url).toBe(`${BASE}/${path}:streamGenerateContent?alt=sse`);
    expect(events.at(-1)?.type).toBe("finish");
  });

  it("uses a custom baseUrl", async () => {
    const seen: CapturedRequest[] = [];
    server.use(
      http.post(
        "https://gemini-proxy.example.com/v1beta/models/gemini-2.5-flash\\:streamGenerateContent",
        async ({ request }) => {
          seen.push(await capture(request));
          return sseResponse(fixture("google-text.sse.txt"));
        },
      ),
    );
    await collect(provider({ baseUrl: "https://gemini-proxy.example.com/v1beta/" }).stream(hello));
    expect(seen[0]?.url).toBe(
      "https://gemini-proxy.example.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    );
  });

  it("maps system, images, tools, limits, tool calls and results, and merges consecutive turns of one role", async () => {
    const body = await sentBody({
      model: "gemini-2.5-flash",
      system: "You are terse.",
      maxOutputTokens: 1024,
      temperature: 0.2,
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is in this picture, and the weather?" },
            { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
            {
              type: "image",
              mediaType: "image/jpeg",
              url: "https://generativelanguage.googleapis.com/v1beta/files/abc-123",
            },
            { type: "text", text: "" },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "text", text: "A cat. Checking the weather." },
            {
              type: "tool-call",
              toolCallId: "gemini_call_1",
              toolName: "get_weather",
              input: { city: "Paris" },
            },
            {
              type: "tool-call",
              toolCallId: "gemini_call_2",
              toolName: "get_time",
              input: "not an object",
            },
          ],
        },
        {
          role: "tool",
          content: [
            {
              type: "tool-result",
              toolCallId: "gemini_call_1",
              toolName: "get_weather",
              output: { temperature: 21, sky: "clear" },
            },
            {
              type: "tool-result",
              toolCallId: "gemini_call_2",
              toolName: "get_time",
              output: "14:05",
            },
          ],
        },
        userText("And tomorrow?"),
        userText("In London too."),
        {
          role: "assistant",
          content: [{ type: "tool-call", toolCallId: "c-3", toolName: "get_weather", input: {} }],
        },
        {
          role: "tool",
          content: [
            {
              type: "tool-result",
              toolCallId: "c-3",
              toolName: "get_weather",
              output: "service down",
              isError: true,
            },
            {
              type: "tool-result",
              toolCallId: "c-4",
              toolName: "get_time",
              output: [1, 2],
            },
          ],
        },
      ],
      tools: [
        {
          name: "get_weather",
          description: "Current weather of a city",
          inputSchema: {
            type: "object",
            properties: { city: { type: "string" } },
            required: ["city"],
            additionalProperties: false,
          },
        },
        { name: "get_time", description: "Local time", inputSchema: { type: "object" } },
      ],
    });
    expect(body).toEqual({
      contents: [
        {
          role: "user",
          parts: [
            { text: "What is in this picture, and the weather?" },
            { inlineData: { mimeType: "image/png", data: "iVBORw0KGgo=" } },
            {
              fileData: {
                mimeType: "image/jpeg",
                fileUri: "https://generativelanguage.googleapis.com/v1beta/files/abc-123",
              },
            },
          ],
        },
        {
          role: "model",
          parts: [
            { text: "A cat. Checking the weather." },
            {
              functionCall: { name: "get_weather", args: { city: "Paris" } },
              thoughtSignature: GOOGLE_SKIP_SIGNATURE,
            },
            { functionCall: { name: "get_time", args: {} } },
          ],
        },
        {
          // The tool results and the two user messages after them: one user turn.
          role: "user",
          parts: [
            {
              functionResponse: {
                name: "get_weather",
                response: { temperature: 21, sky: "clear" },
              },
            },
            { functionResponse: { name: "get_time", response: { output: "14:05" } } },
            { text: "And tomorrow?" },
            { text: "In London too." },
          ],
        },
        {
          role: "model",
          parts: [
            {
              functionCall: { name: "get_weather", args: {} },
              thoughtSignature: GOOGLE_SKIP_SIGNATURE,
            },
          ],
        },
        {
          role: "user",
          parts: [
            { functionResponse: { name: "get_weather", response: { error: "service down" } } },
            { functionResponse: { name: "get_time", response: { output: [1, 2] } } },
          ],
        },
      ],
      systemInstruction: { parts: [{ text: "You are terse." }] },
      tools: [
        {
          functionDeclarations: [
            {
              name: "get_weather",
              description: "Current weather of a city",
              parametersJsonSchema: {
                type: "object",
                properties: { city: { type: "string" } },
                required: ["city"],
                additionalProperties: false,
              },
            },
            {
              name: "get_time",
              description: "Local time",
              parametersJsonSchema: { type: "object" },
            },
          ],
        },
      ],
      generationConfig: { maxOutputTokens: 1024, temperature: 0.2 },
    });
  });

  it("sends only contents for a plain request: no system, tools, toolConfig or generationConfig", async () => {
    const body = await sentBody({ ...hello, system: "", tools: [], toolChoice: "required" });
    expect(body).toEqual({ contents: [{ role: "user", parts: [{ text: "Hello" }] }] });
  });

  it.each([
    ["auto", { functionCallingConfig: { mode: "AUTO" } }],
    ["none", { functionCallingConfig: { mode: "NONE" } }],
    ["required", { functionCallingConfig: { mode: "ANY" } }],
    [
      { toolName: "get_weather" },
      { functionCallingConfig: { mode: "ANY", allowedFunctionNames: ["get_weather"] } },
    ],
  ] as const)("toolChoice %j becomes toolConfig %j", async (toolChoice, toolConfig) => {
    const body = await sentBody({
      ...hello,
      tools: [{ name: "get_weather", description: "", inputSchema: { type: "object" } }],
      toolChoice,
    });
    expect(body.toolConfig).toEqual(toolConfig);
  });

  it("sends no toolConfig when tools are given without a toolChoice", async () => {
    const body = await sentBody({
      ...hello,
      tools: [{ name: "get_weather", description: "", inputSchema: { type: "object" } }],
    });
    expect(body.toolConfig).toBeUndefined();
    expect(body.tools).toHaveLength(1);
  });

  it.each([
    ["gemini-2.5-flash", "off", { thinkingBudget: 0 }],
    ["gemini-2.5-flash", "minimal", { thinkingBudget: 512, includeThoughts: true }],
    ["gemini-2.5-flash", "low", { thinkingBudget: 2048, includeThoughts: true }],
    ["gemini-2.5-pro", "medium", { thinkingBudget: 8192, includeThoughts: true }],
    ["gemini-2.5-flash-lite", "high", { thinkingBudget: 24_576, includeThoughts: true }],
    ["gemini-3-flash-preview", "off", { thinkingLevel: "minimal" }],
    ["gemini-3-pro-preview", "off", { thinkingLevel: "low" }],
    ["gemini-3-pro-preview", "high", { thinkingLevel: "high", includeThoughts: true }],
    ["gemini-3-flash-preview", "minimal", { thinkingLevel: "minimal", includeThoughts: true }],
    ["gemini-3-flash-preview", "medium", { thinkingLevel: "medium", includeThoughts: true }],
  ] as const)("%s with thinking %s sends thinkingConfig %j", async (model, thinking, config) => {
    const body = await sentBody({ ...hello, model, thinking });
    expect(body.generationConfig).toEqual({ thinkingConfig: config });
  });

  it("a models/ prefix does not hide a Gemini 3 model, which takes a level", async () => {
    const seen = serve("google-text.sse.txt", streamUrl("models/gemini-3-pro-preview"));
    await collect(
      provider().stream({ ...hello, model: "models/gemini-3-pro-preview", thinking: "low" }),
    );
    expect(seen[0]?.body.generationConfig).toEqual({
      thinkingConfig: { thinkingLevel: "low", includeThoughts: true },
    });
  });

  it("sends no thinkingConfig when thinking is not set", async () => {
    const body = await sentBody({ ...hello, maxOutputTokens: 64 });
    expect(body.generationConfig).toEqual({ maxOutputTokens: 64 });
  });

  it("takes custom thinkingBudgets, keeping the defaults for the levels not given", async () => {
    expect(DEFAULT_GOOGLE_THINKING_BUDGETS).toEqual({
      minimal: 512,
      low: 2048,
      medium: 8192,
      high: 24_576,
    });
    const options = { thinkingBudgets: { medium: 4096, high: 16_000 } };
    const medium = await sentBody({ ...hello, thinking: "medium" }, options);
    expect(medium.generationConfig).toEqual({
      thinkingConfig: { thinkingBudget: 4096, includeThoughts: true },
    });
    const low = await sentBody({ ...hello, thinking: "low" }, options);
    expect(low.generationConfig).toEqual({
      thinkingConfig: { thinkingBudget: 2048, includeThoughts: true },
    });
    const high = await sentBody({ ...hello, thinking: "high" }, options);
    expect(high.generationConfig).toEqual({
      thinkingConfig: { thinkingBudget: 16_000, includeThoughts: true },
    });
  });

  it("maps responseFormat to responseMimeType application/json and responseJsonSchema, without name or strict", async () => {
    const schema = {
      type: "object",
      properties: { city: { type: "string" }, celsius: { type: "number" } },
      required: ["city", "celsius"],
      additionalProperties: false,
    };
    const body = await sentBody({
      ...hello,
      maxOutputTokens: 200,
      thinking: "off",
      responseFormat: {
        type: "json-schema",
        name: "weather",
        description: "The weather",
        strict: true,
        schema,
      },
    });
    expect(body.generationConfig).toEqual({
      maxOutputTokens: 200,
      thinkingConfig: { thinkingBudget: 0 },
      responseMimeType: "application/json",
      responseJsonSchema: schema,
    });
    expect(JSON.stringify(body)).not.toContain('"weather"');
  });

  it("merges providerOptions.google into the body, and ignores other providers' options", async () => {
    const safetySettings = [
      { category: "HARM_CATEGORY_HARASSMENT", threshold: "BLOCK_ONLY_HIGH" },
      { category: "HARM_CATEGORY_DANGEROUS_CONTENT", threshold: "BLOCK_NONE" },
    ];
    const body = await sentBody({
      ...hello,
      providerOptions: {
        google: { safetySettings, cachedContent: "cachedContents/abc123" },
        openai: { store: false },
      },
    });
    expect(body.safetySettings).toEqual(safetySettings);
    expect(body.cachedContent).toBe("cachedContents/abc123");
    expect(body.store).toBeUndefined();
    expect(body.contents).toEqual([{ role: "user", parts: [{ text: "Hello" }] }]);
  });

  it("reads providerOptions under the provider's own id", async () => {
    const body = await sentBody(
      {
        ...hello,
        providerOptions: { "gemini-eu": { labels: { team: "a" } }, google: { labels: { x: "y" } } },
      },
      { id: "gemini-eu" },
    );
    expect(body.labels).toEqual({ team: "a" });
  });

  it("an image part with neither data nor url is invalid_request, and nothing is sent", async () => {
    let requests = 0;
    server.use(
      http.post(FLASH_URL, () => {
        requests++;
        return sseResponse(fixture("google-text.sse.txt"));
      }),
    );
    const { error } = await collectFailure(
      provider().stream({
        ...hello,
        messages: [{ role: "user", content: [{ type: "image", mediaType: "image/png" }] }],
      }),
    );
    expect(error.kind).toBe("invalid_request");
    expect(error.message).toMatch(/`data` or `url`/);
    expect(requests).toBe(0);
  });
});

describe("createGoogleProvider: API key", () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it("uses GEMINI_API_KEY first", async () => {
    vi.stubEnv("GEMINI_API_KEY", "AIza-from-gemini-env");
    vi.stubEnv("GOOGLE_API_KEY", "AIza-from-google-env");
    const seen = serve("google-text.sse.txt");
    await collect(createGoogleProvider().stream(hello));
    expect(seen[0]?.headers["x-goog-api-key"]).toBe("AIza-from-gemini-env");
  });

  it("falls back to GOOGLE_API_KEY when GEMINI_API_KEY is unset or empty", async () => {
    vi.stubEnv("GEMINI_API_KEY", "");
    vi.stubEnv("GOOGLE_API_KEY", "AIza-from-google-env");
    const seen = serve("google-text.sse.txt");
    await collect(createGoogleProvider().stream(hello));
    expect(seen[0]?.headers["x-goog-api-key"]).toBe("AIza-from-google-env");
  });

  it("an apiKey option wins over the environment", async () => {
    vi.stubEnv("GEMINI_API_KEY", "AIza-from-gemini-env");
    const seen = serve("google-text.sse.txt");
    await collect(createGoogleProvider({ apiKey: "AIza-explicit" }).stream(hello));
    expect(seen[0]?.headers["x-goog-api-key"]).toBe("AIza-explicit");
  });

  it("without any key fails with kind auth before sending anything", async () => {
    vi.stubEnv("GEMINI_API_KEY", "");
    vi.stubEnv("GOOGLE_API_KEY", "");
    let requests = 0;
    server.use(
      http.post(FLASH_URL, () => {
        requests++;
        return sseResponse(fixture("google-text.sse.txt"));
      }),
    );
    const { events, error } = await collectFailure(createGoogleProvider().stream(hello));
    expect(events).toEqual([]);
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("auth");
    expect(error.isRetryable).toBe(false);
    expect(error.message).toMatch(/GEMINI_API_KEY/);
    expect(requests).toBe(0);
  });
});

describe("createGoogleProvider: thought signatures sent back", () => {
  const weatherCall = (id: string, city: string): ToolCallPart => ({
    type: "tool-call",
    toolCallId: id,
    toolName: "get_weather",
    input: { city },
  });
  const results: ModelMessage = {
    role: "tool",
    content: [
      { type: "tool-result", toolCallId: "a", toolName: "get_weather", output: { c: 21 } },
      { type: "tool-result", toolCallId: "b", toolName: "get_weather", output: { c: 14 } },
    ],
  };

  /** The `model` turns of the body sent for `assistant`. */
  async function modelTurns(
    assistant: ModelMessage,
    options: GoogleProviderOptions = {},
  ): Promise<unknown[]> {
    const messages: ModelMessage[] = [userText("Weather in Paris and London?"), assistant];
    if (assistant.role === "assistant" && assistant.content.some((p) => p.type === "tool-call")) {
      messages.push(results);
    }
    const body = await sentBody({ ...hello, messages }, options);
    return (body.contents as Array<{ role: string }>).filter((turn) => turn.role === "model");
  }

  it("puts Gemini's signature on the first function call only, and does not send thought summaries", async () => {
    const turns = await modelTurns({
      role: "assistant",
      content: [
        {
          type: "thinking",
          text: "Both cities, in parallel.",
          signature: "sigA",
          format: "google",
        },
        weatherCall("a", "Paris"),
        weatherCall("b", "London"),
      ],
    });
    expect(turns).toEqual([
      {
        role: "model",
        parts: [
          {
            functionCall: { name: "get_weather", args: { city: "Paris" } },
            thoughtSignature: "sigA",
          },
          { functionCall: { name: "get_weather", args: { city: "London" } } },
        ],
      },
    ]);
  });

  it("puts a second signature on the second call, in order", async () => {
    const turns = await modelTurns({
      role: "assistant",
      content: [
        { type: "thinking", text: "", signature: "sigA", format: "google" },
        { type: "thinking", text: "", signature: "sigB", format: "google" },
        weatherCall("a", "Paris"),
        weatherCall("b", "London"),
      ],
    });
    expect(turns).toEqual([
      {
        role: "model",
        parts: [
          {
            functionCall: { name: "get_weather", args: { city: "Paris" } },
            thoughtSignature: "sigA",
          },
          {
            functionCall: { name: "get_weather", args: { city: "London" } },
            thoughtSignature: "sigB",
          },
        ],
      },
    ]);
  });

  it("in a turn without calls, puts the signature on its last text part", async () => {
    const turns = await modelTurns({
      role: "assistant",
      content: [
        { type: "thinking", text: "Summarize.", signature: "sigT", format: "google" },
        { type: "text", text: "Paris: 21 °C." },
        { type: "text", text: "London: 14 °C." },
      ],
    });
    expect(turns).toEqual([
      {
        role: "model",
        parts: [{ text: "Paris: 21 °C." }, { text: "London: 14 °C.", thoughtSignature: "sigT" }],
      },
    ]);
  });

  it("calls from another provider get the skip signature on the first call, and the other vendor's signature is not sent", async () => {
    const anthropicSignature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
    const turns = await modelTurns({
      role: "assistant",
      content: [
        { type: "thinking", text: "Claude's reasoning", signature: anthropicSignature },
        { type: "thinking", text: "", redacted: "opaque-bytes" },
        { type: "text", text: "Checking both." },
        weatherCall("toolu_1", "Paris"),
        weatherCall("toolu_2", "London"),
      ],
    });
    expect(turns).toEqual([
      {
        role: "model",
        parts: [
          { text: "Checking both." },
          {
            functionCall: { name: "get_weather", args: { city: "Paris" } },
            thoughtSignature: GOOGLE_SKIP_SIGNATURE,
          },
          { functionCall: { name: "get_weather", args: { city: "London" } } },
        ],
      },
    ]);
    expect(GOOGLE_SKIP_SIGNATURE).toBe("skip_thought_signature_validator");
    const sent = JSON.stringify(turns);
    expect(sent).not.toContain(anthropicSignature);
    expect(sent).not.toContain("Claude's reasoning");
    expect(sent).not.toContain("opaque-bytes");
  });

  it("with skipMissingSignatures false, adds no signature to calls without one", async () => {
    const turns = await modelTurns(
      {
        role: "assistant",
        content: [
          { type: "thinking", text: "r", signature: "EqQB-anthropic" },
          weatherCall("toolu_1", "Paris"),
          weatherCall("toolu_2", "London"),
        ],
      },
      { skipMissingSignatures: false },
    );
    expect(turns).toEqual([
      {
        role: "model",
        parts: [
          { functionCall: { name: "get_weather", args: { city: "Paris" } } },
          { functionCall: { name: "get_weather", args: { city: "London" } } },
        ],
      },
    ]);
  });

  it("a text-only turn without a Google signature is sent without any", async () => {
    const turns = await modelTurns({
      role: "assistant",
      content: [
        { type: "thinking", text: "r", signature: "EqQB-anthropic" },
        { type: "text", text: "Hi." },
      ],
    });
    expect(turns).toEqual([{ role: "model", parts: [{ text: "Hi." }] }]);
  });

  it("round trip: a streamed function call, built into the assistant message as the agent loop does, goes back with its signature", async () => {
    serve("google-function-call.sse.txt");
    const first = await collect(provider().stream({ ...hello, thinking: "low" }));
    const assistant = assistantFrom(first);
    expect(assistant).toEqual({
      role: "assistant",
      content: [
        {
          type: "thinking",
          text: "**Looking up the weather**\n\nThe user asks about Paris. I should call `get_weather` with the city.",
          signature: SIG_CALL,
          format: "google",
        },
        {
          type: "tool-call",
          toolCallId: "gemini_call_1",
          toolName: "get_weather",
          input: { city: "Paris", unit: "celsius" },
        },
      ],
    });
    const seen = serve("google-text.sse.txt");
    await collect(
      provider().stream({
        ...hello,
        thinking: "low",
        messages: [
          userText("Weather in Paris?"),
          assistant,
          {
            role: "tool",
            content: [
              {
                type: "tool-result",
                toolCallId: "gemini_call_1",
                toolName: "get_weather",
                output: { temperature: 21, unit: "celsius" },
              },
            ],
          },
        ],
      }),
    );
    expect(seen[0]?.body.contents).toEqual([
      { role: "user", parts: [{ text: "Weather in Paris?" }] },
      {
        role: "model",
        parts: [
          {
            functionCall: { name: "get_weather", args: { city: "Paris", unit: "celsius" } },
            thoughtSignature: SIG_CALL,
          },
        ],
      },
      {
        role: "user",
        parts: [
          {
            functionResponse: {
              name: "get_weather",
              response: { temperature: 21, unit: "celsius" },
            },
          },
        ],
      },
    ]);
  });

  it("round trip: a text answer's signature from its final empty part goes back on the text", async () => {
    serve("google-thinking.sse.txt");
    const assistant = assistantFrom(
      await collect(provider().stream({ ...hello, thinking: "low" })),
    );
    const turns = await modelTurns(assistant);
    expect(turns).toEqual([
      {
        role: "model",
        parts: [
          {
            text: "The greatest common divisor of 1071 and 462 is **21**.",
            thoughtSignature: SIG_TEXT,
          },
        ],
      },
    ]);
  });
});

describe("createGoogleProvider: HTTP errors", () => {
  it("HTTP 429 with RetryInfo retryDelay 33s and no retry-after header gives retryAfterMs 33000", async () => {
    server.use(http.post(FLASH_URL, () => errorResponse(429, RATE_LIMITED)));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("rate_limit");
    expect(error.isRetryable).toBe(true);
    expect(error.statusCode).toBe(429);
    expect(error.retryAfterMs).toBe(33_000);
    expect(error.message).toContain("RESOURCE_EXHAUSTED: You exceeded your current quota");
  });

  it("a fractional retryDelay is read as seconds", async () => {
    const body = googleError(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [
      { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "1.5s" },
    ]);
    server.use(http.post(FLASH_URL, () => errorResponse(429, body)));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.retryAfterMs).toBe(1500);
  });

  it("a retry-after header wins over RetryInfo", async () => {
    server.use(
      http.post(FLASH_URL, () => errorResponse(429, RATE_LIMITED, { "retry-after": "5" })),
    );
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.retryAfterMs).toBe(5000);
  });

  it("an invalid API key (400 INVALID_ARGUMENT, ErrorInfo API_KEY_INVALID) is auth, not retryable", async () => {
    server.use(http.post(FLASH_URL, () => errorResponse(400, INVALID_KEY)));
    const { events, error } = await collectFailure(provider().stream(hello));
    expect(events).toEqual([]);
    expect(error.kind).toBe("auth");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(400);
    expect(error.message).toContain(
      "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.",
    );
    expect(error.responseBody).toBe(JSON.stringify(INVALID_KEY));
  });

  it("a prompt over the context window (400 INVALID_ARGUMENT) is invalid_request and says so", async () => {
    // That core's runtime recognizes this refusal, and retries with less history, is tested
    // end to end in context-overflow.test.ts; here, what it reads is checked.
    server.use(http.post(FLASH_URL, () => errorResponse(400, CONTEXT_OVERFLOW)));
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(400);
    expect(error.message).toContain(
      "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    );
    expect(error.responseBody).toBe(JSON.stringify(CONTEXT_OVERFLOW));
  });

  it("errors it throws are ProviderErrors recognised across package copies", async () => {
    serve("google-error-mid-stream.sse.txt");
    const { error } = await collectFailure(provider().stream(hello));
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.code).toBe("PROVIDER_ERROR");
  });
});

describe("createGoogleProvider: options and models", () => {
  it.each([
    [{ thinkingBudgets: { low: 0 } }, /thinkingBudgets\.low/],
    [{ thinkingBudgets: { high: 1.5 } }, /thinkingBudgets\.high/],
    [{ thinkingBudgets: { minimal: -512 } }, /thinkingBudgets\.minimal/],
    [{ thinkingBudgets: { medium: Number.NaN } }, /thinkingBudgets\.medium/],
    [{ skipMissingSignatures: "yes" as unknown as boolean }, /skipMissingSignatures/],
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ idleTimeoutMs: -5 }, /idleTimeoutMs/],
    [{ baseUrl: "ftp://example.com" }, /baseUrl/],
  ])("rejects the invalid option %j with InvalidArgumentError", (options, message) => {
    expect(() => provider(options)).toThrow(InvalidArgumentError);
    expect(() => provider(options)).toThrow(message);
  });

  it("is a v1 provider with id google, or the id given, and a google thinking format", () => {
    expect(provider().specificationVersion).toBe("v1");
    expect(provider().id).toBe("google");
    expect(provider({ id: "gemini-eu" }).id).toBe("gemini-eu");
    expect(GOOGLE_THINKING_FORMAT).toBe("google");
  });

  it("lists built-in Gemini models with prices and context windows, and applies overrides", async () => {
    const models = await provider({
      models: [
        { id: "gemini-2.5-pro", pricing: { inputPerMTok: 2.5, outputPerMTok: 15 } },
        { id: "tunedModels/my-model", contextWindow: 32_768 },
      ],
    }).listModels!();
    expect(models.find((m) => m.id === "gemini-2.5-flash")).toEqual({
      id: "gemini-2.5-flash",
      contextWindow: 1_048_576,
      pricing: { inputPerMTok: 0.3, outputPerMTok: 2.5, cacheReadPerMTok: 0.03 },
    });
    expect(models.find((m) => m.id === "gemini-2.5-pro")).toEqual({
      id: "gemini-2.5-pro",
      contextWindow: 1_048_576,
      pricing: { inputPerMTok: 2.5, outputPerMTok: 15 },
    });
    expect(models.find((m) => m.id === "tunedModels/my-model")).toEqual({
      id: "tunedModels/my-model",
      contextWindow: 32_768,
    });
    // The built-in table is not changed by a provider's overrides.
    const plain = await provider().listModels!();
    expect(plain.find((m) => m.id === "gemini-2.5-pro")?.pricing?.inputPerMTok).toBe(1.25);
    expect(plain.some((m) => m.id === "tunedModels/my-model")).toBe(false);
  });
});

describeTransportContract({
  name: "google",
  server,
  url: FLASH_URL,
  provider,
  request: hello,
  goodStream: fixture("google-text.sse.txt"),
  rateLimitBody: RATE_LIMITED,
  httpErrors: [
    {
      what: "INVALID_ARGUMENT",
      status: 400,
      body: googleError(
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field.",
        [
          {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            fieldViolations: [
              {
                field: "generation_config",
                description:
                  "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': Cannot find field.",
              },
            ],
          },
        ],
      ),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID",
      status: 400,
      body: INVALID_KEY,
      kind: "auth",
      retryable: false,
    },
    {
      what: "FAILED_PRECONDITION",
      status: 400,
      body: googleError(
        400,
        "FAILED_PRECONDITION",
        "User location is not supported for the API use.",
      ),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "UNAUTHENTICATED",
      status: 401,
      body: googleError(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
      ),
      kind: "auth",
      retryable: false,
    },
    {
      what: "PERMISSION_DENIED",
      status: 403,
      body: googleError(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
      ),
      kind: "auth",
      retryable: false,
    },
    {
      what: "NOT_FOUND (unknown model)",
      status: 404,
      body: googleError(
        404,
        "NOT_FOUND",
        "models/gemini-9.9-flash is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
      ),
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "RESOURCE_EXHAUSTED without RetryInfo",
      status: 429,
      body: googleError(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
        [QUOTA_FAILURE],
      ),
      kind: "rate_limit",
      retryable: true,
    },
    {
      what: "INTERNAL",
      status: 500,
      body: googleError(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
      ),
      kind: "server",
      retryable: true,
    },
    {
      what: "UNAVAILABLE",
      status: 503,
      body: googleError(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
      kind: "overloaded",
      retryable: true,
    },
    {
      what: "DEADLINE_EXCEEDED (the status decides: a timeout, not a server error)",
      status: 504,
      body: googleError(
        504,
        "DEADLINE_EXCEEDED",
        "The request timed out. Please try again with a shorter prompt or a smaller output.",
      ),
      kind: "timeout",
      retryable: true,
    },
    {
      what: "a plain-text 502 from a load balancer",
      status: 502,
      body: "<html><body>502 Bad Gateway</body></html>",
      kind: "server",
      retryable: true,
    },
  ],
});
