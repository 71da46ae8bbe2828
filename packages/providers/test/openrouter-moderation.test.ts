/**
 * OpenRouter refuses input its moderation flagged with HTTP 403 and `error.metadata` naming
 * the `reasons` and the `flagged_input`. That is the request's fault (as OpenAI's
 * `invalid_prompt` is), not the key's: kind `invalid_request`, which does not count against
 * the ref's circuit, so that a few flagged messages do not shut the ref for every other call.
 * A 403 without that metadata is still `auth`.
 */
import { createProviderChain, type ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider } from "../src/index.js";
import { chatAnswer, collectFailure, errorResponse, mswFakes, userText } from "./support.js";

const URL_OPENROUTER = "https://openrouter.ai/api/v1/chat/completions";
const { server } = mswFakes();

const MODEL = "openai/gpt-4o";
const hello: ModelRequest = { model: MODEL, messages: [userText("Hello")] };
const openrouter = () =>
  createOpenAICompatibleProvider({
    id: "openrouter",
    baseUrl: "https://openrouter.ai/api/v1",
    apiKey: "sk-or-test",
  });

/** OpenRouter's documented moderation error: `ModerationErrorMetadata` in `error.metadata`. */
const flagged = {
  error: {
    code: 403,
    message: `${MODEL} requires moderation on OpenAI. Your input was flagged for "harassment".`,
    metadata: {
      reasons: ["harassment"],
      flagged_input: "you are all ...",
      provider_name: "OpenAI",
      model_slug: MODEL,
    },
  },
};

describe("OpenRouter: input flagged by moderation", () => {
  it("HTTP 403 with moderation metadata is invalid_request, not retryable", async () => {
    server.use(http.post(URL_OPENROUTER, () => errorResponse(403, flagged)));
    const { error } = await collectFailure(openrouter().stream(hello));
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(403);
    expect(error.message).toContain("Your input was flagged");
  });

  it("a 403 without moderation metadata is still auth", async () => {
    server.use(
      http.post(URL_OPENROUTER, () =>
        errorResponse(403, { error: { code: 403, message: "Key disabled" } }),
      ),
    );
    const { error } = await collectFailure(openrouter().stream(hello));
    expect(error.kind).toBe("auth");
  });

  it("flagged calls do not open the ref's circuit: the next clean call still goes to it", async () => {
    let calls = 0;
    server.use(
      http.post(URL_OPENROUTER, async ({ request }) => {
        calls++;
        const body = (await request.json()) as { messages: Array<{ content: unknown }> };
        const text = JSON.stringify(body.messages);
        return text.includes("flag me") ? errorResponse(403, flagged) : chatAnswer(MODEL, "Hi");
      }),
    );
    const chain = createProviderChain({
      providers: [openrouter()],
      models: [`openrouter/${MODEL}`],
      retry: { maxAttempts: 3, baseDelayMs: 0 },
      circuitBreaker: { failureThreshold: 1 },
    });
    let failure: unknown;
    try {
      for await (const _ of chain.stream({ messages: [userText("flag me")] })) {
        // drained
      }
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeDefined();
    expect(chain.circuitState(`openrouter/${MODEL}`)).toBe("closed");
    let text = "";
    for await (const event of chain.stream({ messages: hello.messages })) {
      if (event.type === "text-delta") text += event.text;
    }
    expect(text).toBe("Hi");
    expect(calls).toBe(2);
  });
});
