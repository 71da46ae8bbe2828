/**
 * The Responses API checked against OpenAI's documented shapes where the adapter went wrong:
 *
 * - `store: false` (Zero Data Retention, set through `providerOptions.openai`): OpenAI keeps
 *   none of the output, and refuses an input item sent with an id it made (HTTP 404 "Item with
 *   id 'rs_…' not found. Items are not persisted when `store` is set to false"), on every
 *   later turn of the conversation. Reasoning goes back by its encrypted content only.
 * - A 429 without `retry-after`: OpenAI's `x-ratelimit-reset-requests` / `-tokens` say when
 *   the spent budget is full again.
 * - A rate-limit error's message: "Please try again in 644ms." is the only wait an error
 *   event inside a stream carries; "Request too large for …" can never pass by waiting.
 */
import { createProviderChain, type ModelRequest } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAIProvider } from "../src/index.js";
import {
  collect,
  collectFailure,
  errorResponse,
  fixture,
  mswFakes,
  sseResponse,
  textOf,
  userText,
} from "./support.js";

const URL_RESPONSES = "https://api.openai.com/v1/responses";
const { server } = mswFakes();

const provider = () => createOpenAIProvider({ apiKey: "sk-test" });
const hello: ModelRequest = { model: "gpt-4.1", messages: [userText("Hello")] };

type InputItem = { type?: string; id?: string; role?: string; [key: string]: unknown };

/**
 * A Responses API that, like OpenAI with `store: false`, refuses any input item carrying an
 * id (nothing of an earlier response was kept to look it up), and otherwise answers text.
 */
function serveUnstored(): InputItem[][] {
  const seen: InputItem[][] = [];
  server.use(
    http.post(URL_RESPONSES, async ({ request }) => {
      const body = (await request.json()) as { store?: boolean; input: InputItem[] };
      seen.push(body.input);
      const withId =
        body.store === false ? body.input.find((item) => item.id !== undefined) : undefined;
      if (withId !== undefined) {
        return errorResponse(404, {
          error: {
            message: `Item with id '${withId.id}' not found. Items are not persisted when \`store\` is set to false. Try again with \`store\` set to true, or remove this item from your input.`,
            type: "invalid_request_error",
            param: "input",
            code: null,
          },
        });
      }
      return sseResponse(fixture("openai-responses-text.sse.txt"));
    }),
  );
  return seen;
}

/** A tool loop's history: reasoning (as the adapter kept it), the call, its result. */
function toolLoop(reasoning: { signature: string; redacted?: string }[]): ModelRequest {
  return {
    model: "o4-mini",
    thinking: "medium",
    providerOptions: { openai: { store: false, include: ["reasoning.encrypted_content"] } },
    messages: [
      userText("Weather in Oslo, then say so."),
      {
        role: "assistant",
        content: [
          ...reasoning.map((r) => ({ type: "thinking" as const, text: "Need the tool.", ...r })),
          { type: "text", text: "Checking." },
          { type: "tool-call", toolCallId: "call_1", toolName: "weather", input: { city: "Oslo" } },
        ],
      },
      {
        role: "tool",
        content: [
          { type: "tool-result", toolCallId: "call_1", toolName: "weather", output: "-3 C" },
        ],
      },
    ],
  };
}

describe("Responses API with store: false", () => {
  it("sends reasoning back by its encrypted content, and no item with an id, in the model's order", async () => {
    const seen = serveUnstored();
    const events = await collect(
      provider().stream(
        toolLoop([
          { signature: "rs_A|msg_B", redacted: "gAAAA-enc-A" },
          { signature: "rs_C|fc_D|call_1", redacted: "gAAAA-enc-C" },
        ]),
      ),
    );
    expect(textOf(events)).toBe("Hi there!");
    expect(seen[0]).toEqual([
      { role: "user", content: [{ type: "input_text", text: "Weather in Oslo, then say so." }] },
      {
        type: "reasoning",
        summary: [{ type: "summary_text", text: "Need the tool." }],
        encrypted_content: "gAAAA-enc-A",
      },
      { role: "assistant", content: "Checking." },
      {
        type: "reasoning",
        summary: [{ type: "summary_text", text: "Need the tool." }],
        encrypted_content: "gAAAA-enc-C",
      },
      { type: "function_call", call_id: "call_1", name: "weather", arguments: '{"city":"Oslo"}' },
      { type: "function_call_output", call_id: "call_1", output: "-3 C" },
    ]);
  });

  it("leaves out reasoning that has no encrypted content (it could only go by its id)", async () => {
    const seen = serveUnstored();
    const events = await collect(provider().stream(toolLoop([{ signature: "rs_C|fc_D|call_1" }])));
    expect(events.at(-1)).toEqual({ type: "finish", reason: "stop", rawReason: "completed" });
    expect(seen[0]?.filter((item) => item.type === "reasoning")).toEqual([]);
    expect(seen[0]?.find((item) => item.type === "function_call")).toEqual({
      type: "function_call",
      call_id: "call_1",
      name: "weather",
      arguments: '{"city":"Oslo"}',
    });
  });
});

/** OpenAI's 429 body for a requests-per-minute limit. */
const RPM_BODY = {
  error: {
    message:
      "Rate limit reached for gpt-4.1 in organization org-abc on requests per min (RPM): Limit 500, Used 500, Requested 1. Visit https://platform.openai.com/account/rate-limits to learn more.",
    type: "requests",
    param: null,
    code: "rate_limit_exceeded",
  },
};

describe("Responses API: how long a rate limit asks to wait", () => {
  const serve429 = (headers: Record<string, string>, body: unknown = RPM_BODY) =>
    server.use(http.post(URL_RESPONSES, () => errorResponse(429, body, headers)));

  it("a 429 without retry-after waits for the spent budget's x-ratelimit-reset-*", async () => {
    serve429({
      "x-ratelimit-limit-requests": "500",
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "1.2s",
      "x-ratelimit-limit-tokens": "30000",
      "x-ratelimit-remaining-tokens": "29000",
      "x-ratelimit-reset-tokens": "6m0s",
    });
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("rate_limit");
    expect(error.isRetryable).toBe(true);
    expect(error.retryAfterMs).toBe(1200);
  });

  it("the later of the two resets when neither budget says it is spent", async () => {
    serve429({ "x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "1m30.5s" });
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.retryAfterMs).toBe(90_500);
  });

  it("retry-after still comes first", async () => {
    serve429({
      "retry-after": "3",
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "6m0s",
    });
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.retryAfterMs).toBe(3000);
  });

  it("a 429 whose message says when to try again waits that long", async () => {
    serve429(
      { "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s" },
      {
        error: {
          message:
            "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms. Visit https://platform.openai.com/account/rate-limits to learn more.",
          type: "tokens",
          param: null,
          code: "rate_limit_exceeded",
        },
      },
    );
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.retryAfterMs).toBe(644);
  });

  it("response.failed with rate_limit_exceeded carries its message's wait (no header comes mid-stream)", async () => {
    server.use(
      http.post(URL_RESPONSES, () =>
        sseResponse(
          fixture("openai-responses-failed.sse.txt").replace(
            '"error":{"code":"server_error","message":"The model failed to generate a response."}',
            '"error":{"code":"rate_limit_exceeded","message":"Rate limit reached for gpt-4.1 in organization org-abc on tokens per min (TPM): Limit 30000, Used 30000, Requested 1200. Please try again in 9.816s. Visit https://platform.openai.com/account/rate-limits to learn more."}',
          ),
        ),
      ),
    );
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("rate_limit");
    expect(error.isRetryable).toBe(true);
    expect(error.retryAfterMs).toBe(9816);
  });

  it("'Request too large' for the tokens-per-minute limit is not retried on the same model", async () => {
    let calls = 0;
    server.use(
      http.post(URL_RESPONSES, () => {
        calls++;
        return errorResponse(429, {
          error: {
            message:
              "Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 31538. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
            type: "tokens",
            param: null,
            code: "rate_limit_exceeded",
          },
        });
      }),
    );
    const { error } = await collectFailure(provider().stream(hello));
    expect(error.kind).toBe("rate_limit");
    expect(error.isRetryable).toBe(false);
    const chain = createProviderChain({
      providers: [provider()],
      models: ["openai/gpt-4o"],
      retry: { maxAttempts: 3, baseDelayMs: 0 },
    });
    calls = 0;
    const drained = (async () => {
      for await (const _ of chain.stream({ messages: hello.messages })) {
        // until it fails
      }
    })();
    await expect(drained).rejects.toMatchObject({ attempts: [{ ref: "openai/gpt-4o" }] });
    expect(calls).toBe(1);
  });
});
