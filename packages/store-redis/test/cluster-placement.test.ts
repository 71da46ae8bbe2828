/**
 * Placement of new sessions under stale heartbeats, against the real Redis: three
 * `ClusterNode`s in this process whose heartbeats are stalled for the whole test (a 60 s
 * period: after the joins nobody reports anything new). A burst of new sessions sent
 * through all three nodes at once still splits evenly, because each placement is chosen
 * and counted in one Redis script (the backplane's `place`), not from the heartbeats.
 * Deterministic: it asserts the split, never a time.
 */
import {
  type AgentDefinition,
  ClusterNode,
  type ModelSource,
  type ModelStreamEvent,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  createRedisBackplane,
  createRedisStore,
  type RedisBackplane,
  type RedisStore,
} from "../src/index.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test" }];
const prefixes: string[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await deletePrefixes(prefixes.splice(0));
});

const models: ModelSource = {
  async *stream(request, options): AsyncGenerator<ModelStreamEvent> {
    const last = request.messages.findLast((m) => m.role === "user");
    const text = last?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
    yield { type: "response-start", model: options.models[0] ?? "echo/test" };
    yield { type: "text-delta", text: `echo: ${text}` };
    yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
    yield { type: "finish", reason: "stop" };
  },
};

/** Three nodes with stalled heartbeats (60 s), all aware of each other. */
async function stalledCluster(): Promise<{
  nodes: ClusterNode[];
  backplanes: RedisBackplane[];
  store: RedisStore;
  prefix: string;
}> {
  const prefix = uniquePrefix("placement");
  prefixes.push(prefix);
  const nodes: ClusterNode[] = [];
  const backplanes: RedisBackplane[] = [];
  const stores: RedisStore[] = [];
  for (const nodeId of ["node-1", "node-2", "node-3"]) {
    const store = createRedisStore({ url: REDIS_URL, prefix });
    await store.open();
    cleanups.push(() => store.close());
    stores.push(store);
    const backplane = createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId,
      heartbeatIntervalMs: 60_000,
      downAfterMs: 180_000,
    });
    const node = new ClusterNode({
      backplane,
      runtime: { store, models, agents: AGENTS },
    });
    await node.start();
    cleanups.push(() => node.stop());
    nodes.push(node);
    backplanes.push(backplane);
  }
  // A join makes the others beat once (they learn of it); after that nobody beats.
  await waitUntil("every node to see the other two", () =>
    nodes.every((node) => node.members().length === 3),
  );
  return { nodes, backplanes, store: stores[0]!, prefix };
}

async function owners(store: RedisStore, keys: string[]): Promise<Map<string, number>> {
  const split = new Map<string, number>();
  for (const key of keys) {
    const owner = (await store.locks.holder(`session:${key}`))?.owner ?? "(none)";
    split.set(owner, (split.get(owner) ?? 0) + 1);
  }
  return split;
}

describe("placement of a burst of new sessions while heartbeats are stalled", () => {
  it("30 new sessions sent through 3 nodes at once split 10 / 10 / 10 (within one)", async () => {
    const { nodes, store } = await stalledCluster();
    const beatsBefore = nodes[0]!.members().map((m) => m.heartbeatAt);
    const keys = Array.from({ length: 30 }, (_, i) => `agent:main:burst-${i}`);
    const runs = await Promise.all(
      keys.map(async (key, i) => {
        const run = await nodes[i % 3]!.runtime.session(key).send(`hello ${i}`);
        return run.result;
      }),
    );
    expect(runs.every((r) => r.status === "completed")).toBe(true);
    const split = await owners(store, keys);
    expect([...split.keys()].sort()).toEqual(["node-1", "node-2", "node-3"]);
    for (const [node, count] of split) {
      expect(count, `${node} owns ${count} of 30`).toBeGreaterThanOrEqual(9);
      expect(count, `${node} owns ${count} of 30`).toBeLessThanOrEqual(11);
    }
    // No heartbeat happened meanwhile: every node still reports the load of its join.
    for (const node of nodes) {
      expect(node.members().every((m) => m.sessions === 0)).toBe(true);
    }
    expect(nodes[0]!.members().map((m) => m.heartbeatAt)).toEqual(beatsBefore);
  }, 30_000);

  it("a burst through one node also spreads, and the counts settle once heartbeats report the sessions", async () => {
    const { nodes, backplanes, store, prefix } = await stalledCluster();
    const keys = Array.from({ length: 12 }, (_, i) => `agent:main:one-${i}`);
    for (const key of keys) {
      // One after another through node 1: each placement sees the ones before it.
      await (await nodes[0]!.runtime.session(key).send("hi")).result;
    }
    const split = await owners(store, keys);
    expect([...split.values()].sort()).toEqual([4, 4, 4]);
    // The heartbeats come: each node reports its sessions, and its unreported placements
    // drop to zero (they are counted once, in `sessions`, from now on).
    for (const backplane of backplanes) await backplane.heartbeat();
    const client = rawClient();
    try {
      const placements = await client.hgetall(`${prefix}cluster:placements`);
      expect(Object.values(placements).map(Number)).toEqual([0, 0, 0]);
    } finally {
      await client.quit();
    }
    await waitUntil("every node to see 4 sessions on each", async () => {
      for (const backplane of backplanes) await backplane.heartbeat();
      return nodes.every((node) => node.members().every((m) => m.sessions === 4));
    });
    // The next burst still splits evenly, now from heartbeat-reported loads.
    const more = Array.from({ length: 6 }, (_, i) => `agent:main:more-${i}`);
    await Promise.all(
      more.map(async (key, i) => (await nodes[i % 3]!.runtime.session(key).send("hi")).result),
    );
    expect([...(await owners(store, more)).values()].sort()).toEqual([2, 2, 2]);
  }, 30_000);

  it("when one node's heartbeat comes and the others' are late, the next burst still splits evenly", async () => {
    const { nodes, backplanes, store } = await stalledCluster();
    const first = Array.from({ length: 6 }, (_, i) => `agent:main:first-${i}`);
    for (const key of first) await (await nodes[0]!.runtime.session(key).send("hi")).result;
    expect([...(await owners(store, first)).values()].sort()).toEqual([2, 2, 2]);
    // Only node 1 heartbeats (it reports its 2 sessions); nodes 2 and 3 still report 0.
    await backplanes[0]!.heartbeat();
    expect(nodes[0]!.members().map((m) => [m.nodeId, m.sessions])).toEqual([
      ["node-1", 2],
      ["node-2", 0],
      ["node-3", 0],
    ]);
    const burst = Array.from({ length: 9 }, (_, i) => `agent:main:burst-${i}`);
    for (const key of burst) await (await nodes[0]!.runtime.session(key).send("hi")).result;
    // 15 sessions in all: 5 on each node (node 1's reported sessions are not counted twice,
    // and the others' placements count although their heartbeats did not report them).
    expect([...(await owners(store, [...first, ...burst])).values()].sort()).toEqual([5, 5, 5]);
  }, 30_000);

  it("place refuses bad input and picks nothing among nodes that are not members", async () => {
    const { backplanes } = await stalledCluster();
    const backplane = backplanes[0]!;
    await expect(backplane.place("", ["node-1"])).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(backplane.place("k", [""])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await backplane.place("k", ["node-9"])).toBeUndefined();
    expect(await backplane.place("k", [])).toBeUndefined();
  }, 30_000);
});
