/**
 * The single-writer lock, across real processes: one process at a time may open a store
 * directory; a second one is refused with STORE_LOCKED naming the holder's pid and the
 * directory, and a lock left by a dead process is recognised as stale and broken.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { StoreError } from "@beamclaw/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createFsStore, type FsStore, type FsStoreRecovery } from "../src/index.js";
import {
  fixture,
  LineProcess,
  removeDir,
  removeStoreModule,
  storeModule,
  tempDir,
} from "./support.js";

let module: string;
let dir: string;
const children: LineProcess[] = [];
const stores: FsStore[] = [];

function holder(action = ""): LineProcess {
  const child = new LineProcess(fixture("open-store.mjs"), [dir, action], {
    STORE_FS_MODULE: module,
  });
  children.push(child);
  return child;
}

function store(options: { onRecovery?: (r: FsStoreRecovery) => void } = {}): FsStore {
  const s = createFsStore({ dir, ...options });
  stores.push(s);
  return s;
}

async function rejection(promise: Promise<unknown>): Promise<StoreError> {
  try {
    await promise;
  } catch (error) {
    return error as StoreError;
  }
  throw new Error("expected a rejection");
}

beforeAll(async () => {
  module = await storeModule();
});

afterAll(async () => {
  await removeStoreModule();
});

afterEach(async () => {
  for (const child of children.splice(0)) await child.kill();
  for (const s of stores.splice(0)) await s.close();
  await removeDir(dir);
});

describe("single-writer lock", () => {
  it("refuses a second process with STORE_LOCKED naming the holder's pid and the directory", async () => {
    dir = await tempDir();
    const first = holder();
    const opened = await first.waitFor((l) => l.startsWith("opened"), "the holder to open");
    const pid = Number(opened.split(" ")[1]);

    const second = holder();
    const refused = await second.waitFor((l) => l.startsWith("refused"), "the refusal");
    expect(refused).toContain("refused STORE_LOCKED");
    expect(refused).toContain(`process ${pid}`);
    expect(refused).toContain(dir);
    expect(await second.closed).toEqual({ code: 0, signal: null });

    // An in-process opener gets the same typed error, and its store stays closed.
    const third = store();
    const error = await rejection(third.open());
    expect(StoreError.isInstance(error)).toBe(true);
    expect(error.code).toBe("STORE_LOCKED");
    expect(error.message).toContain(`process ${pid}`);
    expect((await rejection(third.kv.get("k"))).code).toBe("STORE_CLOSED");
  });

  it("the holder keeps writing while others are refused", async () => {
    dir = await tempDir();
    const first = holder("write");
    await first.waitFor((l) => l.startsWith("opened"), "the holder to open");
    expect((await rejection(store().open())).code).toBe("STORE_LOCKED");
    await first.waitFor((l) => l === "wrote", "the holder's write");
    first.child.kill("SIGTERM");
    await first.waitFor((l) => l === "closed", "the holder to close");
    const reader = store();
    await reader.open();
    expect(await reader.kv.get("written-by")).toBe(first.child.pid);
  });

  it("close releases the lock: the next process opens at once, with no stale lock to break", async () => {
    dir = await tempDir();
    const first = holder();
    await first.waitFor((l) => l.startsWith("opened"), "the holder to open");
    first.child.kill("SIGTERM");
    await first.waitFor((l) => l === "closed", "the holder to close");
    expect(await first.closed).toEqual({ code: 0, signal: null });

    const recoveries: FsStoreRecovery[] = [];
    const next = store({ onRecovery: (r) => recoveries.push(r) });
    await next.open();
    expect(recoveries).toEqual([]);
  });

  it("a lock left by a process killed with SIGKILL is stale: the next opener breaks it and reports it", async () => {
    dir = await tempDir();
    const first = holder();
    const opened = await first.waitFor((l) => l.startsWith("opened"), "the holder to open");
    const pid = Number(opened.split(" ")[1]);
    await first.kill();
    const lock = JSON.parse(await readFile(path.join(dir, "store.lock"), "utf8"));
    expect(lock.pid).toBe(pid);

    const recoveries: FsStoreRecovery[] = [];
    const next = store({ onRecovery: (r) => recoveries.push(r) });
    await next.open();
    expect(recoveries).toEqual([
      expect.objectContaining({ kind: "stale-lock-broken", file: "store.lock" }),
    ]);
    expect(recoveries[0]!.detail).toContain(`process ${pid}`);
    expect(next.recoveries).toEqual(recoveries);
    const now = JSON.parse(await readFile(path.join(dir, "store.lock"), "utf8"));
    expect(now.pid).toBe(process.pid);
  });

  it("of two processes opening one new directory at the same moment, exactly one wins", async () => {
    for (let round = 0; round < 5; round++) {
      dir = await tempDir();
      const racers = [holder(), holder()];
      const outcomes = await Promise.all(
        racers.map((r) => r.waitFor((l) => /^(opened|refused)/.test(l), "an outcome")),
      );
      const stderr = racers.map((r) => r.stderr).join("\n");
      expect(
        outcomes.filter((o) => o.startsWith("opened")),
        `${outcomes}\n${stderr}`,
      ).toHaveLength(1);
      expect(
        outcomes.filter((o) => o.startsWith("refused STORE_LOCKED")),
        `${outcomes}`,
      ).toHaveLength(1);
      for (const child of children.splice(0)) await child.kill();
      await removeDir(dir);
    }
  });

  it("a second FsStore in the same process is refused, and the first one is unaffected", async () => {
    dir = await tempDir();
    const first = store();
    await first.open();
    await first.kv.set("k", 1);
    const error = await rejection(store().open());
    expect(error.code).toBe("STORE_LOCKED");
    expect(error.message).toContain("this process");
    expect(await first.kv.get("k")).toBe(1);
    await first.close();
    const again = store();
    await again.open();
    expect(await again.kv.get("k")).toBe(1);
  });
});
