/**
 * The Responses API's documented `response.error.code`s say whether a retry can help.
 * `invalid_prompt` (request validation failed) and the image codes are the request's fault:
 * retrying the same request cannot succeed, so they must not be retried or count against the
 * circuit; `vector_store_timeout` is a timeout; `server_error` stays a retryable server error.
 */
import { createProviderChain, type ModelRequest, ProviderError } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAIProvider } from "../src/index.js";
import { collectFailure, fixture, sseResponse, userText } from "./support.js";

const URL_RESPONSES = "https://api.openai.com/v1/responses";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const hello: ModelRequest = { model: "gpt-4.1", messages: [userText("Hello")] };

/** The recorded `response.failed` stream, with `code` and `message` in its `response.error`. */
function failedWith(code: string, message: string): string {
  return fixture("openai-responses-failed.sse.txt").replace(
    '"error":{"code":"server_error","message":"The model failed to generate a response."}',
    JSON.stringify({ error: { code, message } }).slice(1, -1),
  );
}

/** Serves `text` on every request; returns the request count. */
function serve(text: string): { count: number } {
  const seen = { count: 0 };
  server.use(
    http.post(URL_RESPONSES, () => {
      seen.count++;
      return sseResponse(text);
    }),
  );
  return seen;
}

describe("Responses API: response.failed codes", () => {
  const cases: Array<[string, string, ProviderError["kind"], boolean]> = [
    ["invalid_prompt", "Invalid prompt: your prompt was flagged.", "invalid_request", false],
    ["invalid_image", "The image is not valid.", "invalid_request", false],
    ["image_too_large", "The image is too large.", "invalid_request", false],
    ["unsupported_image_media_type", "Unsupported image type.", "invalid_request", false],
    ["image_content_policy_violation", "The image was refused.", "invalid_request", false],
    ["vector_store_timeout", "The vector store timed out.", "timeout", true],
    ["server_error", "The model failed to generate a response.", "server", true],
  ];
  for (const [code, message, kind, retryable] of cases) {
    it(`${code} is ${kind}, ${retryable ? "" : "not "}retryable`, async () => {
      serve(failedWith(code, message));
      const { error } = await collectFailure(
        createOpenAIProvider({ apiKey: "sk-test" }).stream(hello),
      );
      expect(ProviderError.isInstance(error)).toBe(true);
      expect(error.kind).toBe(kind);
      expect(error.isRetryable).toBe(retryable);
      expect(error.message).toContain(`${code}: ${message}`);
    });
  }

  it("a chain does not retry invalid_prompt on the same ref, nor count it against the circuit", async () => {
    const seen = serve(failedWith("invalid_prompt", "Invalid prompt."));
    const chain = createProviderChain({
      providers: [createOpenAIProvider({ apiKey: "sk-test" })],
      models: ["openai/gpt-4.1"],
      retry: { maxAttempts: 3, baseDelayMs: 0 },
      circuitBreaker: { failureThreshold: 1 },
    });
    let failure: unknown;
    try {
      for await (const _ of chain.stream({ messages: hello.messages })) {
        // drained
      }
    } catch (error) {
      failure = error;
    }
    expect((failure as { attempts?: unknown[] }).attempts).toHaveLength(1);
    expect(seen.count).toBe(1);
    expect(chain.circuitState("openai/gpt-4.1")).toBe("closed");
  });
});
