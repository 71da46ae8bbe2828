/**
 * The reliability rules of `CronService`: a stuck run is cleared after 2 h, errors back off
 * 30 s / 1 min / 5 min / 15 min / 60 min, 3 consecutive errors disable a job with the
 * reason kept.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type CronFixture, DAY, HOUR, MINUTE, SECOND, startCron } from "./cron-support.js";

const fixtures: CronFixture[] = [];

async function cron(options: Parameters<typeof startCron>[0] = {}): Promise<CronFixture> {
  const fixture = await startCron(options);
  fixtures.push(fixture);
  return fixture;
}

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

/** Differences between consecutive values. */
function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]!);
}

describe("stuck runs", () => {
  it("a run with no result after 2 h is cleared: aborted, logged as a stuck error, and the job runs again", async () => {
    const { service, clock, runner } = await cron();
    const signals: AbortSignal[] = [];
    runner.behave = (_job, context) => {
      signals.push(context.signal);
      // The first run hangs forever; the later ones answer.
      return signals.length === 1 ? new Promise(() => {}) : { status: "ok" };
    };
    await service.add({ id: "hang", schedule: { every: 30 * MINUTE }, prompt: "p" });
    await clock.advance(30 * MINUTE);
    const startedAt = runner.calls[0]!.at;
    await clock.advance(2 * HOUR - 1);
    expect((await service.get("hang")).state.runningAt).toBe(startedAt);
    expect(signals[0]!.aborted).toBe(false);
    await clock.advance(1);
    expect(signals[0]!.aborted).toBe(true);
    const [cleared] = await service.runs("hang");
    expect(cleared).toMatchObject({
      status: "error",
      stuck: true,
      startedAt,
      finishedAt: startedAt + 2 * HOUR,
      error: "no result after 2 h; the run was cleared as stuck",
    });
    const state = (await service.get("hang")).state;
    expect(state.runningAt).toBeUndefined();
    expect(state.consecutiveErrors).toBe(1);
    // The four occurrences that passed while it hung are skipped; the next one is on schedule.
    expect(cleared!.skippedWhileRunning).toBe(4);
    await clock.advance(30 * MINUTE);
    expect(runner.timesOf("hang")).toEqual([startedAt, startedAt + 2 * HOUR + 30 * MINUTE]);
  });

  it("the stuck-run limit is an option", async () => {
    const { service, clock, runner } = await cron({ stuckRunMs: 5 * MINUTE });
    runner.behave = () => new Promise(() => {});
    await service.add({ id: "h", schedule: { every: DAY }, prompt: "p" });
    void service.runNow("h");
    await clock.advance(5 * MINUTE);
    expect((await service.runs("h"))[0]).toMatchObject({ stuck: true, error: /5 min/ });
  });

  it("a late result of a run already cleared as stuck is ignored", async () => {
    const { service, clock, runner } = await cron();
    let finish!: () => void;
    runner.behave = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok", output: "too late" });
      });
    await service.add({ id: "h", schedule: { every: DAY }, prompt: "p" });
    const manual = service.runNow("h");
    await clock.advance(2 * HOUR);
    expect((await manual).stuck).toBe(true);
    finish();
    await clock.advance(0);
    const runs = await service.runs("h");
    expect(runs).toHaveLength(1);
    expect(runs[0]!.status).toBe("error");
  });
});

describe("error backoff", () => {
  it("consecutive errors back off 30 s, 1 min, 5 min, 15 min, then 60 min", async () => {
    const { service, clock, runner } = await cron({ maxConsecutiveErrors: Infinity });
    runner.behave = () => ({ status: "error", error: "down" });
    await service.add({ id: "flaky", schedule: { every: SECOND }, prompt: "p" });
    await clock.advance(4 * HOUR);
    expect(gaps(runner.timesOf("flaky")).slice(0, 7)).toEqual([
      30 * SECOND,
      1 * MINUTE,
      5 * MINUTE,
      15 * MINUTE,
      60 * MINUTE,
      60 * MINUTE,
      60 * MINUTE,
    ]);
  });

  it("a success resets the backoff: the job is back on its own schedule", async () => {
    const { service, clock, runner } = await cron({ maxConsecutiveErrors: Infinity });
    let n = 0;
    runner.behave = () => (++n <= 2 ? { status: "error", error: "down" } : { status: "ok" });
    await service.add({ id: "recovers", schedule: { every: SECOND }, prompt: "p" });
    await clock.advance(2 * MINUTE);
    const times = runner.timesOf("recovers");
    expect(gaps(times).slice(0, 4)).toEqual([30 * SECOND, MINUTE, SECOND, SECOND]);
    expect((await service.get("recovers")).state.consecutiveErrors).toBe(0);
  });

  it("backoff only delays: a daily job that fails still runs the next day, not 30 s later", async () => {
    const { service, clock, runner } = await cron({ maxConsecutiveErrors: Infinity });
    runner.behave = () => ({ status: "error", error: "down" });
    await service.add({ id: "daily", schedule: { every: DAY }, prompt: "p" });
    await clock.advance(3 * DAY);
    expect(gaps(runner.timesOf("daily"))).toEqual([DAY, DAY]);
  });

  it("the backoff steps are an option", async () => {
    const { service, clock, runner } = await cron({
      maxConsecutiveErrors: Infinity,
      backoffMs: [1_000, 2_000],
    });
    runner.behave = () => ({ status: "error" });
    await service.add({ id: "f", schedule: { every: 100 }, prompt: "p" });
    await clock.advance(10 * SECOND);
    expect(gaps(runner.timesOf("f")).slice(0, 3)).toEqual([1_000, 2_000, 2_000]);
  });
});

describe("auto-disable", () => {
  it("3 consecutive errors disable the job, keeping the reason and the last error", async () => {
    const { service, clock, runner } = await cron();
    let n = 0;
    runner.behave = () => ({ status: "error", error: `failure ${++n}` });
    await service.add({ id: "bad", schedule: { every: MINUTE }, prompt: "p" });
    await clock.advance(DAY);
    expect(runner.timesOf("bad")).toHaveLength(3);
    const job = await service.get("bad");
    expect(job.enabled).toBe(false);
    expect(job.state).toMatchObject({
      consecutiveErrors: 3,
      lastError: "failure 3",
      disabledReason: "disabled after 3 consecutive errors; last error: failure 3",
      disabledAt: runner.timesOf("bad")[2],
    });
    expect(job.state.nextRunAt).toBeUndefined();
    expect((await service.runs("bad")).map((r) => r.consecutiveErrors)).toEqual([3, 2, 1]);
  });

  it("an ok run in between resets the count, so errors must be consecutive", async () => {
    const { service, clock, runner } = await cron({ backoffMs: [0] });
    const script = ["error", "error", "ok", "error", "error", "ok"] as const;
    let n = 0;
    runner.behave = () => ({ status: script[n++ % script.length]! });
    await service.add({ id: "mixed", schedule: { every: MINUTE }, prompt: "p" });
    await clock.advance(12 * MINUTE);
    expect(runner.timesOf("mixed")).toHaveLength(12);
    expect((await service.get("mixed")).enabled).toBe(true);
  });

  it("enabling a disabled job clears its error count and reason", async () => {
    const { service, clock, runner } = await cron();
    runner.behave = () => ({ status: "error", error: "x" });
    await service.add({ id: "bad", schedule: { every: MINUTE }, prompt: "p" });
    await clock.advance(DAY);
    const enabled = await service.enable("bad");
    expect(enabled.enabled).toBe(true);
    expect(enabled.state.consecutiveErrors).toBe(0);
    expect(enabled.state.disabledReason).toBeUndefined();
  });

  it("the limit is an option", async () => {
    const { service, clock, runner } = await cron({ maxConsecutiveErrors: 1 });
    runner.behave = () => ({ status: "error", error: "x" });
    await service.add({ id: "strict", schedule: { every: MINUTE }, prompt: "p" });
    await clock.advance(HOUR);
    expect(runner.timesOf("strict")).toHaveLength(1);
    expect((await service.get("strict")).state.disabledReason).toMatch(/after 1 consecutive/);
  });
});
