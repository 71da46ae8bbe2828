/**
 * `CronService` with a change feed (`sync`): two services of the same agent over one shared
 * store stand for two cluster nodes. A job added, changed, enabled or disabled, run or
 * removed through one is reloaded by the other from the store; a lost notification heals at
 * the next full resync; without a feed nothing changes. The feed is the real
 * `PubSubCronSync` over an in-process `LocalPubSub` (the cluster one is tested against Redis
 * in `@beamclaw/store-redis`), and runs are claimed through a real `CronRunGuard`.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  type CronJob,
  CronRunGuard,
  CronService,
  type CronServiceOptions,
  CronSupervisor,
  type CronSync,
  createManualClock,
  DEFAULT_CRON_RESYNC_MS,
  guardCronRunner,
  InvalidArgumentError,
  LocalPubSub,
  type ManualClock,
  type MemoryStore,
  PubSubCronSync,
} from "../src/index.js";
import { at, HOUR, MINUTE, openStore } from "./cron-support.js";

const RESYNC_MS = 10 * MINUTE;
const services: CronService[] = [];
afterEach(async () => {
  for (const service of services.splice(0)) await service.stop();
});

interface Pair {
  clock: ManualClock;
  store: MemoryStore;
  pubsub: LocalPubSub;
  a: CronService;
  b: CronService;
  /** Every run that really happened: which service ran which due time. */
  runs: Array<{ node: string; jobId: string; scheduledAt: number }>;
  start(node: string, extra?: Partial<CronServiceOptions>): Promise<CronService>;
}

/** Two services of agent `ops` sharing a store, a clock and a feed; each claims through a guard. */
async function pair(options: { sync?: boolean } = {}): Promise<Pair> {
  const clock = createManualClock(at("2026-01-05T00:00:00Z"));
  const store = await openStore();
  const pubsub = new LocalPubSub();
  const sync: CronSync | undefined =
    options.sync === false ? undefined : new PubSubCronSync({ pubsub, resyncMs: RESYNC_MS });
  const runs: Pair["runs"] = [];
  const start = async (node: string, extra: Partial<CronServiceOptions> = {}) => {
    const guard = new CronRunGuard({ store, nodeId: node });
    const service = await new CronService({
      agentId: "ops",
      store,
      clock,
      name: `cron:ops@${node}`,
      runJob: guardCronRunner(async (job, context) => {
        runs.push({ node, jobId: job.id, scheduledAt: context.scheduledAt });
        return { status: "ok", output: `${node} ran ${job.prompt}` };
      }, guard),
      ...(sync === undefined ? {} : { sync }),
      ...extra,
    }).start();
    services.push(service);
    return service;
  };
  const a = await start("a");
  const b = await start("b");
  return { clock, store, pubsub, a, b, runs, start };
}

/** The fields both services must agree on once they are in step. */
function shape(job: CronJob) {
  const { state } = job;
  return {
    id: job.id,
    enabled: job.enabled,
    schedule: job.schedule,
    prompt: job.prompt,
    runCount: state.runCount,
    lastRunAt: state.lastRunAt,
    lastStatus: state.lastStatus,
    nextRunAt: state.nextRunAt,
  };
}

describe("cron services with a change feed", () => {
  it("a job added on one service is listed and run by the other, each due time once", async () => {
    const { a, b, clock, runs } = await pair();
    const start = clock.now();
    await a.add({ id: "digest", schedule: { every: MINUTE }, prompt: "digest" });
    expect((await b.list()).map((job) => job.id)).toEqual(["digest"]);
    expect((await b.cronStatus()).nextRunAt).toBe(start + MINUTE);

    await clock.advance(3 * MINUTE);
    const dues = runs.map((run) => run.scheduledAt);
    expect(dues).toEqual([start + MINUTE, start + 2 * MINUTE, start + 3 * MINUTE]);
    // Both services fired every due time; the guard let one of them run it.
    const jobA = await a.get("digest");
    const jobB = await b.get("digest");
    expect(jobA.state.runCount).toBe(3);
    expect(shape(jobB)).toEqual(shape(jobA));
    expect(jobB.state.lastRunAt).toBe(start + 3 * MINUTE);
    expect((await b.cronStatus()).nextRunAt).toBe((await a.cronStatus()).nextRunAt);
  });

  it("an update, a disable and a removal through either service reach the other", async () => {
    const { a, b, clock, runs } = await pair();
    const start = clock.now();
    await a.add({ id: "report", schedule: { every: HOUR }, prompt: "report" });
    await b.update("report", { schedule: { every: 5 * MINUTE }, prompt: "short report" });
    const onA = await a.get("report");
    expect(onA.schedule).toEqual({ every: 5 * MINUTE });
    expect(onA.prompt).toBe("short report");
    expect((await a.cronStatus()).nextRunAt).toBe(start + 5 * MINUTE);

    await clock.advance(5 * MINUTE);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.scheduledAt).toBe(start + 5 * MINUTE);

    await a.disable("report");
    expect((await b.get("report")).enabled).toBe(false);
    expect((await b.cronStatus()).nextRunAt).toBeUndefined();
    await clock.advance(HOUR);
    expect(runs).toHaveLength(1); // nobody runs a disabled job

    await b.enable("report");
    expect((await a.get("report")).enabled).toBe(true);
    expect(await b.remove("report")).toBe(true);
    expect(await a.list()).toEqual([]);
    expect((await a.cronStatus()).jobs).toBe(0);
    await clock.advance(HOUR);
    expect(runs).toHaveLength(1);
  });

  it("a service can change a job it has not heard of yet: the store is asked first", async () => {
    const { a, b, store, clock } = await pair();
    // Written to the store directly: no notification.
    await a.add({ id: "seed", schedule: { every: HOUR }, prompt: "seed" });
    const job = { ...(await store.cron.getJob("seed"))!, id: "quiet" } as CronJob;
    job.state = { ...job.state, nextRunAt: clock.now() + HOUR };
    await store.cron.putJob(job);
    expect((await b.list()).map((j) => j.id)).toEqual(["seed"]);
    const updated = await b.update("quiet", { prompt: "now heard of" });
    expect(updated.prompt).toBe("now heard of");
    expect((await a.get("quiet")).prompt).toBe("now heard of");
  });

  it("a wall clock set back does not put off the full resync (it waits elapsed time)", async () => {
    const { a, b, store, clock } = await pair();
    await a.add({ id: "kept", schedule: { every: HOUR }, prompt: "kept" });
    const kept = (await store.cron.getJob("kept")) as CronJob;
    await store.cron.putJob({ ...kept, id: "quiet", prompt: "added quietly" });
    // An NTP step or a VM resumed with an old time: the wall clock goes back an hour.
    clock.jumpTo(clock.now() - HOUR);
    await clock.advance(RESYNC_MS);
    for (const service of [a, b]) {
      expect((await service.list()).map((job) => job.id)).toEqual(["kept", "quiet"]);
    }
  });

  it("a lost notification heals at the next full resync", async () => {
    const { a, b, store, clock, runs } = await pair();
    const start = clock.now();
    await a.add({ id: "kept", schedule: { every: HOUR }, prompt: "kept" });
    await a.add({ id: "dropped", schedule: { every: HOUR }, prompt: "dropped" });
    // Changes made behind the services' backs: a new prompt and schedule, a removal, a job.
    const kept = (await store.cron.getJob("kept")) as CronJob;
    await store.cron.putJob({
      ...kept,
      schedule: { every: 2 * HOUR },
      prompt: "changed quietly",
      updatedAt: start + 1,
      state: { ...kept.state, nextRunAt: start + 2 * HOUR },
    });
    await store.cron.deleteJob("dropped");
    await store.cron.putJob({ ...kept, id: "new", prompt: "new quietly" });
    expect((await b.list()).map((job) => job.id)).toEqual(["dropped", "kept"]);
    expect((await b.get("kept")).prompt).toBe("kept");

    await clock.advance(RESYNC_MS);
    for (const service of [a, b]) {
      expect((await service.list()).map((job) => job.id)).toEqual(["kept", "new"]);
      const job = await service.get("kept");
      expect(job.prompt).toBe("changed quietly");
      expect(job.state.nextRunAt).toBe(start + 2 * HOUR);
    }
    await clock.advance(2 * HOUR - RESYNC_MS);
    // "kept" ran once at its new time, "new" hourly (once per due time); "dropped" never.
    expect(runs.filter((run) => run.jobId === "dropped")).toEqual([]);
    expect(runs.filter((run) => run.jobId === "kept").map((run) => run.scheduledAt)).toEqual([
      start + 2 * HOUR,
    ]);
    expect(runs.filter((run) => run.jobId === "new").map((run) => run.scheduledAt)).toEqual([
      start + HOUR,
      start + 2 * HOUR,
    ]);
  });

  it("a run's write keeps a change another node made meanwhile (three-way merge under the job's lock)", async () => {
    const { a, b, store, clock, runs } = await pair();
    const start = clock.now();
    const due = start + 55 * MINUTE;
    await a.add({ id: "report", schedule: { every: HOUR, anchor: due }, prompt: "v1" });
    // After the last full resync before the run (every 10 min), another node's edit whose
    // notification has not arrived yet (written behind the services' backs).
    await clock.advance(51 * MINUTE);
    const stored = (await store.cron.getJob("report")) as CronJob;
    await store.cron.putJob({ ...stored, prompt: "v2 elsewhere", updatedAt: start + 1 });
    expect((await a.get("report")).prompt).toBe("v1");
    expect((await b.get("report")).prompt).toBe("v1");

    await clock.advance(4 * MINUTE);
    expect(runs.map((run) => run.scheduledAt)).toEqual([due]);
    const after = (await store.cron.getJob("report")) as CronJob;
    expect(after.prompt).toBe("v2 elsewhere"); // not overwritten by the run's stale copy
    expect(after.updatedAt).toBe(start + 1);
    expect(after.state).toMatchObject({ runCount: 1, lastStatus: "ok", nextRunAt: due + HOUR });
    // The node that ran took the other change in at once.
    const ran = runs[0]!.node === "a" ? a : b;
    expect((await ran.get("report")).prompt).toBe("v2 elsewhere");
    await clock.advance(HOUR);
    expect(runs.map((run) => run.scheduledAt)).toEqual([due, due + HOUR]);
    expect(((await store.cron.getJob("report")) as CronJob).state.runCount).toBe(2);
  });

  it("a disable or a removal made elsewhere while a run is in progress is not undone by the run's write", async () => {
    const { a, b, store, clock, start } = await pair();
    await a.stop();
    await b.stop();
    const t0 = clock.now();
    const ran: string[] = [];
    // Node c's runs; while each is in progress another node disables or removes the job.
    const c = await start("c", {
      runJob: async (job) => {
        ran.push(job.id);
        if (job.id === "disabled") {
          const stored = (await store.cron.getJob("disabled")) as CronJob;
          await store.cron.putJob({ ...stored, enabled: false, updatedAt: t0 + 1 });
        } else {
          await store.cron.deleteJob("removed");
        }
        return { status: "ok" };
      },
    });
    await c.add({ id: "disabled", schedule: { every: HOUR }, prompt: "d" });
    await c.add({ id: "removed", schedule: { every: HOUR }, prompt: "r" });

    await clock.advance(HOUR);
    expect(ran.sort()).toEqual(["disabled", "removed"]);
    const disabled = (await store.cron.getJob("disabled")) as CronJob;
    expect(disabled.enabled).toBe(false);
    expect(disabled.state).toMatchObject({ runCount: 1, lastStatus: "ok" });
    expect(await store.cron.getJob("removed")).toBeUndefined();
    await clock.advance(2 * HOUR);
    expect(ran).toHaveLength(2); // the disabled job runs no more, the removed one is gone
    expect((await c.list()).map((job) => [job.id, job.enabled])).toEqual([["disabled", false]]);
  });

  it("occurrences that passed while another service had the job are not recorded again", async () => {
    const { a, b, store, clock } = await pair();
    const start = clock.now();
    await a.add({ id: "busy", schedule: { every: MINUTE }, prompt: "busy" });
    await a.stop();
    // Stored state from long ago (as if the writer was stuck): b reloads it at the resync.
    const job = (await store.cron.getJob("busy")) as CronJob;
    await store.cron.putJob({
      ...job,
      updatedAt: start + 1,
      state: { ...job.state, nextRunAt: start },
    });
    await clock.advance(RESYNC_MS);
    const missed = (await store.cron.listRuns("busy", { limit: 1000 })).filter(
      (run) => run.status === "missed",
    );
    expect(missed).toEqual([]);
    expect((await b.get("busy")).state.nextRunAt).toBeGreaterThan(clock.now());
  });

  it("malformed and foreign notifications are ignored", async () => {
    const { a, b, pubsub } = await pair();
    await a.add({ id: "solid", schedule: { every: HOUR }, prompt: "solid" });
    for (const message of [null, 42, "x", {}, { agentId: "ops", jobId: "" }, { jobId: 7 }]) {
      await pubsub.publish("cron-jobs", message);
    }
    await pubsub.publish("cron-jobs", { agentId: "other", jobId: "solid", origin: "x" });
    expect((await b.list()).map((job) => job.id)).toEqual(["solid"]);
    expect(b.status).toBe("running");
    expect(a.status).toBe("running");
  });

  it("a supervisor starts the service of an agent whose first job was added elsewhere", async () => {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await openStore();
    const sync = new PubSubCronSync({ pubsub: new LocalPubSub(), resyncMs: RESYNC_MS });
    const runJob = async () => ({ status: "ok" as const });
    const [one, two] = await Promise.all(
      [0, 1].map(() => new CronSupervisor({ store, clock, runJob, sync }).start()),
    );
    try {
      expect(two!.runningAgents()).toEqual([]);
      await (await one!.forAgent("billing")).add({
        id: "invoice",
        schedule: { every: HOUR },
        prompt: "invoice",
      });
      await clock.advance(0);
      expect(two!.runningAgents()).toEqual(["billing"]);
      expect((await (await two!.forAgent("billing")).list()).map((job) => job.id)).toEqual([
        "invoice",
      ]);
      // Missed notification (written to the store directly): found at the supervisor's resync.
      const job = (await store.cron.getJob("invoice"))!;
      await store.cron.putJob({ ...job, id: "payroll", agentId: "hr" });
      expect(two!.runningAgents()).not.toContain("hr");
      await clock.advance(RESYNC_MS);
      expect(two!.runningAgents().sort()).toEqual(["billing", "hr"]);
      expect((await (await two!.forAgent("hr")).list()).map((j) => j.id)).toEqual(["payroll"]);
    } finally {
      await one!.stop();
      await two!.stop();
    }
    expect(clock.activeTimers).toBe(0);
  });

  it("without a feed, each service keeps to itself as in a single process", async () => {
    const { a, b, clock } = await pair({ sync: false });
    await a.add({ id: "alone", schedule: { every: HOUR }, prompt: "alone" });
    expect(await b.list()).toEqual([]);
    // Only the heap timer of a is armed: no resync timer without a feed.
    expect(clock.activeTimers).toBe(1);
  });

  it("refuses a malformed feed and resync period with a typed error", async () => {
    const store = await openStore();
    const base = { agentId: "ops", store, runJob: async () => ({ status: "ok" as const }) };
    expect(() => new CronService({ ...base, sync: {} as CronSync })).toThrow(InvalidArgumentError);
    const sync = new PubSubCronSync({ pubsub: new LocalPubSub() });
    expect(() => new CronService({ ...base, sync, resyncMs: 0 })).toThrow(InvalidArgumentError);
    expect(() => new PubSubCronSync({ pubsub: new LocalPubSub(), resyncMs: -5 })).toThrow(
      InvalidArgumentError,
    );
    expect(sync.resyncMs).toBe(DEFAULT_CRON_RESYNC_MS);
  });
});
