/**
 * `POST /v1/chat/completions` (and `/v1/responses` where they share the turn) against what a
 * demanding OpenAI client sends, over a real socket: a kept session's request whose last
 * message is not the user's, a tool message without the id of the call it answers, a
 * `tool_choice` object of a type other than `function` and `logprobs` asked for are each a 400
 * naming the field, before the model is called, instead of an answer to something the client
 * did not ask; and `usage` carries the cached and reasoning token counts OpenAI reports.
 */
import { afterEach, describe, expect, it } from "vitest";
import { post as postResponses, startResponses } from "./responses-support.js";
import {
  AUTH,
  httpCall as call,
  closeClients,
  sseData,
  startStack,
  stopStacks,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const LOOKUP = { type: "function", function: { name: "lookup", parameters: { type: "object" } } };
const CALL = { id: "call_1", type: "function", function: { name: "lookup", arguments: "{}" } };

function complete(port: number, body: unknown, headers: Record<string, string> = {}) {
  return call(port, "/v1/chat/completions", {
    method: "POST",
    headers: { ...AUTH, ...headers },
    body,
  });
}

describe("a kept session's request whose last message is not a user message", () => {
  it("is a 400 naming the message, on both endpoints: the earlier user message is never asked again", async () => {
    const stack = await startStack({ responses: [{ text: "first answer" }, { text: "again" }] });
    const first = await complete(stack.port, {
      model: "beamclaw",
      user: "ada",
      messages: [{ role: "user", content: "what is x?" }],
    });
    expect(first.status).toBe(200);
    const conversation = [
      { role: "user", content: "what is x?" },
      { role: "assistant", content: "first answer" },
    ];
    const cases: Array<[Record<string, unknown>, Record<string, string>, string]> = [
      [{ user: "ada", messages: conversation }, {}, "messages[1].role"],
      [
        { messages: conversation },
        { "x-beamclaw-session-key": "agent:main:kept" },
        "messages[1].role",
      ],
      [
        {
          user: "ada",
          messages: [
            { role: "user", content: "what is x?" },
            { role: "assistant", content: null, tool_calls: [CALL] },
            { role: "tool", tool_call_id: "call_1", content: "x is 4" },
          ],
        },
        {},
        "messages[2].role",
      ],
    ];
    for (const [body, headers, param] of cases) {
      const reply = await complete(stack.port, { model: "beamclaw", ...body }, headers);
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({
        type: "invalid_request_error",
        code: "invalid_messages",
        param,
      });
    }
    // Only the first request reached the model: "what is x?" was never asked again.
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("a stateless request ending with an assistant message still gets the whole conversation", async () => {
    const stack = await startStack({ responses: [{ text: "more" }] });
    const reply = await complete(stack.port, {
      model: "beamclaw",
      messages: [
        { role: "user", content: "count to three" },
        { role: "assistant", content: "one, two" },
      ],
    });
    expect(reply.status).toBe(200);
    expect(JSON.stringify(stack.provider.requests[0]!.messages)).toContain("Assistant: one, two");
  });

  it("/v1/responses: a kept session's input ending with an assistant message is a 400 naming input", async () => {
    const stack = await startResponses([{ text: "again" }]);
    const reply = await postResponses(stack, {
      model: "beamclaw",
      user: "ada",
      input: [
        { type: "message", role: "user", content: "what is x?" },
        { type: "message", role: "assistant", content: "x is 4" },
      ],
    });
    expect(reply.status).toBe(400);
    expect(reply.json.error).toMatchObject({ code: "invalid_messages", param: "input" });
    expect(stack.provider.requests).toHaveLength(0);
  });
});

describe("a tool message without tool_call_id", () => {
  it("is a 400 missing_required_parameter naming it, before the model is called", async () => {
    const stack = await startStack({ responses: [{ text: "unused" }] });
    for (const toolCallId of [undefined, ""]) {
      const reply = await complete(stack.port, {
        model: "beamclaw",
        tools: [LOOKUP],
        messages: [
          { role: "user", content: "what is x?" },
          { role: "assistant", content: null, tool_calls: [CALL] },
          {
            role: "tool",
            content: "x is 4",
            ...(toolCallId === undefined ? {} : { tool_call_id: toolCallId }),
          },
        ],
      });
      expect(reply.status).toBe(400);
      expect(reply.json.error).toMatchObject({
        type: "invalid_request_error",
        code: "missing_required_parameter",
        param: "messages[2].tool_call_id",
      });
    }
    expect(stack.provider.requests).toHaveLength(0);
  });
});

describe("a tool_choice object of a type other than function", () => {
  it("is a 400 invalid_type naming tool_choice; a function one is taken", async () => {
    const stack = await startStack({ responses: [{ text: "ok" }] });
    const bad = await complete(stack.port, {
      model: "beamclaw",
      tools: [LOOKUP],
      tool_choice: { type: "web_search", function: { name: "lookup" } },
      messages: [{ role: "user", content: "hi" }],
    });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: "invalid_type", param: "tool_choice" });
    expect(stack.provider.requests).toHaveLength(0);
    const good = await complete(stack.port, {
      model: "beamclaw",
      tools: [LOOKUP],
      tool_choice: { type: "function", function: { name: "lookup" } },
      messages: [{ role: "user", content: "hi" }],
    });
    expect(good.status).toBe(200);
    expect(stack.provider.requests[0]!.toolChoice).toEqual({ toolName: "lookup" });
  });
});

describe("usage details", () => {
  it("reports cached prompt tokens and reasoning tokens as OpenAI does, streamed or not, session turn or client tools", async () => {
    const usage = { inputTokens: 10, outputTokens: 6, cacheReadTokens: 4, reasoningTokens: 2 };
    const stack = await startStack({
      responses: [
        { text: "a", usage },
        { text: "b", usage },
        { text: "c", usage },
      ],
    });
    const expected = {
      prompt_tokens: 10,
      completion_tokens: 6,
      total_tokens: 16,
      prompt_tokens_details: { cached_tokens: 4 },
      completion_tokens_details: { reasoning_tokens: 2 },
    };
    const messages = [{ role: "user", content: "hi" }];
    const plain = await complete(stack.port, { model: "beamclaw", messages });
    expect(plain.json.usage).toEqual(expected);
    const tools = await complete(stack.port, { model: "beamclaw", tools: [LOOKUP], messages });
    expect(tools.json.usage).toEqual(expected);
    const streamed = await complete(stack.port, {
      model: "beamclaw",
      stream: true,
      stream_options: { include_usage: true },
      messages,
    });
    expect(sseData(streamed.text).at(-2)).toMatchObject({ choices: [], usage: expected });
  });
});

describe("log probabilities", () => {
  it("asked for (logprobs: true, top_logprobs) are a 400 naming the field, not an answer with logprobs: null", async () => {
    const stack = await startStack({ responses: [{ text: "fine" }] });
    const messages = [{ role: "user", content: "hi" }];
    for (const [extra, param, code] of [
      [{ logprobs: true }, "logprobs", "unsupported_parameter"],
      [{ logprobs: true, top_logprobs: 3 }, "logprobs", "unsupported_parameter"],
      [{ top_logprobs: 2 }, "top_logprobs", "unsupported_parameter"],
      [{ logprobs: "yes" }, "logprobs", "invalid_type"],
    ] as Array<[Record<string, unknown>, string, string]>) {
      const reply = await complete(stack.port, { model: "beamclaw", messages, ...extra });
      expect(reply.status, param).toBe(400);
      expect(reply.json.error).toMatchObject({ type: "invalid_request_error", code, param });
    }
    expect(stack.provider.requests).toHaveLength(0);
    // Not asked for: answered as before.
    const ok = await complete(stack.port, {
      model: "beamclaw",
      messages,
      logprobs: false,
      top_logprobs: 0,
    });
    expect(ok.status).toBe(200);
    expect(ok.json.choices[0].logprobs).toBeNull();
  });
});
