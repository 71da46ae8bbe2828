import { metrics } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { AgentRuntime, defineTool, type ModelSource } from "../src/index.js";
import { startOtelBridge } from "../src/otel/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

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
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});
