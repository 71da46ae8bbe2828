/**
 * The disk fills up under a compaction: its snapshot (a temp file) cannot be written. That
 * changed nothing, so the compaction is skipped (the temp file removed) and the writes that set
 * it off are appended and acknowledged as usual: a full disk that still has room for the lines
 * does not stop the store. Once there is room again, a later write compacts the log. The disk is a
 * small real tmpfs (a genuine ENOSPC); mounting it needs root, like `read-only-disk.test.ts`.
 */
import { execFile } from "node:child_process";
import { mkdtemp, open, readdir, readFile, rm, stat, unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";

const run = promisify(execFile);

let mnt: string;
const stores: FsStore[] = [];

beforeEach(async () => {
  mnt = await mkdtemp(path.join(os.tmpdir(), "store-fs-full-"));
  await run("mount", ["-t", "tmpfs", "-o", `size=${8 * 1024 * 1024}`, "tmpfs", mnt]);
});

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close().catch(() => {});
  await run("umount", [mnt]);
  await rm(mnt, { recursive: true, force: true });
});

/** Fills the disk with a file next to the store, leaving `leave` bytes free. */
async function fill(leave: number): Promise<void> {
  const handle = await open(path.join(mnt, "filler"), "a");
  const block = Buffer.alloc(4096, 1);
  let written = 0;
  try {
    for (;;) written += (await handle.write(block)).bytesWritten;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  }
  await handle.truncate(Math.max(0, written - leave));
  await handle.close();
}

describe("a full disk under a compaction", () => {
  it("skips the compaction: the writes that set it off are appended and acknowledged, the store carries on, and compacts once there is room", async () => {
    const dir = path.join(mnt, "store");
    const log = path.join(dir, "kv.jsonl");
    const value = "v".repeat(1500);
    const store = createFsStore({ dir, fsync: false });
    stores.push(store);
    await store.open();
    // 1000 live keys written twice but one: the next two writes make dead lines outnumber live ones.
    for (let i = 0; i < 1000; i++) await store.kv.set(`k${i}`, value);
    for (let i = 0; i < 999; i++) await store.kv.set(`k${i}`, value);
    const before = await readFile(log);
    // Room for the two lines, not for the 1.5 MB snapshot they set off.
    await fill(8192);
    expect(await Promise.all([store.kv.set("k999", "new"), store.kv.set("k0", "new")])).toEqual([
      true,
      true,
    ]);
    // Nothing half-written is left, and the log is what it was plus the two lines.
    expect(await readdir(path.join(dir, "tmp"))).toEqual([]);
    const after = await readFile(log);
    expect(after.subarray(0, before.length).equals(before)).toBe(true);
    expect(after.subarray(before.length).toString("utf8")).toBe(
      '{"op":"set","key":"k999","value":"new"}\n{"op":"set","key":"k0","value":"new"}\n',
    );
    // The store was not stopped: reads and further writes work.
    expect(await store.kv.get("k0")).toBe("new");
    expect(await store.kv.delete("k500")).toBe(true);
    await store.close();

    const reopened = createFsStore({ dir, fsync: false });
    stores.push(reopened);
    await reopened.open();
    expect(reopened.recoveries).toEqual([]);
    expect(await reopened.kv.keys("k")).toHaveLength(999);
    expect(await reopened.kv.get("k999")).toBe("new");
    expect(await reopened.kv.get("k0")).toBe("new");
    expect(await reopened.kv.get("k1")).toBe(value);
    expect(await reopened.kv.get("k500")).toBeUndefined();
    // With room again, the next write compacts the log.
    await unlink(path.join(mnt, "filler"));
    await reopened.kv.set("k1", "new");
    expect((await stat(log)).size).toBeLessThan(before.length / 2 + 4096);
    await reopened.close();
    const last = createFsStore({ dir, fsync: false });
    stores.push(last);
    await last.open();
    expect(await last.kv.keys("k")).toHaveLength(999);
    expect(await last.kv.get("k1")).toBe("new");
    expect(await last.kv.get("k2")).toBe(value);
  });

  it("of the queue on open: acked files it would have settled are kept until a compaction succeeds, so no acked message comes back", async () => {
    const dir = path.join(mnt, "store");
    const big = "p".repeat(20_000);
    const inbound = (key: string, payload: Record<string, string>) => ({
      idempotencyKey: key,
      sessionKey: "agent:main:main",
      payload,
    });
    const reopen = async (): Promise<FsStore> => {
      // A window of 1 ms: the acks below are outside it at every open after the first.
      const store = createFsStore({ dir, fsync: false, dedupeWindowMs: 1 });
      stores.push(store);
      await store.open();
      return store;
    };
    const first = createFsStore({ dir, fsync: false });
    stores.push(first);
    await first.open();
    for (let i = 0; i < 100; i++) await first.queue.enqueue(inbound(`pending-${i}`, { big }));
    const acked: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { message } = await first.queue.enqueue(inbound(`acked-${i}`, {}));
      await first.queue.ack(message.id);
      acked.push(message.id);
    }
    await first.close();
    const ackedDir = path.join(dir, "queue-acked");
    const ackedFiles = await readdir(ackedDir);
    expect(ackedFiles).toHaveLength(1);
    const pendingIds = async (store: FsStore) =>
      (await store.queue.pending({ limit: 1000 })).map((m) => m.id);

    // The pending log's compaction (2 MB of pending messages) does not fit.
    await fill(8192);
    const full = await reopen();
    expect(await readdir(path.join(dir, "tmp"))).toEqual([]);
    expect(await readdir(ackedDir)).toEqual(ackedFiles);
    expect(await pendingIds(full)).toHaveLength(100);
    await full.close();
    const stillFull = await reopen();
    const ids = await pendingIds(stillFull);
    expect(ids).toHaveLength(100);
    for (const id of acked) expect(ids).not.toContain(id);
    await stillFull.close();

    // With room again, the compaction is made and the expired acked file goes.
    await unlink(path.join(mnt, "filler"));
    const roomy = await reopen();
    expect(await readdir(ackedDir)).toEqual([]);
    expect(await pendingIds(roomy)).toHaveLength(100);
    await roomy.close();
    const last = await reopen();
    const lastIds = await pendingIds(last);
    expect(lastIds).toHaveLength(100);
    for (const id of acked) expect(lastIds).not.toContain(id);
  });
});
