/**
 * Audit: what a node's cluster state looks like after one of its connections to Redis is
 * cut for a moment (`CLIENT KILL`, as a Redis failover, a proxy restart or a network blip
 * does) and comes back, shorter than `downAfterMs`, so the node is never declared down and
 * nothing cleans up after it. Against the real Redis; every node is a backplane in this
 * process with its own, reconnecting, connections (each named, to find it in CLIENT LIST).
 */
import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, type RedisBackplane } from "../src/index.js";
import {
  deletePrefixes,
  endClient,
  rawClient,
  reconnectingClient,
  uniquePrefix,
} from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const backplanes: RedisBackplane[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const backplane of backplanes.splice(0)) await backplane.leave();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await deletePrefixes(prefixes.splice(0));
});

interface TestNode {
  backplane: RedisBackplane;
  client: Redis;
  name: string;
}

/**
 * Nodes whose command connection reconnects (after 50 ms) when it is cut; node i's
 * connections (its subscriber is a duplicate of its client) are named `<name>-<i>`. With
 * `beats: "manual"` they heartbeat only when the test calls `heartbeat()`.
 */
async function nodes(count: number, beats: "timer" | "manual" = "timer"): Promise<TestNode[]> {
  const prefix = uniquePrefix("audit-conn-loss");
  prefixes.push(prefix);
  const out: TestNode[] = [];
  for (let i = 0; i < count; i++) {
    const name = `audit-conn-loss-${prefix.slice(-13, -1)}-${i + 1}`;
    const client = reconnectingClient({ connectionName: name });
    cleanups.push(() => endClient(client));
    const backplane = createRedisBackplane({
      client,
      prefix,
      nodeId: `node-${i + 1}`,
      heartbeatIntervalMs: beats === "timer" ? 100 : 60_000,
      // Far longer than the cut: the node is never declared down, so nothing reaps it.
      downAfterMs: beats === "timer" ? 5_000 : 120_000,
    });
    backplanes.push(backplane);
    await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
    out.push({ backplane, client, name });
  }
  return out;
}

/** Kills the node's command connection on the server and waits until the client sees it. */
async function cutConnection(client: Redis): Promise<void> {
  const id = await client.client("ID");
  const admin = rawClient();
  try {
    await admin.client("KILL", "ID", String(id));
  } finally {
    await admin.quit();
  }
  await waitUntil("the client to notice the cut", () => client.status !== "ready");
}

/** Kills the subscriber connection (the one in pub/sub mode) of the node named `name`. */
async function cutSubscriber(name: string): Promise<void> {
  const admin = rawClient();
  try {
    const list = String(await admin.client("LIST"));
    const ids = list
      .split("\n")
      .filter((line) => line.includes(` name=${name} `) && /\bflags=\S*P/.test(line))
      .map((line) => /\bid=(\d+)/.exec(line)?.[1] ?? "");
    expect(ids).toHaveLength(1);
    await admin.client("KILL", "ID", ids[0]!);
  } finally {
    await admin.quit();
  }
}

describe("a node's command connection cut for a moment", () => {
  it("a name whose process exits during the cut is still unregistered once Redis is back", async () => {
    const [a, b] = await nodes(2);
    let exit!: () => void;
    const process = {
      monitor(onExit: () => void) {
        exit = onExit;
        return () => undefined;
      },
    };
    await a!.backplane.registry.register("worker", () => undefined, { process });
    expect((await b!.backplane.registry.lookup("worker"))?.nodeId).toBe("node-1");

    await cutConnection(a!.client);
    // The process exits while Redis cannot be reached: its unregister fails.
    exit();
    expect(a!.backplane.registry.localNames()).toEqual([]);
    await waitUntil("the connection to come back", () => a!.client.status === "ready");

    // Before the fix the name stayed registered to node-1 for as long as node-1 lived: every
    // lookup found it, every message to it was lost, and no other node could take it.
    await waitUntil(
      "the name to be unregistered",
      async () => (await b!.backplane.registry.lookup("worker")) === undefined,
    );
    await b!.backplane.registry.register("worker", () => undefined);
    expect((await a!.backplane.registry.lookup("worker"))?.nodeId).toBe("node-2");
  });

  it("a failed unregister is not retried over a name registered here again since", async () => {
    const [a, b] = await nodes(2, "manual");
    await a!.backplane.registry.register("leader", () => undefined);
    await cutConnection(a!.client);
    await expect(a!.backplane.registry.unregister("leader")).rejects.toMatchObject({
      code: "STORE_UNAVAILABLE",
    });
    await waitUntil("the connection to come back", () => a!.client.status === "ready");
    await a!.backplane.registry.register("leader", () => undefined, { meta: { again: true } });
    // Heartbeats (which retry failed removals) leave it registered, with the new metadata.
    for (let i = 0; i < 5; i++) await a!.backplane.heartbeat();
    expect(await b!.backplane.registry.lookup("leader")).toMatchObject({
      nodeId: "node-1",
      meta: { again: true },
    });
    expect(a!.backplane.registry.localNames()).toEqual(["leader"]);
  });

  it("a presence entry untracked during the cut goes from every node's listing, with a leave event", async () => {
    const [a, b] = await nodes(2);
    await a!.backplane.presence.track("client:1", { user: "ada" });
    await a!.backplane.presence.track("client:2", { user: "bob" });
    const events: string[] = [];
    b!.backplane.presence.onChange((event) => events.push(`${event.type} ${event.entry.key}`));

    await cutConnection(a!.client);
    await expect(a!.backplane.presence.untrack("client:1")).rejects.toMatchObject({
      code: "STORE_UNAVAILABLE",
    });
    await waitUntil("the connection to come back", () => a!.client.status === "ready");

    // Before the fix the entry stayed listed for as long as node-1 lived.
    await waitUntil("the entry to go", async () =>
      (await b!.backplane.presence.list()).every((entry) => entry.key !== "client:1"),
    );
    expect((await b!.backplane.presence.list()).map((entry) => entry.key)).toEqual(["client:2"]);
    await waitUntil("the leave event", () => events.includes("leave client:1"));
  });

  it("an entry tracked again after a failed untrack stays", async () => {
    const [a, b] = await nodes(2, "manual");
    await a!.backplane.presence.track("client:1", { v: 1 });
    await cutConnection(a!.client);
    await expect(a!.backplane.presence.untrack("client:1")).rejects.toMatchObject({
      code: "STORE_UNAVAILABLE",
    });
    await waitUntil("the connection to come back", () => a!.client.status === "ready");
    await a!.backplane.presence.track("client:1", { v: 2 });
    for (let i = 0; i < 5; i++) await a!.backplane.heartbeat();
    expect(await b!.backplane.presence.list()).toMatchObject([
      { key: "client:1", nodeId: "node-1", meta: { v: 2 } },
    ]);
  });
});

/**
 * A node following very many topics (a gateway following well over 100,000 sessions' runs
 * at once). On every reconnect the backplane subscribes all its channels again; before the
 * fix it did so with one `subscribe(...channels)` call, which past about 120,000 channels
 * overflowed the call stack. The error was swallowed as "disconnected meanwhile", so the
 * node silently stopped hearing every topic, and its own node channel and membership
 * notices as well.
 */
describe("the subscriber connection of a node following 130,000 topics cut for a moment", () => {
  const TOPICS = 130_000;

  it("hears every topic, and its own node channel, again after the reconnect", async () => {
    const [a, b] = await nodes(2);
    const heard: string[] = [];
    for (let i = 0; i < TOPICS; i++) {
      const topic = `session:agent:main:s${i}`;
      b!.backplane.pubsub.subscribe(topic, () => heard.push(topic));
    }
    await b!.backplane.pubsub.whenSubscribed(`session:agent:main:s${TOPICS - 1}`);

    await cutSubscriber(b!.name);
    const messages: unknown[] = [];
    b!.backplane.onMessage((message) => messages.push(message));
    await waitUntil(
      "node-2 to hear its topics again",
      async () => {
        await a!.backplane.pubsub.publish(`session:agent:main:s${TOPICS - 1}`, { n: 1 });
        return heard.length > 0;
      },
      30_000,
    );
    await a!.backplane.pubsub.publish("session:agent:main:s0", { n: 2 });
    await waitUntil("the first topic too", () => heard.includes("session:agent:main:s0"));
    expect(await a!.backplane.send("node-2", { hello: true })).toBe(true);
    await waitUntil("the node message", () => messages.length === 1);
  }, 90_000);
});
