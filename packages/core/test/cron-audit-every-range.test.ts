/**
 * An `every` interval so long that its next run would fall past the last instant a Date can
 * hold (8.64e15 ms) is refused like such an `at` or `anchor`, instead of being scheduled at a
 * time no Date can show.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CronError, compileSchedule } from "../src/index.js";
import { type CronFixture, startCron } from "./cron-support.js";
import { failureOf } from "./support.js";

const MAX_DATE_MS = 8.64e15;
const fixtures: CronFixture[] = [];

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

describe("every intervals at the end of time", () => {
  it("an interval whose first run would be past the last instant a Date can hold is refused", async () => {
    for (const every of [Number.MAX_SAFE_INTEGER, MAX_DATE_MS + 1, MAX_DATE_MS]) {
      const error = await failureOf(() => compileSchedule({ every }, 1_000, "far"));
      expect(CronError.isInstance(error), String(every)).toBe(true);
      expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
      expect((error as CronError).message).toMatch(/schedule\.every/);
    }
  });

  it("a long interval that fits is accepted, and no occurrence is ever past the last Date", () => {
    const compiled = compileSchedule({ every: MAX_DATE_MS / 2, anchor: 0 }, 0);
    expect(compiled.nextAfter(0)).toBe(MAX_DATE_MS / 2);
    expect(compiled.nextAfter(MAX_DATE_MS / 2)).toBe(MAX_DATE_MS);
    expect(compiled.nextAfter(MAX_DATE_MS)).toBeUndefined();
    expect(compiled.countBetween(0, Number.MAX_SAFE_INTEGER, 10)).toBe(2);
    expect(compiled.recentBetween(0, Number.MAX_SAFE_INTEGER, 10)).toEqual([
      MAX_DATE_MS / 2,
      MAX_DATE_MS,
    ]);
  });

  it("add refuses such a job with a typed error and stores nothing", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const error = await failureOf(() =>
      fixture.service.add({ id: "far", schedule: { every: Number.MAX_SAFE_INTEGER }, prompt: "p" }),
    );
    expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    expect((error as CronError).jobId).toBe("far");
    expect(await fixture.store.cron.getJob("far")).toBeUndefined();
    expect(await fixture.service.list()).toEqual([]);
  });

  it("a job whose last occurrence passed has no next run and arms no timer", async () => {
    const fixture = await startCron({ startAt: MAX_DATE_MS - 1_000 });
    fixtures.push(fixture);
    await fixture.service.add({
      id: "last",
      schedule: { every: 1_000, anchor: MAX_DATE_MS - 1_000 },
      prompt: "p",
    });
    await fixture.clock.advance(1_000);
    expect(fixture.runner.timesOf("last")).toEqual([MAX_DATE_MS]);
    const job = await fixture.service.get("last");
    expect(job.state.nextRunAt).toBeUndefined();
    expect((await fixture.service.cronStatus()).timerArmed).toBe(false);
  });
});
