/**
 * Cron job changes reach every node, against the real Redis: three `ClusterNode`s in this
 * process, each with the `CronSupervisor` an application creates anyway
 * (`runJob: agentRuntimeJobRunner(node.runtime)`). A job added, rescheduled, disabled or
 * removed through one node is followed by the others' services (through `node.cronSync`
 * over the backplane's pub/sub), a run recorded on one node shows in the others' `get` and
 * `cronStatus`, and a change nobody was told about heals at the next full resync.
 */
import {
  type AgentDefinition,
  agentRuntimeJobRunner,
  ClusterNode,
  type CronJob,
  CronSupervisor,
  clusterCronSyncOf,
  type ModelSource,
  type ModelStreamEvent,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { sleep, waitUntil } from "./support/settle.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test" }];
const prefixes: string[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await deletePrefixes(prefixes.splice(0));
});

/** Counts the model calls (one per run that really happened) and answers `echo: <text>`. */
function countingModels(calls: string[]): ModelSource {
  return {
    async *stream(request, options): AsyncGenerator<ModelStreamEvent> {
      const last = request.messages.findLast((m) => m.role === "user");
      const text = last?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
      calls.push(text);
      yield { type: "response-start", model: options.models[0] ?? "echo/test" };
      yield { type: "text-delta", text: `echo: ${text}` };
      yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
      yield { type: "finish", reason: "stop" };
    },
  };
}

interface Member {
  node: ClusterNode;
  store: RedisStore;
  crons: CronSupervisor;
  /** Due times this node's services tried to claim. */
  attempts: Array<{ jobId: string; due: number }>;
}

async function startMember(
  prefix: string,
  nodeId: string,
  calls: string[],
  cronResyncMs: number,
): Promise<Member> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  cleanups.push(() => store.close());
  const node = new ClusterNode({
    backplane: createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId,
      heartbeatIntervalMs: 200,
      downAfterMs: 2_000,
    }),
    runtime: { store, models: countingModels(calls), agents: AGENTS },
    cronResyncMs,
  });
  await node.start();
  cleanups.push(() => node.stop());
  const attempts: Member["attempts"] = [];
  const claim = node.cronGuard.runOnce.bind(node.cronGuard);
  node.cronGuard.runOnce = (jobId, dueTime, fn, options) => {
    attempts.push({ jobId, due: dueTime });
    return claim(jobId, dueTime, fn, options);
  };
  // Exactly what a single-process application writes.
  const crons = await new CronSupervisor({
    store,
    runJob: agentRuntimeJobRunner(node.runtime),
    agents: ["main"],
  }).start();
  cleanups.push(() => crons.stop());
  return { node, store, crons, attempts };
}

async function cluster(count: number, cronResyncMs = 120_000) {
  const prefix = uniquePrefix("cron-sync");
  prefixes.push(prefix);
  const calls: string[] = [];
  const members: Member[] = [];
  for (let i = 0; i < count; i++) {
    members.push(await startMember(prefix, `node-${"abc"[i]}`, calls, cronResyncMs));
  }
  return { members, calls };
}

const service = (member: Member) => member.crons.forAgent("main");

describe("cron job changes across nodes", () => {
  it("a job added on one node is listed and fired by every node, each due time run once", async () => {
    const { members, calls } = await cluster(3);
    const [a, b, c] = members as [Member, Member, Member];
    expect(clusterCronSyncOf(a.node.runtime)).toBe(a.node.cronSync);
    const addedAt = Date.now();
    await (await service(a)).add({
      id: "tick",
      schedule: { every: 300 },
      session: "isolated",
      prompt: "tick",
    });
    for (const member of [b, c]) {
      await waitUntil("the job on the other nodes", async () =>
        (await (await service(member)).list()).some((job) => job.id === "tick"),
      );
    }
    await waitUntil(
      "6 recorded runs",
      async () => (await a.store.cron.listRuns("tick")).length >= 6,
      30_000,
    );
    // Quiet before the stop: a run the stop cuts short is logged `interrupted` (rightly),
    // and may not have reached its model call. Disabled through one node, the job stops on
    // every node (the change feed); a run already under way finishes.
    await (await service(a)).disable("tick");
    await waitUntil("the job idle and disabled on every node", async () => {
      const statuses = await Promise.all(members.map(async (m) => (await service(m)).cronStatus()));
      return statuses.every((status) => status.running === 0 && status.nextRunAt === undefined);
    });
    for (const member of members) await member.crons.stop();

    const runs = await a.store.cron.listRuns("tick", { limit: 1000 });
    const dues = runs.map((run) => run.scheduledAt as number);
    expect(new Set(dues).size).toBe(dues.length);
    expect(calls.filter((text) => text === "tick")).toHaveLength(runs.length);
    // Nodes b and c never had the job before the add: they fired its due times themselves.
    for (const member of [b, c]) {
      const fired = member.attempts.filter((t) => t.jobId === "tick" && t.due > addedAt);
      expect(fired.length).toBeGreaterThanOrEqual(1);
    }
  }, 60_000);

  it("a schedule change on one node, a disable and a removal on others are followed everywhere", async () => {
    const { members, calls } = await cluster(2);
    const [a, b] = members as [Member, Member];
    await (await service(a)).add({
      id: "report",
      schedule: { every: 3_600_000 },
      session: "isolated",
      prompt: "report",
    });
    await waitUntil("the job on b", async () =>
      (await (await service(b)).list()).some((job) => job.id === "report"),
    );
    await (await service(b)).update("report", { schedule: { every: 250 } });
    await waitUntil("a follows the new schedule", async () => {
      const job = await (await service(a)).get("report");
      return JSON.stringify(job.schedule) === JSON.stringify({ every: 250 });
    });
    await waitUntil("a run on the new schedule", async () =>
      (await a.store.cron.listRuns("report")).some((run) => run.status === "ok"),
    );

    await (await service(a)).disable("report");
    await waitUntil("b sees it disabled", async () => {
      const status = await (await service(b)).cronStatus();
      return !(await (await service(b)).get("report")).enabled && status.nextRunAt === undefined;
    });
    // A run already under way when it was disabled may still finish; then nothing more.
    await waitUntil("no run in progress", async () => {
      const statuses = await Promise.all(members.map(async (m) => (await service(m)).cronStatus()));
      return statuses.every((status) => status.running === 0);
    });
    const runsAtDisable = (await a.store.cron.listRuns("report", { limit: 1000 })).length;
    const callsAtDisable = calls.length;
    await sleep(1_500); // six periods of the old schedule
    expect((await a.store.cron.listRuns("report", { limit: 1000 })).length).toBe(runsAtDisable);
    expect(calls.length).toBe(callsAtDisable);

    expect(await (await service(b)).remove("report")).toBe(true);
    await waitUntil("gone on a", async () => (await (await service(a)).list()).length === 0);
    expect((await (await service(a)).cronStatus()).jobs).toBe(0);
    expect(await a.store.cron.getJob("report")).toBeUndefined();
  }, 60_000);

  it("a run on one node shows in the other nodes' get, list and status", async () => {
    const { members } = await cluster(2);
    const [a, b] = members as [Member, Member];
    await (await service(a)).add({
      id: "manual",
      schedule: { every: 3_600_000 },
      session: "isolated",
      prompt: "manual",
    });
    await waitUntil("the job on b", async () =>
      (await (await service(b)).list()).some((job) => job.id === "manual"),
    );
    const run = await (await service(a)).runNow("manual");
    expect(run.status).toBe("ok");
    await waitUntil("b sees the run", async () => {
      const job = await (await service(b)).get("manual");
      return job.state.runCount === 1;
    });
    const onA = await (await service(a)).get("manual");
    const onB = (await (await service(b)).list()).find((job) => job.id === "manual")!;
    expect(onB.state).toEqual(onA.state);
    expect(onB.state.lastRunAt).toBe(run.startedAt);
    expect(onB.state.lastStatus).toBe("ok");
    const [statusA, statusB] = await Promise.all([
      (await service(a)).cronStatus(),
      (await service(b)).cronStatus(),
    ]);
    expect(statusB.nextRunAt).toBe(statusA.nextRunAt);
    expect(statusB.jobs).toBe(statusA.jobs);
  }, 30_000);

  it("a change nobody was told about reaches every node at the next resync", async () => {
    const { members } = await cluster(2, 500);
    const [a, b] = members as [Member, Member];
    await (await service(a)).add({
      id: "quiet",
      schedule: { every: 3_600_000 },
      session: "isolated",
      prompt: "before",
    });
    await waitUntil("the job on b", async () =>
      (await (await service(b)).list()).some((job) => job.id === "quiet"),
    );
    // Written to Redis behind the services' backs: no notification at all.
    const stored = (await a.store.cron.getJob("quiet"))!;
    await a.store.cron.putJob({ ...stored, prompt: "after" });
    await a.store.cron.putJob({ ...stored, id: "extra", prompt: "extra" });
    for (const member of members) {
      await waitUntil("the quiet change", async () => {
        const jobs = await (await service(member)).list();
        return (
          jobs.some((job) => job.id === "extra") &&
          jobs.find((job) => job.id === "quiet")?.prompt === "after"
        );
      });
    }
    await a.store.cron.deleteJob("extra");
    for (const member of members) {
      await waitUntil("the quiet removal", async () =>
        (await (await service(member)).list()).every((job) => job.id !== "extra"),
      );
    }
  }, 30_000);

  it("a change waits for a job's lock held by a node that died, and is written under the lock when its lease runs out", async () => {
    const { members } = await cluster(2);
    const [a, b] = members as [Member, Member];
    await (await service(a)).add({
      id: "locked",
      schedule: { every: 3_600_000 },
      session: "isolated",
      prompt: "before",
    });
    await waitUntil("the job on b", async () =>
      (await (await service(b)).list()).some((job) => job.id === "locked"),
    );
    // A node took the job's lock for a merge and died: nobody releases it, its lease (6 s)
    // runs out by itself. (6 s leaves 3 s between the read below and the lease's end: a
    // process stalled under load must not see the change written before it looked.)
    const dead = await a.store.locks.acquire("cron-job:main:locked", {
      owner: "dead-node",
      ttlMs: 6_000,
    });
    expect(dead).toBeDefined();
    const seenLeases: number[] = [];
    const update = (async () => {
      const job = await (await service(b)).update("locked", { prompt: "after" });
      // Who holds the lock right after the write: no one (released), never the dead node.
      const holder = await a.store.locks.holder("cron-job:main:locked");
      if (holder !== undefined) seenLeases.push(holder.token);
      return job;
    })();
    // Well past the 2 s a merge used to wait before it wrote without the lock.
    await sleep(2_800);
    expect((await a.store.cron.getJob("locked"))?.prompt).toBe("before");
    const updated = await update;
    expect(updated.prompt).toBe("after");
    expect(Date.now()).toBeGreaterThanOrEqual(dead!.expiresAt);
    expect((await a.store.cron.getJob("locked"))?.prompt).toBe("after");
    expect(seenLeases).toEqual([]);
    // The merge took the lock after the dead node's lease: a later fencing token.
    const after = await a.store.locks.acquire("cron-job:main:locked", { owner: "t", ttlMs: 1_000 });
    expect(after!.token).toBeGreaterThan(dead!.token + 1);
    await waitUntil(
      "a follows the change",
      async () => (await (await service(a)).get("locked")).prompt === "after",
    );
  }, 30_000);

  it("while a change waits for a dead node's lock, the service answers reads and takes other changes", async () => {
    const { members } = await cluster(2);
    const [a, b] = members as [Member, Member];
    const cron = await service(b);
    for (const id of ["locked", "other"]) {
      await cron.add({ id, schedule: { every: 3_600_000 }, session: "isolated", prompt: id });
    }
    const dead = await a.store.locks.acquire("cron-job:main:locked", {
      owner: "dead-node",
      ttlMs: 6_000,
    });
    expect(dead).toBeDefined();
    let updated = false;
    const update = cron.update("locked", { prompt: "after" }).finally(() => {
      updated = true;
    });
    // Past the time a merge holds a lock: the update is waiting for the dead node's lease.
    await sleep(500);
    // The same service answers meanwhile (the old code queued these behind the update, whose
    // wait outlasts a call's 5 s time limit: TimeoutError).
    expect((await cron.list()).map((job) => job.id)).toEqual(["locked", "other"]);
    expect((await cron.get("locked")).prompt).toBe("locked");
    expect((await cron.update("other", { prompt: "other, changed" })).prompt).toBe(
      "other, changed",
    );
    expect((await cron.cronStatus()).jobs).toBe(2);
    expect(updated).toBe(false);
    expect(Date.now()).toBeLessThan(dead!.expiresAt);
    // The waiting change is still written under the lock, after the dead node's lease.
    expect((await update).prompt).toBe("after");
    expect(Date.now()).toBeGreaterThanOrEqual(dead!.expiresAt);
    expect((await a.store.cron.getJob("locked"))?.prompt).toBe("after");
    expect((await a.store.cron.getJob("other"))?.prompt).toBe("other, changed");
  }, 30_000);

  // One node: no other node could fire the jobs while this one's mailbox is held up. Two: each
  // node's deferred state is merged with what the other wrote and announced meanwhile.
  it.each([1, 2])(
    "a run's record waits for a dead node's lock outside the mailbox: other jobs go on firing, nothing is lost (%i nodes)",
    async (nodes) => {
      const { members } = await cluster(nodes);
      const a = members[0] as Member;
      const cron = await service(a);
      for (const id of ["locked", "other"]) {
        await cron.add({ id, schedule: { every: 300 }, session: "isolated", prompt: id });
      }
      await waitUntil("a first run of the locked job", async () =>
        (await a.store.cron.listRuns("locked")).some((run) => run.status === "ok"),
      );
      // Taken between two of the job's merged writes (each holds the lock for a moment).
      let dead: Awaited<ReturnType<typeof a.store.locks.acquire>>;
      await waitUntil("the locked job's lock free", async () => {
        dead = await a.store.locks.acquire("cron-job:main:locked", {
          owner: "dead-node",
          ttlMs: 5_000,
        });
        return dead !== undefined;
      });
      const lockedAt = Date.now();
      await sleep(3_000);
      // While the dead node's lease lasts, the other job fired again and again (the old code
      // held the mailbox for the locked job's write: nothing fired until the lease ran out).
      const during = (await a.store.cron.listRuns("other", { limit: 100 })).filter(
        (run) => run.startedAt > lockedAt + 500 && run.startedAt < dead!.expiresAt,
      );
      expect(during.length).toBeGreaterThanOrEqual(2);
      expect(Date.now()).toBeLessThan(dead!.expiresAt);
      // The locked job's state, kept here meanwhile, reaches the store once the lease is out:
      // every run in its log is counted.
      await waitUntil("the locked job's runs counted in the store", async () => {
        const runs = await a.store.cron.listRuns("locked", { limit: 1_000 });
        const stored = (await a.store.cron.getJob("locked")) as CronJob | undefined;
        return Date.now() > dead!.expiresAt && stored?.state.runCount === runs.length;
      });
      await cron.disable("locked");
      await cron.disable("other");
    },
    30_000,
  );
});
