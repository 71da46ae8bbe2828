/**
 * Session maintenance and sub-agents: deleting a session deletes the sub-agents it spawned,
 * so a pass that deletes a stale parent deletes its sub-agents too, also those that are not
 * stale themselves or belong to another agent. The pass counts them (`subagents`,
 * `appliedCount`, `afterCount`) and lists them (`sample`), in a report as when it deletes; a
 * parent whose sub-agents include a protected key stays; no spawn record is left.
 */
import { describe, expect, it } from "vitest";
import { SessionMaintenance } from "../src/index.js";
import type { AgentRuntime } from "../src/sessions/index.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import {
  BrainSource,
  firstUser,
  lastUser,
  text,
  toolCall,
  useRuntimes,
} from "./fixtures/subagents.js";

const { newStore, startRuntime } = useRuntimes();

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 25);
const PARENT = "agent:boss:direct:alice";
const SPAWNS = "beamclaw:subagent:";

/** The parent spawns the tasks its message lists after "spawn:"; a child answers at once. */
const source = () =>
  new BrainSource((call) => {
    const first = firstUser(call.request.messages) ?? "";
    if (first.startsWith("TASK")) return [text(`did ${first}`)];
    if (call.request.messages.at(-1)?.role === "tool") return [text("parent done")];
    const tasks = (lastUser(call.request.messages) ?? "").replace(/^spawn:/, "").split(",");
    return tasks.map((task, i) => toolCall(`s${i}`, "spawn_subagent", { task: task.trim() }));
  });

/**
 * A family made `daysAgo` days before NOW by a runtime stopped since (nothing of it is in
 * memory), and a runtime at NOW on the same store. Returns the sub-agents' keys.
 */
async function family(
  subagents: { agentId?: string },
  daysAgo: number,
): Promise<{ store: MemoryStore; runtime: AgentRuntime; children: string[] }> {
  const store = await newStore();
  const agents = [
    { id: "boss", model: "test/boss", subagents },
    { id: "worker", model: "test/worker" },
  ];
  const before = await startRuntime({
    store,
    models: source(),
    agents,
    now: () => NOW - daysAgo * DAY,
  });
  const run = await before.session(PARENT).send("spawn:TASK a, TASK b");
  expect((await run.result).text).toBe("parent done");
  await before.stop();
  const children = (await store.sessions.list({ limit: 100 })).items
    .filter((r) => r.parentKey === PARENT)
    .map((r) => r.key);
  expect(children).toHaveLength(2);
  const runtime = await startRuntime({ store, models: source(), agents, now: () => NOW });
  return { store, runtime, children };
}

function maintenance(runtime: AgentRuntime) {
  return new SessionMaintenance(runtime, {
    settings: { mode: "enforce", pruneAfterMs: 30 * DAY },
    now: () => NOW,
  });
}

describe("session maintenance deleting a parent of sub-agents", () => {
  it("counts and lists the sub-agents deleted with a stale parent, also those not stale", async () => {
    const { store, runtime, children } = await family({}, 40);
    // The sub-agents were used since: not stale themselves, and deleted with their parent.
    for (const key of children) {
      await store.sessions.put({ ...(await store.sessions.get(key))!, updatedAt: NOW - DAY });
    }
    const pass = maintenance(runtime);

    const [report] = await pass.run({ dryRun: true });
    expect(report).toMatchObject({
      agentId: "boss",
      beforeCount: 3,
      afterCount: 0,
      pruned: 1,
      capped: 0,
      subagents: 2,
      appliedCount: 0,
      wouldMutate: true,
    });
    expect([...report!.sample].sort()).toEqual([PARENT, ...children].sort());
    expect(await store.sessions.count("boss")).toBe(3);

    const [applied] = await pass.run();
    expect(applied).toMatchObject({
      beforeCount: 3,
      afterCount: 0,
      pruned: 1,
      subagents: 2,
      appliedCount: 3,
    });
    expect([...applied!.sample].sort()).toEqual([PARENT, ...children].sort());
    expect(await store.sessions.count("boss")).toBe(applied!.afterCount);
    for (const key of [PARENT, ...children]) {
      expect(await store.transcripts.lastSeq(key)).toBe(0);
    }
    expect(await store.kv.keys(SPAWNS)).toEqual([]);
  });

  it("counts the sub-agents of another agent deleted with a stale parent, once", async () => {
    const { store, runtime, children } = await family({ agentId: "worker" }, 40);
    expect(children.every((key) => key.startsWith("agent:worker:"))).toBe(true);

    const summaries = await maintenance(runtime).run();
    expect(summaries.map((s) => [s.agentId, s.pruned, s.subagents, s.appliedCount])).toEqual([
      ["boss", 1, 2, 3],
      ["worker", 0, 0, 0],
    ]);
    // Another agent's sessions are not this agent's count.
    expect(summaries[0]).toMatchObject({ beforeCount: 1, afterCount: 0 });
    expect([...summaries[0]!.sample].sort()).toEqual([PARENT, ...children].sort());
    expect(await store.sessions.count("worker")).toBe(0);
    expect(await store.kv.keys(SPAWNS)).toEqual([]);
  });

  it("keeps a stale parent whose sub-agents include a protected key, and the family with it", async () => {
    const { store, runtime, children } = await family({}, 40);
    const [summary] = await maintenance(runtime).run({ protect: [children[0]!] });
    // The other sub-agent is stale on its own account; the parent stays with the protected one.
    expect(summary).toMatchObject({ pruned: 1, subagents: 0, appliedCount: 1, afterCount: 2 });
    expect(summary!.sample).toEqual([children[1]]);
    expect(await store.sessions.get(PARENT)).toBeDefined();
    expect(await store.sessions.get(children[0]!)).toBeDefined();
    expect(await store.sessions.get(children[1]!)).toBeUndefined();
    expect(await store.sessions.count("boss")).toBe(2);
  });
});
