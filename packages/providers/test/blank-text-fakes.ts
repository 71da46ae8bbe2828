/**
 * The fake vendors of the blank-message tests (`blank-user-messages`,
 * `blank-assistant-messages`): each checks a request against the vendor's documented rules
 * about empty content, answers one that breaks a rule with the vendor's own 400, and returns
 * what the vendor received.
 */
import type { ModelMessage, ModelProvider } from "@beamclaw/core";
import { http } from "msw";
import type { SetupServer } from "msw/node";
import { expect } from "vitest";
import { createGoogleProvider, createOpenAIProvider } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  errorResponse,
  fixture,
  sseResponse,
} from "./support.js";

/** A JSON object as sent on the wire. */
export type Wire = Record<string, unknown>;

/** What every adapter sends for a message that says nothing where it must keep its place. */
export const PLACEHOLDER = "(empty message)";

export const OPENAI = "https://api.openai.com/v1";
const GEMINI =
  "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash\\:streamGenerateContent";

/** An assistant message of one text part. */
export function assistantText(text: string): ModelMessage {
  return { role: "assistant", content: [{ type: "text", text }] };
}

/** Streams `messages` to `provider`; the fake's answer must come back to the end. */
export async function expectAnswered(
  provider: ModelProvider,
  model: string,
  messages: ModelMessage[],
) {
  const events = await collect(provider.stream({ model, messages }));
  expect(events.at(-1)).toMatchObject({ type: "finish", reason: "stop" });
}

/**
 * OpenAI refuses an empty array where its schema asks for at least one item, as a message's
 * `content` parts do (HTTP 400, code `empty_array`: "Invalid 'messages[2].content': empty array.
 * Expected an array with minimum length 1, but got an empty array instead.", the message it
 * gives for `messages`, `tools` and `tool_calls` alike).
 */
export function emptyArrayRefusal(items: Wire[], field: string, key: "messages" | "input") {
  for (const [i, item] of items.entries()) {
    if (Array.isArray(item[field]) && (item[field] as unknown[]).length === 0) {
      return errorResponse(400, {
        error: {
          message: `Invalid '${key}[${i}].${field}': empty array. Expected an array with minimum length 1, but got an empty array instead.`,
          type: "invalid_request_error",
          param: `${key}[${i}].${field}`,
          code: "empty_array",
        },
      });
    }
  }
  return undefined;
}

/** Sends `messages` to a fake Responses API; returns the `input` it received. */
export async function sendToResponses(
  server: SetupServer,
  messages: ModelMessage[],
): Promise<Wire[]> {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(`${OPENAI}/responses`, async ({ request }) => {
      const captured = await capture(request);
      seen.push(captured);
      const input = captured.body.input as Wire[];
      return (
        emptyArrayRefusal(input, "content", "input") ??
        sseResponse(fixture("openai-responses-text.sse.txt"))
      );
    }),
  );
  await expectAnswered(createOpenAIProvider({ apiKey: "sk-test" }), "gpt-4.1-mini", messages);
  return seen[0]!.body.input as Wire[];
}

/**
 * Gemini's checks (HTTP 400, `INVALID_ARGUMENT`): a content has at least one part
 * ("contents.parts must not be empty", vercel/ai#3775); a text part holds text (an empty one
 * is a part without data: "required oneof field 'data' must have one initialized field",
 * router-for-me/CLIProxyAPI#1292); and a multi-turn request ends with the user's turn ("Please
 * ensure that multiturn requests ends with a user role or a function response",
 * songquanpeng/one-api#836, crewAIInc/crewAI#6973).
 */
function geminiRefusal(body: Wire) {
  const contents = body.contents as Array<{ role: string; parts: Wire[] }>;
  const refuse = (message: string) =>
    errorResponse(400, { error: { code: 400, message, status: "INVALID_ARGUMENT" } });
  for (const [i, content] of contents.entries()) {
    if (content.parts.length === 0) {
      return refuse(
        `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.\n`,
      );
    }
    for (const [j, part] of content.parts.entries()) {
      if (part.text === "") {
        return refuse(
          `* GenerateContentRequest.contents[${i}].parts[${j}].data: required oneof field 'data' must have one initialized field\n`,
        );
      }
    }
  }
  if (contents.length > 1 && contents.at(-1)?.role !== "user") {
    return refuse(
      "Please ensure that multiturn requests ends with a user role or a function response.",
    );
  }
  return undefined;
}

/** Sends `messages` to a fake Gemini API; returns the `contents` it received. */
export async function sendToGemini(server: SetupServer, messages: ModelMessage[]): Promise<Wire[]> {
  const seen: CapturedRequest[] = [];
  server.use(
    http.post(GEMINI, async ({ request }) => {
      const captured = await capture(request);
      seen.push(captured);
      return geminiRefusal(captured.body) ?? sseResponse(fixture("google-text.sse.txt"));
    }),
  );
  const gemini = createGoogleProvider({ apiKey: "AIzaSyTest-0123456789abcdefghijklmnopq" });
  await expectAnswered(gemini, "gemini-2.5-flash", messages);
  return seen[0]!.body.contents as Wire[];
}
