/**
 * Lock files whose pid is alive but not their owner's. A lock left by a power loss: after the restart its pid may belong to any live process,
 * this one included (a service started at boot, or a container's pid 1, often gets the pid
 * it had the last time). The lock names the boot it was taken in, so it is known stale
 * whatever process has that pid now; a lock of the current boot whose pid is alive is still
 * refused, and so is one of an earlier version that names no boot. A lock of this process's
 * pid that no store of this process holds is refused without claiming that one does. And an
 * open that fails just after creating its lock (the directory fsync) leaves no lock behind.
 */
import fs, { readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { StoreError } from "@beamclaw/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
const stores: FsStore[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  for (const store of stores.splice(0)) await store.close().catch(() => {});
  await removeDir(dir);
});

async function bootId(): Promise<string> {
  return (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
}

/** A closed store whose directory holds `owner` as its lock file. */
async function storeLockedBy(owner: Record<string, unknown>): Promise<FsStore> {
  dir = await tempDir();
  const setup = createFsStore({ dir, fsync: false });
  await setup.open();
  await setup.kv.set("before", "the power loss");
  await setup.close();
  await writeFile(path.join(dir, "store.lock"), `${JSON.stringify(owner)}\n`);
  const store = createFsStore({ dir, fsync: false });
  stores.push(store);
  return store;
}

async function rejection(promise: Promise<unknown>): Promise<StoreError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!StoreError.isInstance(error)) throw new Error(`expected a StoreError, got ${String(error)}`);
  return error;
}

describe("a lock taken before the machine restarted", () => {
  it("is stale even though its pid is this very process: the store opens and reports it", async () => {
    const store = await storeLockedBy({
      pid: process.pid,
      hostname: os.hostname(),
      bootId: "00000000-0000-4000-8000-000000000000",
      since: "2026-01-01T00:00:00.000Z",
      nonce: "before-the-power-loss",
    });
    await store.open();
    expect(await store.kv.get("before")).toBe("the power loss");
    expect(store.recoveries.map((r) => r.kind)).toContain("stale-lock-broken");
    const detail = store.recoveries.find((r) => r.kind === "stale-lock-broken")!.detail;
    expect(detail).toContain("before the machine restarted");
    expect(detail).not.toContain("whose close() could not delete it");
    const lock = JSON.parse(await readFile(path.join(dir, "store.lock"), "utf8"));
    expect(lock).toMatchObject({ pid: process.pid, bootId: await bootId() });
    expect(lock.nonce).not.toBe("before-the-power-loss");
  });

  it("is stale whatever live process has its pid now (pid 1)", async () => {
    const store = await storeLockedBy({
      pid: 1,
      hostname: os.hostname(),
      bootId: "00000000-0000-4000-8000-000000000000",
      since: "2026-01-01T00:00:00.000Z",
      nonce: "before-the-power-loss",
    });
    await store.open();
    expect(store.recoveries.map((r) => r.kind)).toContain("stale-lock-broken");
  });

  it("a lock of this boot whose process is alive is still refused, and left as it was", async () => {
    const owner = {
      pid: 1,
      hostname: os.hostname(),
      bootId: await bootId(),
      since: "2026-01-01T00:00:00.000Z",
      nonce: "alive",
    };
    const store = await storeLockedBy(owner);
    const error = await rejection(store.open());
    expect(error.code).toBe("STORE_LOCKED");
    expect(error.message).toContain("process 1 on host");
    expect(JSON.parse(await readFile(path.join(dir, "store.lock"), "utf8"))).toEqual(owner);
  });

  it("a lock naming no boot (an earlier version's) whose process is alive is still refused", async () => {
    const owner = { pid: 1, hostname: os.hostname(), since: "then", nonce: "old-format" };
    const store = await storeLockedBy(owner);
    expect((await rejection(store.open())).code).toBe("STORE_LOCKED");
    expect(JSON.parse(await readFile(path.join(dir, "store.lock"), "utf8"))).toEqual(owner);
  });
});

describe("a lock with this process's pid", () => {
  it("that no store of this process holds is refused, without claiming another FsStore of this process holds it", async () => {
    const owner = {
      pid: process.pid,
      hostname: os.hostname(),
      bootId: await bootId(),
      since: "2026-01-01T00:00:00.000Z",
      nonce: "another-pid-namespace",
    };
    const store = await storeLockedBy(owner);
    const error = await rejection(store.open());
    expect(error.code).toBe("STORE_LOCKED");
    expect(error.message).not.toContain("another FsStore instance");
    expect(error.message).toContain("no store of this process holds it");
    expect(error.message).toContain(`process ${process.pid} on host`);
    expect(JSON.parse(await readFile(path.join(dir, "store.lock"), "utf8"))).toEqual(owner);
  });

  it("an open that fails right after creating its lock (EIO on the directory fsync) leaves no lock: the next open here succeeds", async () => {
    dir = await tempDir();
    const setup = createFsStore({ dir });
    await setup.open();
    await setup.kv.set("k", 1);
    await setup.close();
    const lockFile = path.join(dir, "store.lock");
    const realOpen = fs.open.bind(fs);
    let failed = 0;
    vi.spyOn(fs, "open").mockImplementation(async (file, flags, mode) => {
      // The directory fsync right after link(2) has created the lock file.
      if (file === dir && failed === 0 && (await fs.stat(lockFile).catch(() => undefined))) {
        failed++;
        throw Object.assign(new Error(`EIO: i/o error, fsync '${dir}'`), { code: "EIO" });
      }
      return realOpen(file, flags, mode);
    });
    const store = createFsStore({ dir });
    stores.push(store);
    const error = await rejection(store.open());
    expect(failed).toBe(1);
    expect(error.code).toBe("STORE_UNAVAILABLE");
    expect(error.message).toContain("EIO");
    vi.restoreAllMocks();
    await expect(readFile(lockFile, "utf8")).rejects.toMatchObject({ code: "ENOENT" });
    await store.open();
    expect(await store.kv.get("k")).toBe(1);
  });
});
