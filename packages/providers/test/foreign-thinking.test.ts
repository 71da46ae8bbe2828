/**
 * Reasoning another vendor made never reaches Anthropic, which verifies every thinking block
 * it is sent back and refuses the request (400 "Invalid `signature` in `thinking` block") for
 * one it did not sign. OpenAI's Responses reasoning comes back as `thinking-end` with the
 * reasoning item id (`rs_...`) as its signature and no `format`, and a conversation carries it
 * to Anthropic after a failover.
 */
import type { ModelMessage, ModelStreamEvent } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAnthropicProvider, createOpenAIProvider } from "../src/index.js";
import {
  type CapturedRequest,
  capture,
  collect,
  fixture,
  sseResponse,
  thinkingOf,
  userText,
} from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const OPENAI_RESPONSES = "https://api.openai.com/v1/responses";
const ANTHROPIC = "https://api.anthropic.com/v1/messages";

/** The assistant turn the agent loop keeps from a stream's events. */
function assistantTurn(events: ModelStreamEvent[]): ModelMessage {
  const content: Extract<ModelMessage, { role: "assistant" }>["content"] = [];
  const end = events.find((e) => e.type === "thinking-end");
  if (end?.type === "thinking-end") {
    content.push({
      type: "thinking",
      text: thinkingOf(events),
      ...(end.signature === undefined ? {} : { signature: end.signature }),
      ...(end.redacted === undefined ? {} : { redacted: end.redacted }),
      ...(end.format === undefined ? {} : { format: end.format }),
    });
  }
  const text = events.map((e) => (e.type === "text-delta" ? e.text : "")).join("");
  content.push({ type: "text", text });
  return { role: "assistant", content };
}

describe("OpenAI reasoning in a conversation sent to Anthropic", () => {
  it("is left out, signed (rs_ id) or encrypted, while Anthropic's own thinking is kept", async () => {
    server.use(
      http.post(OPENAI_RESPONSES, () => sseResponse(fixture("openai-responses-reasoning.sse.txt"))),
    );
    const openai = createOpenAIProvider({ apiKey: "sk-test" });
    const events = await collect(
      openai.stream({ model: "o4-mini", thinking: "medium", messages: [userText("2 + 2?")] }),
    );
    const fromOpenAI = assistantTurn(events);
    // What the Responses adapter gives: the item id as signature, its encrypted content.
    expect(fromOpenAI.content[0]).toMatchObject({
      type: "thinking",
      signature: expect.stringMatching(/^rs_/),
      redacted: "gAAAAABodsoIeG3A5x0dQ-ENCRYPTED-REASONING",
    });

    const seen: CapturedRequest[] = [];
    server.use(
      http.post(ANTHROPIC, async ({ request }) => {
        seen.push(await capture(request));
        return sseResponse(fixture("anthropic-text.sse.txt"));
      }),
    );
    const anthropic = createAnthropicProvider({ apiKey: "sk-ant-test", promptCache: false });
    await collect(
      anthropic.stream({
        model: "claude-sonnet-4-5",
        messages: [
          userText("2 + 2?"),
          fromOpenAI,
          userText("And 3 + 3?"),
          {
            role: "assistant",
            content: [
              // Only the id, without encrypted content: still OpenAI's.
              { type: "thinking", text: "Adding.", signature: "rs_68a1f0c2d3e48190" },
              { type: "thinking", text: "Adding three.", signature: "EqQBCgIYAhIM1gbcDa9GJw==" },
              { type: "text", text: "6." },
            ],
          },
          userText("Thanks"),
        ],
      }),
    );
    const messages = seen[0]?.body.messages as Array<{ role: string; content: unknown[] }>;
    expect(messages[1]).toEqual({
      role: "assistant",
      content: [{ type: "text", text: "2 + 2 = 4." }],
    });
    expect(messages[3]).toEqual({
      role: "assistant",
      content: [
        { type: "thinking", thinking: "Adding three.", signature: "EqQBCgIYAhIM1gbcDa9GJw==" },
        { type: "text", text: "6." },
      ],
    });
  });
});
