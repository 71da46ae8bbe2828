/**
 * The stdio transport of {@link McpToolServer}: newline-delimited JSON-RPC (the MCP SDK's
 * parsing and its 10 MiB limit of a message, but lines of its own: a longer answer fails its
 * request, not the connection), over a server process that leads a process group of its own, so
 * that closing ends the server *and everything it started*. A server run through a launcher
 * (`npx -y <package>`, `uvx`, a shell script) is a tree of processes: the SDK's own transport
 * signals only the launcher and then stops waiting, and the real server can stay behind,
 * holding its files and ports, after every `stop()`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { ProcessTree } from "@beamclaw/core";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  deserializeMessage,
  STDIO_DEFAULT_MAX_BUFFER_SIZE,
  serializeMessage,
} from "@modelcontextprotocol/sdk/shared/stdio.js";
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
/** How much of the end of a server's stderr is kept, in bytes, for `exitReason`. */
const STDERR_TAIL_BYTES = 1_000;
/** How long `close()` waits, after `SIGKILL`, for the processes to be gone. */
const KILL_WAIT_MS = 2_000;
const POLL_MS = 25;
/**
 * How long a server whose stdout closed, or whose stdin closed or broke (EPIPE), has to exit
 * before it is taken for one that runs on without it (and ended, `its stdout closed while it
 * ran`, `its stdin closed while it ran (write EPIPE)`); one that exits within it is reported by
 * its exit (`exited with code 3`), its pipes having closed as it exited.
 */
const PIPE_EXIT_GRACE_MS = 500;

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
 * When the server exits by itself, what it left running is ended the same way. A server that
 * closes its stdin or its stdout while it runs on can take no request or give no answer again:
 * it is ended the same way too (the transport closes, `exitReason` saying why); one whose
 * stdout closes as it exits, or that a write finds gone (EPIPE) before its exit is seen, is
 * reported by its exit (if it comes within 500 ms), on any OS. Its stderr is
 * read all along and its end kept, for {@link ProcessGroupStdioTransport.exitReason}.
 */
export class ProcessGroupStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  readonly #options: ProcessGroupStdioOptions;
  readonly #lines = new Lines(STDIO_DEFAULT_MAX_BUFFER_SIZE);
  #child: ChildProcess | undefined;
  /** The server's processes: its group and session, and what left them. */
  #tree: ProcessTree | undefined;
  #exited = false;
  /** How the process exited, once it has. */
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Why this end closed the connection (a message it could not read), if it did. */
  #failure: string | undefined;
  /** The wait, after one of its pipes closed or broke, for its exit (see `#pipeGone`). */
  #exitWait: ReturnType<typeof setTimeout> | undefined;
  /** The first pipe that closed or broke, as the reason, should it run on (see `#pipeGone`). */
  #pipeFailure: string | undefined;
  /** Why the sends waiting fail, should it run on without its stdin (see `#pipeGone`). */
  #pipeDrop: { why: string; cause: Error | undefined } | undefined;
  /** The end of its stderr (the rest is read and dropped). */
  #stderrTail = Buffer.alloc(0);
  #closing: Promise<void> | undefined;
  #closed = false;
  /** The sends whose message the pipe took in part, waiting for "drain". */
  readonly #writes = new Set<(error?: Error) => void>();
  /** What waits for the transport to have closed (sends that failed, to fail after it). */
  readonly #afterClose: Array<() => void> = [];

  constructor(options: ProcessGroupStdioOptions) {
    this.#options = options;
  }

  /** The server process's id (also its process group's), once started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /**
   * How the server's process ended and the end of its stderr (`exited with code 1; its stderr
   * ended with: ...`), once it has exited; undefined before.
   */
  get exitReason(): string | undefined {
    if (this.#failure !== undefined) return `was stopped: ${this.#failure}`;
    const exit = this.#exit;
    if (exit === undefined) return undefined;
    const how =
      exit.signal === null ? `exited with code ${exit.code}` : `was ended by ${exit.signal}`;
    const tail = this.#stderrTail.toString("utf8").trim();
    return tail === "" ? how : `${how}; its stderr ended with: ${tail}`;
  }

  start(): Promise<void> {
    if (this.#child !== undefined) {
      return Promise.reject(new Error("ProcessGroupStdioTransport already started"));
    }
    const options = this.#options;
    return new Promise<void>((resolve, reject) => {
      const child = spawn(options.command, options.args ?? [], {
        env: { ...getDefaultEnvironment(), ...options.env },
        // stderr: read all along (a full pipe would stop the server), its end kept.
        stdio: ["pipe", "pipe", "pipe"],
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
      child.once("error", (spawnError: NodeJS.ErrnoException) => {
        // Spawning failed (ENOENT, EACCES): no process, nothing to end. A missing cwd is an
        // ENOENT that names the command, which is there.
        const error =
          spawnError.code === "ENOENT" && options.cwd !== undefined && !existsSync(options.cwd)
            ? new Error(`${spawnError.message} (its cwd ${options.cwd} does not exist)`, {
                cause: spawnError,
              })
            : spawnError;
        this.#exited = true;
        reject(error);
        this.onerror?.(error);
        this.#finish();
      });
      child.once("spawn", () => resolve());
      child.once("exit", (code, signal) => {
        this.#exited = true;
        clearTimeout(this.#exitWait);
        this.#exit = { code, signal };
        this.#dropWrites(`the server ${this.exitReason}`);
        // The server is gone: what it left in its group goes too (and then its pipes close).
        void this.close();
      });
      child.once("close", () => this.#finish());
      child.stdin?.on("drain", () => this.#drained());
      // Its stdin closed or broke (EPIPE) while it runs on: no request can reach it again, and
      // one just written would wait for an answer forever. Ended, so that the calls waiting fail
      // now and the next one starts it again. A server that exited breaks its stdin too, often
      // before the "exit" event: reported by its exit (see `#pipeGone`).
      child.stdin?.on("close", () =>
        this.#pipeGone("its stdin closed while it ran", "its stdin closed"),
      );
      child.stdin?.on("error", (error) => {
        this.onerror?.(error);
        this.#pipeGone(
          `its stdin closed while it ran (${error.message})`,
          `its stdin failed (${error.message})`,
          error,
        );
      });
      child.stdout?.on("error", (error) => this.onerror?.(error));
      // Its stdout ended (or its stream closed) while it runs on: no answer can come back, and
      // the calls waiting would wait for the tool layer's time limit. Ended as a broken stdin
      // is (see above), its exit waited for the same way.
      const stdoutGone = () => this.#pipeGone("its stdout closed while it ran");
      child.stdout?.once("end", stdoutGone);
      child.stdout?.once("close", stdoutGone);
      child.stderr?.on("error", () => undefined);
      child.stderr?.on("data", (chunk: Buffer) => {
        const both = Buffer.concat([this.#stderrTail, chunk]);
        this.#stderrTail = Buffer.from(both.subarray(Math.max(0, both.length - STDERR_TAIL_BYTES)));
      });
      child.stdout?.on("data", (chunk: Buffer) => {
        this.#lines.push(
          chunk,
          (line) => {
            let message: JSONRPCMessage;
            try {
              message = deserializeMessage(line);
            } catch (error) {
              this.onerror?.(error as Error); // one bad line; the next may be fine
              return;
            }
            this.#deliver(message);
          },
          (oversized) => this.#oversized(oversized),
        );
      });
    });
  }

  /**
   * A pipe of the server closed or broke: `failure` says how, should the server run on without
   * it. At its exit its pipes close and break too, often before the "exit" event: that is the
   * exit's to report (`exited with code 3`), so the exit is waited for (PIPE_EXIT_GRACE_MS,
   * then one more turn of the event loop, in which an exit that a busy loop held back is read)
   * before the server is taken for one that runs on, and ended with `failure` as the reason.
   * The sends waiting fail with the exit then, or with `dropWhy` (if given) when it ran on; when
   * this end is closing the connection anyway, they fail with `dropWhy` at once.
   */
  #pipeGone(failure: string, dropWhy?: string, cause?: Error): void {
    if (this.#exited) return; // the exit has reported itself, and failed the sends waiting
    if (this.#closing !== undefined) {
      if (dropWhy !== undefined) this.#dropWrites(dropWhy, cause);
      return;
    }
    this.#pipeFailure ??= failure;
    if (dropWhy !== undefined) this.#pipeDrop ??= { why: dropWhy, cause };
    if (this.#exitWait !== undefined) return;
    this.#exitWait = setTimeout(() => {
      setImmediate(() => {
        if (this.#closing !== undefined || this.#exited) return;
        this.#failure ??= this.#pipeFailure;
        const drop = this.#pipeDrop;
        if (drop !== undefined) this.#dropWrites(drop.why, drop.cause);
        void this.close();
      });
    }, PIPE_EXIT_GRACE_MS);
  }

  /**
   * A line past the limit, left unread: an answer fails its request (the connection stays);
   * anything else, whose request cannot be told, ends the connection, saying why.
   */
  #oversized({ head, tail, bytes }: Oversized): void {
    const what = `a message of the server exceeded ${STDIO_DEFAULT_MAX_BUFFER_SIZE} bytes (${bytes})`;
    const id = answerId(head, tail);
    if (id !== undefined) {
      this.#deliver({
        jsonrpc: "2.0",
        id,
        error: { code: -32603, message: `${what}: the answer was left unread` },
      });
      return;
    }
    this.#failure ??= what;
    this.onerror?.(new Error(what));
    void this.close();
  }

  /** Hands a message over; a handler that throws is reported, not thrown into the stream. */
  #deliver(message: JSONRPCMessage): void {
    try {
      this.onmessage?.(message);
    } catch (error) {
      this.onerror?.(error as Error);
    }
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.#child?.stdin;
    if (stdin == null || this.#closing !== undefined || !stdin.writable) {
      return Promise.reject(new Error("Not connected"));
    }
    return new Promise<void>((resolve, reject) => {
      if (stdin.write(serializeMessage(message))) resolve();
      // Written in part: done at "drain", or failed when the pipe or the server is gone first.
      else this.#writes.add((error) => (error === undefined ? resolve() : reject(error)));
    });
  }

  /** Resolves the sends waiting for "drain": all is written. */
  #drained(): void {
    const waiting = [...this.#writes];
    this.#writes.clear();
    for (const settle of waiting) settle();
  }

  /**
   * Fails the sends still waiting: the server or its stdin is gone, and the transport closes
   * (as it does at each of these), so they fail once it has closed (`onclose`), as the calls
   * waiting for answers do.
   */
  #dropWrites(why: string, cause?: Error): void {
    if (this.#writes.size === 0) return;
    const error = new Error(`a message to the server was not written: ${why}`, cause && { cause });
    const waiting = [...this.#writes];
    this.#writes.clear();
    const fail = () => {
      for (const settle of waiting) settle(error);
    };
    if (this.#closed) fail();
    else {
      this.#afterClose.push(fail);
      void this.close();
    }
  }

  /** Ends the server's process group (see the class); one close, awaited by every caller. */
  close(): Promise<void> {
    this.#closing ??= this.#end();
    return this.#closing;
  }

  async #end(): Promise<void> {
    clearTimeout(this.#exitWait);
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
    child.stderr?.destroy();
    child.stdin?.destroy();
    this.#lines.clear();
    this.#finish();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onclose?.();
    for (const then of this.#afterClose.splice(0)) then();
  }
}

/** A line too long to read: its first and last bytes, and its length. */
interface Oversized {
  head: string;
  tail: string;
  bytes: number;
}

/** How many bytes of an oversized line's start and end are kept. */
const EDGE_BYTES = 256;

/**
 * Newline-delimited lines of a stream, each at most `max` bytes: longer ones are dropped as
 * they come (only their edges kept), not held. A chunk is scanned once (the SDK's `ReadBuffer`
 * copies and scans the whole line so far at every chunk).
 */
class Lines {
  #chunks: Buffer[] = [];
  #size = 0;
  #over: { head: Buffer; tail: Buffer; bytes: number } | undefined;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  push(chunk: Buffer, line: (text: string) => void, oversized: (line: Oversized) => void): void {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf(10, start);
      this.#add(chunk.subarray(start, end === -1 ? chunk.length : end));
      if (end === -1) return;
      start = end + 1;
      const over = this.#over;
      const text = over === undefined ? Buffer.concat(this.#chunks).toString("utf8") : undefined;
      this.clear();
      if (over !== undefined) {
        oversized({
          head: over.head.toString("utf8"),
          tail: over.tail.toString("utf8"),
          bytes: over.bytes,
        });
      } else if (text !== undefined && text.trim() !== "") {
        line(text.replace(/\r$/, ""));
      }
    }
  }

  clear(): void {
    this.#chunks = [];
    this.#size = 0;
    this.#over = undefined;
  }

  #add(piece: Buffer): void {
    if (piece.length === 0) return;
    const over = this.#over;
    if (over !== undefined) {
      over.bytes += piece.length;
      over.tail = Buffer.from(Buffer.concat([over.tail, piece]).subarray(-EDGE_BYTES));
      return;
    }
    this.#chunks.push(piece);
    this.#size += piece.length;
    if (this.#size <= this.#max) return;
    const all = Buffer.concat(this.#chunks);
    this.#over = {
      head: Buffer.from(all.subarray(0, EDGE_BYTES)),
      tail: Buffer.from(all.subarray(-EDGE_BYTES)),
      bytes: all.length,
    };
    this.#chunks = [];
    this.#size = 0;
  }
}

const ID = String.raw`("(?:[^"\\]|\\.)*"|-?\d+)`;
/** `{"jsonrpc":"2.0","id":1,"result"...` (the Python SDK's order, and others'). */
const ID_FIRST = new RegExp(
  String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${ID}\s*,\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"(?:result|error)"\s*:`,
);
/** `{"result":...,"jsonrpc":"2.0","id":1}` (the TypeScript SDK's order). */
const RESULT_FIRST = /^\s*\{\s*"(?:result|error)"\s*:/;
const ID_LAST = new RegExp(String.raw`"id"\s*:\s*${ID}\s*\}\s*$`);

/**
 * The id of the answer whose line starts with `head` and ends with `tail`, when the line is
 * surely an answer (its `result` or `error` and its `id` at the top level), else undefined.
 */
function answerId(head: string, tail: string): string | number | undefined {
  const first = ID_FIRST.exec(head)?.[1];
  const last = RESULT_FIRST.test(head) ? ID_LAST.exec(tail.replace(/\r$/, ""))?.[1] : undefined;
  const raw = first ?? last;
  return raw === undefined ? undefined : (JSON.parse(raw) as string | number);
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
