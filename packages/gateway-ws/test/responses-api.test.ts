/**
 * `POST /v1/responses` (OpenResponses / OpenAI's Responses API) over real sockets against a
 * real gateway with a scripted provider: the `response` object, its SSE events in order,
 * item input, `instructions`, sessions by `user`, client function tools both ways,
 * `text.format`, and errors in OpenAI's shape for what the endpoint refuses.
 */
import { ProviderError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { OSLO_CALL_SENT, post, startResponses, WEATHER_TOOL } from "./responses-support.js";
import {
  AUTH,
  httpCall as call,
  closeClients,
  HANGING_ANSWER,
  leaveMidStream,
  runEnds,
  sseEvents,
  startStack,
  stopStacks,
  waitFor,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

/** The text of a provider request's message (its first part). */
function firstText(message: { content: unknown[] } | undefined): string | undefined {
  return (message?.content[0] as { text?: string } | undefined)?.text;
}

describe("POST /v1/responses", () => {
  it("answers a non-streaming request with a completed response: an output_text message, usage and the metadata echoed", async () => {
    const stack = await startResponses([
      { text: ["Hel", "lo"], usage: { inputTokens: 7, outputTokens: 3 } },
    ]);
    const reply = await post(stack, {
      model: "beamclaw",
      input: "hello",
      metadata: { ticket: "T-1" },
    });
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({
      id: expect.stringMatching(/^resp_/),
      object: "response",
      created_at: expect.any(Number),
      status: "completed",
      error: null,
      model: "beamclaw",
      metadata: { ticket: "T-1" },
      usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 },
    });
    expect(reply.json.output).toEqual([
      {
        id: expect.stringMatching(/^msg_/),
        type: "message",
        status: "completed",
        role: "assistant",
        content: [{ type: "output_text", text: "Hello", annotations: [] }],
      },
    ]);
    expect(firstText(stack.provider.requests[0]!.messages[0])).toBe("hello");
  });

  it("streams response.output_text.delta events between output_item.added and output_item.done, numbered in order", async () => {
    const stack = await startResponses([
      { text: ["Hel", "lo"], usage: { inputTokens: 2, outputTokens: 2 } },
    ]);
    const reply = await post(stack, { model: "beamclaw/main", input: "hello", stream: true });
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^text\/event-stream/);
    const events = sseEvents(reply.text);
    expect(events.map((e) => e.event)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    // Each `event:` line names its data's type; the sequence numbers count from 0 without gaps.
    expect(events.every((e) => e.data.type === e.event)).toBe(true);
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    const byType = (type: string) => events.filter((e) => e.event === type).map((e) => e.data);
    expect(byType("response.created")[0].response).toMatchObject({
      status: "in_progress",
      output: [],
    });
    const added = byType("response.output_item.added")[0];
    expect(added).toMatchObject({ output_index: 0, item: { type: "message", role: "assistant" } });
    const itemId = added.item.id;
    expect(byType("response.output_text.delta").map((d) => [d.item_id, d.delta])).toEqual([
      [itemId, "Hel"],
      [itemId, "lo"],
    ]);
    expect(byType("response.output_text.done")[0]).toMatchObject({
      item_id: itemId,
      text: "Hello",
    });
    const completed = byType("response.completed")[0].response;
    expect(completed).toMatchObject({
      status: "completed",
      usage: { input_tokens: 2, output_tokens: 2, total_tokens: 4 },
    });
    expect(completed.output).toEqual([byType("response.output_item.done")[0].item]);
    expect(completed.output[0].content[0].text).toBe("Hello");
  });

  it("gives a stateless request its item input as the whole conversation, history included", async () => {
    const stack = await startResponses([{ text: "6" }]);
    const reply = await post(stack, {
      model: "beamclaw",
      input: [
        { type: "message", role: "developer", content: "Be brief." },
        { role: "user", content: [{ type: "input_text", text: "What is 2+2?" }] },
        {
          type: "message",
          role: "assistant",
          content: [{ type: "output_text", text: "4", annotations: [] }],
        },
        { role: "user", content: "And 3+3?" },
      ],
    });
    expect(reply.status).toBe(200);
    expect(reply.json.output[0].content[0].text).toBe("6");
    expect(firstText(stack.provider.requests[0]!.messages[0])).toBe(
      "System: Be brief.\n\nUser: What is 2+2?\n\nAssistant: 4\n\nUser: And 3+3?",
    );
  });

  it("passes an input_image (data URL or https URL) to the model with the text", async () => {
    const stack = await startResponses([{ text: "a cat" }]);
    const reply = await post(stack, {
      model: "beamclaw",
      input: [
        {
          role: "user",
          content: [
            { type: "input_text", text: "What is this?" },
            { type: "input_image", image_url: "data:image/png;base64,iVBORw0KGgo=" },
            { type: "input_image", image_url: "https://example.com/cat.jpg" },
          ],
        },
      ],
    });
    expect(reply.status).toBe(200);
    expect(stack.provider.requests[0]!.messages[0]!.content).toEqual([
      { type: "text", text: "What is this?" },
      { type: "image", mediaType: "image/png", data: "iVBORw0KGgo=" },
      { type: "image", mediaType: "image/*", url: "https://example.com/cat.jpg" },
    ]);
  });

  it("adds instructions to this turn's prompt: before the conversation, and in the system prompt of a client-tools call", async () => {
    const stack = await startResponses([{ text: "ok" }, { text: "ok" }]);
    await post(stack, { model: "beamclaw", instructions: "Answer in French.", input: "Hi" });
    expect(firstText(stack.provider.requests[0]!.messages[0])).toBe(
      "System: Answer in French.\n\nUser: Hi",
    );
    await post(stack, {
      model: "beamclaw",
      instructions: "Answer in French.",
      input: "Hi",
      tools: [WEATHER_TOOL],
    });
    expect(stack.provider.requests[1]!.system).toContain("Answer in French.");
    expect(firstText(stack.provider.requests[1]!.messages[0])).toBe("Hi");
  });

  it("keeps one session per `user` across requests (instructions before the new message), and echoes the user", async () => {
    const stack = await startResponses([{ text: "one" }, { text: "two" }]);
    const first = await post(stack, { model: "beamclaw", input: "first", user: "Alice" });
    expect(first.json.user).toBe("Alice");
    await post(stack, {
      model: "beamclaw",
      input: "second",
      user: "Alice",
      instructions: "Be brief.",
    });
    const texts = stack.provider.requests[1]!.messages.map((m) => firstText(m));
    // A kept session is sent only the new message; instructions come as a line before it.
    expect(texts).toEqual(["first", "one", "System: Be brief.\n\nUser: second"]);
    // "Alice" is not in a key's form: her key carries a hash of her id ("alice" is another user).
    const keys = (await stack.store.sessions.list({ limit: 10 })).items.map((r) => r.key);
    expect(keys).toEqual([expect.stringMatching(/^agent:main:responses-user:alice~[0-9a-f]{16}$/)]);
  });

  it("names the session with the x-beamclaw-session-key header", async () => {
    const stack = await startResponses([{ text: "one" }]);
    await post(
      stack,
      { model: "beamclaw", input: "hi" },
      {
        ...AUTH,
        "x-beamclaw-session-key": "agent:main:from-responses",
      },
    );
    expect(await stack.store.sessions.get("agent:main:from-responses")).toBeDefined();
  });

  it("returns function_call items for client tools, and feeds function_call_output items back to the model", async () => {
    const stack = await startResponses([
      { toolCalls: [{ toolCallId: "call_1", toolName: "get_weather", input: { city: "Oslo" } }] },
      { text: "It is 4 °C in Oslo." },
    ]);
    const first = await post(stack, {
      model: "beamclaw",
      input: "Weather in Oslo?",
      tools: [WEATHER_TOOL],
      tool_choice: "auto",
    });
    expect(first.status).toBe(200);
    expect(first.json.status).toBe("completed");
    expect(first.json.output).toEqual([
      {
        id: expect.stringMatching(/^fc_/),
        type: "function_call",
        status: "completed",
        call_id: "call_1",
        name: "get_weather",
        arguments: '{"city":"Oslo"}',
      },
    ]);
    expect(stack.provider.requests[0]!.tools).toEqual([
      {
        name: "get_weather",
        description: "Weather in a city",
        inputSchema: WEATHER_TOOL.parameters,
      },
    ]);
    const { id: _id, status: _status, ...call } = first.json.output[0];
    const second = await post(stack, {
      model: "beamclaw",
      tools: [WEATHER_TOOL],
      input: [
        { role: "user", content: "Weather in Oslo?" },
        call,
        { type: "function_call_output", call_id: "call_1", output: '{"celsius":4}' },
      ],
    });
    expect(second.json.output[0].content[0].text).toBe("It is 4 °C in Oslo.");
    expect(stack.provider.requests[1]!.messages).toEqual(OSLO_CALL_SENT);
  });

  it("streams a function call as output_item.added, function_call_arguments.delta and .done, output_item.done", async () => {
    const stack = await startResponses([
      { toolCalls: [{ toolCallId: "call_7", toolName: "get_weather", input: { city: "Rome" } }] },
    ]);
    const reply = await post(stack, {
      model: "beamclaw",
      input: "Weather in Rome?",
      tools: [WEATHER_TOOL],
      stream: true,
    });
    const events = sseEvents(reply.text);
    expect(events.map((e) => e.event)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[2]!.data.item).toMatchObject({
      type: "function_call",
      call_id: "call_7",
      name: "get_weather",
      status: "in_progress",
    });
    expect(events[4]!.data.arguments).toBe('{"city":"Rome"}');
    expect(events[6]!.data.response.output).toEqual([events[5]!.data.item]);
    expect(events[5]!.data.item).toMatchObject({
      status: "completed",
      arguments: '{"city":"Rome"}',
    });
  });

  it("with text.format json_schema, asks the provider for the schema and answers the validated JSON", async () => {
    const schema = {
      type: "object",
      properties: { city: { type: "string" }, celsius: { type: "number" } },
      required: ["city", "celsius"],
      additionalProperties: false,
    };
    const stack = await startResponses([{ text: '```json\n{"city":"Oslo","celsius":4}\n```' }]);
    const reply = await post(stack, {
      model: "beamclaw",
      input: "Oslo?",
      text: { format: { type: "json_schema", name: "weather", schema, strict: true } },
    });
    expect(reply.status).toBe(200);
    expect(reply.json.output[0].content[0].text).toBe('{"city":"Oslo","celsius":4}');
    expect(reply.json.text.format).toMatchObject({ type: "json_schema", name: "weather" });
    expect(stack.provider.requests[0]!.responseFormat).toEqual({
      type: "json-schema",
      name: "weather",
      schema,
      strict: true,
    });
  });

  it("marks an answer cut at max_output_tokens incomplete, streamed or not", async () => {
    const stack = await startResponses([
      { text: "It is", finishReason: "length" },
      { text: "It is", finishReason: "length" },
    ]);
    const body = {
      model: "beamclaw",
      input: "Weather?",
      tools: [WEATHER_TOOL],
      max_output_tokens: 2,
      temperature: 0.2,
    };
    const whole = await post(stack, body);
    expect(whole.json).toMatchObject({
      status: "incomplete",
      incomplete_details: { reason: "max_output_tokens" },
      max_output_tokens: 2,
    });
    expect(stack.provider.requests[0]).toMatchObject({ maxOutputTokens: 2, temperature: 0.2 });
    const streamed = sseEvents((await post(stack, { ...body, stream: true })).text);
    expect(streamed.at(-1)!.event).toBe("response.incomplete");
    expect(streamed.at(-1)!.data.response).toMatchObject({
      status: "incomplete",
      incomplete_details: { reason: "max_output_tokens" },
    });
  });

  it("marks a session's answer cut at the token limit incomplete too (no client tools)", async () => {
    const stack = await startResponses([{ text: "It is", finishReason: "length" }]);
    const reply = await post(stack, { model: "beamclaw", input: "Weather?", user: "u-cut" });
    expect(reply.json).toMatchObject({
      status: "incomplete",
      incomplete_details: { reason: "max_output_tokens" },
    });
    expect(reply.json.output[0].content[0].text).toBe("It is");
  });

  it("ends a stream whose provider fails mid-answer with response.failed carrying the error", async () => {
    const stack = await startResponses([
      {
        text: ["partial"],
        error: new ProviderError("connect ECONNRESET", { kind: "network", provider: "scripted" }),
      },
    ]);
    const reply = await post(stack, { model: "beamclaw", input: "go", stream: true });
    expect(reply.status).toBe(200);
    const events = sseEvents(reply.text);
    expect(events.map((e) => e.event)).toContain("response.output_text.delta");
    expect(events.map((e) => e.event)).not.toContain("response.completed");
    const last = events.at(-1)!;
    expect(last.event).toBe("response.failed");
    expect(last.data.sequence_number).toBe(events.length - 1);
    expect(last.data.response).toMatchObject({
      status: "failed",
      error: { code: expect.any(String), message: expect.stringContaining("ECONNRESET") },
    });
  });

  it("answers a failed non-streaming run with a 502 in OpenAI's error shape", async () => {
    const stack = await startResponses([
      {
        error: new ProviderError("connect ECONNREFUSED", { kind: "network", provider: "scripted" }),
      },
    ]);
    const reply = await post(stack, { model: "beamclaw", input: "go" });
    expect(reply.status).toBe(502);
    expect(reply.json.error).toMatchObject({
      type: "server_error",
      message: expect.stringContaining("ECONNREFUSED"),
    });
  });

  it("aborts the run of a streaming client that goes away", async () => {
    const stack = await startResponses([HANGING_ANSWER]);
    const ends = runEnds(stack);
    // Gone once the model's first words have arrived.
    const body = { model: "beamclaw", stream: true, user: "leaver", input: "go" };
    await leaveMidStream(stack.port, "/v1/responses", body, "response.output_text.delta");
    const end = await waitFor("the run to end", () => ends[0]);
    expect(end.status).toBe("aborted");
  });
});

describe("POST /v1/responses refusals", () => {
  it("is off unless gateway.http.responses turns it on: 404 in OpenAI's shape", async () => {
    const stack = await startStack({ responses: [{ text: "never" }] });
    const reply = await post(stack, { model: "beamclaw", input: "hi" });
    expect(reply.status).toBe(404);
    expect(reply.json.error).toEqual({
      message: expect.stringContaining("turned off"),
      type: "invalid_request_error",
      param: null,
      code: "not_found",
    });
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("needs the bearer token: 401 without it", async () => {
    const stack = await startResponses([{ text: "never" }]);
    const reply = await post(stack, { model: "beamclaw", input: "hi" }, {});
    expect(reply.status).toBe(401);
    expect(reply.json.error).toMatchObject({ code: "invalid_api_key" });
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("answers bad JSON, a wrong method and an unknown agent in OpenAI's error shape", async () => {
    const stack = await startResponses();
    const badJson = await post(stack, "{not json");
    expect(badJson.status).toBe(400);
    expect(badJson.json.error).toMatchObject({
      type: "invalid_request_error",
      code: "invalid_json",
    });
    const get = await call(stack.port, "/v1/responses", { headers: AUTH });
    expect(get.status).toBe(405);
    const unknown = await post(stack, { model: "beamclaw/nobody", input: "hi" });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatchObject({ code: "model_not_found" });
  });

  it("refuses input items it cannot use with a 400 naming the item", async () => {
    const stack = await startResponses([{ text: "never" }]);
    const cases: Array<[unknown, string]> = [
      ["", "input"],
      [[], "input"],
      [[{ type: "reasoning", summary: [] }], "input[0].type"],
      [[{ type: "message", role: "tool", content: "x" }], "input[0].role"],
      [
        [{ role: "user", content: [{ type: "input_audio", data: "AAAA" }] }],
        "input[0].content[0].type",
      ],
      [
        [{ role: "user", content: [{ type: "input_image", file_id: "file-123" }] }],
        "input[0].content[0].image_url",
      ],
      [[{ role: "user", content: 42 }], "input[0].content"],
      [[{ type: "function_call", name: "f", arguments: "{}" }], "input[0].call_id"],
      [[{ type: "function_call_output", call_id: "c", output: 7 }], "input[0].output"],
      // Without tools the turn would be a session turn, which would lose the call's result.
      [
        [
          { role: "user", content: "weather?" },
          { type: "function_call", call_id: "c", name: "get_weather", arguments: "{}" },
          { type: "function_call_output", call_id: "c", output: "4" },
        ],
        "tools",
      ],
    ];
    for (const [input, param] of cases) {
      const reply = await post(stack, { model: "beamclaw", input });
      expect({ status: reply.status, param: reply.json.error?.param }).toEqual({
        status: 400,
        param,
      });
      expect(reply.json.error.type).toBe("invalid_request_error");
    }
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("refuses fields it would not honour (an unknown previous_response_id, built-in tools, unknown ones) with a 400 naming the field", async () => {
    const stack = await startResponses([{ text: "never" }]);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ previous_response_id: "resp_123" }, "previous_response_id"],
      [{ conversation: "conv_1" }, "conversation"],
      [{ reasoning: { effort: "high" } }, "reasoning"],
      [{ background: true }, "background"],
      [{ tools: [{ type: "web_search" }] }, "tools[0].type"],
      [{ tools: [{ type: "function" }] }, "tools[0]"],
      [{ tool_choice: "required" }, "tool_choice"],
      [{ text: { format: { type: "json_schema", name: "bad name!" } } }, "text.format.name"],
      [{ max_output_tokens: 0 }, "max_output_tokens"],
      [{ frobnicate: true }, "frobnicate"],
    ];
    for (const [extra, param] of cases) {
      const reply = await post(stack, { model: "beamclaw", input: "hi", ...extra });
      expect({ status: reply.status, param: reply.json.error?.param }).toEqual({
        status: 400,
        param,
      });
      expect(reply.json.error).toEqual({
        message: expect.any(String),
        type: "invalid_request_error",
        param,
        code: expect.any(String),
      });
    }
    expect(stack.provider.requests).toHaveLength(0);
    // Fields without effect here are accepted: the answer does not depend on them.
    const ok = await post(stack, {
      model: "beamclaw",
      input: "hi",
      store: false,
      truncation: "disabled",
      parallel_tool_calls: true,
    });
    expect(ok.status).toBe(200);
  });
});
