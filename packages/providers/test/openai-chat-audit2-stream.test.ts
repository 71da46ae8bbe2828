/**
 * Chat Completions streams from OpenAI-compatible servers that deviate from OpenAI's shape in
 * ways users hit daily:
 *
 * - `finish_reason: ""` on every intermediate chunk instead of `null` (Ollama before its fix,
 *   ollama/ollama#4357; SGLang, sgl-project/sglang#3912). It is not a finish: a call's later
 *   argument fragments must still join it, and the thinking block must stay one block.
 * - A `finish_reason` on a chunk that is followed by more tool calls (proxies that stamp
 *   `tool_calls` on each call's chunk, BerriAI/litellm#31634): no call may be dropped.
 * - Mistral's reasoning models (Magistral, `reasoning_effort`), whose `delta.content` is an
 *   array of chunks, `{type: "thinking", thinking: [{type: "text", text}]}` and
 *   `{type: "text", text}` (docs.mistral.ai/capabilities/reasoning), not a string.
 */
import type { ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider } from "../src/index.js";
import { collect, expectWellFormed, sseResponse, textOf, thinkingOf, userText } from "./support.js";

const BASE = "http://127.0.0.1:11434/v1";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const request: ModelRequest = { model: "qwen3:8b", messages: [userText("Weather in Paris?")] };

function chunk(
  delta: Record<string, unknown>,
  finish: string | null = null,
  extra: Record<string, unknown> = {},
) {
  return `data: ${JSON.stringify({
    id: "chatcmpl-693",
    object: "chat.completion.chunk",
    created: 1715427619,
    model: "qwen3:8b",
    system_fingerprint: "fp_ollama",
    choices: [{ index: 0, delta, finish_reason: finish }],
    ...extra,
  })}\n\n`;
}

function serve(text: string): void {
  server.use(http.post(`${BASE}/chat/completions`, () => sseResponse(text)));
}

const provider = () => createOpenAICompatibleProvider({ id: "ollama", baseUrl: BASE });

describe('finish_reason "" on intermediate chunks (old Ollama, SGLang)', () => {
  it("joins every argument fragment of a streamed tool call", async () => {
    serve(
      chunk(
        {
          role: "assistant",
          tool_calls: [
            {
              index: 0,
              id: "call_a1",
              type: "function",
              function: { name: "get_weather", arguments: "" },
            },
          ],
        },
        "",
      ) +
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }, "") +
        chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, "") +
        chunk({}, "tool_calls") +
        "data: [DONE]\n\n",
    );
    const events = await collect(provider().stream(request));
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      {
        type: "tool-call",
        toolCallId: "call_a1",
        toolName: "get_weather",
        input: { city: "Paris" },
      },
    ]);
    expect(events.at(-1)).toEqual({
      type: "finish",
      reason: "tool-calls",
      rawReason: "tool_calls",
    });
  });

  it("keeps the reasoning one thinking block and reports the real finish reason", async () => {
    serve(
      chunk({ role: "assistant", content: "", reasoning_content: "The user " }, "") +
        chunk({ content: "", reasoning_content: "greets me." }, "") +
        chunk({ content: "Hello" }, "") +
        chunk({ content: " there!" }, "") +
        chunk({ content: "" }, "stop") +
        "data: [DONE]\n\n",
    );
    const events = await collect(provider().stream(request));
    expectWellFormed(events);
    expect(thinkingOf(events)).toBe("The user greets me.");
    expect(events.filter((e) => e.type === "thinking-end")).toHaveLength(1);
    expect(textOf(events)).toBe("Hello there!");
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "stop" });
  });

  it("a stream that ends without [DONE] after only empty finish reasons is still a cut", async () => {
    serve(chunk({ role: "assistant", content: "Hel" }, "") + chunk({ content: "lo" }, ""));
    await expect(collect(provider().stream(request))).rejects.toMatchObject({
      kind: "network",
    });
  });
});

describe("tool calls that come after a chunk with a finish_reason", () => {
  it("are all emitted, none dropped", async () => {
    serve(
      chunk(
        {
          role: "assistant",
          tool_calls: [
            {
              index: 0,
              id: "call_w",
              type: "function",
              function: { name: "get_weather", arguments: '{"city":"Paris"}' },
            },
          ],
        },
        "tool_calls",
      ) +
        chunk(
          {
            tool_calls: [
              {
                index: 1,
                id: "call_t",
                type: "function",
                function: { name: "get_time", arguments: '{"tz":"Europe/Paris"}' },
              },
            ],
          },
          "tool_calls",
        ) +
        chunk({}, null, { choices: [], usage: { prompt_tokens: 40, completion_tokens: 22 } }) +
        "data: [DONE]\n\n",
    );
    const events = await collect(provider().stream(request));
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      {
        type: "tool-call",
        toolCallId: "call_w",
        toolName: "get_weather",
        input: { city: "Paris" },
      },
      {
        type: "tool-call",
        toolCallId: "call_t",
        toolName: "get_time",
        input: { tz: "Europe/Paris" },
      },
    ]);
    expect(events.find((e) => e.type === "usage")).toEqual({
      type: "usage",
      usage: { inputTokens: 40, outputTokens: 22 },
    });
    expect(events.filter((e) => e.type === "finish")).toEqual([
      { type: "finish", reason: "tool-calls", rawReason: "tool_calls" },
    ]);
  });
});

describe("Mistral: delta.content as an array of thinking and text chunks", () => {
  const MISTRAL = "https://api.mistral.ai/v1";
  const mistralChunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({
      id: "c3c77283055240cbbaf6f01d384cfccb",
      object: "chat.completion.chunk",
      created: 1762355135,
      model: "magistral-medium-2509",
      choices: [{ index: 0, delta, finish_reason: finish }],
    })}\n\n`;

  it("streams the thinking chunks as thinking and the text chunks as text", async () => {
    server.use(
      http.post(`${MISTRAL}/chat/completions`, () =>
        sseResponse(
          mistralChunk({ role: "assistant", content: "" }) +
            mistralChunk({
              content: [
                { type: "thinking", thinking: [{ type: "text", text: "The user says hello. " }] },
              ],
            }) +
            mistralChunk({
              content: [{ type: "thinking", thinking: [{ type: "text", text: "Greet back." }] }],
            }) +
            mistralChunk({ content: [{ type: "text", text: "Hello" }] }) +
            mistralChunk({ content: "! How can I help?" }) +
            mistralChunk({ content: "" }, "stop") +
            `data: ${JSON.stringify({
              id: "c3c77283055240cbbaf6f01d384cfccb",
              object: "chat.completion.chunk",
              created: 1762355135,
              model: "magistral-medium-2509",
              choices: [],
              usage: { prompt_tokens: 8, completion_tokens: 30, total_tokens: 38 },
            })}\n\n` +
            "data: [DONE]\n\n",
        ),
      ),
    );
    const mistral = createOpenAICompatibleProvider({
      id: "mistral",
      baseUrl: MISTRAL,
      apiKey: "mistral-key",
    });
    const events = await collect(
      mistral.stream({ model: "magistral-medium-2509", messages: [userText("Hello")] }),
    );
    expectWellFormed(events);
    expect(thinkingOf(events)).toBe("The user says hello. Greet back.");
    expect(textOf(events)).toBe("Hello! How can I help?");
    const end = events.findIndex((e) => e.type === "thinking-end");
    expect(end).toBeGreaterThan(-1);
    expect(end).toBeLessThan(events.findIndex((e) => e.type === "text-delta"));
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "stop" });
  });
});

describe("OpenRouter: processing comments, a repeated finish chunk, usage with cost", () => {
  const OPENROUTER = "https://openrouter.ai/api/v1";
  const orChunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({
      id: "gen-1758885012-2qVPBxGHZxOgYWKthK4E",
      provider: "OpenAI",
      model: "openai/gpt-5",
      object: "chat.completion.chunk",
      created: 1758885012,
      choices,
      ...extra,
    })}\n\n`;
  const call = (index: number, id: string, name: string, args: string) => ({
    index: 0,
    delta: {
      role: "assistant",
      content: "",
      tool_calls: [{ index, id, type: "function", function: { name, arguments: args } }],
    },
    finish_reason: null,
    native_finish_reason: null,
  });

  it("emits each tool call once and keeps the final usage", async () => {
    server.use(
      http.post(`${OPENROUTER}/chat/completions`, () =>
        sseResponse(
          ": OPENROUTER PROCESSING\n\n" +
            ": OPENROUTER PROCESSING\n\n" +
            orChunk([call(0, "call_add", "add", '{"a":2,"b":3}')]) +
            orChunk([call(1, "call_mul", "multiply", '{"a":2,"b":3}')]) +
            orChunk([
              {
                index: 0,
                delta: { role: "assistant", content: "" },
                finish_reason: "tool_calls",
                native_finish_reason: "completed",
              },
            ]) +
            orChunk(
              [
                {
                  index: 0,
                  delta: { role: "assistant", content: "" },
                  finish_reason: "tool_calls",
                  native_finish_reason: "completed",
                },
              ],
              {
                usage: {
                  prompt_tokens: 160,
                  completion_tokens: 90,
                  total_tokens: 250,
                  cost: 0.0011,
                  prompt_tokens_details: { cached_tokens: 0 },
                  completion_tokens_details: { reasoning_tokens: 64 },
                },
              },
            ) +
            "data: [DONE]\n\n",
        ),
      ),
    );
    const openrouter = createOpenAICompatibleProvider({
      id: "openrouter",
      baseUrl: OPENROUTER,
      apiKey: "sk-or-test",
    });
    const events = await collect(
      openrouter.stream({ model: "openai/gpt-5", messages: [userText("Add and multiply")] }),
    );
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      { type: "tool-call", toolCallId: "call_add", toolName: "add", input: { a: 2, b: 3 } },
      { type: "tool-call", toolCallId: "call_mul", toolName: "multiply", input: { a: 2, b: 3 } },
    ]);
    expect(events.filter((e) => e.type === "usage")).toEqual([
      {
        type: "usage",
        usage: { inputTokens: 160, outputTokens: 90, cacheReadTokens: 0, reasoningTokens: 64 },
      },
    ]);
  });
});
