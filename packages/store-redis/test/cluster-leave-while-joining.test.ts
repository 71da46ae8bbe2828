/**
 * `leave()` called while `join()` is still under way wins: once both have settled the
 * backplane is not joined, heartbeats nothing, is no member in Redis, and `join()` rejects
 * with `CLUSTER_NOT_RUNNING`. Before, a `leave()` during join's first heartbeat resolved,
 * and then `join()` resolved too and left the backplane `joined`, its heartbeat timer
 * running on a closed connection.
 */
import { ClusterError, type JoinOptions } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, type RedisBackplane } from "../src/index.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

const prefixes: string[] = [];
const backplanes: RedisBackplane[] = [];
afterEach(async () => {
  for (const backplane of backplanes.splice(0)) await backplane.leave();
  await deletePrefixes(prefixes.splice(0));
});

function backplane(): { backplane: RedisBackplane; prefix: string } {
  const prefix = uniquePrefix("leave-joining");
  prefixes.push(prefix);
  const created = createRedisBackplane({
    url: REDIS_URL,
    prefix,
    nodeId: "node-1",
    heartbeatIntervalMs: 50,
    downAfterMs: 1_500,
  });
  backplanes.push(created);
  return { backplane: created, prefix };
}

async function members(prefix: string): Promise<string[]> {
  const raw = rawClient();
  try {
    return Object.keys(await raw.hgetall(`${prefix}cluster:members`));
  } finally {
    await raw.quit();
  }
}

describe("leave() while join() is under way", () => {
  it("during join's first heartbeat: join rejects, nothing stays joined or heartbeating", async () => {
    const { backplane: node, prefix } = backplane();
    let leaving: Promise<void> | undefined;
    let statusCalls = 0;
    const status: JoinOptions["status"] = () => {
      statusCalls++;
      // The first call is join's own heartbeat, about to be sent.
      if (statusCalls === 1) leaving = Promise.resolve().then(() => node.leave());
      return { sessions: 0, draining: false };
    };
    const joined = node.join({ status }).then(
      () => undefined,
      (error: unknown) => error,
    );
    const error = await joined;
    await leaving;
    expect(node.joined).toBe(false);
    expect(ClusterError.isInstance(error) && error.code).toBe("CLUSTER_NOT_RUNNING");
    expect(await members(prefix)).toEqual([]);
    // Heartbeating stopped with the leave: a heartbeat now calls nothing.
    const calls = statusCalls;
    await node.heartbeat();
    expect(statusCalls).toBe(calls);
  });

  it("at any earlier point: join rejects with CLUSTER_NOT_RUNNING and nothing is left open", async () => {
    for (const step of [0, 1, 2, 3, 4, 5, 6, 8, 10, 15]) {
      const { backplane: node, prefix } = backplane();
      const joined = node.join({ status: () => ({ sessions: 0, draining: false }) }).then(
        () => undefined,
        (error: unknown) => error,
      );
      for (let i = 0; i < step; i++) await new Promise((resolve) => setImmediate(resolve));
      await node.leave();
      const error = await joined;
      expect(node.joined).toBe(false);
      // Finished joining before leave() was called, or refused because of it.
      if (error !== undefined) {
        expect(ClusterError.isInstance(error) && error.code).toBe("CLUSTER_NOT_RUNNING");
      }
      expect(await members(prefix)).toEqual([]);
    }
  });
});
