/**
 * A key under the store's prefix holding the wrong type (another program wrote it) makes a
 * multi-key write reject with `STORE_CORRUPT` and write nothing: Redis does not undo what a
 * script wrote before one of its commands failed, so the scripts check the types of the keys
 * they write before their first write. Without that, an enqueue met a pending set of the
 * wrong type after storing the message and its idempotency key: its retry (once the key was
 * repaired) was answered `duplicate: true`, and the message was never pending.
 */
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, keysUnder, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

let prefix: string;
let store: RedisStore;
let raw: Redis;

beforeEach(async () => {
  prefix = uniquePrefix("wrongtype");
  store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  raw = rawClient();
});

afterEach(async () => {
  await store.close();
  await raw.quit();
  await deletePrefixes([prefix]);
});

const message = { idempotencyKey: "tg:1", sessionKey: "s", payload: { n: 1 } };

describe("a write meeting a key of the wrong type", () => {
  it("enqueue writes nothing, and its retry after the repair is a new pending message", async () => {
    await raw.set(`${prefix}queue:pending`, "not a sorted set");
    await expect(store.queue.enqueue(message)).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await keysUnder(raw, prefix)).toEqual([`${prefix}queue:pending`]);

    await raw.del(`${prefix}queue:pending`);
    const retry = await store.queue.enqueue(message);
    expect(retry.duplicate).toBe(false);
    expect((await store.queue.pending()).map((m) => m.id)).toEqual([retry.message.id]);
  });

  it("enqueue writes nothing when the session's pending set is of the wrong type", async () => {
    await raw.set(`${prefix}queue:session:s`, "not a sorted set");
    await expect(store.queue.enqueue(message)).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await keysUnder(raw, prefix)).toEqual([`${prefix}queue:session:s`]);
  });

  it("ack leaves the message pending, in every pending set", async () => {
    const { message: queued } = await store.queue.enqueue(message);
    await raw.del(`${prefix}queue:idem:tg:1`);
    await raw.hset(`${prefix}queue:idem:tg:1`, "x", "1");
    await expect(store.queue.ack(queued.id)).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect((await store.queue.pending()).map((m) => m.id)).toEqual([queued.id]);
    expect((await store.queue.pending({ sessionKey: "s" })).map((m) => m.id)).toEqual([queued.id]);
  });

  it("sessions.put writes nothing when an index is of the wrong type", async () => {
    await raw.set(`${prefix}sessions:agent:a`, "not a sorted set");
    await expect(
      store.sessions.put({ key: "s", agentId: "a", createdAt: 1, updatedAt: 1 }),
    ).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await store.sessions.get("s")).toBeUndefined();
    expect(await store.sessions.count()).toBe(0);
  });

  it("sessions.delete keeps the session when its agent's index is of the wrong type", async () => {
    const record = { key: "s", agentId: "a", createdAt: 1, updatedAt: 1 };
    await store.sessions.put(record);
    await raw.del(`${prefix}sessions:agent:a`);
    await raw.set(`${prefix}sessions:agent:a`, "not a sorted set");
    await expect(store.sessions.delete("s")).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await store.sessions.get("s")).toEqual(record);
    expect(await store.sessions.count()).toBe(1);
  });

  it("kv.set writes nothing when the kv index is of the wrong type", async () => {
    await raw.set(`${prefix}kv-index`, "not a sorted set");
    await expect(store.kv.set("k", 1, { ttlMs: 60_000 })).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    expect(await keysUnder(raw, prefix)).toEqual([`${prefix}kv-index`]);
  });

  it("kv.set with ifValue writes nothing when the value key is of the wrong type", async () => {
    await raw.hset(`${prefix}kv:k`, "x", "1");
    await expect(store.kv.set("k", 2, { ifValue: 1 })).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    expect(await raw.type(`${prefix}kv:k`)).toBe("hash");
    expect(await keysUnder(raw, prefix)).toEqual([`${prefix}kv:k`]);
  });

  it("kv.delete keeps the value when the expiry index is of the wrong type", async () => {
    await store.kv.set("k", 1, { ttlMs: 60_000 });
    await raw.del(`${prefix}kv-expiry`);
    await raw.set(`${prefix}kv-expiry`, "not a sorted set");
    await expect(store.kv.delete("k")).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await store.kv.get("k")).toBe(1);
    expect(await store.kv.keys("")).toEqual(["k"]);
  });

  it("cron.appendRun writes nothing when the job's run log is of the wrong type", async () => {
    await raw.set(`${prefix}cron:runs:j`, "not a sorted set");
    await expect(store.cron.appendRun({ jobId: "j", startedAt: 1 })).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    expect(await keysUnder(raw, prefix)).toEqual([`${prefix}cron:runs:j`]);
  });

  it("devices.delete keeps the device when its token set is of the wrong type", async () => {
    await store.devices.put({ deviceId: "d" });
    await raw.set(`${prefix}device-tokens:d`, "not a set");
    await expect(store.devices.delete("d")).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await store.devices.list()).toEqual([{ deviceId: "d" }]);
  });

  it("devices.putToken writes no token when the device's token set is of the wrong type", async () => {
    await raw.set(`${prefix}device-tokens:d`, "not a set");
    await expect(store.devices.putToken({ tokenHash: "h", deviceId: "d" })).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    expect(await keysUnder(raw, prefix)).toEqual([`${prefix}device-tokens:d`]);
  });

  it("queue.replay counts no delivery when a message's key is of the wrong type", async () => {
    const first = (await store.queue.enqueue(message)).message;
    const second = (await store.queue.enqueue({ ...message, idempotencyKey: "tg:2" })).message;
    const hash = `${prefix}queue:msg:${second.id}`;
    const saved = await raw.hgetall(hash);
    await raw.del(hash);
    await raw.set(hash, "not a hash");
    await expect(store.queue.replay()).rejects.toMatchObject({ code: "STORE_CORRUPT" });

    await raw.del(hash);
    await raw.hset(hash, saved);
    const pending = await store.queue.pending();
    expect(pending.map((m) => [m.id, m.deliveries])).toEqual([
      [first.id, 0],
      [second.id, 0],
    ]);
  });
});
