/**
 * Session maintenance over more than one page of sessions (a page is 500): a sub-agent listed
 * on an early page (recently used) goes with its stale parent listed on a later page, so it
 * must not take a place under `maxSessions`. The cap counts the sessions that stay, and
 * `afterCount` is what the store holds after the pass.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AgentRuntime, SessionMaintenance, type SessionRecord } from "../src/index.js";
import type { ModelSource } from "../src/sessions/index.js";
import { subagentIndexKey } from "../src/sessions/session-actor.js";
import { MemoryStore } from "../src/store/memory-store.js";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 25);
const PARENT = "agent:main:direct:parent";
const CHILD = "agent:main:subagent:child-1";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** No model is called: maintenance only reads and deletes. */
const models: ModelSource = {
  // biome-ignore lint/correctness/useYield: never called
  async *stream() {
    throw new Error("no model call expected");
  },
};

async function setup() {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models,
    agents: [{ id: "main", model: "test/m" }],
    now: () => NOW,
  });
  await runtime.start();
  cleanups.push(() => runtime.stop());
  const put = async (key: string, updatedAt: number, extra: Partial<SessionRecord> = {}) => {
    await store.sessions.put({ key, agentId: "main", createdAt: updatedAt, updatedAt, ...extra });
    await store.transcripts.append(key, [{ note: key }]);
  };
  // Page 1 (newest first): the sub-agent, used a minute ago, and 499 other sessions.
  await put(CHILD, NOW - 60_000, { parentKey: PARENT });
  for (let i = 0; i < 499; i++) await put(`agent:main:direct:f${i}`, NOW - 3_600_000 - i * 1000);
  // Page 2: two sessions of last week, then the parent, stale (40 days).
  await put("agent:main:direct:g1", NOW - 7 * DAY);
  await put("agent:main:direct:g2", NOW - 8 * DAY);
  await put(PARENT, NOW - 40 * DAY);
  await store.kv.set(subagentIndexKey(PARENT, "run-1|0", CHILD), NOW - 40 * DAY);
  return { store, runtime };
}

function maintenance(runtime: AgentRuntime) {
  const m = new SessionMaintenance(runtime, {
    settings: { mode: "enforce", pruneAfterMs: 30 * DAY, maxSessions: 501 },
    now: () => NOW,
  });
  cleanups.push(() => m.stop());
  return m;
}

describe("session maintenance with a sub-agent on an earlier page than its stale parent", () => {
  it("does not count the sub-agent toward maxSessions: the cap keeps every other session", async () => {
    const { store, runtime } = await setup();
    const pass = maintenance(runtime);

    const [report] = await pass.run({ dryRun: true });
    // 503 sessions: the parent is stale and its sub-agent goes with it; 501 are left, the cap.
    expect(report).toMatchObject({
      beforeCount: 503,
      pruned: 1,
      capped: 0,
      subagents: 1,
      afterCount: 501,
      wouldMutate: true,
    });
    expect([...report!.sample].sort()).toEqual([CHILD, PARENT].sort());
    expect(await store.sessions.count("main")).toBe(503);

    const [applied] = await pass.run();
    expect(applied).toMatchObject({
      beforeCount: 503,
      pruned: 1,
      capped: 0,
      subagents: 1,
      appliedCount: 2,
      afterCount: 501,
    });
    expect(await store.sessions.count("main")).toBe(applied!.afterCount);
    expect(await store.sessions.get("agent:main:direct:g2")).toBeDefined();
    expect(await store.sessions.get(CHILD)).toBeUndefined();
    expect(await store.sessions.get(PARENT)).toBeUndefined();
  });
});
