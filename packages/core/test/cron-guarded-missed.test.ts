/**
 * Cron services of one agent on two nodes, each with its node's guarded runner
 * (`guardCronRunner`, as `agentRuntimeJobRunner` on a `ClusterNode`). A node that was busy
 * or stalled past a due time the other node ran finds it missed: it claims the due time
 * before recording it, and records nothing when the other node has it. Before, it logged
 * the due time `missed` beside the other node's `ok` (one due time recorded twice: the
 * store-redis `cluster-cron-default` "expected 8 to be 9" on a loaded machine).
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  type CronRun,
  CronRunGuard,
  CronService,
  createManualClock,
  guardCronRunner,
  type ManualClock,
  MemoryStore,
} from "../src/index.js";
import { at, MINUTE, recordingRunner } from "./cron-support.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Node a and node b on one store, each with its own clock (b's stands still: b is stalled). */
async function twoNodes() {
  const start = at("2026-01-05T00:00:00Z");
  const clockA = createManualClock(start);
  const clockB = createManualClock(start);
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const runner = recordingRunner(clockA);
  const node = async (nodeId: string, clock: ManualClock) => {
    const service = await new CronService({
      agentId: "ops",
      store,
      clock,
      runJob: guardCronRunner(runner.runJob, new CronRunGuard({ store, nodeId }), {
        current: async () => true,
      }),
    }).start();
    cleanups.push(() => service.stop());
    return service;
  };
  const a = await node("a", clockA);
  await a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
  const b = await node("b", clockB);
  return { clockA, clockB, store, runner, a, b };
}

const outcomes = (runs: CronRun[]) =>
  runs.map((r) => [r.scheduledAt, r.status] as const).sort((x, y) => x[0] - y[0]);

describe("a guarded cron service that finds a due time missed", () => {
  it("records nothing for a due time another node ran", async () => {
    const { clockA, clockB, store, runner, a, b } = await twoNodes();
    const first = (await a.get("tick")).state.nextRunAt!;
    const second = first + 10 * MINUTE;
    await clockA.advance(10 * MINUTE);
    await a.cronStatus();
    await clockA.advance(10 * MINUTE);
    await a.cronStatus();
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([first, second]);

    // Node b wakes past both due times: run-once (the default) runs the latest as a catch-up
    // (the guard finds it node a's and skips it) and would record the other one missed.
    clockB.jumpTo(clockB.now() + 20 * MINUTE + 1); // stalled: nothing fired in between
    await clockB.advance(0);
    await b.cronStatus();
    await b.cronStatus();
    expect(runner.calls).toHaveLength(2);
    expect(outcomes(await a.runs("tick"))).toEqual([
      [first, "ok"],
      [second, "ok"],
    ]);
    expect((await b.get("tick")).state.missedCount).toBe(0);
    // Every claim of a due time is node a's.
    const claims = await store.kv.keys("cron-run:tick:");
    expect(claims).toHaveLength(2);
    for (const key of claims) {
      expect(await store.kv.get<{ nodeId: string }>(key)).toMatchObject({ nodeId: "a" });
    }
  });

  it("records a due time nobody ran missed, once, on the node that claims it", async () => {
    const { clockB, store, runner, a, b } = await twoNodes();
    const first = (await a.get("tick")).state.nextRunAt!;
    const second = first + 10 * MINUTE;
    await a.stop(); // only node b is left, and it was stalled past both due times
    clockB.jumpTo(clockB.now() + 20 * MINUTE + 1); // stalled: nothing fired in between
    await clockB.advance(0);
    await b.cronStatus();
    await b.cronStatus();
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([second]);
    const runs = await b.runs("tick");
    expect(outcomes(runs)).toEqual([
      [first, "missed"],
      [second, "ok"],
    ]);
    expect(await store.kv.get<{ nodeId: string }>(`cron-run:tick:${first}`)).toMatchObject({
      nodeId: "b",
    });
    expect((await b.get("tick")).state.missedCount).toBe(1);
  });
});
