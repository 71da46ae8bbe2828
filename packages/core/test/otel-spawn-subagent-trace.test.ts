/**
 * A `spawn_subagent` call is traced by the runtime like every tool call: one
 * `beamclaw:tool.run` trace, with its call id, from the call to its result (a refused spawn's
 * error included), seen by `subscribeTrace`, the tool metrics and the OpenTelemetry bridge,
 * whose tool span for it is the parent of the sub-agent's first run span.
 */
import type { Attributes, Counter, Histogram, Meter, MetricOptions } from "@opentelemetry/api";
import { createNoopMeter } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type Span,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { describe, expect, it, onTestFinished } from "vitest";
import { type OtelBridgeOptions, startOtelBridge } from "../src/otel/index.js";
import type { JsonValue } from "../src/providers/types.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import {
  subscribeTelemetry,
  subscribeTrace,
  type TelemetryEvents,
  type ToolRunTrace,
} from "../src/telemetry.js";
import * as fx from "./fixtures/subagents.js";
import { deferred } from "./support.js";

const { newStore, startRuntime } = fx.useRuntimes();

/**
 * A bridge over a fresh in-memory tracer (both stopped when the test ends), and the order in
 * which spans started, with `mark` to put what else happened between them.
 */
function bridged(options: Omit<OtelBridgeOptions, "tracer"> = {}) {
  const exporter = new InMemorySpanExporter();
  const order: string[] = [];
  const starts: SpanProcessor = {
    onStart: (span: Span) =>
      order.push(`start ${span.name} ${String(span.attributes["beamclaw.session"])}`),
    onEnd: () => undefined,
    forceFlush: async () => undefined,
    shutdown: async () => undefined,
  };
  const processor = new SimpleSpanProcessor(exporter);
  const tracer = new BasicTracerProvider({ spanProcessors: [starts, processor] }).getTracer(
    "spawn-trace",
  );
  const bridge = startOtelBridge({ ...options, tracer });
  onTestFinished(async () => {
    bridge.stop();
    await processor.shutdown();
  });
  return { exporter, order, mark: (what: string) => order.push(what) };
}

/** Records the `beamclaw:tool.run` traces and events until the test ends. */
function recordTools() {
  const started: ToolRunTrace[] = [];
  const ended: ToolRunTrace[] = [];
  const events: Array<TelemetryEvents["beamclaw:tool.run"]> = [];
  const offTrace = subscribeTrace("beamclaw:tool.run", {
    start: (c) => started.push(c),
    asyncEnd: (c) => ended.push(c),
  });
  const offEvents = subscribeTelemetry("beamclaw:tool.run", (e) => events.push(e));
  onTestFinished(() => {
    offTrace();
    offEvents();
  });
  return { started, ended, events };
}

/** A meter that keeps what each counter was given. */
function recordingMeter() {
  const counted: Array<{ instrument: string; attributes: Attributes }> = [];
  const meter: Meter = Object.assign(Object.create(createNoopMeter()) as Meter, {
    createCounter(name: string, _options?: MetricOptions): Counter {
      return { add: (_value, attributes = {}) => counted.push({ instrument: name, attributes }) };
    },
    createHistogram(_name: string, _options?: MetricOptions): Histogram {
      return { record: () => undefined };
    },
  });
  return { meter, counted };
}

/** Calls `mark` with each sub-agent session's key as the runtime writes it (before it runs). */
function watchSubagentSessions(store: MemoryStore, mark: (what: string) => void): void {
  const sessions = store.sessions;
  const put = sessions.put.bind(sessions);
  const seen = new Set<string>();
  sessions.put = (metadata) => {
    if (metadata.parentKey !== undefined && !seen.has(metadata.key)) {
      seen.add(metadata.key);
      mark(`made ${metadata.key}`);
    }
    return put(metadata);
  };
}

/**
 * The parent calls `spawn_subagent` once with each of `inputs` (call ids `s1`, `s2`...), all
 * in one step; a sub-agent answers "done: <its task>".
 */
const spawner =
  (...inputs: JsonValue[]): fx.Brain =>
  (call) => {
    const first = fx.firstUser(call.request.messages) ?? "";
    const last = call.request.messages.at(-1)!;
    if (first !== "go") return [fx.text(`done: ${first}`), { type: "finish", reason: "stop" }];
    if (last.role === "tool") return [fx.text("parent done"), { type: "finish", reason: "stop" }];
    return [
      ...inputs.map((input, i) => fx.toolCall(`s${i + 1}`, "spawn_subagent", input)),
      { type: "finish", reason: "tool-calls" },
    ];
  };

async function spawnFrom(
  brain: fx.Brain,
  subagents: { maxChildren?: number } = {},
  mark?: (what: string) => void,
) {
  const store = await newStore();
  if (mark !== undefined) watchSubagentSessions(store, mark);
  const runtime = await startRuntime({
    store,
    models: new fx.BrainSource(brain),
    agents: [{ id: "boss", model: "test/boss", subagents }],
  });
  const run = await runtime.session("agent:boss:main").send("go");
  const result = await run.result;
  expect(result.status).toBe("completed");
  return { runtime, runId: run.runId };
}

const toolSpans = (spans: ReadableSpan[]) => spans.filter((s) => s.name === "beamclaw.tool.run");
const runSpans = (spans: ReadableSpan[]) => spans.filter((s) => s.name === "beamclaw.session.run");

describe("a spawn_subagent call's trace", () => {
  it("is one tool span with the call id, started at the call, parenting the sub-agent's run", async () => {
    const { exporter, order, mark } = bridged();
    const { runId } = await spawnFrom(spawner({ task: "TASK" }), {}, mark);
    const spans = exporter.getFinishedSpans();
    const tools = toolSpans(spans);
    expect(tools).toHaveLength(1);
    const spawn = tools[0]!;
    const parent = runSpans(spans).find((s) => s.attributes["beamclaw.run"] === runId)!;
    const children = runSpans(spans).filter((s) => s !== parent);
    expect(children).toHaveLength(1);
    const child = children[0]!;
    const childKey = String(child.attributes["beamclaw.session"]);
    expect(childKey).toMatch(/^agent:boss:subagent:/);

    expect(spawn.attributes).toMatchObject({
      "beamclaw.tool": "spawn_subagent",
      "beamclaw.tool_call": "s1",
      "gen_ai.tool.call.id": "s1",
      "beamclaw.run": runId,
      "beamclaw.session": "agent:boss:main",
      "beamclaw.agent": "boss",
      "beamclaw.outcome": "success",
      "beamclaw.attempts": 1,
    });
    expect(spawn.status).toEqual({ code: 1 });
    expect(spawn.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(child.parentSpanContext?.spanId).toBe(spawn.spanContext().spanId);
    expect(child.spanContext().traceId).toBe(parent.spanContext().traceId);
    // Started at the call: before the runtime made the sub-agent's session, whose run
    // started after that; ended with the call's result, after the sub-agent's run.
    expect(order).toEqual([
      "start beamclaw.session.run agent:boss:main",
      "start beamclaw.tool.run agent:boss:main",
      `made ${childKey}`,
      `start beamclaw.session.run ${childKey}`,
    ]);
    expect(spans.indexOf(child)).toBeLessThan(spans.indexOf(spawn));
    expect(spans.indexOf(spawn)).toBeLessThan(spans.indexOf(parent));
  });

  it("parents the sub-agent of each of two spawns in one step under its own call", async () => {
    const { exporter } = bridged({ spanNames: "genai" });
    const tools = recordTools();
    await spawnFrom(spawner({ task: "A" }, { task: "B" }));
    const spans = exporter.getFinishedSpans();
    const calls = spans.filter((s) => s.name === "execute_tool spawn_subagent");
    expect(calls.map((s) => s.attributes["gen_ai.tool.call.id"]).sort()).toEqual(["s1", "s2"]);
    for (const id of ["s1", "s2"]) {
      const span = calls.find((s) => s.attributes["gen_ai.tool.call.id"] === id)!;
      const traced = tools.ended.find((c) => c.toolCallId === id)!;
      const runs = spans.filter((s) => s.parentSpanContext?.spanId === span.spanContext().spanId);
      // The run of the session this call made, and nothing else.
      expect(runs.map((s) => [s.name, s.attributes["beamclaw.session"]])).toEqual([
        ["invoke_agent boss", traced.subagentSession],
      ]);
    }
  });

  it("is seen by subscribeTrace and counted by the tool metrics", async () => {
    const tools = recordTools();
    const { meter, counted } = recordingMeter();
    const bridge = startOtelBridge({ meter });
    onTestFinished(() => bridge.stop());
    const { runId } = await spawnFrom(spawner({ task: "TASK" }));

    expect(tools.started).toHaveLength(1);
    const [call] = tools.started;
    expect(call).toMatchObject({
      tool: "spawn_subagent",
      toolCallId: "s1",
      runId,
      agent: "boss",
      session: "agent:boss:main",
      outcome: "success",
      attempts: 1,
      result: { output: "done: TASK", isError: false },
    });
    expect(call?.subagentSession).toMatch(/^agent:boss:subagent:/);
    expect(call?.error).toBeUndefined();
    expect(tools.ended).toEqual([call]);
    expect(tools.events).toEqual([
      expect.objectContaining({
        tool: "spawn_subagent",
        runId,
        agent: "boss",
        session: "agent:boss:main",
        outcome: "success",
        attempts: 1,
      }),
    ]);
    expect(counted.filter((c) => c.instrument === "beamclaw.tool.runs")).toEqual([
      {
        instrument: "beamclaw.tool.runs",
        attributes: {
          "beamclaw.tool": "spawn_subagent",
          "beamclaw.outcome": "success",
          "beamclaw.agent": "boss",
        },
      },
    ]);
  });

  it("has an error span for a spawn refused for its arguments, with no sub-agent", async () => {
    const { exporter } = bridged();
    const tools = recordTools();
    await spawnFrom(spawner({ task: "   " }));
    const spans = exporter.getFinishedSpans();
    expect(runSpans(spans)).toHaveLength(1);
    const [spawn] = toolSpans(spans);
    expect(spawn?.attributes).toMatchObject({
      "beamclaw.tool": "spawn_subagent",
      "beamclaw.tool_call": "s1",
      "beamclaw.outcome": "error",
      "beamclaw.attempts": 0,
      "error.type": "error",
    });
    expect(spawn?.status).toEqual({ code: 2, message: "error" });
    expect(spawn?.parentSpanContext?.spanId).toBe(runSpans(spans)[0]?.spanContext().spanId);
    expect(tools.ended).toHaveLength(1);
    expect(tools.ended[0]).toMatchObject({
      toolCallId: "s1",
      outcome: "error",
      error: "spawn_subagent needs a non-empty task string",
    });
    expect(tools.ended[0]).not.toHaveProperty("subagentSession");
    expect(tools.events).toEqual([expect.objectContaining({ outcome: "error", attempts: 0 })]);
  });

  it("has an error span for a spawn past the parent's cap, beside the one that ran", async () => {
    const { exporter } = bridged();
    const tools = recordTools();
    await spawnFrom(spawner({ task: "A" }, { task: "B" }), { maxChildren: 1 });
    const spans = exporter.getFinishedSpans();
    const calls = toolSpans(spans);
    expect(calls).toHaveLength(2);
    const refused = calls.filter((s) => s.status.code === 2);
    const ran = calls.filter((s) => s.status.code === 1);
    expect(refused).toHaveLength(1);
    expect(ran).toHaveLength(1);
    expect(refused[0]?.attributes).toMatchObject({
      "beamclaw.tool": "spawn_subagent",
      "beamclaw.outcome": "error",
      "error.type": "error",
    });
    const refusedId = refused[0]?.attributes["beamclaw.tool_call"];
    expect(tools.ended.find((c) => c.toolCallId === refusedId)?.error).toBe(
      "this session already spawned 1 sub-agents (the limit)",
    );
    // The one sub-agent's run is under the spawn that made it.
    const children = runSpans(spans).filter(
      (s) => s.attributes["beamclaw.session"] !== "agent:boss:main",
    );
    expect(children.map((s) => s.parentSpanContext?.spanId)).toEqual([
      ran[0]?.spanContext().spanId,
    ]);
  });

  it("ends in error with the spawning run when that run is aborted while the sub-agent works", async () => {
    const { exporter } = bridged();
    const tools = recordTools();
    const childAsked = deferred<void>();
    const brain = spawner({ task: "SLOW" });
    const runtime = await startRuntime({
      store: await newStore(),
      models: new fx.BrainSource((call) => {
        if (fx.firstUser(call.request.messages) !== "SLOW") return brain(call);
        childAsked.resolve();
        return fx.hangUntilAborted(call.options.signal);
      }),
      agents: [{ id: "boss", model: "test/boss", subagents: {} }],
    });
    const run = await runtime.session("agent:boss:main").send("go");
    await childAsked.promise;
    await run.abort();
    expect((await run.result).status).toBe("aborted");

    const spans = exporter.getFinishedSpans();
    const [spawn] = toolSpans(spans);
    expect(toolSpans(spans)).toHaveLength(1);
    expect(spawn?.attributes["beamclaw.tool_call"]).toBe("s1");
    // The call answers its model with the sub-agent's aborted end: an error result.
    expect(spawn?.status).toEqual({ code: 2, message: "error" });
    expect(spawn?.attributes["beamclaw.outcome"]).toBe("error");
    expect(String(tools.ended[0]?.error)).toMatch(/ended with status aborted/);
    const child = runSpans(spans).find(
      (s) => s.attributes["beamclaw.session"] !== "agent:boss:main",
    );
    expect(child?.parentSpanContext?.spanId).toBe(spawn?.spanContext().spanId);
    expect(child?.attributes["beamclaw.status"]).toBe("aborted");
    expect(tools.events).toEqual([expect.objectContaining({ outcome: "error", attempts: 1 })]);
  });
});
