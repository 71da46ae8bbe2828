/**
 * A tool call the answer's end cut off: the output token limit (Anthropic's `max_tokens`,
 * Chat Completions' `finish_reason: "length"`, the Responses API's `response.incomplete`)
 * or a content filter stops the model while it streams a call's arguments. The vendors still
 * close the call (Anthropic sends its `content_block_stop`, Chat Completions its finish chunk),
 * with JSON cut short. Such a call must not come out as a `tool-call` (the agent loop would run
 * it, with a string for arguments); the finish reason says the answer was cut, and the calls
 * that were whole before it still come out.
 */
import type { ModelRequest, ModelStreamEvent } from "@beamclaw/core";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import {
  createAnthropicProvider,
  createOpenAICompatibleProvider,
  createOpenAIProvider,
} from "../src/index.js";
import { collect, expectWellFormed, mswFakes, sseResponse, userText } from "./support.js";

const { server } = mswFakes();
const request: ModelRequest = { model: "m", messages: [userText("Weather in Paris and Rome?")] };

const toolCalls = (events: ModelStreamEvent[]) => events.filter((e) => e.type === "tool-call");

/** Named SSE events (`event: <type>` and its JSON `data:`), as Anthropic and Responses send. */
function named(events: Array<Record<string, unknown>>): string {
  return events.map((e) => `event: ${String(e.type)}\ndata: ${JSON.stringify(e)}\n\n`).join("");
}

describe("Anthropic: a tool_use block cut off by max_tokens", () => {
  const URL = "https://api.anthropic.com/v1/messages";
  const provider = () => createAnthropicProvider({ apiKey: "sk-ant-test" });

  /** One whole `get_weather` call, then one whose `input_json_delta`s end at `lastFragment`. */
  function stream(lastFragments: string[], stopReason: string): string {
    const toolUse = (index: number, id: string) => ({
      type: "content_block_start",
      index,
      content_block: { type: "tool_use", id, name: "get_weather", input: {} },
    });
    const json = (index: number, partial_json: string) => ({
      type: "content_block_delta",
      index,
      delta: { type: "input_json_delta", partial_json },
    });
    return named([
      {
        type: "message_start",
        message: {
          id: "msg_01",
          type: "message",
          role: "assistant",
          model: "claude-sonnet-4-5-20250929",
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 472, output_tokens: 2 },
        },
      },
      toolUse(0, "toolu_01"),
      json(0, ""),
      json(0, '{"city": "Paris"}'),
      { type: "content_block_stop", index: 0 },
      toolUse(1, "toolu_02"),
      json(1, ""),
      ...lastFragments.map((fragment) => json(1, fragment)),
      { type: "content_block_stop", index: 1 },
      {
        type: "message_delta",
        delta: { stop_reason: stopReason, stop_sequence: null },
        usage: { output_tokens: 40 },
      },
      { type: "message_stop" },
    ]);
  }

  it("drops the cut-off call, keeps the whole one before it, and finishes length", async () => {
    server.use(http.post(URL, () => sseResponse(stream(['{"city": "Ro'], "max_tokens"))));
    const events = await collect(provider().stream(request));
    expectWellFormed(events);
    expect(toolCalls(events)).toEqual([
      {
        type: "tool-call",
        toolCallId: "toolu_01",
        toolName: "get_weather",
        input: { city: "Paris" },
      },
    ]);
    // The cut-off call was seen beginning, so a UI can close it.
    expect(events).toContainEqual({
      type: "tool-call-start",
      toolCallId: "toolu_02",
      toolName: "get_weather",
    });
    expect(events.at(-1)).toEqual({ type: "finish", reason: "length", rawReason: "max_tokens" });
  });

  it("drops a call cut off before its first argument token (no input_json_delta text)", async () => {
    server.use(http.post(URL, () => sseResponse(stream([], "max_tokens"))));
    const events = await collect(provider().stream(request));
    expectWellFormed(events);
    expect(toolCalls(events).map((e) => e.toolCallId)).toEqual(["toolu_01"]);
    expect(events.at(-1)).toEqual({ type: "finish", reason: "length", rawReason: "max_tokens" });
  });

  it("still yields a call without arguments, and invalid JSON as text, when the turn ended at tool_use", async () => {
    server.use(http.post(URL, () => sseResponse(stream(["{oops"], "tool_use"))));
    const events = await collect(provider().stream(request));
    expectWellFormed(events);
    expect(toolCalls(events)).toEqual([
      {
        type: "tool-call",
        toolCallId: "toolu_01",
        toolName: "get_weather",
        input: { city: "Paris" },
      },
      { type: "tool-call", toolCallId: "toolu_02", toolName: "get_weather", input: "{oops" },
    ]);
    server.use(http.post(URL, () => sseResponse(stream([], "tool_use"))));
    const noArguments = await collect(provider().stream(request));
    expectWellFormed(noArguments);
    expect(toolCalls(noArguments).map((e) => [e.toolCallId, e.input])).toEqual([
      ["toolu_01", { city: "Paris" }],
      ["toolu_02", {}],
    ]);
    expect(noArguments.at(-1)).toEqual({
      type: "finish",
      reason: "tool-calls",
      rawReason: "tool_use",
    });
  });
});

describe('Chat Completions: finish_reason "length" mid tool-call arguments', () => {
  const URL = "https://api.openai.com/v1/chat/completions";
  const provider = () =>
    createOpenAICompatibleProvider({
      id: "openai",
      baseUrl: "https://api.openai.com/v1",
      apiKey: "sk-test",
    });

  function chunk(delta: Record<string, unknown>, finish: string | null = null): string {
    return `data: ${JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion.chunk",
      created: 1741569952,
      model: "gpt-4.1-mini-2025-04-14",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      usage: null,
    })}\n\n`;
  }
  const call = (index: number, fields: Record<string, unknown>) => ({
    tool_calls: [{ index, ...fields }],
  });

  function stream(finish: string): string {
    return (
      chunk({
        role: "assistant",
        content: null,
        ...call(0, {
          id: "call_1",
          type: "function",
          function: { name: "get_weather", arguments: "" },
        }),
      }) +
      chunk(call(0, { function: { arguments: '{"city": ' } })) +
      chunk(call(0, { function: { arguments: '"Paris"}' } })) +
      chunk(
        call(1, {
          id: "call_2",
          type: "function",
          function: { name: "get_weather", arguments: "" },
        }),
      ) +
      chunk(call(1, { function: { arguments: '{"city": "Ro' } })) +
      chunk({}, finish) +
      `data: ${JSON.stringify({
        id: "chatcmpl-1",
        object: "chat.completion.chunk",
        created: 1741569952,
        model: "gpt-4.1-mini-2025-04-14",
        choices: [],
        usage: { prompt_tokens: 84, completion_tokens: 20, total_tokens: 104 },
      })}\n\n` +
      "data: [DONE]\n\n"
    );
  }

  it.each([
    ["length", "length"],
    ["content_filter", "content-filter"],
  ])("drops the cut-off call at finish_reason %s and finishes %s", async (raw, reason) => {
    server.use(http.post(URL, () => sseResponse(stream(raw))));
    const events = await collect(provider().stream(request));
    expectWellFormed(events);
    expect(toolCalls(events)).toEqual([
      {
        type: "tool-call",
        toolCallId: "call_1",
        toolName: "get_weather",
        input: { city: "Paris" },
      },
    ]);
    expect(events.at(-1)).toEqual({ type: "finish", reason, rawReason: raw });
  });
});

describe("Responses API: response.incomplete mid function-call arguments", () => {
  const URL = "https://api.openai.com/v1/responses";
  const provider = () => createOpenAIProvider({ apiKey: "sk-test" });
  const response = (status: string, reason: string | null) => ({
    id: "resp_1",
    object: "response",
    status,
    model: "gpt-4.1-2025-04-14",
    output: [],
    incomplete_details: reason === null ? null : { reason },
    usage:
      status === "in_progress"
        ? null
        : { input_tokens: 20, output_tokens: 16, output_tokens_details: { reasoning_tokens: 0 } },
  });
  const item = (id: string, callId: string, status: string, args: string) => ({
    id,
    type: "function_call",
    status,
    arguments: args,
    call_id: callId,
    name: "get_weather",
  });

  /** A whole call `fc_1`, then `fc_2` cut at `'{"city": "Ro'`; `closed` adds its `.done` events. */
  function stream(closed: boolean, reason: string): string {
    const cut = '{"city": "Ro';
    return named([
      { type: "response.created", response: response("in_progress", null) },
      {
        type: "response.output_item.added",
        output_index: 0,
        item: item("fc_1", "call_1", "in_progress", ""),
      },
      {
        type: "response.function_call_arguments.delta",
        item_id: "fc_1",
        output_index: 0,
        delta: '{"city": "Paris"}',
      },
      {
        type: "response.function_call_arguments.done",
        item_id: "fc_1",
        output_index: 0,
        arguments: '{"city": "Paris"}',
      },
      {
        type: "response.output_item.done",
        output_index: 0,
        item: item("fc_1", "call_1", "completed", '{"city": "Paris"}'),
      },
      {
        type: "response.output_item.added",
        output_index: 1,
        item: item("fc_2", "call_2", "in_progress", ""),
      },
      {
        type: "response.function_call_arguments.delta",
        item_id: "fc_2",
        output_index: 1,
        delta: cut,
      },
      ...(closed
        ? [
            {
              type: "response.function_call_arguments.done",
              item_id: "fc_2",
              output_index: 1,
              arguments: cut,
            },
            {
              type: "response.output_item.done",
              output_index: 1,
              item: item("fc_2", "call_2", "incomplete", cut),
            },
          ]
        : []),
      { type: "response.incomplete", response: response("incomplete", reason) },
    ]);
  }

  it.each([
    ["max_output_tokens", "length", false],
    ["max_output_tokens", "length", true],
    ["content_filter", "content-filter", false],
  ])(
    "at %s drops the cut-off call (finish %s; its .done events sent: %s)",
    async (raw, reason, closed) => {
      server.use(http.post(URL, () => sseResponse(stream(closed, raw))));
      const events = await collect(provider().stream(request));
      expectWellFormed(events);
      expect(toolCalls(events)).toEqual([
        {
          type: "tool-call",
          toolCallId: "call_1",
          toolName: "get_weather",
          input: { city: "Paris" },
        },
      ]);
      expect(events.at(-1)).toEqual({ type: "finish", reason, rawReason: raw });
    },
  );
});
