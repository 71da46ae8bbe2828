/**
 * A session that outgrew its model's context window, end to end over the vendors' HTTP APIs
 * (faked with msw: OpenAI Chat Completions and Responses, Anthropic Messages, the Gemini API,
 * a vLLM server):
 * each refuses a prompt that is too long with its documented 400
 * error, before any output; core's runtime recognizes the refusal from this package's
 * `ProviderError`, leaves older turns out of the request, and tries again.
 */
import type { ModelProvider } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import { errorResponse, fixture, runtimeOver, sseResponse } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A request body: Chat Completions' and Anthropic's `messages`, the Responses API's `input`,
 * Gemini's `contents`.
 */
interface PromptBody {
  messages?: unknown[];
  input?: unknown[];
  contents?: unknown[];
}

/** The prompt's items (messages) of a request body. */
function promptItems(body: PromptBody): unknown[] {
  return body.messages ?? body.input ?? body.contents ?? [];
}

/** A Gemini API answer: two `GenerateContentResponse` chunks, the last with its finish reason. */
const GEMINI_ANSWER = [
  'data: {"candidates":[{"content":{"parts":[{"text":"Noted"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":2100,"candidatesTokenCount":1,"totalTokenCount":2101},"modelVersion":"gemini-2.5-flash","responseId":"rsp-overflow-1"}',
  'data: {"candidates":[{"content":{"parts":[{"text":"."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":2100,"candidatesTokenCount":2,"totalTokenCount":2102},"modelVersion":"gemini-2.5-flash","responseId":"rsp-overflow-1"}',
  "",
].join("\r\n\r\n");

/** Characters of the prompt a request body carries (the vendor's "context window"). */
function promptChars(body: PromptBody): number {
  return promptItems(body).reduce<number>((sum, item) => sum + JSON.stringify(item).length, 0);
}

interface Vendor {
  name: string;
  url: string | RegExp;
  provider: () => ModelProvider;
  model: string;
  refusal: () => ReturnType<typeof errorResponse>;
  answer: string;
}

const vendors: Vendor[] = [
  {
    name: "OpenAI Chat Completions",
    url: "https://api.openai.com/v1/chat/completions",
    provider: () => createOpenAIProvider({ api: "chat", apiKey: "sk-test" }),
    model: "openai/gpt-4.1-mini",
    // https://platform.openai.com/docs/guides/error-codes: 400, code context_length_exceeded.
    refusal: () =>
      errorResponse(400, {
        error: {
          message:
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9013 tokens. Please reduce the length of the messages.",
          type: "invalid_request_error",
          param: "messages",
          code: "context_length_exceeded",
        },
      }),
    answer: fixture("openai-chat-text.sse.txt"),
  },
  {
    name: "Anthropic Messages",
    url: "https://api.anthropic.com/v1/messages",
    provider: () => createAnthropicProvider({ apiKey: "sk-ant-test" }),
    model: "anthropic/claude-sonnet-4-5",
    // https://docs.anthropic.com/en/api/errors: 400 invalid_request_error.
    refusal: () =>
      errorResponse(
        400,
        {
          type: "error",
          error: {
            type: "invalid_request_error",
            message: "prompt is too long: 208310 tokens > 200000 maximum",
          },
        },
        { "request-id": "req_011CSHoEeqs5C35K2UUqR7Fy" },
      ),
    answer: fixture("anthropic-text.sse.txt"),
  },
  {
    name: "OpenAI Responses",
    url: "https://api.openai.com/v1/responses",
    provider: () => createOpenAIProvider({ api: "responses", apiKey: "sk-test" }),
    model: "openai/gpt-4.1",
    refusal: () =>
      errorResponse(400, {
        error: {
          message:
            "Your input exceeds the context window of this model. Please adjust your input and try again.",
          type: "invalid_request_error",
          param: "input",
          code: "context_length_exceeded",
        },
      }),
    answer: fixture("openai-responses-text.sse.txt"),
  },
  {
    name: "the Gemini API",
    url: /^https:\/\/generativelanguage\.googleapis\.com\/v1beta\/models\/gemini-2\.5-flash:streamGenerateContent/,
    provider: () => createGoogleProvider({ apiKey: "AIza-test" }),
    model: "google/gemini-2.5-flash",
    // https://ai.google.dev/gemini-api/docs/troubleshooting: 400 INVALID_ARGUMENT.
    refusal: () =>
      errorResponse(400, {
        error: {
          code: 400,
          message:
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
          status: "INVALID_ARGUMENT",
        },
      }),
    answer: GEMINI_ANSWER,
  },
  {
    name: "an OpenAI-compatible server (vLLM)",
    url: "http://127.0.0.1:8000/v1/chat/completions",
    provider: () =>
      createOpenAICompatibleProvider({ id: "vllm", baseUrl: "http://127.0.0.1:8000/v1" }),
    model: "vllm/qwen2.5-7b",
    // vLLM's OpenAI-compatible error body for a prompt past max_model_len.
    refusal: () =>
      errorResponse(400, {
        object: "error",
        message:
          "This model's maximum context length is 4096 tokens. However, you requested 5012 tokens (4500 in the messages, 512 in the completion). Please reduce the length of the messages or completion.",
        type: "BadRequestError",
        param: null,
        code: 400,
      }),
    answer: fixture("openai-chat-text.sse.txt"),
  },
];

describe.each(vendors)("$name refuses a prompt that is too long", (vendor) => {
  it("the runtime leaves older turns out and tries again; the session goes on", async () => {
    const sizes: number[] = [];
    const window = 9_000;
    server.use(
      http.post(vendor.url, async ({ request }) => {
        const body = (await request.json()) as PromptBody;
        const chars = promptChars(body);
        sizes.push(promptItems(body).length);
        return chars > window ? vendor.refusal() : sseResponse(vendor.answer);
      }),
    );
    const runtime = await runtimeOver(
      [vendor.provider()],
      { agents: [{ id: "main", model: vendor.model }] },
      cleanups,
    );
    const session = runtime.session("agent:main:main");
    const statuses: string[] = [];
    for (let n = 1; n <= 6; n++) {
      const result = await (await session.send(`question ${n}: ${"detail ".repeat(300)}`)).result;
      statuses.push(result.status);
    }
    expect(statuses).toEqual(Array(6).fill("completed"));
    // Some request was refused and the one after it carried fewer messages.
    const refusedAt = sizes.findIndex((_, i) => i > 0 && sizes[i]! < sizes[i - 1]!);
    expect(refusedAt).toBeGreaterThan(0);
    expect(sizes.length).toBeGreaterThan(6);
    // The session kept every turn.
    expect((await session.info()).historyLength).toBe(12);
  });
});
