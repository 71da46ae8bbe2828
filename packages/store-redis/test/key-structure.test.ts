/**
 * The key structure documented in the README is the one the store uses: on a private,
 * otherwise empty Redis, every key the store writes is under its prefix, matches a row of the
 * README's table and has the Redis type that row names, and every row is used. Plus what
 * only shows at the Redis level: expired kv keys do not pile up in the index, paging with a
 * stale cursor leaves the index as it was, and foreign data under the prefix is reported as
 * STORE_CORRUPT.
 */
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { keysUnder } from "./support/redis.js";
import { RedisServerProcess } from "./support/redis-server.js";
import { sleep } from "./support/settle.js";

const PREFIX = "app:";

/** The README's key table: a regular expression and a Redis type per row. */
function documentedKeys(): Array<{ row: string; pattern: RegExp; type: string }> {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf("## Key structure"), readme.indexOf("## Errors"));
  const types: Record<string, string> = {
    hash: "hash",
    "sorted set": "zset",
    list: "list",
    string: "string",
    set: "set",
  };
  return [...section.matchAll(/^\| `P ([^`]+)` \| ([a-z ]+?)(?:,|;| \|)/gm)].map(
    ([, key, type]) => {
      const source = key!
        .split(/<[^>]+>/)
        .map((literal) => literal.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
        .join(".+");
      return {
        row: key!,
        pattern: new RegExp(`^${PREFIX.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}${source}$`),
        type: types[type!.trim()] ?? `unknown type "${type}"`,
      };
    },
  );
}

let server: RedisServerProcess;
let raw: Redis;
let store: RedisStore;

beforeAll(async () => {
  server = await RedisServerProcess.start({ appendonly: false });
  raw = new Redis(server.url);
  store = createRedisStore({ url: server.url, prefix: PREFIX });
  await store.open();
});

afterAll(async () => {
  await store?.close();
  await raw?.quit();
  await server?.stop();
});

describe("the key structure", () => {
  it("every key the store writes is under its prefix, documented in the README, of the documented type, and every documented key is used", async () => {
    const rows = documentedKeys();
    expect(rows.length).toBeGreaterThanOrEqual(20);

    await store.sessions.put({
      key: "agent:main:main",
      agentId: "main",
      createdAt: 1,
      updatedAt: 2,
    });
    await store.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
    await store.cron.putJob({ id: "daily", agentId: "main" });
    await store.cron.appendRun({ jobId: "daily", startedAt: 3 });
    await store.devices.put({ deviceId: "phone" });
    await store.devices.putToken({
      tokenHash: "h1",
      deviceId: "phone",
      expiresAt: Date.now() + 60_000,
    });
    await store.approvals.put("agent:main:main", {
      pattern: "exec:ls",
      decision: "allow",
      decidedAt: 4,
    });
    const done = await store.queue.enqueue({
      idempotencyKey: "m1",
      sessionKey: "agent:main:main",
      payload: {},
    });
    await store.queue.ack(done.message.id);
    await store.queue.enqueue({ idempotencyKey: "m2", sessionKey: "agent:main:main", payload: {} });
    await store.kv.set("plain", 1);
    await store.kv.set("leased", 2, { ttlMs: 60_000 });
    await store.locks.acquire("job", { owner: "node-1", ttlMs: 60_000 });

    const all = await keysUnder(raw, "");
    expect(all.filter((key) => !key.startsWith(PREFIX))).toEqual([]);
    const used = new Set<string>();
    for (const key of all) {
      const matches = rows.filter((row) => row.pattern.test(key));
      expect(
        matches.map((m) => m.row),
        `${key} matches exactly one documented row`,
      ).toHaveLength(1);
      const [row] = matches;
      used.add(row!.row);
      expect(await raw.type(key), key).toBe(row!.type);
    }
    expect(rows.map((r) => r.row).filter((r) => !used.has(r))).toEqual([]);
  });

  it("kv index entries of expired keys are reclaimed by later sets, without a listing", async () => {
    const kv = createRedisStore({ url: server.url, prefix: "reclaim:" });
    await kv.open();
    try {
      // Long enough that none expires while the 20 are set, on a busy machine too (a set
      // reclaims the index entries of keys already expired).
      for (let i = 0; i < 20; i++) await kv.kv.set(`short${i}`, i, { ttlMs: 1_000 });
      expect(await raw.zcard("reclaim:kv-index")).toBe(20);
      await sleep(1_100);
      await kv.kv.set("a", 1);
      await kv.kv.set("b", 1);
      expect(await raw.zrange("reclaim:kv-index", "0", "-1")).toEqual(["a", "b"]);
      expect(await raw.zcard("reclaim:kv-expiry")).toBe(0);
    } finally {
      await kv.close();
    }
  });

  it("paging with a cursor whose record has changed leaves the index exactly as it was", async () => {
    const paging = createRedisStore({ url: server.url, prefix: "paging:" });
    await paging.open();
    try {
      for (let i = 0; i < 5; i++) {
        await paging.sessions.put({ key: `s${i}`, agentId: "a", createdAt: 1, updatedAt: 100 + i });
      }
      const first = await paging.sessions.list({ limit: 2 });
      expect(first.items.map((r) => r.key)).toEqual(["s4", "s3"]);
      // The record the cursor points at moves to the front, and another one goes away.
      await paging.sessions.put({ key: "s3", agentId: "a", createdAt: 1, updatedAt: 200 });
      await paging.sessions.delete("s1");
      const before = await raw.zrange("paging:sessions:all", "0", "-1", "WITHSCORES");
      const second = await paging.sessions.list({ limit: 2, cursor: first.cursor });
      expect(second.items.map((r) => r.key)).toEqual(["s2", "s0"]);
      expect(await raw.zrange("paging:sessions:all", "0", "-1", "WITHSCORES")).toEqual(before);
    } finally {
      await paging.close();
    }
  });

  it("reports data under the prefix that the store did not write as STORE_CORRUPT", async () => {
    await raw.set(`${PREFIX}transcript:foreign`, "a string, not a list");
    await raw.set(`${PREFIX}kv:foreign`, "not JSON");
    await expect(store.transcripts.read("foreign")).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    await expect(store.transcripts.append("foreign", [{ n: 1 }])).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    const error = await store.kv.get("foreign").catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "STORE_CORRUPT" });
    expect((error as Error).message).toContain(`${PREFIX}kv:foreign`);
  });
});
