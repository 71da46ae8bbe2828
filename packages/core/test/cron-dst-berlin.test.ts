/**
 * A daily 02:30 job in Europe/Berlin through the service, on the two days a year that hour
 * is skipped or repeated: it runs exactly once each day (at 03:00 CEST when 02:30 does not
 * exist, at the first 02:30 when it happens twice), also across a restart inside the
 * repeated hour. An interval pattern inside the skipped hour does not run that day.
 */
import { afterEach, describe, expect, it } from "vitest";
import { at, type CronFixture, startCron } from "./cron-support.js";

let fixture: CronFixture | undefined;
afterEach(async () => {
  await fixture?.service.stop();
  fixture = undefined;
});

const iso = (times: number[]) => times.map((t) => new Date(t).toISOString());
const daily = { cron: "30 2 * * *", timezone: "Europe/Berlin" };

describe("a 02:30 Europe/Berlin job on the DST change days", () => {
  it("spring forward (2026-03-29): 02:30 does not exist, it runs once at 03:00 CEST", async () => {
    fixture = await startCron({ startAt: at("2026-03-27T12:00:00Z") });
    await fixture.service.add({ id: "d", schedule: daily, prompt: "p" });
    await fixture.clock.advanceTo(at("2026-03-31T12:00:00Z"));
    expect(iso(fixture.runner.timesOf("d"))).toEqual([
      "2026-03-28T01:30:00.000Z", // 02:30 CET
      "2026-03-29T01:00:00.000Z", // 03:00 CEST, the first valid time after the gap
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
      "2026-03-31T00:30:00.000Z",
    ]);
  });

  it("fall back (2026-10-25): 02:30 happens twice, it runs once, at the first", async () => {
    fixture = await startCron({ startAt: at("2026-10-23T12:00:00Z") });
    await fixture.service.add({ id: "d", schedule: daily, prompt: "p" });
    await fixture.clock.advanceTo(at("2026-10-27T12:00:00Z"));
    expect(iso(fixture.runner.timesOf("d"))).toEqual([
      "2026-10-24T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T00:30:00.000Z", // the first 02:30 (CEST); not again at 02:30 CET
      "2026-10-26T01:30:00.000Z", // 02:30 CET
      "2026-10-27T01:30:00.000Z",
    ]);
    expect((await fixture.service.runs("d")).filter((r) => r.status === "missed")).toEqual([]);
  });

  it("a restart between the two 02:30s of the fall-back day neither reruns nor misses it", async () => {
    fixture = await startCron({ startAt: at("2026-10-24T12:00:00Z") });
    await fixture.service.add({ id: "d", schedule: daily, prompt: "p", catchUp: "run-all" });
    await fixture.clock.advanceTo(at("2026-10-25T00:45:00Z")); // 02:45 CEST, after the first run
    await fixture.service.stop();
    fixture.clock.jumpTo(at("2026-10-25T01:35:00Z")); // 02:35 CET, just after the second 02:30
    await fixture.restart();
    await fixture.clock.advanceTo(at("2026-10-26T12:00:00Z"));
    expect(iso(fixture.runner.timesOf("d"))).toEqual([
      "2026-10-25T00:30:00.000Z",
      "2026-10-26T01:30:00.000Z",
    ]);
    expect((await fixture.service.runs("d")).filter((r) => r.status === "missed")).toEqual([]);
  });

  it("an interval pattern in the skipped hour (*/30 2 * * *) does not run on the spring-forward day", async () => {
    fixture = await startCron({ startAt: at("2026-03-28T12:00:00Z") });
    await fixture.service.add({
      id: "i",
      schedule: { cron: "*/30 2 * * *", timezone: "Europe/Berlin" },
      prompt: "p",
    });
    await fixture.clock.advanceTo(at("2026-03-30T12:00:00Z"));
    expect(iso(fixture.runner.timesOf("i"))).toEqual([
      "2026-03-30T00:00:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ]);
    expect(fixture.clock.nextTimerAt).toBe(at("2026-03-31T00:00:00Z"));
  });
});
