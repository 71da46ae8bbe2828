/**
 * An account with no credit left is refused whatever the request says: Anthropic answers
 * HTTP 402 `billing_error` (and, for some accounts, HTTP 400 `invalid_request_error` "Your
 * credit balance is too low…"), OpenRouter HTTP 402 `{"error": {"code": 402, ...}}`. That is
 * the account's fault, not the request's: kind `auth`, not retryable, and it counts against
 * the ref's circuit, so that a chain stops paying a refused round trip on every call.
 */
import { createProviderChain, type ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createAnthropicProvider, createOpenAICompatibleProvider } from "../src/index.js";
import { chatAnswer, collectFailure, errorResponse, mswFakes, userText } from "./support.js";

const URL_MESSAGES = "https://api.anthropic.com/v1/messages";
const URL_OPENROUTER = "https://openrouter.ai/api/v1/chat/completions";
const { server } = mswFakes();

const hello: ModelRequest = { model: "claude-sonnet-4-5", messages: [userText("Hello")] };
const anthropic = () => createAnthropicProvider({ apiKey: "sk-ant-test" });
const openrouter = () =>
  createOpenAICompatibleProvider({
    id: "openrouter",
    baseUrl: "https://openrouter.ai/api/v1",
    apiKey: "sk-or-test",
  });

/** Anthropic's documented error body. */
const anthropicError = (type: string, message: string) => ({
  type: "error",
  error: { type, message },
  request_id: "req_011CSHoEeqs5C35K2UUqR7Fy",
});

const LOW_CREDIT =
  "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.";

describe("no credit left", () => {
  it.each([
    [402, "billing_error"],
    [400, "invalid_request_error"],
  ])(
    "Anthropic HTTP %i %s 'Your credit balance is too low' is auth, not retryable",
    async (status, type) => {
      server.use(
        http.post(URL_MESSAGES, () => errorResponse(status, anthropicError(type, LOW_CREDIT))),
      );
      const { error } = await collectFailure(anthropic().stream(hello));
      expect(error.kind).toBe("auth");
      expect(error.isRetryable).toBe(false);
      expect(error.statusCode).toBe(status);
      expect(error.message).toContain(`${type}: ${LOW_CREDIT}`);
    },
  );

  it("any other Anthropic HTTP 400 stays invalid_request", async () => {
    server.use(
      http.post(URL_MESSAGES, () =>
        errorResponse(400, anthropicError("invalid_request_error", "max_tokens: Field required")),
      ),
    );
    const { error } = await collectFailure(anthropic().stream(hello));
    expect(error.kind).toBe("invalid_request");
  });

  it("OpenRouter HTTP 402 (insufficient credits) is auth, not retryable", async () => {
    server.use(
      http.post(URL_OPENROUTER, () =>
        errorResponse(402, {
          error: {
            code: 402,
            message: "Insufficient credits. Add more using https://openrouter.ai/credits",
          },
        }),
      ),
    );
    const { error } = await collectFailure(
      openrouter().stream({ model: "anthropic/claude-sonnet-4.5", messages: hello.messages }),
    );
    expect(error.kind).toBe("auth");
    expect(error.isRetryable).toBe(false);
    expect(error.statusCode).toBe(402);
  });

  it("a chain opens the circuit of a ref with no credit left, and stops calling it", async () => {
    const calls = { anthropic: 0, openrouter: 0 };
    server.use(
      http.post(URL_MESSAGES, () => {
        calls.anthropic++;
        return errorResponse(402, anthropicError("billing_error", LOW_CREDIT));
      }),
      http.post(URL_OPENROUTER, () => {
        calls.openrouter++;
        return chatAnswer("anthropic/claude-sonnet-4.5", "Hi");
      }),
    );
    const chain = createProviderChain({
      providers: [anthropic(), openrouter()],
      models: ["anthropic/claude-sonnet-4-5", "openrouter/anthropic/claude-sonnet-4.5"],
      retry: { maxAttempts: 3, baseDelayMs: 0 },
      circuitBreaker: { failureThreshold: 1 },
    });
    for (let i = 0; i < 2; i++) {
      let text = "";
      for await (const event of chain.stream({ messages: hello.messages })) {
        if (event.type === "text-delta") text += event.text;
      }
      expect(text).toBe("Hi");
    }
    expect(chain.circuitState("anthropic/claude-sonnet-4-5")).toBe("open");
    expect(calls).toEqual({ anthropic: 1, openrouter: 2 });
  });
});
