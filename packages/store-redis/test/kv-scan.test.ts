/**
 * `kv.scan` and `kv.keys` on Redis read the key index a page at a time: one short script per
 * page, never one command over a whole prefix, so a prefix with many keys (or many index
 * entries of expired keys) never holds the server for long. Against the real Redis.
 */
import { encodeKvCursor, InvalidArgumentError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { KV_SCAN_EXTRA } from "../src/scripts.js";
import { storeOpener } from "./support/redis.js";

const { open: openStore, cleanup } = storeOpener("kvscan");
afterEach(cleanup);

const pad = (n: number) => String(n).padStart(5, "0");

describe("kv.scan on Redis", () => {
  it("a page looks at a bounded number of index entries, however many are stale", async () => {
    const { store, prefix, raw: redis } = await openStore();
    // Index entries whose values are gone (as an expired key leaves them until swept).
    const stale = 2_500;
    const members: string[] = [];
    for (let i = 0; i < stale; i++) members.push("0", `s:${pad(i)}`);
    await redis.zadd(`${prefix}kv-index`, ...members);
    for (const key of ["s:zz1", "s:zz2", "s:zz3"]) await store.kv.set(key, key);

    const pages: Array<{ items: string[]; cursor?: string }> = [];
    let cursor: string | undefined;
    do {
      const page = await store.kv.scan("s:", { limit: 10, cursor });
      pages.push(page);
      cursor = page.cursor;
    } while (cursor !== undefined && pages.length < 100);
    // Each page looked at no more than limit + 1 + KV_SCAN_EXTRA entries: the stale run
    // takes several pages, short of keys but with a cursor, before the live keys come.
    expect(pages.length).toBeGreaterThanOrEqual(Math.ceil(stale / (11 + KV_SCAN_EXTRA)));
    expect(pages[0]).toEqual({ items: [], cursor: expect.any(String) });
    expect(pages.flatMap((page) => page.items)).toEqual(["s:zz1", "s:zz2", "s:zz3"]);
    expect(pages.at(-1)!.cursor).toBeUndefined();
    // The stale entries were dropped on the way.
    expect(await redis.zcard(`${prefix}kv-index`)).toBe(3);
  });

  it("keys returns every key of a prefix with more keys than one page holds, sorted", async () => {
    const { store } = await openStore();
    const keys = Array.from({ length: 2_345 }, (_, i) => `m:${pad(i)}`);
    const batch = 200;
    for (let i = 0; i < keys.length; i += batch) {
      await Promise.all(keys.slice(i, i + batch).map((key) => store.kv.set(key, 1)));
    }
    await store.kv.set("n:other", 1);
    expect(await store.kv.keys("m:")).toEqual(keys);
    const first = await store.kv.scan("m:", { limit: 1000 });
    expect(first.items).toEqual(keys.slice(0, 1000));
    const second = await store.kv.scan("m:", { limit: 1000, cursor: first.cursor });
    expect(second.items).toEqual(keys.slice(1000, 2000));
    const third = await store.kv.scan("m:", { limit: 1000, cursor: second.cursor });
    expect(third).toEqual({ items: keys.slice(2000) });
  });

  it("a cursor whose key is not well-formed Unicode is refused: no Redis key is one", async () => {
    const { store } = await openStore();
    await store.kv.set("a:1", 1);
    const error = await store.kv.scan("a:", { cursor: encodeKvCursor("a:\uD800") }).then(
      () => "resolved",
      (e: unknown) => e,
    );
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect(await store.kv.scan("a:")).toEqual({ items: ["a:1"] });
  });
});
