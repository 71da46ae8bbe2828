/**
 * A job given a new schedule while one of its runs is in progress: the run served the old
 * schedule, so when it ends (or is cut short by a stop or a crash) the new one is still
 * ahead. In particular a new one-shot `at` time is not taken as done by the old run.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { CronRunOutcome } from "../src/index.js";
import { type CronFixture, DAY, HOUR, MINUTE, startCron } from "./cron-support.js";
import { type Deferred, deferred, tick } from "./support.js";

const fixtures: CronFixture[] = [];

async function cron(): Promise<CronFixture> {
  const fixture = await startCron();
  fixtures.push(fixture);
  return fixture;
}

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

/** Makes the next run hang until the returned deferred is resolved. */
function holdNextRun(fixture: CronFixture): Deferred<CronRunOutcome> {
  const gate = deferred<CronRunOutcome>();
  fixture.runner.behave = () => {
    fixture.runner.behave = () => ({ status: "ok" });
    return gate.promise;
  };
  return gate;
}

describe("a schedule edited while the job runs", () => {
  it("a recurring job given an at schedule during a run runs at the new time", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    await service.add({ id: "j", schedule: { every: DAY }, prompt: "p" });
    const gate = holdNextRun(fixture);
    const run = service.runNow("j");
    await tick();
    const when = clock.now() + HOUR;
    await service.update("j", { schedule: { at: when } });
    gate.resolve({ status: "ok" });
    expect((await run).status).toBe("ok");
    const after = await service.get("j");
    expect(after.state.completedAt).toBeUndefined();
    expect(after.state.nextRunAt).toBe(when);
    await clock.advance(2 * HOUR);
    expect(runner.timesOf("j")).toHaveLength(2);
    expect(runner.calls[1]!.context.scheduledAt).toBe(when);
    expect((await service.get("j")).state.completedAt).toBeDefined();
  });

  it("an at job given a new time during its run runs again at that time, even one already past", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    const first = clock.now() + MINUTE;
    await service.add({ id: "a", schedule: { at: first }, prompt: "p" });
    const gate = holdNextRun(fixture);
    await clock.advance(MINUTE); // the run starts and hangs
    const second = clock.now() + 10 * MINUTE;
    await service.update("a", { schedule: { at: second } });
    await clock.advance(20 * MINUTE); // the new time passes while the old run still goes on
    gate.resolve({ status: "ok" });
    await clock.advance(MINUTE);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([first, second]);
    expect((await service.get("a")).state.completedAt).toBeDefined();
  });

  it("an at job edited in anything but its schedule during its run is done after it", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    await service.add({ id: "a", schedule: { at: clock.now() + MINUTE }, prompt: "p" });
    const gate = holdNextRun(fixture);
    await clock.advance(MINUTE);
    await service.update("a", { prompt: "changed" });
    gate.resolve({ status: "ok" });
    await clock.advance(DAY);
    expect(runner.timesOf("a")).toHaveLength(1);
    expect((await service.get("a")).state.completedAt).toBeDefined();
  });

  it("a stop during the run (logged interrupted) leaves the new at time to run after a restart", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    await service.add({ id: "a", schedule: { at: clock.now() + MINUTE }, prompt: "p" });
    holdNextRun(fixture);
    await clock.advance(MINUTE);
    const when = clock.now() + HOUR;
    await service.update("a", { schedule: { at: when } });
    await service.stop();
    const restarted = await fixture.restart();
    expect((await restarted.get("a")).state.completedAt).toBeUndefined();
    await clock.advance(2 * HOUR);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([when - HOUR, when]);
    const statuses = (await restarted.runs("a")).map((r) => r.status).reverse();
    expect(statuses).toEqual(["interrupted", "ok"]);
  });

  it("a crash during the run (only the run marker left) leaves the new at time to run after a restart", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    await service.add({ id: "a", schedule: { at: clock.now() + MINUTE }, prompt: "p" });
    holdNextRun(fixture);
    await clock.advance(MINUTE);
    const when = clock.now() + HOUR;
    await service.update("a", { schedule: { at: when } });
    service.kill(); // no clean stop: the marker in the store is all that is left of the run
    expect(await fixture.store.kv.get("cron:running:ops:a")).toBeDefined();
    const restarted = await fixture.restart();
    expect((await restarted.get("a")).state.completedAt).toBeUndefined();
    await clock.advance(2 * HOUR);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([when - HOUR, when]);
    const statuses = (await restarted.runs("a")).map((r) => r.status).reverse();
    expect(statuses).toEqual(["interrupted", "ok"]);
  });

  it("an at job that was not edited is still run at most once across a crash", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    await service.add({ id: "a", schedule: { at: clock.now() + MINUTE }, prompt: "p" });
    holdNextRun(fixture);
    await clock.advance(MINUTE);
    service.kill();
    const restarted = await fixture.restart();
    await clock.advance(DAY);
    expect(runner.timesOf("a")).toHaveLength(1);
    expect((await restarted.get("a")).state.completedAt).toBeDefined();
  });
});
