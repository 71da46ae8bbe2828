/**
 * What the session-layer benchmarks (`turns.mjs`, `sessions-memory.mjs`) share: the turn they
 * run, the tool it calls, a zero-latency in-process model provider, a local OpenAI-compatible
 * HTTP server (in a worker thread), the runtime set-up, and the bare hand-written loop that is
 * the baseline (the limit) for a turn.
 *
 * A turn: a user message; the model answers with one tool call (`weather`); the tool runs;
 * the model streams 20 text chunks; done.
 */
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { AgentRuntime, defineTool, MemoryStore, ProviderChain } from "@beamclaw/core";
import { createOpenAICompatibleProvider } from "@beamclaw/providers";
import { z } from "zod";

/** Text chunks streamed by the model in the second step of a turn. */
export const TEXT_CHUNKS = Object.freeze(
  Array.from({ length: 20 }, (_, i) => (i === 0 ? "It is 21 °C" : ` and sunny (${i})`)),
);

/** The user message of every turn. */
export const QUESTION = "What is the weather in Paris?";

/** The arguments of the tool call the model makes, as JSON. */
export const TOOL_ARGS_JSON = '{"city":"Paris"}';

/** The tool of every turn: validated by zod, answers at once. */
export const weatherTool = defineTool({
  name: "weather",
  description: "Current weather in a city",
  parameters: z.object({ city: z.string().min(1) }),
  execute: ({ city }) => ({ city, temperatureC: 21, sky: "sunny" }),
});

/** The tool as it is offered to the model. */
export const TOOL_DEFINITIONS = Object.freeze([
  {
    name: weatherTool.name,
    description: weatherTool.description,
    inputSchema: weatherTool.inputSchema,
  },
]);

const USAGE_TOOL = Object.freeze({ inputTokens: 60, outputTokens: 12 });
const USAGE_TEXT = Object.freeze({ inputTokens: 90, outputTokens: 40 });

/**
 * A zero-latency in-process `ModelProvider`: when the last message is not a tool result, it
 * streams one `weather` tool call; otherwise it streams the 20 text chunks. Usage is
 * reported as a real provider does.
 */
export function createInProcessProvider(id = "local") {
  let calls = 0;
  return {
    specificationVersion: "v1",
    id,
    async *stream(request) {
      const last = request.messages[request.messages.length - 1];
      yield { type: "response-start", model: request.model };
      if (last?.role !== "tool") {
        const toolCallId = `call_${++calls}`;
        yield { type: "tool-call-start", toolCallId, toolName: "weather" };
        yield { type: "tool-call-delta", toolCallId, inputTextDelta: TOOL_ARGS_JSON };
        yield { type: "tool-call", toolCallId, toolName: "weather", input: { city: "Paris" } };
        yield { type: "usage", usage: { ...USAGE_TOOL } };
        yield { type: "finish", reason: "tool-calls" };
        return;
      }
      for (const text of TEXT_CHUNKS) yield { type: "text-delta", text };
      yield { type: "usage", usage: { ...USAGE_TEXT } };
      yield { type: "finish", reason: "stop" };
    },
  };
}

/**
 * Starts the local OpenAI-compatible Chat Completions server (`openai-server.mjs`) in a
 * worker thread, so that its work runs beside the client as a real local server would.
 * Resolves with its base URL and a `close()` that stops the server and the worker.
 */
export async function startOpenAIServer() {
  const worker = new Worker(new URL("./openai-server.mjs", import.meta.url), {
    workerData: { toolArgs: TOOL_ARGS_JSON, chunks: TEXT_CHUNKS },
  });
  const [message] = await once(worker, "message");
  if (message?.type !== "listening") throw new Error(`server worker said ${String(message)}`);
  let closed = false;
  return {
    baseUrl: `http://127.0.0.1:${message.port}/v1`,
    async close() {
      if (closed) return;
      closed = true;
      const exited = once(worker, "exit");
      worker.postMessage({ type: "close" });
      await exited;
    },
  };
}

/** An `@beamclaw/providers` OpenAI-compatible provider for the local server. */
export function createHttpProvider(baseUrl, id = "local") {
  return createOpenAICompatibleProvider({ id, baseUrl });
}

/** The model ref every agent uses. */
export const MODEL_REF = "local/bench-model";
const MODEL_ID = "bench-model";

/** A `ProviderChain` (defaults: retries, circuit breaker) over one provider. */
export function chainOf(provider) {
  return new ProviderChain({ providers: [provider], models: [MODEL_REF] });
}

/** A `ModelSource` that calls the provider directly, without a chain. */
export function directSource(provider) {
  return {
    stream(request) {
      return provider.stream({ ...request, model: MODEL_ID });
    },
  };
}

/** Creates and starts a runtime over a fresh (or the given) memory store. */
export async function startRuntime({ models, store, ...options }) {
  const theStore = store ?? new MemoryStore();
  await theStore.open();
  const runtime = new AgentRuntime({
    store: theStore,
    models,
    agents: [{ id: "main", model: MODEL_REF, tools: ["weather"] }],
    tools: [weatherTool],
    ...options,
  });
  await runtime.start();
  return { runtime, store: theStore };
}

/** The key of the `i`-th benchmark session. */
export function sessionKey(prefix, i) {
  return `agent:main:${prefix}-${i}`;
}

/**
 * One turn through the runtime: sends the user message, consumes every event of the run
 * and awaits its result. Throws unless the turn ran as scripted.
 */
export async function runtimeTurn(session, text = QUESTION) {
  const run = await session.send(text);
  let chunks = 0;
  let toolResults = 0;
  for await (const event of run) {
    if (event.type === "text-delta") chunks++;
    else if (event.type === "tool-result") {
      if (event.isError) throw new Error(`the tool failed: ${JSON.stringify(event.output)}`);
      toolResults++;
    }
  }
  const result = await run.result;
  if (result.status !== "completed" || chunks !== TEXT_CHUNKS.length || toolResults !== 1) {
    throw new Error(
      `unexpected turn: status ${result.status}, ${chunks} chunks, ${toolResults} tool results${
        result.error ? ` (${result.error.code}: ${result.error.message})` : ""
      }`,
    );
  }
  return run;
}

/**
 * The baseline: the same turn written by hand over the same provider: stream, run the same
 * tool function, stream again. No actors, no store, no events, no chain. `history` is the
 * conversation (an array, mutated), trimmed to `historyLimit` messages from a user message as
 * the runtime trims it, so that both send the provider the same requests.
 */
export async function bareTurn(provider, history, historyLimit = 200) {
  history.push({
    role: "user",
    content: [{ type: "text", text: QUESTION }],
  });
  const toolCalls = [];
  for await (const event of provider.stream({
    model: MODEL_ID,
    messages: history,
    tools: TOOL_DEFINITIONS,
  })) {
    if (event.type === "tool-call") {
      toolCalls.push({
        type: "tool-call",
        toolCallId: event.toolCallId,
        toolName: event.toolName,
        input: event.input,
      });
    }
  }
  if (toolCalls.length !== 1) throw new Error(`bare loop: ${toolCalls.length} tool calls`);
  history.push({ role: "assistant", content: toolCalls });
  const call = toolCalls[0];
  const output = await weatherTool.execute(call.input, undefined);
  history.push({
    role: "tool",
    content: [
      { type: "tool-result", toolCallId: call.toolCallId, toolName: call.toolName, output },
    ],
  });
  let text = "";
  let chunks = 0;
  for await (const event of provider.stream({
    model: MODEL_ID,
    messages: history,
    tools: TOOL_DEFINITIONS,
  })) {
    if (event.type === "text-delta") {
      text += event.text;
      chunks++;
    }
  }
  if (chunks !== TEXT_CHUNKS.length) throw new Error(`bare loop: ${chunks} chunks`);
  history.push({ role: "assistant", content: [{ type: "text", text }] });
  if (history.length > historyLimit) {
    history.splice(0, history.length - historyLimit);
    const first = history.findIndex((m) => m.role === "user");
    if (first > 0) history.splice(0, first);
  }
}

/**
 * The events of one run as a caller reads them: pushed by the loop, read through an async
 * iterator by a concurrent consumer. The cheapest hand-written form of that contract (an
 * array and one waiting resolver, no generator), for {@link floorTurn}.
 */
class EventChannel {
  #events = [];
  #index = 0;
  #closed = false;
  #waiting = null;

  push(event) {
    this.#events.push(event);
    this.#wake();
  }

  close() {
    this.#closed = true;
    this.#wake();
  }

  #wake() {
    const waiting = this.#waiting;
    if (waiting === null) return;
    this.#waiting = null;
    waiting(this.#take());
  }

  #take() {
    if (this.#index < this.#events.length) {
      return { done: false, value: this.#events[this.#index++] };
    }
    return this.#closed ? { done: true, value: undefined } : null;
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => {
        const result = this.#take();
        if (result !== null) return Promise.resolve(result);
        return new Promise((resolve) => {
          this.#waiting = resolve;
        });
      },
    };
  }
}

/**
 * A provider call's options for {@link floorTurn}: the run's signal, made only if the
 * provider reads it (Node makes an `AbortController`'s signal on first read), as the runtime
 * does. A getter on the prototype, the cheapest form (the runtime's is an own property, so
 * that a spread of the options carries it).
 */
class FloorCallOptions {
  #controller;
  constructor(controller) {
    this.#controller = controller;
  }
  get signal() {
    return this.#controller.signal;
  }
}

/**
 * The state of one session for {@link floorTurn}: its history and the "stores" (maps of
 * JSON texts) its turns write to.
 */
export function floorSession(key) {
  return {
    key,
    topic: `session:${key}`,
    history: [],
    seq: 0,
    queue: new Map(),
    transcript: [],
    sessions: new Map(),
    subscribers: new Map(),
  };
}

/**
 * The floor of a turn under the session contract: the bare loop's work, plus the least the
 * issue's contract for a session turn asks beyond it, each part written by hand at its
 * cheapest: the message kept durably before it runs (a JSON copy in a map, removed when the
 * turn is done), a run that can be aborted (an `AbortController`, its signal handed to the
 * provider and made only if read), every event built as an
 * object, checked for subscribers on two PubSub topics (`session:<key>`, `events:global`)
 * and handed to a caller who reads them through an async iterator concurrently, each added
 * message saved (a JSON copy) before the loop goes on, and the session's counters saved at
 * the end. No actor, supervision, chain, retries, rate limits, tool validation, timeouts,
 * telemetry or usage meter: what a turn through the runtime costs beyond this floor is the
 * price of those; what this floor costs beyond the bare loop no implementation of the
 * contract can avoid.
 */
export async function floorTurn(provider, session, historyLimit = 200) {
  const { history, key } = session;
  const runId = `run-${++session.seq}`;
  session.queue.set(
    runId,
    JSON.stringify({ sessionKey: key, runId, payload: { input: { text: QUESTION } } }),
  );
  const controller = new AbortController();
  const options = new FloorCallOptions(controller);
  const channel = new EventChannel();
  const caller = (async () => {
    let chunks = 0;
    for await (const event of channel) if (event.type === "text-delta") chunks++;
    return chunks;
  })();
  const emit = (event) => {
    channel.push(event);
    if (session.subscribers.has(session.topic)) throw new Error("no subscribers expected");
    if (session.subscribers.has("events:global")) throw new Error("no subscribers expected");
  };
  const save = async (message) => {
    history.push(message);
    session.transcript.push(JSON.stringify({ runId, at: Date.now(), message }));
  };
  emit({ runId, sessionKey: key, type: "run-start", at: Date.now() });
  await save({ role: "user", content: [{ type: "text", text: QUESTION }] });
  const toolCalls = [];
  for await (const event of provider.stream(
    {
      model: MODEL_ID,
      messages: history,
      tools: TOOL_DEFINITIONS,
    },
    options,
  )) {
    if (event.type === "tool-call") {
      const call = {
        type: "tool-call",
        toolCallId: event.toolCallId,
        toolName: event.toolName,
        input: event.input,
      };
      toolCalls.push(call);
      emit({ runId, sessionKey: key, type: "tool-call", ...call });
    } else if (event.type === "usage") {
      emit({ runId, sessionKey: key, type: "usage", usage: event.usage });
    }
  }
  if (toolCalls.length !== 1) throw new Error(`floor loop: ${toolCalls.length} tool calls`);
  await save({ role: "assistant", content: toolCalls });
  const call = toolCalls[0];
  const output = await weatherTool.execute(call.input, undefined);
  emit({ runId, sessionKey: key, type: "tool-result", toolCallId: call.toolCallId, output });
  await save({
    role: "tool",
    content: [
      { type: "tool-result", toolCallId: call.toolCallId, toolName: call.toolName, output },
    ],
  });
  let text = "";
  for await (const event of provider.stream(
    {
      model: MODEL_ID,
      messages: history,
      tools: TOOL_DEFINITIONS,
    },
    options,
  )) {
    if (event.type === "text-delta") {
      text += event.text;
      emit({ runId, sessionKey: key, type: "text-delta", text: event.text });
    } else if (event.type === "usage") {
      emit({ runId, sessionKey: key, type: "usage", usage: event.usage });
    }
  }
  await save({ role: "assistant", content: [{ type: "text", text }] });
  if (history.length > historyLimit) {
    history.splice(0, history.length - historyLimit);
    const first = history.findIndex((m) => m.role === "user");
    if (first > 0) history.splice(0, first);
  }
  session.sessions.set(
    key,
    JSON.stringify({ key, updatedAt: Date.now(), runs: session.seq, inputTokens: 150 }),
  );
  session.queue.delete(runId);
  emit({ runId, sessionKey: key, type: "run-end", result: { runId, status: "completed", text } });
  channel.close();
  const chunks = await caller;
  if (chunks !== TEXT_CHUNKS.length) throw new Error(`floor loop: ${chunks} chunks`);
}
