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
import {
  chatChunk,
  collectFailure,
  errorResponse,
  mswFakes,
  sseResponse,
  userText,
} from "./support.js";

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

/**
 * Hugging Face text-generation-inference (TGI) answers with `{"error": "<message>",
 * "error_type": "<kind>"}` (its router's `ErrorResponse`; `InferError::error_type`):
 * `overloaded` (HTTP 429, "Model is overloaded": its concurrent-request limit is full),
 * `validation` (HTTP 422, "Input validation error: …"), `generation` (HTTP 424, "Request failed
 * during generation: …", a shard's failure), `incomplete_generation` (HTTP 500). A streamed
 * request is validated and queued after the 200, so the same body comes as an event of the
 * stream, `data: {"error": …, "error_type": …}`, where there is no status to go by
 * (huggingface_hub's TGI client raises on it by `error_type`). The kind follows `error_type`.
 */
describe("Hugging Face TGI: {error, error_type}", () => {
  const TGI = "http://127.0.0.1:8080/v1";
  const VALIDATION =
    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 3980 `inputs` tokens and 512 `max_new_tokens`";

  /** A TGI stream that fails with `error`, after `tokens` streamed as content. */
  async function streamFailure(error: string, errorType: string, tokens: string[] = []) {
    const chunks = tokens.map((content, i) =>
      chatChunk("tgi", i === 0 ? { role: "assistant", content } : { content }),
    );
    const body = `${chunks.join("")}data: ${JSON.stringify({ error, error_type: errorType })}\n\ndata: [DONE]\n\n`;
    server.use(http.post(`${TGI}/chat/completions`, () => sseResponse(body)));
    const provider = createOpenAICompatibleProvider({ id: "tgi", baseUrl: TGI });
    return collectFailure(provider.stream({ model: "tgi", messages: [userText("Hello")] }));
  }

  it("HTTP 429 `overloaded` is a retryable overload, as a 503 is, with TGI's message", async () => {
    const body = { error: "Model is overloaded", error_type: "overloaded" };
    const error = await failure(TGI, "tgi", "tgi", 429, body);
    expect(error.message).toBe("tgi/tgi: HTTP 429 overloaded: Model is overloaded");
    expect(error).toMatchObject({ kind: "overloaded", statusCode: 429, isRetryable: true });
    expect(error.responseBody).toBe(JSON.stringify(body));
  });

  it("HTTP 422 `validation` is a bad request, not retried, with TGI's message", async () => {
    const error = await failure(TGI, "tgi", "tgi", 422, {
      error: VALIDATION,
      error_type: "validation",
    });
    expect(error.message).toBe(`tgi/tgi: HTTP 422 validation: ${VALIDATION}`);
    expect(error).toMatchObject({ kind: "invalid_request", statusCode: 422, isRetryable: false });
  });

  it("HTTP 424 `generation` (a shard failed) is a retryable server error", async () => {
    const message = "Request failed during generation: Server error: CUDA out of memory.";
    const error = await failure(TGI, "tgi", "tgi", 424, {
      error: message,
      error_type: "generation",
    });
    expect(error.message).toBe(`tgi/tgi: HTTP 424 generation: ${message}`);
    expect(error).toMatchObject({ kind: "server", statusCode: 424, isRetryable: true });
  });

  it("an `overloaded` event in the stream is a retryable overload", async () => {
    const { error, events } = await streamFailure("Model is overloaded", "overloaded");
    expect(events).toEqual([]);
    expect(ProviderError.isInstance(error)).toBe(true);
    expect(error.message).toBe("tgi/tgi: error in stream: overloaded: Model is overloaded");
    expect(error).toMatchObject({ kind: "overloaded", isRetryable: true });
  });

  it("a `validation` event in the stream is a bad request, not retried", async () => {
    const { error } = await streamFailure(VALIDATION, "validation");
    expect(error.message).toBe(`tgi/tgi: error in stream: validation: ${VALIDATION}`);
    expect(error).toMatchObject({ kind: "invalid_request", isRetryable: false });
    expect(error.responseBody).toBe(
      JSON.stringify({ error: VALIDATION, error_type: "validation" }),
    );
  });

  it("a `generation` event after some text ends the stream with a retryable server error", async () => {
    const message = "Request failed during generation: Server error: CUDA out of memory.";
    const { error, events } = await streamFailure(message, "generation", ["Hel", "lo"]);
    expect(events.map((e) => e.type)).toEqual(["response-start", "text-delta", "text-delta"]);
    expect(error.message).toBe(`tgi/tgi: error in stream: generation: ${message}`);
    expect(error).toMatchObject({ kind: "server", isRetryable: true });
  });
});
