/**
 * The store's disk turning read-only under it (ext4 meeting an error with
 * `errors=remount-ro`, set off through `/sys/fs/ext4/<device>/trigger_fs_error`: the way a
 * disk goes read-only under a running process, open files included). The failed write stops
 * the store with `STORE_UNAVAILABLE`; `close()` still closes every file and, since the lock
 * file cannot be removed from a read-only disk, rejects with a typed error saying so; once the
 * disk is repaired the same process opens the store again, as the error tells it to, with
 * nothing acknowledged lost. Needs root (mount, a loop device) and e2fsprogs, like the fault
 * tests in `tests/faults`.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { BeamClawError } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";

const run = promisify(execFile);

let root: string;
let image: string;
let mnt: string;
let mounted = false;
const stores: FsStore[] = [];

async function mount(): Promise<void> {
  await run("mount", ["-t", "ext4", "-o", "loop,errors=remount-ro", image, mnt]);
  mounted = true;
}

async function unmount(): Promise<void> {
  if (mounted) await run("umount", [mnt]);
  mounted = false;
}

/** Makes ext4 meet an error: it remounts itself read-only, open files included. */
async function failReadOnly(): Promise<void> {
  const { stdout } = await run("findmnt", ["-n", "-o", "SOURCE", "--target", mnt]);
  const device = path.basename(stdout.trim());
  expect(device).toMatch(/^loop\d+$/);
  await writeFile(`/sys/fs/ext4/${device}/trigger_fs_error`, "store-fs test\n");
}

/** Unmounts, checks the file system (`e2fsck -fy`: 0 clean, 1 corrected) and mounts it again. */
async function repair(): Promise<void> {
  await unmount();
  await run("e2fsck", ["-fy", image]).catch((error: { code?: unknown }) => {
    if (error.code !== 1) throw error;
  });
  await mount();
}

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "store-fs-ext4-"));
  image = path.join(root, "disk.img");
  mnt = path.join(root, "mnt");
  const handle = await open(image, "w");
  await handle.truncate(32 * 1024 * 1024);
  await handle.close();
  await run("mkfs.ext4", ["-q", "-F", image]);
  await mkdir(mnt);
  await mount();
});

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close().catch(() => {});
  if (mounted) await run("umount", ["-l", mnt]).catch(() => undefined);
  mounted = false;
  await rm(root, { recursive: true, force: true });
});

describe("the disk turns read-only under an open store", () => {
  it("close() rejects with a typed error naming the lock file, and the same process opens the store again after the repair", async () => {
    const dir = path.join(mnt, "store");
    const store = createFsStore({ dir });
    stores.push(store);
    await store.open();
    await store.sessions.put({ key: "agent:a:s", agentId: "a", createdAt: 1, updatedAt: 1 });
    await store.transcripts.append("agent:a:s", [{ n: 1 }]);

    await failReadOnly();
    const failed = await store.transcripts.append("agent:a:s", [{ n: 2 }]).catch((e) => e);
    expect(BeamClawError.isInstance(failed)).toBe(true);
    expect((failed as BeamClawError).code).toBe("STORE_UNAVAILABLE");

    const closing = await store.close().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(BeamClawError.isInstance(closing), String(closing)).toBe(true);
    expect((closing as BeamClawError).code).toBe("STORE_UNAVAILABLE");
    expect((closing as Error).message).toContain("store.lock");
    // Every file is closed: the file system can be unmounted.
    await repair();
    // The lock file is still there (it could not be removed): it is this process's own.
    expect(JSON.parse(await readFile(path.join(dir, "store.lock"), "utf8")).pid).toBe(process.pid);

    await store.open();
    expect(store.recoveries.map((r) => r.kind)).toContain("stale-lock-broken");
    expect(await store.sessions.get("agent:a:s")).toMatchObject({ updatedAt: 1 });
    expect((await store.transcripts.read("agent:a:s")).map((r) => r.entry)).toEqual([{ n: 1 }]);
    expect(await store.transcripts.append("agent:a:s", [{ n: 2 }])).toBe(2);
    await store.close();
  });

  it("a lock held by another open store of this process is still refused", async () => {
    const dir = path.join(mnt, "store");
    const first = createFsStore({ dir });
    stores.push(first);
    await first.open();
    const second = createFsStore({ dir });
    stores.push(second);
    const error = await second.open().catch((e: unknown) => e);
    expect((error as BeamClawError).code).toBe("STORE_LOCKED");
    await first.close();
    await second.open();
    await second.close();
  });
});
