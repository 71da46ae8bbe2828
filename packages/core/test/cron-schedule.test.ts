/**
 * Schedules: `at`, `every` with its anchor, cron expressions in time zones across DST
 * changes, and the typed errors for malformed ones.
 */
import { describe, expect, it } from "vitest";
import { CronError, compileSchedule, parseInstant } from "../src/index.js";
import { at, DAY, HOUR, MINUTE } from "./cron-support.js";
import { failureOf } from "./support.js";

/** The next `n` occurrences after `from`, as ISO strings. */
function nextRuns(schedule: Parameters<typeof compileSchedule>[0], from: string, n: number) {
  const compiled = compileSchedule(schedule, at(from));
  const out: string[] = [];
  let t = at(from);
  for (let i = 0; i < n; i++) {
    const next = compiled.nextAfter(t);
    if (next === undefined) break;
    out.push(new Date(next).toISOString());
    t = next;
  }
  return out;
}

describe("at schedules", () => {
  it("an at schedule has exactly one occurrence, at its instant", () => {
    const compiled = compileSchedule({ at: "2026-03-01T09:30:00+01:00" }, 0);
    expect(compiled.nextAfter(at("2026-01-01T00:00:00Z"))).toBe(at("2026-03-01T08:30:00Z"));
    expect(compiled.nextAfter(at("2026-03-01T08:30:00Z"))).toBeUndefined();
  });

  it("an at schedule accepts epoch ms", () => {
    expect(compileSchedule({ at: 1_800_000_000_000 }, 0).nextAfter(0)).toBe(1_800_000_000_000);
  });

  it("an at date-time without an offset is refused, since it would mean a different instant per server", async () => {
    const error = await failureOf(() => compileSchedule({ at: "2026-03-01T09:30:00" }, 0));
    expect(CronError.isInstance(error)).toBe(true);
    expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    expect((error as CronError).message).toMatch(/with an offset/);
  });
});

describe("every schedules and their anchor", () => {
  it("every without an anchor runs one interval after the job was created, then every interval", () => {
    const created = at("2026-01-05T10:00:07Z");
    const compiled = compileSchedule({ every: 15 * MINUTE }, created);
    expect(compiled.nextAfter(created)).toBe(created + 15 * MINUTE);
    expect(compiled.nextAfter(created + 15 * MINUTE)).toBe(created + 30 * MINUTE);
  });

  it("the anchor fixes the phase: runs fall on anchor + k * every whatever the creation time", () => {
    expect(
      nextRuns({ every: HOUR, anchor: "2026-01-01T00:30:00Z" }, "2026-01-05T10:07:00Z", 3),
    ).toEqual(["2026-01-05T10:30:00.000Z", "2026-01-05T11:30:00.000Z", "2026-01-05T12:30:00.000Z"]);
  });

  it("an anchor in the future is the first run", () => {
    expect(
      nextRuns({ every: DAY, anchor: "2026-02-01T06:00:00Z" }, "2026-01-05T10:07:00Z", 2),
    ).toEqual(["2026-02-01T06:00:00.000Z", "2026-02-02T06:00:00.000Z"]);
  });

  it("every counts missed occurrences exactly, however many", () => {
    const compiled = compileSchedule({ every: 1_000, anchor: 0 }, 0);
    expect(compiled.countBetween(0, 7 * DAY, Number.MAX_SAFE_INTEGER)).toBe((7 * DAY) / 1_000);
    expect(compiled.recentBetween(0, 10_000, 3)).toEqual([8_000, 9_000, 10_000]);
  });

  it("an interval below 1 ms or not a whole number is refused", async () => {
    for (const every of [0, -5, 1.5]) {
      const error = await failureOf(() => compileSchedule({ every }, 0));
      expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    }
  });
});

describe("cron expressions in time zones", () => {
  it("a cron expression without a time zone is evaluated in UTC", () => {
    expect(nextRuns({ cron: "0 9 * * *" }, "2026-01-05T10:00:00Z", 2)).toEqual([
      "2026-01-06T09:00:00.000Z",
      "2026-01-07T09:00:00.000Z",
    ]);
  });

  it("a cron expression follows its time zone's offset (Europe/Berlin, winter and summer)", () => {
    expect(
      nextRuns({ cron: "0 9 * * *", timezone: "Europe/Berlin" }, "2026-01-05T12:00:00Z", 1),
    ).toEqual(["2026-01-06T08:00:00.000Z"]);
    expect(
      nextRuns({ cron: "0 9 * * *", timezone: "Europe/Berlin" }, "2026-07-05T12:00:00Z", 1),
    ).toEqual(["2026-07-06T07:00:00.000Z"]);
  });

  it("on the spring-forward day, 02:00 in America/New_York (which does not exist) runs at 03:00 EDT", () => {
    expect(
      nextRuns({ cron: "0 2 * * *", timezone: "America/New_York" }, "2026-03-07T12:00:00Z", 3),
    ).toEqual([
      "2026-03-08T07:00:00.000Z", // 03:00 EDT: the first valid time after the gap
      "2026-03-09T06:00:00.000Z", // 02:00 EDT
      "2026-03-10T06:00:00.000Z",
    ]);
  });

  it("on the fall-back day, 01:30 in America/New_York (which occurs twice) runs once", () => {
    expect(
      nextRuns({ cron: "30 1 * * *", timezone: "America/New_York" }, "2026-10-31T12:00:00Z", 3),
    ).toEqual([
      "2026-11-01T05:30:00.000Z", // the first 01:30 (EDT)
      "2026-11-02T06:30:00.000Z", // 01:30 EST
      "2026-11-03T06:30:00.000Z",
    ]);
  });

  it("on the fall-back day, 02:00 in America/New_York runs once, after the repeated hour", () => {
    expect(
      nextRuns({ cron: "0 2 * * *", timezone: "America/New_York" }, "2026-10-31T12:00:00Z", 2),
    ).toEqual(["2026-11-01T07:00:00.000Z", "2026-11-02T07:00:00.000Z"]);
  });

  it("Europe/Berlin spring forward: 02:00 runs at 03:00 CEST on the day the hour is skipped", () => {
    expect(
      nextRuns({ cron: "0 2 * * *", timezone: "Europe/Berlin" }, "2026-03-28T12:00:00Z", 2),
    ).toEqual(["2026-03-29T01:00:00.000Z", "2026-03-30T00:00:00.000Z"]);
  });

  it("an interval pattern runs on both occurrences of the repeated hour (Europe/Berlin fall back)", () => {
    expect(
      nextRuns({ cron: "*/30 * * * *", timezone: "Europe/Berlin" }, "2026-10-25T00:00:00Z", 4),
    ).toEqual([
      "2026-10-25T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T01:00:00.000Z", // 02:00 CET (the hour again)
      "2026-10-25T01:30:00.000Z", // 02:30 CET
      "2026-10-25T02:00:00.000Z", // 03:00 CET
    ]);
  });

  it("UTC has no DST: 02:00 runs every 24 h across both change days", () => {
    const runs = nextRuns({ cron: "0 2 * * *", timezone: "UTC" }, "2026-03-07T00:00:00Z", 3);
    expect(runs).toEqual([
      "2026-03-07T02:00:00.000Z",
      "2026-03-08T02:00:00.000Z",
      "2026-03-09T02:00:00.000Z",
    ]);
  });

  it("recentBetween walks back from the end of a long gap without visiting every occurrence", () => {
    const compiled = compileSchedule({ cron: "* * * * * *" }, 0);
    const from = at("2026-01-01T00:00:00Z");
    const to = at("2026-01-08T00:00:00Z");
    expect(compiled.recentBetween(from, to, 2)).toEqual([to - 1_000, to]);
  });

  it("a malformed expression, an unknown time zone or an expression that never matches is refused", async () => {
    for (const schedule of [
      { cron: "61 * * * *" },
      { cron: "every day" },
      { cron: "0 9 * * *", timezone: "Mars/Olympus" },
      { cron: "0 0 31 2 *" },
    ]) {
      const error = await failureOf(() => compileSchedule(schedule, 0, "job"));
      expect(CronError.isInstance(error), JSON.stringify(schedule)).toBe(true);
      expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
      expect((error as CronError).jobId).toBe("job");
    }
  });

  it("a schedule with none or several of at, every, cron is refused", async () => {
    for (const schedule of [{}, { at: 1, every: 5 }]) {
      const error = await failureOf(() => compileSchedule(schedule as never, 0));
      expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    }
  });
});

describe("parseInstant", () => {
  it("reads ISO 8601 with Z or an offset, and epoch ms", () => {
    expect(parseInstant("2026-01-01T00:00:00Z", "x")).toBe(at("2026-01-01T00:00:00Z"));
    expect(parseInstant("2026-01-01T01:00:00+01:00", "x")).toBe(at("2026-01-01T00:00:00Z"));
    expect(parseInstant(42, "x")).toBe(42);
  });

  it("refuses dates without a time, negative or fractional epoch ms", async () => {
    for (const value of ["2026-01-01", -1, 1.5, "tomorrow"]) {
      const error = await failureOf(() => parseInstant(value, "schedule.at"));
      expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
      expect((error as CronError).message).toContain("schedule.at");
    }
  });
});
