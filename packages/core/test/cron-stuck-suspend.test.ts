/**
 * A run under way when the host is suspended (or the wall clock is set forward) past the
 * stuck-run limit is not cleared as stuck on waking up: how long a run has been going is
 * measured with the clock's monotonic time, which does not count the time the host slept.
 * A run that really hangs is still cleared once it has been going that long.
 */
import { describe, expect, it } from "vitest";
import type { Clock, CronRunOutcome } from "../src/index.js";
import { type CronFixture, DAY, HOUR, MINUTE, useCronFixtures } from "./cron-support.js";

const cron = useCronFixtures();

/** A runner whose runs go on until `finish` is called (or for ever). */
function longRuns(fixture: CronFixture) {
  const signals: AbortSignal[] = [];
  const finishers: Array<(outcome: CronRunOutcome) => void> = [];
  fixture.runner.behave = (_job, context) => {
    signals.push(context.signal);
    return new Promise<CronRunOutcome>((resolve) => finishers.push(resolve));
  };
  return { signals, finishers };
}

/** The host sleeps `ms`: the wall clock jumps, the process counts none of it, then wakes. */
async function suspend(fixture: CronFixture, ms: number): Promise<void> {
  fixture.clock.jumpTo(fixture.clock.now() + ms);
  await fixture.clock.advance(0);
}

describe("a run under way when the host sleeps past the stuck-run limit", () => {
  it("is not cleared as stuck on waking up, and its result is recorded", async () => {
    const fixture = await cron();
    const { service, clock } = fixture;
    const { signals, finishers } = longRuns(fixture);
    await service.add({ id: "report", schedule: { every: DAY }, prompt: "p" });
    const manual = service.runNow("report");
    await clock.advance(30 * MINUTE);
    const startedAt = clock.now() - 30 * MINUTE;
    await suspend(fixture, 3 * HOUR);
    expect(signals[0]!.aborted).toBe(false);
    expect((await service.get("report")).state.runningAt).toBe(startedAt);
    expect(await service.runs("report")).toEqual([]);
    await clock.advance(10 * MINUTE);
    finishers[0]!({ status: "ok", output: "done" });
    const run = await manual;
    expect(run).toMatchObject({ status: "ok", output: "done", startedAt });
    expect(run.stuck).toBeUndefined();
    const state = (await service.get("report")).state;
    expect(state.runningAt).toBeUndefined();
    expect(state.consecutiveErrors).toBe(0);
    expect((await service.runs("report")).map((r) => r.status)).toEqual(["ok"]);
  });

  it("a run that really hangs is cleared once it has been going the limit, not counting the sleep", async () => {
    const fixture = await cron();
    const { service, clock } = fixture;
    const { signals } = longRuns(fixture);
    await service.add({ id: "hang", schedule: { every: DAY }, prompt: "p" });
    void service.runNow("hang");
    await clock.advance(30 * MINUTE);
    await suspend(fixture, 5 * HOUR);
    expect(signals[0]!.aborted).toBe(false);
    // 30 min before the sleep, 90 min after it: 2 h of running time.
    await clock.advance(90 * MINUTE - 1);
    expect(signals[0]!.aborted).toBe(false);
    expect(await service.runs("hang")).toEqual([]);
    await clock.advance(1);
    expect(signals[0]!.aborted).toBe(true);
    expect((await service.runs("hang"))[0]).toMatchObject({
      status: "error",
      stuck: true,
      finishedAt: clock.now(),
      error: "no result after 2 h; the run was cleared as stuck",
    });
  });

  it("a scheduled run survives several sleeps in a row, each shorter than the limit but longer in sum", async () => {
    const fixture = await cron();
    const { service, clock } = fixture;
    const { signals, finishers } = longRuns(fixture);
    await service.add({ id: "h", schedule: { every: DAY }, prompt: "p" });
    await clock.advance(DAY);
    expect(signals).toHaveLength(1);
    for (let i = 0; i < 3; i++) {
      await suspend(fixture, HOUR + 30 * MINUTE);
      await clock.advance(MINUTE);
    }
    expect(signals[0]!.aborted).toBe(false);
    finishers[0]!({ status: "ok" });
    await clock.advance(0);
    expect((await service.runs("h")).map((r) => [r.status, r.stuck])).toEqual([["ok", undefined]]);
  });

  it("with a clock that has no monotonic time, the run is measured by the wall clock", async () => {
    const fixture = await cron();
    const manual = fixture.clock;
    const wallOnly: Clock = {
      now: () => manual.now(),
      setTimer: (fn, ms) => manual.setTimer(fn, ms),
      clearTimer: (handle) => manual.clearTimer(handle),
    };
    await fixture.service.stop();
    const service = await fixture.restart({ clock: wallOnly });
    const { signals } = longRuns(fixture);
    await service.add({ id: "w", schedule: { every: DAY }, prompt: "p" });
    void service.runNow("w");
    await manual.advance(30 * MINUTE);
    await suspend(fixture, 3 * HOUR);
    expect(signals[0]!.aborted).toBe(true);
    expect((await service.runs("w"))[0]).toMatchObject({ status: "error", stuck: true });
  });
});
