/**
 * `runAgentLoop`: one turn of the agent loop driven directly, with a scripted model source
 * written in the test and a real `BasicToolRunner`.
 */
import { describe, expect, it } from "vitest";
import { AbortedError, ProviderError } from "../src/errors.js";
import { createProviderChain } from "../src/providers/chain.js";
import { INTERRUPTED_TOOL_OUTPUT } from "../src/providers/tool-results.js";
import type {
  JsonValue,
  ModelCallOptions,
  ModelMessage,
  ModelProvider,
  ModelRequest,
  ModelUsage,
  ToolCallPart,
  ToolResultPart,
} from "../src/providers/types.js";
import {
  type AgentDefinition,
  type AgentLoopInput,
  type AgentTool,
  BasicToolRunner,
  type ModelSource,
  type PersistOptions,
  promptCacheKey,
  type RunEvent,
  runAgentLoop,
  type UserMessageInput,
} from "../src/sessions/index.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { type Deferred, deferred } from "./support.js";

// ------------------------------------------------------------------ scripted model source

type SourceEvent = { type: string; [key: string]: unknown };
type SourceOptions = ModelCallOptions & { models: string[] };
interface SourceCall {
  request: Omit<ModelRequest, "model">;
  options: SourceOptions;
}
/** One scripted model call: a list of events, or a generator of them (may wait on gates). */
type Reply = SourceEvent[] | ((call: SourceCall) => AsyncGenerator<SourceEvent, void, undefined>);

/** A model source that plays one reply per call and records every request. */
class ScriptedSource implements ModelSource {
  readonly calls: SourceCall[] = [];
  readonly #replies: Reply[];

  constructor(replies: Reply[]) {
    this.#replies = replies;
  }

  async *stream(
    request: Omit<ModelRequest, "model">,
    options: SourceOptions,
  ): AsyncGenerator<SourceEvent, void, undefined> {
    const call = { request, options };
    this.calls.push(call);
    const reply = this.#replies[this.calls.length - 1];
    if (reply === undefined) throw new Error(`no scripted reply for call ${this.calls.length}`);
    if (typeof reply === "function") {
      yield* reply(call);
      return;
    }
    for (const event of reply) {
      if (options.signal?.aborted) throw options.signal.reason;
      yield event;
    }
  }
}

const text = (t: string): SourceEvent => ({ type: "text-delta", text: t });
const toolCall = (toolCallId: string, toolName: string, input: JsonValue = {}): SourceEvent => ({
  type: "tool-call",
  toolCallId,
  toolName,
  input,
});
const usage = (u: ModelUsage): SourceEvent => ({ type: "usage", usage: u });
const finish = (reason = "stop"): SourceEvent => ({ type: "finish", reason });

/** Waits for `promise`, or rejects with the signal's reason when it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal?.reason ?? new AbortedError("aborted"));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal?.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

// ------------------------------------------------------------------ harness

interface Harness {
  events: RunEvent[];
  persisted: ModelMessage[];
  steered: UserMessageInput[];
  controller: AbortController;
}

function tool(name: string, execute: AgentTool["execute"]): AgentTool {
  return { name, description: `the ${name} tool`, inputSchema: { type: "object" }, execute };
}

const AGENT: AgentDefinition = { id: "main", model: "prov/model-a", tools: ["*"] };

/** Runs the loop with sensible defaults; `patch` overrides any input. */
function run(
  source: ModelSource,
  patch: Partial<AgentLoopInput> & { tools?: AgentLoopInput["tools"] } = {},
  onEvent?: (event: RunEvent, h: Harness) => void,
) {
  const h: Harness = {
    events: [],
    persisted: [],
    steered: [],
    controller: new AbortController(),
  };
  const input: AgentLoopInput = {
    runId: "run-1",
    sessionKey: "agent:main:main",
    agent: AGENT,
    models: ["prov/model-a"],
    history: [],
    inputs: [{ text: "hello" }],
    source,
    tools: new BasicToolRunner(),
    signal: h.controller.signal,
    emit: (event) => {
      h.events.push(event);
      onEvent?.(event, h);
    },
    persist: async (message) => {
      h.persisted.push(message);
    },
    takeSteered: () => h.steered.splice(0),
    ...patch,
  };
  return { h, result: runAgentLoop(input) };
}

const types = (events: RunEvent[]) => events.map((e) => e.type);
const userText = (m: ModelMessage | undefined) =>
  m?.role === "user" ? m.content.map((p) => (p.type === "text" ? p.text : "")).join("") : undefined;

// ------------------------------------------------------------------ tests

describe("runAgentLoop: answers and tools", () => {
  it("a reply without tool calls is the final answer: deltas streamed, messages persisted in order", async () => {
    const source = new ScriptedSource([[text("Hel"), text("lo!"), finish()]]);
    const { h, result } = run(source);
    const r = await result;
    expect(r).toMatchObject({
      runId: "run-1",
      sessionKey: "agent:main:main",
      status: "completed",
      text: "Hello!",
      steps: 1,
    });
    expect(r.error).toBeUndefined();
    expect(h.events.filter((e) => e.type === "text-delta").map((e) => e.text)).toEqual([
      "Hel",
      "lo!",
    ]);
    expect(h.events.every((e) => e.runId === "run-1" && e.sessionKey === "agent:main:main")).toBe(
      true,
    );
    const expected: ModelMessage[] = [
      { role: "user", content: [{ type: "text", text: "hello" }] },
      { role: "assistant", content: [{ type: "text", text: "Hello!" }] },
    ];
    expect(h.persisted).toEqual(expected);
    expect(r.messages).toEqual(expected);
    expect(source.calls).toHaveLength(1);
    expect(source.calls[0]!.request.messages).toEqual([expected[0]]);
  });

  it("the history comes before this run's inputs and is not persisted again", async () => {
    const history: ModelMessage[] = [
      { role: "user", content: [{ type: "text", text: "earlier" }] },
      { role: "assistant", content: [{ type: "text", text: "noted" }] },
    ];
    const source = new ScriptedSource([[text("ok")]]);
    const { h, result } = run(source, { history, inputs: [{ text: "a" }, { text: "b" }] });
    await result;
    expect(source.calls[0]!.request.messages.map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "user",
      "user",
    ]);
    expect(userText(source.calls[0]!.request.messages[3])).toBe("b");
    expect(h.persisted.map(userText).slice(0, 2)).toEqual(["a", "b"]);
    expect(h.persisted).toHaveLength(3);
  });

  it("the source gets the signal, the model list, and the agent's request settings", async () => {
    const source = new ScriptedSource([[text("ok")]]);
    const agent: AgentDefinition = {
      ...AGENT,
      thinking: "low",
      maxOutputTokens: 321,
      temperature: 0.25,
    };
    const { h, result } = run(source, { agent, models: ["prov/model-a", "backup/model-b"] });
    await result;
    const call = source.calls[0]!;
    expect(call.options.signal).toBe(h.controller.signal);
    expect(call.options.models).toEqual(["prov/model-a", "backup/model-b"]);
    expect(call.request).toMatchObject({
      thinking: "low",
      maxOutputTokens: 321,
      temperature: 0.25,
    });

    // A per-run thinking level wins over the agent's.
    const source2 = new ScriptedSource([[text("ok")]]);
    await run(source2, { agent, thinking: "high" }).result;
    expect(source2.calls[0]!.request.thinking).toBe("high");
  });

  it("a tool call runs and its result is fed back to the model at the next step", async () => {
    const inputs: JsonValue[] = [];
    const add = tool("add", (input) => {
      inputs.push(input);
      const { a, b } = input as { a: number; b: number };
      return a + b;
    });
    const source = new ScriptedSource([
      [text("Adding."), toolCall("c1", "add", { a: 2, b: 3 }), finish("tool-calls")],
      [text("It is 5.")],
    ]);
    const { h, result } = run(source, { tools: new BasicToolRunner({ tools: [add] }) });
    const r = await result;
    expect(r.status).toBe("completed");
    expect(r.text).toBe("It is 5.");
    expect(r.steps).toBe(2);
    expect(inputs).toEqual([{ a: 2, b: 3 }]);
    expect(source.calls[0]!.request.tools).toEqual([
      { name: "add", description: "the add tool", inputSchema: { type: "object" } },
    ]);
    const second = source.calls[1]!.request.messages;
    expect(second.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
    expect(second[1]).toEqual({
      role: "assistant",
      content: [
        { type: "text", text: "Adding." },
        { type: "tool-call", toolCallId: "c1", toolName: "add", input: { a: 2, b: 3 } },
      ],
    });
    expect(second[2]).toEqual({
      role: "tool",
      content: [{ type: "tool-result", toolCallId: "c1", toolName: "add", output: 5 }],
    });
    // Everything the second request carries was persisted before the request was made.
    expect(h.persisted.slice(0, 3)).toEqual(second);
    expect(types(h.events)).toEqual(["text-delta", "tool-call", "tool-result", "text-delta"]);
    expect(h.events[2]).toMatchObject({
      type: "tool-result",
      toolCallId: "c1",
      toolName: "add",
      output: 5,
      isError: false,
    });
  });

  it("tool calls made in one step run in parallel", async () => {
    let running = 0;
    let maxRunning = 0;
    const bothStarted = deferred();
    const slow = (name: string) =>
      tool(name, async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        if (running === 2) bothStarted.resolve();
        // If the calls ran one after the other, the barrier would never open: give up then.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          bothStarted.promise,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, 1_000);
          }),
        ]);
        clearTimeout(timer);
        running--;
        return name;
      });
    const source = new ScriptedSource([
      [toolCall("a", "left"), toolCall("b", "right")],
      [text("done")],
    ]);
    const { result } = run(source, {
      tools: new BasicToolRunner({ tools: [slow("left"), slow("right")] }),
    });
    const r = await result;
    expect(maxRunning).toBe(2);
    expect(r.status).toBe("completed");
    // Both results go back in one tool message, in call order.
    expect(source.calls[1]!.request.messages.at(-1)).toEqual({
      role: "tool",
      content: [
        { type: "tool-result", toolCallId: "a", toolName: "left", output: "left" },
        { type: "tool-result", toolCallId: "b", toolName: "right", output: "right" },
      ],
    });
  });

  it("a tool the agent was not offered returns an error result and never executes", async () => {
    let secretRuns = 0;
    const tools = new BasicToolRunner({
      tools: [
        tool("allowed", () => "fine"),
        tool("secret", () => {
          secretRuns++;
          return "leaked";
        }),
      ],
    });
    const agent: AgentDefinition = { ...AGENT, tools: ["allowed"] };
    const source = new ScriptedSource([[toolCall("x", "secret", {})], [text("sorry")]]);
    const { h, result } = run(source, { agent, tools });
    const r = await result;
    expect(source.calls[0]!.request.tools?.map((t) => t.name)).toEqual(["allowed"]);
    expect(secretRuns).toBe(0);
    expect(r.status).toBe("completed");
    const fedBack = source.calls[1]!.request.messages.at(-1) as {
      content: ToolResultPart[];
    };
    expect(fedBack.content[0]).toMatchObject({ toolName: "secret", isError: true });
    expect(String(fedBack.content[0]!.output)).toContain("not available");
    expect(h.events.find((e) => e.type === "tool-result")).toMatchObject({ isError: true });
  });

  it("an agent without a tools list is offered no tools", async () => {
    const source = new ScriptedSource([[text("ok")]]);
    await run(source, {
      agent: { id: "main", model: "prov/model-a" },
      tools: new BasicToolRunner({ tools: [tool("t", () => 1)] }),
    }).result;
    expect(source.calls[0]!.request.tools).toBeUndefined();
  });

  it("a failing tool becomes an error result the model sees, and the run goes on", async () => {
    const tools = new BasicToolRunner({
      tools: [
        tool("disk", () => {
          throw new Error("disk full");
        }),
      ],
    });
    const source = new ScriptedSource([[toolCall("d1", "disk")], [text("the disk is full")]]);
    const { result } = run(source, { tools });
    const r = await result;
    expect(r.status).toBe("completed");
    expect(r.text).toBe("the disk is full");
    const fedBack = source.calls[1]!.request.messages.at(-1) as { content: ToolResultPart[] };
    expect(fedBack.content[0]).toMatchObject({ toolCallId: "d1", isError: true });
    expect(String(fedBack.content[0]!.output)).toContain("disk full");
  });

  it("the run stops with status max-steps after maxSteps model calls", async () => {
    let toolRuns = 0;
    const tools = new BasicToolRunner({ tools: [tool("again", () => ++toolRuns)] });
    const loopForever: Reply = async function* () {
      yield text("more");
      yield toolCall(`c${Math.random()}`, "again");
    };
    const source = new ScriptedSource([loopForever, loopForever, loopForever, loopForever]);
    const { result } = run(source, { tools, agent: { ...AGENT, maxSteps: 3 } });
    const r = await result;
    expect(r.status).toBe("max-steps");
    expect(r.steps).toBe(3);
    expect(source.calls).toHaveLength(3);
    expect(toolRuns).toBe(3);
    // The last step's tool result is still part of the run.
    expect(r.messages.at(-1)?.role).toBe("tool");
  });

  it("the system prompt and skills are joined into one system text", async () => {
    const source = new ScriptedSource([[text("ok")], [text("ok")], [text("ok")]]);
    await run(source, {
      agent: { ...AGENT, systemPrompt: "You are terse.", skills: ["Skill A.", "", "Skill B."] },
    }).result;
    expect(source.calls[0]!.request.system).toBe("You are terse.\n\nSkill A.\n\nSkill B.");

    await run(source, { agent: { ...AGENT, skills: ["Only a skill."] } }).result;
    expect(source.calls[1]!.request.system).toBe("Only a skill.");

    await run(source, { agent: { ...AGENT } }).result;
    expect("system" in source.calls[2]!.request).toBe(false);
  });

  it("thinking parts are kept with their signatures and sent back on the next step", async () => {
    const tools = new BasicToolRunner({ tools: [tool("look", () => "seen")] });
    const source = new ScriptedSource([
      [
        { type: "thinking-delta", text: "let me " },
        { type: "thinking-delta", text: "look" },
        { type: "thinking-end", signature: "sig-1" },
        { type: "thinking-end", redacted: "opaque" },
        // Whose signature it is, when the adapter says so (Gemini's thought signatures).
        { type: "thinking-end", signature: "sig-g", format: "google" },
        toolCall("l1", "look"),
      ],
      [{ type: "thinking-delta", text: "done thinking" }, text("answer")],
    ]);
    const { h, result } = run(source, { tools });
    const r = await result;
    const firstAssistant = source.calls[1]!.request.messages[1];
    expect(firstAssistant).toEqual({
      role: "assistant",
      content: [
        { type: "thinking", text: "let me look", signature: "sig-1" },
        { type: "thinking", text: "", redacted: "opaque" },
        { type: "thinking", text: "", signature: "sig-g", format: "google" },
        { type: "tool-call", toolCallId: "l1", toolName: "look", input: {} },
      ],
    });
    // Thinking without a thinking-end is still kept, before the text.
    expect(r.messages.at(-1)).toEqual({
      role: "assistant",
      content: [
        { type: "thinking", text: "done thinking" },
        { type: "text", text: "answer" },
      ],
    });
    expect(r.text).toBe("answer");
    expect(h.events.filter((e) => e.type === "thinking-delta").map((e) => e.text)).toEqual([
      "let me ",
      "look",
      "done thinking",
    ]);
  });

  it("usage is summed over the steps and priced by the cost function", async () => {
    const tools = new BasicToolRunner({ tools: [tool("t", () => 1)] });
    const source = new ScriptedSource([
      [
        toolCall("t1", "t"),
        usage({ inputTokens: 1, outputTokens: 1 }),
        // The last usage event of a call wins.
        usage({ inputTokens: 100, outputTokens: 10, cacheReadTokens: 40 }),
      ],
      [
        text("ok"),
        usage({ inputTokens: 200, outputTokens: 20, cacheWriteTokens: 5, cacheWrite1hTokens: 3 }),
      ],
    ]);
    const priced: Array<[string, ModelUsage]> = [];
    const cost = (ref: string, u: ModelUsage) => {
      priced.push([ref, u]);
      return u.inputTokens / 1000 + u.outputTokens / 100;
    };
    const { h, result } = run(source, { tools, cost });
    const r = await result;
    expect(r.usage).toEqual({
      inputTokens: 300,
      outputTokens: 30,
      cacheReadTokens: 40,
      cacheWriteTokens: 5,
      cacheWrite1hTokens: 3,
    });
    expect(r.costUsd).toBeCloseTo(0.1 + 0.1 + 0.2 + 0.2, 10);
    expect(priced.map(([ref]) => ref)).toEqual(["prov/model-a", "prov/model-a"]);
    const usageEvents = h.events.filter((e) => e.type === "usage");
    expect(usageEvents).toHaveLength(2);
    expect(usageEvents[0]).toMatchObject({
      provider: "prov",
      model: "model-a",
      usage: { inputTokens: 100, outputTokens: 10, cacheReadTokens: 40 },
    });
    expect(usageEvents[0]!.costUsd).toBeCloseTo(0.2, 10);
    expect(usageEvents[1]!.costUsd).toBeCloseTo(0.4, 10);
  });

  it("a step without usage adds nothing and is not priced", async () => {
    let priced = 0;
    const source = new ScriptedSource([[text("ok")]]);
    const { h, result } = run(source, { cost: () => ++priced });
    const r = await result;
    expect(r.usage).toEqual({ inputTokens: 0, outputTokens: 0 });
    expect(r.costUsd).toBe(0);
    expect(priced).toBe(0);
    expect(h.events.some((e) => e.type === "usage")).toBe(false);
  });
});

describe("runAgentLoop: aborts and failures", () => {
  it("abort mid-stream ends the run with status aborted and no error event", async () => {
    const never = deferred();
    let sawAbort = false;
    const source = new ScriptedSource([
      async function* ({ options }) {
        yield text("partial");
        try {
          await untilAborted(never.promise, options.signal);
        } finally {
          sawAbort = options.signal?.aborted === true;
        }
      },
    ]);
    const { h, result } = run(source, {}, (event, harness) => {
      if (event.type === "text-delta") harness.controller.abort(new AbortedError("user abort"));
    });
    const r = await result;
    expect(r.status).toBe("aborted");
    expect(r.error).toBeUndefined();
    expect(sawAbort).toBe(true);
    expect(h.events.some((e) => e.type === "error")).toBe(false);
    expect(source.calls).toHaveLength(1);
  });

  it("abort mid-tool aborts the tool's signal and ends the run aborted without another model call", async () => {
    const started = deferred();
    let toolSignal: AbortSignal | undefined;
    const tools = new BasicToolRunner({
      tools: [
        tool("wait", async (_input, ctx) => {
          toolSignal = ctx.signal;
          started.resolve();
          await untilAborted(new Promise(() => {}), ctx.signal);
          return "never";
        }),
      ],
    });
    const source = new ScriptedSource([[toolCall("w", "wait")], [text("unreachable")]]);
    const { h, result } = run(source, { tools });
    await started.promise;
    h.controller.abort(new AbortedError("stop"));
    const r = await result;
    expect(r.status).toBe("aborted");
    expect(toolSignal?.aborted).toBe(true);
    expect(source.calls).toHaveLength(1);
    expect(h.events.some((e) => e.type === "error")).toBe(false);
    // The call is answered as interrupted (saved too): no model API takes an unanswered call.
    const results = h.events.filter((e) => e.type === "tool-result");
    expect(results).toEqual([
      expect.objectContaining({ toolCallId: "w", isError: true, output: INTERRUPTED_TOOL_OUTPUT }),
    ]);
    expect(r.messages.at(-1)).toMatchObject({
      role: "tool",
      content: [{ toolCallId: "w", isError: true, output: INTERRUPTED_TOOL_OUTPUT }],
    });
  });

  it("a tool call is never executed once the run is aborted", async () => {
    // The abort lands while the last event of the step is being handled; the stream then
    // ends normally (it had nothing more to yield, so it never looked at the signal).
    let executed = 0;
    const tools = new BasicToolRunner({ tools: [tool("rm", () => ++executed)] });
    const source = new ScriptedSource([[toolCall("r1", "rm")], [text("unreachable")]]);
    const { h, result } = run(source, { tools }, (event, harness) => {
      if (event.type === "tool-call") harness.controller.abort(new AbortedError("stop"));
    });
    const r = await result;
    expect(r.status).toBe("aborted");
    expect(executed).toBe(0);
    // Never run: answered as interrupted, not with a result of its own.
    expect(h.events.filter((e) => e.type === "tool-result")).toEqual([
      expect.objectContaining({ toolCallId: "r1", isError: true, output: INTERRUPTED_TOOL_OUTPUT }),
    ]);
  });

  it("an already aborted signal ends the run before any model call", async () => {
    const source = new ScriptedSource([[text("unreachable")]]);
    const controller = new AbortController();
    controller.abort(new AbortedError("early"));
    const r = await run(source, { signal: controller.signal }).result;
    expect(r.status).toBe("aborted");
    expect(source.calls).toHaveLength(0);
  });

  it("a provider error ends the run with status failed and an error event", async () => {
    const source = new ScriptedSource([
      async function* () {
        yield text("half");
        throw new ProviderError("upstream 500", { kind: "server", provider: "prov" });
      },
    ]);
    const { h, result } = run(source);
    const r = await result;
    expect(r.status).toBe("failed");
    expect(r.error).toEqual({ code: "PROVIDER_ERROR", message: "upstream 500" });
    const errors = h.events.filter((e) => e.type === "error");
    expect(errors).toEqual([
      {
        runId: "run-1",
        sessionKey: "agent:main:main",
        type: "error",
        error: { code: "PROVIDER_ERROR", message: "upstream 500" },
      },
    ]);
  });

  it("an error without a code is reported as INTERNAL", async () => {
    const source = new ScriptedSource([
      // biome-ignore lint/correctness/useYield: a source that fails before its first event
      async function* () {
        throw new TypeError("bad json");
      },
    ]);
    const r = await run(source).result;
    expect(r.status).toBe("failed");
    expect(r.error).toEqual({ code: "INTERNAL", message: "bad json" });
  });

  it("a failed persist ends the run failed: no step goes on unsaved", async () => {
    const source = new ScriptedSource([[toolCall("t1", "t")], [text("unreachable")]]);
    let writes = 0;
    const r = await run(source, {
      tools: new BasicToolRunner({ tools: [tool("t", () => 1)] }),
      persist: async () => {
        writes++;
        if (writes === 2) throw new Error("store down");
      },
    }).result;
    expect(r.status).toBe("failed");
    expect(r.error?.message).toBe("store down");
    expect(source.calls).toHaveLength(1);
  });
});

describe("runAgentLoop: provider chain events", () => {
  it("attempt-start names the model that answers: usage provider/model and cost follow it", async () => {
    const refs: string[] = [];
    const source = new ScriptedSource([
      [
        { type: "attempt-start", ref: "backup/model-b", attempt: 1 },
        text("hi"),
        usage({ inputTokens: 3, outputTokens: 4 }),
        { type: "some-future-chain-event", detail: 1 },
      ],
    ]);
    const { h, result } = run(source, {
      cost: (ref) => {
        refs.push(ref);
        return 1;
      },
    });
    const r = await result;
    expect(r.status).toBe("completed");
    expect(refs).toEqual(["backup/model-b"]);
    expect(h.events.find((e) => e.type === "usage")).toMatchObject({
      provider: "backup",
      model: "model-b",
      costUsd: 1,
    });
  });

  it("attempt-failed with discardOutput emits text-reset and the discarded text is not in the final message", async () => {
    const source = new ScriptedSource([
      [
        { type: "attempt-start", ref: "prov/model-a", attempt: 1 },
        text("garbled partial "),
        { type: "thinking-delta", text: "half a thought" },
        toolCall("lost", "t", {}),
        {
          type: "attempt-failed",
          ref: "prov/model-a",
          discardOutput: true,
          error: new Error("connection reset"),
        },
        { type: "attempt-start", ref: "backup/model-b", attempt: 1 },
        text("clean answer"),
      ],
    ]);
    let toolRuns = 0;
    const { h, result } = run(source, {
      tools: new BasicToolRunner({ tools: [tool("t", () => ++toolRuns)] }),
    });
    const r = await result;
    expect(types(h.events)).toEqual([
      "text-delta",
      "thinking-delta",
      "tool-call",
      "text-reset",
      "text-delta",
    ]);
    expect(h.events[3]).toMatchObject({ type: "text-reset", reason: "connection reset" });
    expect(r.text).toBe("clean answer");
    expect(r.messages.at(-1)).toEqual({
      role: "assistant",
      content: [{ type: "text", text: "clean answer" }],
    });
    expect(JSON.stringify(h.persisted)).not.toContain("garbled");
    expect(JSON.stringify(h.persisted)).not.toContain("half a thought");
    expect(toolRuns).toBe(0);
  });

  it("attempt-failed without discardOutput keeps what was streamed", async () => {
    const source = new ScriptedSource([
      [
        text("kept "),
        { type: "attempt-failed", ref: "prov/model-a", error: new Error("x") },
        text("text"),
      ],
    ]);
    const { h, result } = run(source);
    const r = await result;
    expect(r.text).toBe("kept text");
    expect(h.events.some((e) => e.type === "text-reset")).toBe(false);
  });
});

describe("runAgentLoop: through a ProviderChain (its push-mode stream)", () => {
  it("streams, runs a tool and answers: its events in order, usage summed, the result fed back", async () => {
    const model = createScriptedProvider({
      id: "prov",
      responses: [
        {
          text: "Adding.",
          toolCalls: [{ toolName: "add", input: { a: 2, b: 3 } }],
          usage: { inputTokens: 10, outputTokens: 4 },
        },
        { text: ["It ", "is ", "5."], usage: { inputTokens: 20, outputTokens: 3 } },
      ],
    });
    const add = tool("add", (input) => (input as { a: number }).a + (input as { b: number }).b);
    const { h, result } = run(createProviderChain({ providers: [model] }), {
      tools: new BasicToolRunner({ tools: [add] }),
    });
    const r = await result;
    expect(r.status).toBe("completed");
    expect(r.text).toBe("It is 5.");
    expect(r.usage).toEqual({ inputTokens: 30, outputTokens: 7 });
    expect(types(h.events)).toEqual([
      "text-delta",
      "tool-call",
      "usage",
      "tool-result",
      "text-delta",
      "text-delta",
      "text-delta",
      "usage",
    ]);
    expect(h.events[3]).toMatchObject({ type: "tool-result", output: 5, isError: false });
    expect(h.events[2]).toMatchObject({ provider: "prov", model: "model-a" });
    expect(model.requests[1]!.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
  });

  it("a failover after partial output resets the text, and only the new answer is kept", async () => {
    const flaky = createScriptedProvider({
      id: "prov",
      responses: [
        {
          text: ["garbled ", "partial"],
          error: new ProviderError("connection reset", { kind: "network", provider: "prov" }),
        },
      ],
    });
    const backup = createScriptedProvider({
      id: "backup",
      responses: [{ text: "clean answer", usage: { inputTokens: 5, outputTokens: 2 } }],
    });
    const chain = createProviderChain({
      providers: [flaky, backup],
      retry: { maxAttempts: 1 },
    });
    const { h, result } = run(chain, { models: ["prov/model-a", "backup/model-b"] });
    const r = await result;
    expect(r.status).toBe("completed");
    expect(types(h.events)).toEqual([
      "text-delta",
      "text-delta",
      "text-reset",
      "text-delta",
      "usage",
    ]);
    expect(h.events.at(-1)).toMatchObject({ provider: "backup", model: "model-b" });
    expect(r.text).toBe("clean answer");
    expect(JSON.stringify(h.persisted)).not.toContain("garbled");
  });

  it("a failed attempt's usage is counted and priced on its own ref, not on the fallback's", async () => {
    const flaky = createScriptedProvider({
      id: "prov",
      responses: [
        {
          events: [
            { type: "usage", usage: { inputTokens: 100, outputTokens: 3 } },
            {
              type: "error",
              error: new ProviderError("overloaded", { kind: "overloaded", provider: "prov" }),
            },
          ],
        },
        {
          events: [
            { type: "usage", usage: { inputTokens: 100, outputTokens: 0 } },
            {
              type: "error",
              error: new ProviderError("overloaded", { kind: "overloaded", provider: "prov" }),
            },
          ],
        },
      ],
    });
    const backup = createScriptedProvider({ id: "backup", responses: ["answer without usage"] });
    const chain = createProviderChain({ providers: [flaky, backup], retry: { maxAttempts: 1 } });
    // A dollar per input token on prov, nothing on backup: a misattribution shows in the cost.
    const cost = (ref: string, u: ModelUsage) => (ref === "prov/model-a" ? u.inputTokens : 0);
    const first = run(chain, { models: ["prov/model-a", "backup/model-b"], cost });
    const r1 = await first.result;
    expect(r1.status).toBe("completed");
    expect(first.h.events.filter((e) => e.type === "usage")).toEqual([
      expect.objectContaining({
        provider: "prov",
        model: "model-a",
        usage: { inputTokens: 100, outputTokens: 3 },
        costUsd: 100,
      }),
    ]);
    expect(r1.usage).toMatchObject({ inputTokens: 100, outputTokens: 3 });
    expect(r1.costUsd).toBe(100);

    // The fallback reports usage too: both calls are counted, each on its own ref, and the
    // answer's saved usage is the answering call's alone.
    backup.push({ text: "answer", usage: { inputTokens: 7, outputTokens: 2 } });
    const saved: Array<PersistOptions | undefined> = [];
    const second = run(chain, {
      models: ["prov/model-a", "backup/model-b"],
      cost,
      persist: async (_message, options) => {
        saved.push(options);
      },
    });
    const r2 = await second.result;
    expect(
      second.h.events.flatMap((e) => (e.type === "usage" ? [[e.provider, e.usage]] : [])),
    ).toEqual([
      ["prov", { inputTokens: 100, outputTokens: 0 }],
      ["backup", { inputTokens: 7, outputTokens: 2 }],
    ]);
    expect(r2.usage).toMatchObject({ inputTokens: 107, outputTokens: 2 });
    expect(r2.costUsd).toBe(100);
    expect(saved.at(-1)?.usage).toMatchObject({
      provider: "backup",
      inputTokens: 7,
      outputTokens: 2,
      costUsd: 0,
    });
  });

  it("a source that fails after reporting usage still counts it in the failed run", async () => {
    const source: ModelSource = {
      async *stream() {
        yield { type: "usage", usage: { inputTokens: 40, outputTokens: 1 } };
        throw new ProviderError("stream cut", { kind: "network", provider: "prov" });
      },
    };
    const { h, result } = run(source, { cost: (_ref, u) => u.inputTokens / 10 });
    const r = await result;
    expect(r.status).toBe("failed");
    expect(r.usage).toMatchObject({ inputTokens: 40, outputTokens: 1 });
    expect(r.costUsd).toBe(4);
    expect(types(h.events)).toEqual(["usage", "error"]);
  });

  it("an abort while the provider streams ends the run aborted, without an error event", async () => {
    const gate = deferred();
    const slow: ModelProvider = {
      specificationVersion: "v1",
      id: "prov",
      async *stream(_request, options) {
        yield { type: "text-delta", text: "start" };
        await untilAborted(gate.promise, options?.signal);
        yield { type: "text-delta", text: "never" };
      },
    };
    const { h, result } = run(
      createProviderChain({ providers: [slow] }),
      undefined,
      (event, hh) => {
        if (event.type === "text-delta") hh.controller.abort();
      },
    );
    const r = await result;
    expect(r.status).toBe("aborted");
    expect(types(h.events)).toEqual(["text-delta"]);
  });
});

describe("runAgentLoop: the requests", () => {
  it("each request keeps its own messages: the history as the run began plus what it added", async () => {
    // As a session does: every message persisted goes into the history array it passed in,
    // which is trimmed to a limit, so that array changes while the run goes on.
    const history: ModelMessage[] = [
      { role: "user", content: [{ type: "text", text: "earlier" }] },
      { role: "assistant", content: [{ type: "text", text: "noted" }] },
    ];
    const add = tool("add", () => 5);
    const source = new ScriptedSource([
      [toolCall("c1", "add", { a: 2, b: 3 }), finish("tool-calls")],
      [toolCall("c2", "add", { a: 1, b: 1 }), finish("tool-calls")],
      [text("done")],
    ]);
    const { result } = run(source, {
      history,
      tools: new BasicToolRunner({ tools: [add] }),
      persist: async (message) => {
        history.push(message);
        if (history.length > 3) history.splice(0, history.length - 3);
      },
    });
    expect((await result).status).toBe("completed");
    const roles = source.calls.map((call) => call.request.messages.map((m) => m.role));
    expect(roles).toEqual([
      ["user", "assistant", "user"],
      ["user", "assistant", "user", "assistant", "tool"],
      ["user", "assistant", "user", "assistant", "tool", "assistant", "tool"],
    ]);
    expect(userText(source.calls[2]!.request.messages[0])).toBe("earlier");
    // No two requests share an array: what a source kept of one is never changed later.
    expect(new Set(source.calls.map((call) => call.request.messages)).size).toBe(3);
  });

  it("every request carries the session's cache key: a digest of its key, or the one given", async () => {
    const script = () => new ScriptedSource([[text("a")]]);
    const plain = script();
    await run(plain, { sessionKey: "agent:main:direct:alice" }).result;
    const given = script();
    await run(given, { cacheKey: "tenant-7" }).result;
    const key = plain.calls[0]!.request.cacheKey;
    expect(key).toBe(promptCacheKey("agent:main:direct:alice"));
    expect(key).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(key).not.toContain("alice");
    expect(promptCacheKey("agent:main:direct:bob")).not.toBe(key);
    expect(given.calls[0]!.request.cacheKey).toBe("tenant-7");
  });
});

describe("runAgentLoop: steering", () => {
  it("steered messages are injected before the next model call", async () => {
    const toolStarted = deferred();
    const release: Deferred<void> = deferred();
    const tools = new BasicToolRunner({
      tools: [
        tool("slow", async () => {
          toolStarted.resolve();
          await release.promise;
          return "slow done";
        }),
      ],
    });
    const source = new ScriptedSource([[toolCall("s1", "slow")], [text("answered both")]]);
    const { h, result } = run(source, { tools });
    await toolStarted.promise;
    h.steered.push({ text: "also check the logs" });
    release.resolve();
    const r = await result;
    expect(r.status).toBe("completed");
    const second = source.calls[1]!.request.messages;
    expect(second.map((m) => m.role)).toEqual(["user", "assistant", "tool", "user"]);
    expect(userText(second[3])).toBe("also check the logs");
    expect(h.events.find((e) => e.type === "steer")).toMatchObject({
      type: "steer",
      input: { text: "also check the logs" },
    });
    expect(h.persisted.map(userText).filter(Boolean)).toEqual(["hello", "also check the logs"]);
  });

  it("a message steered during the final step gets its answer in one more step", async () => {
    const gate = deferred();
    const source = new ScriptedSource([
      async function* () {
        yield text("first answer");
        await gate.promise;
      },
      [text("second answer")],
    ]);
    const { h, result } = run(source, {}, (event, harness) => {
      if (event.type === "text-delta" && event.text === "first answer") {
        harness.steered.push({ text: "wait, one more thing" });
        gate.resolve();
      }
    });
    const r = await result;
    expect(r.steps).toBe(2);
    expect(r.text).toBe("second answer");
    expect(userText(source.calls[1]!.request.messages.at(-1))).toBe("wait, one more thing");
    expect(types(h.events)).toEqual(["text-delta", "steer", "text-delta"]);
  });
});

describe("runAgentLoop: tool-call shape", () => {
  it("tool-call events carry the call's id, name and input; missing input becomes {}", async () => {
    const seen: ToolCallPart[] = [];
    const tools = new BasicToolRunner({
      tools: [
        tool("echo", (input) => {
          seen.push({ type: "tool-call", toolCallId: "?", toolName: "echo", input });
          return input;
        }),
      ],
    });
    const source = new ScriptedSource([
      [{ type: "tool-call", toolCallId: "e1", toolName: "echo" }],
      [text("ok")],
    ]);
    const { h, result } = run(source, { tools });
    await result;
    expect(h.events[0]).toEqual({
      runId: "run-1",
      sessionKey: "agent:main:main",
      type: "tool-call",
      toolCallId: "e1",
      toolName: "echo",
      input: {},
    });
    expect(seen[0]!.input).toEqual({});
  });
});
