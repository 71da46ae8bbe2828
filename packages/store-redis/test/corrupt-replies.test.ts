/**
 * Replies meaning a stored value is not what the store wrote are `STORE_CORRUPT` (retrying
 * cannot help), whatever the Redis version's wording; everything else stays
 * `STORE_UNAVAILABLE` (retryable). Against the real server: a counter holding no number.
 */
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { toStoreError } from "../src/connection.js";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

let prefix: string;
let store: RedisStore;
let raw: Redis;

beforeEach(async () => {
  prefix = uniquePrefix("corrupt-reply");
  store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  raw = rawClient();
});

afterEach(async () => {
  await store.close();
  await raw.quit();
  await deletePrefixes([prefix]);
});

describe("a counter that holds no number", () => {
  it("fails cron.appendRun with STORE_CORRUPT (not the retryable STORE_UNAVAILABLE) and writes no run", async () => {
    await raw.set(`${prefix}cron:run-seq`, "not a number");
    await expect(store.cron.appendRun({ jobId: "j", startedAt: 1 })).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    expect(await store.cron.listRuns("j")).toEqual([]);
    // Repaired, it works.
    await raw.del(`${prefix}cron:run-seq`);
    await store.cron.appendRun({ jobId: "j", startedAt: 1 });
    expect(await store.cron.listRuns("j")).toHaveLength(1);
  });
});

describe("toStoreError", () => {
  const code = (message: string) => (toStoreError(new Error(message)) as { code: string }).code;

  it("reads a wrong type or a non-number as corrupt in Redis 7's and Redis 6's wording", () => {
    expect(code("WRONGTYPE Operation against a key holding the wrong kind of value")).toBe(
      "STORE_CORRUPT",
    );
    expect(
      code(
        "ERR Error running script (call to f_0123abcd): @user_script:5: WRONGTYPE Operation against a key holding the wrong kind of value",
      ),
    ).toBe("STORE_CORRUPT");
    expect(code("ERR value is not an integer or out of range")).toBe("STORE_CORRUPT");
    expect(
      code(
        "ERR Error running script (call to f_0123abcd): @user_script:2: ERR hash value is not an integer",
      ),
    ).toBe("STORE_CORRUPT");
  });

  it("keeps everything else retryable", () => {
    expect(code("LOADING Redis is loading the dataset in memory")).toBe("STORE_UNAVAILABLE");
    expect(code("OOM command not allowed when used memory > 'maxmemory'")).toBe(
      "STORE_UNAVAILABLE",
    );
    expect(code("connect ECONNREFUSED 127.0.0.1:6379")).toBe("STORE_UNAVAILABLE");
    // A value that merely mentions the word is not a type error.
    expect(code("READONLY You can't write against a read only replica. WRONGTYPE")).toBe(
      "STORE_UNAVAILABLE",
    );
  });
});
