import { InvalidArgumentError, type ModelRequest } from "@beamclaw/core";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createOpenAICompatibleProvider,
  type OpenAICompatibleProviderOptions,
  type ProviderHttpOptions,
} from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  collectFailure,
  expectWellFormed,
  fixture,
  sseResponse,
  textOf,
  thinkingOf,
  userText,
} from "./support.js";
import { describeTransportContract } from "./transport-contract.js";

const BASE = "https://openrouter.example.com/api/v1";
const URL_CHAT = `${BASE}/chat/completions`;
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const provider = (options: Partial<OpenAICompatibleProviderOptions> & ProviderHttpOptions = {}) =>
  createOpenAICompatibleProvider({ id: "openrouter", baseUrl: BASE, apiKey: "or-key", ...options });
const hello: ModelRequest = { model: "qwen3:8b", messages: [userText("Hello")] };

function serve(name: string): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(URL_CHAT, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(fixture(name));
    }),
  );
  return seen;
}

describe("createOpenAICompatibleProvider: streaming", () => {
  it("streams delta.reasoning as thinking, then content, usage and finish", async () => {
    serve("ollama-chat.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(thinkingOf(events)).toBe("The user greets me. I should greet back.");
    const end = events.findIndex((e) => e.type === "thinking-end");
    expect(events[end]).toEqual({ type: "thinking-end" });
    expect(end).toBeLessThan(events.findIndex((e) => e.type === "text-delta"));
    expect(textOf(events)).toBe("Hello there!");
    expect(events.find((e) => e.type === "usage")).toEqual({
      type: "usage",
      usage: { inputTokens: 26, outputTokens: 9 },
    });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "stop" });
  });

  it("reads DeepSeek/vLLM-style delta.reasoning_content as thinking too", async () => {
    const text = fixture("ollama-chat.sse.txt").replaceAll('"reasoning":', '"reasoning_content":');
    server.use(http.post(URL_CHAT, () => sseResponse(text)));
    const events = await collect(provider().stream(hello));
    expect(thinkingOf(events)).toBe("The user greets me. I should greet back.");
  });

  it("takes a tool call that arrives whole in one chunk", async () => {
    serve("ollama-tool-call.sse.txt");
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(events.filter((e) => e.type.startsWith("tool-call"))).toEqual([
      { type: "tool-call-start", toolCallId: "call_p4tk7dmh", toolName: "get_weather" },
      { type: "tool-call-delta", toolCallId: "call_p4tk7dmh", inputTextDelta: '{"city":"Paris"}' },
      {
        type: "tool-call",
        toolCallId: "call_p4tk7dmh",
        toolName: "get_weather",
        input: { city: "Paris" },
      },
    ]);
    expect(events.at(-1)).toEqual({
      type: "finish",
      reason: "tool-calls",
      rawReason: "tool_calls",
    });
  });

  it("accepts a stream that ends after finish_reason without [DONE], as some servers send", async () => {
    const text = fixture("ollama-chat.sse.txt").replace("data: [DONE]\n\n", "");
    server.use(http.post(URL_CHAT, () => sseResponse(text)));
    const events = await collect(provider().stream(hello));
    expectWellFormed(events);
    expect(textOf(events)).toBe("Hello there!");
  });

  it("an error event in the stream whose code is an HTTP status (vLLM) is of that status's kind", async () => {
    const chunk = (content: string) =>
      `data: ${JSON.stringify({
        id: "chatcmpl-1",
        object: "chat.completion.chunk",
        created: 1,
        model: "qwen3:8b",
        choices: [{ index: 0, delta: { content }, finish_reason: null }],
      })}\n\n`;
    const failing = (error: object) => `${chunk("Hel")}data: ${JSON.stringify({ error })}\n\n`;
    const cases: Array<[object, string, boolean]> = [
      [
        {
          object: "error",
          message: "This model's maximum context length is 4096 tokens.",
          type: "BadRequestError",
          param: null,
          code: 400,
        },
        "invalid_request",
        false,
      ],
      [{ message: "Rate limit exceeded", code: 429 }, "rate_limit", true],
      [{ message: "engine died", type: "InternalServerError", code: 500 }, "server", true],
    ];
    for (const [error, kind, retryable] of cases) {
      server.use(http.post(URL_CHAT, () => sseResponse(failing(error))));
      const { events, error: thrown } = await collectFailure(provider().stream(hello));
      expect(textOf(events)).toBe("Hel");
      expect(thrown.kind, kind).toBe(kind);
      expect(thrown.isRetryable, kind).toBe(retryable);
      expect(thrown.message).toContain((error as { message: string }).message);
    }
  });

  it("a server that ignores stream: true and answers JSON is malformed_stream, with the body kept", async () => {
    server.use(
      http.post(URL_CHAT, () =>
        HttpResponse.json({ id: "x", object: "chat.completion", choices: [] }),
      ),
    );
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("malformed_stream");
    expect(error.responseBody).toContain("chat.completion");
  });
});

describe("createOpenAICompatibleProvider: request mapping and options", () => {
  it("sends the bearer key and extra headers, max_tokens, reasoning_effort and include_usage", async () => {
    const seen = serve("ollama-chat.sse.txt");
    await collect(
      provider({
        headers: { "HTTP-Referer": "https://beamclaw.dev", "X-Title": "BeamClaw" },
      }).stream({
        ...hello,
        maxOutputTokens: 256,
        thinking: "low",
      }),
    );
    expect(seen[0]?.headers).toMatchObject({
      authorization: "Bearer or-key",
      "http-referer": "https://beamclaw.dev",
      "x-title": "BeamClaw",
    });
    expect(seen[0]?.body).toEqual({
      model: "qwen3:8b",
      messages: [{ role: "user", content: "Hello" }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 256,
      reasoning_effort: "low",
    });
  });

  it("sends no Authorization header without an API key, and honours maxTokensField and includeUsage", async () => {
    const seen = serve("ollama-chat.sse.txt");
    await collect(
      createOpenAICompatibleProvider({
        baseUrl: BASE,
        maxTokensField: "max_completion_tokens",
        includeUsage: false,
      }).stream({ ...hello, maxOutputTokens: 64 }),
    );
    expect(seen[0]?.headers.authorization).toBeUndefined();
    expect(seen[0]?.body.max_completion_tokens).toBe(64);
    expect(seen[0]?.body).not.toHaveProperty("max_tokens");
    expect(seen[0]?.body).not.toHaveProperty("stream_options");
  });

  it("uses the id it is given (default openai-compatible) for errors and providerOptions", async () => {
    const seen = serve("ollama-chat.sse.txt");
    await collect(
      provider({ id: "ollama" }).stream({
        ...hello,
        providerOptions: { ollama: { keep_alive: "5m" } },
      }),
    );
    expect(seen[0]?.body.keep_alive).toBe("5m");
    expect(createOpenAICompatibleProvider({ baseUrl: BASE }).id).toBe("openai-compatible");
  });

  it.each([
    [undefined, /baseUrl/],
    [{ baseUrl: "not a url" }, /baseUrl/],
    [{ baseUrl: BASE, maxTokensField: "max_output" }, /maxTokensField/],
  ])("rejects the invalid options %j with InvalidArgumentError", (options, message) => {
    const create = () =>
      createOpenAICompatibleProvider(options as unknown as OpenAICompatibleProviderOptions);
    expect(create).toThrow(InvalidArgumentError);
    expect(create).toThrow(message);
  });

  it("lists the server's models (GET /models) with the context windows and prices given", async () => {
    server.use(
      http.get(`${BASE}/models`, () =>
        HttpResponse.json({
          object: "list",
          data: [
            { id: "qwen3:8b", object: "model", created: 1754550000, owned_by: "library" },
            { id: "llama3.2:latest", object: "model", created: 1754550000, owned_by: "library" },
          ],
        }),
      ),
    );
    const models = await provider({
      models: [
        { id: "qwen3:8b", contextWindow: 40_960, pricing: { inputPerMTok: 0, outputPerMTok: 0 } },
      ],
    }).listModels!();
    expect(models).toEqual([
      { id: "qwen3:8b", contextWindow: 40_960, pricing: { inputPerMTok: 0, outputPerMTok: 0 } },
      { id: "llama3.2:latest" },
    ]);
  });

  it("listModels reports an HTTP failure as a ProviderError", async () => {
    server.use(
      http.get(`${BASE}/models`, () =>
        HttpResponse.json(
          { error: { message: "No auth credentials found", code: 401 } },
          { status: 401 },
        ),
      ),
    );
    const error = await provider().listModels!().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "PROVIDER_ERROR", kind: "auth", statusCode: 401 });
  });

  it("listModels gives up with a timeout when the document's body does not end within timeoutMs", async () => {
    let sent = false;
    server.use(
      http.get(`${BASE}/models`, () => {
        sent = true;
        return new HttpResponse(
          new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(new TextEncoder().encode('{"object":"list","data":['));
            },
          }) as never,
          { headers: { "content-type": "application/json" } },
        );
      }),
    );
    const started = performance.now();
    const error = await provider({ timeoutMs: 100 }).listModels!().catch((e: unknown) => e);
    expect(sent).toBe(true);
    expect(error).toMatchObject({ code: "PROVIDER_ERROR", kind: "timeout" });
    expect((error as Error).message).toMatch(/100 ms/);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describeTransportContract({
  name: "openai-compatible",
  server,
  url: URL_CHAT,
  provider: (options) => provider(options),
  request: hello,
  goodStream: fixture("ollama-chat.sse.txt"),
  rateLimitBody: { error: { message: "Rate limit exceeded: free-models-per-min.", code: 429 } },
  httpErrors: [
    {
      what: "bad request",
      status: 400,
      body: {
        error: {
          message: "model is required",
          type: "invalid_request_error",
          param: null,
          code: null,
        },
      },
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "no credentials",
      status: 401,
      body: { error: { message: "No auth credentials found", code: 401 } },
      kind: "auth",
      retryable: false,
    },
    {
      what: "model not pulled (Ollama)",
      status: 404,
      body: {
        error: {
          message: 'model "qwen3:8b" not found, try pulling it first',
          type: "api_error",
          param: null,
          code: null,
        },
      },
      kind: "invalid_request",
      retryable: false,
    },
    {
      what: "rate limited",
      status: 429,
      body: { error: { message: "Rate limit exceeded", code: 429 } },
      kind: "rate_limit",
      retryable: true,
    },
    {
      what: "internal error",
      status: 500,
      body: {
        error: {
          message: "llama runner process has terminated",
          type: "api_error",
          param: null,
          code: null,
        },
      },
      kind: "server",
      retryable: true,
    },
    {
      what: "model loading",
      status: 503,
      body: {
        error: {
          message: "server busy, please try again",
          type: "api_error",
          param: null,
          code: null,
        },
      },
      kind: "overloaded",
      retryable: true,
    },
  ],
});
