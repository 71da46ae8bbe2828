/**
 * User messages that say nothing: no text, or only whitespace. `session.send` refuses a new
 * one that has no image or file either, but a history can still hold one (saved by an earlier
 * version, written to the store by other code), and one with an image and no caption is an
 * ordinary message (a channel's photo). Each fake server here enforces the vendor's documented
 * rules about empty content, answering a request that breaks one with the vendor's own 400;
 * each test checks the body the vendor receives. Every adapter keeps such a message in its
 * place as the text "(empty message)" (roles still alternate, and the conversation still ends
 * with the user's turn), leaves blank text out beside an image or a file, and sends an image
 * without a caption as it is.
 */
import type { ModelMessage } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import {
  assistantText,
  emptyArrayRefusal,
  expectAnswered,
  OPENAI,
  PLACEHOLDER,
  sendToGemini,
  sendToResponses,
  type Wire,
} from "./blank-text-fakes.js";
import {
  type CapturedRequest,
  capture,
  errorResponse,
  fixture,
  mswFakes,
  sseResponse,
  userText,
} from "./support.js";

const { server } = mswFakes();

const ANTHROPIC = "https://api.anthropic.com/v1/messages";
const LM_STUDIO = "http://127.0.0.1:1234/v1";

const PNG = "iVBORw0KGgo=";
const image = { type: "image" as const, mediaType: "image/png", data: PNG };

/** A conversation whose last message is `last`. */
function endingWith(last: ModelMessage): ModelMessage[] {
  return [userText("Hi"), assistantText("Hello! How can I help?"), last];
}

/** The blank last messages a history can hold. */
const BLANK_LAST: Array<[string, ModelMessage]> = [
  // What `session.send("")` saved before it was refused: a user message without parts.
  ["no parts at all", { role: "user", content: [] }],
  ["an empty text", userText("")],
  ["only whitespace", userText(" \n\t")],
];

/** A blank message between two answered ones. */
const BLANK_MIDDLE: ModelMessage[] = [
  userText("Weather in Paris?"),
  assistantText("21 °C."),
  userText(" "),
  assistantText("Did you mean to write more?"),
  userText("Thanks"),
];

/** A photo sent without a caption: no text part, or a blank one beside it. */
const CAPTIONLESS: Array<[string, ModelMessage]> = [
  ["an image alone", { role: "user", content: [image] }],
  ["an image with a blank text", { role: "user", content: [{ type: "text", text: "  " }, image] }],
];

// ------------------------------------------------------------------ Anthropic

/**
 * Anthropic's checks (HTTP 400, `invalid_request_error`): every message has content, except
 * an optional final assistant message ("messages.0: all messages must have non-empty content
 * except for the optional final assistant message", anthropics/claude-code#6774,
 * dspinellis/ai-cli-lib#16); text blocks hold non-whitespace text (anthropics/claude-code#23440);
 * and Claude 4.6 and later take no assistant prefill: the conversation must end with a user
 * message (smallmain/vscode-unify-chat-provider#249, cortexkit/magic-context#511).
 */
function anthropicRefusal(body: Wire) {
  const messages = body.messages as Array<{ role: string; content: Wire[] | string }>;
  const refuse = (message: string) =>
    errorResponse(400, { type: "error", error: { type: "invalid_request_error", message } });
  for (const [i, message] of messages.entries()) {
    const final = i === messages.length - 1 && message.role === "assistant";
    if (message.content.length === 0 && !final) {
      return refuse(
        `messages.${i}: all messages must have non-empty content except for the optional final assistant message`,
      );
    }
    for (const block of Array.isArray(message.content) ? message.content : []) {
      if (block.type === "text" && String(block.text).trim() === "") {
        return refuse(
          block.text === ""
            ? "messages: text content blocks must be non-empty"
            : "messages: text content blocks must contain non-whitespace text",
        );
      }
    }
  }
  if (messages.at(-1)?.role !== "user") {
    return refuse(
      "This model does not support assistant message prefill. The conversation must end with a user message.",
    );
  }
  return undefined;
}

async function sendToAnthropic(messages: ModelMessage[]): Promise<Wire[]> {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(ANTHROPIC, async ({ request }) => {
      const captured = await capture(request);
      seen.push(captured);
      return anthropicRefusal(captured.body) ?? sseResponse(fixture("anthropic-text.sse.txt"));
    }),
  );
  const anthropic = createAnthropicProvider({ apiKey: "sk-ant-test", promptCache: false });
  await expectAnswered(anthropic, "claude-sonnet-4-6", messages);
  return seen[0]!.body.messages as Wire[];
}

describe("Anthropic", () => {
  it.each(BLANK_LAST)(
    "a blank last message (%s) stays the user's turn, as a placeholder",
    async (_, last) => {
      const messages = await sendToAnthropic(endingWith(last));
      expect(messages).toEqual([
        { role: "user", content: [{ type: "text", text: "Hi" }] },
        { role: "assistant", content: [{ type: "text", text: "Hello! How can I help?" }] },
        { role: "user", content: [{ type: "text", text: PLACEHOLDER }] },
      ]);
    },
  );

  it("a blank message in the middle keeps its turn: the assistant turns around it stay apart", async () => {
    const messages = await sendToAnthropic(BLANK_MIDDLE);
    expect(messages.map((m) => [m.role, (m.content as Wire[]).map((b) => b.text)])).toEqual([
      ["user", ["Weather in Paris?"]],
      ["assistant", ["21 °C."]],
      ["user", [PLACEHOLDER]],
      ["assistant", ["Did you mean to write more?"]],
      ["user", ["Thanks"]],
    ]);
  });

  it.each(CAPTIONLESS)("%s is sent as the image alone", async (_, message) => {
    const messages = await sendToAnthropic([message]);
    expect(messages).toEqual([
      {
        role: "user",
        content: [
          { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } },
        ],
      },
    ]);
  });
});

// ------------------------------------------------------------------ OpenAI Chat Completions

/**
 * LM Studio's server refuses a message whose `content` is empty ("'messages' array must only
 * contain objects with a 'content' field that is not empty", lmstudio-ai/lmstudio-bug-tracker#2),
 * as Mistral's templates did (mistralai/mistral-common#134).
 */
function lmStudioRefusal(messages: Wire[]) {
  if (
    messages.some((m) => m.content === "" || (Array.isArray(m.content) && m.content.length === 0))
  ) {
    return errorResponse(400, {
      error: "'messages' array must only contain objects with a 'content' field that is not empty",
    });
  }
  return undefined;
}

async function sendToChat(
  target: "openai" | "lm-studio",
  messages: ModelMessage[],
): Promise<Wire[]> {
  const seen: CapturedRequest[] = [];
  const base = target === "openai" ? OPENAI : LM_STUDIO;
  server.use(
    http.post(`${base}/chat/completions`, async ({ request }) => {
      const captured = await capture(request);
      seen.push(captured);
      const sent = captured.body.messages as Wire[];
      const refusal =
        target === "openai"
          ? emptyArrayRefusal(sent, "content", "messages")
          : lmStudioRefusal(sent);
      return refusal ?? sseResponse(fixture("openai-chat-text.sse.txt"));
    }),
  );
  const provider =
    target === "openai"
      ? createOpenAIProvider({ apiKey: "sk-test", api: "chat" })
      : createOpenAICompatibleProvider({ id: "lmstudio", baseUrl: LM_STUDIO });
  await expectAnswered(provider, target === "openai" ? "gpt-4.1-mini" : "qwen3-8b", messages);
  return seen[0]!.body.messages as Wire[];
}

describe.each(["openai", "lm-studio"] as const)("Chat Completions (%s)", (target) => {
  it.each(BLANK_LAST)("a blank last message (%s) is sent as a placeholder", async (_, last) => {
    const messages = await sendToChat(target, endingWith(last));
    expect(messages).toEqual([
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello! How can I help?" },
      { role: "user", content: PLACEHOLDER },
    ]);
  });

  it("a blank message in the middle is sent as a placeholder in its place", async () => {
    const messages = await sendToChat(target, BLANK_MIDDLE);
    expect(messages.map((m) => [m.role, m.content])).toEqual([
      ["user", "Weather in Paris?"],
      ["assistant", "21 °C."],
      ["user", PLACEHOLDER],
      ["assistant", "Did you mean to write more?"],
      ["user", "Thanks"],
    ]);
  });

  it.each(CAPTIONLESS)("%s is sent as the image alone", async (_, message) => {
    const messages = await sendToChat(target, [message]);
    expect(messages).toEqual([
      {
        role: "user",
        content: [{ type: "image_url", image_url: { url: `data:image/png;base64,${PNG}` } }],
      },
    ]);
  });
});

// ------------------------------------------------------------------ OpenAI Responses

describe("Responses API", () => {
  it.each(BLANK_LAST)("a blank last message (%s) is sent as a placeholder", async (_, last) => {
    const input = await sendToResponses(server, endingWith(last));
    expect(input).toEqual([
      { role: "user", content: [{ type: "input_text", text: "Hi" }] },
      { role: "assistant", content: "Hello! How can I help?" },
      { role: "user", content: [{ type: "input_text", text: PLACEHOLDER }] },
    ]);
  });

  it("a blank message in the middle is sent as a placeholder in its place", async () => {
    const input = await sendToResponses(server, BLANK_MIDDLE);
    expect(input[2]).toEqual({
      role: "user",
      content: [{ type: "input_text", text: PLACEHOLDER }],
    });
    expect(input.map((item) => item.role)).toEqual([
      "user",
      "assistant",
      "user",
      "assistant",
      "user",
    ]);
  });

  it.each(CAPTIONLESS)("%s is sent as the image alone", async (_, message) => {
    const input = await sendToResponses(server, [message]);
    expect(input).toEqual([
      {
        role: "user",
        content: [{ type: "input_image", image_url: `data:image/png;base64,${PNG}` }],
      },
    ]);
  });
});

// ------------------------------------------------------------------ Gemini

describe("Gemini", () => {
  it.each(BLANK_LAST)(
    "a blank last message (%s) stays the user's turn, as a placeholder",
    async (_, last) => {
      const contents = await sendToGemini(server, endingWith(last));
      expect(contents).toEqual([
        { role: "user", parts: [{ text: "Hi" }] },
        { role: "model", parts: [{ text: "Hello! How can I help?" }] },
        { role: "user", parts: [{ text: PLACEHOLDER }] },
      ]);
    },
  );

  it("a blank message in the middle keeps its turn: the model turns around it stay apart", async () => {
    const contents = await sendToGemini(server, BLANK_MIDDLE);
    expect(contents.map((c) => [c.role, (c.parts as Wire[]).map((p) => p.text)])).toEqual([
      ["user", ["Weather in Paris?"]],
      ["model", ["21 °C."]],
      ["user", [PLACEHOLDER]],
      ["model", ["Did you mean to write more?"]],
      ["user", ["Thanks"]],
    ]);
  });

  it.each(CAPTIONLESS)("%s is sent as the image alone", async (_, message) => {
    const contents = await sendToGemini(server, [message]);
    expect(contents).toEqual([
      { role: "user", parts: [{ inlineData: { mimeType: "image/png", data: PNG } }] },
    ]);
  });
});
