/**
 * The stdio transport of {@link McpToolServer}: the MCP SDK's framing (newline-delimited
 * JSON-RPC, its `ReadBuffer`), over a server process that leads a process group of its own, so
 * that closing ends the server *and everything it started*. A server run through a launcher
 * (`npx -y <package>`, `uvx`, a shell script) is a tree of processes: the SDK's own transport
 * signals only the launcher and then stops waiting, and the real server can stay behind,
 * holding its files and ports, after every `stop()`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { ProcessTree } from "@beamclaw/core";
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
   * again after `SIGTERM` to its processes, before `SIGKILL`. Default 2 000 ms (the SDK's).
   */
  closeGraceMs?: number;
}

const DEFAULT_CLOSE_GRACE_MS = 2_000;
/** How long `close()` waits, after `SIGKILL`, for the processes to be gone. */
const KILL_WAIT_MS = 2_000;
const POLL_MS = 25;

/**
 * Process trees of servers whose transport has not closed yet: killed if this process exits
 * without closing them (`process.exit()` in a host), so that none outlives it.
 */
const liveTrees = new Set<ProcessTree>();
function killLiveTrees(): void {
  for (const tree of liveTrees) tree.signal("SIGKILL");
}

function track(tree: ProcessTree): void {
  if (liveTrees.size === 0) process.on("exit", killLiveTrees);
  liveTrees.add(tree);
}

function untrack(tree: ProcessTree): void {
  if (!liveTrees.delete(tree)) return;
  if (liveTrees.size === 0) process.off("exit", killLiveTrees);
}

/**
 * An MCP client transport over a child process's stdin and stdout, the child leading a new
 * session and process group (POSIX), followed as a `ProcessTree` from `@beamclaw/core` (the
 * group, the session, and descendants that left them). `close()` closes its stdin, waits
 * `closeGraceMs` for it to exit, then sends `SIGTERM` to the whole tree, waits again, then
 * `SIGKILL`, and resolves once no process of the tree runs (or `SIGKILL` had 2 s to work).
 * When the server exits by itself, what it left running is ended the same way.
 */
export class ProcessGroupStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  readonly #options: ProcessGroupStdioOptions;
  readonly #readBuffer = new ReadBuffer();
  #child: ChildProcess | undefined;
  /** The server's processes: its group and session, and what left them. */
  #tree: ProcessTree | undefined;
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
        this.#tree = new ProcessTree(child.pid);
        track(this.#tree);
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
    const tree = this.#tree;
    if (child === undefined) {
      this.#finish();
      return;
    }
    try {
      child.stdin?.end();
    } catch {
      // already closed
    }
    if (tree !== undefined) {
      const grace = this.#options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
      const done = () => this.#exited && !tree.alive();
      // A server exits when its stdin closes; then only its leftovers are signalled.
      if (!(await waitUntil(() => this.#exited, grace)) || tree.alive()) {
        tree.signal("SIGTERM");
        if (!(await waitUntil(done, grace))) {
          tree.signal("SIGKILL");
          await waitUntil(done, KILL_WAIT_MS);
        }
      }
      untrack(tree);
    }
    // Whatever still holds the pipes (a process that survived SIGKILL's wait) is not waited for.
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
