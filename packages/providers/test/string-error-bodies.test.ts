/**
 * Error bodies whose `error` is the message itself, a string, rather than OpenAI's object:
 * LM Studio answers a request it refuses with `{"error": "<message>"}` (HTTP 400 `{"error":
 * "'response_format.type' must be 'json_schema' or 'text'"}`, t59688/arboris-novel#23; `{"error":
 * "Cannot read properties of null (reading 'type')"}`, algorithmicsuperintelligence/optillm#272),
 * and Ollama's native API a model it does not have with HTTP 404 `{"error": "model 'x' not
 * found"}` (CrestApps/CrestApps.Core#142, ollama/ollama-python#149). The error must carry the
 * server's message, not only "HTTP 400 Bad Request", and keep the kind its status gives.
 */
import { ProviderError } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider } from "../src/index.js";
import { collectFailure, errorResponse, mswFakes, userText } from "./support.js";

const { server } = mswFakes();

const LM_STUDIO = "http://127.0.0.1:1234/v1";
const OLLAMA = "http://127.0.0.1:11434/v1";

async function failure(baseUrl: string, id: string, model: string, status: number, body: unknown) {
  server.use(http.post(`${baseUrl}/chat/completions`, () => errorResponse(status, body)));
  const provider = createOpenAICompatibleProvider({ id, baseUrl });
  const { error, events } = await collectFailure(
    provider.stream({ model, messages: [userText("Hello")] }),
  );
  expect(events).toEqual([]);
  expect(ProviderError.isInstance(error)).toBe(true);
  return error;
}

describe('an error body of the form {"error": "<message>"}', () => {
  it("LM Studio's 400: the error says what the server refused", async () => {
    const message = "'response_format.type' must be 'json_schema' or 'text'";
    const error = await failure(LM_STUDIO, "lmstudio", "qwen3-8b", 400, { error: message });
    expect(error.message).toBe(`lmstudio/qwen3-8b: HTTP 400 ${message}`);
    expect(error).toMatchObject({ kind: "invalid_request", statusCode: 400, isRetryable: false });
    expect(error.responseBody).toBe(JSON.stringify({ error: message }));
  });

  it("Ollama's model not found: a 404, kind invalid_request, with the server's message", async () => {
    const error = await failure(OLLAMA, "ollama", "qwen3:8b", 404, {
      error: "model 'qwen3:8b' not found",
    });
    expect(error.message).toBe("ollama/qwen3:8b: HTTP 404 model 'qwen3:8b' not found");
    expect(error).toMatchObject({ kind: "invalid_request", statusCode: 404, isRetryable: false });
  });

  it("a server error's message is kept, and it stays retryable", async () => {
    const error = await failure(LM_STUDIO, "lmstudio", "qwen3-8b", 500, {
      error: "Model unloaded.",
    });
    expect(error.message).toBe("lmstudio/qwen3-8b: HTTP 500 Model unloaded.");
    expect(error).toMatchObject({ kind: "server", statusCode: 500, isRetryable: true });
  });

  it("a blank string says nothing: the status text stands in", async () => {
    const error = await failure(LM_STUDIO, "lmstudio", "qwen3-8b", 400, { error: " " });
    expect(error.message).toBe("lmstudio/qwen3-8b: HTTP 400 Bad Request");
  });

  it("Ollama's OpenAI-compatible 404 (`type: api_error`) is still kind invalid_request", async () => {
    // Ollama's /v1 endpoints wrap the same failure in OpenAI's shape
    // (netease-youdao/QAnything#555).
    const message = 'model "qwen3:8b" not found, try pulling it first';
    const error = await failure(OLLAMA, "ollama", "qwen3:8b", 404, {
      error: { message, type: "api_error", param: null, code: null },
    });
    expect(error.message).toBe(`ollama/qwen3:8b: HTTP 404 api_error: ${message}`);
    expect(error).toMatchObject({ kind: "invalid_request", statusCode: 404, isRetryable: false });
  });
});
