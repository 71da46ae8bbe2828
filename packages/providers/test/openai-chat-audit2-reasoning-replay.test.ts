/**
 * DeepSeek's thinking mode (on by default for its current models) streams the reasoning as
 * `delta.reasoning_content`, and a step that made tool calls must have that reasoning sent back
 * on its assistant message in every later request: without it DeepSeek refuses the request
 * (400 "Missing `reasoning_content` field in the assistant message at message index 2", see
 * api-docs.deepseek.com/guides/thinking_mode, "Tool Calls"). Reasoning of a turn without tool
 * calls is ignored when sent back. Moonshot's Kimi thinking models and llama.cpp take the
 * field back the same way.
 *
 * Strict servers (Groq, Cerebras, OpenAI itself) refuse an assistant message with a field they
 * do not know (400 "property 'reasoning_content' is unsupported"), so the reasoning goes back
 * only to the provider that streamed it, in the field it streamed it in.
 */
import type { ModelMessage, ModelStreamEvent } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider, createOpenAIProvider } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  fixture,
  runtimeOver,
  sseResponse,
  textOf,
  thinkingOf,
  userText,
} from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const DEEPSEEK = "https://api.deepseek.com";
const GROQ = "https://api.groq.com/openai/v1";
const REASONING = "The user wants the weather. I should call get_weather for Paris.";

function chunk(delta: Record<string, unknown>, finish: string | null = null, usage?: object) {
  return `data: ${JSON.stringify({
    id: "5f0c0e8e-3c5a-4f2e-9d51-7c1f0d2b9a10",
    object: "chat.completion.chunk",
    created: 1777000000,
    model: "deepseek-v4-flash",
    system_fingerprint: "fp_ds_v4_0424",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...(usage === undefined ? {} : { usage }),
  })}\n\n`;
}

const usage = (prompt: number, completion: number) => ({
  prompt_tokens: prompt,
  completion_tokens: completion,
  total_tokens: prompt + completion,
  prompt_tokens_details: { cached_tokens: 0 },
  prompt_cache_hit_tokens: 0,
  prompt_cache_miss_tokens: prompt,
  completion_tokens_details: { reasoning_tokens: 14 },
});

/** DeepSeek thinking, then calling `get_weather`. */
const CALL =
  chunk({ role: "assistant", content: null, reasoning_content: "" }) +
  chunk({ content: null, reasoning_content: "The user wants the weather. " }) +
  chunk({ content: null, reasoning_content: "I should call get_weather for Paris." }) +
  chunk({
    tool_calls: [
      {
        index: 0,
        id: "call_00_Wd4BtEiuPF7sNbjMbDjDxl5Q",
        type: "function",
        function: { name: "get_weather", arguments: "" },
      },
    ],
  }) +
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":"Paris"}' } }] }) +
  chunk({ content: "", reasoning_content: null }, "tool_calls", usage(120, 30)) +
  "data: [DONE]\n\n";

/** DeepSeek answering after the tool. */
const ANSWER =
  chunk({ role: "assistant", content: null, reasoning_content: "It is sunny." }) +
  chunk({ content: "It is 21 °C and sunny in Paris.", reasoning_content: null }) +
  chunk({ content: "" }, "stop", usage(180, 12)) +
  "data: [DONE]\n\n";

function serve(url: string, answers: string[]): CapturedRequest[] {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      seen.push(await capture(request));
      return sseResponse(answers[seen.length - 1] ?? ANSWER);
    }),
  );
  return seen;
}

/** The assistant message (the second) of the one request `seen` recorded. */
function assistantSent(seen: CapturedRequest[]): Record<string, unknown> | undefined {
  expect(seen).toHaveLength(1);
  const messages = seen[0]?.body.messages as Array<Record<string, unknown>> | undefined;
  return messages?.[1];
}

const deepseek = () =>
  createOpenAICompatibleProvider({ id: "deepseek", baseUrl: DEEPSEEK, apiKey: "sk-ds" });

/** The assistant message the agent loop keeps from a stream's events. */
function assistantFrom(events: ModelStreamEvent[]): ModelMessage {
  const content: Extract<ModelMessage, { role: "assistant" }>["content"] = [];
  const end = events.find((e) => e.type === "thinking-end");
  if (end?.type === "thinking-end") {
    content.push({
      type: "thinking",
      text: thinkingOf(events),
      ...(end.signature === undefined ? {} : { signature: end.signature }),
      ...(end.format === undefined ? {} : { format: end.format }),
    });
  }
  const text = textOf(events);
  if (text !== "") content.push({ type: "text", text });
  for (const event of events) {
    if (event.type === "tool-call") {
      content.push({
        type: "tool-call",
        toolCallId: event.toolCallId,
        toolName: event.toolName,
        input: event.input,
      });
    }
  }
  return { role: "assistant", content };
}

describe("DeepSeek thinking mode with tool calls, through the agent loop", () => {
  it("sends the step's reasoning_content back on its assistant message", async () => {
    const seen = serve(`${DEEPSEEK}/chat/completions`, [CALL, ANSWER]);
    const runtime = await runtimeOver(
      [deepseek()],
      {
        agents: [{ id: "main", model: "deepseek/deepseek-v4-flash", tools: ["*"] }],
        tools: [
          {
            name: "get_weather",
            description: "Current weather in a city",
            inputSchema: { type: "object", properties: { city: { type: "string" } } },
            execute: () => ({ celsius: 21, sky: "sunny" }),
          },
        ],
      },
      cleanups,
    );
    const run = await runtime.session("agent:main:main").send("Weather in Paris?");
    const result = await run.result;
    expect(result.status).toBe("completed");
    expect(result.text).toBe("It is 21 °C and sunny in Paris.");
    expect(seen).toHaveLength(2);
    const messages = seen[1]?.body.messages as Array<Record<string, unknown>>;
    expect(messages[1]).toEqual({
      role: "assistant",
      content: null,
      reasoning_content: REASONING,
      tool_calls: [
        {
          id: "call_00_Wd4BtEiuPF7sNbjMbDjDxl5Q",
          type: "function",
          function: { name: "get_weather", arguments: '{"city":"Paris"}' },
        },
      ],
    });
    expect(messages[2]).toEqual({
      role: "tool",
      tool_call_id: "call_00_Wd4BtEiuPF7sNbjMbDjDxl5Q",
      content: '{"celsius":21,"sky":"sunny"}',
    });
  });
});

describe("reasoning goes back only where it came from", () => {
  async function deepseekTurn(): Promise<ModelMessage[]> {
    serve(`${DEEPSEEK}/chat/completions`, [CALL]);
    const events = await collect(
      deepseek().stream({ model: "deepseek-v4-flash", messages: [userText("Weather in Paris?")] }),
    );
    return [
      userText("Weather in Paris?"),
      assistantFrom(events),
      {
        role: "tool",
        content: [
          {
            type: "tool-result",
            toolCallId: "call_00_Wd4BtEiuPF7sNbjMbDjDxl5Q",
            toolName: "get_weather",
            output: { celsius: 21 },
          },
        ],
      },
    ];
  }

  it("a conversation that fails over from DeepSeek to Groq does not hand Groq reasoning_content", async () => {
    const history = await deepseekTurn();
    const seen = serve(`${GROQ}/chat/completions`, [fixture("openai-chat-text.sse.txt")]);
    const groq = createOpenAICompatibleProvider({ id: "groq", baseUrl: GROQ, apiKey: "gsk" });
    await collect(groq.stream({ model: "openai/gpt-oss-120b", messages: history }));
    const assistant = assistantSent(seen);
    expect(assistant?.role).toBe("assistant");
    expect(assistant).not.toHaveProperty("reasoning_content");
    expect(assistant).not.toHaveProperty("reasoning");
  });

  it("nor OpenAI's Chat Completions, which refuses fields it does not know", async () => {
    const history = await deepseekTurn();
    const seen = serve("https://api.openai.com/v1/chat/completions", [
      fixture("openai-chat-text.sse.txt"),
    ]);
    const openai = createOpenAIProvider({ api: "chat", apiKey: "sk-test" });
    await collect(openai.stream({ model: "gpt-4.1-mini", messages: history }));
    const assistant = assistantSent(seen);
    expect(assistant).not.toHaveProperty("reasoning_content");
  });

  it("reasoning streamed as delta.reasoning (Ollama, OpenRouter, Groq) is not sent back", async () => {
    const OLLAMA = "http://127.0.0.1:11434/v1";
    serve(`${OLLAMA}/chat/completions`, [fixture("ollama-chat.sse.txt")]);
    const ollama = createOpenAICompatibleProvider({ id: "ollama", baseUrl: OLLAMA });
    const events = await collect(ollama.stream({ model: "qwen3:8b", messages: [userText("Hi")] }));
    expect(thinkingOf(events)).not.toBe("");
    const seen = serve(`${OLLAMA}/chat/completions`, [fixture("ollama-chat.sse.txt")]);
    await collect(
      ollama.stream({
        model: "qwen3:8b",
        messages: [userText("Hi"), assistantFrom(events), userText("Again")],
      }),
    );
    const assistant = assistantSent(seen);
    expect(assistant).toEqual({ role: "assistant", content: "Hello there!" });
  });
});
