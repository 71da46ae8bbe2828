/**
 * `SessionMaintenance`: stale sessions and sessions over the cap are reported in `warn` mode
 * and deleted in `enforce` mode (record and transcript, or the transcript archived); main
 * sessions, sessions in memory and protected keys stay; a pass pages through any number of
 * sessions; passes run periodically until `stop()`.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  AgentRuntime,
  createProviderChain,
  InvalidArgumentError,
  SessionMaintenance,
  type SessionRecord,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { waitFor } from "./support.js";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 10, 25);
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(agents = ["main"]) {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({
      providers: [createScriptedProvider(Array.from({ length: 20 }, () => "ok"))],
      retry: { maxAttempts: 1 },
    }),
    agents: agents.map((id) => ({ id, model: "scripted/m" })),
    now: () => NOW,
  });
  await runtime.start();
  cleanups.push(() => runtime.stop());
  /** A stored session last updated `daysAgo` days before NOW, with a transcript entry. */
  const stored = async (key: string, daysAgo: number) => {
    const agentId = key.split(":")[1]!;
    const at = NOW - daysAgo * DAY;
    const record: SessionRecord = { key, agentId, createdAt: at, updatedAt: at };
    await store.sessions.put(record);
    await store.transcripts.append(key, [{ note: key }]);
  };
  return { store, runtime, stored };
}

function maintenance(
  runtime: AgentRuntime,
  settings: ConstructorParameters<typeof SessionMaintenance>[1]["settings"],
  extra: Partial<ConstructorParameters<typeof SessionMaintenance>[1]> = {},
) {
  const m = new SessionMaintenance(runtime, { settings, now: () => NOW, ...extra });
  cleanups.push(() => m.stop());
  return m;
}

describe("SessionMaintenance", () => {
  it("reports stale sessions in warn mode and deletes nothing", async () => {
    const { store, runtime, stored } = await setup();
    await stored("agent:main:main", 400);
    await stored("agent:main:direct:old", 40);
    await stored("agent:main:direct:new", 2);
    const [summary] = await maintenance(runtime, { pruneAfterMs: 30 * DAY }).run();
    expect(summary).toEqual({
      agentId: "main",
      mode: "warn",
      dryRun: true,
      beforeCount: 3,
      afterCount: 2,
      pruned: 1,
      capped: 0,
      subagents: 0,
      wouldMutate: true,
      appliedCount: 0,
      sample: ["agent:main:direct:old"],
    });
    expect(await store.sessions.count("main")).toBe(3);
  });

  it("deletes stale sessions and those over the cap in enforce mode; the main session stays", async () => {
    const { store, runtime, stored } = await setup();
    await stored("agent:main:main", 400);
    for (let i = 0; i < 5; i++) await stored(`agent:main:direct:p${i}`, i + 1);
    await stored("agent:main:direct:ancient", 90);
    const [summary] = await maintenance(runtime, {
      mode: "enforce",
      pruneAfterMs: 30 * DAY,
      maxSessions: 3,
    }).run();
    // Kept: main (always, outside the cap) and the three newest others.
    expect(summary).toMatchObject({
      dryRun: false,
      beforeCount: 7,
      afterCount: 4,
      pruned: 1,
      capped: 2,
      appliedCount: 3,
    });
    const left = (await store.sessions.list({ agentId: "main" })).items.map((r) => r.key);
    expect(left.sort()).toEqual([
      "agent:main:direct:p0",
      "agent:main:direct:p1",
      "agent:main:direct:p2",
      "agent:main:main",
    ]);
    expect(await store.transcripts.lastSeq("agent:main:direct:ancient")).toBe(0);
    expect(await store.transcripts.lastSeq("agent:main:main")).toBe(1);
  });

  it("keeps sessions in memory and protected keys, and archives transcripts when asked", async () => {
    const { store, runtime, stored } = await setup();
    await stored("agent:main:direct:old", 60);
    await stored("agent:main:direct:keep", 60);
    await stored("agent:main:direct:gone", 60);
    // A session in memory (a run just ended in it) is never deleted under it.
    await (await runtime.session("agent:main:direct:busy").send("hi")).result;
    await store.sessions.put({
      ...(await store.sessions.get("agent:main:direct:busy"))!,
      updatedAt: NOW - 60 * DAY,
    });
    const [summary] = await maintenance(runtime, {
      mode: "enforce",
      archiveTranscripts: true,
    }).run({ protect: ["Agent:Main:Direct:Keep"] });
    expect(summary).toMatchObject({ pruned: 2, appliedCount: 2 });
    expect(summary!.sample.sort()).toEqual(["agent:main:direct:gone", "agent:main:direct:old"]);
    expect(await store.sessions.get("agent:main:direct:keep")).toBeDefined();
    expect(await store.sessions.get("agent:main:direct:busy")).toBeDefined();
    expect(await store.sessions.get("agent:main:direct:old")).toBeUndefined();
    // Archived: the transcript moved to <key>:deleted:<ms>.
    expect(await store.transcripts.lastSeq("agent:main:direct:old")).toBe(0);
    const archived = await store.transcripts.read(`agent:main:direct:old:deleted:${NOW}`);
    expect(archived.map((r) => r.entry)).toEqual([{ note: "agent:main:direct:old" }]);
  });

  it("pages through many sessions, one agent or all, and honours dryRun and enforce overrides", async () => {
    const { store, runtime, stored } = await setup(["main", "ops"]);
    for (let i = 0; i < 1_200; i++) await stored(`agent:main:direct:u${i}`, 1 + (i % 10));
    await stored("agent:ops:direct:x", 100);
    const m = maintenance(runtime, { maxSessions: 100 });
    const report = await m.run({ agentId: "main" });
    expect(report).toHaveLength(1);
    expect(report[0]).toMatchObject({ capped: 1_100, pruned: 0, afterCount: 100, dryRun: true });
    expect(report[0]!.sample).toHaveLength(50);
    const dry = await m.run({ enforce: true, dryRun: true });
    expect(dry.map((s) => [s.agentId, s.dryRun, s.appliedCount])).toEqual([
      ["main", true, 0],
      ["ops", true, 0],
    ]);
    const applied = await m.run({ enforce: true });
    expect(applied.map((s) => [s.agentId, s.appliedCount, s.afterCount])).toEqual([
      ["main", 1_100, 100],
      ["ops", 1, 0],
    ]);
    expect(await store.sessions.count("main")).toBe(100);
    expect(await store.sessions.count("ops")).toBe(0);
    await expect(m.run({ agentId: "ghost" })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it("runs a pass every everyMs once started, with the settings of the moment, until stopped", async () => {
    const { store, runtime, stored } = await setup();
    await stored("agent:main:direct:old", 60);
    let settings: { mode: "enforce" } | undefined;
    const passes: unknown[] = [];
    const m = maintenance(runtime, () => settings, {
      everyMs: 1000,
      onPass: (summaries) => passes.push(summaries),
    });
    m.start();
    // No settings: no pass.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(passes).toHaveLength(0);
    settings = { mode: "enforce" };
    await waitFor("a pass", () => passes.length > 0, 3_000);
    expect(await store.sessions.get("agent:main:direct:old")).toBeUndefined();
    await m.stop();
    const after = passes.length;
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(passes).toHaveLength(after);
  });

  it("changes its period live: setEveryMs re-arms a started timer, and refuses a bad period", async () => {
    const { store, runtime, stored } = await setup();
    const passes: unknown[] = [];
    const m = maintenance(
      runtime,
      { mode: "enforce" },
      {
        everyMs: 3_600_000,
        onPass: (summaries) => passes.push(summaries),
      },
    );
    m.start();
    await stored("agent:main:direct:old", 60);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(passes).toHaveLength(0);
    m.setEveryMs(1000);
    expect(m.everyMs).toBe(1000);
    await waitFor("a pass at the new period", () => passes.length > 0, 3_000);
    expect(await store.sessions.get("agent:main:direct:old")).toBeUndefined();
    expect(() => m.setEveryMs(999)).toThrow(InvalidArgumentError);
    expect(m.everyMs).toBe(1000);
    await m.stop();
    // Stopped: a new period arms nothing.
    m.setEveryMs(1000);
    const after = passes.length;
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(passes).toHaveLength(after);
  });

  it("deletes in one process at a time: a held lock refuses an applying pass, not a report", async () => {
    const { store, runtime, stored } = await setup();
    await stored("agent:main:direct:old", 60);
    const other = await store.locks.acquire("sessions:maintenance", {
      owner: "another-node",
      ttlMs: 60_000,
    });
    expect(other).toBeDefined();
    const m = maintenance(runtime, { mode: "enforce" });
    await expect(m.run()).rejects.toMatchObject({ code: "STORE_LOCKED" });
    expect((await m.run({ dryRun: true }))[0]).toMatchObject({ pruned: 1, dryRun: true });
    await store.locks.release(other!);
    expect((await m.run())[0]).toMatchObject({ appliedCount: 1 });
  });

  it("refuses invalid settings", async () => {
    const { runtime } = await setup();
    expect(() => new SessionMaintenance(runtime, { settings: { pruneAfterMs: 0 } })).toThrow(
      InvalidArgumentError,
    );
    expect(
      () => new SessionMaintenance(runtime, { settings: { mode: "delete" as "warn" } }),
    ).toThrow(/warn or enforce/);
    expect(() => new SessionMaintenance(runtime, { settings: {}, everyMs: 10 })).toThrow(
      InvalidArgumentError,
    );
  });
});

describe("SessionMaintenance with a period longer than a timer holds", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("waits a 30-day everyMs out instead of running passes back to back", async () => {
    const { runtime } = await setup();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    const passes: unknown[] = [];
    const m = maintenance(
      runtime,
      { mode: "warn" },
      {
        everyMs: 30 * DAY,
        onPass: (summaries) => passes.push(summaries),
      },
    );
    m.start();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(passes).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(30 * DAY - 1_001);
    expect(passes).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(passes).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(30 * DAY);
    expect(passes).toHaveLength(2);
    await m.stop();
  });
});
