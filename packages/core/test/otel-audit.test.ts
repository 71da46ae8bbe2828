/**
 * Audit of the OpenTelemetry bridge: every span ends once with the right status (aborts,
 * timeouts, runtime stops, interrupted cron runs, the bridge's own stop), spans nest under
 * their own run, attributes carry no tool input, metrics carry no unbounded labels and record
 * durations in seconds, and a throwing tracer or meter cannot break the runtime.
 */
import {
  type Attributes,
  type Counter,
  createNoopMeter,
  type Histogram,
  type Meter,
  type MetricOptions,
} from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AgentRuntime,
  createProviderChain,
  defineTool,
  type ModelProvider,
  type ModelStreamEvent,
  type TracedOperation,
  telemetryChannel,
  telemetryTracingChannel,
  traceTelemetry,
} from "../src/index.js";
import { startOtelBridge } from "../src/otel/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { type CronFixture, HOUR, startCron } from "./cron-support.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const OPERATIONS: TracedOperation[] = [
  "beamclaw:session.run",
  "beamclaw:provider.call",
  "beamclaw:tool.run",
  "beamclaw:approval.wait",
  "beamclaw:cron.run",
];

function tracing(processors: SpanProcessor[] = []) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [...processors, new SimpleSpanProcessor(exporter)],
  });
  cleanups.push(() => provider.shutdown());
  return { exporter, tracer: provider.getTracer("audit") };
}

/** Starts a bridge over a fresh tracer (stopped after the test); returns its exporter. */
function bridged(): InMemorySpanExporter {
  const { exporter, tracer } = tracing();
  const bridge = startOtelBridge({ tracer });
  cleanups.push(() => bridge.stop());
  return exporter;
}

/** A meter that keeps what each instrument was given (the API's no-op meter otherwise). */
function recordingMeter() {
  const seen: Array<{
    instrument: string;
    kind: "counter" | "histogram";
    unit?: string;
    value: number;
    attributes: Attributes;
  }> = [];
  const meter: Meter = Object.assign(Object.create(createNoopMeter()) as Meter, {
    createCounter(name: string, options?: MetricOptions): Counter {
      return {
        add: (value, attributes = {}) =>
          seen.push({ instrument: name, kind: "counter", unit: options?.unit, value, attributes }),
      };
    },
    createHistogram(name: string, options?: MetricOptions): Histogram {
      return {
        record: (value, attributes = {}) =>
          seen.push({
            instrument: name,
            kind: "histogram",
            unit: options?.unit,
            value,
            attributes,
          }),
      };
    },
  });
  return { meter, seen };
}

/** A provider whose calls hang until aborted (as a real HTTP stream does). */
function hangingProvider(): ModelProvider & { calls: number } {
  const provider = {
    specificationVersion: "v1" as const,
    id: "slow",
    calls: 0,
    async *stream(
      _request: unknown,
      options?: { signal?: AbortSignal },
    ): AsyncIterable<ModelStreamEvent> {
      provider.calls++;
      const signal = options?.signal;
      await new Promise<never>((_, reject) => {
        if (signal?.aborted) reject(signal.reason);
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    },
  };
  return provider;
}

/** A provider that answers a tool call, then text, once `gate` opens. */
function gatedProvider(gate: Promise<void>): ModelProvider {
  return {
    specificationVersion: "v1",
    id: "gated",
    async *stream(request) {
      await gate;
      if (request.messages.at(-1)?.role === "user") {
        yield { type: "tool-call", toolCallId: "c1", toolName: "echo", input: { text: "x" } };
        yield { type: "usage", usage: { inputTokens: 3, outputTokens: 1 } };
        yield { type: "finish", reason: "tool-calls" };
      } else {
        yield { type: "text-delta", text: "done" };
        yield { type: "usage", usage: { inputTokens: 5, outputTokens: 2 } };
        yield { type: "finish", reason: "stop" };
      }
    },
  };
}

const echo = defineTool({
  name: "echo",
  description: "echo",
  parameters: z.object({ text: z.string() }),
  execute: ({ text }) => text,
});

async function startRuntime(
  provider: ModelProvider,
  agent: { timeoutMs?: number } = {},
): Promise<AgentRuntime> {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: `${provider.id}/m1`, tools: ["echo"], ...agent }],
    tools: [echo],
  });
  await runtime.start();
  cleanups.push(async () => {
    await runtime.stop();
    await store.close();
  });
  return runtime;
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}

const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);

function expectEndedOnce(spans: ReadableSpan[]) {
  const ids = spans.map((s) => s.spanContext().spanId);
  expect(new Set(ids).size).toBe(ids.length);
  for (const span of spans) expect(span.ended).toBe(true);
}

describe("the OpenTelemetry bridge, audited", () => {
  it("ends an aborted run's span and its provider call's span with ERROR and the error recorded", async () => {
    const exporter = bridged();
    const provider = hangingProvider();
    const runtime = await startRuntime(provider);
    const run = await runtime.session("agent:main:main").send("go");
    await until(() => provider.calls === 1);
    await run.abort();
    expect((await run.result).status).toBe("aborted");

    const spans = exporter.getFinishedSpans();
    expectEndedOnce(spans);
    const [runSpan] = named(spans, "beamclaw.session.run");
    const [call] = named(spans, "beamclaw.provider.call");
    expect(runSpan?.status.code).toBe(2);
    expect(runSpan?.attributes["beamclaw.status"]).toBe("aborted");
    expect(runSpan?.events.map((e) => e.name)).toEqual(["exception"]);
    expect(call?.status.code).toBe(2);
    expect(call?.attributes).toMatchObject({
      "beamclaw.outcome": "aborted",
      "error.type": "aborted",
    });
    expect(call?.parentSpanContext?.spanId).toBe(runSpan?.spanContext().spanId);
  });

  it("records a run that went past its time limit as an ERROR with the RUN_TIMEOUT error", async () => {
    const exporter = bridged();
    const runtime = await startRuntime(hangingProvider(), { timeoutMs: 20 });
    const run = await runtime.session("agent:main:main").send("go");
    const result = await run.result;
    expect(result.error?.code).toBe("RUN_TIMEOUT");

    const [runSpan] = named(exporter.getFinishedSpans(), "beamclaw.session.run");
    // The error's type, not its text (see otel-followups.test.ts).
    expect(runSpan?.status).toEqual({ code: 2, message: "RUN_TIMEOUT" });
    expect(runSpan?.attributes["error.type"]).toBe("RUN_TIMEOUT");
    expect(runSpan?.events[0]?.attributes?.["exception.type"]).toBe("RUN_TIMEOUT");
  });

  it("ends the spans of a run in flight when the runtime stops, none as OK", async () => {
    const exporter = bridged();
    const provider = hangingProvider();
    const runtime = await startRuntime(provider);
    const run = await runtime.session("agent:main:main").send("go");
    await until(() => provider.calls === 1);
    await runtime.stop();
    await run.result.catch(() => undefined);
    await until(() => named(exporter.getFinishedSpans(), "beamclaw.session.run").length === 1);

    const spans = exporter.getFinishedSpans();
    expectEndedOnce(spans);
    expect(spans.map((s) => s.name).sort()).toEqual([
      "beamclaw.provider.call",
      "beamclaw.session.run",
    ]);
    for (const span of spans) expect(span.status.code).toBe(2);
  });

  it("ends a cron run's span when the run is given up as interrupted, though its code never settles", async () => {
    const exporter = bridged();
    const fixture: CronFixture = await startCron();
    cleanups.push(() => fixture.service.stop());
    const { service, clock, runner } = fixture;
    runner.behave = () => new Promise(() => {}); // ignores the abort
    await service.add({ id: "slow", schedule: { every: HOUR }, prompt: "p" });
    const waiting = service.runNow("slow");
    await clock.advance(0);
    expect(await service.remove("slow")).toBe(true);
    expect((await waiting).status).toBe("interrupted");

    const [cron] = named(exporter.getFinishedSpans(), "beamclaw.cron.run");
    expect(cron?.status).toEqual({ code: 2, message: "interrupted" });
    expect(cron?.attributes).toMatchObject({ "beamclaw.job": "slow", "error.type": "interrupted" });
  });

  it("ends the spans still open when the bridge stops, marked unfinished", async () => {
    const { exporter, tracer } = tracing();
    const bridge = startOtelBridge({ tracer });
    let release: (() => void) | undefined;
    const done = traceTelemetry(
      "beamclaw:tool.run",
      () => ({ tool: "t", toolCallId: "c", runId: "r" }),
      () =>
        new Promise<{ output: unknown; isError: boolean }>((resolve) => {
          release = () => resolve({ output: "x", isError: false });
        }),
    );
    bridge.stop();
    expect(exporter.getFinishedSpans().map((s) => s.attributes["beamclaw.unfinished"])).toEqual([
      true,
    ]);
    release?.();
    await done;
    expect(exporter.getFinishedSpans()).toHaveLength(1);
  });

  it("nests each session's provider and tool spans under its own run when runs overlap", async () => {
    const exporter = bridged();
    let open: (() => void) | undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const runtime = await startRuntime(gatedProvider(gate));
    const keys = ["agent:main:a", "agent:main:b", "agent:main:c"];
    const runs = await Promise.all(keys.map((key) => runtime.session(key).send("go")));
    open?.();
    for (const run of runs) expect((await run.result).status).toBe("completed");

    const spans = exporter.getFinishedSpans();
    expectEndedOnce(spans);
    const runSpans = named(spans, "beamclaw.session.run");
    expect(runSpans).toHaveLength(3);
    for (const runSpan of runSpans) {
      const session = runSpan.attributes["beamclaw.session"];
      const children = spans.filter(
        (s) => s.parentSpanContext?.spanId === runSpan.spanContext().spanId,
      );
      expect(children.map((s) => s.name).sort()).toEqual([
        "beamclaw.provider.call",
        "beamclaw.provider.call",
        "beamclaw.tool.run",
      ]);
      for (const child of children) {
        expect(child.attributes["beamclaw.session"]).toBe(session);
        expect(child.spanContext().traceId).toBe(runSpan.spanContext().traceId);
      }
    }
    expect(new Set(runSpans.map((s) => s.spanContext().traceId)).size).toBe(3);
  });

  it("uses the GenAI convention names on provider, tool and run spans", async () => {
    const exporter = bridged();
    const runtime = await startRuntime(gatedProvider(Promise.resolve()));
    const run = await runtime.session("agent:main:main").send("go");
    expect((await run.result).status).toBe("completed");

    const spans = exporter.getFinishedSpans();
    const [first] = named(spans, "beamclaw.provider.call");
    expect(first?.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "gated",
      "gen_ai.request.model": "m1",
      "gen_ai.usage.input_tokens": expect.any(Number),
      "gen_ai.usage.output_tokens": expect.any(Number),
    });
    expect(first?.attributes).not.toHaveProperty("gen_ai.system");
    expect(named(spans, "beamclaw.tool.run")[0]?.attributes).toMatchObject({
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "echo",
      "gen_ai.tool.call.id": "c1",
    });
    expect(named(spans, "beamclaw.session.run")[0]?.attributes).toMatchObject({
      "gen_ai.operation.name": "invoke_agent",
      "gen_ai.agent.id": "main",
      "gen_ai.usage.input_tokens": 8,
      "gen_ai.usage.output_tokens": 3,
    });
  });

  it("keeps an approval key (which a tool may build from its input) out of span attributes", async () => {
    const exporter = bridged();
    await traceTelemetry(
      "beamclaw:approval.wait",
      () => ({
        tool: "exec",
        toolCallId: "c1",
        runId: "r1",
        key: "exec:curl -H 'Authorization: Bearer sk-secret' https://example.com",
      }),
      async () => "allow-once",
      (answer, trace) => {
        trace.decision = answer;
      },
    );
    const [wait] = exporter.getFinishedSpans();
    expect(wait?.attributes).toMatchObject({ "beamclaw.tool": "exec" });
    expect(JSON.stringify(wait?.attributes)).not.toContain("sk-secret");
    for (const value of Object.values(wait?.attributes ?? {})) {
      expect(["string", "number", "boolean"]).toContain(typeof value);
    }
  });

  it("contains a span processor that throws when a span starts: the operation runs, nothing is uncaught", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.prependListener("uncaughtException", onUncaught);
    cleanups.push(() => {
      process.removeListener("uncaughtException", onUncaught);
    });
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on("warning", onWarning);
    cleanups.push(() => {
      process.removeListener("warning", onWarning);
    });
    const broken: SpanProcessor = {
      onStart() {
        throw new Error("processor broke");
      },
      onEnd() {},
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    const { tracer } = tracing([broken]);
    const bridge = startOtelBridge({ tracer });
    cleanups.push(() => bridge.stop());
    const result = await traceTelemetry(
      "beamclaw:tool.run",
      () => ({ tool: "t", toolCallId: "c", runId: "r" }),
      async () => ({ output: "ran", isError: false }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(result.output).toBe("ran");
    expect(uncaught).toEqual([]);
    await until(() => warnings.some((w) => w.includes("processor broke")));
  });

  it("leaves nothing subscribed when the meter throws while the bridge starts", () => {
    const { tracer } = tracing();
    const meter: Meter = Object.assign(Object.create(createNoopMeter()) as Meter, {
      createHistogram(): Histogram {
        throw new Error("meter broke");
      },
    });
    expect(() => startOtelBridge({ tracer, meter })).toThrow("meter broke");
    for (const name of OPERATIONS) expect(telemetryTracingChannel(name).hasSubscribers).toBe(false);
    expect(telemetryChannel("beamclaw:provider.call").hasSubscribers).toBe(false);
    expect(telemetryChannel("beamclaw:cron.run").hasSubscribers).toBe(false);
  });

  it("leaves no subscription behind after 1,000 starts and stops", async () => {
    const { exporter, tracer } = tracing();
    const { meter, seen } = recordingMeter();
    for (let i = 0; i < 1_000; i++) startOtelBridge({ tracer, meter }).stop();
    for (const name of OPERATIONS) expect(telemetryTracingChannel(name).hasSubscribers).toBe(false);
    for (const name of [
      "beamclaw:provider.call",
      "beamclaw:tool.run",
      "beamclaw:session.run",
      "beamclaw:cron.run",
      "beamclaw:actor.crash",
      "beamclaw:supervisor.restart",
      "beamclaw:approval.decision",
    ] as const) {
      expect(telemetryChannel(name).hasSubscribers).toBe(false);
    }
    await traceTelemetry(
      "beamclaw:tool.run",
      () => ({ tool: "t", toolCallId: "c", runId: "r" }),
      async () => ({ output: "x", isError: false }),
    );
    expect(exporter.getFinishedSpans()).toEqual([]);
    expect(seen).toEqual([]);
  });

  it("labels metrics with no session key or generated child id, and records durations in seconds", () => {
    const { meter, seen } = recordingMeter();
    const bridge = startOtelBridge({ meter });
    cleanups.push(() => bridge.stop());
    telemetryChannel("beamclaw:actor.crash").publish({
      actorId: 7,
      actor: "session agent:main:telegram:direct:4711",
      error: new Error("x"),
      phase: "handle",
    });
    telemetryChannel("beamclaw:actor.overload").publish({
      actorId: 8,
      actor: "session agent:main:main",
      limit: 10,
      kind: "call",
    });
    telemetryChannel("beamclaw:supervisor.restart").publish({
      supervisor: "sessions",
      childId: "child-9181",
      reason: new Error("x"),
      strategy: "one_for_one",
      latencyMs: 250,
    });
    telemetryChannel("beamclaw:provider.call").publish({
      ref: "p/m",
      provider: "p",
      model: "m",
      attempt: 1,
      durationMs: 1500,
      outcome: "success",
      usage: { inputTokens: 10, outputTokens: 4 },
      session: "agent:main:main",
    });
    const labels = JSON.stringify(seen.map((s) => s.attributes));
    expect(labels).not.toContain("agent:main");
    expect(labels).not.toContain("child-9181");
    expect(seen.find((s) => s.instrument === "beamclaw.actor.crashes")?.attributes).toEqual({
      "beamclaw.actor": "session",
      "beamclaw.phase": "handle",
    });
    for (const histogram of seen.filter((s) => s.kind === "histogram" && s.unit !== "{token}")) {
      expect(histogram.unit).toBe("s");
    }
    expect(seen.find((s) => s.instrument === "beamclaw.provider.duration")?.value).toBe(1.5);
    expect(seen.find((s) => s.instrument === "beamclaw.supervisor.restart.latency")?.value).toBe(
      0.25,
    );
    expect(seen.find((s) => s.instrument === "gen_ai.client.operation.duration")).toMatchObject({
      value: 1.5,
      unit: "s",
      attributes: {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "p",
        "gen_ai.request.model": "m",
      },
    });
    expect(
      seen
        .filter((s) => s.instrument === "gen_ai.client.token.usage")
        .map((s) => [s.attributes["gen_ai.token.type"], s.value]),
    ).toEqual([
      ["input", 10],
      ["output", 4],
    ]);
  });

  it("adds only finite, non-negative amounts to its counters", () => {
    const { meter, seen } = recordingMeter();
    const bridge = startOtelBridge({ meter });
    cleanups.push(() => bridge.stop());
    telemetryChannel("beamclaw:provider.call").publish({
      ref: "p/m",
      provider: "p",
      model: "m",
      attempt: 1,
      durationMs: 5,
      outcome: "success",
      usage: { inputTokens: Number.NaN, outputTokens: -3 },
    });
    telemetryChannel("beamclaw:session.run").publish({
      session: "s",
      agent: "a",
      runId: "r",
      status: "completed",
      steps: 1,
      durationMs: 5,
      inputTokens: 0,
      outputTokens: 0,
      costUsd: Number.NaN,
    });
    const counters = seen.filter((s) => s.kind === "counter");
    expect(counters.length).toBeGreaterThan(0);
    for (const counter of counters) {
      expect(Number.isFinite(counter.value) && counter.value >= 0).toBe(true);
    }
  });
});
