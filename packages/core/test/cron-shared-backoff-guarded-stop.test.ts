/**
 * Cron services of one agent on two nodes, each with its node's guarded runner
 * (`guardCronRunner`, as `agentRuntimeJobRunner` on a `ClusterNode`): both fire every due
 * time and the guard lets one node run it. A node stopped while its run of a due time had
 * not claimed it yet (the other node runs it) records nothing: before, it logged the due
 * time `interrupted`, beside the other node's `ok` (one due time recorded twice).
 */
import { describe, expect, it } from "vitest";
import {
  type CronJobRunner,
  CronRunGuard,
  CronService,
  createManualClock,
  guardCronRunner,
  MemoryStore,
} from "../src/index.js";
import { at, MINUTE, recordingRunner } from "./cron-support.js";

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function twoNodes() {
  const clock = createManualClock(at("2026-01-05T00:00:00Z"));
  const store = new MemoryStore();
  await store.open();
  const runner = recordingRunner(clock);
  // Node b's look at the shared job record (the guard's `current` check) is slow: its run
  // of a due time has not reached the claim when node a has already run it.
  const bChecked = gate();
  const guarded = (nodeId: string, current: () => Promise<boolean>): CronJobRunner =>
    guardCronRunner(runner.runJob, new CronRunGuard({ store, nodeId }), { current });
  const a = await new CronService({
    agentId: "ops",
    store,
    clock,
    runJob: guarded("a", async () => true),
  }).start();
  await a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
  const b = await new CronService({
    agentId: "ops",
    store,
    clock,
    runJob: guarded("b", async () => {
      await bChecked.promise;
      return true;
    }),
  }).start();
  return { clock, store, runner, a, b, bChecked };
}

describe("guarded cron services on two nodes", () => {
  it("a node stopped before its run claimed the due time records nothing for it", async () => {
    const { clock, store, runner, a, b, bChecked } = await twoNodes();
    try {
      const due = (await a.get("tick")).state.nextRunAt!;
      await clock.advance(10 * MINUTE);
      await a.cronStatus();
      expect((await b.cronStatus()).running).toBe(1); // b's run waits before the claim
      expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([due]);
      await b.stop();
      bChecked.open();
      const runs = await a.runs("tick");
      expect(runs.map((r) => [r.scheduledAt, r.status])).toEqual([[due, "ok"]]);
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      bChecked.open();
      await a.stop();
      await b.stop();
      await store.close();
    }
  });

  it("a node stopped while its run was claiming the due time does not start the run", async () => {
    const { clock, store, runner, a, b, bChecked } = await twoNodes();
    try {
      await a.stop(); // only node b fires the due time
      await clock.advance(10 * MINUTE);
      expect((await b.cronStatus()).running).toBe(1);
      await b.stop();
      bChecked.open(); // b's runner now claims the due time (nobody else did), after the stop
      await clock.advance(0);
      expect(runner.calls).toEqual([]);
      expect(await store.kv.keys("cron-run:tick:")).toHaveLength(1);
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      bChecked.open();
      await b.stop();
      await store.close();
    }
  });

  it("a run that claimed its due time is marked running, and recorded interrupted when its node stops", async () => {
    const { clock, store, runner, a, b, bChecked } = await twoNodes();
    const release = gate();
    runner.behave = async () => {
      await release.promise;
      return { status: "ok" };
    };
    try {
      const due = (await a.get("tick")).state.nextRunAt!;
      await clock.advance(10 * MINUTE);
      await a.cronStatus();
      expect(runner.calls).toHaveLength(1); // node a claimed the due time and runs it
      expect(await store.kv.get("cron:running:ops:tick")).toMatchObject({ scheduledAt: due });
      await a.stop();
      bChecked.open();
      await b.cronStatus(); // b's run finds the due time claimed and skips it
      const runs = await b.runs("tick");
      expect(runs.map((r) => [r.scheduledAt, r.status])).toEqual([[due, "interrupted"]]);
      expect(runner.calls).toHaveLength(1);
    } finally {
      release.open();
      bChecked.open();
      await a.stop();
      await b.stop();
      await store.close();
    }
  });
});
