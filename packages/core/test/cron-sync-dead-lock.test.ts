/**
 * `CronService` in a cluster, a job's lock held by a node that died (nobody releases it, its
 * lease runs out by itself): the wait for it happens outside the service's mailbox. A
 * caller's change waits by itself while reads and other changes are answered; a run's record
 * keeps the job's state in the service, merged with what the store got meanwhile, and writes
 * it once the lease is out. Two services of one agent over one `MemoryStore` (its locks on
 * the real clock) and a `PubSubCronSync` feed stand for two nodes.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  type CronJob,
  CronRunGuard,
  CronService,
  createManualClock,
  guardCronRunner,
  type Lease,
  LocalPubSub,
  PubSubCronSync,
} from "../src/index.js";
import { at, HOUR, MINUTE, openStore } from "./cron-support.js";

const RESYNC_MS = 10 * MINUTE;
const services: CronService[] = [];
afterEach(async () => {
  for (const service of services.splice(0)) await service.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function pair() {
  const clock = createManualClock(at("2026-01-05T00:00:00Z"));
  const store = await openStore();
  const sync = new PubSubCronSync({ pubsub: new LocalPubSub(), resyncMs: RESYNC_MS });
  const runs: Array<{ node: string; jobId: string }> = [];
  const start = async (node: string) => {
    const guard = new CronRunGuard({ store, nodeId: node });
    const service = await new CronService({
      agentId: "ops",
      store,
      clock,
      name: `cron:ops@${node}`,
      runJob: guardCronRunner(async (job) => {
        runs.push({ node, jobId: job.id });
        return { status: "ok", output: `${node} ran ${job.prompt}` };
      }, guard),
      sync,
    }).start();
    services.push(service);
    return service;
  };
  return { clock, store, runs, a: await start("a"), b: await start("b") };
}

/** Takes job `id`'s lock for a node that then "dies": the lease runs out after `ttlMs`. */
async function deadHolder(
  store: Awaited<ReturnType<typeof openStore>>,
  id: string,
  ttlMs: number,
): Promise<Lease> {
  const lease = await store.locks.acquire(`cron-job:ops:${id}`, { owner: "dead-node", ttlMs });
  expect(lease).toBeDefined();
  return lease!;
}

describe("a job's lock held by a node that died", () => {
  it("a removal waits for it outside the mailbox: reads and other changes are answered meanwhile", async () => {
    const { a, b, store } = await pair();
    await a.add({ id: "locked", schedule: { every: HOUR }, prompt: "locked" });
    await a.add({ id: "other", schedule: { every: HOUR }, prompt: "other" });
    const dead = await deadHolder(store, "locked", 3_000);
    let removed = false;
    const removal = a.remove("locked").finally(() => {
      removed = true;
    });
    // Past the time a merge holds a lock: the removal is waiting for the dead node's lease.
    await sleep(400);
    expect((await a.list()).map((job) => job.id)).toEqual(["locked", "other"]);
    expect((await a.disable("other")).enabled).toBe(false);
    expect((await a.get("locked")).prompt).toBe("locked");
    // The old code answered these only after the removal, queued behind its wait.
    expect(removed).toBe(false);
    expect(Date.now()).toBeLessThan(dead.expiresAt);
    // The removal is made under the lock, after the lease.
    expect(await removal).toBe(true);
    expect(Date.now()).toBeGreaterThanOrEqual(dead.expiresAt);
    expect(await store.cron.getJob("locked")).toBeUndefined();
    expect(((await store.cron.getJob("other")) as CronJob).enabled).toBe(false);
    expect((await b.list()).map((job) => job.id)).toEqual(["other"]);
  });

  it("a change sent to the service's actor directly (not through its methods) still waits for the lock before it answers", async () => {
    const { a, store } = await pair();
    await a.add({ id: "locked", schedule: { every: HOUR }, prompt: "locked" });
    const dead = await deadHolder(store, "locked", 1_500);
    // What `update` sends, without the caller that could send it again after a wait.
    const reply = (await a.call(
      { op: "update", id: "locked", patch: { prompt: "direct" } } as never,
      { timeoutMs: 15_000 },
    )) as CronJob;
    expect(reply.prompt).toBe("direct");
    // Answered only once written, under the lock, after the dead node's lease.
    expect(Date.now()).toBeGreaterThanOrEqual(dead.expiresAt);
    expect(((await store.cron.getJob("locked")) as CronJob).prompt).toBe("direct");
  });

  it("a run's record is kept in the service until the lease is out, merged with a change made meanwhile", async () => {
    const { a, b, store, clock, runs } = await pair();
    const t0 = clock.now();
    const due = t0 + 55 * MINUTE;
    await a.add({ id: "report", schedule: { every: HOUR, anchor: due }, prompt: "v1" });
    const dead = await deadHolder(store, "report", 4_000);
    await clock.advance(55 * MINUTE);
    expect(runs.map((run) => run.jobId)).toEqual(["report"]);
    const ran = runs[0]!.node === "a" ? a : b;
    // The run is recorded in the service that ran it; the store does not have it yet.
    expect((await ran.get("report")).state).toMatchObject({ runCount: 1, lastStatus: "ok" });
    expect(((await store.cron.getJob("report")) as CronJob).state.runCount).toBe(0);
    // A change reaches the store meanwhile (the dead node's, say, written before it died),
    // and the services take it in at the next full resync.
    const stored = (await store.cron.getJob("report")) as CronJob;
    await store.cron.putJob({ ...stored, prompt: "v2 elsewhere", updatedAt: t0 + 1 });
    await clock.advance(RESYNC_MS);
    const merged = await ran.get("report");
    expect(merged.prompt).toBe("v2 elsewhere");
    expect(merged.state).toMatchObject({ runCount: 1, lastStatus: "ok", nextRunAt: due + HOUR });
    expect(Date.now()).toBeLessThan(dead.expiresAt);
    // Once the lease is out, the run's record is written, merged with the change: nothing lost.
    for (;;) {
      const job = (await store.cron.getJob("report")) as CronJob;
      if (job.state.runCount === 1) {
        expect(job.prompt).toBe("v2 elsewhere");
        expect(job.state).toMatchObject({ lastStatus: "ok", nextRunAt: due + HOUR });
        break;
      }
      await sleep(20);
    }
    expect(Date.now()).toBeGreaterThanOrEqual(dead.expiresAt);
    const other = ran === a ? b : a;
    for (;;) {
      if ((await other.get("report")).state.runCount === 1) break;
      await sleep(20);
    }
    expect((await other.get("report")).prompt).toBe("v2 elsewhere");
  });
});
