/**
 * Who owns a lock, beyond its pid: the owner's start time (Linux, `/proc/<pid>/stat` field 22)
 * tells a pid reused without a reboot (a restarted container's pid 1) from the process that
 * took the lock, and the nonce tells this process's own locks from others' even when the boot
 * id changed under it (a checkpoint/restore). Owners are real child processes; a reused pid is
 * a live child's pid written into a lock whose start time is another process's.
 */
import fs, { readFile, readlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { StoreError } from "@beamclaw/core";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { parseStartTime } from "../src/lock-file.js";
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

beforeAll(async () => {
  module = await storeModule();
});

afterAll(async () => {
  await removeStoreModule();
});

afterEach(async () => {
  vi.restoreAllMocks();
  for (const child of children.splice(0)) await child.kill();
  for (const store of stores.splice(0)) await store.close().catch(() => {});
  await removeDir(dir);
});

/** A child process that opens the store in `dir` and holds it (`opened <pid>`). */
function holder(): LineProcess {
  const child = new LineProcess(fixture("open-store.mjs"), [dir], { STORE_FS_MODULE: module });
  children.push(child);
  return child;
}

/**
 * A `node -e` child, unrelated to any store, that prints `ready` and stays alive until killed;
 * `title` becomes its command name (the `comm` field of `/proc/<pid>/stat`).
 */
async function bystander(title?: string): Promise<number> {
  const code = `${title === undefined ? "" : `process.title = ${JSON.stringify(title)};`}
    setInterval(() => {}, 60_000); process.stdout.write("ready\\n");`;
  const child = new LineProcess("-e", [code]);
  children.push(child);
  await child.waitFor((l) => l === "ready", "the bystander to start");
  return child.child.pid!;
}

/** A child that sets its command name to `title`, then opens and holds the store in `dir`. */
async function titledHolder(title: string): Promise<number> {
  const code = `process.title = ${JSON.stringify(title)};
    const { createFsStore } = await import(process.env.STORE_FS_MODULE);
    const store = createFsStore({ dir: process.argv[1] });
    await store.open();
    setInterval(() => {}, 60_000);
    process.stdout.write("opened\\n");`;
  const child = new LineProcess("--input-type=module", ["-e", code, dir], {
    STORE_FS_MODULE: module,
  });
  children.push(child);
  await child.waitFor((l) => l === "opened", "the titled holder to open");
  return child.child.pid!;
}

/** Field 22 of `/proc/<pid>/stat`, read here independently of the code under test. */
async function procStartTime(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[19]);
}

async function bootId(): Promise<string> {
  return (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
}

function lockFile(): string {
  return path.join(dir, "store.lock");
}

async function readLock(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(lockFile(), "utf8")) as Record<string, unknown>;
}

async function writeLock(owner: Record<string, unknown>): Promise<void> {
  await writeFile(lockFile(), `${JSON.stringify(owner)}\n`);
}

function store(): FsStore {
  const s = createFsStore({ dir, fsync: false });
  stores.push(s);
  return s;
}

async function rejection(promise: Promise<unknown>): Promise<StoreError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!StoreError.isInstance(error)) throw new Error(`expected a StoreError, got ${String(error)}`);
  return error;
}

/**
 * The lock record a live process `pid` of this boot and pid namespace would write, with its
 * real start time; `changes` override fields (`undefined` drops one).
 */
async function lockOf(
  pid: number,
  changes: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const owner: Record<string, unknown> = {
    pid,
    hostname: os.hostname(),
    bootId: await bootId(),
    startTime: await procStartTime(pid),
    pidNamespace: await readlink("/proc/self/ns/pid"),
    since: "2026-01-01T00:00:00.000Z",
    nonce: "a-lock",
    ...changes,
  };
  for (const [key, value] of Object.entries(owner)) if (value === undefined) delete owner[key];
  await writeLock(owner);
  return owner;
}

/** Opening is refused with `STORE_LOCKED` and leaves `owner`'s lock as it was. */
async function expectRefused(owner: Record<string, unknown>): Promise<StoreError> {
  const error = await rejection(store().open());
  expect(error.code).toBe("STORE_LOCKED");
  expect(error.message).toContain(`process ${owner.pid} on host`);
  expect(await readLock()).toEqual(owner);
  return error;
}

/** Opening succeeds, and reports the one stale lock it broke: the report's detail. */
async function expectBroken(): Promise<string> {
  const next = store();
  await next.open();
  expect(await next.kv.get("before")).toBe("the restart");
  const broken = next.recoveries.filter((r) => r.kind === "stale-lock-broken");
  expect(broken).toHaveLength(1);
  expect(await readLock()).toMatchObject({ pid: process.pid });
  return broken[0]!.detail;
}

/** A closed store in a fresh directory, holding one key. */
async function freshStore(): Promise<void> {
  dir = await tempDir();
  const setup = createFsStore({ dir, fsync: false });
  await setup.open();
  await setup.kv.set("before", "the restart");
  await setup.close();
}

describe("the lock names its owner's start time", () => {
  it("a holder's lock records the start time and pid namespace /proc shows for it, and others are refused", async () => {
    dir = await tempDir();
    const opened = await holder().waitFor((l) => l.startsWith("opened"), "the holder to open");
    const pid = Number(opened.split(" ")[1]);
    const lock = await readLock();
    expect(lock).toMatchObject({
      pid,
      startTime: await procStartTime(pid),
      pidNamespace: await readlink(`/proc/${pid}/ns/pid`),
    });
    await expectRefused(lock);
  });

  it("a holder whose command name holds spaces and parentheses is still recognised as alive", async () => {
    dir = await tempDir();
    const title = "x) S 1 2 (y z";
    const pid = await titledHolder(title);
    expect(await readFile(`/proc/${pid}/stat`, "utf8")).toContain(`(${title})`);
    const lock = await readLock();
    expect(lock.startTime).toBe(await procStartTime(pid));
    await expectRefused(lock);
  });

  it("parses field 22 after the last ')' and rejects malformed lines", () => {
    const tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20";
    expect(parseStartTime(`42 (node) ${tail}\n`)).toBe(987654);
    expect(parseStartTime(`42 (a) (b) c) ${tail}`)).toBe(987654);
    expect(parseStartTime(`42 (x) S 1 2 (y z) ${tail}`)).toBe(987654);
    expect(parseStartTime("42 (node) S 1 2 3")).toBeUndefined();
    expect(parseStartTime(`42 node ${tail}`)).toBeUndefined();
    expect(parseStartTime(`42 (node) ${tail.replace("987654", "-1")}`)).toBeUndefined();
    expect(parseStartTime(`42 (node) ${tail.replace("987654", "99999999999999999999")}`)).toBe(
      undefined,
    );
    expect(parseStartTime("")).toBeUndefined();
  });
});

describe("a live pid that is not the lock's owner (reused without a reboot)", () => {
  it("the lock of a killed holder, whose pid an unrelated live process has now, is stale: broken and reported", async () => {
    await freshStore();
    const first = holder();
    await first.waitFor((l) => l.startsWith("opened"), "the holder to open");
    const dead = await readLock();
    await first.kill();
    // The pid is reused: the dead holder's lock now names a live, unrelated process.
    const pid = await bystander();
    expect(await procStartTime(pid)).not.toBe(dead.startTime);
    await writeLock({ ...dead, pid });

    const detail = await expectBroken();
    expect(detail).toContain(`process ${pid}`);
    expect(detail).toContain("its pid now another process's");
    // The bystander is untouched.
    expect(() => process.kill(pid, 0)).not.toThrow();
  });

  it("this process's own pid with another start time (a restarted container's pid 1) is stale", async () => {
    await freshStore();
    await lockOf(process.pid, {
      startTime: (await procStartTime(process.pid)) - 1,
      nonce: "the-previous-pid-1",
    });
    const detail = await expectBroken();
    expect(detail).toContain("its pid now another process's");
    expect(detail).not.toContain("whose close() could not delete it");
  });

  it("a lock naming the live process's own start time is refused and left as it was", async () => {
    await freshStore();
    await expectRefused(await lockOf(await bystander()));
  });

  it("a start time taken in another pid namespace is not judged: the live pid keeps the lock", async () => {
    await freshStore();
    const pid = await bystander();
    await expectRefused(
      await lockOf(pid, {
        startTime: (await procStartTime(pid)) + 1,
        pidNamespace: "pid:[1]",
        nonce: "another-container",
      }),
    );
  });

  it("a lock of an earlier version (no start time) whose pid is alive is still refused", async () => {
    await freshStore();
    await expectRefused(
      await lockOf(await bystander(), {
        startTime: undefined,
        pidNamespace: undefined,
        since: "then",
        nonce: "old-format",
      }),
    );
  });

  it("a live pid under another boot id is stale, whatever its start time", async () => {
    await freshStore();
    const pid = await bystander();
    await lockOf(pid, { bootId: "00000000-0000-4000-8000-000000000000" });
    const detail = await expectBroken();
    expect(detail).toContain(`process ${pid}`);
    expect(detail).toContain("before the machine restarted");
  });
});

describe("this process's own lock after the boot id changed under it (checkpoint/restore)", () => {
  /** What a restored process finds in its lock: another boot id and start time, same nonce. */
  async function restoreUnder(): Promise<Record<string, unknown>> {
    const lock = await readLock();
    const restored = {
      ...lock,
      bootId: "00000000-0000-4000-8000-000000000000",
      startTime: Number(lock.startTime) + 1,
    };
    await writeLock(restored);
    return restored;
  }

  it("a second FsStore of this process is refused: the open store keeps its lock", async () => {
    dir = await tempDir();
    const first = store();
    await first.open();
    await first.kv.set("k", 1);
    const restored = await restoreUnder();

    const error = await rejection(store().open());
    expect(error.code).toBe("STORE_LOCKED");
    expect(error.message).toContain("this process");
    expect(await readLock()).toEqual(restored);
    await first.kv.set("k", 2);
    expect(await first.kv.get("k")).toBe(2);
    await first.close();
    await expect(readFile(lockFile(), "utf8")).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("a lock a store of this process could not delete is taken over and reported as this process's", async () => {
    dir = await tempDir();
    const first = store();
    await first.open();
    const realRm = fs.rm.bind(fs);
    vi.spyOn(fs, "rm").mockImplementation(async (file, options) => {
      if (file === lockFile()) {
        throw Object.assign(new Error(`EROFS: read-only file system, unlink '${file}'`), {
          code: "EROFS",
        });
      }
      return realRm(file, options);
    });
    const closing = await first.close().then(
      () => undefined,
      (e: unknown) => e,
    );
    vi.restoreAllMocks();
    expect(StoreError.isInstance(closing) && closing.code).toBe("STORE_UNAVAILABLE");
    await restoreUnder();

    await first.open();
    const detail = first.recoveries.find((r) => r.kind === "stale-lock-broken")!.detail;
    expect(detail).toContain("left by a store of this process");
    expect(detail).not.toContain("before the machine restarted");
  });
});
