import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import { type CapturedRequest, capture, fixture, sseResponse } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => {
  server.resetHandlers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});
afterAll(() => server.close());

/**
 * Stands in for `process.stdout` (touching the real one would open a pipe handle in this
 * worker) and returns what is written to it.
 */
function stubStdout(): string[] {
  const written: string[] = [];
  const stdout = {
    write: (chunk: string) => {
      written.push(chunk);
      return true;
    },
  };
  const realProcess = process;
  vi.stubGlobal(
    "process",
    new Proxy(realProcess, {
      get: (target, key) => (key === "stdout" ? stdout : Reflect.get(target, key)),
    }),
  );
  return written;
}

/** Records the arguments of each `console.log`. */
function spyLog(): unknown[][] {
  const logged: unknown[][] = [];
  vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
    logged.push(args);
  });
  return logged;
}

// The examples printed in this package's README, kept runnable.
describe("README example", () => {
  it("streams an answer and prints its usage", async () => {
    vi.stubEnv("ANTHROPIC_API_KEY", "sk-ant-readme");
    server.use(
      http.post("https://api.anthropic.com/v1/messages", () =>
        sseResponse(fixture("anthropic-text.sse.txt")),
      ),
    );
    const written = stubStdout();
    const logged = spyLog();

    const anthropic = createAnthropicProvider(); // reads ANTHROPIC_API_KEY
    const stream = anthropic.stream({
      model: "claude-sonnet-4-5",
      system: "Answer in one sentence.",
      messages: [{ role: "user", content: [{ type: "text", text: "Why is the sky blue?" }] }],
    });
    for await (const event of stream) {
      if (event.type === "text-delta") process.stdout.write(event.text);
      if (event.type === "usage") console.log("\n", event.usage);
    }

    expect(written.join("")).toBe("Hello!");
    expect(logged).toEqual([
      ["\n", { inputTokens: 2025, outputTokens: 15, cacheReadTokens: 1800, cacheWriteTokens: 200 }],
    ]);
  });
});

/** A Responses API stream whose answer is `texts`, in its documented event shapes. */
function responsesAnswer(texts: string[]): string {
  const id = "msg_68d1b2c3d4e58190a1b2c3d4e5f6a7b80c1d2e3f4a5b6c7d";
  const where = { item_id: id, output_index: 0, content_index: 0 };
  const response = { id: "resp_68d1b2c3", object: "response", model: "gpt-4.1-mini-2025-04-14" };
  const events = [
    { type: "response.created", response: { ...response, status: "in_progress", usage: null } },
    {
      type: "response.output_item.added",
      output_index: 0,
      item: { id, type: "message", status: "in_progress", role: "assistant", content: [] },
    },
    ...texts.map((delta) => ({ type: "response.output_text.delta", ...where, delta })),
    { type: "response.output_text.done", ...where, text: texts.join("") },
    {
      type: "response.completed",
      response: {
        ...response,
        status: "completed",
        usage: { input_tokens: 72, output_tokens: 14, total_tokens: 86 },
      },
    },
  ];
  return events
    .map((e, i) => `event: ${e.type}\ndata: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`)
    .join("");
}

describe("README example: structured output", () => {
  it("sends the schema as text.format and parses the streamed JSON", async () => {
    vi.stubEnv("OPENAI_API_KEY", "sk-readme");
    const seen: CapturedRequest[] = [];
    server.use(
      http.post("https://api.openai.com/v1/responses", async ({ request }) => {
        seen.push(await capture(request));
        return sseResponse(responsesAnswer(['{"city":"Par', 'is","temperature', 'C":21}']));
      }),
    );
    const logged = spyLog();

    const openai = createOpenAIProvider(); // reads OPENAI_API_KEY
    let json = "";
    for await (const event of openai.stream({
      model: "gpt-4.1-mini",
      messages: [{ role: "user", content: [{ type: "text", text: "The weather in Paris?" }] }],
      responseFormat: {
        type: "json-schema",
        name: "weather",
        schema: {
          type: "object",
          properties: { city: { type: "string" }, temperatureC: { type: "number" } },
          required: ["city", "temperatureC"],
          additionalProperties: false,
        },
        strict: true,
      },
    })) {
      if (event.type === "text-delta") json += event.text;
      if (event.type === "finish" && event.reason === "refusal") throw new Error(json);
    }
    console.log(JSON.parse(json)); // { city: "Paris", temperatureC: 21 }

    expect(logged).toEqual([[{ city: "Paris", temperatureC: 21 }]]);
    expect(seen[0]?.body.text).toEqual({
      format: {
        type: "json_schema",
        name: "weather",
        schema: {
          type: "object",
          properties: { city: { type: "string" }, temperatureC: { type: "number" } },
          required: ["city", "temperatureC"],
          additionalProperties: false,
        },
        strict: true,
      },
    });
  });
});

describe("README example: Gemini", () => {
  it("streams thought summaries and the answer, and prints the usage with its thinking tokens", async () => {
    vi.stubEnv("GEMINI_API_KEY", "AIza-readme");
    const seen: CapturedRequest[] = [];
    const meta = { modelVersion: "gemini-2.5-flash", responseId: "readme-1" };
    const chunks = [
      {
        candidates: [
          {
            content: { role: "model", parts: [{ text: "Small primes.", thought: true }] },
            index: 0,
          },
        ],
        ...meta,
      },
      {
        candidates: [
          {
            content: { role: "model", parts: [{ text: "2, 3 and 5." }] },
            finishReason: "STOP",
            index: 0,
          },
        ],
        usageMetadata: {
          promptTokenCount: 8,
          candidatesTokenCount: 7,
          thoughtsTokenCount: 41,
          totalTokenCount: 56,
        },
        ...meta,
      },
    ];
    server.use(
      http.post(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash\\:streamGenerateContent",
        async ({ request }) => {
          seen.push(await capture(request));
          return sseResponse(chunks.map((c) => `data: ${JSON.stringify(c)}\r\n\r\n`).join(""));
        },
      ),
    );
    const written = stubStdout();
    const logged = spyLog();

    const gemini = createGoogleProvider(); // reads GEMINI_API_KEY (or GOOGLE_API_KEY)
    for await (const event of gemini.stream({
      model: "gemini-2.5-flash",
      thinking: "low",
      messages: [{ role: "user", content: [{ type: "text", text: "Name three primes." }] }],
    })) {
      if (event.type === "thinking-delta") process.stdout.write(`(${event.text})`);
      if (event.type === "text-delta") process.stdout.write(event.text);
      if (event.type === "usage") console.log("\n", event.usage); // reasoningTokens: the thinking
    }

    expect(written.join("")).toBe("(Small primes.)2, 3 and 5.");
    expect(logged).toEqual([["\n", { inputTokens: 8, outputTokens: 48, reasoningTokens: 41 }]]);
    expect(seen[0]?.headers["x-goog-api-key"]).toBe("AIza-readme");
    expect(seen[0]?.body.generationConfig).toEqual({
      thinkingConfig: { thinkingBudget: 2048, includeThoughts: true },
    });
  });
});
