import { afterEach, describe, expect, it } from "vitest";
import { AgentRuntime, InvalidArgumentError, type ModelSource } from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const seen: string[] = [];
const source: ModelSource = {
  async *stream(request) {
    seen.push(request.system ?? "");
    yield { type: "text-delta", text: "ok" };
    yield { type: "finish", reason: "stop" };
  },
};

async function runtime() {
  const store = new MemoryStore();
  await store.open();
  const rt = new AgentRuntime({
    store,
    models: source,
    agents: [{ id: "main", model: "p/m", systemPrompt: "before" }],
    approvals: { mode: "on-miss" },
  });
  await rt.start();
  cleanups.push(async () => {
    await rt.stop();
    await store.close();
  });
  return rt;
}

describe("hot reconfiguration", () => {
  it("the next run of a live session uses its agent's new definition", async () => {
    seen.length = 0;
    const rt = await runtime();
    const session = rt.session("agent:main:main");
    await (await session.send("one")).result;
    rt.reconfigure({ agents: [{ id: "main", model: "p/m", systemPrompt: "after" }] });
    await (await session.send("two")).result;
    expect(seen).toEqual(["before", "after"]);
  });

  it("refuses invalid agents and changes nothing", async () => {
    const rt = await runtime();
    expect(() => rt.reconfigure({ agents: [] })).toThrow(InvalidArgumentError);
    expect(() => rt.reconfigure({ agents: [{ id: "main", model: "no-slash" }] })).toThrow(
      /provider\/model/,
    );
    expect(rt.agents.map((a) => a.systemPrompt)).toEqual(["before"]);
  });

  it("changes the approval mode, timeout and default decision of the running gate", async () => {
    const rt = await runtime();
    rt.approvals!.configure({ mode: "always", timeoutMs: 5_000, defaultDecision: "allow-once" });
    expect([rt.approvals!.mode, rt.approvals!.timeoutMs, rt.approvals!.defaultDecision]).toEqual([
      "always",
      5_000,
      "allow-once",
    ]);
    expect(() => rt.approvals!.configure({ mode: "sometimes" as never })).toThrow(
      InvalidArgumentError,
    );
    expect(() => rt.reconfigure({ toolTimeoutMs: -1 })).toThrow(InvalidArgumentError);
    rt.reconfigure({ toolTimeoutMs: 1_000 });
  });
});
