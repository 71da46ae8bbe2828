/**
 * OpenRouter streams a reasoning model's reasoning twice: as text in `delta.reasoning`, and
 * structured in `delta.reasoning_details` (`reasoning.text` with Claude's `signature`,
 * `reasoning.summary`, `reasoning.encrypted` with Gemini's thought signature or OpenAI's
 * encrypted reasoning), in pieces that share an `index`. For a tool loop the details must go
 * back, whole, on the assistant message: without them Gemini 3 refuses the next request
 * (400 "Gemini models require OpenRouter reasoning details to be preserved in each
 * request… Function call is missing a thought_signature in functionCall parts", reported in
 * LibreChat-AI/agents#37 and OpenRouterTeam/ai-sdk-provider#239; openrouter.ai/docs, "Reasoning
 * Tokens", "Preserving reasoning blocks"). The fake OpenRouter here enforces that.
 */
import type { ModelMessage } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  errorResponse,
  expectWellFormed,
  mswFakes,
  runtimeOver,
  sseResponse,
  thinkingOf,
  userText,
  weatherTool,
} from "./support.js";

const { server, cleanups } = mswFakes();

const OPENROUTER = "https://openrouter.ai/api/v1";
const GEMINI = "google/gemini-3-pro-preview";
const CLAUDE = "anthropic/claude-sonnet-4.5";
const THOUGHT_SIGNATURE =
  "EjQKMgFyyNp8k2mYwT0hLq3RzV7cXb9uJf4eA1sD6gH8iK0lM2nO5pQ7rS9tU1vW3xY5zA==";

function chunk(model: string, delta: Record<string, unknown>, finish: string | null = null) {
  return `data: ${JSON.stringify({
    id: "gen-1764000000-AbCdEfGhIjKlMnOpQrSt",
    provider: model.startsWith("google/") ? "Google AI Studio" : "Anthropic",
    model,
    object: "chat.completion.chunk",
    created: 1764000000,
    choices: [{ index: 0, delta, finish_reason: finish, native_finish_reason: finish }],
  })}\n\n`;
}

const usageChunk = (model: string) =>
  `data: ${JSON.stringify({
    id: "gen-1764000000-AbCdEfGhIjKlMnOpQrSt",
    model,
    object: "chat.completion.chunk",
    created: 1764000000,
    choices: [],
    usage: { prompt_tokens: 40, completion_tokens: 25, total_tokens: 65 },
  })}\n\n`;

/** Gemini 3's first step through OpenRouter: a thought summary, then a call with its signature. */
function geminiToolCall() {
  const detail = {
    type: "reasoning.encrypted",
    data: THOUGHT_SIGNATURE,
    id: "tool_get_weather_x1y2z3",
    format: "google-gemini-v1",
    index: 1,
  };
  return sseResponse(
    chunk(GEMINI, {
      role: "assistant",
      content: "",
      reasoning: "**Checking the weather**",
      reasoning_details: [
        {
          type: "reasoning.text",
          text: "**Checking the weather**",
          format: "google-gemini-v1",
          index: 0,
        },
      ],
    }) +
      chunk(GEMINI, {
        role: "assistant",
        content: null,
        reasoning_details: [detail],
        tool_calls: [
          {
            index: 0,
            id: "tool_get_weather_x1y2z3",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Paris"}' },
          },
        ],
      }) +
      chunk(GEMINI, { role: "assistant", content: "" }, "tool_calls") +
      usageChunk(GEMINI) +
      "data: [DONE]\n\n",
  );
}

function answer(model: string, text: string) {
  return sseResponse(
    chunk(model, { role: "assistant", content: text }) +
      chunk(model, { role: "assistant", content: "" }, "stop") +
      usageChunk(model) +
      "data: [DONE]\n\n",
  );
}

/** OpenRouter's 400 when Gemini's reasoning details did not come back. */
function missingDetails() {
  return errorResponse(400, {
    error: {
      message: "Provider returned error",
      code: 400,
      metadata: {
        raw: 'Gemini models require OpenRouter reasoning details to be preserved in each request. Please refer to our docs: https://openrouter.ai/docs/guides/best-practices/reasoning-tokens#preserving-reasoning-blocks. Upstream error: {\n  "error": {\n    "code": 400,\n    "message": "Function call is missing a thought_signature in functionCall parts.",\n    "status": "INVALID_ARGUMENT"\n  }\n}\n',
        provider_name: "Google AI Studio",
      },
    },
  });
}

const openrouter = () =>
  createOpenAICompatibleProvider({ id: "openrouter", baseUrl: OPENROUTER, apiKey: "sk-or-v1-x" });

describe("OpenRouter reasoning_details", () => {
  it("an agent's tool loop on Gemini 3 sends the details back and goes on", async () => {
    const seen: CapturedRequest[] = [];
    let firstDetails: unknown;
    server.use(
      http.post(`${OPENROUTER}/chat/completions`, async ({ request }) => {
        const captured = await capture(request);
        seen.push(captured);
        if (seen.length === 1) return geminiToolCall();
        const messages = captured.body.messages as Array<Record<string, unknown>>;
        const assistant = messages.find((m) => m.role === "assistant");
        firstDetails = assistant?.reasoning_details;
        const kept = (assistant?.reasoning_details as Array<Record<string, unknown>> | undefined)
          ?.filter((d) => d.type === "reasoning.encrypted")
          .some((d) => d.data === THOUGHT_SIGNATURE);
        return kept === true ? answer(GEMINI, "It is 21 °C in Paris.") : missingDetails();
      }),
    );
    const runtime = await runtimeOver(
      [openrouter()],
      {
        agents: [{ id: "main", model: `openrouter/${GEMINI}`, tools: ["*"] }],
        tools: [weatherTool],
      },
      cleanups,
    );
    const run = await runtime.session("agent:main:main").send("Weather in Paris?");
    expect(await run.result).toMatchObject({ status: "completed", text: "It is 21 °C in Paris." });
    expect(seen).toHaveLength(2);
    // Both details, as they were streamed, in order.
    expect(firstDetails).toEqual([
      {
        type: "reasoning.text",
        text: "**Checking the weather**",
        format: "google-gemini-v1",
        index: 0,
      },
      {
        type: "reasoning.encrypted",
        data: THOUGHT_SIGNATURE,
        id: "tool_get_weather_x1y2z3",
        format: "google-gemini-v1",
        index: 1,
      },
    ]);
  });

  it("pieces of one detail are joined: Claude's text adds up and its signature comes at the end", async () => {
    const piece = (text: string, signature = "") => ({
      type: "reasoning.text",
      text,
      signature,
      format: "anthropic-claude-v1",
      index: 0,
    });
    server.use(
      http.post(`${OPENROUTER}/chat/completions`, () =>
        sseResponse(
          chunk(CLAUDE, { role: "assistant", content: "", reasoning: "", reasoning_details: [] }) +
            chunk(CLAUDE, {
              reasoning: "The user wants ",
              reasoning_details: [piece("The user wants ")],
            }) +
            chunk(CLAUDE, {
              reasoning: "the weather.",
              reasoning_details: [piece("the weather.")],
            }) +
            chunk(CLAUDE, { reasoning_details: [piece("", "EqQBCkgIBxABGAIiQL5sig")] }) +
            chunk(CLAUDE, { content: "Let me check." }) +
            chunk(CLAUDE, {
              tool_calls: [
                {
                  index: 0,
                  id: "toolu_01A09q90qw90lq917835lq9",
                  type: "function",
                  function: { name: "get_weather", arguments: '{"city":"Paris"}' },
                },
              ],
            }) +
            chunk(CLAUDE, {}, "tool_calls") +
            usageChunk(CLAUDE) +
            "data: [DONE]\n\n",
        ),
      ),
    );
    const events = await collect(
      openrouter().stream({ model: CLAUDE, messages: [userText("Weather in Paris?")] }),
    );
    expectWellFormed(events);
    expect(thinkingOf(events)).toBe("The user wants the weather.");
    const ends = events.filter((e) => e.type === "thinking-end");
    expect(ends).toHaveLength(2);
    // The reasoning text's own part is not sent back; the details' part is, to OpenRouter only.
    expect(ends[0]).toEqual({ type: "thinking-end" });
    expect(ends[1]).toMatchObject({ format: "openai-chat:openrouter:reasoning_details" });
    expect(JSON.parse((ends[1] as { signature: string }).signature)).toEqual([
      {
        type: "reasoning.text",
        text: "The user wants the weather.",
        signature: "EqQBCkgIBxABGAIiQL5sig",
        format: "anthropic-claude-v1",
        index: 0,
      },
    ]);
    // Before the call it came with.
    const order = events.map((e) => e.type);
    expect(order.lastIndexOf("thinking-end")).toBeLessThan(order.indexOf("tool-call"));
  });

  it("details go back only to the provider that streamed them", async () => {
    const details = [
      { type: "reasoning.encrypted", data: "abc", format: "google-gemini-v1", index: 0 },
    ];
    const history: ModelMessage[] = [
      userText("Weather?"),
      {
        role: "assistant",
        content: [
          {
            type: "thinking",
            text: "",
            signature: JSON.stringify(details),
            format: "openai-chat:openrouter:reasoning_details",
          },
          {
            type: "tool-call",
            toolCallId: "c1",
            toolName: "get_weather",
            input: { city: "Paris" },
          },
        ],
      },
      {
        role: "tool",
        content: [{ type: "tool-result", toolCallId: "c1", toolName: "get_weather", output: 21 }],
      },
    ];
    const bodies: Record<string, unknown>[] = [];
    const record = async ({ request }: { request: Request }) => {
      bodies.push((await capture(request)).body);
      return answer("m", "21 °C.");
    };
    server.use(
      http.post(`${OPENROUTER}/chat/completions`, record),
      http.post("https://api.groq.com/openai/v1/chat/completions", record),
    );
    await collect(openrouter().stream({ model: GEMINI, messages: history }));
    const groq = createOpenAICompatibleProvider({
      id: "groq",
      baseUrl: "https://api.groq.com/openai/v1",
      apiKey: "gsk_x",
    });
    await collect(groq.stream({ model: "openai/gpt-oss-120b", messages: history }));
    const assistantOf = (body: Record<string, unknown>) =>
      (body.messages as Array<Record<string, unknown>>).find((m) => m.role === "assistant");
    expect(assistantOf(bodies[0]!)?.reasoning_details).toEqual(details);
    // Groq refuses fields it does not know: none is sent.
    expect(assistantOf(bodies[1]!)).not.toHaveProperty("reasoning_details");
  });

  it("a part whose kept details are not a JSON array sends none, rather than failing the request", async () => {
    const bodies: Record<string, unknown>[] = [];
    server.use(
      http.post(`${OPENROUTER}/chat/completions`, async ({ request }) => {
        bodies.push((await capture(request)).body);
        return answer("m", "ok");
      }),
    );
    const history: ModelMessage[] = [
      userText("Hi"),
      {
        role: "assistant",
        content: [
          {
            type: "thinking",
            text: "",
            signature: "{not json",
            format: "openai-chat:openrouter:reasoning_details",
          },
          { type: "text", text: "Hello" },
        ],
      },
      userText("Again"),
    ];
    await collect(openrouter().stream({ model: GEMINI, messages: history }));
    const assistant = (bodies[0]!.messages as Array<Record<string, unknown>>)[1];
    expect(assistant).toEqual({ role: "assistant", content: "Hello" });
  });
});
