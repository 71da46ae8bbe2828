/**
 * Catch-up across more than one restart: catch-up runs queued by a start that stopped
 * before running them count against the policy's cap when more runs are missed later, so
 * `run-once` still runs once and `run-all` at most `catchUpLimit`; the queued runs past the
 * cap are recorded as missed.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type CronFixture, HOUR, MINUTE, startCron } from "./cron-support.js";

const fixtures: CronFixture[] = [];

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

describe("catch-up after a second downtime", () => {
  it("run-once: a catch-up run queued before the service stopped is not run beside the new one", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock, runner } = fixture;
    const t0 = clock.now();
    await service.add({ id: "h", schedule: { every: HOUR }, prompt: "p", catchUp: "run-once" });
    await service.stop();
    clock.jumpTo(t0 + 3 * HOUR + MINUTE); // 1 h, 2 h, 3 h missed: 3 h is queued ...
    const second = await fixture.restart();
    expect((await second.get("h")).state.catchUpQueue).toEqual([t0 + 3 * HOUR]);
    await second.stop(); // ... and the service stops before it runs it
    clock.jumpTo(t0 + 6 * HOUR + MINUTE); // 4 h, 5 h, 6 h missed
    const third = await fixture.restart();
    await clock.advance(0);
    await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([t0 + 6 * HOUR]);
    const runs = (await third.runs("h")).reverse();
    expect(runs.filter((r) => r.status === "missed").map((r) => r.scheduledAt)).toEqual([
      t0 + HOUR,
      t0 + 2 * HOUR,
      t0 + 3 * HOUR,
      t0 + 4 * HOUR,
      t0 + 5 * HOUR,
    ]);
    const { state } = await third.get("h");
    expect(state.missedCount).toBe(5);
    expect(state.catchUpQueue).toBeUndefined();
  });

  it("run-all: the runs still queued and the new ones together stay within catchUpLimit, most recent first", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock, runner } = fixture;
    const t0 = clock.now();
    await service.add({
      id: "h",
      schedule: { every: HOUR },
      prompt: "p",
      catchUp: "run-all",
      catchUpLimit: 3,
    });
    await service.stop();
    clock.jumpTo(t0 + 4 * HOUR + MINUTE);
    const second = await fixture.restart();
    expect((await second.get("h")).state.catchUpQueue).toEqual([
      t0 + 2 * HOUR,
      t0 + 3 * HOUR,
      t0 + 4 * HOUR,
    ]);
    await second.stop();
    clock.jumpTo(t0 + 6 * HOUR + MINUTE); // 5 h and 6 h missed
    const third = await fixture.restart();
    for (let i = 0; i < 5; i++) await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([
      t0 + 4 * HOUR,
      t0 + 5 * HOUR,
      t0 + 6 * HOUR,
    ]);
    const missed = (await third.runs("h"))
      .reverse()
      .filter((r) => r.status === "missed")
      .map((r) => r.scheduledAt);
    expect(missed).toEqual([t0 + HOUR, t0 + 2 * HOUR, t0 + 3 * HOUR]);
    expect((await third.get("h")).state.missedCount).toBe(3);
  });

  it("a queue within the cap still runs whole when more runs are missed (run-all)", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock, runner } = fixture;
    const t0 = clock.now();
    await service.add({
      id: "h",
      schedule: { every: HOUR },
      prompt: "p",
      catchUp: "run-all",
      catchUpLimit: 5,
    });
    await service.stop();
    clock.jumpTo(t0 + 2 * HOUR + MINUTE);
    await (await fixture.restart()).stop(); // 1 h and 2 h queued, not run
    clock.jumpTo(t0 + 4 * HOUR + MINUTE);
    const third = await fixture.restart();
    for (let i = 0; i < 5; i++) await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([
      t0 + HOUR,
      t0 + 2 * HOUR,
      t0 + 3 * HOUR,
      t0 + 4 * HOUR,
    ]);
    expect((await third.get("h")).state.missedCount).toBe(0);
  });
});
