/**
 * History poisoning: a session's history is sent again on every model call, so a message in it
 * that a vendor refuses (HTTP 400) would make every later turn of the session fail. Each fake
 * server here enforces one documented vendor rule, answering a request that breaks it with the
 * vendor's own 400; each test sends a history that really comes about and checks the body the
 * vendor receives:
 *
 * - A tool call without its result (a run aborted while its tool ran): refused by every vendor.
 * - Anthropic: tool call ids that are not `^[a-zA-Z0-9_-]+$` or not unique (after a failover
 *   or a change of model: Kimi's `functions.get_weather:0`, Gemini 2.x's `gemini_call_1`).
 * - Anthropic: text blocks empty or only whitespace, an error result without content (blank user
 *   messages of every vendor: see blank-user-messages.test.ts).
 * - Mistral: a user message right after tool results ("Unexpected role 'user' after role 'tool'").
 */
import {
  INTERRUPTED_TOOL_OUTPUT,
  type JsonValue,
  type ModelMessage,
  type ModelRequest,
  type RegisteredTool,
  type ToolContext,
} from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createGoogleProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  errorResponse,
  fixture,
  mswFakes,
  runtimeOver,
  sseResponse,
  textOf,
  userText,
} from "./support.js";

const { server, cleanups } = mswFakes();

const ANTHROPIC = "https://api.anthropic.com/v1/messages";
const OPENAI = "https://api.openai.com/v1";
const GEMINI_FLASH =
  "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash\\:streamGenerateContent";
const MISTRAL = "https://api.mistral.ai/v1";
const OLLAMA = "http://127.0.0.1:11434/v1";

type Block = Record<string, unknown>;
type AnthropicMessage = { role: string; content: Block[] };

/** The 400 of an Anthropic fake, in Anthropic's shape. */
function anthropicError(message: string) {
  return errorResponse(400, {
    type: "error",
    error: { type: "invalid_request_error", message },
  });
}

/**
 * Anthropic's checks of a request's messages that these tests are about: its 400, or undefined
 * when the request passes. The messages are Anthropic's, as reported (see the adapter).
 */
function anthropicRefusal(body: Record<string, unknown>) {
  const messages = body.messages as AnthropicMessage[];
  const ids = new Set<string>();
  for (const [i, message] of messages.entries()) {
    for (const [j, block] of message.content.entries()) {
      if (block.type === "text" && String(block.text).trim() === "") {
        return anthropicError(
          block.text === ""
            ? "messages: text content blocks must be non-empty"
            : "messages: text content blocks must contain non-whitespace text",
        );
      }
      if (block.type === "tool_use") {
        const id = String(block.id);
        if (!/^[a-zA-Z0-9_-]+$/.test(id)) {
          return anthropicError(
            `messages.${i}.content.${j}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'`,
          );
        }
        if (ids.has(id)) {
          return anthropicError(`messages.${i}.content.${j}: \`tool_use\` ids must be unique`);
        }
        ids.add(id);
      }
      if (
        block.type === "tool_result" &&
        block.is_error === true &&
        String(block.content ?? "").trim() === ""
      ) {
        return anthropicError(
          `messages.${i}.content.${j}.tool_result: content cannot be empty if \`is_error\` is true`,
        );
      }
    }
    if (message.role !== "assistant") continue;
    const next = messages[i + 1];
    const answered = new Set(
      next?.role === "user"
        ? next.content.filter((b) => b.type === "tool_result").map((b) => b.tool_use_id)
        : [],
    );
    const missing = message.content
      .filter((b) => b.type === "tool_use" && !answered.has(b.id))
      .map((b) => String(b.id));
    if (missing.length > 0) {
      return anthropicError(
        `messages.${i}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(", ")}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`,
      );
    }
  }
  return undefined;
}

/** An Anthropic fake that enforces {@link anthropicRefusal}, answering "Hello!" otherwise. */
function anthropicFake(seen: CapturedRequest[], first?: string) {
  server.use(
    http.post(ANTHROPIC, async ({ request }) => {
      const captured = await capture(request);
      seen.push(captured);
      if (seen.length === 1 && first !== undefined) return sseResponse(fixture(first));
      return anthropicRefusal(captured.body) ?? sseResponse(fixture("anthropic-text.sse.txt"));
    }),
  );
}

const anthropic = () => createAnthropicProvider({ apiKey: "sk-ant-test", promptCache: false });

async function sendToAnthropic(messages: ModelMessage[]) {
  const seen: CapturedRequest[] = [];
  anthropicFake(seen);
  const events = await collect(anthropic().stream({ model: "claude-sonnet-4-5", messages }));
  expect(textOf(events)).toBe("Hello!");
  expect(seen).toHaveLength(1);
  return seen[0]!.body.messages as AnthropicMessage[];
}

function call(toolCallId: string, input: Record<string, string> = { city: "Paris" }) {
  return { type: "tool-call" as const, toolCallId, toolName: "get_weather", input };
}

function result(toolCallId: string, output: string, isError?: boolean) {
  return {
    type: "tool-result" as const,
    toolCallId,
    toolName: "get_weather",
    output,
    ...(isError === undefined ? {} : { isError }),
  };
}

/** A history whose tool call never got its result, then the user's next message. */
const UNANSWERED: ModelMessage[] = [
  userText("Weather in Paris?"),
  {
    role: "assistant",
    content: [{ type: "text", text: "Let me check." }, call("call_paris")],
  },
  userText("Never mind: what time is it?"),
];

describe("a tool call left without its result (a run aborted while its tool ran)", () => {
  it("Anthropic, end to end: the next message's request answers the call with an error result", async () => {
    const seen: CapturedRequest[] = [];
    anthropicFake(seen, "anthropic-tool-use.sse.txt");
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    // A tool that runs until the run is aborted.
    const slowWeather: RegisteredTool = {
      name: "get_weather",
      description: "Current weather in a city",
      inputSchema: { type: "object", properties: { location: { type: "string" } } },
      execute: (_input: JsonValue, context: ToolContext) =>
        new Promise<JsonValue>((_resolve, reject) => {
          started();
          context.signal.addEventListener("abort", () => reject(context.signal.reason), {
            once: true,
          });
        }),
    };
    const runtime = await runtimeOver(
      [anthropic()],
      {
        agents: [{ id: "main", model: "anthropic/claude-sonnet-4-5", tools: ["*"] }],
        tools: [slowWeather],
      },
      cleanups,
    );
    const session = runtime.session("agent:main:main");
    const first = await session.send("Weather in San Francisco?");
    await running;
    expect(await first.abort()).toBe(true);
    expect((await first.result).status).toBe("aborted");

    const second = await session.send("Never mind: what time is it?");
    const answer = await second.result;
    expect(answer).toMatchObject({ status: "completed", text: "Hello!" });
    expect(seen).toHaveLength(2);
    const messages = seen[1]!.body.messages as AnthropicMessage[];
    expect(messages).toHaveLength(3);
    expect(messages[1]!.content.at(-1)).toMatchObject({
      type: "tool_use",
      id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
    });
    expect(messages[2]).toEqual({
      role: "user",
      content: [
        {
          type: "tool_result",
          tool_use_id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
          content: INTERRUPTED_TOOL_OUTPUT,
          is_error: true,
        },
        { type: "text", text: "Never mind: what time is it?" },
      ],
    });
  });

  it("Chat Completions: a tool message follows the call, before the user's message", async () => {
    const seen: CapturedRequest[] = [];
    server.use(
      http.post(`${OPENAI}/chat/completions`, async ({ request }) => {
        const captured = await capture(request);
        seen.push(captured);
        const messages = captured.body.messages as Block[];
        for (const [i, message] of messages.entries()) {
          const calls = (message.tool_calls as Block[] | undefined) ?? [];
          const answered = new Set<unknown>();
          for (let k = i + 1; messages[k]?.role === "tool"; k++) {
            answered.add(messages[k]!.tool_call_id);
          }
          const missing = calls.filter((c) => !answered.has(c.id)).map((c) => c.id);
          if (missing.length > 0) {
            return errorResponse(400, {
              error: {
                message: `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${missing.join(", ")}`,
                type: "invalid_request_error",
                param: "messages",
                code: null,
              },
            });
          }
        }
        return sseResponse(fixture("openai-chat-text.sse.txt"));
      }),
    );
    const openai = createOpenAIProvider({ apiKey: "sk-test", api: "chat" });
    const events = await collect(openai.stream({ model: "gpt-4.1-mini", messages: UNANSWERED }));
    expect(events.at(-1)).toMatchObject({ type: "finish", reason: "stop" });
    expect(seen[0]!.body.messages).toEqual([
      { role: "user", content: "Weather in Paris?" },
      {
        role: "assistant",
        content: "Let me check.",
        tool_calls: [
          {
            id: "call_paris",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Paris"}' },
          },
        ],
      },
      {
        role: "tool",
        tool_call_id: "call_paris",
        content: INTERRUPTED_TOOL_OUTPUT,
      },
      { role: "user", content: "Never mind: what time is it?" },
    ]);
  });

  it("Responses API: a function_call_output follows the function_call", async () => {
    const seen: CapturedRequest[] = [];
    server.use(
      http.post(`${OPENAI}/responses`, async ({ request }) => {
        const captured = await capture(request);
        seen.push(captured);
        const input = captured.body.input as Block[];
        const outputs = new Set(
          input.filter((i) => i.type === "function_call_output").map((i) => i.call_id),
        );
        const missing = input.find((i) => i.type === "function_call" && !outputs.has(i.call_id));
        if (missing !== undefined) {
          return errorResponse(400, {
            error: {
              message: `No tool output found for function call ${String(missing.call_id)}.`,
              type: "invalid_request_error",
              param: "input",
              code: null,
            },
          });
        }
        return sseResponse(fixture("openai-responses-text.sse.txt"));
      }),
    );
    const openai = createOpenAIProvider({ apiKey: "sk-test" });
    const events = await collect(openai.stream({ model: "gpt-4.1-mini", messages: UNANSWERED }));
    expect(events.at(-1)).toMatchObject({ type: "finish", reason: "stop" });
    const input = seen[0]!.body.input as Block[];
    expect(input.slice(2)).toEqual([
      {
        type: "function_call",
        call_id: "call_paris",
        name: "get_weather",
        arguments: '{"city":"Paris"}',
      },
      {
        type: "function_call_output",
        call_id: "call_paris",
        output: INTERRUPTED_TOOL_OUTPUT,
      },
      { role: "user", content: [{ type: "input_text", text: "Never mind: what time is it?" }] },
    ]);
  });

  it("Gemini: the function call turn is followed by as many function responses", async () => {
    const seen: CapturedRequest[] = [];
    server.use(
      http.post(GEMINI_FLASH, async ({ request }) => {
        const captured = await capture(request);
        seen.push(captured);
        const contents = captured.body.contents as Array<{ role: string; parts: Block[] }>;
        for (const [i, turn] of contents.entries()) {
          const calls = turn.parts.filter((p) => p.functionCall !== undefined).length;
          const responses =
            contents[i + 1]?.parts.filter((p) => p.functionResponse !== undefined).length ?? 0;
          if (calls > 0 && calls !== responses) {
            return errorResponse(400, {
              error: {
                code: 400,
                message:
                  "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
                status: "INVALID_ARGUMENT",
              },
            });
          }
        }
        return sseResponse(fixture("google-text.sse.txt"));
      }),
    );
    const gemini = createGoogleProvider({ apiKey: "AIzaSyTest-0123456789abcdefghijklmnopq" });
    const events = await collect(
      gemini.stream({ model: "gemini-2.5-flash", messages: UNANSWERED }),
    );
    expect(events.at(-1)).toMatchObject({ type: "finish", reason: "stop" });
    expect((seen[0]!.body.contents as unknown[]).slice(1)).toEqual([
      {
        role: "model",
        parts: [
          { text: "Let me check." },
          {
            functionCall: { name: "get_weather", args: { city: "Paris" } },
            thoughtSignature: "skip_thought_signature_validator",
          },
        ],
      },
      {
        role: "user",
        parts: [
          {
            functionResponse: {
              name: "get_weather",
              response: {
                error: INTERRUPTED_TOOL_OUTPUT,
              },
            },
          },
          { text: "Never mind: what time is it?" },
        ],
      },
    ]);
  });

  it("only the calls left unanswered get a result; the results there are kept", async () => {
    const messages = await sendToAnthropic([
      userText("Weather in Paris and Rome?"),
      { role: "assistant", content: [call("toolu_paris"), call("toolu_rome", { city: "Rome" })] },
      { role: "tool", content: [result("toolu_paris", '{"celsius":21}')] },
      userText("Thanks"),
    ]);
    expect(messages[2]).toEqual({
      role: "user",
      content: [
        { type: "tool_result", tool_use_id: "toolu_paris", content: '{"celsius":21}' },
        {
          type: "tool_result",
          tool_use_id: "toolu_rome",
          content: INTERRUPTED_TOOL_OUTPUT,
          is_error: true,
        },
        { type: "text", text: "Thanks" },
      ],
    });
  });
});

describe("Anthropic: tool call ids from other providers", () => {
  it("are sent in Anthropic's form, once each, and their results name them the same way", async () => {
    const messages = await sendToAnthropic([
      userText("Weather in Paris?"),
      // Kimi K2 (through an OpenAI-compatible server) names its calls this way.
      { role: "assistant", content: [call("functions.get_weather:0")] },
      { role: "tool", content: [result("functions.get_weather:0", '{"celsius":21}')] },
      { role: "assistant", content: [{ type: "text", text: "21 °C." }] },
      userText("And Rome, then Oslo?"),
      // Gemini 2.x gives no ids: the ones made up for its calls start again at each step.
      { role: "assistant", content: [call("gemini_call_1", { city: "Rome" })] },
      { role: "tool", content: [result("gemini_call_1", '{"celsius":25}')] },
      { role: "assistant", content: [call("gemini_call_1", { city: "Oslo" })] },
      { role: "tool", content: [result("gemini_call_1", '{"celsius":9}')] },
      { role: "assistant", content: [{ type: "text", text: "25 °C and 9 °C." }] },
      userText("And Paris again?"),
      // Anthropic's own, after the switch: kept as they are.
      { role: "assistant", content: [call("toolu_01A09q90qw90lq917835lq9")] },
      { role: "tool", content: [result("toolu_01A09q90qw90lq917835lq9", '{"celsius":22}')] },
    ]);
    const uses = messages.flatMap((m) => m.content.filter((b) => b.type === "tool_use"));
    const results = messages.flatMap((m) => m.content.filter((b) => b.type === "tool_result"));
    expect(uses.map((b) => [b.id, b.input])).toEqual([
      ["functions_get_weather_0", { city: "Paris" }],
      ["gemini_call_1", { city: "Rome" }],
      ["gemini_call_1_2", { city: "Oslo" }],
      ["toolu_01A09q90qw90lq917835lq9", { city: "Paris" }],
    ]);
    expect(results.map((b) => [b.tool_use_id, b.content])).toEqual([
      ["functions_get_weather_0", '{"celsius":21}'],
      ["gemini_call_1", '{"celsius":25}'],
      ["gemini_call_1_2", '{"celsius":9}'],
      ["toolu_01A09q90qw90lq917835lq9", '{"celsius":22}'],
    ]);
  });
});

describe("Anthropic: text that is empty or only whitespace", () => {
  it("is left out of assistant turns; a blank user message keeps its turn as a placeholder", async () => {
    const messages = await sendToAnthropic([
      userText("Weather in Paris?"),
      // Models often put a blank line before their tool calls.
      { role: "assistant", content: [{ type: "text", text: "\n\n" }, call("toolu_paris")] },
      { role: "tool", content: [result("toolu_paris", '{"celsius":21}')] },
      { role: "assistant", content: [{ type: "text", text: "It is 21 °C in Paris." }] },
      // A blank message (saved before `session.send(" ")` was refused), answered by another model.
      userText(" \n"),
      { role: "assistant", content: [{ type: "text", text: "Did you mean to write more?" }] },
      userText("Thanks"),
    ]);
    expect(messages).toEqual([
      { role: "user", content: [{ type: "text", text: "Weather in Paris?" }] },
      {
        role: "assistant",
        content: [
          { type: "tool_use", id: "toolu_paris", name: "get_weather", input: { city: "Paris" } },
        ],
      },
      {
        role: "user",
        content: [{ type: "tool_result", tool_use_id: "toolu_paris", content: '{"celsius":21}' }],
      },
      { role: "assistant", content: [{ type: "text", text: "It is 21 °C in Paris." }] },
      // Left out, it would put the two assistant turns side by side (see blank-user-messages).
      { role: "user", content: [{ type: "text", text: "(empty message)" }] },
      { role: "assistant", content: [{ type: "text", text: "Did you mean to write more?" }] },
      { role: "user", content: [{ type: "text", text: "Thanks" }] },
    ]);
  });

  it("an error result without output says that the tool failed", async () => {
    const messages = await sendToAnthropic([
      userText("Weather in Paris and Rome?"),
      { role: "assistant", content: [call("toolu_paris"), call("toolu_rome", { city: "Rome" })] },
      {
        role: "tool",
        content: [result("toolu_paris", "", true), result("toolu_rome", " ", true)],
      },
    ]);
    expect(messages[2]).toEqual({
      role: "user",
      content: [
        {
          type: "tool_result",
          tool_use_id: "toolu_paris",
          content: "The tool failed without an error message.",
          is_error: true,
        },
        {
          type: "tool_result",
          tool_use_id: "toolu_rome",
          content: "The tool failed without an error message.",
          is_error: true,
        },
      ],
    });
  });
});

describe("Mistral: a user message right after tool results", () => {
  /** One Chat Completions chunk, in Mistral's shape. */
  function chunk(delta: Record<string, unknown>, finish: string | null = null) {
    return `data: ${JSON.stringify({
      id: "cmpl-e5cc70bb28c444948073e77776eb30ef",
      object: "chat.completion.chunk",
      created: 1777000000,
      model: "mistral-small-latest",
      choices: [{ index: 0, delta, finish_reason: finish }],
    })}\n\n`;
  }

  function mistralFake(seen: CapturedRequest[]) {
    server.use(
      http.post(`${MISTRAL}/chat/completions`, async ({ request }) => {
        const captured = await capture(request);
        seen.push(captured);
        const messages = captured.body.messages as Block[];
        for (const [i, message] of messages.entries()) {
          const next = messages[i + 1];
          if (message.role === "tool" && next?.role === "user") {
            return errorResponse(400, {
              object: "error",
              message: "Unexpected role 'user' after role 'tool'",
              type: "invalid_request_message_order",
              param: null,
              code: "3230",
            });
          }
          if (message.role === "assistant" && !message.content && !message.tool_calls) {
            return errorResponse(400, {
              object: "error",
              message: "Assistant message must have either content or tool_calls, but not none.",
              type: "invalid_request_error",
              param: null,
              code: null,
            });
          }
        }
        if (seen.length === 1) {
          return sseResponse(
            chunk({
              role: "assistant",
              content: "",
              tool_calls: [
                {
                  id: "aB3dE5fG7",
                  type: "function",
                  function: { name: "get_weather", arguments: '{"city": "Paris"}' },
                },
              ],
            }) +
              chunk({ content: "" }, "tool_calls") +
              "data: [DONE]\n\n",
          );
        }
        return sseResponse(
          chunk({ role: "assistant", content: "It is 3 pm." }) +
            chunk({ content: "" }, "stop") +
            "data: [DONE]\n\n",
        );
      }),
    );
  }

  it("end to end: a run that stopped after its tools ran does not block the next message", async () => {
    const seen: CapturedRequest[] = [];
    mistralFake(seen);
    const weather: RegisteredTool = {
      name: "get_weather",
      description: "Current weather in a city",
      inputSchema: { type: "object", properties: { city: { type: "string" } } },
      execute: () => ({ celsius: 21 }),
    };
    const mistral = createOpenAICompatibleProvider({ id: "mistral", baseUrl: MISTRAL });
    const runtime = await runtimeOver(
      [mistral],
      {
        // One step: the run ends with the tool's result, before the model answers it.
        agents: [{ id: "main", model: "mistral/mistral-small-latest", tools: ["*"], maxSteps: 1 }],
        tools: [weather],
      },
      cleanups,
    );
    const session = runtime.session("agent:main:main");
    const first = await (await session.send("Weather in Paris?")).result;
    expect(first.status).toBe("max-steps");
    const second = await (await session.send("What time is it?")).result;
    expect(second).toMatchObject({ status: "completed", text: "It is 3 pm." });
    expect(seen).toHaveLength(2);
    expect((seen[1]!.body.messages as Block[]).map((m) => [m.role, m.content])).toEqual([
      ["user", "Weather in Paris?"],
      ["assistant", null],
      ["tool", '{"celsius":21}'],
      ["assistant", "(No answer to these tool results: the next user message came first.)"],
      ["user", "What time is it?"],
    ]);
  });

  it("other servers' models get the messages in the order they came", async () => {
    const seen: CapturedRequest[] = [];
    server.use(
      http.post(`${OLLAMA}/chat/completions`, async ({ request }) => {
        seen.push(await capture(request));
        return sseResponse(fixture("ollama-chat.sse.txt"));
      }),
    );
    const ollama = createOpenAICompatibleProvider({ id: "ollama", baseUrl: OLLAMA });
    const request: ModelRequest = {
      model: "llama3.2",
      messages: [
        userText("Weather in Paris?"),
        { role: "assistant", content: [call("call_1")] },
        { role: "tool", content: [result("call_1", '{"celsius":21}')] },
        userText("What time is it?"),
      ],
    };
    await collect(ollama.stream(request));
    expect((seen[0]!.body.messages as Block[]).map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "tool",
      "user",
    ]);
  });
});
