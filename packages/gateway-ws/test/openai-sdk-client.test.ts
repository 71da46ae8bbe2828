/**
 * The official `openai` npm client against a real gateway over real sockets on 127.0.0.1: what
 * a user of the SDK does with the OpenAI-compatible API (chat completions streamed and not,
 * client tools, the Responses API and its typed events, `previous_response_id`, the model
 * list), and how the SDK surfaces the gateway's errors, aborts and retry hints. Every answer
 * comes from core's scripted provider behind a real `AgentRuntime`.
 *
 * The SDK is strict where a plain `fetch` test is not: its stream helpers rebuild the answer
 * from the events and throw on one out of order or missing, its errors are typed by status and
 * read `{ error: { message, type, param, code } }`, and its retries follow the status and the
 * `retry-after` header. Clients here are built with `maxRetries: 0` unless a test is about
 * retries, so that a retried request never hides a failure.
 */
import { MemoryPressureMonitor, ProviderError } from "@beamclaw/core";
import type { ScriptEntry } from "@beamclaw/core/testing";
import OpenAI, { type APIError, type ClientOptions } from "openai";
import { zodResponseFormat, zodTextFormat } from "openai/helpers/zod";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  closeClients,
  HANGING_ANSWER,
  type Stack,
  startStack,
  stopStacks,
  TOKEN,
  waitFor,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

/** An SDK client of the stack's gateway: its token, no retries unless told. */
function sdk(stack: Stack, options: ClientOptions = {}): OpenAI {
  return new OpenAI({
    apiKey: TOKEN,
    baseURL: `http://127.0.0.1:${stack.port}/v1`,
    maxRetries: 0,
    ...options,
  });
}

/** A gateway with `/v1/responses` on (it is off by default). */
function startWithResponses(responses: ScriptEntry[] = []): Promise<Stack> {
  return startStack({ responses, gateway: { http: { responses: true } } });
}

/** What the SDK threw (or rejected with), for assertions on its class and fields. */
async function thrown(work: Promise<unknown> | (() => Promise<unknown>)): Promise<unknown> {
  try {
    await (typeof work === "function" ? work() : work);
  } catch (error) {
    return error;
  }
  throw new Error("expected the SDK to throw");
}

/** The runtime's run starts and ends, in order, from `events:global`. */
function runLog(stack: Stack) {
  const started: string[] = [];
  const ended: Array<{ runId: string; status: string }> = [];
  stack.runtime.pubsub.subscribe(
    "events:global",
    (e: { type?: string; runId?: string; result?: { status: string } }) => {
      if (e.type === "run-start" && e.runId !== undefined) started.push(e.runId);
      if (e.type === "run-end" && e.runId !== undefined && e.result !== undefined) {
        ended.push({ runId: e.runId, status: e.result.status });
      }
    },
  );
  return { started, ended };
}

const WEATHER_FUNCTION = {
  name: "get_weather",
  description: "Weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  },
};

/** A model answer that calls `get_weather` for Oslo. */
const OSLO_CALL: ScriptEntry = {
  toolCalls: [{ toolCallId: "call_oslo", toolName: "get_weather", input: { city: "Oslo" } }],
  usage: { inputTokens: 20, outputTokens: 5 },
};

describe("chat.completions.create", () => {
  it("answers a non-streaming completion the SDK reads whole: text, finish_reason, usage", async () => {
    const stack = await startStack({
      responses: [{ text: "Hi there", usage: { inputTokens: 9, outputTokens: 2 } }],
    });
    const completion = await sdk(stack).chat.completions.create({
      model: "beamclaw",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hello" },
      ],
    });
    expect(completion.object).toBe("chat.completion");
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.model).toBe("beamclaw");
    expect(Number.isInteger(completion.created)).toBe(true);
    expect(completion.choices).toHaveLength(1);
    const [choice] = completion.choices;
    expect(choice!.index).toBe(0);
    expect(choice!.finish_reason).toBe("stop");
    expect(choice!.message.role).toBe("assistant");
    expect(choice!.message.content).toBe("Hi there");
    // Fields the SDK types as always present (null when there is nothing), as OpenAI sends them.
    expect(choice).toHaveProperty("logprobs", null);
    expect(choice!.message).toHaveProperty("refusal", null);
    expect(completion.usage).toMatchObject({
      prompt_tokens: 9,
      completion_tokens: 2,
      total_tokens: 11,
    });
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("streams chunks the SDK iterates: the text assembles, the finish chunk says stop, include_usage adds the usage chunk", async () => {
    const stack = await startStack({
      responses: [{ text: ["Hel", "lo", " world"], usage: { inputTokens: 7, outputTokens: 3 } }],
    });
    const stream = await sdk(stack).chat.completions.create({
      model: "beamclaw",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "hello" }],
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(2);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe("Hello world");
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    // The usage chunk comes last, with no choices; the one before it finishes the choice.
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toMatchObject({
      prompt_tokens: 7,
      completion_tokens: 3,
      total_tokens: 10,
    });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.slice(0, -2).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
  });

  it("the SDK's stream helper rebuilds the completion from the chunks (finalChatCompletion)", async () => {
    const stack = await startStack({
      responses: [{ text: ["Hel", "lo"], usage: { inputTokens: 4, outputTokens: 2 } }],
    });
    const deltas: string[] = [];
    const stream = sdk(stack)
      .chat.completions.stream({
        model: "beamclaw",
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "hello" }],
      })
      .on("content.delta", ({ delta }) => deltas.push(delta));
    const final = await stream.finalChatCompletion();
    expect(deltas.join("")).toBe("Hello");
    expect(final.choices[0]!.message.content).toBe("Hello");
    expect(final.choices[0]!.finish_reason).toBe("stop");
    expect(final.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
    expect(await stream.finalContent()).toBe("Hello");
  });

  it("returns the model's calls of client function tools, and sends the tool results back", async () => {
    const stack = await startStack({
      responses: [OSLO_CALL, { text: "It is 4 °C in Oslo." }],
    });
    const client = sdk(stack);
    const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
      { type: "function", function: WEATHER_FUNCTION },
    ];
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: "user", content: "Weather in Oslo?" },
    ];
    const first = await client.chat.completions.create({ model: "beamclaw", messages, tools });
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    const calls = choice.message.tool_calls ?? [];
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.type).toBe("function");
    if (call.type !== "function") throw new Error("not a function call");
    expect(call.id).toBe("call_oslo");
    expect(call.function.name).toBe("get_weather");
    expect(JSON.parse(call.function.arguments)).toEqual({ city: "Oslo" });
    expect(stack.provider.requests[0]!.tools).toEqual([
      {
        name: "get_weather",
        description: "Weather in a city",
        inputSchema: WEATHER_FUNCTION.parameters,
      },
    ]);

    const second = await client.chat.completions.create({
      model: "beamclaw",
      tools,
      messages: [
        ...messages,
        choice.message,
        { role: "tool", tool_call_id: call.id, content: '{"celsius":4}' },
      ],
    });
    expect(second.choices[0]!.message.content).toBe("It is 4 °C in Oslo.");
    expect(second.choices[0]!.finish_reason).toBe("stop");
    expect(stack.provider.requests[1]!.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "Weather in Oslo?" }] },
      {
        role: "assistant",
        content: [
          {
            type: "tool-call",
            toolCallId: "call_oslo",
            toolName: "get_weather",
            input: { city: "Oslo" },
          },
        ],
      },
      {
        role: "tool",
        content: [
          {
            type: "tool-result",
            toolCallId: "call_oslo",
            toolName: "get_weather",
            output: '{"celsius":4}',
          },
        ],
      },
    ]);
  });

  it("streams tool calls the SDK's stream helper accepts whole (id, type, name, arguments)", async () => {
    const stack = await startStack({ responses: [OSLO_CALL] });
    const done: Array<{ name: string; arguments: string }> = [];
    const stream = sdk(stack)
      .chat.completions.stream({
        model: "beamclaw",
        messages: [{ role: "user", content: "Weather in Oslo?" }],
        tools: [{ type: "function", function: WEATHER_FUNCTION }],
      })
      .on("tool_calls.function.arguments.done", (e) => done.push(e));
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]!.finish_reason).toBe("tool_calls");
    expect(final.choices[0]!.message.tool_calls).toEqual([
      {
        id: "call_oslo",
        type: "function",
        function: { name: "get_weather", arguments: '{"city":"Oslo"}' },
      },
    ]);
    expect(done).toMatchObject([{ name: "get_weather", arguments: '{"city":"Oslo"}' }]);
  });

  it("runs the SDK's tool loop (runTools): the SDK calls the function and the gateway answers with its result", async () => {
    const stack = await startStack({
      responses: [OSLO_CALL, { text: "4 °C and clear." }],
    });
    const asked: unknown[] = [];
    const runner = sdk(stack).chat.completions.runTools({
      model: "beamclaw",
      messages: [{ role: "user", content: "Weather in Oslo?" }],
      tools: [
        {
          type: "function",
          function: {
            ...WEATHER_FUNCTION,
            parse: JSON.parse,
            function: (args: { city: string }) => {
              asked.push(args);
              return { celsius: 4, sky: "clear" };
            },
          },
        },
      ],
    });
    expect(await runner.finalContent()).toBe("4 °C and clear.");
    expect(asked).toEqual([{ city: "Oslo" }]);
    const toolMessage = stack.provider.requests[1]!.messages.at(-1)!;
    expect(toolMessage).toEqual({
      role: "tool",
      content: [
        {
          type: "tool-result",
          toolCallId: "call_oslo",
          toolName: "get_weather",
          output: '{"celsius":4,"sky":"clear"}',
        },
      ],
    });
  });

  it("refuses what the docs say it refuses, as a BadRequestError naming the field", async () => {
    const stack = await startStack({ responses: ["never used"] });
    const client = sdk(stack);
    const missing = await thrown(
      client.chat.completions.create({
        model: "beamclaw",
        messages: [{ role: "user", content: "hi" }],
        tools: [{ type: "function", function: WEATHER_FUNCTION }],
        tool_choice: { type: "function", function: { name: "get_time" } },
      }),
    );
    expect(missing).toBeInstanceOf(OpenAI.BadRequestError);
    expect(missing).toMatchObject({
      status: 400,
      type: "invalid_request_error",
      code: "invalid_value",
      param: "tool_choice",
    });
    const twoChoices = await thrown(
      client.chat.completions.create({
        model: "beamclaw",
        n: 2,
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(twoChoices).toBeInstanceOf(OpenAI.BadRequestError);
    expect(twoChoices).toMatchObject({ code: "unsupported_value", param: "n" });
    // Streamed, the refusal comes before any event, as an HTTP 400 the SDK throws at once.
    const streamed = await thrown(
      client.chat.completions.create({
        model: "beamclaw",
        stream: true,
        n: 2,
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(streamed).toBeInstanceOf(OpenAI.BadRequestError);
    expect(streamed).toMatchObject({ code: "unsupported_value", param: "n" });
    expect(stack.provider.requests).toHaveLength(0);
  });
});

describe("responses.create", () => {
  it("answers a non-streaming response the SDK reads (output_text, status, usage)", async () => {
    const stack = await startWithResponses([
      { text: "BEAM is Erlang's VM.", usage: { inputTokens: 12, outputTokens: 6 } },
    ]);
    const response = await sdk(stack).responses.create({
      model: "beamclaw",
      instructions: "Be brief.",
      input: "What is BEAM?",
    });
    expect(response.object).toBe("response");
    expect(response.id).toMatch(/^resp_/);
    expect(response.status).toBe("completed");
    expect(response.output_text).toBe("BEAM is Erlang's VM.");
    expect(response.output).toHaveLength(1);
    expect(response.output[0]).toMatchObject({
      type: "message",
      role: "assistant",
      status: "completed",
      content: [{ type: "output_text", text: "BEAM is Erlang's VM.", annotations: [] }],
    });
    expect(response.instructions).toBe("Be brief.");
    expect(response.error).toBeNull();
    expect(response.incomplete_details).toBeNull();
    // Typed by the SDK as always present; top_p is accepted but never applied.
    expect(response).toHaveProperty("top_p", null);
    expect(response.usage).toMatchObject({ input_tokens: 12, output_tokens: 6, total_tokens: 18 });
  });

  it("streams typed events in OpenAI's order, numbered, ending in response.completed", async () => {
    const stack = await startWithResponses([
      { text: ["Hel", "lo"], usage: { inputTokens: 3, outputTokens: 2 } },
    ]);
    const stream = await sdk(stack).responses.create({
      model: "beamclaw",
      input: "hello",
      stream: true,
    });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((e) => e.type)).toEqual([
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
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const deltas = events.filter((e) => e.type === "response.output_text.delta");
    expect(deltas.map((e) => e.delta).join("")).toBe("Hello");
    const completed = events.at(-1)!;
    if (completed.type !== "response.completed") throw new Error(completed.type);
    expect(completed.response.status).toBe("completed");
    expect(completed.response.usage).toMatchObject({ input_tokens: 3, output_tokens: 2 });
    const created = events[0]!;
    if (created.type !== "response.created") throw new Error(created.type);
    expect(created.response.id).toBe(completed.response.id);
  });

  it("the SDK's stream helper rebuilds the response from the events (finalResponse)", async () => {
    const stack = await startWithResponses([{ text: ["One, ", "two."] }]);
    const deltas: string[] = [];
    const stream = sdk(stack)
      .responses.stream({ model: "beamclaw", input: "count" })
      .on("response.output_text.delta", (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(deltas).toEqual(["One, ", "two."]);
    expect(final.status).toBe("completed");
    expect(final.output_text).toBe("One, two.");
  });

  it("streams a client function call the SDK's helper rebuilds, and continues it by previous_response_id", async () => {
    const stack = await startWithResponses([OSLO_CALL, { text: "4 °C in Oslo." }]);
    const client = sdk(stack);
    const tools: OpenAI.Responses.Tool[] = [
      { type: "function", strict: null, ...WEATHER_FUNCTION },
    ];
    const argumentsDone: Array<{ name: string; arguments: string }> = [];
    const stream = client.responses
      .stream({ model: "beamclaw", input: "Weather in Oslo?", tools })
      .on("response.function_call_arguments.done", (e) =>
        argumentsDone.push({ name: e.name, arguments: e.arguments }),
      );
    const first = await stream.finalResponse();
    expect(argumentsDone).toEqual([{ name: "get_weather", arguments: '{"city":"Oslo"}' }]);
    const call = first.output.find((item) => item.type === "function_call");
    expect(call).toMatchObject({
      type: "function_call",
      call_id: "call_oslo",
      name: "get_weather",
      arguments: '{"city":"Oslo"}',
      status: "completed",
    });
    if (call?.type !== "function_call") throw new Error("no function call");

    const second = await client.responses.create({
      model: "beamclaw",
      previous_response_id: first.id,
      tools,
      input: [{ type: "function_call_output", call_id: call.call_id, output: '{"celsius":4}' }],
    });
    expect(second.output_text).toBe("4 °C in Oslo.");
    expect(second.previous_response_id).toBe(first.id);
    // The model got the whole conversation: the question, its call and the result.
    const sent = stack.provider.requests[1]!.messages;
    expect(sent.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
    expect(sent[2]!.content).toMatchObject([
      { type: "tool-result", toolCallId: "call_oslo", output: '{"celsius":4}' },
    ]);
  });

  it("continues a kept response by previous_response_id; retrieve and delete work on it", async () => {
    const stack = await startWithResponses([{ text: "Nice to meet you, Ada." }, { text: "Ada." }]);
    const client = sdk(stack);
    const first = await client.responses.create({ model: "beamclaw", input: "I am Ada." });
    // Kept, and saying so (a field the SDK's type leaves out).
    expect(first).toMatchObject({ store: true });
    const second = await client.responses.create({
      model: "beamclaw",
      previous_response_id: first.id,
      input: "What is my name?",
    });
    expect(second.output_text).toBe("Ada.");
    const sent = JSON.stringify(stack.provider.requests[1]!.messages);
    expect(sent).toContain("I am Ada.");
    expect(sent).toContain("Nice to meet you, Ada.");
    expect(sent).toContain("What is my name?");

    const again = await client.responses.retrieve(first.id);
    expect(again.id).toBe(first.id);
    expect(again.output_text).toBe("Nice to meet you, Ada.");
    await client.responses.delete(first.id);
    const gone = await thrown(client.responses.retrieve(first.id));
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect(gone).toMatchObject({ status: 404, code: "not_found" });

    const unknown = await thrown(
      client.responses.create({
        model: "beamclaw",
        previous_response_id: "resp_unknown",
        input: "hi",
      }),
    );
    expect(unknown).toBeInstanceOf(OpenAI.BadRequestError);
    expect(unknown).toMatchObject({
      code: "previous_response_not_found",
      param: "previous_response_id",
    });
  });

  it("refuses built-in tools and reasoning settings with the documented 400, naming the field", async () => {
    const stack = await startWithResponses(["never used"]);
    const client = sdk(stack);
    const search = await thrown(
      client.responses.create({
        model: "beamclaw",
        input: "news?",
        tools: [{ type: "web_search" }],
      }),
    );
    expect(search).toBeInstanceOf(OpenAI.BadRequestError);
    expect(search).toMatchObject({
      type: "invalid_request_error",
      code: "unsupported_tool",
      param: "tools[0].type",
    });
    const reasoning = await thrown(
      client.responses.create({ model: "beamclaw", input: "hi", reasoning: { effort: "low" } }),
    );
    expect(reasoning).toBeInstanceOf(OpenAI.BadRequestError);
    expect(reasoning).toMatchObject({ code: "unsupported_parameter", param: "reasoning" });
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("ends a failed stream with response.failed carrying the error", async () => {
    const stack = await startWithResponses([
      {
        error: new ProviderError("connect ECONNREFUSED", { kind: "network", provider: "scripted" }),
      },
    ]);
    const stream = await sdk(stack).responses.create({
      model: "beamclaw",
      input: "hi",
      stream: true,
    });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const last = events.at(-1)!;
    expect(last.type).toBe("response.failed");
    if (last.type !== "response.failed") throw new Error(last.type);
    expect(last.response.status).toBe("failed");
    expect(last.response.error?.message).toContain("ECONNREFUSED");
  });

  it("ends the stream with response.incomplete, which the SDK's helper takes as the final response", async () => {
    const stack = await startWithResponses([{ text: ["It ", "is"], finishReason: "length" }]);
    const types: string[] = [];
    const stream = sdk(stack)
      .responses.stream({ model: "beamclaw", input: "Weather?", max_output_tokens: 2 })
      .on("event", (e) => types.push(e.type));
    const final = await stream.finalResponse();
    expect(types.at(-1)).toBe("response.incomplete");
    expect(final.status).toBe("incomplete");
    expect(final.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(final.output_text).toBe("It is");
  });
});

describe("structured outputs through the SDK's parse helpers", () => {
  const Weather = z.object({ city: z.string(), celsius: z.number() });

  it("chat.completions.parse with zodResponseFormat: the gateway's validated JSON lands in message.parsed", async () => {
    // The model wraps its JSON in a fence; the gateway answers the validated JSON alone.
    const stack = await startStack({
      responses: [{ text: '```json\n{"city":"Oslo","celsius":4}\n```' }],
    });
    const completion = await sdk(stack).chat.completions.parse({
      model: "beamclaw",
      messages: [{ role: "user", content: "Weather in Oslo?" }],
      response_format: zodResponseFormat(Weather, "weather"),
    });
    const message = completion.choices[0]!.message;
    expect(message.parsed).toEqual({ city: "Oslo", celsius: 4 });
    expect(message.content).toBe('{"city":"Oslo","celsius":4}');
    expect(stack.provider.requests[0]!.responseFormat).toMatchObject({
      type: "json-schema",
      name: "weather",
      strict: true,
      schema: { type: "object", required: ["city", "celsius"] },
    });
  });

  it("responses.parse with zodTextFormat: the answer lands in output_parsed", async () => {
    const stack = await startWithResponses([{ text: '{"city":"Bergen","celsius":7}' }]);
    const response = await sdk(stack).responses.parse({
      model: "beamclaw",
      input: "Weather in Bergen?",
      text: { format: zodTextFormat(Weather, "weather") },
    });
    expect(response.output_parsed).toEqual({ city: "Bergen", celsius: 7 });
    expect(stack.provider.requests[0]!.responseFormat).toMatchObject({ name: "weather" });
  });
});

describe("models.list", () => {
  it("lists the agents as models through the SDK's page", async () => {
    const stack = await startStack({
      agents: [
        { id: "main", model: "scripted/m1" },
        { id: "ops", model: "scripted/m1" },
      ],
    });
    const ids: string[] = [];
    for await (const model of sdk(stack).models.list()) {
      expect(model.object).toBe("model");
      expect(model.owned_by).toBe("beamclaw");
      expect(Number.isInteger(model.created)).toBe(true);
      ids.push(model.id);
    }
    expect(ids).toEqual(["beamclaw", "beamclaw/main", "beamclaw/ops"]);
  });

  it("models.retrieve answers each listed model (the SDK sends beamclaw/ops as beamclaw%2Fops) and 404s another", async () => {
    const stack = await startStack({
      agents: [
        { id: "main", model: "scripted/m1" },
        { id: "ops", model: "scripted/m1" },
      ],
    });
    const client = sdk(stack);
    for (const id of ["beamclaw", "beamclaw/main", "beamclaw/ops"]) {
      const model = await client.models.retrieve(id);
      expect(model).toMatchObject({ id, object: "model", owned_by: "beamclaw" });
      expect(Number.isInteger(model.created)).toBe(true);
    }
    const error = await thrown(client.models.retrieve("beamclaw/nobody"));
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect(error).toMatchObject({ status: 404, code: "model_not_found" });
    // A path that is not percent-encoding is a missing model too, not a crash.
    const raw = await fetch(`http://127.0.0.1:${stack.port}/v1/models/%E0%A4%A`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(raw.status).toBe(404);
    expect(await raw.json()).toMatchObject({ error: { code: "model_not_found" } });
  });
});

describe("errors as the SDK surfaces them", () => {
  it("a wrong API key is an AuthenticationError (401) with the gateway's message", async () => {
    const stack = await startStack({ responses: ["never used"] });
    const client = sdk(stack, { apiKey: "not-the-token" });
    for (const call of [
      () => client.models.list(),
      () =>
        client.chat.completions.create({
          model: "beamclaw",
          messages: [{ role: "user", content: "hi" }],
        }),
    ]) {
      const error = await thrown(call);
      expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
      expect(error).toMatchObject({
        status: 401,
        type: "invalid_request_error",
        code: "invalid_api_key",
        param: null,
      });
      expect((error as Error).message).toBe("401 a valid bearer token is required");
    }
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("a bad request is a BadRequestError (400) with the gateway's code and param", async () => {
    const stack = await startStack({ responses: ["never used"] });
    const client = sdk(stack);
    const hot = await thrown(
      client.chat.completions.create({
        model: "beamclaw",
        temperature: 5,
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(hot).toBeInstanceOf(OpenAI.BadRequestError);
    expect(hot).toMatchObject({
      status: 400,
      type: "invalid_request_error",
      code: "invalid_type",
      param: "temperature",
    });
    expect((hot as Error).message).toMatch(/^400 invalid type for 'temperature'/);
    const empty = await thrown(client.chat.completions.create({ model: "beamclaw", messages: [] }));
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
    expect(empty).toMatchObject({ code: "invalid_messages", param: "messages" });
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("an unknown model is a NotFoundError (404 model_not_found), on both endpoints", async () => {
    const stack = await startWithResponses(["never used"]);
    const client = sdk(stack);
    const chat = await thrown(
      client.chat.completions.create({
        model: "gpt-4o",
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(chat).toBeInstanceOf(OpenAI.NotFoundError);
    expect(chat).toMatchObject({ status: 404, code: "model_not_found" });
    expect((chat as Error).message).toContain('model "gpt-4o" does not exist');
    const responses = await thrown(client.responses.create({ model: "gpt-4o", input: "hi" }));
    expect(responses).toBeInstanceOf(OpenAI.NotFoundError);
    expect(responses).toMatchObject({ status: 404, code: "model_not_found" });
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("a failed model call is an InternalServerError (502) naming the provider, tried once with maxRetries: 0", async () => {
    const stack = await startStack({
      responses: [
        {
          error: new ProviderError("connect ECONNREFUSED", {
            kind: "network",
            provider: "scripted",
          }),
        },
      ],
    });
    const error = await thrown(
      sdk(stack).chat.completions.create({
        model: "beamclaw",
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect(error).toMatchObject({ status: 502, type: "server_error" });
    expect((error as Error).message).toContain("scripted/m1");
    expect((error as Error).message).toContain("ECONNREFUSED");
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("a model failure after part of a streamed answer is an APIError thrown from the iteration (ANSWER_DISCARDED)", async () => {
    const stack = await startStack({
      responses: [
        {
          text: "partial",
          error: new ProviderError("connection reset", { kind: "network", provider: "scripted" }),
        },
      ],
    });
    const stream = await sdk(stack).chat.completions.create({
      model: "beamclaw",
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    });
    let text = "";
    const error = await thrown(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    });
    // An error event, not an HTTP status: an APIError of no status, with the event's fields.
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error).toMatchObject({
      status: undefined,
      type: "server_error",
      code: "ANSWER_DISCARDED",
      param: null,
    });
    expect((error as Error).message).toContain("connection reset");
    expect(text).toBe("partial");
  });
});

describe("aborting a request with an AbortController", () => {
  it("mid-stream: the SDK's stream helper rejects with APIUserAbortError, and the gateway aborts the run", async () => {
    const stack = await startStack({ responses: [HANGING_ANSWER] });
    const runs = runLog(stack);
    const controller = new AbortController();
    const stream = sdk(stack).chat.completions.stream(
      { model: "beamclaw", messages: [{ role: "user", content: "go" }] },
      { signal: controller.signal },
    );
    stream.on("content.delta", () => controller.abort());
    const error = await thrown(stream.finalChatCompletion());
    expect(error).toBeInstanceOf(OpenAI.APIUserAbortError);
    const end = await waitFor("the run to end", () => runs.ended[0]);
    expect(end.status).toBe("aborted");
    expect(runs.started).toEqual([end.runId]);
  });

  it("mid-stream: a raw stream's iteration ends there (the SDK's way with its own aborts), and the gateway aborts the run", async () => {
    const stack = await startStack({ responses: [HANGING_ANSWER] });
    const runs = runLog(stack);
    const controller = new AbortController();
    const stream = await sdk(stack).chat.completions.create(
      { model: "beamclaw", stream: true, messages: [{ role: "user", content: "go" }] },
      { signal: controller.signal },
    );
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      if (chunk.choices[0]?.delta.content === "thinking") controller.abort();
    }
    // The SDK's Stream swallows an abort of its own request: the loop just ends, unfinished.
    expect(stream.controller.signal.aborted).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta.content).join("")).toBe("thinking");
    expect(chunks.every((c) => c.choices[0]?.finish_reason === null)).toBe(true);
    const end = await waitFor("the run to end", () => runs.ended[0]);
    expect(end.status).toBe("aborted");
    expect(runs.started).toEqual([end.runId]);
  });

  it("before the answer: a non-streamed request rejects with APIUserAbortError, and the gateway aborts its run", async () => {
    const stack = await startStack({ responses: [HANGING_ANSWER] });
    const runs = runLog(stack);
    const controller = new AbortController();
    const pending = thrown(
      sdk(stack).chat.completions.create(
        { model: "beamclaw", messages: [{ role: "user", content: "go" }] },
        { signal: controller.signal },
      ),
    );
    await waitFor("the run to start", () => runs.started[0]);
    controller.abort();
    expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError);
    const end = await waitFor("the run to end", () => runs.ended[0]);
    expect(end).toEqual({ runId: runs.started[0], status: "aborted" });
  });

  it("mid-stream on /v1/responses: the helper rejects with APIUserAbortError, and the gateway aborts the run", async () => {
    const stack = await startWithResponses([HANGING_ANSWER]);
    const runs = runLog(stack);
    const controller = new AbortController();
    const stream = sdk(stack).responses.stream(
      { model: "beamclaw", input: "go" },
      { signal: controller.signal },
    );
    stream.on("response.output_text.delta", () => controller.abort());
    const error = await thrown(stream.finalResponse());
    expect(error).toBeInstanceOf(OpenAI.APIUserAbortError);
    const end = await waitFor("the run to end", () => runs.ended[0]);
    expect(end.status).toBe("aborted");
    expect(runs.started).toEqual([end.runId]);
  });
});

describe("retries", () => {
  const MiB = 1024 * 1024;

  /** A memory monitor over a reading the test sets, asking for `retryAfterMs` when pressed. */
  function pressureGauge(retryAfterMs: number) {
    const reading = { rssBytes: 100 * MiB, heapUsedBytes: 50 * MiB, heapLimitBytes: 1024 * MiB };
    const monitor = new MemoryPressureMonitor({
      maxHeapUsedBytes: 100 * MiB,
      retryAfterMs,
      read: () => ({ ...reading }),
    });
    return {
      monitor,
      press() {
        reading.heapUsedBytes = 150 * MiB;
        monitor.check();
      },
      relieve() {
        reading.heapUsedBytes = 40 * MiB;
        monitor.check();
      },
    };
  }

  /** A fetch that records each response's status and headers before the SDK reads it. */
  function recordingFetch(onResponse: (response: Response) => void = () => undefined) {
    const seen: Array<{ status: number; retryAfter: string | null }> = [];
    const fetchImpl: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      seen.push({ status: response.status, retryAfter: response.headers.get("retry-after") });
      onResponse(response);
      return response;
    };
    return { fetch: fetchImpl, seen };
  }

  it("a run an operator aborts is a 503 the SDK does not retry (x-should-retry: false): the turn runs once", async () => {
    const stack = await startStack({ responses: [HANGING_ANSWER, { text: "again" }] });
    const started: Array<{ runId: string; sessionKey: string }> = [];
    stack.runtime.pubsub.subscribe(
      "events:global",
      (e: { type?: string; runId?: string; sessionKey?: string }) => {
        if (e.type === "run-start" && e.runId !== undefined && e.sessionKey !== undefined) {
          started.push({ runId: e.runId, sessionKey: e.sessionKey });
        }
      },
    );
    const recording = recordingFetch();
    // The SDK's default: two retries of a 5xx.
    const client = sdk(stack, { maxRetries: 2, fetch: recording.fetch });
    const pending = thrown(
      client.chat.completions.create({
        model: "beamclaw",
        messages: [{ role: "user", content: "go" }],
      }),
    );
    const run = await waitFor("the run to start", () => started[0]);
    expect(await stack.runtime.session(run.sessionKey).abort(run.runId)).toBe(true);
    const error = await pending;
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect(error).toMatchObject({ status: 503, code: "run_aborted" });
    expect((error as APIError).headers?.get("x-should-retry")).toBe("false");
    expect(recording.seen.map((r) => r.status)).toEqual([503]);
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("a failed model call in a kept session (user) is a 502 the SDK does not retry: the user message is saved once", async () => {
    const failure = new ProviderError("connect ECONNREFUSED", {
      kind: "network",
      provider: "scripted",
    });
    const stack = await startStack({ responses: [{ error: failure }, { error: failure }, "ok"] });
    const recording = recordingFetch();
    // The SDK's default: two retries of a 5xx.
    const client = sdk(stack, { maxRetries: 2, fetch: recording.fetch });
    const error = await thrown(
      client.chat.completions.create({
        model: "beamclaw",
        user: "alice",
        messages: [{ role: "user", content: "only once, please" }],
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect(error).toMatchObject({ status: 502 });
    expect((error as APIError).headers?.get("x-should-retry")).toBe("false");
    expect(recording.seen.map((r) => r.status)).toEqual([502]);
    expect(stack.provider.requests).toHaveLength(1);
    const transcript = JSON.stringify(
      await stack.store.transcripts.read("agent:main:openai-user:alice"),
    );
    expect(transcript.split("only once, please")).toHaveLength(2);
  });

  it("a failed model call in a stateless turn is a 502 the SDK retries: the retry starts over in a fresh session", async () => {
    const failure = new ProviderError("connect ECONNREFUSED", {
      kind: "network",
      provider: "scripted",
    });
    const stack = await startStack({ responses: [{ error: failure }, "answered on the retry"] });
    const recording = recordingFetch();
    const client = sdk(stack, { maxRetries: 1, fetch: recording.fetch });
    const answer = await client.chat.completions.create({
      model: "beamclaw",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(answer.choices[0]!.message.content).toBe("answered on the retry");
    expect(recording.seen.map((r) => r.status)).toEqual([502, 200]);
  });

  it("client tools on a gateway without a model source are a 501 the SDK does not retry", async () => {
    const stack = await startStack({ gateway: { models: undefined } });
    const recording = recordingFetch();
    const error = await thrown(
      sdk(stack, { maxRetries: 2, fetch: recording.fetch }).chat.completions.create({
        model: "beamclaw",
        messages: [{ role: "user", content: "weather?" }],
        tools: [{ type: "function", function: WEATHER_FUNCTION }],
      }),
    );
    expect(error).toMatchObject({ status: 501, code: "tools_unavailable" });
    expect(recording.seen.map((r) => r.status)).toEqual([501]);
  });

  it("memory pressure is a 503 with Retry-After: with maxRetries 0 the SDK surfaces it", async () => {
    const gauge = pressureGauge(3_000);
    const stack = await startStack({
      responses: ["never used"],
      runtime: { memoryPressure: gauge.monitor },
      gateway: { memoryPressure: gauge.monitor },
    });
    gauge.press();
    const error = await thrown(
      sdk(stack).chat.completions.create({
        model: "beamclaw",
        messages: [{ role: "user", content: "hi" }],
      }),
    );
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect(error).toMatchObject({ status: 503, code: "memory_pressure", type: "server_error" });
    expect((error as APIError).headers?.get("retry-after")).toBe("3");
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("memory pressure: the SDK retries the 503 (Retry-After: 1), and its retry is answered once the pressure is over", async () => {
    const gauge = pressureGauge(1_000);
    const stack = await startStack({
      responses: ["answered on the retry"],
      runtime: { memoryPressure: gauge.monitor },
      gateway: { memoryPressure: gauge.monitor },
    });
    gauge.press();
    // The pressure ends as soon as the first refusal reaches the client.
    const recorded = recordingFetch((response) => {
      if (response.status === 503) gauge.relieve();
    });
    const completion = await sdk(stack, {
      maxRetries: 1,
      fetch: recorded.fetch,
    }).chat.completions.create({ model: "beamclaw", messages: [{ role: "user", content: "hi" }] });
    expect(completion.choices[0]!.message.content).toBe("answered on the retry");
    expect(recorded.seen).toEqual([
      { status: 503, retryAfter: "1" },
      { status: 200, retryAfter: null },
    ]);
    expect(stack.provider.requests).toHaveLength(1);
  });

  it("an address locked out after wrong tokens gets a 429 RateLimitError with Retry-After, and the SDK's retry after that long gets through", async () => {
    // The gateway's clock, moved by the test: the lockout ends when the test says.
    let clock = Date.now();
    const stack = await startStack({
      responses: ["let in"],
      gateway: {
        now: () => clock,
        auth: { mode: "token", token: TOKEN, rateLimit: { maxAttempts: 2, lockoutMs: 1_000 } },
      },
    });
    const guesser = sdk(stack, { apiKey: "a-wrong-guess" });
    for (let i = 0; i < 2; i++) {
      expect(await thrown(guesser.models.list())).toBeInstanceOf(OpenAI.AuthenticationError);
    }
    const ask = (client: OpenAI) =>
      client.chat.completions.create({
        model: "beamclaw",
        messages: [{ role: "user", content: "hi" }],
      });
    const locked = await thrown(ask(sdk(stack)));
    expect(locked).toBeInstanceOf(OpenAI.RateLimitError);
    expect(locked).toMatchObject({
      status: 429,
      type: "requests",
      code: "auth_rate_limited",
      param: null,
    });
    expect((locked as APIError).headers?.get("retry-after")).toBe("1");
    expect(stack.provider.requests).toHaveLength(0);

    // Time passes on the gateway exactly as long as Retry-After asks the client to wait.
    const recorded = recordingFetch((response) => {
      const wait = Number(response.headers.get("retry-after") ?? "0");
      clock += wait * 1_000;
    });
    const completion = await ask(sdk(stack, { maxRetries: 1, fetch: recorded.fetch }));
    expect(completion.choices[0]!.message.content).toBe("let in");
    expect(recorded.seen).toEqual([
      { status: 429, retryAfter: "1" },
      { status: 200, retryAfter: null },
    ]);
  });
});
