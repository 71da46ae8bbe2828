/**
 * The cluster-wide registry and presence of the Redis backplane, against the real Redis:
 * several backplanes in this process (each with its own connections) stand for nodes. A
 * name registered on one node is found and reached from the others; presence entries of
 * every node are listed everywhere; and a node that stops heartbeating (its connection to
 * Redis cut for good, as for a frozen or killed process) loses its names and entries within
 * the dead-node detection time, with `leave` events.
 */
import { ClusterNode, type ClusterPresenceEvent, type NodeMessage } from "@beamclaw/core";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, createRedisStore, type RedisBackplane } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const backplanes: RedisBackplane[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const backplane of backplanes.splice(0)) await backplane.leave();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  clients.clear();
  await deletePrefixes(prefixes.splice(0));
});

const clients = new Map<RedisBackplane, Redis>();
const HEARTBEAT_MS = 100;
/** Roomy enough that a stall of the test process does not declare a live node down. */
const DOWN_AFTER_MS = 1_500;

async function nodes(count: number): Promise<RedisBackplane[]> {
  const prefix = uniquePrefix("registry");
  prefixes.push(prefix);
  const out: RedisBackplane[] = [];
  for (let i = 0; i < count; i++) {
    // The node's own command connection (never reconnecting once cut: see stopHeartbeats).
    const client = new Redis(REDIS_URL, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    client.on("error", () => undefined);
    cleanups.push(async () => {
      if (client.status === "ready") await client.quit();
      else if (client.status !== "end") client.disconnect();
    });
    const backplane = createRedisBackplane({
      client,
      prefix,
      nodeId: `node-${i + 1}`,
      heartbeatIntervalMs: HEARTBEAT_MS,
      downAfterMs: DOWN_AFTER_MS,
    });
    backplanes.push(backplane);
    clients.set(backplane, client);
    await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
    out.push(backplane);
  }
  return out;
}

describe("the cluster registry", () => {
  it("a name registered on one node is looked up and sent to from every node; a second node cannot take it", async () => {
    const [a, b, c] = await nodes(3);
    const received: Array<{ message: NodeMessage; from: string }> = [];
    const registration = await a!.registry.register(
      "billing",
      (message, from) => received.push({ message, from }),
      { localId: "actor-17", meta: { version: 2 } },
    );
    expect(registration).toMatchObject({
      name: "billing",
      nodeId: "node-1",
      localId: "actor-17",
      meta: { version: 2 },
    });
    for (const node of [a!, b!, c!]) {
      expect(await node.registry.lookup("billing")).toEqual(registration);
    }
    await expect(b!.registry.register("billing", () => undefined)).rejects.toMatchObject({
      code: "ALREADY_REGISTERED",
    });
    // via-style: a message to the name reaches the process on node 1, from anywhere.
    expect(await c!.registry.send("billing", { invoice: 42 })).toBe(true);
    expect(await b!.registry.send("billing", { invoice: 43 })).toBe(true);
    expect(await a!.registry.send("billing", { invoice: 44 })).toBe(true);
    await waitUntil("three messages", () => received.length === 3);
    expect(received.map((r) => [r.message.invoice, r.from]).sort()).toEqual([
      [42, "node-3"],
      [43, "node-2"],
      [44, "node-1"],
    ]);
    // Such messages are not node messages: the backplane's own handlers never see them.
    const seen: NodeMessage[] = [];
    const off = a!.onMessage((message) => seen.push(message));
    expect(await b!.registry.send("billing", { invoice: 45 })).toBe(true);
    await waitUntil("the fourth message", () => received.length === 4);
    off();
    expect(seen).toEqual([]);

    await b!.registry.register("search", () => undefined);
    expect((await c!.registry.list()).map((r) => [r.name, r.nodeId])).toEqual([
      ["billing", "node-1"],
      ["search", "node-2"],
    ]);
    expect((await c!.registry.list("se")).map((r) => r.name)).toEqual(["search"]);
    // Unregistered: gone everywhere, and free to be taken by another node.
    expect(await b!.registry.unregister("billing")).toBe(false);
    expect(await a!.registry.unregister("billing")).toBe(true);
    expect(await c!.registry.lookup("billing")).toBeUndefined();
    expect(await c!.registry.send("billing", { invoice: 46 })).toBe(false);
    await b!.registry.register("billing", () => undefined);
    expect((await a!.registry.lookup("billing"))?.nodeId).toBe("node-2");
  });

  it("the names of a node that stops heartbeating vanish within the detection time and can be taken", async () => {
    const [a, b] = await nodes(2);
    await a!.registry.register("leader", () => undefined);
    await a!.registry.register("worker:1", () => undefined);
    expect((await b!.registry.list()).map((r) => r.name)).toEqual(["leader", "worker:1"]);
    const downs: string[] = [];
    b!.onMembership((event) => {
      if (event.type === "down") downs.push(event.member.nodeId);
    });
    stopHeartbeats(a!);
    await waitUntil(
      "node 1's names to vanish",
      async () => (await b!.registry.list()).length === 0,
    );
    expect(await b!.registry.send("leader", { hi: true })).toBe(false);
    // Taken over by a live node while node 1 is dead.
    await b!.registry.register("leader", () => undefined);
    expect((await b!.registry.lookup("leader"))?.nodeId).toBe("node-2");
    // The heartbeat that declared node 1 down also removed its names from Redis.
    await waitUntil("node 1 declared down", () => downs.includes("node-1"));
    const raw = await rawNames(b!);
    expect(Object.keys(raw)).toEqual(["leader"]);
  });

  it("a name registered for a process goes when the process exits, and with the node's leave", async () => {
    const [a, b] = await nodes(2);
    let exit!: () => void;
    const process = {
      monitor(onExit: () => void) {
        exit = onExit;
        return () => undefined;
      },
    };
    await a!.registry.register("session-proc", () => undefined, { process });
    await a!.registry.register("other", () => undefined);
    expect(a!.registry.localNames()).toEqual(["other", "session-proc"]);
    exit();
    await waitUntil(
      "the name to go",
      async () => (await b!.registry.lookup("session-proc")) === undefined,
    );
    await a!.leave();
    expect(await b!.registry.lookup("other")).toBeUndefined();
    expect(await rawNames(b!)).toEqual({});
  });

  it("refuses bad input with typed errors and works only while joined", async () => {
    const [a] = await nodes(1);
    await expect(a!.registry.register("", () => undefined)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(
      a!.registry.register("x", () => undefined, { meta: { bad: 1n } as never }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(a!.registry.send("x", [] as never)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(a!.presence.track("", {})).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const idle = createRedisBackplane({ url: REDIS_URL, prefix: prefixes[0]! });
    await expect(idle.registry.register("x", () => undefined)).rejects.toMatchObject({
      code: "CLUSTER_NOT_RUNNING",
    });
    await expect(idle.presence.list()).rejects.toMatchObject({ code: "CLUSTER_NOT_RUNNING" });
    expect(await a!.registry.list()).toEqual([]);
  });
});

describe("cluster-wide presence", () => {
  it("every node lists the union of every node's entries, with change events", async () => {
    const [a, b, c] = await nodes(3);
    const events: ClusterPresenceEvent[] = [];
    c!.presence.onChange((event) => events.push(event));
    await a!.presence.track("client:1", { user: "ada" });
    await a!.presence.track("client:2", { user: "bob" });
    await b!.presence.track("client:3", { user: "cy" });
    await b!.presence.track("device:9", {});
    await a!.presence.track("client:1", { user: "ada", away: true });
    for (const node of [a!, b!, c!]) {
      const listed = await node.presence.list();
      expect(listed.map((e) => [e.key, e.nodeId, e.meta])).toEqual([
        ["client:1", "node-1", { user: "ada", away: true }],
        ["client:2", "node-1", { user: "bob" }],
        ["client:3", "node-2", { user: "cy" }],
        ["device:9", "node-2", {}],
      ]);
    }
    expect(await b!.presence.untrack("client:3")).toBe(true);
    expect(await b!.presence.untrack("client:3")).toBe(false);
    await waitUntil("6 events", () => events.length === 6);
    expect(events.map((e) => [e.type, e.entry.key, e.entry.nodeId])).toEqual([
      ["join", "client:1", "node-1"],
      ["join", "client:2", "node-1"],
      ["join", "client:3", "node-2"],
      ["join", "device:9", "node-2"],
      ["update", "client:1", "node-1"],
      ["leave", "client:3", "node-2"],
    ]);
    expect(events[4]!.entry.meta).toEqual({ user: "ada", away: true });
    expect((await c!.presence.list()).map((e) => e.key)).toEqual([
      "client:1",
      "client:2",
      "device:9",
    ]);
  });

  it("the entries of a node that stops heartbeating disappear within the detection time, with leave events", async () => {
    const [a, b] = await nodes(2);
    await a!.presence.track("client:1", { user: "ada" });
    await a!.presence.track("client:2", { user: "bob" });
    await b!.presence.track("client:3", { user: "cy" });
    const events: ClusterPresenceEvent[] = [];
    b!.presence.onChange((event) => events.push(event));
    stopHeartbeats(a!);
    await waitUntil("node 1's entries to disappear", async () =>
      (await b!.presence.list()).every((e) => e.nodeId === "node-2"),
    );
    expect((await b!.presence.list()).map((e) => e.key)).toEqual(["client:3"]);
    const leaves = () => events.filter((e) => e.type === "leave");
    await waitUntil("two leave events", () => leaves().length === 2);
    expect(
      leaves()
        .map((e) => [e.type, e.entry.key, e.entry.nodeId, e.entry.meta])
        .sort(),
    ).toEqual([
      ["leave", "client:1", "node-1", { user: "ada" }],
      ["leave", "client:2", "node-1", { user: "bob" }],
    ]);
  });

  it("a node that leaves takes its entries with it", async () => {
    const [a, b] = await nodes(2);
    const events: ClusterPresenceEvent[] = [];
    b!.presence.onChange((event) => events.push(event));
    await a!.presence.track("client:1");
    await waitUntil("the join event", () => events.length === 1);
    await a!.leave();
    expect(await b!.presence.list()).toEqual([]);
    await waitUntil("the leave event", () => events.length === 2);
    expect(events.map((e) => [e.type, e.entry.key, e.entry.nodeId])).toEqual([
      ["join", "client:1", "node-1"],
      ["leave", "client:1", "node-1"],
    ]);
  });
});

describe("through a ClusterNode", () => {
  it("exposes the backplane's registry and presence", async () => {
    const prefix = uniquePrefix("registry");
    prefixes.push(prefix);
    const store = createRedisStore({ url: REDIS_URL, prefix });
    await store.open();
    cleanups.push(() => store.close());
    const backplane = createRedisBackplane({ url: REDIS_URL, prefix, nodeId: "node-x" });
    const node = new ClusterNode({
      backplane,
      runtime: {
        store,
        models: { stream: async function* () {} },
        agents: [{ id: "main", model: "echo/test" }],
      },
    });
    await node.start();
    cleanups.push(() => node.stop());
    expect(node.registry).toBe(backplane.registry);
    expect(node.presence).toBe(backplane.presence);
    await node.presence.track("client:1");
    expect((await node.presence.list()).map((e) => e.nodeId)).toEqual(["node-x"]);
  });
});

/**
 * Node `backplane` stops heartbeating without leaving, as if its process froze or died: its
 * command connection to Redis is cut for good (no reconnection), so its beats fail.
 */
function stopHeartbeats(backplane: RedisBackplane): void {
  const client = clients.get(backplane);
  if (client === undefined) throw new Error("not a backplane of this test");
  client.disconnect();
}

async function rawNames(backplane: RedisBackplane): Promise<Record<string, string>> {
  const { rawClient } = await import("./support/redis.js");
  const client = rawClient();
  try {
    return await client.hgetall(`${backplane.prefix}cluster:names`);
  } finally {
    await client.quit();
  }
}
