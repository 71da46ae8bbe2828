/**
 * Cron across nodes, against the real Redis: the run guard lets exactly one node run each
 * due time, a stale lease holder is fenced off, and a `ClusterSingleton` runs an agent's
 * `CronService` on one node at a time and moves it to another when that node dies. Each
 * `RedisStore` here is one node (its own connection).
 */
import {
  ClusterSingleton,
  type CronJobRunner,
  type CronRunContext,
  CronRunGuard,
  CronService,
  guardCronRunner,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { sleep, waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await deletePrefixes(prefixes.splice(0));
});

async function stores(count: number): Promise<RedisStore[]> {
  const prefix = uniquePrefix("cron");
  prefixes.push(prefix);
  const out: RedisStore[] = [];
  for (let i = 0; i < count; i++) {
    const store = createRedisStore({ url: REDIS_URL, prefix });
    cleanups.push(() => store.close());
    await store.open();
    out.push(store);
  }
  return out;
}

describe("the cron run guard", () => {
  it("two nodes claiming the same due times run each exactly once", async () => {
    const [sa, sb] = await stores(2);
    const guards = [
      new CronRunGuard({ store: sa!, nodeId: "a" }),
      new CronRunGuard({ store: sb!, nodeId: "b" }),
    ];
    const runs: Array<{ node: string; due: number }> = [];
    const base = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, (_, i) => base + i * 60_000).flatMap((due) =>
        guards.map((guard) =>
          guard.runOnce("report", due, async () => {
            runs.push({ node: guard.nodeId, due });
            return guard.nodeId;
          }),
        ),
      ),
    );
    const dues = runs.map((r) => r.due);
    expect(new Set(dues).size).toBe(40);
    expect(dues).toHaveLength(40);
    // Whoever lost a due time is told who won it.
    for (const outcome of outcomes) {
      if (!outcome.ran) expect(["a", "b"]).toContain(outcome.claimedBy);
    }
    expect(outcomes.filter((o) => o.ran)).toHaveLength(40);
  });

  it("a holder whose lease passed to another node is fenced off, and the new holder claims once", async () => {
    const [sa, sb] = await stores(2);
    const stale = (await sa!.locks.acquire("singleton:cron:ops", { owner: "a", ttlMs: 50 }))!;
    await sleep(80);
    const current = (await sb!.locks.acquire("singleton:cron:ops", { owner: "b", ttlMs: 10_000 }))!;
    expect(current.token).toBeGreaterThan(stale.token);
    const a = new CronRunGuard({ store: sa!, nodeId: "a" });
    const b = new CronRunGuard({ store: sb!, nodeId: "b" });
    const due = Date.now();
    let ran = 0;
    const run = async () => {
      ran++;
    };
    expect(
      await a.runOnce("job", due, run, { fence: { lock: current.name, token: stale.token } }),
    ).toEqual({
      ran: false,
      claimedBy: undefined,
      fenced: true,
    });
    expect(
      await b.runOnce("job", due, run, { fence: { lock: current.name, token: current.token } }),
    ).toMatchObject({
      ran: true,
    });
    expect(await b.claim("job", due, { fence: { lock: current.name, token: current.token } })).toBe(
      false,
    );
    expect(ran).toBe(1);
  });

  it("a guarded runner skips scheduled runs another node claimed, and never skips manual ones", async () => {
    const [sa, sb] = await stores(2);
    const calls: string[] = [];
    const inner =
      (node: string): CronJobRunner =>
      async (job, context) => {
        calls.push(`${node}:${context.trigger}`);
        return { status: "ok", output: `${job.id} on ${node}` };
      };
    const a = guardCronRunner(inner("a"), new CronRunGuard({ store: sa!, nodeId: "a" }));
    const b = guardCronRunner(inner("b"), new CronRunGuard({ store: sb!, nodeId: "b" }));
    const job = { id: "digest" } as Parameters<CronJobRunner>[0];
    const context = (trigger: CronRunContext["trigger"]): CronRunContext => ({
      agentId: "ops",
      runId: `r-${trigger}`,
      trigger,
      scheduledAt: 1_700_000_000_000,
      sessionKey: "agent:ops:main",
      signal: new AbortController().signal,
    });
    expect(await a(job, context("schedule"))).toEqual({ status: "ok", output: "digest on a" });
    expect(await b(job, context("schedule"))).toEqual({ status: "ok", skipped: true });
    expect(await b(job, context("manual"))).toEqual({ status: "ok", output: "digest on b" });
    expect(calls).toEqual(["a:schedule", "b:manual"]);
  });

  it("bad input is refused with InvalidArgumentError before anything is written", async () => {
    const [store] = await stores(1);
    expect(() => new CronRunGuard({ store: store!, nodeId: "" })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    const guard = new CronRunGuard({ store: store!, nodeId: "a" });
    await expect(guard.claim("", 1)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(guard.claim("job", 1.5)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await store!.kv.keys("")).toEqual([]);
  });
});

describe("a cron service as a cluster singleton", () => {
  it("runs on one node at a time, each due time once, and moves to another node when its node dies", async () => {
    const [sa, sb] = await stores(2);
    const runs: Array<{ node: string; scheduledAt: number }> = [];
    const leading: Array<{ node: string; from: number; to?: number }> = [];
    const services = new Map<string, CronService>();
    const singletons = new Map<string, ClusterSingleton>();
    const startNode = async (node: string, store: RedisStore) => {
      const guard = new CronRunGuard({ store, nodeId: node });
      const runner: CronJobRunner = async (_job, context) => {
        runs.push({ node, scheduledAt: context.scheduledAt });
        return { status: "ok" };
      };
      const singleton: ClusterSingleton = new ClusterSingleton({
        name: "cron:ops",
        store,
        nodeId: node,
        ttlMs: 300,
        start: async () => {
          const service = await new CronService({
            agentId: "ops",
            store,
            runJob: guardCronRunner(runner, guard, { fence: () => singleton.fence }),
          }).start();
          services.set(node, service);
          const span: { node: string; from: number; to?: number } = {
            node,
            from: performance.now(),
          };
          leading.push(span);
          return async () => {
            await service.stop();
            span.to = performance.now();
          };
        },
      });
      singletons.set(node, singleton);
      cleanups.push(() => singleton.stop());
      await singleton.start();
      return singleton;
    };
    const a = await startNode("a", sa!);
    const b = await startNode("b", sb!);
    expect(a.leading).toBe(true);
    expect(b.leading).toBe(false);
    await services.get("a")!.add({ id: "tick", schedule: { every: 100 }, prompt: "tick" });
    await waitUntil("4 runs on a", () => runs.filter((r) => r.node === "a").length >= 4);

    // Node a loses Redis for good (as if its process died): b takes the service over.
    await sa!.close();
    await waitUntil("b to lead", () => b.leading, 5_000);
    await waitUntil("4 runs on b", () => runs.filter((r) => r.node === "b").length >= 4);
    await b.stop();
    await a.stop();

    const dues = runs.map((r) => r.scheduledAt);
    expect(new Set(dues).size, "a due time ran twice").toBe(dues.length);
    const spans = leading.map((s) => ({ ...s, to: s.to ?? Number.POSITIVE_INFINITY }));
    // a led first; after it lost Redis only b leads (b may lose and regain its 300 ms lease
    // on a loaded machine, which adds spans).
    expect(spans[0]!.node).toBe("a");
    expect(spans.length).toBeGreaterThanOrEqual(2);
    expect(spans.slice(1).every((s) => s.node === "b")).toBe(true);
    // Never two leaders: each leader had stopped its service before the next started its own.
    for (let i = 1; i < spans.length; i++) {
      expect(spans[i - 1]!.to).toBeLessThanOrEqual(spans[i]!.from);
    }
  });
});
