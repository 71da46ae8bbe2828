/**
 * Two plain `CronService`s of one agent on one Redis store (two connections, as two
 * processes would have, without a cluster): each occurrence of a job is fired by one of them
 * only, through the per-fire claim the service keeps in `kv` (compare-and-set in Redis).
 */
import { type CronJobRunner, CronService, createManualClock } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { advanceSettled } from "./support/cron.js";
import { openSharedStores } from "./support/redis.js";

/** Cleanups of the test, run last first: the prefix's keys go after the stores close. */
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MINUTE = 60_000;

describe("two plain cron services on one Redis store", () => {
  it("fire each occurrence of a job once between them", async () => {
    // Two connections to one prefix: two processes sharing the store.
    const [sa, sb] = await openSharedStores("cron-claim", cleanups);
    const clock = createManualClock(Date.parse("2026-01-05T00:00:00Z"));
    const fired: Array<{ service: string; scheduledAt: number }> = [];
    const runner =
      (service: string): CronJobRunner =>
      async (_job, context) => {
        fired.push({ service, scheduledAt: context.scheduledAt });
        return { status: "ok", output: service };
      };
    const a = await new CronService({
      agentId: "ops",
      store: sa,
      clock,
      runJob: runner("a"),
    }).start();
    cleanups.push(() => a.stop());
    await a.add({ id: "tick", schedule: { every: MINUTE }, prompt: "p" });
    const b = await new CronService({
      agentId: "ops",
      store: sb,
      clock,
      runJob: runner("b"),
    }).start();
    cleanups.push(() => b.stop());
    expect((await b.get("tick")).state.nextRunAt).toBe((await a.get("tick")).state.nextRunAt);
    // One occurrence at a time, each step waiting until both services have handled it
    // (claims and run records in Redis included) and armed their timers for the next.
    for (let i = 0; i < 10; i++) await advanceSettled(clock, [a, b], MINUTE);
    const dues = fired.map((f) => f.scheduledAt);
    expect(dues).toHaveLength(10);
    expect(new Set(dues).size).toBe(10);
    const claim = await sa.kv.get<{ scheduledAt: number }>("cron:fired:ops:tick");
    expect(claim?.scheduledAt).toBe(Math.max(...dues));
  });
});
