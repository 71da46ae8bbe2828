/**
 * The in-memory session index that serves `sessions.list`: property tests against a plain
 * sorted array, with enough sessions to split and empty its chunks many times over, and the
 * store's listing against a reference model across a reopen.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { SortedList } from "../src/sorted-list.js";
import { removeDir, tempDir } from "./support.js";

const byNumber = (a: number, b: number) => a - b;

describe("the sorted list behind the index", () => {
  it("stays equal to a sorted array under any sequence of inserts and removes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3_000 })), { maxLength: 4_000 }),
        fc.integer({ min: -1, max: 3_001 }),
        (operations, probe) => {
          const list = new SortedList<number>(byNumber);
          const model = new Set<number>();
          for (const [add, n] of operations) {
            if (add && !model.has(n)) {
              list.insert(n);
              model.add(n);
            } else if (!add) {
              expect(list.remove(n)).toBe(model.has(n));
              model.delete(n);
            }
          }
          const sorted = [...model].sort(byNumber);
          expect(list.size).toBe(sorted.length);
          expect([...list.from(undefined)]).toEqual(sorted);
          expect([...list.from(probe)]).toEqual(sorted.filter((n) => n >= probe));
          expect([...list.from(probe, true)]).toEqual(sorted.filter((n) => n > probe));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("builds from an unsorted array and keeps working after it", () => {
    const list = new SortedList<number>(byNumber);
    const items = Array.from({ length: 5_000 }, (_, i) => (i * 7919) % 5_000);
    list.reset([...items]);
    list.insert(-1);
    expect(list.remove(2_500)).toBe(true);
    expect([...list.from(undefined)]).toEqual([
      -1,
      ...items.filter((n) => n !== 2_500).sort(byNumber),
    ]);
  });
});

describe("sessions.list against a reference model", () => {
  let dir: string;
  let store: FsStore;

  beforeEach(async () => {
    dir = await tempDir();
    store = createFsStore({ dir, fsync: false });
    await store.open();
  });

  afterEach(async () => {
    await store.close();
    await removeDir(dir);
  });

  it("pages through puts, moves and deletes of 3,000 sessions in exact order, before and after a reopen", async () => {
    const model = new Map<string, { key: string; agentId: string; updatedAt: number }>();
    let seed = 7;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let step = 0; step < 6_000; step++) {
      const key = `agent:a${random(3)}:s${random(3_000)}`;
      if (random(10) === 0) {
        expect(await store.sessions.delete(key)).toBe(model.delete(key));
      } else {
        // Few distinct timestamps, so ties (ordered by key) are everywhere.
        const record = { key, agentId: key.split(":")[1]!, createdAt: 1, updatedAt: random(50) };
        await store.sessions.put(record);
        model.set(key, record);
      }
    }
    const order = (a: { key: string; updatedAt: number }, b: { key: string; updatedAt: number }) =>
      b.updatedAt - a.updatedAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    const check = async () => {
      for (const agentId of [undefined, "a0", "a2"]) {
        const expected = [...model.values()]
          .filter((r) => agentId === undefined || r.agentId === agentId)
          .sort(order)
          .map((r) => r.key);
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.sessions.list({ agentId, limit: 97, cursor });
          seen.push(...page.items.map((r) => r.key));
          cursor = page.cursor;
        } while (cursor !== undefined);
        expect(seen).toEqual(expected);
        expect(await store.sessions.count(agentId)).toBe(expected.length);
      }
    };
    await check();
    await store.close();
    store = createFsStore({ dir, fsync: false });
    await store.open();
    await check();
  });
});
