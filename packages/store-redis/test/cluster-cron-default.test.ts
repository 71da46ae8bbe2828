/**
 * Cron in a cluster with the default wiring, against the real Redis: two `ClusterNode`s in
 * this process, each with the `CronSupervisor` an application (or the gateway) creates
 * anyway — `runJob: agentRuntimeJobRunner(node.runtime)`, nothing cluster-specific. Both
 * nodes' services hold the job and fire every due time; the node's run guard lets one run
 * it and the other skip it, so each due time runs once and is recorded once.
 */
import {
  type AgentDefinition,
  AgentRuntime,
  agentRuntimeJobRunner,
  ClusterNode,
  CronSupervisor,
  clusterCronGuardOf,
  createMemoryStore,
  type ModelSource,
  type ModelStreamEvent,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

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

async function startNode(prefix: string, nodeId: string, calls: string[]) {
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
  });
  await node.start();
  cleanups.push(() => node.stop());
  // Counts the due times this node's cron services tried to claim (the guard is not changed).
  const attempts: number[] = [];
  const claim = node.cronGuard.runOnce.bind(node.cronGuard);
  node.cronGuard.runOnce = (jobId, dueTime, fn, options) => {
    attempts.push(dueTime);
    return claim(jobId, dueTime, fn, options);
  };
  return { node, store, attempts };
}

async function startCron(store: RedisStore, node: ClusterNode): Promise<CronSupervisor> {
  // Exactly what a single-process application writes.
  const crons = await new CronSupervisor({
    store,
    runJob: agentRuntimeJobRunner(node.runtime),
    agents: ["main"],
  }).start();
  cleanups.push(() => crons.stop());
  return crons;
}

describe("cron on a cluster with the default wiring", () => {
  it("two nodes' cron services hold the same job, and each due time runs once", async () => {
    const prefix = uniquePrefix("cron-default");
    prefixes.push(prefix);
    const calls: string[] = [];
    const a = await startNode(prefix, "node-a", calls);
    const b = await startNode(prefix, "node-b", calls);
    expect(clusterCronGuardOf(a.node.runtime)).toBe(a.node.cronGuard);

    const cronA = await startCron(a.store, a.node);
    await (await cronA.forAgent("main")).add({
      id: "tick",
      schedule: { every: 250 },
      session: "isolated",
      prompt: "tick",
    });
    // Node b's service starts after the job exists, so both hold it and both fire it.
    const cronB = await startCron(b.store, b.node);
    const bReadyAt = Date.now();
    expect((await (await cronB.forAgent("main")).cronStatus()).jobs).toBe(1);
    expect((await (await cronA.forAgent("main")).cronStatus()).jobs).toBe(1);

    // Due times both nodes fired (a node still busy with a run skips the due times that come
    // meanwhile, so not necessarily all, and fewer on a loaded machine).
    const firedByBoth = (dues: number[]) =>
      dues.filter((due) => due > bReadyAt && a.attempts.includes(due) && b.attempts.includes(due));
    await waitUntil(
      "8 recorded runs, 2 of them of due times both nodes fired",
      async () => {
        const runs = await a.store.cron.listRuns("tick", { limit: 1000 });
        return (
          runs.length >= 8 && firedByBoth(runs.map((r) => r.scheduledAt as number)).length >= 2
        );
      },
      30_000,
    );
    // Quiet before the stop: a run the stop cuts short is logged `interrupted` (rightly),
    // and may not have reached its model call. Disabled through one node, the job stops on
    // both (the change feed); a run already under way finishes.
    await (await cronA.forAgent("main")).disable("tick");
    await waitUntil("the job idle and disabled on both nodes", async () => {
      const statuses = await Promise.all(
        [cronA, cronB].map(async (crons) => (await crons.forAgent("main")).cronStatus()),
      );
      return statuses.every((status) => status.running === 0 && status.nextRunAt === undefined);
    });
    await cronA.stop();
    await cronB.stop();

    const runs = await a.store.cron.listRuns("tick", { limit: 1000 });
    const dues = runs.map((r) => r.scheduledAt as number);
    // Each due time was recorded once, and ran once (one model call per recorded run).
    expect(new Set(dues).size).toBe(dues.length);
    expect(runs.every((r) => r.status === "ok")).toBe(true);
    expect(calls.filter((text) => text === "tick")).toHaveLength(runs.length);
    // Both nodes fired due times they both held: the guard let one run each.
    expect(firedByBoth(dues).length).toBeGreaterThanOrEqual(2);
    const claims = await a.store.kv.keys("cron-run:tick:");
    for (const key of claims) {
      expect(["node-a", "node-b"]).toContain(
        (await a.store.kv.get<{ nodeId: string }>(key))?.nodeId,
      );
    }
  }, 60_000);

  it("a job removed while a node did not hear of it is not run by that node's stale copy", async () => {
    const prefix = uniquePrefix("cron-default");
    prefixes.push(prefix);
    const calls: string[] = [];
    const a = await startNode(prefix, "node-a", calls);
    const b = await startNode(prefix, "node-b", calls);
    const cronA = await startCron(a.store, a.node);
    await (await cronA.forAgent("main")).add({
      id: "gone",
      schedule: { every: 200 },
      session: "isolated",
      prompt: "gone",
    });
    const cronB = await startCron(b.store, b.node);
    expect((await (await cronB.forAgent("main")).cronStatus()).jobs).toBe(1);
    await waitUntil("a first run", async () => (await a.store.cron.listRuns("gone")).length >= 1);
    // Removed with the change notification lost (written to the store directly; the next
    // full resync is 30 s away): the services still hold their copies, and fire them. As a
    // service removes a job: under the job's lock, so that a node's merged write of it in
    // flight (read, then write) cannot bring it back.
    const takeLock = async () => {
      for (;;) {
        const held = await a.store.locks.acquire("cron-job:main:gone", {
          owner: "test",
          ttlMs: 5_000,
        });
        if (held !== undefined) return held;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    };
    const lease = await takeLock();
    await a.store.cron.deleteJob("gone");
    await a.store.locks.release(lease);
    const callsAtRemoval = calls.length;
    const claimsAtRemoval = (await a.store.kv.keys("cron-run:gone:")).length;
    // Let node b's copy come due several times.
    const service = await cronB.forAgent("main");
    const firstDue = (await service.cronStatus()).nextRunAt ?? 0;
    // It either keeps coming due (each time the guard finds the job gone and skips it), or
    // the service drops its copy when it learns the job is gone: both are right, as long as
    // nothing runs. Give it at least 3 due times either way.
    const removedAt = Date.now();
    await waitUntil("node b's copy to come due 3 more times, or be dropped", async () => {
      const status = await service.cronStatus();
      if (status.running !== 0) return false;
      const cameDue = (status.nextRunAt ?? 0) >= firstDue + 3 * 200;
      return cameDue || Date.now() >= removedAt + 3_000;
    });
    // No run happened and nothing was claimed or recorded after the removal (a run that
    // was in flight at the removal may still finish).
    expect(calls.length - callsAtRemoval).toBeLessThanOrEqual(1);
    expect((await a.store.kv.keys("cron-run:gone:")).length - claimsAtRemoval).toBeLessThanOrEqual(
      1,
    );
    expect(await a.store.cron.getJob("gone")).toBeUndefined();
  }, 30_000);
});

describe("a single-process runtime", () => {
  it("has no cluster guard: agentRuntimeJobRunner runs every due time itself", async () => {
    const runtime = new AgentRuntime({
      store: createMemoryStore(),
      models: countingModels([]),
      agents: AGENTS,
    });
    expect(clusterCronGuardOf(runtime)).toBeUndefined();
  });
});
