/**
 * A history holding a lone surrogate (half of a UTF-16 pair: a tool's output or a message
 * cut mid-emoji by `slice`, say, or saved before core refused such text). `JSON.stringify`
 * writes one as a `\udXXX` escape, and every vendor refuses such a body as invalid JSON / UTF-8,
 * so the session would fail every call from then on. Each adapter sends U+FFFD in its place;
 * whole pairs (emoji) go as they are.
 */
import {
  loneSurrogatePath,
  type ModelMessage,
  type ModelProvider,
  type ModelRequest,
} from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import { collect, fixture, sseResponse, textOf } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

/** A history with lone halves in a user's text, a tool call's input and a tool's output. */
const messages: ModelMessage[] = [
  { role: "user", content: [{ type: "text", text: "Summarise 😀 this: cut \ud83d" }] },
  {
    role: "assistant",
    content: [
      { type: "tool-call", toolCallId: "call_1", toolName: "fetch", input: { q: "\ude00x" } },
    ],
  },
  {
    role: "tool",
    content: [
      {
        type: "tool-result",
        toolCallId: "call_1",
        toolName: "fetch",
        output: { page: "see \ud83d", "k\udc00": 1 },
      },
    ],
  },
];

interface Vendor {
  name: string;
  url: string;
  provider: () => ModelProvider;
  model: string;
  fixture: string;
}

const vendors: Vendor[] = [
  {
    name: "Anthropic Messages",
    url: "https://api.anthropic.com/v1/messages",
    provider: () => createAnthropicProvider({ apiKey: "sk-ant-test" }),
    model: "claude-sonnet-4-5",
    fixture: "anthropic-text.sse.txt",
  },
  {
    name: "OpenAI Chat Completions",
    url: "https://api.openai.com/v1/chat/completions",
    provider: () => createOpenAIProvider({ api: "chat", apiKey: "sk-test" }),
    model: "gpt-4.1-mini",
    fixture: "openai-chat-text.sse.txt",
  },
  {
    name: "OpenAI Responses",
    url: "https://api.openai.com/v1/responses",
    provider: () => createOpenAIProvider({ apiKey: "sk-test" }),
    model: "gpt-4.1-mini",
    fixture: "openai-responses-text.sse.txt",
  },
  {
    name: "Gemini API",
    url: "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash\\:streamGenerateContent",
    provider: () => createGoogleProvider({ apiKey: "AIza-test" }),
    model: "gemini-2.5-flash",
    fixture: "google-text.sse.txt",
  },
  {
    name: "an OpenAI-compatible server (Ollama)",
    url: "http://127.0.0.1:11434/v1/chat/completions",
    provider: () => createOpenAICompatibleProvider({ baseUrl: "http://127.0.0.1:11434/v1" }),
    model: "llama3.2",
    fixture: "ollama-chat.sse.txt",
  },
];

describe.each(vendors)("$name: a history holding lone surrogates", (vendor) => {
  it("is sent with U+FFFD in their place: the body is well-formed, pairs kept", async () => {
    const bodies: string[] = [];
    server.use(
      http.post(vendor.url, async ({ request }) => {
        bodies.push(await request.text());
        return sseResponse(fixture(vendor.fixture));
      }),
    );
    const request: ModelRequest = { model: vendor.model, messages };
    const events = await collect(vendor.provider().stream(request));
    expect(events.at(-1)?.type).toBe("finish");
    expect(textOf(events).length).toBeGreaterThan(0);
    expect(bodies).toHaveLength(1);
    const body = bodies[0]!;
    // No `\udXXX` escape (what JSON.stringify writes for a lone half), and the text decodes
    // as JSON whose strings are all well-formed.
    expect(body).not.toMatch(/\\ud[89a-f][0-9a-f]{2}/i);
    expect(body.isWellFormed()).toBe(true);
    expect(loneSurrogatePath(JSON.parse(body))).toBeUndefined();
    expect(body).toContain("cut \ufffd");
    expect(body).toContain("😀");
    expect(body).toContain("see \ufffd");
  });
});
