/**
 * Structured output: a request's `responseFormat` (a JSON Schema the answer must conform to)
 * as each vendor wants it: Anthropic's `output_config.format`, Chat Completions'
 * `response_format`, the Responses API's `text.format`. The JSON answer streams as ordinary
 * text, refusals finish with reason `refusal`, and a schema the vendor rejects is a typed,
 * non-retryable `invalid_request`. The vendors are faked with msw, replaying their
 * documented event shapes in small chunks.
 */
import {
  InvalidArgumentError,
  type JsonObject,
  type ModelProvider,
  type ModelRequest,
  type ModelResponseFormat,
  ProviderError,
} from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
  type OpenAICompatibleProviderOptions,
} from "../src/index.js";
import { mergeIntoField } from "../src/json.js";
import {
  type CapturedRequest,
  capture,
  collect,
  collectFailure,
  errorResponse,
  expectWellFormed,
  sseResponse,
  textOf,
  userText,
} from "./support.js";

const ANTHROPIC_URL = "https://api.anthropic.com/v1/messages";
const RESPONSES_URL = "https://api.openai.com/v1/responses";
const CHAT_URL = "https://api.openai.com/v1/chat/completions";
const OLLAMA_BASE = "http://127.0.0.1:11434/v1";
const OLLAMA_URL = `${OLLAMA_BASE}/chat/completions`;
const OPENROUTER_BASE = "https://openrouter.ai/api/v1";
const OPENROUTER_URL = `${OPENROUTER_BASE}/chat/completions`;

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const anthropic = () => createAnthropicProvider({ apiKey: "sk-ant-test" });
const openaiResponses = () => createOpenAIProvider({ apiKey: "sk-test" });
const openaiChat = () => createOpenAIProvider({ apiKey: "sk-test", api: "chat" });
const ollama = (options: Partial<OpenAICompatibleProviderOptions> = {}) =>
  createOpenAICompatibleProvider({ id: "ollama", baseUrl: OLLAMA_BASE, ...options });
const openrouter = () =>
  createOpenAICompatibleProvider({ id: "openrouter", baseUrl: OPENROUTER_BASE, apiKey: "or-key" });

const SCHEMA = {
  type: "object",
  properties: {
    city: { type: "string" },
    temperatureC: { type: "number" },
    conditions: { type: "array", items: { type: "string" } },
  },
  required: ["city", "temperatureC", "conditions"],
  additionalProperties: false,
};

/** What the agent loop sends for a schema without description or strict. */
const FORMAT: ModelResponseFormat = { type: "json-schema", name: "weather_report", schema: SCHEMA };
/** The same with every optional field. */
const FULL_FORMAT: ModelResponseFormat = {
  ...FORMAT,
  description: "The current weather in one city.",
  strict: true,
};

/** The answer the fake vendors stream: a multi-byte character and escaped quotes included. */
const ANSWER = { city: "Zürich", temperatureC: 21.5, conditions: ["sunny", 'a light "Föhn"'] };
const ANSWER_TEXT = JSON.stringify(ANSWER);
/** The answer cut into model-sized pieces; some cuts fall inside strings and escapes. */
const FRAGMENTS = pieces(ANSWER_TEXT, 7);
const REFUSAL = ["I'm sorry, ", "but I can't ", "help with that."];

function pieces(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

const ask = (model: string, responseFormat?: ModelResponseFormat): ModelRequest => ({
  model,
  system: "Report the weather as JSON.",
  messages: [userText("What is the weather in Zürich?")],
  ...(responseFormat === undefined ? {} : { responseFormat }),
});

/** Records every request to `url` and answers each with `body`. */
function record(url: string, body: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(body);
    }),
  );
  return seen;
}

/** Records every request to `url` and answers each with HTTP `status` and a JSON `body`. */
function recordError(url: string, status: number, body: unknown): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      seen.push(await capture(request));
      return errorResponse(status, body);
    }),
  );
  return seen;
}

type Json = Record<string, unknown>;

/** Events with a type, as `event:` and `data:` lines (Anthropic, the Responses API). */
function namedEvents(events: Json[]): string {
  return events.map((e) => `event: ${String(e.type)}\ndata: ${JSON.stringify(e)}\n\n`).join("");
}

/** Chat Completions chunks as `data:` lines, ended by `data: [DONE]`. */
function chunks(list: Json[], extra = ""): string {
  return `${list.map((c) => `${extra}data: ${JSON.stringify(c)}\n\n`).join("")}data: [DONE]\n\n`;
}

// --- Anthropic Messages: streaming events as documented for structured outputs -------------

function anthropicStream(texts: string[], stopReason: string): string {
  return namedEvents([
    {
      type: "message_start",
      message: {
        id: "msg_01JTrtUYEw4dCa8YmfzTNsAN",
        type: "message",
        role: "assistant",
        content: [],
        model: "claude-sonnet-4-5-20250929",
        stop_reason: null,
        stop_sequence: null,
        usage: {
          input_tokens: 312,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: 0,
          output_tokens: 1,
        },
      },
    },
    { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    { type: "ping" },
    ...texts.map((text) => ({
      type: "content_block_delta",
      index: 0,
      delta: { type: "text_delta", text },
    })),
    { type: "content_block_stop", index: 0 },
    {
      type: "message_delta",
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: 41 },
    },
    { type: "message_stop" },
  ]);
}

describe("Anthropic: output_config.format", () => {
  it("sends { type: json_schema, schema } in output_config, without name, description or strict", async () => {
    const seen = record(ANTHROPIC_URL, anthropicStream(FRAGMENTS, "end_turn"));
    await collect(anthropic().stream(ask("claude-sonnet-4-5", FULL_FORMAT)));
    expect(seen[0]?.body.output_config).toEqual({
      format: { type: "json_schema", schema: SCHEMA },
    });
    const text = JSON.stringify(seen[0]?.body);
    expect(text).not.toContain("weather_report");
    expect(text).not.toContain("The current weather in one city.");
    expect(text).not.toContain('"strict"');
    // GA structured outputs: no beta header, no deprecated top-level `output_format`.
    expect(seen[0]?.headers["anthropic-beta"]).toBeUndefined();
    expect(seen[0]?.body).not.toHaveProperty("output_format");
  });

  it("sends the same format for a request without description or strict", async () => {
    const seen = record(ANTHROPIC_URL, anthropicStream(FRAGMENTS, "end_turn"));
    await collect(anthropic().stream(ask("claude-sonnet-4-5", FORMAT)));
    expect(seen[0]?.body.output_config).toEqual({
      format: { type: "json_schema", schema: SCHEMA },
    });
  });

  it("sends no output_config without a responseFormat", async () => {
    const seen = record(ANTHROPIC_URL, anthropicStream(["Sunny."], "end_turn"));
    await collect(anthropic().stream(ask("claude-sonnet-4-5")));
    expect(seen[0]?.body).not.toHaveProperty("output_config");
  });

  it("keeps the format beside thinking and the prompt-cache breakpoints", async () => {
    const seen = record(ANTHROPIC_URL, anthropicStream(FRAGMENTS, "end_turn"));
    await collect(anthropic().stream({ ...ask("claude-sonnet-4-5", FORMAT), thinking: "low" }));
    expect(seen[0]?.body.thinking).toEqual({ type: "enabled", budget_tokens: 2048 });
    expect(seen[0]?.body.system).toEqual([
      { type: "text", text: "Report the weather as JSON.", cache_control: { type: "ephemeral" } },
    ]);
    expect(seen[0]?.body.output_config).toEqual({
      format: { type: "json_schema", schema: SCHEMA },
    });
  });

  it("streams the JSON answer as text deltas, then usage and finish stop", async () => {
    record(ANTHROPIC_URL, anthropicStream(FRAGMENTS, "end_turn"));
    const events = await collect(anthropic().stream(ask("claude-sonnet-4-5", FORMAT)));
    expectWellFormed(events);
    const deltas = events.filter((e) => e.type === "text-delta");
    expect(deltas.map((e) => e.text)).toEqual(FRAGMENTS);
    expect(JSON.parse(textOf(events))).toEqual(ANSWER);
    expect(events.filter((e) => e.type === "usage").at(-1)).toEqual({
      type: "usage",
      usage: { inputTokens: 312, outputTokens: 41, cacheReadTokens: 0, cacheWriteTokens: 0 },
    });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "end_turn" });
  });

  it("a refusal (stop_reason refusal) finishes with reason refusal; its text is passed on", async () => {
    record(ANTHROPIC_URL, anthropicStream(REFUSAL, "refusal"));
    const events = await collect(anthropic().stream(ask("claude-sonnet-4-5", FORMAT)));
    expectWellFormed(events);
    expect(textOf(events)).toBe(REFUSAL.join(""));
    expect(events.at(-1)).toEqual({ type: "finish", reason: "refusal", rawReason: "refusal" });
  });

  it("a schema Anthropic rejects (400 invalid_request_error) is a non-retryable invalid_request", async () => {
    const message =
      "output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly set to false";
    const seen = recordError(ANTHROPIC_URL, 400, {
      type: "error",
      error: { type: "invalid_request_error", message },
      request_id: "req_011CUmEbH8cjzoJ8SQjtmGvR",
    });
    const open = {
      ...FORMAT,
      schema: { type: "object", properties: { city: { type: "string" } } },
    };
    const { events, error } = await collectFailure(
      anthropic().stream(ask("claude-sonnet-4-5", open)),
    );
    expect(events).toEqual([]);
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(400);
    expect(error.provider).toBe("anthropic");
    expect(error.message).toContain(`invalid_request_error: ${message}`);
    expect(error.responseBody).toContain("additionalProperties");
    expect(seen).toHaveLength(1);
    expect(seen[0]?.body.output_config).toEqual({
      format: { type: "json_schema", schema: open.schema },
    });
  });

  it("providerOptions.anthropic.output_config replaces the mapped one, as providerOptions replace any field", async () => {
    const seen = record(ANTHROPIC_URL, anthropicStream(FRAGMENTS, "end_turn"));
    const own = { format: { type: "json_schema", schema: { type: "object" } }, effort: "low" };
    await collect(
      anthropic().stream({
        ...ask("claude-sonnet-4-5", FORMAT),
        providerOptions: { anthropic: { output_config: own } },
      }),
    );
    expect(seen[0]?.body.output_config).toEqual(own);
  });
});

// --- OpenAI Chat Completions: chat.completion.chunk -----------------------------------------

const chatChunk = (delta: Json, finishReason: string | null = null): Json => ({
  id: "chatcmpl-CIhd4LQ2PP9aXvn3RsbLd5a0ZlSVt",
  object: "chat.completion.chunk",
  created: 1758551910,
  model: "gpt-4.1-mini-2025-04-14",
  service_tier: "default",
  system_fingerprint: "fp_4fce0778af",
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  usage: null,
});

const chatUsageChunk: Json = {
  ...chatChunk({}),
  choices: [],
  usage: {
    prompt_tokens: 98,
    completion_tokens: 27,
    total_tokens: 125,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  },
};

function chatAnswer(texts: string[]): string {
  return chunks([
    chatChunk({ role: "assistant", content: "", refusal: null }),
    ...texts.map((content) => chatChunk({ content })),
    chatChunk({}, "stop"),
    chatUsageChunk,
  ]);
}

/** A refusal under structured outputs: `delta.refusal` instead of `delta.content`. */
function chatRefusal(texts: string[]): string {
  return chunks([
    chatChunk({ role: "assistant", content: null, refusal: "" }),
    ...texts.map((refusal) => chatChunk({ refusal })),
    chatChunk({}, "stop"),
    chatUsageChunk,
  ]);
}

const openaiSchemaError = (param: string) => ({
  error: {
    message:
      "Invalid schema for response_format 'weather_report': In context=(), 'additionalProperties' is required to be supplied and to be false.",
    type: "invalid_request_error",
    param,
    code: null,
  },
});

describe("OpenAI Chat Completions: response_format", () => {
  it("sends { type: json_schema, json_schema: { name, schema } } without description or strict when not given", async () => {
    const seen = record(CHAT_URL, chatAnswer(FRAGMENTS));
    await collect(openaiChat().stream(ask("gpt-4.1-mini", FORMAT)));
    expect(seen[0]?.body.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "weather_report", schema: SCHEMA },
    });
  });

  it("sends description and strict when given", async () => {
    const seen = record(CHAT_URL, chatAnswer(FRAGMENTS));
    await collect(openaiChat().stream(ask("gpt-4.1-mini", FULL_FORMAT)));
    expect(seen[0]?.body.response_format).toEqual({
      type: "json_schema",
      json_schema: {
        name: "weather_report",
        description: "The current weather in one city.",
        schema: SCHEMA,
        strict: true,
      },
    });
  });

  it("sends strict: false as given (not left out)", async () => {
    const seen = record(CHAT_URL, chatAnswer(FRAGMENTS));
    await collect(openaiChat().stream(ask("gpt-4.1-mini", { ...FORMAT, strict: false })));
    expect(seen[0]?.body.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "weather_report", schema: SCHEMA, strict: false },
    });
  });

  it("sends no response_format without a responseFormat", async () => {
    const seen = record(CHAT_URL, chatAnswer(["Sunny."]));
    await collect(openaiChat().stream(ask("gpt-4.1-mini")));
    expect(seen[0]?.body).not.toHaveProperty("response_format");
  });

  it("streams the JSON answer as text deltas, then usage and finish stop", async () => {
    record(CHAT_URL, chatAnswer(FRAGMENTS));
    const events = await collect(openaiChat().stream(ask("gpt-4.1-mini", FULL_FORMAT)));
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "text-delta").map((e) => e.text)).toEqual(FRAGMENTS);
    expect(JSON.parse(textOf(events))).toEqual(ANSWER);
    expect(events.filter((e) => e.type === "usage")).toEqual([
      {
        type: "usage",
        usage: { inputTokens: 98, outputTokens: 27, cacheReadTokens: 0, reasoningTokens: 0 },
      },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "stop" });
  });

  it("a refusal (delta.refusal) is streamed as text and finishes with reason refusal", async () => {
    record(CHAT_URL, chatRefusal(REFUSAL));
    const events = await collect(openaiChat().stream(ask("gpt-4.1-mini", FULL_FORMAT)));
    expectWellFormed(events);
    expect(textOf(events)).toBe(REFUSAL.join(""));
    expect(events.at(-1)).toEqual({ type: "finish", reason: "refusal", rawReason: "stop" });
  });

  it("a schema OpenAI rejects (400 invalid_request_error) is a non-retryable invalid_request", async () => {
    const seen = recordError(CHAT_URL, 400, openaiSchemaError("response_format"));
    const { events, error } = await collectFailure(
      openaiChat().stream(ask("gpt-4.1-mini", FULL_FORMAT)),
    );
    expect(events).toEqual([]);
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(400);
    expect(error.message).toContain("invalid_request_error: Invalid schema for response_format");
    expect(seen[0]?.body).toHaveProperty("response_format");
  });

  it("providerOptions.openai.response_format replaces the mapped one", async () => {
    const seen = record(CHAT_URL, chatAnswer(FRAGMENTS));
    await collect(
      openaiChat().stream({
        ...ask("gpt-4.1-mini", FULL_FORMAT),
        providerOptions: { openai: { response_format: { type: "json_object" } } },
      }),
    );
    expect(seen[0]?.body.response_format).toEqual({ type: "json_object" });
  });
});

// --- OpenAI Responses API: typed events -----------------------------------------------------

const RESPONSE_ID = "resp_68d1a4d3c1a08190a4c4a0b0d2e8f1a60d3c2c8c1d3e4f5a";
const ITEM_ID = "msg_68d1a4d4f0f081909c3b4f7e2d1c0b9a0d3c2c8c1d3e4f5a";

function responseObject(status: string, output: Json[], usage: Json | null): Json {
  return {
    id: RESPONSE_ID,
    object: "response",
    created_at: 1758570707,
    status,
    error: null,
    incomplete_details: null,
    instructions: "Report the weather as JSON.",
    max_output_tokens: null,
    model: "gpt-4.1-2025-04-14",
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: true,
    temperature: 1.0,
    text: {
      format: {
        type: "json_schema",
        description: null,
        name: "weather_report",
        schema: SCHEMA,
        strict: true,
      },
      verbosity: "medium",
    },
    tool_choice: "auto",
    tools: [],
    top_p: 1.0,
    truncation: "disabled",
    usage,
    user: null,
    metadata: {},
  };
}

/**
 * A Responses stream whose message holds one content part: `output_text` (streamed as
 * `response.output_text.delta`) or `refusal` (streamed as `response.refusal.delta`).
 */
function responsesStream(kind: "output_text" | "refusal", texts: string[]): string {
  const whole = texts.join("");
  const part = (done: boolean) =>
    kind === "output_text"
      ? { type: "output_text", text: done ? whole : "", annotations: [] }
      : { type: "refusal", refusal: done ? whole : "" };
  const where = { item_id: ITEM_ID, output_index: 0, content_index: 0 };
  const message = (done: boolean) => ({
    id: ITEM_ID,
    type: "message",
    status: done ? "completed" : "in_progress",
    role: "assistant",
    content: done ? [part(true)] : [],
  });
  const events: Json[] = [
    { type: "response.created", response: responseObject("in_progress", [], null) },
    { type: "response.in_progress", response: responseObject("in_progress", [], null) },
    { type: "response.output_item.added", output_index: 0, item: message(false) },
    { type: "response.content_part.added", ...where, part: part(false) },
    ...texts.map((delta) =>
      kind === "output_text"
        ? { type: "response.output_text.delta", ...where, delta, logprobs: [] }
        : { type: "response.refusal.delta", ...where, delta },
    ),
    kind === "output_text"
      ? { type: "response.output_text.done", ...where, text: whole, logprobs: [] }
      : { type: "response.refusal.done", ...where, refusal: whole },
    { type: "response.content_part.done", ...where, part: part(true) },
    { type: "response.output_item.done", output_index: 0, item: message(true) },
    {
      type: "response.completed",
      response: responseObject("completed", [message(true)], {
        input_tokens: 104,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: 29,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 133,
      }),
    },
  ];
  return namedEvents(events.map((event, i) => ({ ...event, sequence_number: i })));
}

describe("OpenAI Responses API: text.format", () => {
  it("sends text.format { type: json_schema, name, schema } without description or strict when not given", async () => {
    const seen = record(RESPONSES_URL, responsesStream("output_text", FRAGMENTS));
    await collect(openaiResponses().stream(ask("gpt-4.1", FORMAT)));
    expect(seen[0]?.body.text).toEqual({
      format: { type: "json_schema", name: "weather_report", schema: SCHEMA },
    });
  });

  it("sends description and strict beside name and schema when given", async () => {
    const seen = record(RESPONSES_URL, responsesStream("output_text", FRAGMENTS));
    await collect(openaiResponses().stream(ask("gpt-4.1", FULL_FORMAT)));
    expect(seen[0]?.body.text).toEqual({
      format: {
        type: "json_schema",
        name: "weather_report",
        description: "The current weather in one city.",
        schema: SCHEMA,
        strict: true,
      },
    });
    expect(seen[0]?.body).not.toHaveProperty("response_format");
  });

  it("sends no text field without a responseFormat", async () => {
    const seen = record(RESPONSES_URL, responsesStream("output_text", ["Sunny."]));
    await collect(openaiResponses().stream(ask("gpt-4.1")));
    expect(seen[0]?.body).not.toHaveProperty("text");
  });

  it("streams the JSON answer (response.output_text.delta) as text deltas, then usage and finish stop", async () => {
    record(RESPONSES_URL, responsesStream("output_text", FRAGMENTS));
    const events = await collect(openaiResponses().stream(ask("gpt-4.1", FULL_FORMAT)));
    expectWellFormed(events);
    expect(events[0]).toEqual({
      type: "response-start",
      id: RESPONSE_ID,
      model: "gpt-4.1-2025-04-14",
    });
    expect(events.filter((e) => e.type === "text-delta").map((e) => e.text)).toEqual(FRAGMENTS);
    expect(JSON.parse(textOf(events))).toEqual(ANSWER);
    expect(events.filter((e) => e.type === "usage")).toEqual([
      {
        type: "usage",
        usage: { inputTokens: 104, outputTokens: 29, cacheReadTokens: 0, reasoningTokens: 0 },
      },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "completed" });
  });

  it("a refusal (response.refusal.delta) is streamed as text and finishes with reason refusal", async () => {
    record(RESPONSES_URL, responsesStream("refusal", REFUSAL));
    const events = await collect(openaiResponses().stream(ask("gpt-4.1", FULL_FORMAT)));
    expectWellFormed(events);
    expect(textOf(events)).toBe(REFUSAL.join(""));
    expect(events.at(-1)).toEqual({ type: "finish", reason: "refusal", rawReason: "completed" });
  });

  it("a schema OpenAI rejects (400 invalid_request_error) is a non-retryable invalid_request", async () => {
    const seen = recordError(RESPONSES_URL, 400, openaiSchemaError("text.format.schema"));
    const { events, error } = await collectFailure(
      openaiResponses().stream(ask("gpt-4.1", FULL_FORMAT)),
    );
    expect(events).toEqual([]);
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(400);
    expect(error.message).toContain("invalid_request_error: Invalid schema for response_format");
    expect(seen[0]?.body).toHaveProperty("text");
  });

  it("providerOptions.openai.text replaces the mapped one (e.g. to add verbosity)", async () => {
    const seen = record(RESPONSES_URL, responsesStream("output_text", FRAGMENTS));
    const text = {
      format: { type: "json_schema", name: "weather_report", schema: SCHEMA, strict: true },
      verbosity: "low",
    };
    await collect(
      openaiResponses().stream({
        ...ask("gpt-4.1", FULL_FORMAT),
        providerOptions: { openai: { text } },
      }),
    );
    expect(seen[0]?.body.text).toEqual(text);
  });
});

// --- OpenAI-compatible servers: Ollama, OpenRouter ------------------------------------------

const ollamaChunk = (content: string, finishReason: string | null = null): Json => ({
  id: "chatcmpl-731",
  object: "chat.completion.chunk",
  created: 1758571200,
  model: "qwen3:8b",
  system_fingerprint: "fp_ollama",
  choices: [{ index: 0, delta: { role: "assistant", content }, finish_reason: finishReason }],
});

function ollamaAnswer(texts: string[]): string {
  return chunks([
    ...texts.map((text) => ollamaChunk(text)),
    ollamaChunk("", "stop"),
    {
      ...ollamaChunk(""),
      choices: [],
      usage: { prompt_tokens: 61, completion_tokens: 33, total_tokens: 94 },
    },
  ]);
}

/** OpenRouter passing on an OpenAI model's refusal; it interleaves SSE comments. */
function openrouterRefusal(texts: string[]): string {
  const chunk = (delta: Json, finishReason: string | null = null): Json => ({
    id: "gen-1758571300-Xk2pQ9vN4mT7rB1cL8sD",
    provider: "OpenAI",
    model: "openai/gpt-4o-mini",
    object: "chat.completion.chunk",
    created: 1758571300,
    choices: [
      {
        index: 0,
        delta,
        finish_reason: finishReason,
        native_finish_reason: finishReason,
        logprobs: null,
      },
    ],
  });
  return chunks(
    [
      chunk({ role: "assistant", content: "", refusal: "" }),
      ...texts.map((refusal) => chunk({ role: "assistant", content: "", refusal })),
      chunk({ role: "assistant", content: "" }, "stop"),
      {
        ...chunk({}),
        choices: [],
        usage: { prompt_tokens: 57, completion_tokens: 12, total_tokens: 69 },
      },
    ],
    ": OPENROUTER PROCESSING\n\n",
  );
}

describe("OpenAI-compatible: response_format, and structuredOutputs", () => {
  it("sends response_format as Chat Completions does, by default", async () => {
    const seen = record(OLLAMA_URL, ollamaAnswer(FRAGMENTS));
    await collect(ollama().stream(ask("qwen3:8b", FORMAT)));
    expect(seen[0]?.body.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "weather_report", schema: SCHEMA },
    });
  });

  it("sends description and strict when given", async () => {
    const seen = record(OLLAMA_URL, ollamaAnswer(FRAGMENTS));
    await collect(ollama({ structuredOutputs: true }).stream(ask("qwen3:8b", FULL_FORMAT)));
    expect(seen[0]?.body.response_format).toEqual({
      type: "json_schema",
      json_schema: {
        name: "weather_report",
        description: "The current weather in one city.",
        schema: SCHEMA,
        strict: true,
      },
    });
  });

  it("sends no response_format without a responseFormat", async () => {
    const seen = record(OLLAMA_URL, ollamaAnswer(["Sunny."]));
    await collect(ollama().stream(ask("qwen3:8b")));
    expect(seen[0]?.body).not.toHaveProperty("response_format");
  });

  it("structuredOutputs: false sends no response_format; the rest of the request is unchanged", async () => {
    const seen = record(OLLAMA_URL, ollamaAnswer(FRAGMENTS));
    const events = await collect(
      ollama({ structuredOutputs: false }).stream(ask("qwen3:8b", FULL_FORMAT)),
    );
    expect(seen[0]?.body).not.toHaveProperty("response_format");
    expect(seen[0]?.body).toEqual({
      model: "qwen3:8b",
      messages: [
        { role: "system", content: "Report the weather as JSON." },
        { role: "user", content: "What is the weather in Zürich?" },
      ],
      stream: true,
      stream_options: { include_usage: true },
    });
    // The answer still streams; validating it is the agent loop's job.
    expect(JSON.parse(textOf(events))).toEqual(ANSWER);
  });

  it("structuredOutputs: false still lets providerOptions send a response_format", async () => {
    const seen = record(OLLAMA_URL, ollamaAnswer(FRAGMENTS));
    await collect(
      ollama({ structuredOutputs: false }).stream({
        ...ask("qwen3:8b", FORMAT),
        providerOptions: { ollama: { response_format: { type: "json_object" } } },
      }),
    );
    expect(seen[0]?.body.response_format).toEqual({ type: "json_object" });
  });

  it("streams the JSON answer as text deltas, then usage and finish stop", async () => {
    record(OLLAMA_URL, ollamaAnswer(FRAGMENTS));
    const events = await collect(ollama().stream(ask("qwen3:8b", FORMAT)));
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "text-delta").map((e) => e.text)).toEqual(FRAGMENTS);
    expect(JSON.parse(textOf(events))).toEqual(ANSWER);
    expect(events.filter((e) => e.type === "usage")).toEqual([
      { type: "usage", usage: { inputTokens: 61, outputTokens: 33 } },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "stop" });
  });

  it("a refusal passed on by OpenRouter (delta.refusal) finishes with reason refusal", async () => {
    const seen = record(OPENROUTER_URL, openrouterRefusal(REFUSAL));
    const events = await collect(openrouter().stream(ask("openai/gpt-4o-mini", FULL_FORMAT)));
    expectWellFormed(events);
    expect(seen[0]?.body).toHaveProperty("response_format");
    expect(textOf(events)).toBe(REFUSAL.join(""));
    expect(events.at(-1)).toEqual({ type: "finish", reason: "refusal", rawReason: "stop" });
  });

  it("a schema the server rejects (400 invalid_request_error) is a non-retryable invalid_request", async () => {
    recordError(OLLAMA_URL, 400, openaiSchemaError("response_format"));
    const { events, error } = await collectFailure(ollama().stream(ask("qwen3:8b", FORMAT)));
    expect(events).toEqual([]);
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(400);
    expect(error.provider).toBe("ollama");
    expect(error.message).toContain("Invalid schema for response_format");
  });

  it.each([["yes"], [0], [null], [{ enabled: true }]])(
    "rejects structuredOutputs %j with InvalidArgumentError",
    (structuredOutputs) => {
      const create = () =>
        ollama({ structuredOutputs } as unknown as Partial<OpenAICompatibleProviderOptions>);
      expect(create).toThrow(InvalidArgumentError);
      expect(create).toThrow(/structuredOutputs must be a boolean/);
    },
  );
});

// --- Every adapter: a malformed responseFormat is refused before anything is sent -----------

describe("a malformed responseFormat", () => {
  const providers: Array<[string, string, () => ModelProvider]> = [
    ["anthropic", ANTHROPIC_URL, anthropic],
    ["openai responses", RESPONSES_URL, openaiResponses],
    ["openai chat", CHAT_URL, openaiChat],
    ["openai-compatible", OLLAMA_URL, () => ollama()],
    [
      "openai-compatible, structuredOutputs false",
      OLLAMA_URL,
      () => ollama({ structuredOutputs: false }),
    ],
  ];
  const malformed: Array<[string, unknown, RegExp]> = [
    ["an unknown type", { ...FORMAT, type: "json_object" }, /responseFormat.type/],
    ["a name with a space", { ...FORMAT, name: "weather report" }, /responseFormat.name/],
    ["a name of 65 characters", { ...FORMAT, name: "n".repeat(65) }, /responseFormat.name/],
    ["no schema", { type: "json-schema", name: "weather_report" }, /responseFormat.schema/],
    ["a schema that is not an object", { ...FORMAT, schema: "object" }, /responseFormat.schema/],
    ["a strict that is not a boolean", { ...FORMAT, strict: "yes" }, /responseFormat.strict/],
    [
      "a description that is not a string",
      { ...FORMAT, description: 1 },
      /responseFormat.description/,
    ],
  ];

  it.each(providers)("%s: is an invalid_request and nothing is sent", async (_, url, make) => {
    let requests = 0;
    server.use(
      http.post(url, () => {
        requests++;
        return errorResponse(500, {});
      }),
    );
    for (const [what, responseFormat, message] of malformed) {
      const request = { ...ask("m"), responseFormat } as ModelRequest;
      const { events, error } = await collectFailure(make().stream(request));
      expect(events, what).toEqual([]);
      expect(error.kind, what).toBe("invalid_request");
      expect(error.isRetryable, what).toBe(false);
      expect(error.message, what).toMatch(message);
    }
    expect(requests).toBe(0);
  });
});

describe("mergeIntoField", () => {
  it("adds to an object another setting already wrote, instead of replacing it", () => {
    const body = { model: "m", text: { verbosity: "low" } };
    mergeIntoField(body, "text", { format: { type: "json_schema" } });
    expect(body.text).toEqual({ verbosity: "low", format: { type: "json_schema" } });
    const empty: JsonObject = {};
    mergeIntoField(empty, "output_config", { format: { type: "json_schema" } });
    expect(empty).toEqual({ output_config: { format: { type: "json_schema" } } });
  });
});
