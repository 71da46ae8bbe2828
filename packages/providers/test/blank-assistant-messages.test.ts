/**
 * Assistant messages that say nothing: a model that answered nothing (a stop without text or
 * tool calls), kept in the history like any answer. Chat Completions cannot merge the two user
 * messages around it, and vendors refuse an assistant message without content: Mistral's API
 * ("Assistant message must have either content or tool_calls, but not none.",
 * OpenHands/OpenHands#8685, langchain-ai/langchain#21196; mistral-common's validator tests
 * `bool(content)`, so `""` counts as none) and LM Studio (any empty `content`,
 * lmstudio-ai/lmstudio-bug-tracker#2). Every later turn of such a conversation was refused.
 * Each fake server here enforces the vendor's documented rules, answering a request that
 * breaks one with the vendor's own 400. On Chat Completions a blank answer keeps its place as
 * "(empty message)", as a blank user message does, unless it is the last message, which is left
 * out; Gemini and the Responses API leave it out (blank text beside tool calls too), as the
 * Anthropic adapter does.
 */
import type { ModelMessage, ModelProvider } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import { createOpenAICompatibleProvider } from "../src/index.js";
import {
  assistantText,
  PLACEHOLDER,
  sendToGemini,
  sendToResponses,
  type Wire,
} from "./blank-text-fakes.js";
import {
  type CapturedRequest,
  capture,
  chatAnswer,
  chatChunk,
  collect,
  errorResponse,
  mswFakes,
  runtimeOver,
  sseResponse,
  userText,
} from "./support.js";

const { server, cleanups } = mswFakes();

const MISTRAL = "https://api.mistral.ai/v1";
const LM_STUDIO = "http://127.0.0.1:1234/v1";
const VLLM = "http://127.0.0.1:8000/v1";

/** The blank answers a history can hold. */
const BLANK_ANSWERS: Array<[string, ModelMessage]> = [
  ["no parts at all", { role: "assistant", content: [] }],
  ["an empty text", assistantText("")],
  ["only whitespace", assistantText(" \n")],
  [
    "only another vendor's thinking",
    {
      role: "assistant",
      content: [{ type: "thinking", text: "The user says hi.", signature: "EqQBCkYIBxgCKkA" }],
    },
  ],
];

/** Mistral's error body (its API's shape: `object`, `message`, `type`, `param`, `code`). */
function mistralError(message: string, type: string) {
  return errorResponse(400, { object: "error", message, type, param: null, code: null });
}

/**
 * Mistral's checks of a conversation (mistralai/mistral-common `MistralRequestValidator`, which
 * its API and vLLM's Mistral models apply): an assistant message has content or tool calls; no
 * user message right after a tool message ("Unexpected role 'user' after role 'tool'"); the
 * last message is the user's or a tool's.
 */
function mistralRefusal(body: Wire) {
  const messages = body.messages as Wire[];
  for (const [i, message] of messages.entries()) {
    const content = message.content;
    const hasContent = typeof content === "string" ? content !== "" : Array.isArray(content);
    const calls = message.tool_calls;
    if (
      message.role === "assistant" &&
      !hasContent &&
      !(Array.isArray(calls) && calls.length > 0)
    ) {
      return mistralError(
        "Assistant message must have either content or tool_calls, but not none.",
        "invalid_request_error",
      );
    }
    const previous = messages[i - 1]?.role;
    if (previous === "tool" && message.role === "user") {
      return mistralError(
        "Unexpected role 'user' after role 'tool'",
        "invalid_request_message_order",
      );
    }
  }
  const last = messages.at(-1)?.role;
  if (last !== "user" && last !== "tool") {
    return mistralError(
      `Expected last role User or Tool (or Assistant with prefix True) for serving but got ${last}`,
      "invalid_request_message_order",
    );
  }
  return undefined;
}

/**
 * LM Studio's check: no message with an empty `content` (HTTP 400 `{"error": "'messages' array
 * must only contain objects with a 'content' field that is not empty"}`,
 * lmstudio-ai/lmstudio-bug-tracker#2).
 */
function lmStudioRefusal(body: Wire) {
  const messages = body.messages as Wire[];
  if (messages.some((m) => m.content === "")) {
    return errorResponse(400, {
      error: "'messages' array must only contain objects with a 'content' field that is not empty",
    });
  }
  return undefined;
}

/**
 * A chat template that requires alternating roles, as Gemma's does on vLLM or llama.cpp
 * (`raise_exception('Conversation roles must alternate user/assistant/user/assistant/...')`,
 * answered by vLLM as HTTP 400 in OpenAI's error shape).
 */
function alternationRefusal(body: Wire) {
  const roles = (body.messages as Wire[]).map((m) => m.role).filter((r) => r !== "system");
  if (roles.some((role, i) => (role === "user") !== (i % 2 === 0))) {
    return errorResponse(400, {
      object: "error",
      message: "Conversation roles must alternate user/assistant/user/assistant/...",
      type: "BadRequestError",
      param: null,
      code: 400,
    });
  }
  return undefined;
}

/**
 * A fake server at `base` that checks each request with `refusal`, and answers the n-th (from
 * 1) that passes with `reply(n)`; records what it got.
 */
function fakeServer(
  base: string,
  refusal: (body: Wire) => Response | undefined,
  reply: (n: number) => Response = () => chatAnswer("any", "Hi!"),
) {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(`${base}/chat/completions`, async ({ request }) => {
      const captured = await capture(request);
      seen.push(captured);
      return refusal(captured.body) ?? reply(seen.length);
    }),
  );
  return seen;
}

/** A tool call and its result, then `after`. */
function afterToolCall(...after: ModelMessage[]): ModelMessage[] {
  return [
    userText("Weather in Paris?"),
    {
      role: "assistant",
      content: [
        { type: "text", text: "" },
        { type: "tool-call", toolCallId: "D681PevKs", toolName: "w", input: { city: "Paris" } },
      ],
    },
    {
      role: "tool",
      content: [{ type: "tool-result", toolCallId: "D681PevKs", toolName: "w", output: 21 }],
    },
    ...after,
  ];
}

/** Streams `messages`; the fake's answer must come back to the end. Returns what was sent. */
async function send(
  provider: ModelProvider,
  model: string,
  messages: ModelMessage[],
  seen: CapturedRequest[],
): Promise<Wire[]> {
  const events = await collect(provider.stream({ model, messages }));
  expect(events.at(-1)).toMatchObject({ type: "finish", reason: "stop" });
  return seen.at(-1)!.body.messages as Wire[];
}

const mistral = () =>
  createOpenAICompatibleProvider({ id: "mistral", baseUrl: MISTRAL, apiKey: "test-key" });

describe("a blank answer sent to Mistral", () => {
  it.each(BLANK_ANSWERS)(
    "between two user messages (%s) keeps its place as a placeholder",
    async (_, blank) => {
      const seen = fakeServer(MISTRAL, mistralRefusal);
      const messages = await send(
        mistral(),
        "mistral-small-latest",
        [userText("Hi"), blank, userText("Are you there?")],
        seen,
      );
      expect(messages).toEqual([
        { role: "user", content: "Hi" },
        { role: "assistant", content: PLACEHOLDER },
        { role: "user", content: "Are you there?" },
      ]);
    },
  );

  it("to tool results keeps its place: the user message after it is accepted", async () => {
    const seen = fakeServer(MISTRAL, mistralRefusal);
    const messages = await send(
      mistral(),
      "mistral-large-latest",
      afterToolCall(assistantText(""), userText("Well?")),
      seen,
    );
    // One assistant message answers the results: the placeholder, not a second one.
    expect(messages.map((m) => [m.role, m.content ?? null])).toEqual([
      ["user", "Weather in Paris?"],
      ["assistant", null],
      ["tool", "21"],
      ["assistant", PLACEHOLDER],
      ["user", "Well?"],
    ]);
  });

  it.each(BLANK_ANSWERS)("as the last message (%s) is left out", async (_, blank) => {
    const seen = fakeServer(MISTRAL, mistralRefusal);
    const messages = await send(mistral(), "mistral-small-latest", [userText("Hi"), blank], seen);
    expect(messages).toEqual([{ role: "user", content: "Hi" }]);
  });

  it("a session whose model only thought, and answered nothing, goes on with its next message", async () => {
    const model = "magistral-small-latest";
    const seen = fakeServer(MISTRAL, mistralRefusal, (n) =>
      n > 1
        ? chatAnswer(model, "Yes, I am here.")
        : // Magistral's reasoning (`content` as a `thinking` chunk), then a stop without text:
          // the session keeps an assistant message of thinking alone, which Chat Completions
          // does not send back.
          sseResponse(
            chatChunk(model, {
              role: "assistant",
              content: [{ type: "thinking", thinking: [{ type: "text", text: "A greeting." }] }],
            }) +
              chatChunk(model, { content: "" }, "stop") +
              "data: [DONE]\n\n",
          ),
    );
    const runtime = await runtimeOver(
      [mistral()],
      { agents: [{ id: "main", model: `mistral/${model}` }] },
      cleanups,
    );
    const session = runtime.session("agent:main:main");
    const first = await (await session.send("Hi")).result;
    expect(first).toMatchObject({ status: "completed", text: "" });
    const second = await (await session.send("Are you there?")).result;
    expect(second).toMatchObject({ status: "completed", text: "Yes, I am here." });
    expect((seen[1]!.body.messages as Wire[]).map((m) => [m.role, m.content])).toEqual([
      ["user", "Hi"],
      ["assistant", PLACEHOLDER],
      ["user", "Are you there?"],
    ]);
  });
});

describe("a blank answer sent to other OpenAI-compatible servers", () => {
  it("LM Studio: keeps its place as a placeholder, not an empty content", async () => {
    const seen = fakeServer(LM_STUDIO, lmStudioRefusal);
    const provider = createOpenAICompatibleProvider({ id: "lmstudio", baseUrl: LM_STUDIO });
    const messages = await send(
      provider,
      "qwen3-8b",
      [userText("Hi"), assistantText(""), userText("Hello?")],
      seen,
    );
    expect(messages[1]).toEqual({ role: "assistant", content: PLACEHOLDER });
  });

  it("a template that requires alternating roles (Gemma on vLLM): roles still alternate", async () => {
    const model = "google/gemma-3-27b-it";
    const seen = fakeServer(VLLM, alternationRefusal);
    const provider = createOpenAICompatibleProvider({ id: "vllm", baseUrl: VLLM });
    const messages = await send(
      provider,
      model,
      [userText("Hi"), { role: "assistant", content: [] }, userText("Hello?")],
      seen,
    );
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "user"]);
  });

  it("an answer of only tool calls still goes with `content: null`", async () => {
    const seen = fakeServer(MISTRAL, mistralRefusal);
    const messages = await send(mistral(), "mistral-large-latest", afterToolCall(), seen);
    expect(messages[1]).toMatchObject({ role: "assistant", content: null });
  });

  it("tool calls beside text of only whitespace go with `content: null`, as beside none", async () => {
    const seen = fakeServer(MISTRAL, mistralRefusal);
    const messages = await send(
      mistral(),
      "mistral-large-latest",
      callsWithBlankText(" \n "),
      seen,
    );
    expect(messages[1]).toMatchObject({ role: "assistant", content: null });
    expect(messages[1]).toHaveProperty("tool_calls.0.function.name", "w");
  });
});

// ------------------------------------------------------------------ Gemini and Responses

/** An answer of tool calls whose text says nothing, and the call's result. */
function callsWithBlankText(text: string): ModelMessage[] {
  return [
    userText("Weather in Paris?"),
    {
      role: "assistant",
      content: [
        { type: "text", text },
        { type: "tool-call", toolCallId: "call_Paris", toolName: "w", input: { city: "Paris" } },
      ],
    },
    {
      role: "tool",
      content: [{ type: "tool-result", toolCallId: "call_Paris", toolName: "w", output: 21 }],
    },
  ];
}

/**
 * Where turns of one role merge (Gemini) or need not alternate (the Responses API), a blank
 * answer is left out, as Anthropic's adapter does: a model turn of only whitespace says nothing.
 * Beside tool calls, blank text is left out and the calls go alone, with no placeholder.
 */
describe("a blank answer sent to Gemini", () => {
  it.each(BLANK_ANSWERS)(
    "between two user messages (%s) is left out: the user turns merge",
    async (_, blank) => {
      const contents = await sendToGemini(server, [
        userText("Hi"),
        blank,
        userText("Are you there?"),
      ]);
      expect(contents).toEqual([
        { role: "user", parts: [{ text: "Hi" }, { text: "Are you there?" }] },
      ]);
    },
  );

  it.each([
    ["an empty text", ""],
    ["only whitespace", " \n"],
  ])("beside tool calls (%s): the calls go alone", async (_, text) => {
    const contents = await sendToGemini(server, callsWithBlankText(text));
    expect(contents).toEqual([
      { role: "user", parts: [{ text: "Weather in Paris?" }] },
      {
        role: "model",
        parts: [
          {
            functionCall: { name: "w", args: { city: "Paris" } },
            thoughtSignature: "skip_thought_signature_validator",
          },
        ],
      },
      { role: "user", parts: [{ functionResponse: { name: "w", response: { output: 21 } } }] },
    ]);
  });
});

describe("a blank answer sent to the Responses API", () => {
  it.each(BLANK_ANSWERS)("between two user messages (%s) is left out", async (_, blank) => {
    const input = await sendToResponses(server, [
      userText("Hi"),
      blank,
      userText("Are you there?"),
    ]);
    expect(input).toEqual([
      { role: "user", content: [{ type: "input_text", text: "Hi" }] },
      { role: "user", content: [{ type: "input_text", text: "Are you there?" }] },
    ]);
  });

  it.each([
    ["an empty text", ""],
    ["only whitespace", " \n"],
  ])("beside tool calls (%s): the calls go alone", async (_, text) => {
    const input = await sendToResponses(server, callsWithBlankText(text));
    expect(input).toEqual([
      { role: "user", content: [{ type: "input_text", text: "Weather in Paris?" }] },
      { type: "function_call", call_id: "call_Paris", name: "w", arguments: '{"city":"Paris"}' },
      { type: "function_call_output", call_id: "call_Paris", output: "21" },
    ]);
  });

  it("reasoning paired with a blank text goes without the text, and without its id", async () => {
    // The output message that followed the reasoning (`msg_2`) held only whitespace: it is
    // not sent, so the reasoning cannot name it, and goes as its encrypted content alone.
    const input = await sendToResponses(server, [
      userText("Hi"),
      {
        role: "assistant",
        content: [
          { type: "thinking", text: "", signature: "rs_1|msg_2", redacted: "gAAAAB-encrypted" },
          { type: "text", text: "\n\n" },
        ],
      },
      userText("Are you there?"),
    ]);
    expect(input).toEqual([
      { role: "user", content: [{ type: "input_text", text: "Hi" }] },
      { type: "reasoning", summary: [], encrypted_content: "gAAAAB-encrypted" },
      { role: "user", content: [{ type: "input_text", text: "Are you there?" }] },
    ]);
  });
});
