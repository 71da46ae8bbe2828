/**
 * OpenAI Responses reasoning under core's agent loop, over a fake Responses API that checks
 * what OpenAI checks of the items it is sent back: a reasoning item it made must come right
 * before the item that followed it in its output, sent with that item's id (else HTTP 400
 * "Item 'rs_…' of type 'reasoning' was provided without its required following item"), and
 * an output item sent with its id must come right after its reasoning (else "Item 'fc_…' of
 * type 'function_call' was provided without its required 'reasoning' item").
 */
import type { ModelMessage } from "@beamclaw/core";
import { http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAIProvider } from "../src/index.js";
import {
  collect,
  errorResponse,
  runtimeOver,
  sseResponse,
  userText,
  weatherTool,
} from "./support.js";

const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const URL = "https://api.openai.com/v1/responses";

type OutputItem =
  | { type: "reasoning"; id: string; summary: string }
  | { type: "message"; id: string; text: string }
  | { type: "function_call"; id: string; call_id: string; name: string; arguments: string };

type InputItem = { type?: string; id?: string; [key: string]: unknown };

/** The SSE events of a response whose output is `items`, as the Responses API streams them. */
function responseStream(id: string, items: OutputItem[]): string {
  let seq = 0;
  const events: string[] = [];
  const send = (type: string, data: object) => {
    events.push(
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`,
    );
  };
  const response = { id, object: "response", model: "o4-mini-2025-04-16", output: [] };
  send("response.created", { response: { ...response, status: "in_progress" } });
  items.forEach((item, output_index) => {
    if (item.type === "reasoning") {
      send("response.output_item.added", {
        output_index,
        item: { id: item.id, type: "reasoning", summary: [] },
      });
      send("response.reasoning_summary_text.delta", {
        item_id: item.id,
        output_index,
        summary_index: 0,
        delta: item.summary,
      });
      send("response.output_item.done", {
        output_index,
        item: {
          id: item.id,
          type: "reasoning",
          summary: [{ type: "summary_text", text: item.summary }],
        },
      });
    } else if (item.type === "message") {
      const done = { type: "output_text", text: item.text, annotations: [] };
      send("response.output_item.added", {
        output_index,
        item: {
          id: item.id,
          type: "message",
          status: "in_progress",
          role: "assistant",
          content: [],
        },
      });
      send("response.output_text.delta", {
        item_id: item.id,
        output_index,
        content_index: 0,
        delta: item.text,
      });
      send("response.output_item.done", {
        output_index,
        item: {
          id: item.id,
          type: "message",
          status: "completed",
          role: "assistant",
          content: [done],
        },
      });
    } else {
      const { id: itemId, call_id, name } = item;
      send("response.output_item.added", {
        output_index,
        item: {
          id: itemId,
          type: "function_call",
          status: "in_progress",
          arguments: "",
          call_id,
          name,
        },
      });
      send("response.function_call_arguments.delta", {
        item_id: itemId,
        output_index,
        delta: item.arguments,
      });
      send("response.output_item.done", {
        output_index,
        item: { ...item, status: "completed" },
      });
    }
  });
  send("response.completed", {
    response: {
      ...response,
      status: "completed",
      usage: {
        input_tokens: 50,
        output_tokens: 20,
        output_tokens_details: { reasoning_tokens: 8 },
      },
    },
  });
  return events.join("");
}

/**
 * A fake Responses API answering `outputs` in turn. Like OpenAI (responses are stored by
 * default), it remembers which item followed each reasoning item it made, and refuses a
 * request that breaks a pair, with OpenAI's error body. Returns each request's `input`.
 */
function responsesApi(outputs: OutputItem[][]): InputItem[][] {
  const seen: InputItem[][] = [];
  const followerOf = new Map<string, string>();
  const reasoningOf = new Map<string, string>();
  const refuse = (message: string) =>
    errorResponse(400, {
      error: { message, type: "invalid_request_error", param: "input", code: null },
    });
  server.use(
    http.post(URL, async ({ request }) => {
      const body = (await request.json()) as { input: InputItem[] };
      seen.push(body.input);
      for (const [i, item] of body.input.entries()) {
        const follower = item.type === "reasoning" ? followerOf.get(item.id ?? "") : undefined;
        if (follower !== undefined && body.input[i + 1]?.id !== follower) {
          return refuse(
            `Item '${item.id}' of type 'reasoning' was provided without its required following item.`,
          );
        }
        const reasoning = item.id === undefined ? undefined : reasoningOf.get(item.id);
        if (reasoning !== undefined && body.input[i - 1]?.id !== reasoning) {
          return refuse(
            `Item '${item.id}' of type '${item.type ?? "message"}' was provided without its required 'reasoning' item: '${reasoning}'.`,
          );
        }
      }
      const output = outputs[seen.length - 1];
      if (output === undefined) return errorResponse(500, { error: { message: "unexpected" } });
      output.forEach((item, i) => {
        const next = output[i + 1];
        if (item.type === "reasoning" && next !== undefined) {
          followerOf.set(item.id, next.id);
          reasoningOf.set(next.id, item.id);
        }
      });
      return sseResponse(responseStream(`resp_${seen.length}`, output));
    }),
  );
  return seen;
}

const openai = () => createOpenAIProvider({ apiKey: "sk-test" });

async function startRuntime() {
  return runtimeOver(
    [openai()],
    {
      agents: [{ id: "main", model: "openai/o4-mini", thinking: "medium", tools: ["*"] }],
      tools: [weatherTool],
    },
    cleanups,
  );
}

const call = (id: string, callId: string): OutputItem => ({
  type: "function_call",
  id,
  call_id: callId,
  name: "get_weather",
  arguments: '{"city":"Oslo"}',
});

describe("OpenAI Responses reasoning sent back through the agent loop", () => {
  it("goes right before the call or text that followed it, which keeps its own id, turn after turn", async () => {
    const seen = responsesApi([
      [{ type: "reasoning", id: "rs_1", summary: "Need the weather." }, call("fc_1", "call_1")],
      [
        { type: "reasoning", id: "rs_2", summary: "Got it." },
        { type: "message", id: "msg_2", text: "21 °C in Oslo." },
      ],
      [{ type: "message", id: "msg_3", text: "You are welcome." }],
    ]);
    const runtime = await startRuntime();
    const session = runtime.session("agent:main:main");
    const first = await (await session.send("Weather in Oslo?")).result;
    expect(first.status, JSON.stringify(first.error)).toBe("completed");
    expect(first.text).toBe("21 °C in Oslo.");
    const second = await (await session.send("Thanks!")).result;
    expect(second.status, JSON.stringify(second.error)).toBe("completed");
    expect(second.text).toBe("You are welcome.");

    expect(seen).toHaveLength(3);
    const reasoning = (id: string, text: string) => ({
      type: "reasoning",
      id,
      summary: [{ type: "summary_text", text }],
    });
    const history = [
      { role: "user", content: [{ type: "input_text", text: "Weather in Oslo?" }] },
      reasoning("rs_1", "Need the weather."),
      {
        type: "function_call",
        id: "fc_1",
        call_id: "call_1",
        name: "get_weather",
        arguments: '{"city":"Oslo"}',
      },
      { type: "function_call_output", call_id: "call_1", output: '{"celsius":21}' },
    ];
    expect(seen[1]).toEqual(history);
    expect(seen[2]).toEqual([
      ...history,
      reasoning("rs_2", "Got it."),
      {
        type: "message",
        id: "msg_2",
        role: "assistant",
        status: "completed",
        content: [{ type: "output_text", text: "21 °C in Oslo.", annotations: [] }],
      },
      { role: "user", content: [{ type: "input_text", text: "Thanks!" }] },
    ]);
  });

  it("keeps the model's order when reasoning, text, more reasoning and a call came in one output", async () => {
    const seen = responsesApi([
      [
        { type: "reasoning", id: "rs_1", summary: "Say something first." },
        { type: "message", id: "msg_1", text: "Let me check." },
        { type: "reasoning", id: "rs_2", summary: "Now the tool." },
        call("fc_2", "call_2"),
      ],
      [{ type: "message", id: "msg_3", text: "21 °C." }],
    ]);
    const runtime = await startRuntime();
    const result = await (await runtime.session("agent:main:main").send("Weather?")).result;
    expect(result.status, JSON.stringify(result.error)).toBe("completed");
    expect(seen[1]?.map((item) => item.id ?? item.type ?? item.role)).toEqual([
      "user",
      "rs_1",
      "msg_1",
      "rs_2",
      "fc_2",
      "function_call_output",
    ]);
  });
});

describe("OpenAI Responses reasoning whose following item is not known", () => {
  it("is left out with an id alone, and sent without its id when it has its encrypted content", async () => {
    const seen = responsesApi([[{ type: "message", id: "msg_1", text: "ok" }]]);
    const history: ModelMessage[] = [
      userText("Weather?"),
      {
        role: "assistant",
        content: [
          // Saved before the following item was kept with the reasoning.
          { type: "thinking", text: "Plain.", signature: "rs_old" },
          { type: "thinking", text: "Sealed.", signature: "rs_enc", redacted: "gAAAA-enc" },
          { type: "tool-call", toolCallId: "call_1", toolName: "get_weather", input: {} },
        ],
      },
      {
        role: "tool",
        content: [
          { type: "tool-result", toolCallId: "call_1", toolName: "get_weather", output: 1 },
        ],
      },
    ];
    await collect(openai().stream({ model: "o4-mini", messages: history }));
    expect(seen[0]?.slice(1, 3)).toEqual([
      {
        type: "reasoning",
        summary: [{ type: "summary_text", text: "Sealed." }],
        encrypted_content: "gAAAA-enc",
      },
      { type: "function_call", call_id: "call_1", name: "get_weather", arguments: "{}" },
    ]);
  });

  it("a reasoning item that ends the output keeps its id alone in its signature", async () => {
    responsesApi([[{ type: "reasoning", id: "rs_last", summary: "Ran out." }]]);
    const events = await collect(openai().stream({ model: "o4-mini", messages: [userText("?")] }));
    expect(events.find((e) => e.type === "thinking-end")).toEqual({
      type: "thinking-end",
      signature: "rs_last",
    });
  });
});
