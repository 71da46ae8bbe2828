/**
 * The Gemini adapter under core's agent loop, over the Gemini API faked with msw: a tool call
 * whose thought signature goes back with the call on the next step (Gemini 3 refuses a step
 * without it), usage and cost counted, and a failover from Gemini to Anthropic that does not
 * hand Anthropic Gemini's signature.
 */
import type { AgentDefinition, ModelProvider } from "@beamclaw/core";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAnthropicProvider, createGoogleProvider } from "../src/index.js";
import { errorResponse, fixture, runtimeOver, sseResponse } from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const GEMINI_URL =
  /^https:\/\/generativelanguage\.googleapis\.com\/v1beta\/models\/gemini-3-flash-preview:streamGenerateContent$/;
const ANTHROPIC_URL = "https://api.anthropic.com/v1/messages";
const SIGNATURE = "CiQB0e2Kb3dtlCsMAyqZ1VLCaPWzGN4Cz0RGX+U5kNwXR3KO2Zo=";

/** SSE text of `GenerateContentResponse` chunks. */
function sse(chunks: object[]): string {
  return chunks.map((chunk) => `data: ${JSON.stringify(chunk)}\r\n\r\n`).join("");
}

const meta = { modelVersion: "gemini-3-flash-preview", responseId: "rsp-agent-1" };

/** Gemini 3 calling the tool: a thought summary, then the call carrying the signature. */
const CALL = sse([
  {
    candidates: [
      {
        content: { role: "model", parts: [{ text: "Checking the weather.", thought: true }] },
        index: 0,
      },
    ],
    usageMetadata: { promptTokenCount: 120, totalTokenCount: 120 },
    ...meta,
  },
  {
    candidates: [
      {
        content: {
          role: "model",
          parts: [
            {
              functionCall: { name: "get_weather", args: { city: "Paris" } },
              thoughtSignature: SIGNATURE,
            },
          ],
        },
        finishReason: "STOP",
        index: 0,
      },
    ],
    usageMetadata: {
      promptTokenCount: 120,
      candidatesTokenCount: 10,
      thoughtsTokenCount: 30,
      totalTokenCount: 160,
    },
    ...meta,
  },
]);

/** Gemini 3 answering after the tool. */
const ANSWER = sse([
  {
    candidates: [{ content: { role: "model", parts: [{ text: "It is 21 °C" }] }, index: 0 }],
    ...meta,
  },
  {
    candidates: [
      {
        content: { role: "model", parts: [{ text: " and sunny in Paris." }] },
        finishReason: "STOP",
        index: 0,
      },
    ],
    usageMetadata: {
      promptTokenCount: 200,
      candidatesTokenCount: 12,
      cachedContentTokenCount: 100,
      totalTokenCount: 212,
    },
    ...meta,
  },
]);

interface Part {
  text?: string;
  thought?: boolean;
  thoughtSignature?: string;
  functionCall?: { name: string; args: unknown };
  functionResponse?: { name: string; response: unknown };
}
interface Content {
  role: string;
  parts: Part[];
}

/** Serves Gemini `answers` in turn and records each request's `contents`. */
function geminiServer(answers: Array<() => Response>): Content[][] {
  const seen: Content[][] = [];
  server.use(
    http.post(GEMINI_URL, async ({ request }) => {
      // msw matches the path; the query must ask for server-sent events.
      if (new URL(request.url).searchParams.get("alt") !== "sse") {
        return HttpResponse.text("expected alt=sse", { status: 400 });
      }
      const body = (await request.json()) as { contents: Content[] };
      seen.push(body.contents);
      const answer = answers[seen.length - 1];
      if (answer === undefined) return HttpResponse.text("unexpected request", { status: 500 });
      return answer();
    }),
  );
  return seen;
}

/** A runtime whose agents (default: one on Gemini 3) call `get_weather`. */
async function startRuntime(
  providers: ModelProvider[],
  agents: AgentDefinition[] = [
    { id: "main", model: "google/gemini-3-flash-preview", thinking: "low", tools: ["*"] },
  ],
) {
  return runtimeOver(
    providers,
    {
      agents,
      tools: [
        {
          name: "get_weather",
          description: "Current weather in a city",
          inputSchema: {
            type: "object",
            properties: { city: { type: "string" }, location: { type: "string" } },
          },
          execute: () => ({ celsius: 21, sky: "sunny" }),
        },
      ],
    },
    cleanups,
  );
}

const gemini = () => createGoogleProvider({ apiKey: "AIza-test" });

describe("Gemini through the agent loop", () => {
  it("a tool call's thought signature goes back with the call, and the answer completes the run", async () => {
    const seen = geminiServer([() => sseResponse(CALL), () => sseResponse(ANSWER)]);
    const runtime = await startRuntime([gemini()]);
    const run = await runtime.session("agent:main:main").send("Weather in Paris?");
    const types: string[] = [];
    for await (const event of run) types.push(event.type);
    const result = await run.result;
    expect(result.status).toBe("completed");
    expect(result.text).toBe("It is 21 °C and sunny in Paris.");
    expect(types).toContain("thinking-delta");
    expect(types).toContain("tool-result");

    expect(seen).toHaveLength(2);
    expect(seen[1]).toEqual([
      { role: "user", parts: [{ text: "Weather in Paris?" }] },
      {
        role: "model",
        // The thought summary is not sent back; the signature is, on the call it came with.
        parts: [
          {
            functionCall: { name: "get_weather", args: { city: "Paris" } },
            thoughtSignature: SIGNATURE,
          },
        ],
      },
      {
        role: "user",
        parts: [
          {
            functionResponse: { name: "get_weather", response: { celsius: 21, sky: "sunny" } },
          },
        ],
      },
    ]);
    // Both steps' usage: input 120 + 200, output (answer and thinking) 40 + 12.
    expect(result.usage.inputTokens).toBe(320);
    expect(result.usage.outputTokens).toBe(52);

    // The transcript keeps the signature with its format, for the next turn's requests.
    const history = await runtime.session("agent:main:main").history();
    const messages = history.map(
      (record) => record.entry.message as { role: string; content: unknown[] } | undefined,
    );
    const assistant = messages.find((m) => m?.role === "assistant");
    expect(assistant?.content[0]).toEqual({
      type: "thinking",
      text: "Checking the weather.",
      signature: SIGNATURE,
      format: "google",
    });
  });

  it("after a failover to Anthropic mid-conversation, Anthropic gets the tool calls but not Gemini's signature", async () => {
    // Turn 1 on Gemini (call + answer); turn 2: Gemini is overloaded, Anthropic answers.
    const seen = geminiServer([
      () => sseResponse(CALL),
      () => sseResponse(ANSWER),
      () =>
        errorResponse(503, {
          error: {
            code: 503,
            message: "The model is overloaded. Please try again later.",
            status: "UNAVAILABLE",
          },
        }),
    ]);
    const anthropicBodies: Array<{ messages: Array<{ role: string; content: unknown[] }> }> = [];
    server.use(
      http.post(ANTHROPIC_URL, async ({ request }) => {
        anthropicBodies.push((await request.json()) as (typeof anthropicBodies)[number]);
        return sseResponse(fixture("anthropic-text.sse.txt"));
      }),
    );
    const runtime = await startRuntime(
      [gemini(), createAnthropicProvider({ apiKey: "sk-ant-test", promptCache: false })],
      [
        {
          id: "main",
          model: "google/gemini-3-flash-preview",
          fallbacks: ["anthropic/claude-sonnet-4-5"],
          tools: ["*"],
        },
      ],
    );
    const session = runtime.session("agent:main:main");
    expect((await (await session.send("Weather in Paris?")).result).status).toBe("completed");
    const second = await (await session.send("And tomorrow?")).result;
    expect(second.status).toBe("completed");
    expect(seen).toHaveLength(3);
    expect(anthropicBodies).toHaveLength(1);
    const messages = anthropicBodies[0]!.messages;
    const assistant = messages[1]!;
    expect(assistant.role).toBe("assistant");
    // No thinking block: Gemini's signature would be refused by Anthropic.
    expect(assistant.content).toEqual([
      {
        type: "tool_use",
        id: "gemini_call_1",
        name: "get_weather",
        input: { city: "Paris" },
      },
    ]);
    expect(JSON.stringify(anthropicBodies[0])).not.toContain(SIGNATURE);
  });

  it("a conversation that began on another provider reaches Gemini 3 with the documented skip signature", async () => {
    // Turn 1 on Anthropic (a tool call and an answer), turn 2 on Gemini.
    let anthropicCalls = 0;
    server.use(
      http.post(ANTHROPIC_URL, () => {
        anthropicCalls++;
        return sseResponse(
          fixture(anthropicCalls === 1 ? "anthropic-tool-use.sse.txt" : "anthropic-text.sse.txt"),
        );
      }),
    );
    const seen = geminiServer([() => sseResponse(ANSWER)]);
    const runtime = await startRuntime(
      [createAnthropicProvider({ apiKey: "sk-ant-test" }), gemini()],
      [{ id: "claude", model: "anthropic/claude-sonnet-4-5", tools: ["*"] }],
    );
    const session = runtime.session("agent:claude:main");
    expect((await (await session.send("Weather?")).result).status).toBe("completed");
    // The same conversation, continued with Gemini (the session's model override).
    await session.patch({ modelOverride: "google/gemini-3-flash-preview" });
    expect((await (await session.send("And tomorrow?")).result).status).toBe("completed");
    expect(seen).toHaveLength(1);
    const model = seen[0]!.find(
      (content) => content.role === "model" && content.parts.some((p) => p.functionCall),
    );
    const call = model?.parts.find((p) => p.functionCall !== undefined);
    expect(call?.thoughtSignature).toBe("skip_thought_signature_validator");
  });
});
