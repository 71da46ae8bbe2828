/**
 * The single-writer lock: `store.lock` in the store directory, holding the owner's pid, host
 * name, start time and a random nonce, created with `link(2)` (atomic, fails if the file
 * exists) from a fully written temp file, so no reader ever sees it half-written.
 *
 * A second opener reads it and refuses with `STORE_LOCKED`, naming the pid and directory,
 * unless the owner is gone: same host, and either `process.kill(pid, 0)` says no such process,
 * or the lock names a boot of the machine other than the current one (a lock left by a power
 * loss, whose pid may belong to any process after the restart, this one included), or the
 * process that has the pid now started at another time than the one that took the lock (Linux:
 * the pid was reused without a reboot, say by a restarted container's pid 1). A lock of a store
 * of this process is told by its nonce first, so this process never takes its own live lock
 * for stale, even when the boot id changed under it (a checkpoint/restore). A
 * stale lock is moved aside with `rename(2)` and checked to be the very file that was judged
 * stale (by its nonce) before a new one is created, so two processes breaking the same stale
 * lock at once cannot both win.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { StoreError } from "@beamclaw/core";
import { errnoCode, type FileSystem } from "./files.js";

/** File name of the lock, inside the store directory. */
export const LOCK_FILE = "store.lock";

/** What the lock file holds. */
export interface LockOwner {
  pid: number;
  hostname: string;
  /**
   * The kernel's boot id when the lock was taken (Linux; absent elsewhere and in locks of
   * earlier versions): a lock of an earlier boot is stale whatever its pid.
   */
  bootId?: string;
  /**
   * The owner process's start time (Linux: field 22 of `/proc/<pid>/stat`, clock ticks since
   * boot; absent elsewhere and in locks of earlier versions): a live process with the lock's
   * pid and another start time is not the owner, the pid was reused.
   */
  startTime?: number;
  /**
   * The owner's pid namespace (Linux: the `/proc/self/ns/pid` link, `pid:[inode]`). Its pid
   * and start time are judged only by a process in the same namespace: elsewhere the pid names
   * another process (another container sharing the directory), so the lock is refused as before.
   */
  pidNamespace?: string;
  /** ISO time the lock was taken. */
  since: string;
  nonce: string;
}

/** A lock this process holds. */
export interface HeldLock {
  file: string;
  owner: LockOwner;
  /** The stale lock that was broken to take this one, if any. */
  broke?: LockOwner | { unreadable: string };
  /** Why {@link HeldLock.broke} was judged stale (set with it). */
  staleBecause?: StaleReason;
}

/**
 * Why a lock was stale: a store of this process closed without deleting it (`released-here`),
 * it names an earlier boot (`earlier-boot`), no process has its pid (`owner-exited`), the
 * process with its pid started at another time than its owner (`pid-reused`), or it could not
 * be read (`unreadable`).
 */
export type StaleReason =
  | "released-here"
  | "earlier-boot"
  | "owner-exited"
  | "pid-reused"
  | "unreadable";

/**
 * Nonces of the locks this process let go of (`releaseLock`), shared by every copy of this
 * module in the process (made on first use: importing the package leaves no global). A lock file with one of them was left behind by a store of this
 * process that closed without managing to delete it (a read-only disk): stale, though its pid
 * is alive. A lock of this pid with any other nonce (another open store here, or a process in
 * another pid namespace with the same pid) is judged as before.
 */
function released(): Set<string> {
  return nonceSet("released-locks");
}

/**
 * Nonces of the locks the stores of this process hold now (shared like {@link released}): a
 * lock with this process's pid and another nonce is not this process's.
 */
function held(): Set<string> {
  return nonceSet("held-locks");
}

function nonceSet(name: string): Set<string> {
  const key = Symbol.for(`@beamclaw/store-fs:${name}`);
  const registry = globalThis as Record<symbol, unknown>;
  if (!(registry[key] instanceof Set)) registry[key] = new Set<string>();
  return registry[key] as Set<string>;
}

/** The current boot's id (Linux), `undefined` where the kernel does not tell. */
async function currentBootId(): Promise<string | undefined> {
  if (process.platform !== "linux") return undefined;
  try {
    const id = (await fs.readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
    return id.length > 0 ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The start time of `pid` (field 22 of `/proc/<pid>/stat`, clock ticks since boot), or
 * `undefined` where it cannot be read (not Linux, no `/proc`, the process is gone or hidden).
 */
async function startTimeOf(pid: number | "self"): Promise<number | undefined> {
  if (process.platform !== "linux") return undefined;
  try {
    return parseStartTime(await fs.readFile(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Field 22 (`starttime`) of a `/proc/<pid>/stat` line, `undefined` if the line is malformed.
 * The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so
 * the fields are counted after the last `)`.
 */
export function parseStartTime(stat: string): number | undefined {
  const end = stat.lastIndexOf(")");
  if (end < 0) return undefined;
  // After the `)`: field 3 (state) first, so field 22 is the 20th.
  const field = stat
    .slice(end + 1)
    .trim()
    .split(/\s+/)[19];
  if (field === undefined || !/^\d+$/.test(field)) return undefined;
  const value = Number(field);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** This process's pid namespace (Linux), `undefined` where the kernel does not tell. */
async function currentPidNamespace(): Promise<string | undefined> {
  if (process.platform !== "linux") return undefined;
  try {
    return await fs.readlink("/proc/self/ns/pid");
  } catch {
    return undefined;
  }
}

/** Whether `owner` names a lock a store of this process holds now (by its nonce). */
function heldHere(owner: LockOwner): boolean {
  return owner.pid === process.pid && held().has(owner.nonce);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errnoCode(error) !== "ESRCH";
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockOwner>;
    if (
      typeof value.pid === "number" &&
      Number.isInteger(value.pid) &&
      value.pid > 0 &&
      typeof value.hostname === "string" &&
      typeof value.nonce === "string"
    ) {
      const owner: LockOwner = {
        pid: value.pid,
        hostname: value.hostname,
        since: typeof value.since === "string" ? value.since : "an unknown time",
        nonce: value.nonce,
      };
      if (typeof value.bootId === "string") owner.bootId = value.bootId;
      if (typeof value.startTime === "number" && Number.isSafeInteger(value.startTime)) {
        owner.startTime = value.startTime;
      }
      if (typeof value.pidNamespace === "string") owner.pidNamespace = value.pidNamespace;
      return owner;
    }
  } catch {
    // fall through
  }
  return undefined;
}

function lockedError(dir: string, file: string, owner: LockOwner, reason: string): StoreError {
  const who = heldHere(owner)
    ? `this process (pid ${owner.pid}; another FsStore instance opened it since ${owner.since})`
    : `process ${owner.pid} on host ${owner.hostname} (since ${owner.since})`;
  return new StoreError(
    "STORE_LOCKED",
    `store directory ${dir} is locked by ${who}: only one process may write a store-fs directory. ${reason} If you are sure that process is gone, delete ${file}.`,
  );
}

/**
 * Takes the lock of `dir` or rejects with `STORE_LOCKED`.
 *
 * @param fileSystem the store's file settings (its temp directory must exist)
 */
export async function acquireLock(dir: string, fileSystem: FileSystem): Promise<HeldLock> {
  const file = path.join(dir, LOCK_FILE);
  const [bootId, startTime, pidNamespace] = await Promise.all([
    currentBootId(),
    startTimeOf("self"),
    currentPidNamespace(),
  ]);
  const owner: LockOwner = {
    pid: process.pid,
    hostname: os.hostname(),
    ...(bootId === undefined ? {} : { bootId }),
    ...(startTime === undefined ? {} : { startTime }),
    ...(pidNamespace === undefined ? {} : { pidNamespace }),
    since: new Date().toISOString(),
    nonce: randomUUID(),
  };
  let stale: Stale | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const temp = fileSystem.tempPath("lock");
    await fs.writeFile(temp, `${JSON.stringify(owner)}\n`, { flag: "wx", mode: 0o644 });
    try {
      if (fileSystem.fsync) {
        const handle = await fs.open(temp, "r");
        await handle.sync().finally(() => handle.close());
      }
      await fs.link(temp, file);
      held().add(owner.nonce);
      try {
        await fileSystem.syncDir(dir);
      } catch (error) {
        // Not taken after all: leave no lock that would refuse the next opener here.
        held().delete(owner.nonce);
        await fs.rm(file, { force: true }).catch(() => {});
        throw error;
      }
      return stale === undefined
        ? { file, owner }
        : { file, owner, broke: stale.broke, staleBecause: stale.why };
    } catch (error) {
      // ENOENT: the lock holder emptied the temp directory under us (it does so on open).
      if (errnoCode(error) === "ENOENT") continue;
      if (errnoCode(error) !== "EEXIST") throw error;
    } finally {
      await fs.rm(temp, { force: true });
    }
    stale = (await breakIfStale(dir, file, fileSystem)) ?? stale;
  }
  throw new StoreError(
    "STORE_LOCKED",
    `store directory ${dir}: could not take ${file} after 5 attempts (other processes keep taking it)`,
  );
}

/** A stale lock that was moved aside, and why it was stale. */
interface Stale {
  broke: NonNullable<HeldLock["broke"]>;
  why: StaleReason;
}

/**
 * Why the lock of `owner` (on this host) is stale, or `undefined` if its owner may be alive.
 * Its nonce comes first: a lock a store of this process holds is alive whatever its boot id
 * or start time say (both change under a process restored from a checkpoint).
 */
async function staleBecause(owner: LockOwner): Promise<StaleReason | undefined> {
  if (heldHere(owner)) return undefined;
  if (owner.pid === process.pid && released().has(owner.nonce)) return "released-here";
  // Taken before the machine last restarted: its owner is gone, whoever has its pid now.
  if (owner.bootId !== undefined) {
    const bootId = await currentBootId();
    if (bootId !== undefined && owner.bootId !== bootId) return "earlier-boot";
  }
  if (!isAlive(owner.pid)) return "owner-exited";
  // The pid is alive: is it still the owner? Only a process in the owner's pid namespace can
  // tell (elsewhere the pid is another process's), and only if the start time can be read.
  if (owner.startTime !== undefined && owner.pidNamespace !== undefined) {
    if (owner.pidNamespace === (await currentPidNamespace())) {
      const startTime = await startTimeOf(owner.pid);
      if (startTime !== undefined && startTime !== owner.startTime) return "pid-reused";
    }
  }
  return undefined;
}

/** Moves a stale lock aside, or throws `STORE_LOCKED` if its owner is alive. */
async function breakIfStale(
  dir: string,
  file: string,
  fileSystem: FileSystem,
): Promise<Stale | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined; // released meanwhile: try again
    throw error;
  }
  const current = parseOwner(text);
  let why: StaleReason = "unreadable";
  if (current !== undefined) {
    if (current.hostname !== os.hostname() && !heldHere(current)) {
      throw lockedError(
        dir,
        file,
        current,
        "It was taken on another host, so this process cannot tell whether its owner is alive.",
      );
    }
    const reason = await staleBecause(current);
    if (reason === undefined) {
      throw lockedError(dir, file, current, aliveReason(current));
    }
    why = reason;
  }
  // Stale (owner dead), or unreadable (this store never writes a partial lock: it is not ours
  // to trust). Move it aside, then make sure what was moved is what was judged.
  const aside = fileSystem.tempPath("stale-lock");
  try {
    await fs.rename(file, aside);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw error;
  }
  const moved = await fs.readFile(aside, "utf8").catch(() => "");
  if (moved !== text) {
    // Another process replaced the stale lock between the read and the rename: put its live
    // lock back (link fails if yet another one appeared) and give up.
    await fs.link(aside, file).catch(() => {});
    await fs.rm(aside, { force: true });
    const owner = parseOwner(moved);
    if (owner !== undefined) throw lockedError(dir, file, owner, "It took the lock just now.");
    throw new StoreError(
      "STORE_LOCKED",
      `store directory ${dir} is being locked by another process`,
    );
  }
  await fs.rm(aside, { force: true });
  await fileSystem.syncDir(dir);
  return { broke: current ?? { unreadable: text.slice(0, 200) }, why };
}

/** Why the owner of a lock judged alive is taken for alive, for the `STORE_LOCKED` message. */
function aliveReason(owner: LockOwner): string {
  if (owner.pid !== process.pid || heldHere(owner)) return "That process is running.";
  return "Its pid is this process's, but no store of this process holds it: it was taken by a process in another pid namespace (another container sharing the directory), or by an earlier process that had this pid and is gone (a restarted container).";
}

/**
 * Checks, after the opener has emptied the temp directory, that `lock` is still in place, and
 * puts it back if it is gone. Another opener breaking the same stale lock may have judged it
 * stale a moment before this one took the lock, and moved this one's fresh lock into the temp
 * directory, which it then finds changed and would put back, were the file not deleted with
 * the temp files in between.
 *
 * @throws StoreError `STORE_LOCKED` if another process holds the lock now.
 */
export async function confirmLock(lock: HeldLock, fileSystem: FileSystem): Promise<void> {
  const dir = path.dirname(lock.file);
  for (let attempt = 0; attempt < 5; attempt++) {
    let text: string;
    try {
      text = await fs.readFile(lock.file, "utf8");
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error;
      const temp = fileSystem.tempPath("lock");
      await fs.writeFile(temp, `${JSON.stringify(lock.owner)}\n`, { flag: "wx", mode: 0o644 });
      try {
        if (fileSystem.fsync) {
          const handle = await fs.open(temp, "r");
          await handle.sync().finally(() => handle.close());
        }
        await fs.link(temp, lock.file);
        await fileSystem.syncDir(dir);
        return;
      } catch (linkError) {
        if (errnoCode(linkError) !== "EEXIST") throw linkError;
        continue; // someone took it meanwhile: see whose it is
      } finally {
        await fs.rm(temp, { force: true });
      }
    }
    const owner = parseOwner(text);
    if (owner?.nonce === lock.owner.nonce) return;
    if (owner !== undefined) throw lockedError(dir, lock.file, owner, "It took the lock just now.");
    break;
  }
  throw new StoreError("STORE_LOCKED", `store directory ${dir} is being locked by another process`);
}

/**
 * Removes the lock if it is still this process's (same nonce). Should that fail, the lock is
 * released all the same as far as this process goes: its next opener here takes it over.
 */
export async function releaseLock(lock: HeldLock, fileSystem: FileSystem): Promise<void> {
  const nonce = lock.owner.nonce;
  held().delete(nonce);
  released().add(nonce);
  let text: string;
  try {
    text = await fs.readFile(lock.file, "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") {
      released().delete(nonce);
      return;
    }
    throw error;
  }
  if (parseOwner(text)?.nonce !== nonce) {
    released().delete(nonce);
    return;
  }
  await fs.rm(lock.file, { force: true });
  // Gone: nothing is left to take over (only a lock file left behind needs remembering).
  released().delete(nonce);
  await fileSystem.syncDir(path.dirname(lock.file));
}
