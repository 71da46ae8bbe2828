/**
 * The backplane's scripts meeting a key under the prefix that holds the wrong type (another
 * program wrote it): they fail with `STORE_CORRUPT` and write nothing, instead of leaving
 * half a change behind (Redis does not undo what a script wrote before one of its commands
 * failed). Without the checks, a join wrote the member's record and then failed on the
 * heartbeats, and a registration wrote the name and then failed on the node's names.
 */
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createRedisBackplane, type RedisBackplane } from "../src/index.js";
import { deletePrefixes, keysUnder, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

let prefix: string;
let raw: Redis;
const backplanes: RedisBackplane[] = [];

beforeEach(() => {
  prefix = uniquePrefix("cluster-wrongtype");
  raw = rawClient();
});

afterEach(async () => {
  for (const backplane of backplanes.splice(0)) await backplane.leave();
  await raw.quit();
  await deletePrefixes([prefix]);
});

function backplane(nodeId: string): RedisBackplane {
  const created = createRedisBackplane({ url: REDIS_URL, prefix, nodeId });
  backplanes.push(created);
  return created;
}

const status = () => ({ sessions: 0, draining: false });

describe("a backplane script meeting a key of the wrong type", () => {
  it("join fails with STORE_CORRUPT and records no member when the heartbeats are of the wrong type", async () => {
    await raw.set(`${prefix}cluster:heartbeats`, "not a sorted set");
    const node = backplane("node-1");
    await expect(node.join({ status })).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(node.joined).toBe(false);
    expect(await keysUnder(raw, prefix)).toEqual([`${prefix}cluster:heartbeats`]);
  });

  it("register fails with STORE_CORRUPT and records no name when the node's name set is of the wrong type", async () => {
    const node = backplane("node-1");
    await node.join({ status });
    await raw.set(`${prefix}cluster:names-of:node-1`, "not a set");
    await expect(node.registry.register("billing", () => undefined)).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    expect(await raw.hget(`${prefix}cluster:names`, "billing")).toBeNull();
    await raw.del(`${prefix}cluster:names-of:node-1`);
    await expect(node.registry.register("billing", () => undefined)).resolves.toMatchObject({
      name: "billing",
      nodeId: "node-1",
    });
  });
});
