/**
 * `open()` and `close()` called while the other is still in progress take effect in call
 * order, on this one store: an `open()` queued behind a `close()` joins any other `open()`
 * queued there (it is never refused as if another store held the directory), and a `close()`
 * called after such an `open()` closes the store once it has opened.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await tempDir();
  store = createFsStore({ dir });
});

afterEach(async () => {
  await store.close();
  await removeDir(dir);
});

describe("open() and close() in call order", () => {
  it("two open() calls made while the store is closing both resolve, and the store is open", async () => {
    await store.open();
    const closing = store.close();
    const results = await Promise.allSettled([store.open(), store.open()]);
    await closing;
    expect(results.map((r) => (r.status === "rejected" ? String(r.reason) : "ok"))).toEqual([
      "ok",
      "ok",
    ]);
    await store.kv.set("k", 1);
    expect(await store.kv.get("k")).toBe(1);
  });

  it("close(), open(), close(): the store ends closed, with its lock released", async () => {
    await store.open();
    const first = store.close();
    const opening = store.open();
    const last = store.close();
    await Promise.all([first, opening, last]);
    expect(existsSync(path.join(dir, "store.lock"))).toBe(false);
    const error = await store.kv.get("k").catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe("STORE_CLOSED");
    // And it opens again.
    await store.open();
    await store.kv.set("k", 2);
    expect(await store.kv.get("k")).toBe(2);
  });
});
