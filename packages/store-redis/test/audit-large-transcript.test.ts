/**
 * Audit: a large transcript written in one call (an import, a migration, a long run saved
 * at once) and read back page by page, against the real Redis. Before the fix, a command
 * with more than about 120,000 arguments was spread into ioredis' `call(...)`, which
 * overflowed the call stack: an uncaught `RangeError` out of a microtask (it would crash a
 * production process), nothing written, and the append rejected only when its command
 * timeout ran out.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";

const prefixes: string[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function openStore(): Promise<RedisStore> {
  const prefix = uniquePrefix("audit-large");
  prefixes.push(prefix);
  // Roomy: the point is the size of the command, not how fast a shared machine takes it.
  const store = createRedisStore({ url: REDIS_URL, prefix, commandTimeoutMs: 60_000 });
  stores.push(store);
  await store.open();
  return store;
}

const COUNT = 200_000;
const entries = () => Array.from({ length: COUNT }, (_, i) => ({ i }));

describe("a transcript of 200,000 entries appended in one call", () => {
  it("is stored whole, numbered 1..n, and read back in pages", async () => {
    const store = await openStore();
    expect(await store.transcripts.append("agent:main:big", entries())).toBe(COUNT);
    expect(await store.transcripts.lastSeq("agent:main:big")).toBe(COUNT);
    const first = await store.transcripts.read("agent:main:big", { limit: 3 });
    expect(first).toEqual([
      { seq: 1, entry: { i: 0 } },
      { seq: 2, entry: { i: 1 } },
      { seq: 3, entry: { i: 2 } },
    ]);
    const last = await store.transcripts.read("agent:main:big", { limit: 2, order: "desc" });
    expect(last).toEqual([
      { seq: COUNT, entry: { i: COUNT - 1 } },
      { seq: COUNT - 1, entry: { i: COUNT - 2 } },
    ]);
    const middle = await store.transcripts.read("agent:main:big", {
      afterSeq: 150_000,
      limit: 1000,
    });
    expect(middle).toHaveLength(1000);
    expect(middle[0]).toEqual({ seq: 150_001, entry: { i: 150_000 } });
    expect(middle.at(-1)).toEqual({ seq: 151_000, entry: { i: 150_999 } });
  });

  it("through the fenced writes too, and an append after it goes on numbering", async () => {
    const store = await openStore();
    const lease = await store.locks.acquire("session:agent:main:big", {
      owner: "node-a",
      ttlMs: 60_000,
    });
    const writes = store.fenced({ lock: lease!.name, token: lease!.token });
    expect(await writes.transcripts.append("agent:main:big", entries())).toBe(COUNT);
    expect(await store.transcripts.append("agent:main:big", [{ after: true }])).toBe(COUNT + 1);
    expect(await store.transcripts.read("agent:main:big", { afterSeq: COUNT - 1 })).toEqual([
      { seq: COUNT, entry: { i: COUNT - 1 } },
      { seq: COUNT + 1, entry: { after: true } },
    ]);
  });

  it("two of them sent in the same turn (one pipeline) are both stored whole", async () => {
    const store = await openStore();
    const [a, b] = await Promise.all([
      store.transcripts.append("agent:main:a", entries()),
      store.transcripts.append("agent:main:b", entries()),
    ]);
    expect([a, b]).toEqual([COUNT, COUNT]);
    expect(await store.transcripts.read("agent:main:b", { afterSeq: COUNT - 1 })).toEqual([
      { seq: COUNT, entry: { i: COUNT - 1 } },
    ]);
  });
});
