/**
 * Two plain `CronService`s of one agent on one Redis store (two connections, as two
 * processes would have, without a cluster) share the backoff after a failed run: the retry
 * runs once, on one of them, when the backoff says (not an occurrence earlier on the other
 * one, nor twice), and the errors in a row are counted across both, through the claim record
 * the services keep in `kv` (compare-and-set in Redis).
 */
import {
  type CronJobRunner,
  type CronRunOutcome,
  CronService,
  createManualClock,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { advanceSettled } from "./support/cron.js";
import { openSharedStores } from "./support/redis.js";

/** Cleanups of the test, run last first: the prefix's keys go after the stores close. */
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MINUTE = 60_000;

describe("two plain cron services on one Redis store, after a failed run", () => {
  it("run the retry once when the backoff says, and count the errors across both", async () => {
    // Two connections to one prefix: two processes sharing the store.
    const [sa, sb] = await openSharedStores("cron-backoff", cleanups);
    const clock = createManualClock(Date.parse("2026-01-05T00:00:00Z"));
    const fired: Array<{ service: string; scheduledAt: number }> = [];
    // The first two runs fail, the others succeed, whichever service runs them.
    const outcome = (n: number): CronRunOutcome =>
      n < 2 ? { status: "error", error: `boom ${n}` } : { status: "ok" };
    const runner =
      (service: string): CronJobRunner =>
      async (_job, context) => {
        const n = fired.length;
        fired.push({ service, scheduledAt: context.scheduledAt });
        return outcome(n);
      };
    const options = { agentId: "ops", clock, backoffMs: [25 * MINUTE, 45 * MINUTE] };
    const a = await new CronService({ ...options, store: sa, runJob: runner("a") }).start();
    cleanups.push(() => a.stop());
    await a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
    const b = await new CronService({ ...options, store: sb, runJob: runner("b") }).start();
    cleanups.push(() => b.stop());
    const first = (await a.get("tick")).state.nextRunAt!;
    expect((await b.get("tick")).state.nextRunAt).toBe(first);
    // A minute at a time, each step waiting until both services have handled what came due
    // (claims and run records in Redis included) and armed their timers for what is next.
    // To 85 min after the first due time.
    for (let minute = 0; minute < 95; minute++) await advanceSettled(clock, [a, b], MINUTE);
    // As one service would: 0 fails (25 min backoff), its retry at 25 fails (45 min, the
    // second step), the retry at 70 succeeds, then every 10 min again. Each exactly once.
    expect(fired.map((f) => (f.scheduledAt - first) / MINUTE)).toEqual([0, 25, 70, 80]);
    const log = (await a.runs("tick")).sort((x, y) => x.scheduledAt - y.scheduledAt);
    expect(log.map((r) => r.consecutiveErrors)).toEqual([1, 2, undefined, undefined]);
    const claim = await sa.kv.get<{ scheduledAt: number; errors: number; retryAt?: number }>(
      "cron:fired:ops:tick",
    );
    expect(claim).toMatchObject({ scheduledAt: first + 80 * MINUTE, errors: 0 });
    expect(claim?.retryAt).toBeUndefined();
  });

  it("run one retry after two overlapping failed runs, not one retry each", async () => {
    const [sa, sb] = await openSharedStores("cron-backoff", cleanups);
    const clock = createManualClock(Date.parse("2026-01-05T00:00:00Z"));
    const fired: number[] = [];
    let finishFirst!: () => void;
    const firstDone = new Promise<void>((resolve) => {
      finishFirst = resolve;
    });
    // The first run goes on until told and fails; the second fails at once; the rest succeed.
    const runJob: CronJobRunner = async (_job, context) => {
      const n = fired.length;
      fired.push(context.scheduledAt);
      if (n === 0) await firstDone;
      return n < 2 ? { status: "error", error: `boom ${n}` } : { status: "ok" };
    };
    const options = { agentId: "ops", clock, runJob, backoffMs: [8 * MINUTE] };
    const a = await new CronService({ ...options, store: sa }).start();
    cleanups.push(() => a.stop());
    await a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
    const b = await new CronService({ ...options, store: sb }).start();
    cleanups.push(() => b.stop());
    const first = (await a.get("tick")).state.nextRunAt!;
    // Each minute waits for every run to be recorded but the slow first one while it is held.
    let held = true;
    const advance = async (minutes: number) => {
      for (let minute = 0; minute < minutes; minute++) {
        const running = held && clock.now() + MINUTE >= first ? 1 : 0;
        await advanceSettled(clock, [a, b], MINUTE, running);
      }
    };
    // The run at 0 goes on for 25 min on one service; on the other, the occurrence at 10
    // fails and its retry (20, past the 8 min backoff) succeeds meanwhile.
    await advance(35);
    expect(fired.map((due) => (due - first) / MINUTE)).toEqual([0, 10, 20]);
    held = false;
    finishFirst();
    await advance(25);
    // No second retry 8 min after the slow run's end (33): the occurrence at 30 runs.
    expect(fired.map((due) => (due - first) / MINUTE)).toEqual([0, 10, 20, 30, 40, 50]);
  });
});
