/**
 * llama.cpp servers built before late 2025 report a failure after the 200 as a non-standard
 * SSE field, then end the stream as a success (ggml-org/llama.cpp#16109, which fixed it):
 *
 *   error: {"code":400,"message":"the request exceeds the available context size. ...","type":"invalid_request_error"}
 *
 *   data: [DONE]
 *
 * The failure must reach the caller as the error it is, not as an empty answer.
 */
import { ProviderError } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider } from "../src/index.js";
import { collectFailure, sseResponse, userText } from "./support.js";

const BASE = "http://127.0.0.1:8080/v1";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const OVERFLOW = {
  code: 400,
  message:
    "the request exceeds the available context size. try increasing the context size or enable context shift",
  type: "invalid_request_error",
};

describe("an older llama.cpp server's error line", () => {
  it("fails the call with the server's error, not an empty answer", async () => {
    server.use(
      http.post(`${BASE}/chat/completions`, () =>
        sseResponse(`error: ${JSON.stringify(OVERFLOW)}\n\ndata: [DONE]\n\n`),
      ),
    );
    const provider = createOpenAICompatibleProvider({ id: "llamacpp", baseUrl: BASE });
    const { error, events } = await collectFailure(
      provider.stream({ model: "qwen3", messages: [userText("Hello")] }),
    );
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.kind).toBe("invalid_request");
    expect(error.isRetryable).toBe(false);
    expect(error.message).toContain("exceeds the available context size");
    expect(events.filter((e) => e.type === "finish")).toEqual([]);
  });

  it("after some text, still fails the call", async () => {
    const chunk = {
      id: "chatcmpl-1",
      object: "chat.completion.chunk",
      model: "qwen3",
      choices: [{ index: 0, delta: { content: "Par" }, finish_reason: null }],
    };
    const failure = { code: 500, message: "slot unavailable", type: "server_error" };
    server.use(
      http.post(`${BASE}/chat/completions`, () =>
        sseResponse(
          `data: ${JSON.stringify(chunk)}\n\nerror: ${JSON.stringify(failure)}\n\ndata: [DONE]\n\n`,
        ),
      ),
    );
    const provider = createOpenAICompatibleProvider({ id: "llamacpp", baseUrl: BASE });
    const { error, events } = await collectFailure(
      provider.stream({ model: "qwen3", messages: [userText("Hello")] }),
    );
    expect(events.filter((e) => e.type === "text-delta")).toEqual([
      { type: "text-delta", text: "Par" },
    ]);
    expect(error.kind).toBe("server");
    expect(error.message).toContain("slot unavailable");
  });
});
