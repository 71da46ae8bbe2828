/**
 * A value in the backplane's names hash that is not a registration (not JSON, or JSON that is
 * not an object with a node id: written by something else, or damaged) must not break the
 * cluster: the heartbeat that reaps dead nodes skips it (counting it, and telling
 * `diagnostics_channel` subscribers) and still removes everything else the dead nodes left,
 * and registry reads leave it out. The entry itself is left as it is. Against the real Redis,
 * with the foreign values written by a raw client.
 */
import { AlreadyRegisteredError, type MembershipEvent } from "@beamclaw/core";
import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { foreignEntries } from "./support/foreign-entries.js";
import { waitUntil } from "./support/settle.js";

const { setup, backplane, listenSkipped, cleanUp } = foreignEntries("foreign-names");
afterEach(cleanUp);

/** Values that are not a registration: not JSON, or JSON without a string `n`. */
const FOREIGN = ["not json at all", "{broken", "5", "null", "[1,2]", '"text"', '{"n":7}', ""];

function registration(nodeId: string, name: string): string {
  return JSON.stringify({ t: 1, n: nodeId, l: name, m: {} });
}

/**
 * Writes what a node that died left behind: its member record and a heartbeat `ageMs` old,
 * its names (each `name -> value` into the names hash, and into its names-of set).
 */
async function plantNode(
  redis: Redis,
  prefix: string,
  nodeId: string,
  ageMs: number,
  names: Record<string, string>,
): Promise<void> {
  const [seconds] = await redis.time();
  const now = Number(seconds) * 1000;
  await redis.hset(`${prefix}cluster:members`, nodeId, `${now - ageMs}:{"meta":{}}`);
  await redis.zadd(`${prefix}cluster:heartbeats`, now - ageMs, nodeId);
  for (const [name, value] of Object.entries(names)) {
    await redis.hset(`${prefix}cluster:names`, name, value);
    await redis.sadd(`${prefix}cluster:names-of:${nodeId}`, name);
  }
}

describe("a foreign value in the names hash", () => {
  it("does not stop a node joining: the dead nodes are reaped, their good names removed, the foreign entries skipped and kept", async () => {
    const { prefix, redis } = setup();
    const skipped = listenSkipped();
    const bad: Record<string, string> = {};
    for (const [i, value] of FOREIGN.entries()) bad[`bad-${i}`] = value;
    await plantNode(redis, prefix, "dead-1", 60_000, {
      ...bad,
      "good-1a": registration("dead-1", "good-1a"),
      "good-1b": registration("dead-1", "good-1b"),
    });
    await plantNode(redis, prefix, "dead-2", 60_000, {
      "good-2": registration("dead-2", "good-2"),
    });

    const live = backplane(prefix, "live-1");
    await live.join({ status: () => ({ sessions: 0, draining: false }) });

    expect(live.members().map((m) => m.nodeId)).toEqual(["live-1"]);
    expect(await redis.hkeys(`${prefix}cluster:members`)).toEqual(["live-1"]);
    expect(await redis.zrange(`${prefix}cluster:heartbeats`, "0", "-1")).toEqual(["live-1"]);
    expect(await redis.exists(`${prefix}cluster:names-of:dead-1`)).toBe(0);
    expect(await redis.exists(`${prefix}cluster:names-of:dead-2`)).toBe(0);
    // The good names went with their nodes; the foreign entries are left exactly as they were.
    expect(await redis.hgetall(`${prefix}cluster:names`)).toEqual(bad);
    expect(live.skippedEntries).toBe(FOREIGN.length);
    expect(skipped.map((entry) => entry.field).sort()).toEqual(Object.keys(bad).sort());
    for (const entry of skipped) {
      expect(entry).toMatchObject({
        nodeId: "live-1",
        key: `${prefix}cluster:names`,
        deadNodeId: "dead-1",
      });
    }
  });

  it("a node that dies while the others watch is reported down and cleaned up, its foreign name skipped", async () => {
    const { prefix, redis } = setup();
    const live = backplane(prefix, "live-1");
    await live.join({ status: () => ({ sessions: 0, draining: false }) });
    const events: MembershipEvent[] = [];
    live.onMembership((event) => events.push(event));
    // Two nodes live for another minute (a heartbeat in the future), seen joining by live-1.
    await plantNode(redis, prefix, "doomed-1", -60_000, {
      "doomed-bad": "\u0000 garbage",
      "doomed-1-name": registration("doomed-1", "doomed-1-name"),
    });
    await plantNode(redis, prefix, "doomed-2", -60_000, {
      "doomed-2-name": registration("doomed-2", "doomed-2-name"),
    });
    await waitUntil("live-1 to see the two nodes", () => live.members().length === 3);
    // They stop heartbeating: their last heartbeat is now long past.
    await redis.zadd(`${prefix}cluster:heartbeats`, "1", "doomed-1", "1", "doomed-2");

    await waitUntil(
      "both nodes reported down",
      () => events.filter((e) => e.type === "down").length === 2,
    );
    expect(
      events
        .filter((e) => e.type === "down")
        .map((e) => e.member.nodeId)
        .sort(),
    ).toEqual(["doomed-1", "doomed-2"]);
    expect(await redis.hgetall(`${prefix}cluster:names`)).toEqual({
      "doomed-bad": "\u0000 garbage",
    });
    expect(await redis.exists(`${prefix}cluster:names-of:doomed-1`)).toBe(0);
    expect(await redis.exists(`${prefix}cluster:names-of:doomed-2`)).toBe(0);
    expect(live.skippedEntries).toBe(1);
    // Heartbeats go on.
    const before = Number(await redis.zscore(`${prefix}cluster:heartbeats`, "live-1"));
    await waitUntil(
      "another heartbeat of live-1",
      async () => Number(await redis.zscore(`${prefix}cluster:heartbeats`, "live-1")) > before,
    );
  });

  it("registry lookups and listings leave a foreign entry out instead of failing", async () => {
    const { prefix, redis } = setup();
    const live = backplane(prefix, "live-1");
    await live.join({ status: () => ({ sessions: 0, draining: false }) });
    await live.registry.register("mine", () => undefined);
    for (const [i, value] of FOREIGN.entries()) {
      await redis.hset(`${prefix}cluster:names`, `bad-${i}`, value);
    }
    expect((await live.registry.list()).map((r) => r.name)).toEqual(["mine"]);
    expect(await live.registry.lookup("bad-0")).toBeUndefined();
    expect(await live.registry.lookup("mine")).toMatchObject({ nodeId: "live-1" });
    // Unregistering a name whose entry is foreign leaves the entry alone.
    expect(await live.registry.unregister("bad-1")).toBe(false);
    expect(await redis.hget(`${prefix}cluster:names`, "bad-1")).toBe("{broken");
    // Registering it is refused (typed), and the entry is not overwritten.
    const refused = await live.registry.register("bad-0", () => undefined).catch((e) => e);
    expect(AlreadyRegisteredError.isInstance(refused)).toBe(true);
    expect(await redis.hget(`${prefix}cluster:names`, "bad-0")).toBe("not json at all");
  });
});
