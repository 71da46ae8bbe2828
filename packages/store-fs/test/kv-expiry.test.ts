/**
 * Expired key/value entries leave memory and `kv.jsonl` while the store stays open: keys
 * written once with a TTL and never touched again (the channel manager's dedupe marks, the
 * gateway's kept `/v1/responses` answers) must not pile up for the life of the process.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { KV_FILE, KV_SWEEP_INTERVAL_MS } from "../src/kv.js";
import { removeDir, tempDir } from "./support.js";

const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

let dir: string;
let store: FsStore | undefined;

beforeEach(async () => {
  dir = await tempDir();
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(T0);
});

afterEach(async () => {
  vi.useRealTimers();
  await store?.close();
  store = undefined;
  await removeDir(dir);
});

async function open(): Promise<FsStore> {
  await store?.close();
  store = createFsStore({ dir, fsync: false });
  await store.open();
  return store;
}

async function kvLines(): Promise<string[]> {
  const text = await readFile(path.join(dir, KV_FILE), "utf8");
  return text.split("\n").filter((line) => line.length > 0);
}

/** `count` keys `<prefix><i>`, each written once, with the given TTL (none if undefined). */
async function writeKeys(s: FsStore, prefix: string, count: number, ttlMs?: number) {
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      s.kv.set(`${prefix}${i}`, { i }, ttlMs === undefined ? undefined : { ttlMs }),
    ),
  );
}

describe("expired key/value entries in an open store", () => {
  it("leave the file at the next compaction once a write follows their expiry", async () => {
    const s = await open();
    await writeKeys(s, "seen:", 2_000, MINUTE);
    await writeKeys(s, "keep:", 5);
    await writeKeys(s, "later:", 5, 60 * MINUTE);
    expect(await kvLines()).toHaveLength(2_010);

    vi.setSystemTime(T0 + MINUTE + 1);
    await s.kv.set("fresh", "new", { ttlMs: MINUTE });

    // The 2,000 expired marks are garbage now; the compaction rewrites only the 11 live keys.
    await vi.waitFor(async () => expect(await kvLines()).toHaveLength(11));
    const keys = (await kvLines()).map((line) => (JSON.parse(line) as { key: string }).key);
    expect(keys.sort()).toEqual([
      "fresh",
      ...["keep:0", "keep:1", "keep:2", "keep:3", "keep:4"],
      ...["later:0", "later:1", "later:2", "later:3", "later:4"],
    ]);
  });

  it("keep every live entry, with its value and expiry, through that compaction and a reopen", async () => {
    const s = await open();
    await writeKeys(s, "seen:", 1_500, MINUTE);
    await s.kv.set("keep", { n: 1 });
    await s.kv.set("later", { n: 2 }, { ttlMs: 10 * MINUTE });
    // Renewed before it expired: its first expiry must not purge it.
    await s.kv.set("seen:7", { renewed: true }, { ttlMs: 10 * MINUTE });

    vi.setSystemTime(T0 + MINUTE);
    await s.kv.set("fresh", "new");
    await vi.waitFor(async () => expect(await kvLines()).toHaveLength(4));
    expect(await s.kv.keys("")).toEqual(["fresh", "keep", "later", "seen:7"]);

    const reopened = await open();
    expect(await reopened.kv.keys("")).toEqual(["fresh", "keep", "later", "seen:7"]);
    expect(await reopened.kv.get("seen:7")).toEqual({ renewed: true });
    expect(await reopened.kv.get("keep")).toEqual({ n: 1 });
    expect(await reopened.kv.get("seen:8")).toBeUndefined();
    vi.setSystemTime(T0 + 10 * MINUTE);
    expect(await reopened.kv.get("later")).toBeUndefined();
    expect(await reopened.kv.get("seen:7")).toBeUndefined();
    expect(await reopened.kv.get("keep")).toEqual({ n: 1 });
  });

  it("are purged at most once per sweep interval, and at once by the first write after it", async () => {
    const s = await open();
    await writeKeys(s, "seen:", 1_200, 1_000);
    // Expired, but the last purge (at open) is more recent than the sweep interval:
    // invisible to reads, still in the file, no compaction yet.
    vi.setSystemTime(T0 + KV_SWEEP_INTERVAL_MS - 1);
    await s.kv.set("a", 1);
    expect(await s.kv.get("seen:0")).toBeUndefined();
    expect(await s.kv.keys("seen:")).toEqual([]);
    expect(await kvLines()).toHaveLength(1_201);

    vi.setSystemTime(T0 + KV_SWEEP_INTERVAL_MS);
    await s.kv.set("b", 2);
    await vi.waitFor(async () => expect(await kvLines()).toHaveLength(2));
    expect(await s.kv.keys("")).toEqual(["a", "b"]);
  });

  it("are purged by a delete as well as by a set", async () => {
    const s = await open();
    await writeKeys(s, "seen:", 1_100, MINUTE);
    await s.kv.set("a", 1);
    await s.kv.set("b", 2);
    vi.setSystemTime(T0 + 2 * MINUTE);
    expect(await s.kv.delete("a")).toBe(true);
    await vi.waitFor(async () => expect(await kvLines()).toHaveLength(1));
    expect(await s.kv.keys("")).toEqual(["b"]);
  });
});
