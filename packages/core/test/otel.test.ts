import { metrics } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AgentRuntime,
  APPROVALS_SCOPE,
  createProviderChain,
  defineTool,
  type ModelSource,
  ProviderError,
  TenantManager,
  type TracedOperation,
  telemetryTracingChannel,
  traceTelemetry,
} from "../src/index.js";
import { startOtelBridge } from "../src/otel/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const source: ModelSource = {
  async *stream(request) {
    if (request.messages.at(-1)?.role === "user") {
      yield { type: "tool-call", toolCallId: "c1", toolName: "echo", input: { text: "x" } };
      yield { type: "finish", reason: "tool-calls" };
    } else {
      yield { type: "text-delta", text: "done" };
      yield { type: "finish", reason: "stop" };
    }
  },
};

describe("the OpenTelemetry bridge", () => {
  it("turns tool runs and session runs into ended spans carrying agent and session", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const bridge = startOtelBridge({
      tracer: provider.getTracer("test"),
      meter: metrics.getMeter("noop"),
    });
    cleanups.push(
      () => provider.shutdown(),
      () => bridge.stop(),
    );
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: source,
      agents: [{ id: "main", model: "p/m", tools: ["echo"] }],
      tools: [
        defineTool({
          name: "echo",
          description: "echo",
          parameters: z.object({ text: z.string() }),
          execute: ({ text }) => text,
        }),
      ],
    });
    await runtime.start();
    cleanups.push(async () => {
      await runtime.stop();
      await store.close();
    });
    await (await runtime.session("agent:main:main").send("go")).result;
    const spans = exporter.getFinishedSpans();
    const tool = spans.find((s) => s.name === "beamclaw.tool.run");
    const run = spans.find((s) => s.name === "beamclaw.session.run");
    expect(tool?.attributes).toMatchObject({
      "beamclaw.tool": "echo",
      "beamclaw.agent": "main",
      "beamclaw.session": "agent:main:main",
      "beamclaw.outcome": "success",
    });
    expect(run?.attributes).toMatchObject({
      "beamclaw.status": "completed",
      "beamclaw.steps": 2,
      "beamclaw.agent": "main",
    });
    expect(tool?.status.code).toBe(1);
  });

  it("nests tool, provider and approval spans under the run's span, with tenant attributes and error status", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const bridge = startOtelBridge({ tracer: provider.getTracer("test") });
    cleanups.push(
      () => provider.shutdown(),
      () => bridge.stop(),
    );
    const store = new MemoryStore();
    await store.open();
    const tenants = new TenantManager();
    cleanups.push(async () => {
      await tenants.stop();
      await store.close();
    });
    const refused = new ProviderError("quota gone", {
      kind: "invalid_request",
      provider: "fake",
    });
    const acme = await tenants.add({
      id: "acme",
      runtime: {
        store,
        models: createProviderChain({
          providers: [
            createScriptedProvider({
              id: "fake",
              responses: [
                {
                  toolCalls: [{ toolName: "broken", input: {} }],
                  usage: { inputTokens: 9, outputTokens: 2 },
                },
                { error: refused },
              ],
            }),
          ],
          retry: { maxAttempts: 1 },
        }),
        agents: [{ id: "main", model: "fake/m1", tools: ["broken"] }],
        tools: [
          defineTool({
            name: "broken",
            description: "fails",
            parameters: z.object({}),
            execute: () => {
              throw new Error("tool exploded");
            },
          }),
        ],
        approvals: { mode: "always" },
      },
    });
    const run = await acme.runtime.session("agent:main:main").send("go");
    for await (const event of run) {
      if (event.type === "tool-approval-request") {
        acme.runtime.approvals!.answer(event.requestId, "allow-once", {
          scopes: [APPROVALS_SCOPE],
        });
      }
    }
    expect((await run.result).status).toBe("failed");

    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name).sort()).toEqual([
      "beamclaw.approval.wait",
      "beamclaw.provider.call",
      "beamclaw.provider.call",
      "beamclaw.session.run",
      "beamclaw.tool.run",
    ]);
    const byName = (name: string) => spans.filter((s) => s.name === name);
    const [runSpan] = byName("beamclaw.session.run");
    const [toolSpan] = byName("beamclaw.tool.run");
    const [waitSpan] = byName("beamclaw.approval.wait");
    const calls = byName("beamclaw.provider.call");
    const tenantAgentSession = {
      "beamclaw.tenant": "acme",
      "beamclaw.agent": "main",
      "beamclaw.session": "agent:main:main",
    };

    expect(runSpan?.parentSpanContext).toBeUndefined();
    expect(runSpan?.attributes).toMatchObject({
      ...tenantAgentSession,
      "beamclaw.run": run.runId,
      "beamclaw.status": "failed",
      "beamclaw.steps": 2,
    });
    expect(runSpan?.status.code).toBe(2);
    const runContext = runSpan!.spanContext();
    for (const child of [toolSpan, ...calls]) {
      expect(child?.spanContext().traceId).toBe(runContext.traceId);
      expect(child?.parentSpanContext?.spanId).toBe(runContext.spanId);
      expect(child?.attributes).toMatchObject(tenantAgentSession);
    }
    expect(waitSpan?.parentSpanContext?.spanId).toBe(toolSpan!.spanContext().spanId);
    expect(waitSpan?.attributes).toMatchObject({
      ...tenantAgentSession,
      "beamclaw.decision": "allow-once",
    });
    expect(waitSpan?.status.code).toBe(1);

    expect(toolSpan?.attributes).toMatchObject({ "beamclaw.outcome": "error" });
    expect(toolSpan?.status).toMatchObject({ code: 2 });
    // The failure's type, never its text (which can quote the model's input).
    expect(toolSpan?.status.message).toBe("error");

    const [good, bad] = calls.sort(
      (a, b) => a.startTime[1] - b.startTime[1] + (a.startTime[0] - b.startTime[0]) * 1e9,
    );
    expect(good?.attributes).toMatchObject({
      "beamclaw.ref": "fake/m1",
      "beamclaw.outcome": "success",
      "gen_ai.request.model": "m1",
      "gen_ai.usage.input_tokens": 9,
      "gen_ai.usage.output_tokens": 2,
    });
    expect(good?.status.code).toBe(1);
    expect(bad?.attributes).toMatchObject({ "beamclaw.outcome": "error" });
    expect(bad?.status).toEqual({ code: 2, message: "PROVIDER_ERROR" });
    expect(bad?.events.map((e) => e.name)).toEqual(["exception"]);
  });

  it("records nothing once stopped, and needs no tracer or meter", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    cleanups.push(() => provider.shutdown());
    const bridge = startOtelBridge({ tracer: provider.getTracer("test") });
    bridge.stop();
    startOtelBridge({}).stop();
    const diagnostics = await import("node:diagnostics_channel");
    diagnostics.channel("beamclaw:tool.run").publish({
      tool: "t",
      session: "s",
      agent: "a",
      runId: "r",
      durationMs: 1,
      outcome: "success",
      attempts: 1,
    });
    await traceTelemetry(
      "beamclaw:tool.run",
      () => ({ tool: "t", toolCallId: "c", runId: "r" }),
      async () => "done",
    );
    expect(exporter.getFinishedSpans()).toEqual([]);
    const operations: TracedOperation[] = [
      "beamclaw:session.run",
      "beamclaw:provider.call",
      "beamclaw:tool.run",
      "beamclaw:approval.wait",
      "beamclaw:cron.run",
    ];
    for (const name of operations) {
      expect(telemetryTracingChannel(name).hasSubscribers).toBe(false);
    }
  });
});
