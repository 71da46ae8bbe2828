/**
 * A record under the store's prefix that is valid JSON but not a JSON object (another
 * program wrote `null`, a number or an array there): every read of it rejects with a typed
 * `STORE_CORRUPT` naming the Redis key, never with a raw `TypeError` nor by handing back
 * `null` as if it were a record.
 */
import { StoreError } from "@beamclaw/core";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

let prefix: string;
let store: RedisStore;
let raw: Redis;

beforeEach(async () => {
  prefix = uniquePrefix("foreign");
  store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  raw = rawClient();
});

afterEach(async () => {
  await store.close();
  await raw.quit();
  await deletePrefixes([prefix]);
});

async function corruption(operation: Promise<unknown>): Promise<{ code: string; key: string }> {
  const error = await operation.then(
    (value) => new Error(`resolved with ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  expect(StoreError.isInstance(error), String(error)).toBe(true);
  const { code, message } = error as StoreError;
  return { code, key: message.includes(prefix) ? "named" : message };
}

const CORRUPT = { code: "STORE_CORRUPT", key: "named" };

describe("stored records that are JSON but not objects", () => {
  it("are STORE_CORRUPT for cron jobs and runs", async () => {
    await raw.hset(`${prefix}cron:jobs`, "j", "null");
    await raw.zadd(`${prefix}cron:runs:j`, "1", "0000000000000001:[1]");
    expect(await corruption(store.cron.getJob("j"))).toEqual(CORRUPT);
    expect(await corruption(store.cron.listJobs())).toEqual(CORRUPT);
    expect(await corruption(store.cron.listJobs("a"))).toEqual(CORRUPT);
    expect(await corruption(store.cron.listRuns("j"))).toEqual(CORRUPT);
  });

  it("are STORE_CORRUPT for devices and device tokens", async () => {
    await raw.hset(`${prefix}devices`, "d", "null");
    await raw.hset(`${prefix}device-token:t`, "d", "d", "j", "null");
    await raw.sadd(`${prefix}device-tokens:d`, "t");
    expect(await corruption(store.devices.get("d"))).toEqual(CORRUPT);
    expect(await corruption(store.devices.list())).toEqual(CORRUPT);
    expect(await corruption(store.devices.getToken("t"))).toEqual(CORRUPT);
    expect(await corruption(store.devices.listTokens("d"))).toEqual(CORRUPT);
  });

  it("are STORE_CORRUPT for sessions, approvals, transcript entries and queued payloads", async () => {
    await raw.hset(`${prefix}session:x`, "a", "a", "j", "null");
    await raw.zadd(`${prefix}sessions:all`, "-1", "x");
    await raw.hset(`${prefix}approvals:s`, "p", "7");
    await raw.rpush(`${prefix}transcript:s`, '"text"');
    await raw.hset(`${prefix}queue:msg:0000000000000001`, ..."i k s s p null t 1 d 0".split(" "));
    await raw.zadd(`${prefix}queue:pending`, "1", "0000000000000001");
    expect(await corruption(store.sessions.get("x"))).toEqual(CORRUPT);
    expect(await corruption(store.sessions.list())).toEqual(CORRUPT);
    expect(await corruption(store.approvals.list("s"))).toEqual(CORRUPT);
    expect(await corruption(store.transcripts.read("s"))).toEqual(CORRUPT);
    expect(await corruption(store.queue.pending())).toEqual(CORRUPT);
  });
});
