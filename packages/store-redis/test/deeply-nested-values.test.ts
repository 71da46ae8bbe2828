/**
 * A value nested deeper than the JavaScript call stack allows is bad input like any other
 * value JSON cannot carry: it is refused with `InvalidArgumentError` (not a bare
 * `RangeError` from the stack overflowing) and nothing is written.
 */
import { InvalidArgumentError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, keysUnder, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

const DEPTH = 200_000;

/** `[[[...[1]...]]]`, `depth` arrays deep. */
function nested(depth: number): never {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value as never;
}

const prefixes: string[] = [];
const stores: RedisStore[] = [];

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function openStore(): Promise<{ store: RedisStore; prefix: string }> {
  const prefix = uniquePrefix("deep");
  prefixes.push(prefix);
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  return { store, prefix };
}

async function rejection(operation: () => Promise<unknown>): Promise<unknown> {
  return operation().then(
    () => new Error("expected a rejection"),
    (error: unknown) => error,
  );
}

describe("a value nested deeper than the call stack", () => {
  it("is refused with InvalidArgumentError by every write, and nothing is written", async () => {
    const { store, prefix } = await openStore();
    const deep = nested(DEPTH);
    const writes: Array<[string, () => Promise<unknown>]> = [
      ["kv.set", () => store.kv.set("k", deep)],
      [
        "sessions.put",
        () => store.sessions.put({ key: "s", agentId: "a", createdAt: 1, updatedAt: 1, deep }),
      ],
      ["transcripts.append", () => store.transcripts.append("s", [{ n: 1 }, { deep }])],
      [
        "queue.enqueue",
        () => store.queue.enqueue({ idempotencyKey: "i", sessionKey: "s", payload: { deep } }),
      ],
      ["cron.putJob", () => store.cron.putJob({ id: "j", agentId: "a", deep })],
      ["devices.put", () => store.devices.put({ deviceId: "d", deep })],
    ];
    for (const [what, write] of writes) {
      const error = await rejection(write);
      expect(error, what).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).code, what).toBe("INVALID_ARGUMENT");
    }
    const client = rawClient();
    try {
      expect(await keysUnder(client, prefix)).toEqual([]);
    } finally {
      await client.quit();
    }
    // The store carries on as usual afterwards.
    expect(await store.kv.set("k", nested(50))).toBe(true);
    expect(await store.kv.get("k")).toEqual(nested(50));
  });
});
