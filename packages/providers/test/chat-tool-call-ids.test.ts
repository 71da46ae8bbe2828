/**
 * Chat Completions tool calls from OpenAI-compatible servers that number each chunk's
 * calls from 0 (Google's and Ollama's compatibility layers send parallel calls one per chunk,
 * each whole, each at `index` 0 or without an index, each with its own `id`).
 */
import type { ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider, createOpenAIProvider } from "../src/index.js";
import { collect, expectWellFormed, fixture, sseResponse, userText } from "./support.js";

const BASE = "https://generativelanguage.example.com/v1beta/openai";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const request: ModelRequest = { model: "gemini-2.5-flash", messages: [userText("Weather?")] };

function chunk(delta: Record<string, unknown>, finish: string | null = null) {
  return `data: ${JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1741569952,
    model: "gemini-2.5-flash",
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
}

function wholeCall(id: string, name: string, args: string, index?: number) {
  return {
    role: "assistant",
    tool_calls: [
      {
        ...(index === undefined ? {} : { index }),
        id,
        type: "function",
        function: { name, arguments: args },
      },
    ],
  };
}

describe("Chat Completions: parallel tool calls sent one per chunk at the same index", () => {
  for (const [what, index] of [
    ["at index 0", 0],
    ["without an index", undefined],
  ] as const) {
    it(`keeps calls with different ids apart (${what})`, async () => {
      server.use(
        http.post(`${BASE}/chat/completions`, () =>
          sseResponse(
            chunk(wholeCall("function-call-1", "get_weather", '{"city":"Paris"}', index)) +
              chunk(wholeCall("function-call-2", "get_time", '{"tz":"UTC"}', index)) +
              chunk({}, "stop") +
              "data: [DONE]\n\n",
          ),
        ),
      );
      const provider = createOpenAICompatibleProvider({ id: "gemini", baseUrl: BASE });
      const events = await collect(provider.stream(request));
      expectWellFormed(events);
      expect(events.filter((e) => e.type === "tool-call")).toEqual([
        {
          type: "tool-call",
          toolCallId: "function-call-1",
          toolName: "get_weather",
          input: { city: "Paris" },
        },
        {
          type: "tool-call",
          toolCallId: "function-call-2",
          toolName: "get_time",
          input: { tz: "UTC" },
        },
      ]);
      expect(events.filter((e) => e.type === "tool-call-start")).toHaveLength(2);
      expect(events.at(-1)).toEqual({ type: "finish", reason: "tool-calls", rawReason: "stop" });
    });
  }

  it("still joins the argument fragments of one call, which repeat no id (OpenAI's shape)", async () => {
    server.use(
      http.post("https://api.openai.com/v1/chat/completions", () =>
        sseResponse(fixture("openai-chat-tool-calls.sse.txt")),
      ),
    );
    const provider = createOpenAIProvider({ apiKey: "sk-test", api: "chat" });
    const events = await collect(provider.stream({ ...request, model: "gpt-4.1-mini" }));
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
  });

  it("joins fragments of one call that repeat its own id on every delta", async () => {
    server.use(
      http.post(`${BASE}/chat/completions`, () =>
        sseResponse(
          chunk(wholeCall("call_a", "get_weather", '{"city":', 0)) +
            chunk({
              tool_calls: [{ index: 0, id: "call_a", function: { arguments: '"Oslo"}' } }],
            }) +
            chunk({}, "tool_calls") +
            "data: [DONE]\n\n",
        ),
      ),
    );
    const provider = createOpenAICompatibleProvider({ id: "vllm", baseUrl: BASE });
    const events = await collect(provider.stream(request));
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      { type: "tool-call", toolCallId: "call_a", toolName: "get_weather", input: { city: "Oslo" } },
    ]);
  });

  it("reads arguments a server sends whole, as an object, as that object", async () => {
    server.use(
      http.post(`${BASE}/chat/completions`, () =>
        sseResponse(
          chunk({
            role: "assistant",
            tool_calls: [
              {
                index: 0,
                id: "call_o",
                type: "function",
                function: { name: "get_weather", arguments: { city: "Lima", days: 2 } },
              },
            ],
          }) +
            chunk({}, "tool_calls") +
            "data: [DONE]\n\n",
        ),
      ),
    );
    const provider = createOpenAICompatibleProvider({ id: "ollama", baseUrl: BASE });
    const events = await collect(provider.stream(request));
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "tool-call")).toEqual([
      {
        type: "tool-call",
        toolCallId: "call_o",
        toolName: "get_weather",
        input: { city: "Lima", days: 2 },
      },
    ]);
  });
});
