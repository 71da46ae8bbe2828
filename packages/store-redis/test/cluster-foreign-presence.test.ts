/**
 * A value in a node's presence hash that is not a presence entry (not JSON, or JSON that is
 * not an object with a number `t` and an object `m`: written by something else, or damaged)
 * must never be pasted into a `leave` notice, where it could break the notice or rewrite its
 * fields (`1,"type":"join"` turned a leave into a join). When the node goes down, leaves, or
 * untracks the key, such a value announces nothing and is reported like a foreign name (the
 * backplane's `skippedEntries` and `diagnostics_channel`); listings leave it out. Against the
 * real Redis, with the foreign values written by a raw client.
 */
import type { ClusterPresenceEvent, MembershipEvent } from "@beamclaw/core";
import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import type { RedisBackplane } from "../src/index.js";
import { foreignEntries } from "./support/foreign-entries.js";
import { waitUntil } from "./support/settle.js";

const { setup, backplane, listenSkipped, cleanUp } = foreignEntries("foreign-presence");
afterEach(cleanUp);

/**
 * Values that are not a presence entry. The first two, pasted into a notice, rewrite it: the
 * `leave` becomes a `join`, or names another key.
 */
const FOREIGN = [
  '1,"type":"join"',
  '{"t":1,"m":{}},"key":"hijacked"',
  "not json at all",
  "{broken",
  "5",
  "null",
  "[1,2]",
  '"text"',
  '{"t":"soon","m":{}}',
  '{"m":{}}',
  '{"t":1,"m":7}',
  "",
];

const NOT_A_PRESENCE_ENTRY =
  "not a presence entry (not JSON, or not an object with a number t and an object m)";

async function joined(prefix: string, nodeId: string): Promise<RedisBackplane> {
  const made = backplane(prefix, nodeId);
  await made.join({ status: () => ({ sessions: 0, draining: false }) });
  return made;
}

/** The presence events `node` receives, as `type nodeId key`. */
function recordPresence(node: RedisBackplane): {
  seen: string[];
  events: ClusterPresenceEvent[];
} {
  const seen: string[] = [];
  const events: ClusterPresenceEvent[] = [];
  node.presence.onChange((event) => {
    events.push(event);
    seen.push(`${event.type} ${event.entry.nodeId} ${event.entry.key}`);
  });
  return { seen, events };
}

/**
 * Tracks a sentinel key on `node` and waits until `seen` has its `join` (then untracks it and
 * waits for its `leave`), taking both out of `seen`: notices are delivered in the order they
 * were published, so every notice published before the sentinel's has arrived.
 */
async function drained(node: RedisBackplane, seen: string[]): Promise<void> {
  const key = `sentinel-${seen.length}`;
  await node.presence.track(key);
  const expected = `join ${node.nodeId} ${key}`;
  await waitUntil(`the sentinel ${key}`, () => seen.includes(expected));
  seen.splice(seen.indexOf(expected), 1);
  await node.presence.untrack(key);
  const left = `leave ${node.nodeId} ${key}`;
  await waitUntil(`the sentinel ${key} to leave`, () => seen.includes(left));
  seen.splice(seen.indexOf(left), 1);
}

/** Writes `values` (field -> value) into node `nodeId`'s presence hash. */
async function plantPresence(
  redis: Redis,
  prefix: string,
  nodeId: string,
  values: Record<string, string>,
): Promise<void> {
  for (const [field, value] of Object.entries(values)) {
    await redis.hset(`${prefix}cluster:presence:${nodeId}`, field, value);
  }
}

function foreignFields(): Record<string, string> {
  const bad: Record<string, string> = {};
  for (const [i, value] of FOREIGN.entries()) bad[`bad-${i}`] = value;
  return bad;
}

describe("a foreign value in a presence hash", () => {
  it("a node that goes down announces a leave for each of its entries and none for a foreign value, which is reported", async () => {
    const { prefix, redis } = setup();
    const live = await joined(prefix, "live-1");
    const skipped = listenSkipped();
    const { seen, events } = recordPresence(live);
    const membership: MembershipEvent[] = [];
    live.onMembership((event) => membership.push(event));
    // A node live for another minute (a heartbeat in the future), with a good entry and
    // foreign values in its presence hash.
    const [seconds] = await redis.time();
    const now = Number(seconds) * 1000;
    await redis.hset(`${prefix}cluster:members`, "doomed", `${now}:{"meta":{}}`);
    await redis.zadd(`${prefix}cluster:heartbeats`, now + 60_000, "doomed");
    await plantPresence(redis, prefix, "doomed", {
      ...foreignFields(),
      good: JSON.stringify({ t: 1234, m: { who: "alice" } }),
    });
    await waitUntil("live-1 to see the node", () => live.members().length === 2);
    // It stops heartbeating: its last heartbeat is now long past.
    await redis.zadd(`${prefix}cluster:heartbeats`, "1", "doomed");

    await waitUntil("the node reported down", () => membership.some((e) => e.type === "down"));
    await drained(live, seen);
    expect(seen).toEqual(["leave doomed good"]);
    expect(events[0]).toEqual({
      type: "leave",
      entry: { key: "good", nodeId: "doomed", meta: { who: "alice" }, updatedAt: 1234 },
    });
    // The node's presence is gone, foreign values with it; each was reported.
    expect(await redis.exists(`${prefix}cluster:presence:doomed`)).toBe(0);
    expect(live.skippedEntries).toBe(FOREIGN.length);
    expect(skipped.map((entry) => entry.field).sort()).toEqual(Object.keys(foreignFields()).sort());
    for (const entry of skipped) {
      expect(entry).toEqual({
        nodeId: "live-1",
        key: `${prefix}cluster:presence:doomed`,
        field: entry.field,
        deadNodeId: "doomed",
        reason: NOT_A_PRESENCE_ENTRY,
      });
    }
    // Heartbeats go on.
    const before = Number(await redis.zscore(`${prefix}cluster:heartbeats`, "live-1"));
    await waitUntil(
      "another heartbeat of live-1",
      async () => Number(await redis.zscore(`${prefix}cluster:heartbeats`, "live-1")) > before,
    );
  });

  it("a node that leaves announces its own entries and skips a foreign value in its hash", async () => {
    const { prefix, redis } = setup();
    const observer = await joined(prefix, "observer");
    const leaving = await joined(prefix, "leaving");
    const skipped = listenSkipped();
    const { seen } = recordPresence(observer);
    await leaving.presence.track("mine", { n: 1 });
    await waitUntil("the join of mine", () => seen.includes("join leaving mine"));
    seen.length = 0;
    await plantPresence(redis, prefix, "leaving", { intruder: '1,"type":"join"' });

    await leaving.leave();
    await drained(observer, seen);
    expect(seen).toEqual(["leave leaving mine"]);
    expect(leaving.skippedEntries).toBe(1);
    expect(skipped).toEqual([
      {
        nodeId: "leaving",
        key: `${prefix}cluster:presence:leaving`,
        field: "intruder",
        deadNodeId: "leaving",
        reason: NOT_A_PRESENCE_ENTRY,
      },
    ]);
    expect(await redis.exists(`${prefix}cluster:presence:leaving`)).toBe(0);
  });

  it("untracking a key whose value something else overwrote removes it without a leave, reported", async () => {
    const { prefix, redis } = setup();
    const observer = await joined(prefix, "observer");
    const node = await joined(prefix, "node-1");
    const skipped = listenSkipped();
    const { seen } = recordPresence(observer);
    await node.presence.track("k", { n: 1 });
    await waitUntil("the join of k", () => seen.includes("join node-1 k"));
    seen.length = 0;
    await redis.hset(`${prefix}cluster:presence:node-1`, "k", '{"t":1,"m":{}},"key":"hijacked"');

    expect(await node.presence.untrack("k")).toBe(true);
    await drained(observer, seen);
    expect(seen).toEqual([]);
    expect(await redis.hexists(`${prefix}cluster:presence:node-1`, "k")).toBe(0);
    expect(node.skippedEntries).toBe(1);
    expect(skipped).toEqual([
      {
        nodeId: "node-1",
        key: `${prefix}cluster:presence:node-1`,
        field: "k",
        deadNodeId: "node-1",
        reason: NOT_A_PRESENCE_ENTRY,
      },
    ]);
  });

  it("a listing leaves foreign values out and keeps the entries", async () => {
    const { prefix, redis } = setup();
    const node = await joined(prefix, "node-1");
    await node.presence.track("mine", { n: 1 });
    await plantPresence(redis, prefix, "node-1", foreignFields());
    const listed = await node.presence.list();
    expect(listed).toEqual([
      { key: "mine", nodeId: "node-1", meta: { n: 1 }, updatedAt: expect.any(Number) },
    ]);
    expect(listed[0]!.updatedAt).toBeGreaterThan(0);
  });
});
