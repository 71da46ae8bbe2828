/**
 * A vendor's strings (finish reasons, error types and codes) that happen to name a property
 * of `Object.prototype` map like any unknown string, never to that property.
 */
import { ProviderError } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAnthropicProvider, createOpenAIProvider } from "../src/index.js";
import {
  collect,
  collectFailure,
  errorResponse,
  fixture,
  sseResponse,
  userText,
} from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const ANTHROPIC = "https://api.anthropic.com/v1/messages";
const OPENAI_CHAT = "https://api.openai.com/v1/chat/completions";

describe("strings naming Object.prototype's properties", () => {
  it("Anthropic: a stop_reason of `constructor` is `other`", async () => {
    const text = fixture("anthropic-text.sse.txt").replace('"end_turn"', '"constructor"');
    server.use(http.post(ANTHROPIC, () => sseResponse(text)));
    const provider = createAnthropicProvider({ apiKey: "sk-ant-test" });
    const events = await collect(
      provider.stream({ model: "claude-sonnet-4-5", messages: [userText("Hi")] }),
    );
    expect(events.at(-1)).toEqual({ type: "finish", reason: "other", rawReason: "constructor" });
  });

  it("OpenAI Chat: a finish_reason of `toString` is `other`", async () => {
    const text = fixture("openai-chat-text.sse.txt").replace(
      '"finish_reason":"stop"',
      '"finish_reason":"toString"',
    );
    expect(text).toContain('"toString"');
    server.use(http.post(OPENAI_CHAT, () => sseResponse(text)));
    const provider = createOpenAIProvider({ apiKey: "sk-test", api: "chat" });
    const events = await collect(
      provider.stream({ model: "gpt-4.1-mini", messages: [userText("Hi")] }),
    );
    expect(events.at(-1)).toEqual({ type: "finish", reason: "other", rawReason: "toString" });
  });

  it("an error whose type and code are `constructor` gets its kind from the HTTP status", async () => {
    server.use(
      http.post(ANTHROPIC, () =>
        errorResponse(400, { type: "error", error: { type: "constructor", message: "no" } }),
      ),
      http.post(OPENAI_CHAT, () =>
        errorResponse(400, {
          error: { message: "no", type: "constructor", param: null, code: "constructor" },
        }),
      ),
    );
    const providers = [
      createAnthropicProvider({ apiKey: "sk-ant-test" }),
      createOpenAIProvider({ apiKey: "sk-test", api: "chat" }),
    ];
    for (const provider of providers) {
      const { error } = await collectFailure(
        provider.stream({ model: "m", messages: [userText("Hi")] }),
      );
      expect(ProviderError.isInstance(error)).toBe(true);
      expect(error.kind).toBe("invalid_request");
      expect(typeof error.kind).toBe("string");
    }
  });
});
