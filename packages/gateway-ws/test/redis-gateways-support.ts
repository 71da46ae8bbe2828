/**
 * For tests of several gateways on one Redis store (real Redis at 127.0.0.1:6379 unless
 * `BEAMCLAW_REDIS_URL` says otherwise): the URL, the gateways a test started and the key
 * prefixes it used, all stopped and deleted after each test.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { RedisStore } from "@beamclaw/store-redis";
import { afterEach } from "vitest";
import { closeClients, type TestClient } from "./support.js";

export const REDIS_URL = process.env.BEAMCLAW_REDIS_URL ?? "redis://127.0.0.1:6379";
// ioredis is store-redis' dependency, not this package's: resolved from there.
const requireFromStore = createRequire(
  fileURLToPath(new URL("../node_modules/@beamclaw/store-redis/package.json", import.meta.url)),
);
/** What the clean-up uses of an ioredis client. */
interface RedisKeys {
  scan(cursor: string, ...args: Array<string | number>): Promise<[string, string[]]>;
  del(...keys: string[]): Promise<number>;
  quit(): Promise<unknown>;
}
const { Redis: RedisClient } = requireFromStore("ioredis") as {
  Redis: new (url: string) => RedisKeys;
};

/** A gateway of a test, on its own store connection. */
export interface Gateway {
  store: RedisStore;
  url: string;
  stop(): Promise<void>;
}

/**
 * Registers the clean-up after each test of the calling file: its clients closed, the
 * gateways in `started` stopped (last first), the keys under the prefixes in `prefixes`
 * deleted.
 */
export function useRedisGateways(): { started: Gateway[]; prefixes: string[] } {
  const started: Gateway[] = [];
  const prefixes: string[] = [];
  afterEach(async () => {
    await closeClients();
    for (const gateway of started.splice(0).reverse()) await gateway.stop();
    const client = new RedisClient(REDIS_URL);
    try {
      for (const prefix of prefixes.splice(0)) {
        let cursor = "0";
        do {
          const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
          cursor = next;
          if (keys.length > 0) await client.del(...keys);
        } while (cursor !== "0");
      }
    } finally {
      await client.quit();
    }
  });
  return { started, prefixes };
}

/** How `client` closed, or `"open"` if it is still open after `ms` (an upper bound). */
export async function closeWithin(client: TestClient, ms = 10_000) {
  let timer: NodeJS.Timeout | undefined;
  const open = new Promise<"open">((resolve) => {
    timer = setTimeout(() => resolve("open"), ms);
  });
  try {
    return await Promise.race([client.closed, open]);
  } finally {
    clearTimeout(timer);
  }
}
