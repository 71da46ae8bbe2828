/**
 * `syncConfig` with a job it cannot apply (a bad schedule, an id another agent's job has,
 * the same id twice) refuses the whole list with a typed error before changing anything: no
 * config job is removed, added or updated by a half-applied reload. In a cluster, a job of
 * the list that another node has just added is reloaded from the store, not refused.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  CronError,
  type CronJobConfig,
  CronService,
  InvalidArgumentError,
  LocalPubSub,
  PubSubCronSync,
} from "../src/index.js";
import { type CronFixture, HOUR, startCron, storedJob } from "./cron-support.js";

let fixture: CronFixture | undefined;
const others: CronService[] = [];
afterEach(async () => {
  await fixture?.service.stop();
  fixture = undefined;
  for (const service of others.splice(0)) await service.stop();
});

function job(id: string, prompt: string, extra: Partial<CronJobConfig> = {}): CronJobConfig {
  return {
    id,
    agentId: "ops",
    schedule: { every: HOUR },
    session: "isolated",
    prompt,
    enabled: true,
    catchUp: "run-once",
    catchUpLimit: 10,
    delivery: { kind: "none" },
    ...extra,
  };
}

async function snapshot(f: CronFixture) {
  const jobs = await f.service.list();
  const stored = await f.store.cron.listJobs("ops");
  return {
    jobs: jobs.map((j) => [j.id, j.source, j.prompt]),
    stored: stored.map((j) => j.id).sort(),
  };
}

describe("syncConfig with a job it cannot apply", () => {
  it("a bad schedule anywhere in the list changes nothing", async () => {
    fixture = await startCron();
    await fixture.service.syncConfig([job("kept", "old"), job("changed", "before")]);
    const before = await snapshot(fixture);
    const error = await fixture.service
      .syncConfig([
        job("changed", "after"),
        job("added", "new"),
        job("broken", "x", { schedule: { cron: "not a cron" } }),
      ])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CronError);
    expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    expect((error as CronError).jobId).toBe("broken");
    expect(await snapshot(fixture)).toEqual(before);
    // Nothing was scheduled for a job that was refused.
    await fixture.clock.advance(HOUR);
    expect(fixture.runner.timesOf("added")).toEqual([]);
    expect(fixture.runner.timesOf("kept")).toHaveLength(1);
  });

  it("the id of a job this agent has from the API is refused, not passed over silently", async () => {
    fixture = await startCron();
    await fixture.service.add({ id: "manual", schedule: { every: HOUR }, prompt: "mine" });
    await fixture.service.syncConfig([job("kept", "old")]);
    const before = await snapshot(fixture);
    const error = await fixture.service
      .syncConfig([job("kept", "new"), job("manual", "from the file")])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CronError);
    expect((error as CronError).code).toBe("CRON_JOB_EXISTS");
    expect((error as CronError).jobId).toBe("manual");
    expect((error as Error).message).toContain("was added through the API");
    expect(await snapshot(fixture)).toEqual(before);
    expect((await fixture.service.get("manual")).prompt).toBe("mine");
  });

  it("an id held by another agent's job changes nothing", async () => {
    fixture = await startCron();
    const other = await new CronService({
      agentId: "sales",
      store: fixture.store,
      clock: fixture.clock,
      runJob: fixture.runner.runJob,
    }).start();
    others.push(other);
    await other.add({ id: "taken", schedule: { every: HOUR }, prompt: "theirs" });
    await fixture.service.syncConfig([job("kept", "old")]);
    const before = await snapshot(fixture);
    const error = await fixture.service
      .syncConfig([job("added", "new"), job("taken", "mine")])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CronError);
    expect((error as CronError).code).toBe("CRON_JOB_EXISTS");
    expect(await snapshot(fixture)).toEqual(before);
  });

  it("the same id twice is refused, naming it, and changes nothing", async () => {
    fixture = await startCron();
    await fixture.service.syncConfig([job("kept", "old")]);
    const before = await snapshot(fixture);
    const error = await fixture.service
      .syncConfig([job("twice", "one"), job("twice", "two")])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toContain('"twice"');
    expect(await snapshot(fixture)).toEqual(before);
  });

  it("a valid list is still applied whole", async () => {
    fixture = await startCron();
    await fixture.service.add({ id: "manual", schedule: { every: HOUR }, prompt: "mine" });
    await fixture.service.syncConfig([job("gone", "x"), job("changed", "before")]);
    await fixture.service.syncConfig([job("changed", "after"), job("added", "new")]);
    expect((await snapshot(fixture)).jobs).toEqual([
      ["added", "config", "new"],
      ["changed", "config", "after"],
      ["manual", "api", "mine"],
    ]);
  });

  it("a config one-shot job that ran and was then disabled does not block later reloads", async () => {
    fixture = await startCron();
    const once = job("once", "p", { schedule: { at: fixture.clock.now() + HOUR } });
    await fixture.service.syncConfig([once]);
    await fixture.clock.advance(HOUR);
    expect(fixture.runner.timesOf("once")).toHaveLength(1);
    await fixture.service.disable("once");
    // The file still says enabled: true, and another job changes.
    await fixture.service.syncConfig([once, job("added", "new")]);
    expect((await fixture.service.list()).map((j) => j.id)).toEqual(["added", "once"]);
    const after = await fixture.service.get("once");
    expect(after.state.completedAt).toBeDefined();
    await fixture.clock.advance(HOUR);
    expect(fixture.runner.timesOf("once")).toHaveLength(1);
  });

  it("in a cluster, a config job another node just added (not heard of yet) is taken over, not refused", async () => {
    const sync = new PubSubCronSync({ pubsub: new LocalPubSub(), resyncMs: 24 * HOUR });
    fixture = await startCron({ sync });
    const { service, store, clock, runner } = fixture;
    // Another node applied the same file a moment earlier; its notification has not come.
    await store.cron.putJob(
      storedJob({
        id: "nightly",
        schedule: { every: HOUR },
        prompt: "n",
        source: "config",
        catchUp: "run-once",
        createdAt: clock.now(),
        updatedAt: clock.now(),
        state: { consecutiveErrors: 0, runCount: 0, missedCount: 0, nextRunAt: clock.now() + HOUR },
      }),
    );
    await service.syncConfig([job("nightly", "n"), job("other", "o")]);
    expect((await service.list()).map((j) => [j.id, j.source])).toEqual([
      ["nightly", "config"],
      ["other", "config"],
    ]);
    await clock.advance(HOUR);
    expect(runner.timesOf("nightly")).toHaveLength(1);
  });
});
