/**
 * The stdio transport of {@link McpToolServer}: the MCP SDK's framing (newline-delimited
 * JSON-RPC, its `ReadBuffer`), over a server process that leads a process group of its own, so
 * that closing ends the server *and everything it started*. A server run through a launcher
 * (`npx -y <package>`, `uvx`, a shell script) is a tree of processes: the SDK's own transport
 * signals only the launcher and then stops waiting, and the real server can stay behind,
 * holding its files and ports, after every `stop()`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

/** How a stdio server's process is run and ended. */
export interface ProcessGroupStdioOptions {
  command: string;
  args?: string[];
  /** Merged over the MCP SDK's safe default environment. */
  env?: Record<string, string>;
  cwd?: string;
  /**
   * How long `close()` waits for the server to exit by itself once its stdin is closed, then
   * again after `SIGTERM` to its process group, before `SIGKILL`. Default 2 000 ms (the SDK's).
   */
  closeGraceMs?: number;
}

const DEFAULT_CLOSE_GRACE_MS = 2_000;
/** How long `close()` waits, after `SIGKILL`, for the processes to be gone. */
const KILL_WAIT_MS = 2_000;
const POLL_MS = 25;

/**
 * Process groups of servers whose transport has not closed yet: killed if this process exits
 * without closing them (`process.exit()` in a host), so that none outlives it.
 */
const liveGroups = new Set<number>();
function killLiveGroups(): void {
  for (const group of liveGroups) signalGroup(group, "SIGKILL");
}

function track(group: number): void {
  if (liveGroups.size === 0) process.on("exit", killLiveGroups);
  liveGroups.add(group);
}

function untrack(group: number): void {
  if (!liveGroups.delete(group)) return;
  if (liveGroups.size === 0) process.off("exit", killLiveGroups);
}

/** Sends `signal` to every process of `group`; false when none is left. */
function signalGroup(group: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-group, signal);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether `group` has a process that still runs. On Linux a process that has exited but not
 * been reaped (a zombie: a container whose PID 1 does not reap orphans) still answers signal
 * 0, so there the group's members are read from `/proc` and zombies do not count.
 */
export function groupAlive(group: number): boolean {
  if (!signalGroup(group, 0)) return false;
  if (process.platform !== "linux") return true;
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return true;
  }
  for (const entry of entries) {
    const code = entry.charCodeAt(0);
    if (code < 48 || code > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "latin1");
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) !== group) continue;
    if (fields[0] !== "Z" && fields[0] !== "X") return true;
  }
  return false;
}

/**
 * An MCP client transport over a child process's stdin and stdout, the child leading a new
 * process group (POSIX). `close()` closes its stdin, waits `closeGraceMs` for it to exit, then
 * sends `SIGTERM` to the whole group, waits again, then `SIGKILL`, and resolves once no process
 * of the group runs (or `SIGKILL` had 2 s to work). When the server exits by itself, what it
 * left running in its group is ended the same way.
 */
export class ProcessGroupStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  readonly #options: ProcessGroupStdioOptions;
  readonly #readBuffer = new ReadBuffer();
  #child: ChildProcess | undefined;
  #group: number | undefined;
  #exited = false;
  #closing: Promise<void> | undefined;
  #closed = false;

  constructor(options: ProcessGroupStdioOptions) {
    this.#options = options;
  }

  /** The server process's id (also its process group's), once started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(): Promise<void> {
    if (this.#child !== undefined) {
      return Promise.reject(new Error("ProcessGroupStdioTransport already started"));
    }
    const options = this.#options;
    return new Promise<void>((resolve, reject) => {
      const child = spawn(options.command, options.args ?? [], {
        env: { ...getDefaultEnvironment(), ...options.env },
        stdio: ["pipe", "pipe", "ignore"],
        shell: false,
        detached: true,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      });
      this.#child = child;
      // The pid is known at once when the process was made; a stop before "spawn" still ends it.
      if (child.pid !== undefined) {
        this.#group = child.pid;
        track(child.pid);
      }
      child.once("error", (error) => {
        // Spawning failed (ENOENT, EACCES): no process, nothing to end.
        this.#exited = true;
        reject(error);
        this.onerror?.(error);
        this.#finish();
      });
      child.once("spawn", () => resolve());
      child.once("exit", () => {
        this.#exited = true;
        // The server is gone: what it left in its group goes too (and then its pipes close).
        void this.close();
      });
      child.once("close", () => this.#finish());
      child.stdin?.on("error", (error) => this.onerror?.(error));
      child.stdout?.on("error", (error) => this.onerror?.(error));
      child.stdout?.on("data", (chunk: Buffer) => {
        try {
          this.#readBuffer.append(chunk);
          for (;;) {
            let message: JSONRPCMessage | null;
            try {
              message = this.#readBuffer.readMessage();
            } catch (error) {
              this.onerror?.(error as Error); // one bad line; the next may be fine
              continue;
            }
            if (message === null) break;
            this.onmessage?.(message);
          }
        } catch (error) {
          this.onerror?.(error as Error);
          void this.close();
        }
      });
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.#child?.stdin;
    if (stdin == null || this.#closing !== undefined || !stdin.writable) {
      return Promise.reject(new Error("Not connected"));
    }
    return new Promise<void>((resolve) => {
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once("drain", resolve);
    });
  }

  /** Ends the server's process group (see the class); one close, awaited by every caller. */
  close(): Promise<void> {
    this.#closing ??= this.#end();
    return this.#closing;
  }

  async #end(): Promise<void> {
    const child = this.#child;
    const group = this.#group;
    if (child === undefined) {
      this.#finish();
      return;
    }
    try {
      child.stdin?.end();
    } catch {
      // already closed
    }
    if (group !== undefined) {
      const grace = this.#options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
      const done = () => this.#exited && !groupAlive(group);
      // A server exits when its stdin closes; then only its leftovers are signalled.
      if (!(await waitUntil(() => this.#exited, grace)) || groupAlive(group)) {
        signalGroup(group, "SIGTERM");
        if (!(await waitUntil(done, grace))) {
          signalGroup(group, "SIGKILL");
          await waitUntil(done, KILL_WAIT_MS);
        }
      }
      untrack(group);
    }
    // A process outside the group (one that left it) may still hold the pipes: not ours to wait for.
    child.stdout?.destroy();
    child.stdin?.destroy();
    this.#readBuffer.clear();
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onclose?.();
  }
}

/** Resolves true as soon as `test()` holds, false after `ms` (checked every 25 ms). */
async function waitUntil(test: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return true;
}
