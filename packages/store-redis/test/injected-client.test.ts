/**
 * A store given its own ioredis client (`{ client }`): it uses it as it is, never quits it,
 * connects it if it was created with `lazyConnect`, and refuses a client it cannot use safely.
 */
import { InvalidArgumentError } from "@beamclaw/core";
import { Redis, type RedisOptions } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";

const prefixes: string[] = [];
const clients: Redis[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) if (client.status !== "end") await client.quit();
  await deletePrefixes(prefixes.splice(0));
});

function client(options: RedisOptions = {}): Redis {
  const c = new Redis(REDIS_URL, options);
  clients.push(c);
  return c;
}

function prefix(): string {
  const p = uniquePrefix("injected");
  prefixes.push(p);
  return p;
}

describe("a store with an injected client", () => {
  it.each([
    ["RESP3 (ioredis' default)", {}],
    ["RESP2", { protocol: 2 as const }],
  ])("works over a %s connection and leaves the client open on close()", async (_, options) => {
    const c = client(options);
    const store = createRedisStore({ client: c, prefix: prefix() });
    await store.open();
    await store.sessions.put({ key: "s", agentId: "a", createdAt: 1, updatedAt: 2.5 });
    expect((await store.sessions.list()).items.map((r) => r.updatedAt)).toEqual([2.5]);
    expect(await store.transcripts.append("s", [{ n: 1 }, { n: 2 }])).toBe(2);
    expect(await store.transcripts.read("s", { order: "desc" })).toEqual([
      { seq: 2, entry: { n: 2 } },
      { seq: 1, entry: { n: 1 } },
    ]);
    const lease = (await store.locks.acquire("l", { owner: "o", ttlMs: 10_000 }))!;
    expect(await store.locks.holder("l")).toEqual(lease);
    expect(await store.kv.set("k", { v: 1 }, { ttlMs: 10_000 })).toBe(true);
    expect(await store.kv.keys("")).toEqual(["k"]);
    const { message } = await store.queue.enqueue({
      idempotencyKey: "i",
      sessionKey: "s",
      payload: {},
    });
    expect((await store.queue.replay()).map((m) => [m.id, m.deliveries])).toEqual([
      [message.id, 1],
    ]);
    await store.close();
    expect(c.status).toBe("ready");
    expect(await c.ping()).toBe("PONG");
    await expect(store.kv.get("k")).rejects.toMatchObject({ code: "STORE_CLOSED" });
  });

  it("connects a client created with lazyConnect on open()", async () => {
    const c = client({ lazyConnect: true });
    expect(c.status).toBe("wait");
    const store = createRedisStore({ client: c, prefix: prefix() });
    await store.open();
    expect(c.status).toBe("ready");
    expect(await store.kv.set("k", 1)).toBe(true);
    await store.close();
  });

  it("refuses a client that has been quit with STORE_UNAVAILABLE on open()", async () => {
    const c = client();
    await c.quit();
    const store = createRedisStore({ client: c, prefix: prefix() });
    await expect(store.open()).rejects.toMatchObject({ code: "STORE_UNAVAILABLE" });
  });

  it("refuses a client with a keyPrefix, a non-client, and url together with client", () => {
    const prefixed = client({ lazyConnect: true, keyPrefix: "app:" });
    expect(() => createRedisStore({ client: prefixed })).toThrow(InvalidArgumentError);
    expect(() => createRedisStore({ client: {} as Redis })).toThrow(InvalidArgumentError);
    const plain = client({ lazyConnect: true });
    expect(() =>
      createRedisStore({ client: plain, url: REDIS_URL } as unknown as { client: Redis }),
    ).toThrow(/either `url` or `client`/);
  });
});

describe("RedisStore options", () => {
  it("refuses a bad prefix, timeout or dedupe window with InvalidArgumentError", () => {
    for (const bad of [
      { prefix: "" },
      { prefix: 5 },
      { url: "" },
      { connectTimeoutMs: 0 },
      { commandTimeoutMs: -1 },
      { commandTimeoutMs: Number.NaN },
      { dedupeWindowMs: -1 },
      { dedupeWindowMs: 1.5 },
    ]) {
      expect(() => new RedisStore(bad as never), JSON.stringify(bad)).toThrow(InvalidArgumentError);
    }
  });

  it("refuses a timeout longer than a timer holds, which would time every command out at once", () => {
    // 3e9 ms ("no timeout, in effect") overflows setTimeout: every command failed after 1 ms.
    for (const bad of [
      { commandTimeoutMs: 3_000_000_000 },
      { connectTimeoutMs: Number.MAX_SAFE_INTEGER },
    ]) {
      expect(() => new RedisStore(bad), JSON.stringify(bad)).toThrow(/up to 2147483647/);
    }
    expect(() => new RedisStore({ commandTimeoutMs: 3_000_000_000 })).toThrow(InvalidArgumentError);
    expect(new RedisStore({ commandTimeoutMs: 2_147_483_647 }).isOpen).toBe(false);
  });

  it("defaults to the beamclaw: prefix, declares its capabilities, and connects to nothing until open()", () => {
    const store = createRedisStore();
    expect(store.prefix).toBe("beamclaw:");
    expect(store.kind).toBe("redis");
    expect(store.specificationVersion).toBe("v1");
    expect(store.capabilities).toEqual({
      durable: "process",
      multiProcess: true,
      ttl: true,
      distributedLocks: true,
    });
    expect(store.isOpen).toBe(false);
    expect(store.queue.dedupeWindowMs).toBe(24 * 60 * 60 * 1000);
  });
});
