/**
 * A job removed while it runs: its run is aborted, and whoever waits on `runNow` is answered
 * at once with an `interrupted` run, even when the job's code never settles. The run's late
 * end changes nothing, and the job's id can be used again at once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type CronFixture, HOUR, startCron } from "./cron-support.js";

let fixture: CronFixture | undefined;
afterEach(async () => {
  await fixture?.service.stop();
  fixture = undefined;
});

describe("a job removed while it runs", () => {
  it("answers a runNow waiting on it with an interrupted run, though the run never settles", async () => {
    fixture = await startCron();
    const { service, clock, runner } = fixture;
    let signal: AbortSignal | undefined;
    runner.behave = (_job, context) => {
      signal = context.signal;
      return new Promise(() => {}); // ignores the abort
    };
    await service.add({ id: "slow", schedule: { every: HOUR }, prompt: "p" });
    let settled: unknown;
    const waiting = service.runNow("slow").then(
      (run) => {
        settled = run;
      },
      (error: unknown) => {
        settled = error;
      },
    );
    await clock.advance(0);
    expect(await service.remove("slow")).toBe(true);
    await clock.advance(0);
    await waiting;
    expect(signal?.aborted).toBe(true);
    expect(settled).toMatchObject({
      jobId: "slow",
      trigger: "manual",
      status: "interrupted",
      error: "the job was removed while it ran",
    });
    // Nothing is left of it: no log, no marker, no timer.
    expect(await fixture.store.cron.listRuns("slow")).toEqual([]);
    expect(await fixture.store.kv.keys("cron:running:")).toEqual([]);
    expect(clock.activeTimers).toBe(0);
  });

  it("a run that honours the abort ends the same way, and its late end does not touch a new job of that id", async () => {
    fixture = await startCron();
    const { service, clock, runner } = fixture;
    let finish: (() => void) | undefined;
    runner.behave = (job) =>
      job.prompt === "old"
        ? new Promise((resolve) => {
            finish = () => resolve({ status: "error", error: "aborted" });
          })
        : { status: "ok" };
    await service.add({ id: "job", schedule: { every: HOUR }, prompt: "old" });
    const waiting = service.runNow("job");
    await clock.advance(0);
    await service.remove("job");
    const run = await waiting;
    expect(run.status).toBe("interrupted");
    await service.add({ id: "job", schedule: { every: HOUR }, prompt: "new" });
    finish?.();
    await clock.advance(0);
    const job = await service.get("job");
    expect(job.prompt).toBe("new");
    expect(job.state).toMatchObject({ runCount: 0, consecutiveErrors: 0 });
    expect(await service.runs("job")).toEqual([]);
  });
});
