/**
 * A node declared down by the others (its heartbeats late past `downAfterMs`: a long GC
 * pause, an event-loop stall, a network blip) that then heartbeats again, against the real
 * Redis. The reaping removed its names and presence entries from Redis; once it is back,
 * what it still holds locally — the handlers of its registered names, the entries it tracks —
 * is registered and tracked again, so the cluster does not lose them for good while the node
 * itself still believes it holds them.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, type RedisBackplane } from "../src/index.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const backplanes: RedisBackplane[] = [];
afterEach(async () => {
  for (const backplane of backplanes.splice(0)) await backplane.leave();
  await deletePrefixes(prefixes.splice(0));
});

async function join(prefix: string, nodeId: string): Promise<RedisBackplane> {
  const backplane = createRedisBackplane({
    url: REDIS_URL,
    prefix,
    nodeId,
    heartbeatIntervalMs: 100,
    downAfterMs: 1_500,
  });
  backplanes.push(backplane);
  await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
  return backplane;
}

/** Makes `nodeId`'s last heartbeat look older than `downAfterMs`, then lets `reaper` reap it. */
async function declareDown(prefix: string, nodeId: string, reaper: RedisBackplane) {
  const raw = rawClient();
  try {
    await raw.zadd(`${prefix}cluster:heartbeats`, 0, nodeId);
  } finally {
    await raw.quit();
  }
  await reaper.heartbeat();
}

describe("a node declared down that heartbeats again", () => {
  it("registers its names again and tracks its presence entries again", async () => {
    const prefix = uniquePrefix("flap");
    prefixes.push(prefix);
    const a = await join(prefix, "node-a");
    const b = await join(prefix, "node-b");
    const got: unknown[] = [];
    await a.registry.register("billing", (message) => got.push(message), {
      localId: "worker-1",
      meta: { v: 1 },
    });
    await a.presence.track("client:1", { user: "ada" });
    const downs: string[] = [];
    b.onMembership((event) => {
      if (event.type === "down") downs.push(event.member.nodeId);
    });

    await declareDown(prefix, "node-a", b);
    expect(downs).toEqual(["node-a"]);
    // Still a live process: it heartbeats again and is a member again.
    await waitUntil("node-a to be a member again", () =>
      b.members().some((m) => m.nodeId === "node-a"),
    );
    expect(a.registry.localNames()).toEqual(["billing"]);

    await waitUntil("billing to be found on node-a again", async () => {
      const where = await b.registry.lookup("billing");
      return where?.nodeId === "node-a";
    });
    expect(await b.registry.lookup("billing")).toMatchObject({
      nodeId: "node-a",
      localId: "worker-1",
      meta: { v: 1 },
    });
    expect(await b.registry.send("billing", { invoice: 7 })).toBe(true);
    await waitUntil("the message to arrive", () => got.length === 1);
    expect(got).toEqual([{ invoice: 7 }]);
    await waitUntil("client:1 to be listed again", async () =>
      (await b.presence.list()).some((e) => e.key === "client:1" && e.nodeId === "node-a"),
    );
    expect((await b.presence.list()).find((e) => e.key === "client:1")?.meta).toEqual({
      user: "ada",
    });
  });

  it("gives up a name another live node registered meanwhile", async () => {
    const prefix = uniquePrefix("flap");
    prefixes.push(prefix);
    const a = await join(prefix, "node-a");
    const b = await join(prefix, "node-b");
    await a.registry.register("leader", () => undefined);
    await declareDown(prefix, "node-a", b);
    // b takes the name while node-a is down.
    await b.registry.register("leader", () => undefined);
    await waitUntil("node-a to be a member again", () =>
      b.members().some((m) => m.nodeId === "node-a"),
    );
    await waitUntil("node-a to give the name up", () => a.registry.localNames().length === 0);
    expect((await a.registry.lookup("leader"))?.nodeId).toBe("node-b");
    expect(b.registry.localNames()).toEqual(["leader"]);
  });
});
