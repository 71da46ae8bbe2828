/**
 * The Redis the tests run against (127.0.0.1:6379 unless `BEAMCLAW_REDIS_URL` says
 * otherwise), unique key prefixes per test, and removing a prefix's keys afterwards.
 * Not a test file: vitest only collects `*.test.ts`.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { createRedisStore, type RedisStore } from "../../src/index.js";

/** The shared Redis server; `.ci/run` makes sure one answers here. */
export const REDIS_URL = process.env.BEAMCLAW_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A key prefix no other test (or test run) uses. */
export function uniquePrefix(tag = "t"): string {
  return `beamclaw-test:${tag}-${randomUUID().slice(0, 12)}:`;
}

/** The key prefix the conformance suite's namespace maps to. */
export function prefixOf(namespace: string): string {
  return `beamclaw-test:${namespace}:`;
}

/** A plain ioredis client to look at Redis directly; call `quit()` when done. */
export function rawClient(url = REDIS_URL): Redis {
  return new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
}

/** Every key under `prefix`, sorted (SCAN, so it never blocks the server). */
export async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const pattern = `${prefix.replace(/[\\*?[\]]/g, "\\$&")}*`;
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    found.push(...batch);
  } while (cursor !== "0");
  return [...new Set(found)].sort();
}

/** Deletes every key under each prefix (SCAN + DEL). */
export async function deletePrefixes(prefixes: readonly string[], url = REDIS_URL): Promise<void> {
  if (prefixes.length === 0) return;
  const client = rawClient(url);
  try {
    for (const prefix of prefixes) {
      const keys = await keysUnder(client, prefix);
      for (let i = 0; i < keys.length; i += 500) await client.del(...keys.slice(i, i + 500));
    }
  } finally {
    await client.quit();
  }
}

/**
 * A client for a backplane's command connection, fail-fast like the store's own (no offline
 * queue, no retried commands), that reconnects 50 ms after it is cut. End it with
 * {@link endClient}.
 */
export function reconnectingClient(options: { connectionName?: string } = {}): Redis {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => 50,
    ...options,
  });
  client.on("error", () => undefined);
  return client;
}

/** Quits `client` if it is connected, otherwise disconnects it (whatever state it is in). */
export async function endClient(client: Redis): Promise<void> {
  if (client.status === "ready") await client.quit();
  else if (client.status !== "end") client.disconnect();
}

/**
 * Two stores on one fresh prefix (`tag` in its name), open, through two connections: one
 * store shared by two processes. Closing them, then deleting the prefix's keys, go on
 * `cleanups` (a test's cleanups, run last first after it).
 */
export async function openSharedStores(
  tag: string,
  cleanups: Array<() => Promise<void>>,
): Promise<[RedisStore, RedisStore]> {
  const prefix = uniquePrefix(tag);
  cleanups.push(() => deletePrefixes([prefix]));
  const stores: [RedisStore, RedisStore] = [
    createRedisStore({ url: REDIS_URL, prefix }),
    createRedisStore({ url: REDIS_URL, prefix }),
  ];
  for (const store of stores) {
    cleanups.push(() => store.close());
    await store.open();
  }
  return stores;
}

/** A store opened on a fresh prefix, and a raw client to look at its keys. */
export interface OpenedStore {
  store: RedisStore;
  prefix: string;
  raw: Redis;
}

/**
 * Opens stores on fresh prefixes (`tag` in their names), each with a raw client; `cleanup`
 * (for `afterEach`) closes them all and deletes their keys.
 */
export function storeOpener(tag: string): {
  open: () => Promise<OpenedStore>;
  cleanup: () => Promise<void>;
} {
  const opened: OpenedStore[] = [];
  return {
    async open() {
      const prefix = uniquePrefix(tag);
      const store = createRedisStore({ url: REDIS_URL, prefix });
      const entry = { store, prefix, raw: rawClient() };
      opened.push(entry);
      await store.open();
      return entry;
    },
    async cleanup() {
      const all = opened.splice(0);
      for (const { store } of all) await store.close();
      for (const { raw } of all) await raw.quit();
      await deletePrefixes(all.map(({ prefix }) => prefix));
    },
  };
}
