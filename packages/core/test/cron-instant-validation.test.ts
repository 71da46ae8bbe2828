/**
 * Instants of `at` and `anchor` that do not exist are refused with INVALID_CRON_SCHEDULE:
 * a day past the end of its month (which Date.parse would roll over into the next month)
 * and epoch ms past the last instant a Date can hold.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CronError, compileSchedule, parseInstant } from "../src/index.js";
import { at, type CronFixture, startCron } from "./cron-support.js";
import { failureOf } from "./support.js";

const fixtures: CronFixture[] = [];

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

describe("instants that do not exist", () => {
  it("a day past the end of its month is refused, not rolled over into the next month", async () => {
    for (const value of [
      "2026-02-29T09:00:00Z", // 2026 is not a leap year
      "2026-02-30T09:00:00Z",
      "2026-04-31T00:00:00+02:00",
      "2026-06-31T12:00:00.500Z",
      "2100-02-29T00:00:00Z",
    ]) {
      const error = await failureOf(() => parseInstant(value, "schedule.at"));
      expect(CronError.isInstance(error), value).toBe(true);
      expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    }
  });

  it("real days at the end of a month are read as they are", () => {
    expect(parseInstant("2028-02-29T09:00:00Z", "x")).toBe(at("2028-02-29T09:00:00Z"));
    expect(parseInstant("2000-02-29T00:00:00Z", "x")).toBe(Date.UTC(2000, 1, 29));
    expect(parseInstant("2026-12-31T23:59:59+01:00", "x")).toBe(at("2026-12-31T22:59:59Z"));
    expect(parseInstant("2026-04-30T00:00:00Z", "x")).toBe(Date.UTC(2026, 3, 30));
  });

  it("epoch ms past the last instant a Date can hold are refused", async () => {
    expect(parseInstant(8.64e15, "x")).toBe(8.64e15);
    for (const schedule of [{ at: 8.64e15 + 1 }, { every: 1_000, anchor: 9e15 }]) {
      const error = await failureOf(() => compileSchedule(schedule, 0, "j"));
      expect((error as CronError).code, JSON.stringify(schedule)).toBe("INVALID_CRON_SCHEDULE");
    }
  });

  it("add refuses such a job with a typed error and stores nothing", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const error = await failureOf(() =>
      fixture.service.add({ id: "feb", schedule: { at: "2026-02-30T09:00:00Z" }, prompt: "p" }),
    );
    expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    expect((error as CronError).jobId).toBe("feb");
    expect(await fixture.store.cron.getJob("feb")).toBeUndefined();
    expect(await fixture.service.list()).toEqual([]);
  });
});
