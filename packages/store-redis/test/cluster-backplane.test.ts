/**
 * The Redis backplane against the real Redis: membership (join, update, leave, and a node
 * that stops heartbeating declared down), messages between nodes, the cluster-wide pub/sub,
 * the keys it writes, and the options it refuses. Several backplanes in one process are
 * several nodes: each has its own two connections.
 */
import type { MembershipEvent } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  createRedisBackplane,
  type RedisBackplane,
  type RedisBackplaneOptions,
} from "../src/index.js";
import { deletePrefixes, keysUnder, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";
import { sleep, waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const open: RedisBackplane[] = [];
afterEach(async () => {
  for (const backplane of open.splice(0)) await backplane.leave();
  await deletePrefixes(prefixes.splice(0));
});

function prefix(): string {
  const p = uniquePrefix("backplane");
  prefixes.push(p);
  return p;
}

async function node(
  p: string,
  nodeId: string,
  options: Partial<RedisBackplaneOptions> & { draining?: () => boolean } = {},
): Promise<RedisBackplane> {
  const { draining, ...rest } = options;
  const backplane = createRedisBackplane({
    url: REDIS_URL,
    prefix: p,
    nodeId,
    // Quick enough for the tests of failure detection, slow enough that a stall of the test
    // process (garbage collection, a busy CPU) does not declare a live node down.
    heartbeatIntervalMs: 100,
    downAfterMs: 1_500,
    ...rest,
  } as RedisBackplaneOptions);
  open.push(backplane);
  await backplane.join({
    meta: { role: nodeId },
    status: () => ({ sessions: nodeId.length, draining: draining?.() ?? false }),
  });
  return backplane;
}

function events(backplane: RedisBackplane): MembershipEvent[] {
  const seen: MembershipEvent[] = [];
  backplane.onMembership((event) => seen.push(event));
  return seen;
}

describe("membership", () => {
  it("a joining node appears in every member list with its metadata and load", async () => {
    const p = prefix();
    const a = await node(p, "a");
    const seenByA = events(a);
    const b = await node(p, "bb");
    await waitUntil("a to see b", () => a.members().length === 2);
    expect(seenByA).toEqual([{ type: "join", member: expect.objectContaining({ nodeId: "bb" }) }]);
    const members = b.members();
    expect(members.map((m) => m.nodeId)).toEqual(["a", "bb"]);
    expect(members[1]).toMatchObject({
      nodeId: "bb",
      meta: { role: "bb" },
      sessions: 2,
      draining: false,
    });
    expect(members[1]!.heartbeatAt).toBeGreaterThanOrEqual(members[1]!.joinedAt);
  });

  it("a change of the draining flag reaches the others as an update", async () => {
    const p = prefix();
    let draining = false;
    const a = await node(p, "a", { draining: () => draining });
    const b = await node(p, "b");
    await waitUntil("b to see a", () => b.members().length === 2);
    const seen = events(b);
    draining = true;
    await a.heartbeat();
    await waitUntil("the update", () => seen.length > 0);
    expect(seen[0]).toMatchObject({ type: "update", member: { nodeId: "a", draining: true } });
    expect(b.members().find((m) => m.nodeId === "a")?.draining).toBe(true);
  });

  it("a node that leaves is reported as leaving, at once", async () => {
    const p = prefix();
    const a = await node(p, "a", { heartbeatIntervalMs: 5_000, downAfterMs: 20_000 });
    const b = await node(p, "b", { heartbeatIntervalMs: 5_000, downAfterMs: 20_000 });
    await waitUntil("a to see b", () => a.members().length === 2);
    const seen = events(a);
    await b.leave();
    // Long heartbeat periods: only the leave notice can have told a this quickly.
    await waitUntil("the leave", () => seen.length > 0, 2_000);
    expect(seen).toEqual([{ type: "leave", member: expect.objectContaining({ nodeId: "b" }) }]);
    expect(a.members().map((m) => m.nodeId)).toEqual(["a"]);
  });

  it("a node that stops heartbeating is declared down after downAfterMs and removed", async () => {
    const p = prefix();
    const a = await node(p, "a");
    const raw = rawClient();
    try {
      // A member that heartbeated once and then died (its process was killed).
      await raw.hset(
        `${p}cluster:members`,
        "ghost",
        `1:${JSON.stringify({ meta: {}, sessions: 0, draining: false })}`,
      );
      const { 0: seconds, 1: micros } = await raw.time();
      await raw.zadd(
        `${p}cluster:heartbeats`,
        Number(seconds) * 1000 + Math.floor(Number(micros) / 1000),
        "ghost",
      );
      const seen = events(a);
      await waitUntil("the ghost to join", () => seen.some((e) => e.type === "join"));
      await waitUntil("the ghost to be declared down", () => seen.some((e) => e.type === "down"));
      expect(seen.map((e) => `${e.type}:${e.member.nodeId}`)).toEqual(["join:ghost", "down:ghost"]);
      expect(await raw.hexists(`${p}cluster:members`, "ghost")).toBe(0);
      expect(a.members().map((m) => m.nodeId)).toEqual(["a"]);
    } finally {
      await raw.quit();
    }
  });

  it("the backplane writes only its documented keys under the prefix, and leaving removes its entries", async () => {
    const p = prefix();
    const a = await node(p, "a");
    await node(p, "b");
    const raw = rawClient();
    try {
      expect(await keysUnder(raw, p)).toEqual([`${p}cluster:heartbeats`, `${p}cluster:members`]);
      await a.leave();
      expect(await raw.hkeys(`${p}cluster:members`)).toEqual(["b"]);
      expect(await raw.zrange(`${p}cluster:heartbeats`, "0", "-1")).toEqual(["b"]);
    } finally {
      await raw.quit();
    }
  });
});

describe("messages between nodes", () => {
  it("a message reaches the addressed node with its sender, and send reports whether anyone listened", async () => {
    const p = prefix();
    const a = await node(p, "a");
    const b = await node(p, "b");
    const received: Array<{ message: unknown; from: string }> = [];
    b.onMessage((message, from) => received.push({ message, from }));
    expect(await a.send("b", { hello: "b", n: 1 })).toBe(true);
    expect(await a.send("nobody", { hello: "?" })).toBe(false);
    await waitUntil("the message", () => received.length === 1);
    expect(received).toEqual([{ message: { hello: "b", n: 1 }, from: "a" }]);
  });

  it("a node that left receives nothing and is reported as not listening", async () => {
    const p = prefix();
    const a = await node(p, "a");
    const b = await node(p, "b");
    await b.leave();
    expect(await a.send("b", { late: true })).toBe(false);
  });
});

describe("the cluster pub/sub", () => {
  it("a publish reaches the topic's subscribers on every node once, in publish order, and the publisher's own at once", async () => {
    const p = prefix();
    const nodes = [await node(p, "a"), await node(p, "b"), await node(p, "c")];
    const got = new Map<string, unknown[]>(nodes.map((n) => [n.nodeId, []]));
    for (const n of nodes) {
      n.pubsub.subscribe("session:agent:main:x", (m) => got.get(n.nodeId)!.push(m));
      await n.pubsub.whenSubscribed("session:agent:main:x");
    }
    const local: unknown[] = [];
    nodes[0]!.pubsub.subscribe("session:agent:main:x", (m) => local.push(m));
    const publishing = Array.from({ length: 20 }, (_, i) =>
      nodes[0]!.pubsub.publish("session:agent:main:x", { i }),
    );
    // Delivered to the publisher's node synchronously, before publish resolves.
    expect(local).toHaveLength(20);
    await Promise.all(publishing);
    await waitUntil("every node to get all 20", () =>
      [...got.values()].every((list) => list.length === 20),
    );
    await sleep(100);
    const expected = Array.from({ length: 20 }, (_, i) => ({ i }));
    for (const [id, list] of got) expect(list, id).toEqual(expected);
  });

  it("a node without subscribers for a topic gets nothing, and unsubscribing stops delivery", async () => {
    const p = prefix();
    const a = await node(p, "a");
    const b = await node(p, "b");
    const got: unknown[] = [];
    const off = b.pubsub.subscribe("room", (m) => got.push(m));
    await b.pubsub.whenSubscribed("room");
    await a.pubsub.publish("room", "one");
    await waitUntil("the first message", () => got.length === 1);
    off();
    expect(b.pubsub.subscriberCount("room")).toBe(0);
    await a.pubsub.publish("room", "two");
    const controller = new AbortController();
    b.pubsub.subscribe("other", (m) => got.push(m), { signal: controller.signal });
    await b.pubsub.whenSubscribed("other");
    controller.abort();
    await a.pubsub.publish("other", "three");
    await sleep(150);
    expect(got).toEqual(["one"]);
  });

  it("a message that is not JSON is refused with InvalidArgumentError after reaching local subscribers", async () => {
    const p = prefix();
    const a = await node(p, "a");
    const local: unknown[] = [];
    a.pubsub.subscribe("t", (m) => local.push(m));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(a.pubsub.publish("t", cyclic)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(local).toEqual([cyclic]);
    await expect(a.pubsub.publish("", 1)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("options and lifecycle", () => {
  it("bad options are refused with InvalidArgumentError and nothing connects", () => {
    const bad: unknown[] = [
      { url: "" },
      { url: REDIS_URL, client: {} },
      { prefix: "" },
      { nodeId: "has space" },
      { heartbeatIntervalMs: 0 },
      { heartbeatIntervalMs: 1_000, downAfterMs: 1_500 },
      { client: { options: {} } },
      // Past a timer's limit (Node would fire such a timer at once, again and again).
      { heartbeatIntervalMs: 2 ** 31, downAfterMs: 2 ** 33 },
      { connectTimeoutMs: 2 ** 31 },
      { commandTimeoutMs: 2 ** 31 },
    ];
    for (const options of bad) {
      expect(
        () => createRedisBackplane(options as RedisBackplaneOptions),
        JSON.stringify(options),
      ).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
  });

  it("joining an unreachable Redis rejects with STORE_UNAVAILABLE and leaves nothing open", async () => {
    const backplane = createRedisBackplane({ url: "redis://127.0.0.1:1", connectTimeoutMs: 300 });
    await expect(
      backplane.join({ status: () => ({ sessions: 0, draining: false }) }),
    ).rejects.toMatchObject({ code: "STORE_UNAVAILABLE" });
    expect(backplane.joined).toBe(false);
    await backplane.leave();
  });

  it("an injected client is used for commands and left open; the subscriber is its own", async () => {
    const p = prefix();
    const client = rawClient();
    try {
      const a = createRedisBackplane({ client, prefix: p, nodeId: "a" });
      await a.join({ status: () => ({ sessions: 0, draining: false }) });
      expect(a.members().map((m) => m.nodeId)).toEqual(["a"]);
      await a.leave();
      expect(client.status).toBe("ready");
      expect(await client.hlen(`${p}cluster:members`)).toBe(0);
    } finally {
      await client.quit();
    }
  });
});
