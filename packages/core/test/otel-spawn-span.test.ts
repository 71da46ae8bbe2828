/**
 * The OpenTelemetry bridge gives a `spawn_subagent` call a tool span like every other tool's
 * (`beamclaw.tool.run`, or `execute_tool spawn_subagent` under `spanNames: "genai"`), under the
 * run that spawned it; the sub-agent's run span is its child while it is open, and a later run
 * of the sub-agent's session is linked to the spawning run as before.
 */
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { describe, expect, it, onTestFinished } from "vitest";
import { type OtelBridgeOptions, startOtelBridge } from "../src/otel/index.js";
import * as fx from "./fixtures/subagents.js";

const { newStore, startRuntime } = fx.useRuntimes();

/** A bridge over a fresh in-memory tracer, both stopped when the test ends. */
function bridged(options: Omit<OtelBridgeOptions, "tracer"> = {}): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  const processor = new SimpleSpanProcessor(exporter);
  const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer("spawn");
  const bridge = startOtelBridge({ ...options, tracer });
  onTestFinished(async () => {
    bridge.stop();
    await processor.shutdown();
  });
  return exporter;
}

/** The parent spawns a sub-agent for "TASK" (or "FAIL", which the sub-agent's model fails). */
const spawner =
  (task: string): fx.Brain =>
  (call) => {
    const first = fx.firstUser(call.request.messages) ?? "";
    const last = call.request.messages.at(-1)!;
    if (first === "FAIL") throw new Error("the sub-agent's model is down");
    if (first === "TASK" || first === "again")
      return [fx.text("child done"), { type: "finish", reason: "stop" }];
    if (last.role === "tool") return [fx.text("parent done"), { type: "finish", reason: "stop" }];
    return [
      fx.toolCall("s1", "spawn_subagent", { task }),
      { type: "finish", reason: "tool-calls" },
    ];
  };

async function spawnOnce(task: string) {
  const runtime = await startRuntime({
    store: await newStore(),
    models: new fx.BrainSource(spawner(task)),
    agents: [{ id: "boss", model: "test/boss", subagents: {} }],
  });
  const run = await runtime.session("agent:boss:main").send("go");
  expect((await run.result).status).toBe("completed");
  return { runtime, runId: run.runId };
}

const runSpans = (spans: ReadableSpan[], name: (s: ReadableSpan) => boolean) => spans.filter(name);

describe("the spawn_subagent tool span", () => {
  it("sits between the spawning run and the sub-agent's run, named and attributed like any tool's", async () => {
    const exporter = bridged();
    const { runtime, runId } = await spawnOnce("TASK");
    const spans = exporter.getFinishedSpans();
    const runs = runSpans(spans, (s) => s.name === "beamclaw.session.run");
    const parent = runs.find((s) => s.attributes["beamclaw.session"] === "agent:boss:main")!;
    const child = runs.find((s) => s !== parent)!;
    const tools = spans.filter((s) => s.name === "beamclaw.tool.run");
    expect(tools).toHaveLength(1);
    const spawn = tools[0]!;

    expect(spawn.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(child.parentSpanContext?.spanId).toBe(spawn.spanContext().spanId);
    expect(new Set([parent, spawn, child].map((s) => s.spanContext().traceId)).size).toBe(1);
    expect(spawn.attributes).toMatchObject({
      "beamclaw.tool": "spawn_subagent",
      "beamclaw.run": runId,
      "beamclaw.agent": "boss",
      "beamclaw.session": "agent:boss:main",
      "beamclaw.outcome": "success",
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "spawn_subagent",
    });
    expect(spawn.status).toEqual({ code: 1 });
    // Ended once the sub-agent answered, before the run that waited for it.
    expect(spans.indexOf(child)).toBeLessThan(spans.indexOf(spawn));
    expect(spans.indexOf(spawn)).toBeLessThan(spans.indexOf(parent));

    // A later run of the sub-agent's session is no spawn: its own trace, linked to the run.
    const childKey = String(child.attributes["beamclaw.session"]);
    const later = await runtime.session(childKey).send("again");
    expect((await later.result).status).toBe("completed");
    const after = exporter.getFinishedSpans();
    expect(after.filter((s) => s.name === "beamclaw.tool.run")).toHaveLength(1);
    const laterSpan = after.find((s) => s.attributes["beamclaw.run"] === later.runId)!;
    expect(laterSpan.parentSpanContext).toBeUndefined();
    expect(laterSpan.links.map((l) => l.context.spanId)).toEqual([parent.spanContext().spanId]);
  });

  it("is named execute_tool spawn_subagent under spanNames: genai, parenting invoke_agent of the sub-agent", async () => {
    const exporter = bridged({ spanNames: "genai" });
    await spawnOnce("TASK");
    const spans = exporter.getFinishedSpans();
    const spawn = spans.find((s) => s.name === "execute_tool spawn_subagent");
    const runs = spans.filter((s) => s.name === "invoke_agent boss");
    expect(runs).toHaveLength(2);
    const child = runs.find((s) => s.attributes["beamclaw.session"] !== "agent:boss:main");
    expect(spawn).toBeDefined();
    expect(child?.parentSpanContext?.spanId).toBe(spawn?.spanContext().spanId);
  });

  it("records a sub-agent that failed as a failed tool call, by its type only", async () => {
    const exporter = bridged();
    await spawnOnce("FAIL");
    const spawn = exporter
      .getFinishedSpans()
      .find((s) => s.attributes["beamclaw.tool"] === "spawn_subagent");
    expect(spawn?.status).toEqual({ code: 2, message: "error" });
    expect(spawn?.attributes).toMatchObject({ "beamclaw.outcome": "error", "error.type": "error" });
    expect(JSON.stringify(spawn?.events)).not.toMatch(/down/);
  });
});
