/**
 * Everything one exec'd command started, so that killing it leaves nothing behind.
 *
 * A command is spawned `detached`, which makes its shell the leader of a new session and
 * process group; its children inherit both. On Linux the tree is read from `/proc`: every
 * live process in that group or session, every descendant of those, and every process seen
 * in the tree at an earlier scan that is still alive with the same start time (so that a
 * grandchild which called `setsid()` and lost its parent is still found, and a recycled pid
 * is not mistaken for it). Zombies count as gone: this machine's init may never reap them.
 * The leader's start time is read when the tree is made: once the leader's pid belongs to
 * another process, the group and the session are known to be empty (the kernel does not hand
 * out a pid that still names a group or session), and neither that pid nor its group is
 * signalled again, however long the tree is kept. Start times are counted in clock ticks
 * (1/100 s): a pid handed out again within the tick its first process started in could not be
 * told apart, which needs the whole pid range to wrap around in that time. A tree made with a
 * `marker` (an environment variable its leader was started with, which every process it starts
 * inherits) also finds, by that variable in `/proc/<pid>/environ`, a process that left the tree
 * before any scan could see it: a daemon that calls `setsid()` in a child whose parent exits at
 * once (`ssh-agent`, a double fork). Elsewhere the process group is all there is: `kill(-pgid)`.
 */
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";

/** The environment variable of a {@link ProcessTree}'s marker (see {@link ProcessTree.marker}). */
export const PROCESS_TREE_ENV = "BEAMCLAW_PROCESS_TREE";

/** Whether the environment of `pid` holds `entry` (`NAME=value`); false when unreadable. */
function environHas(pid: number, entry: string): boolean {
  let environ: Buffer;
  try {
    environ = readFileSync(`/proc/${pid}/environ`);
  } catch {
    return false; // exited meanwhile, or another user's
  }
  // A whole entry: the first one, or one right after the NUL that ends the one before.
  const first = Buffer.from(`${entry}\0`);
  if (environ.subarray(0, first.length).equals(first)) return true;
  return environ.includes(Buffer.from(`\0${entry}\0`));
}

interface ProcEntry {
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
  state: string;
  start: string;
}

function readProcTable(): ProcEntry[] | undefined {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return undefined;
  }
  const out: ProcEntry[] = [];
  for (const name of names) {
    if (!/^[0-9]+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    // "pid (comm) state ppid pgrp session ..."; comm may itself contain ") ".
    const close = stat.lastIndexOf(")");
    const fields = stat.slice(close + 2).split(" ");
    out.push({
      pid: Number(name),
      state: fields[0] ?? "?",
      ppid: Number(fields[1]),
      pgrp: Number(fields[2]),
      sid: Number(fields[3]),
      start: fields[19] ?? "",
    });
  }
  return out;
}

/** Start time (clock ticks since boot) of `pid`, or undefined when it cannot be read. */
function startOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

const hasProc = (() => {
  let cached: boolean | undefined;
  return () => {
    cached ??= readProcTable() !== undefined;
    return cached;
  };
})();

/**
 * The processes of one command spawned `detached` (the leader of a new session and process
 * group): what `exec` uses to end a command and everything it started, and what a host can use
 * for any child process it must not leave behind (`@beamclaw/mcp` does, for stdio servers).
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process";
 * import { ProcessTree } from "@beamclaw/core";
 *
 * const child = spawn("sh", ["-c", "sleep 60 & sleep 60"], { detached: true, stdio: "ignore" });
 * const tree = new ProcessTree(child.pid!);
 * tree.signal("SIGTERM"); // the shell and both sleeps
 * while (tree.alive()) await new Promise((resolve) => setTimeout(resolve, 25));
 * ```
 */
export class ProcessTree {
  /** pid → start time of every process seen in the tree. */
  readonly #known = new Map<number, string>();
  /**
   * Set once the tree has been seen empty. It never comes back, and from then on its pids
   * (the leader's above all, which the group and session ids equal) may belong to someone
   * else: nothing is scanned for or signalled again.
   */
  #gone = false;
  /** Start time of the leader when the tree was made (undefined without /proc). */
  readonly #leaderStart: string | undefined;
  /**
   * Set once the leader's pid is seen on a process that started at another time: the pid was
   * handed out again, so the group and session it named are empty and the pid is a stranger's.
   */
  #recycled = false;

  /** The `NAME=value` environment entry of the tree's processes, if it was made with one. */
  readonly #marker: string | undefined;

  /**
   * A new marker: an environment entry (`{ [PROCESS_TREE_ENV]: value }`) to start a process
   * with, and to give its tree (`new ProcessTree(pid, { marker: value })`), so that the tree
   * also finds what left it unseen (see the class).
   */
  static marker(): string {
    return randomUUID();
  }

  /**
   * @param leader pid of the spawned process (leader of its own group and session). Make the
   *   tree as soon as the process has started (its `spawn` event): the leader is then known by
   *   its start time, and a later process given the same pid is never taken for it.
   * @param options.marker the value of {@link PROCESS_TREE_ENV} the leader was started with
   *   ({@link ProcessTree.marker}): every live process that started after the leader and holds
   *   it is a member too.
   */
  constructor(
    readonly leader: number,
    options: { marker?: string } = {},
  ) {
    this.#leaderStart = hasProc() ? startOf(leader) : undefined;
    this.#marker =
      options.marker === undefined ? undefined : `${PROCESS_TREE_ENV}=${options.marker}`;
  }

  /** Live pids of the tree right now (and remembers them). Empty when none, or without /proc. */
  members(): number[] {
    if (this.#gone) return [];
    const table = readProcTable();
    if (table === undefined) return [];
    const byPid = new Map<number, ProcEntry>();
    const children = new Map<number, number[]>();
    for (const p of table) {
      byPid.set(p.pid, p);
      const list = children.get(p.ppid);
      if (list === undefined) children.set(p.ppid, [p.pid]);
      else list.push(p.pid);
    }
    const live = (p: ProcEntry | undefined): p is ProcEntry =>
      p !== undefined && p.state !== "Z" && p.state !== "X";
    const holder = byPid.get(this.leader);
    if (
      holder !== undefined &&
      this.#leaderStart !== undefined &&
      holder.start !== this.#leaderStart
    )
      this.#recycled = true;
    const queue: number[] = [];
    if (!this.#recycled) {
      for (const p of table) {
        if (live(p) && (p.pid === this.leader || p.pgrp === this.leader || p.sid === this.leader)) {
          queue.push(p.pid);
        }
      }
    }
    for (const [pid, start] of this.#known) {
      const p = byPid.get(pid);
      if (live(p) && p.start === start) queue.push(pid);
      else this.#known.delete(pid);
    }
    if (this.#marker !== undefined && this.#leaderStart !== undefined) {
      // Only processes that started no earlier than the leader can have inherited the marker;
      // the environment of those not already found is read.
      const since = Number(this.#leaderStart);
      for (const p of table) {
        if (!live(p) || Number(p.start) < since || this.#known.has(p.pid)) continue;
        if (p.pid === this.leader || p.pgrp === this.leader || p.sid === this.leader) continue;
        if (environHas(p.pid, this.#marker)) queue.push(p.pid);
      }
    }
    const found = new Set<number>();
    while (queue.length > 0) {
      const pid = queue.pop()!;
      if (found.has(pid)) continue;
      const p = byPid.get(pid);
      if (!live(p)) continue;
      found.add(pid);
      this.#known.set(pid, p.start);
      for (const child of children.get(pid) ?? []) queue.push(child);
    }
    if (found.size === 0) {
      this.#gone = true;
      this.#known.clear();
    }
    return [...found];
  }

  /** True while any process of the tree is alive. */
  alive(): boolean {
    if (this.#gone) return false;
    if (hasProc()) return this.members().length > 0;
    try {
      process.kill(-this.leader, 0);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EPERM") return true;
      this.#gone = true;
      return false;
    }
  }

  /** Sends `signal` to the process group and to every member of the tree. */
  signal(signal: NodeJS.Signals): void {
    if (this.#gone) return;
    // Look first: once the group's shell dies, a child that left the group is re-parented
    // to init and can no longer be found as its descendant.
    const members = this.members();
    if (this.#gone) return;
    if (!this.#recycled) {
      try {
        process.kill(-this.leader, signal);
      } catch {
        // the group is gone; members that left it are signalled below
      }
    }
    for (const pid of members) {
      try {
        process.kill(pid, signal);
      } catch {
        // exited meanwhile
      }
    }
  }
}
