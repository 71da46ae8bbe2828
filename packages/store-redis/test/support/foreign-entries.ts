/**
 * For the tests of foreign values in the backplane's Redis data: unique prefixes and raw
 * clients to write the values, backplanes to meet them, and a listener of the entries they
 * skip, all undone by `cleanUp` (call it from `afterEach`). Not a test file.
 */
import diagnosticsChannel from "node:diagnostics_channel";
import type { Redis } from "ioredis";
import {
  createRedisBackplane,
  REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL,
  type RedisBackplane,
  type RedisBackplaneSkippedEntry,
} from "../../src/index.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./redis.js";

export interface ForeignEntries {
  /** A fresh prefix and a raw client on the test Redis. */
  setup(): { prefix: string; redis: Redis };
  /** A backplane under `prefix` (50 ms heartbeats, down after 1 s), not joined yet. */
  backplane(prefix: string, nodeId: string): RedisBackplane;
  /** The entries the backplanes skip from now on (`REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL`). */
  listenSkipped(): RedisBackplaneSkippedEntry[];
  /** Stops listening, leaves every backplane, quits the clients, deletes the prefixes' keys. */
  cleanUp(): Promise<void>;
}

export function foreignEntries(tag: string): ForeignEntries {
  const prefixes: string[] = [];
  const backplanes: RedisBackplane[] = [];
  const clients: Redis[] = [];
  const unsubscribes: Array<() => void> = [];
  return {
    setup() {
      const prefix = uniquePrefix(tag);
      prefixes.push(prefix);
      const redis = rawClient();
      clients.push(redis);
      return { prefix, redis };
    },
    backplane(prefix, nodeId) {
      const made = createRedisBackplane({
        url: REDIS_URL,
        prefix,
        nodeId,
        heartbeatIntervalMs: 50,
        downAfterMs: 1_000,
      });
      backplanes.push(made);
      return made;
    },
    listenSkipped() {
      const seen: RedisBackplaneSkippedEntry[] = [];
      const listener = (message: unknown) => seen.push(message as RedisBackplaneSkippedEntry);
      diagnosticsChannel.subscribe(REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL, listener);
      unsubscribes.push(() =>
        diagnosticsChannel.unsubscribe(REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL, listener),
      );
      return seen;
    },
    async cleanUp() {
      for (const unsubscribe of unsubscribes.splice(0)) unsubscribe();
      for (const backplane of backplanes.splice(0)) await backplane.leave();
      for (const client of clients.splice(0)) await client.quit();
      await deletePrefixes(prefixes.splice(0));
    },
  };
}
