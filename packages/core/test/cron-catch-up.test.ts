/**
 * Restart catch-up: after downtime, the runs a job missed are detected and handled by its
 * policy (`skip`, `run-once`, `run-all` up to a cap), and every missed run is recorded
 * either way.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { CronCatchUpPolicy, CronRun } from "../src/index.js";
import { type CronFixture, HOUR, MINUTE, startCron } from "./cron-support.js";
import { waitFor } from "./support.js";

const fixtures: CronFixture[] = [];

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

/**
 * An hourly job created at T0 runs once (T0 + 1 h); then the service is down for 10.5 h, so
 * the runs due at T0 + 2 h ... T0 + 11 h (10 of them) are missed; then it restarts.
 */
async function downtime(catchUp: CronCatchUpPolicy, catchUpLimit?: number) {
  const fixture = await startCron();
  fixtures.push(fixture);
  const { service, clock } = fixture;
  const t0 = clock.now();
  await service.add({
    id: "hourly",
    schedule: { every: HOUR },
    prompt: "p",
    catchUp,
    ...(catchUpLimit === undefined ? {} : { catchUpLimit }),
  });
  await clock.advance(HOUR);
  await service.stop();
  // From now on, runs take a turn of the event loop, and concurrent ones would be seen.
  const concurrency = { active: 0, max: 0 };
  fixture.runner.behave = async () => {
    concurrency.max = Math.max(concurrency.max, ++concurrency.active);
    await new Promise((resolve) => setImmediate(resolve));
    concurrency.active--;
    return { status: "ok" };
  };
  clock.jumpTo(t0 + 11 * HOUR + 30 * MINUTE);
  const restarted = await fixture.restart();
  await waitFor("the catch-up runs to finish", async () => {
    await clock.advance(0); // fires the service's timer for what is due now
    const { state } = await restarted.get("hourly");
    return state.catchUpQueue === undefined && state.runningAt === undefined;
  });
  const runs = (await restarted.runs("hourly", { limit: 1000 })).reverse(); // oldest first
  const missed = runs.filter((r) => r.status === "missed");
  const caughtUp = runs.filter((r) => r.trigger === "catch-up");
  const expected = Array.from({ length: 10 }, (_, i) => t0 + (i + 2) * HOUR);
  return { ...fixture, service: restarted, t0, missed, caughtUp, expected, concurrency };
}

const scheduled = (runs: CronRun[]) => runs.map((r) => r.scheduledAt);

describe("restart catch-up", () => {
  it("skip: no missed run runs, and each one is recorded as missed", async () => {
    const { service, runner, missed, caughtUp, expected, t0 } = await downtime("skip");
    expect(runner.calls).toHaveLength(1); // only the run before the downtime
    expect(caughtUp).toEqual([]);
    expect(scheduled(missed)).toEqual(expected);
    expect(missed[0]).toMatchObject({ status: "missed", policy: "skip", trigger: "schedule" });
    expect(missed[0]!.latenessMs).toBe(t0 + 11.5 * HOUR - expected[0]!);
    const job = await service.get("hourly");
    expect(job.state.missedCount).toBe(10);
    expect(job.state.nextRunAt).toBe(t0 + 12 * HOUR);
  });

  it("run-once: the most recent missed run runs once at start; the others are recorded as missed", async () => {
    const { runner, missed, caughtUp, expected, clock } = await downtime("run-once");
    expect(runner.calls).toHaveLength(2);
    expect(runner.calls[1]!.at).toBe(clock.now());
    expect(runner.calls[1]!.context).toMatchObject({
      trigger: "catch-up",
      scheduledAt: expected.at(-1),
    });
    expect(scheduled(caughtUp)).toEqual([expected.at(-1)]);
    expect(caughtUp[0]).toMatchObject({ status: "ok", policy: "run-once" });
    expect(scheduled(missed)).toEqual(expected.slice(0, 9));
  });

  it("run-all: the most recent missed runs run up to the cap, oldest first and one after another; the rest are recorded as missed", async () => {
    const { runner, missed, caughtUp, expected, concurrency } = await downtime("run-all", 3);
    expect(runner.calls.slice(1).map((c) => c.context.scheduledAt)).toEqual(expected.slice(7));
    expect(scheduled(caughtUp)).toEqual(expected.slice(7));
    expect(caughtUp.every((r) => r.trigger === "catch-up" && r.policy === "run-all")).toBe(true);
    expect(scheduled(missed)).toEqual(expected.slice(0, 7));
    expect(concurrency.max).toBe(1); // one after another, never two at once
  });

  it("run-all with a cap above the number missed runs every missed run", async () => {
    const { missed, caughtUp, expected } = await downtime("run-all", 50);
    expect(scheduled(caughtUp)).toEqual(expected);
    expect(missed).toEqual([]);
  });

  it("every missed run is recorded: past the 100 most recent, the older ones are summed up in one entry", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock } = fixture;
    const t0 = clock.now();
    await service.add({
      id: "minutely",
      schedule: { every: MINUTE },
      prompt: "p",
      catchUp: "skip",
    });
    await service.stop();
    clock.jumpTo(t0 + 1000 * MINUTE);
    const restarted = await fixture.restart();
    const runs = await restarted.runs("minutely", { limit: 1000 });
    expect(runs).toHaveLength(101);
    const summary = runs.at(-1)!;
    expect(summary).toMatchObject({ status: "missed", missedCount: 900, scheduledAt: t0 + MINUTE });
    const counted = runs.reduce((sum, r) => sum + (r.missedCount ?? 1), 0);
    expect(counted).toBe(1000);
    expect((await restarted.get("minutely")).state.missedCount).toBe(1000);
  });

  it("a one-shot at job missed during downtime runs at start under run-once", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock, runner } = fixture;
    const when = clock.now() + HOUR;
    await service.add({ id: "once", schedule: { at: when }, prompt: "p", catchUp: "run-once" });
    await service.stop();
    clock.jumpTo(when + HOUR);
    const restarted = await fixture.restart();
    await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([when]);
    expect((await restarted.get("once")).state.completedAt).toBeDefined();
  });

  it("a one-shot at job missed during downtime under skip is recorded missed and never runs", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock, runner } = fixture;
    const when = clock.now() + HOUR;
    await service.add({ id: "once", schedule: { at: when }, prompt: "p", catchUp: "skip" });
    await service.stop();
    clock.jumpTo(when + HOUR);
    const restarted = await fixture.restart();
    await clock.advance(HOUR);
    expect(runner.calls).toEqual([]);
    expect((await restarted.runs("once")).map((r) => r.status)).toEqual(["missed"]);
    expect((await restarted.get("once")).state.completedAt).toBe(when + HOUR);
  });

  it("a catch-up queue survives another restart: what was not run yet still runs", async () => {
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
    clock.jumpTo(t0 + 5 * HOUR + MINUTE);
    runner.behave = () => new Promise(() => {}); // the first catch-up run hangs ...
    const second = await fixture.restart();
    await clock.advance(0);
    second.kill(); // ... and the process dies
    runner.behave = () => ({ status: "ok" });
    const third = await fixture.restart();
    await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([
      t0 + 3 * HOUR, // interrupted
      t0 + 4 * HOUR,
      t0 + 5 * HOUR,
    ]);
    const statuses = (await third.runs("h")).map((r) => r.status).reverse();
    expect(statuses).toEqual(["missed", "missed", "interrupted", "ok", "ok"]);
  });

  it("a timer that fires after several occurrences have passed (a stalled process) applies the same policy", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock, runner } = fixture;
    const t0 = clock.now();
    await service.add({ id: "m", schedule: { every: MINUTE }, prompt: "p", catchUp: "run-once" });
    clock.jumpTo(t0 + 5 * MINUTE + 10_000); // the event loop was blocked for 5 minutes
    await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([t0 + 5 * MINUTE]);
    const statuses = (await service.runs("m")).map((r) => r.status);
    expect(statuses.filter((s) => s === "missed")).toHaveLength(4);
  });

  it("a job that was only late (one occurrence overdue while running) simply runs late", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock, runner } = fixture;
    const t0 = clock.now();
    await service.add({ id: "m", schedule: { every: HOUR }, prompt: "p", catchUp: "skip" });
    clock.jumpTo(t0 + HOUR + 5_000);
    await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([t0 + HOUR]);
    expect((await service.runs("m"))[0]).toMatchObject({ status: "ok", latenessMs: 5_000 });
  });
});
