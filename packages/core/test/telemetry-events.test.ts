import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AgentRuntime,
  APPROVALS_SCOPE,
  defineTool,
  type ModelSource,
  subscribeTelemetry,
  type TelemetryEvents,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

const offs: Array<() => void> = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const off of offs.splice(0)) off();
  for (const c of cleanups.splice(0)) await c();
});

function collect<C extends keyof TelemetryEvents>(name: C): TelemetryEvents[C][] {
  const seen: TelemetryEvents[C][] = [];
  offs.push(subscribeTelemetry(name, (e) => seen.push(e)));
  return seen;
}

const twoStep: ModelSource = {
  async *stream(request) {
    if (request.messages.at(-1)?.role === "user") {
      yield { type: "tool-call", toolCallId: "c1", toolName: "add", input: { a: 1, b: 2 } };
      yield { type: "usage", usage: { inputTokens: 5, outputTokens: 1 } };
      yield { type: "finish", reason: "tool-calls" };
    } else {
      yield { type: "text-delta", text: "3" };
      yield { type: "usage", usage: { inputTokens: 7, outputTokens: 1 } };
      yield { type: "finish", reason: "stop" };
    }
  },
};

describe("telemetry of messages, runs, tools and approvals", () => {
  it("publishes session.message, approval.request, approval.decision, tool.run and session.run with session and agent", async () => {
    const messages = collect("beamclaw:session.message");
    const requests = collect("beamclaw:approval.request");
    const decisions = collect("beamclaw:approval.decision");
    const tools = collect("beamclaw:tool.run");
    const runs = collect("beamclaw:session.run");
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: twoStep,
      agents: [{ id: "main", model: "p/m", tools: ["add"] }],
      tools: [
        defineTool({
          name: "add",
          description: "adds",
          parameters: z.object({ a: z.number(), b: z.number() }),
          execute: ({ a, b }) => a + b,
        }),
      ],
      approvals: { mode: "always" },
    });
    await runtime.start();
    cleanups.push(async () => {
      await runtime.stop();
      await store.close();
    });
    const run = await runtime.session("agent:main:main").send("1+2?");
    for await (const event of run) {
      if (event.type === "tool-approval-request") {
        runtime.approvals!.answer(event.requestId, "allow-once", { scopes: [APPROVALS_SCOPE] });
      }
    }
    expect((await run.result).text).toBe("3");
    expect(messages).toEqual([
      { session: "agent:main:main", agent: "main", runId: run.runId, disposition: "started" },
    ]);
    expect(requests).toEqual([
      expect.objectContaining({ session: "agent:main:main", tool: "add", key: "tool:add" }),
    ]);
    expect(decisions).toEqual([
      expect.objectContaining({
        tool: "add",
        decision: "allow-once",
        source: "answer",
        runId: run.runId,
      }),
    ]);
    expect(tools).toEqual([
      expect.objectContaining({
        tool: "add",
        session: "agent:main:main",
        agent: "main",
        outcome: "success",
        attempts: 1,
      }),
    ]);
    expect(tools[0]!.durationMs).toBeGreaterThanOrEqual(0);
    expect(runs).toEqual([
      expect.objectContaining({
        session: "agent:main:main",
        agent: "main",
        status: "completed",
        steps: 2,
        inputTokens: 12,
        outputTokens: 2,
      }),
    ]);
  });
});
