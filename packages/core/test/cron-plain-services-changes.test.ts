/**
 * Two plain `CronService`s of one agent on one store, without a cluster's `sync` (two
 * processes, or a restart overlapping the old process): a change made on one (a job removed,
 * disabled or updated) is not overwritten by the other's next write of the job (a run
 * recorded). That write merges with the stored record (three-way, as in a cluster) and takes
 * the change in: a removed job is not brought back and stops running there, a disabled one
 * stays disabled, an update is kept beside the other service's run count. A service that
 * loses a due time to the other reads the job and takes in a changed definition. A job added
 * on one is found on the other when asked for by id. Without all this, the other service
 * wrote its whole copy back: the job came back, enabled, and ran on.
 */
import { describe, expect, it } from "vitest";
import { MINUTE, startCron } from "./cron-support.js";

describe("two plain cron services on one store", () => {
  it("keep a job removed, disabled or changed on one of them, and the other takes the change in", async () => {
    const fixture = await startCron();
    const { clock, store, runner } = fixture;
    const a = fixture.service;
    await a.add({ id: "gone", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await a.add({ id: "paused", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await a.add({ id: "renamed", schedule: { every: 10 * MINUTE }, prompt: "p" });
    const b = await fixture.restart();
    try {
      await a.remove("gone");
      await a.disable("paused");
      await a.update("renamed", { prompt: "new prompt", timeoutMs: 60_000 });
      for (let i = 0; i < 4; i++) {
        await clock.advance(10 * MINUTE);
        await a.cronStatus();
        await b.cronStatus();
      }
      const runsOf = (id: string) => runner.calls.filter((call) => call.jobId === id).length;
      // b ran its copies of the removed and the disabled job at most once more (its write
      // of that run took the change in), never after.
      expect(runsOf("gone")).toBeLessThanOrEqual(1);
      expect(runsOf("paused")).toBeLessThanOrEqual(1);
      // The renamed job ran every 10 minutes, on one service or the other (claims), with the
      // new prompt once either had it.
      expect(runsOf("renamed")).toBe(4);
      const stored = await store.cron.listJobs();
      expect(stored.map((job) => [job.id, job.enabled])).toEqual([
        ["paused", false],
        ["renamed", true],
      ]);
      expect(stored[1]).toMatchObject({ prompt: "new prompt", timeoutMs: 60_000 });
      expect((stored[1]?.state as { runCount?: number } | undefined)?.runCount).toBe(4);
      for (const service of [a, b]) {
        const jobs = await service.list();
        expect(jobs.map((job) => [job.id, job.enabled])).toEqual([
          ["paused", false],
          ["renamed", true],
        ]);
        expect(jobs[1]).toMatchObject({ prompt: "new prompt", timeoutMs: 60_000 });
      }
      // A job added on a is found on b when asked for by id, and from then on scheduled there.
      await a.add({ id: "late", schedule: { every: 10 * MINUTE }, prompt: "p" });
      expect(await b.get("late")).toMatchObject({ id: "late", enabled: true });
      expect((await b.list()).map((job) => job.id)).toEqual(["late", "paused", "renamed"]);
    } finally {
      await b.stop();
      await a.stop();
    }
  });
});
