/**
 * Follow-ups of the OpenTelemetry bridge's audit: a sub-agent's run span is a child of the
 * run that spawned it (or linked to it once that run ended); a failure is recorded by its type
 * only, never by its text (which can quote what a model sent or answered); the cron metric's
 * job label is opt-in; the GenAI convention span names are an option.
 */
import type { Attributes, Counter, Histogram, Meter, MetricOptions } from "@opentelemetry/api";
import { createNoopMeter } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type AgentTool,
  createProviderChain,
  defineTool,
  InvalidArgumentError,
  ProviderError,
  telemetryChannel,
  traceTelemetry,
} from "../src/index.js";
import { type OtelBridgeOptions, startOtelBridge } from "../src/otel/index.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";
import {
  type Brain,
  BrainSource,
  firstUser,
  text,
  toolCall,
  useRuntimes,
} from "./fixtures/subagents.js";

const { newStore, startRuntime } = useRuntimes();
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Starts a bridge over a fresh in-memory tracer (both stopped after the test). */
function bridged(options: Omit<OtelBridgeOptions, "tracer"> = {}): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const bridge = startOtelBridge({ ...options, tracer: provider.getTracer("followups") });
  cleanups.push(
    () => provider.shutdown(),
    () => bridge.stop(),
  );
  return exporter;
}

/** A meter that keeps the attributes each counter was given. */
function recordingMeter() {
  const seen: Array<{ instrument: string; attributes: Attributes }> = [];
  const meter: Meter = Object.assign(Object.create(createNoopMeter()) as Meter, {
    createCounter(name: string, _options?: MetricOptions): Counter {
      return { add: (_value, attributes = {}) => seen.push({ instrument: name, attributes }) };
    },
    createHistogram(_name: string, _options?: MetricOptions): Histogram {
      return { record: () => undefined };
    },
  });
  return { meter, seen };
}

const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);

/** Everything a backend would show of a span besides its name and ids. */
const shown = (span: ReadableSpan | undefined) =>
  JSON.stringify({ status: span?.status, attributes: span?.attributes, events: span?.events });

/** The parent spawns one sub-agent for "TASK"; the sub-agent answers every message it gets. */
const spawner: Brain = (call) => {
  const first = firstUser(call.request.messages) ?? "";
  const last = call.request.messages.at(-1)!;
  if (first === "TASK") return [text("child done"), { type: "finish", reason: "stop" }];
  if (last.role === "tool") return [text("parent done"), { type: "finish", reason: "stop" }];
  return [
    toolCall("s1", "spawn_subagent", { task: "TASK" }),
    { type: "finish", reason: "tool-calls" },
  ];
};

const echo = defineTool({
  name: "echo",
  description: "echo",
  parameters: z.object({ text: z.string() }),
  execute: ({ text }) => text,
});

/** Runs one message in `agent:main:main` (model `fake/m1`, the scripted provider `fake`). */
async function runScripted(responses: ScriptEntry[], tools: AgentTool[] = [], message = "go") {
  const runtime = await startRuntime({
    store: await newStore(),
    models: createProviderChain({
      providers: [createScriptedProvider({ id: "fake", responses })],
      retry: { maxAttempts: 1 },
    }),
    agents: [{ id: "main", model: "fake/m1", tools: tools.map((t) => t.name) }],
    tools,
  });
  return (await runtime.session("agent:main:main").send(message)).result;
}

describe("the OpenTelemetry bridge's follow-ups", () => {
  it("makes a sub-agent's run span a child of the run that spawned it, and links a later run of its session", async () => {
    const exporter = bridged();
    const store = await newStore();
    const runtime = await startRuntime({
      store,
      models: new BrainSource(spawner),
      agents: [{ id: "boss", model: "test/boss", subagents: {} }],
    });
    const parentRun = await runtime.session("agent:boss:main").send("go");
    expect((await parentRun.result).text).toBe("parent done");

    const runs = named(exporter.getFinishedSpans(), "beamclaw.session.run");
    const parent = runs.find((s) => s.attributes["beamclaw.session"] === "agent:boss:main")!;
    const child = runs.find((s) => s !== parent)!;
    const childKey = String(child.attributes["beamclaw.session"]);
    expect(childKey).toMatch(/^agent:boss:subagent:/);
    // Under the spawn's tool span, itself under the spawning run.
    const spawn = named(exporter.getFinishedSpans(), "beamclaw.tool.run").find(
      (s) => s.attributes["beamclaw.tool"] === "spawn_subagent",
    );
    expect(child.parentSpanContext?.spanId).toBe(spawn?.spanContext().spanId);
    expect(spawn?.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(child.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(child.attributes).toMatchObject({
      "beamclaw.parent_run": parentRun.runId,
      "beamclaw.parent_session": "agent:boss:main",
    });
    expect(parent.attributes).not.toHaveProperty("beamclaw.parent_run");
    expect(parent.parentSpanContext).toBeUndefined();
    expect((await store.sessions.get(childKey))?.parentRunId).toBe(parentRun.runId);

    // The parent's run has ended: a later run of the sub-agent's session starts its own
    // trace, linked to the run that spawned the session.
    const later = await runtime.session(childKey).send("once more");
    expect((await later.result).status).toBe("completed");
    const laterSpan = named(exporter.getFinishedSpans(), "beamclaw.session.run").find(
      (s) => s.attributes["beamclaw.run"] === later.runId,
    );
    expect(laterSpan?.parentSpanContext).toBeUndefined();
    expect(laterSpan?.spanContext().traceId).not.toBe(parent.spanContext().traceId);
    expect(laterSpan?.links.map((l) => l.context.spanId)).toEqual([parent.spanContext().spanId]);
    expect(laterSpan?.attributes["beamclaw.parent_run"]).toBe(parentRun.runId);
  });

  it("records a tool failure by its type: no error text in the status, attributes or exception event", async () => {
    const exporter = bridged();
    const leaky = defineTool({
      name: "leaky",
      description: "fails quoting its input",
      parameters: z.object({ text: z.string() }),
      execute: ({ text }) => {
        throw new Error(`upstream refused ${text}`);
      },
    });
    const toolCalls = [
      { toolName: "leaky", input: { text: "sk-live-SECRET1" } },
      { toolName: "leaky", input: { text: 7, "sk-live-SECRET2": "x" } },
    ];
    expect((await runScripted([{ toolCalls }, { text: "done" }], [leaky])).status).toBe(
      "completed",
    );

    const tools = named(exporter.getFinishedSpans(), "beamclaw.tool.run");
    expect(tools).toHaveLength(2);
    for (const span of tools) {
      expect(span.status).toEqual({ code: 2, message: "error" });
      expect(span.attributes["error.type"]).toBe("error");
      expect(span.events.map((e) => e.attributes)).toEqual([{ "exception.type": "error" }]);
      expect(shown(span)).not.toMatch(/SECRET|upstream|invalid arguments/);
    }
  });

  it("records a thrown error and a failed run by code, not by message or stack", async () => {
    const exporter = bridged();
    const refused = new ProviderError("messages[0] 'call me at +1 555 0100' is too long", {
      kind: "invalid_request",
      provider: "fake",
    });
    const result = await runScripted([{ error: refused }], [], "call me at +1 555 0100");
    expect(result.status).toBe("failed");
    await traceTelemetry(
      "beamclaw:tool.run",
      () => ({ tool: "t", toolCallId: "c", runId: "r" }),
      async () => {
        throw new TypeError("cannot read 'sk-live-SECRET3'");
      },
    ).catch(() => undefined);

    const spans = exporter.getFinishedSpans();
    const [call] = named(spans, "beamclaw.provider.call");
    const [runSpan] = named(spans, "beamclaw.session.run");
    const [thrown] = named(spans, "beamclaw.tool.run");
    for (const [span, type] of [
      [call, "PROVIDER_ERROR"],
      [runSpan, "ALL_PROVIDERS_FAILED"],
      [thrown, "TypeError"],
    ] as const) {
      expect(span?.status).toEqual({ code: 2, message: type });
      expect(span?.attributes["error.type"]).toBe(type);
      expect(span?.events.map((e) => e.attributes)).toEqual([{ "exception.type": type }]);
      expect(shown(span)).not.toMatch(/555|SECRET|cannot read/);
    }
  });

  it("labels the cron metric with the job id only when asked (jobLabel)", () => {
    const event = {
      agentId: "main",
      jobId: "digest-for-user-4711",
      runId: "r1",
      trigger: "schedule" as const,
      status: "ok" as const,
      scheduledAt: 0,
      startedAt: 0,
      durationMs: 5,
      latenessMs: 0,
    };
    const labels: Attributes[] = [];
    for (const options of [{}, { jobLabel: false }, { jobLabel: true }]) {
      const { meter, seen } = recordingMeter();
      const bridge = startOtelBridge({ meter, ...options });
      telemetryChannel("beamclaw:cron.run").publish(event);
      bridge.stop();
      labels.push(
        ...seen.filter((s) => s.instrument === "beamclaw.cron.runs").map((s) => s.attributes),
      );
    }
    expect(labels).toEqual([
      { "beamclaw.agent": "main", "beamclaw.trigger": "schedule", "beamclaw.status": "ok" },
      { "beamclaw.agent": "main", "beamclaw.trigger": "schedule", "beamclaw.status": "ok" },
      {
        "beamclaw.agent": "main",
        "beamclaw.job": "digest-for-user-4711",
        "beamclaw.trigger": "schedule",
        "beamclaw.status": "ok",
      },
    ]);
  });

  it("names run, provider and tool spans by the GenAI conventions under spanNames: genai, BeamClaw's by default", async () => {
    const names: string[][] = [];
    for (const spanNames of [undefined, "genai"] as const) {
      const exporter = bridged(spanNames === undefined ? {} : { spanNames });
      const toolCalls = [{ toolName: "echo", input: { text: "x" } }];
      await runScripted([{ toolCalls }, { text: "ok" }], [echo]);
      await traceTelemetry(
        "beamclaw:approval.wait",
        () => ({ tool: "echo", toolCallId: "c", runId: "r", key: "k" }),
        async () => "allow-once",
      );
      names.push(
        exporter
          .getFinishedSpans()
          .map((s) => s.name)
          .sort(),
      );
    }
    expect(names).toEqual([
      [
        "beamclaw.approval.wait",
        "beamclaw.provider.call",
        "beamclaw.provider.call",
        "beamclaw.session.run",
        "beamclaw.tool.run",
      ],
      ["beamclaw.approval.wait", "chat m1", "chat m1", "execute_tool echo", "invoke_agent main"],
    ]);
  });

  it("refuses options, a spanNames or a jobLabel it does not know, with nothing subscribed", () => {
    const bad = [
      null,
      { spanNames: "otel" },
      { jobLabel: "yes" },
    ] as unknown as OtelBridgeOptions[];
    for (const options of bad) {
      expect(() => startOtelBridge(options)).toThrow(InvalidArgumentError);
    }
    expect(() => startOtelBridge({ spanNames: "otel" } as unknown as OtelBridgeOptions)).toThrow(
      /spanNames must be "beamclaw" or "genai", got "otel"/,
    );
    expect(telemetryChannel("beamclaw:cron.run").hasSubscribers).toBe(false);
  });
});
