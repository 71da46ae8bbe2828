/**
 * Headers that cannot be sent (an API key with a stray character, a header name with a
 * space) are bad input: a factory refuses them with `InvalidArgumentError`, a call with
 * `ProviderError` kind `invalid_request` before any request; neither shows the value, which
 * may be a key.
 */
import { InvalidArgumentError, type ModelProvider, ProviderError } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import { collect, collectFailure, fixture, sseResponse, userText } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

/** A key pasted with a typographic quote, and one with a line break inside. */
const BAD_KEYS = ["sk-live-“d41d8cd98f00”", "sk-live-d41d8cd9\n8f00b204"];

const factories: Array<
  [string, (options: { apiKey?: string; headers?: Record<string, string> }) => ModelProvider]
> = [
  ["anthropic", (options) => createAnthropicProvider(options)],
  ["openai", (options) => createOpenAIProvider(options)],
  ["openai chat", (options) => createOpenAIProvider({ ...options, api: "chat" })],
  [
    "openai-compatible",
    (options) =>
      createOpenAICompatibleProvider({ baseUrl: "http://127.0.0.1:11434/v1", ...options }),
  ],
];

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe("headers that cannot be sent", () => {
  it.each(factories)(
    "%s: an API key that is not a valid header value is InvalidArgumentError, without the key",
    (_, make) => {
      for (const apiKey of BAD_KEYS) {
        const error = thrown(() => make({ apiKey }));
        expect(InvalidArgumentError.isInstance(error)).toBe(true);
        expect((error as Error).message).not.toContain("d41d8cd9");
      }
    },
  );

  it.each(factories)(
    "%s: an extra header with an invalid name is InvalidArgumentError naming it",
    (_, make) => {
      const error = thrown(() => make({ apiKey: "sk-test", headers: { "X Title": "my app" } }));
      expect(InvalidArgumentError.isInstance(error)).toBe(true);
      expect((error as Error).message).toContain('"X Title"');
    },
  );

  it("a per-call header that cannot be sent is invalid_request, not retried, and nothing is sent", async () => {
    let requests = 0;
    server.use(
      http.post("https://api.anthropic.com/v1/messages", () => {
        requests++;
        return sseResponse(fixture("anthropic-text.sse.txt"));
      }),
    );
    const provider = createAnthropicProvider({ apiKey: "sk-ant-test" });
    const request = { model: "claude-sonnet-4-5", messages: [userText("Hi")] };
    const unsendable: Array<Record<string, string>> = [
      { "x-trace": "abc\r\nx-injected: 1" },
      { "x trace": "abc" },
    ];
    for (const headers of unsendable) {
      const { error } = await collectFailure(provider.stream(request, { headers }));
      expect(ProviderError.isInstance(error)).toBe(true);
      expect(error.kind).toBe("invalid_request");
      expect(error.isRetryable).toBe(false);
      expect(error.message).not.toContain("abc");
    }
    expect(requests).toBe(0);
    // Valid per-call headers still go out.
    await collect(provider.stream(request, { headers: { "x-trace": "abc" } }));
    expect(requests).toBe(1);
  });
});
