/**
 * `kv.scan` on the MemoryStore under random interleavings of sets, deletes and pages (the
 * sorted key index merges new keys in lazily and leaves removed ones to be filtered), and
 * `iterateKvKeys`, the caller's way to read every key of a prefix page by page.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareCodePoints, iterateKvKeys, MemoryStore } from "../src/store/index.js";

describe("kv.scan on the MemoryStore", () => {
  it("returns each key present for the whole scan exactly once, in order, whatever happens between pages", async () => {
    const key = fc.stringMatching(/^[ab][a-c\u00e9\u{1F600}]{0,3}$/u);
    const op = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), key }),
      fc.record({ kind: fc.constant("delete" as const), key }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(key, { maxLength: 30 }),
        fc.array(fc.array(op, { maxLength: 4 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 5 }),
        async (initial, between, limit) => {
          const store = new MemoryStore();
          await store.open();
          for (const k of initial) await store.kv.set(k, 1);
          const touched = new Set<string>();
          const seen: string[] = [];
          let cursor: string | undefined;
          let page = 0;
          do {
            const result = await store.kv.scan("a", { limit, cursor });
            expect(result.items.length).toBeLessThanOrEqual(limit);
            seen.push(...result.items);
            cursor = result.cursor;
            for (const step of between[page++] ?? []) {
              touched.add(step.key);
              if (step.kind === "set") await store.kv.set(step.key, 2);
              else await store.kv.delete(step.key);
            }
          } while (cursor !== undefined);
          const stable = initial.filter((k) => k.startsWith("a") && !touched.has(k));
          for (const k of stable) expect(seen.filter((s) => s === k)).toHaveLength(1);
          expect(new Set(seen).size).toBe(seen.length);
          expect(seen).toEqual([...seen].sort(compareCodePoints));
          expect(seen.every((k) => k.startsWith("a"))).toBe(true);
          // With nothing changing, a scan is exactly `keys`.
          const all: string[] = [];
          for await (const k of iterateKvKeys(store.kv, "a", { pageSize: limit })) all.push(k);
          expect(all).toEqual(await store.kv.keys("a"));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("iterateKvKeys", () => {
  it("yields every key under the prefix across pages, and stops reading when the loop breaks", async () => {
    const store = new MemoryStore();
    await store.open();
    for (let i = 0; i < 25; i++) await store.kv.set(`k:${String(i).padStart(2, "0")}`, i);
    await store.kv.set("other", 0);
    const all: string[] = [];
    for await (const key of iterateKvKeys(store.kv, "k:", { pageSize: 7 })) all.push(key);
    expect(all).toEqual(await store.kv.keys("k:"));
    expect(all).toHaveLength(25);

    let pages = 0;
    const counting = {
      scan: (prefix: string, options?: { limit?: number; cursor?: string }) => {
        pages++;
        return store.kv.scan(prefix, options);
      },
    };
    const firstThree: string[] = [];
    for await (const key of iterateKvKeys(counting, "k:", { pageSize: 2 })) {
      firstThree.push(key);
      if (firstThree.length === 3) break;
    }
    expect(firstThree).toEqual(all.slice(0, 3));
    expect(pages).toBe(2);
  });
});
