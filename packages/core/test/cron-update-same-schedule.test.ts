/**
 * An update that repeats a job's current schedule (as `syncConfig` does whenever any other
 * field of a config job changes) is not a new schedule: a one-shot job that already ran is
 * not run again, and a recurring job keeps its backoff and its catch-up queue.
 */
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../src/index.js";
import { type CronFixture, HOUR, MINUTE, startCron } from "./cron-support.js";

const fixtures: CronFixture[] = [];

async function cron(): Promise<CronFixture> {
  const fixture = await startCron();
  fixtures.push(fixture);
  return fixture;
}

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

const configJobs = (jobs: unknown[]) =>
  parseConfig({ agents: [{ id: "ops", model: "a/b" }], cron: { jobs } }).cron.jobs;

describe("an update with the job's own schedule", () => {
  it("does not run a one-shot job that already ran again", async () => {
    const { service, clock, runner } = await cron();
    const when = clock.now() + MINUTE;
    await service.add({ id: "once", schedule: { at: when }, prompt: "p" });
    await clock.advance(MINUTE);
    const updated = await service.update("once", { schedule: { at: when }, prompt: "edited" });
    expect(updated.prompt).toBe("edited");
    expect(updated.state.completedAt).toBeDefined();
    await clock.advance(HOUR);
    expect(runner.timesOf("once")).toEqual([when]);
  });

  it("a config one-shot job whose prompt changes in the file is not run again", async () => {
    const { service, clock, runner } = await cron();
    const when = new Date(clock.now() + MINUTE).toISOString();
    await service.syncConfig(
      configJobs([{ id: "once", agentId: "ops", schedule: { at: when }, prompt: "one" }]),
    );
    await clock.advance(MINUTE);
    expect(runner.timesOf("once")).toHaveLength(1);
    await service.syncConfig(
      configJobs([{ id: "once", agentId: "ops", schedule: { at: when }, prompt: "one, edited" }]),
    );
    await clock.advance(HOUR);
    expect(runner.timesOf("once")).toHaveLength(1);
    const job = await service.get("once");
    expect(job.prompt).toBe("one, edited");
    expect(job.state.completedAt).toBeDefined();
  });

  it("keeps a recurring job's catch-up queue", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    const t0 = clock.now();
    await service.add({ id: "h", schedule: { every: HOUR }, prompt: "p", catchUp: "run-all" });
    await service.stop();
    clock.jumpTo(t0 + 3 * HOUR + MINUTE);
    const restarted = await fixture.restart();
    await restarted.update("h", { schedule: { every: HOUR }, prompt: "edited" });
    for (let i = 0; i < 5; i++) await clock.advance(0);
    expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([
      t0 + HOUR,
      t0 + 2 * HOUR,
      t0 + 3 * HOUR,
    ]);
  });

  it("a schedule that does change still starts afresh", async () => {
    const { service, clock, runner } = await cron();
    const when = clock.now() + MINUTE;
    await service.add({ id: "once", schedule: { at: when }, prompt: "p" });
    await clock.advance(MINUTE);
    await service.update("once", { schedule: { at: when + HOUR } });
    await clock.advance(2 * HOUR);
    expect(runner.timesOf("once")).toEqual([when, when + HOUR]);
  });
});
