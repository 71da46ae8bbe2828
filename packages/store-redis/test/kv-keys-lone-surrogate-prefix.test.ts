/**
 * `kv.keys(prefix)` lists exactly the keys that start with `prefix`, also when the prefix is
 * not well-formed Unicode. Redis compares UTF-8 bytes, and UTF-8 turns a lone surrogate into
 * U+FFFD, so a prefix with one must not be sent to Redis as it is: `"a\uD800"` would then
 * list the keys starting with `"a\uFFFD"`, which do not start with it, and a prefix ending in
 * the high half of an emoji would miss the keys holding that emoji.
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
  const prefix = uniquePrefix("kvkeys");
  prefixes.push(prefix);
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  return store;
}

const KEYS = ["a", "a\uFFFD", "a\uFFFDx", "a\u{1F600}", "a\u{1F600}b", "a\u{1F680}", "b"];

/** What the contract asks for: the keys that start with `prefix`, in code point order. */
function expected(prefix: string): string[] {
  return KEYS.filter((k) => k.startsWith(prefix));
}

describe("kv.keys with a prefix that is not well-formed", () => {
  it("lists only keys that start with a prefix holding a lone low or high surrogate", async () => {
    const store = await openStore();
    for (const key of KEYS) await store.kv.set(key, 1);
    for (const prefix of ["a\uD800", "a\uDC00", "\uDE00", "a\uD83Dx"]) {
      expect(await store.kv.keys(prefix), JSON.stringify(prefix)).toEqual([]);
    }
  });

  it("lists the keys whose emoji begins with a prefix's trailing high surrogate", async () => {
    const store = await openStore();
    for (const key of KEYS) await store.kv.set(key, 1);
    // "a\uD83D" is the start of "a😀" and "a🚀" as JavaScript strings.
    expect(await store.kv.keys("a\uD83D")).toEqual(expected("a\uD83D"));
    expect(expected("a\uD83D")).toEqual(["a\u{1F600}", "a\u{1F600}b", "a\u{1F680}"]);
    // Well-formed prefixes are unchanged.
    expect(await store.kv.keys("a\uFFFD")).toEqual(expected("a\uFFFD"));
    expect(await store.kv.keys("a")).toEqual(expected("a"));
  });
});
