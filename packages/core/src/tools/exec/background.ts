import {
  AbortedError,
  InvalidArgumentError,
  NoProcessError,
  OverloadedError,
  ProcessNotFoundError,
} from "../../errors.js";
import { Actor, type DownMessage, type ExitReason } from "../../runtime/index.js";
import { type LongTimer, startTimer } from "../../runtime/timers.js";
import type { ToolContext } from "../../sessions/types.js";
import type { ExecChild, ExecHost, ExecSpawnRequest } from "./host.js";
import { OutputRing, type TailOptions } from "./output-ring.js";

/** A command running longer than this moves to the background. */
export const DEFAULT_YIELD_AFTER_MS = 10_000;
/** Output kept per process. */
export const DEFAULT_OUTPUT_LIMIT_BYTES = 200 * 1024;
/** Time between SIGTERM and SIGKILL. */
export const DEFAULT_KILL_GRACE_MS = 5_000;
/** A command still running after this is killed. */
export const DEFAULT_EXEC_TIMEOUT_MS = 30 * 60_000;
/** How long a finished process stays listed. */
export const DEFAULT_FINISHED_TTL_MS = 30 * 60_000;

/** Options of {@link BackgroundProcessRegistry}. */
export interface BackgroundProcessRegistryOptions {
  /** Display name. */
  name?: string;
  /** How long the exec tool waits before handing a command to the background. Default 10 000. */
  yieldAfterMs?: number;
  /** Output ring buffer per process, in bytes. Default 204 800 (200 KB). */
  outputLimitBytes?: number;
  /** SIGTERM-to-SIGKILL grace period of `kill`. Default 5000. */
  killGraceMs?: number;
  /** SIGTERM-to-SIGKILL grace period when the registry stops. Default 2000 (capped by `killGraceMs`). */
  stopGraceMs?: number;
  /** Overall time limit of a command, unless the spawn request sets one. Default 30 min. */
  timeoutMs?: number;
  /** How long a finished process stays listed before it expires. Default 30 min. */
  finishedTtlMs?: number;
  /** Commands running at once; one more is refused with `OverloadedError`. Default 64. */
  maxProcesses?: number;
  /**
   * Finished background commands kept (with their output) until `finishedTtlMs`; past this
   * many, the one that ended first is forgotten early. Default 256: an agent starting short
   * commands in the background cannot hold thousands of outputs for half an hour.
   */
  maxFinished?: number;
  /** How often running process trees are scanned for escaped descendants. Default 1000. */
  trackIntervalMs?: number;
}

/** A write to a process's standard input, as the `process` tool asks for it. */
export interface ProcessWrite {
  slug: string;
  /** Exactly what is written. */
  data: string;
  /** Whether standard input is closed afterwards. */
  eof: boolean;
}

/**
 * Decides whether a tool call may write to a process: resolves to let it, rejects (with
 * `ExecRefusedError`, an `ApprovalDeniedError`, ...) to refuse it. Nothing is written until it
 * resolves.
 */
export type ProcessWriteGate = (write: ProcessWrite, context: ToolContext) => Promise<void>;

/** What to start: a host and its spawn request, plus bookkeeping. */
export interface BackgroundSpawnRequest extends ExecSpawnRequest {
  /** The command as asked for, for listings. */
  command: string;
  /**
   * Asked before the `process` tool writes to this process's standard input (the exec tool
   * sets it for commands that needed an approval). Without it, writes are not gated.
   */
  gateWrite?: ProcessWriteGate;
  /** Who may see and control it (the exec tool uses the session key). */
  owner?: string;
  /** Overall time limit. Default: the registry's `timeoutMs`. */
  timeoutMs?: number;
}

/** The state of one process, as a plain JSON-safe object. */
export interface ProcessSnapshot {
  slug: string;
  pid: number;
  command: string;
  host: string;
  cwd: string;
  owner: string | undefined;
  /** `exited` once its main process has exited and its output is closed. */
  status: "running" | "exited";
  /** Whether it was handed to the background. */
  backgrounded: boolean;
  startedAt: number;
  endedAt: number | undefined;
  durationMs: number;
  exitCode: number | null;
  /** The signal that ended it (`SIGTERM`, `SIGKILL`), if one did. */
  signal: string | null;
  /** It was killed because it ran past its time limit. */
  timedOut: boolean;
  /** It was killed through `kill` or `remove`. */
  killed: boolean;
  /** Output bytes written in total. */
  outputBytes: number;
  /** Output bytes dropped from the ring buffer. */
  droppedBytes: number;
  stdinOpen: boolean;
}

/** Result of {@link BackgroundProcessRegistry.poll}. */
export interface ProcessPoll {
  process: ProcessSnapshot;
  /** Output (both streams, interleaved) written since the previous poll. */
  output: string;
  /** Bytes written since the previous poll that were dropped before they could be read. */
  skippedBytes: number;
  /** True when `output` is only the start (see `maxJsonBytes`): the next poll returns more. */
  more: boolean;
}

interface Entry {
  slug: string;
  child: ExecChild;
  host: string;
  cwd: string;
  command: string;
  owner: string | undefined;
  gateWrite: ProcessWriteGate | undefined;
  ring: OutputRing;
  startedAt: number;
  endedAt: number | undefined;
  backgrounded: boolean;
  status: "running" | "exited";
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  killed: boolean;
  pollOffset: number;
  finished: Promise<void>;
  resolveFinished: () => void;
  cancelTimeout: () => void;
  cancelExpiry: () => void;
  reaping: Promise<void> | undefined;
  closing: Promise<void>;
}

type RegistryInfo =
  | { type: "timeout"; slug: string }
  | { type: "expire"; slug: string }
  | { type: "scan" };

/** How long to wait for a tree to vanish after SIGKILL before giving up on it. */
const FORCE_WAIT_MS = 2_000;
const POLL_MS = 20;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits for `promise`, but at most `ms`; the timer never outlives the wait. */
function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function positive(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!(Number.isFinite(v) && v > 0)) {
    throw new InvalidArgumentError(`${name} must be a positive number, got ${v}`);
  }
  return v;
}

/**
 * Owns every process the exec tool starts: output in a ring buffer (200 KB each), stdin,
 * time limits, kill escalation, and cleanup. A command that runs past `yieldAfterMs` is
 * handed to the background under a short `slug`, and the model drives it with `poll`, `log`,
 * `write`, `killProcess`, `list` and `remove` (see `createProcessTool`).
 *
 * Killing signals the whole tree the command started (its process group and session, their
 * descendants, and descendants that escaped into a new session, found through `/proc`):
 * SIGTERM first, SIGKILL after `killGraceMs`. Processes a command leaves behind when its main
 * process ends are killed the same way, so a finished command has nothing left running.
 * Finished entries expire after `finishedTtlMs`.
 *
 * It is an {@link Actor}: `start()` it (or put it under a supervisor), and `stop()` kills
 * every process tree and waits until they are gone; if the actor is killed outright, every
 * tree gets SIGKILL at once. Output and queries do not go through the mailbox (like an ETS
 * table owned by a process): they never wait on each other and a chatty process cannot
 * overflow the mailbox. Timers (time limits, expiry, scans) do.
 *
 * @example
 * ```ts
 * const registry = await new BackgroundProcessRegistry().start();
 * const host = new GatewayHost({ roots: ["/srv/work"] });
 * const proc = await registry.spawn(host, { command: "npm test", script: "npm test", cwd: "/srv/work", env: host.environment() });
 * await registry.wait(proc.slug, { timeoutMs: 1000 });
 * console.log(registry.log(proc.slug, { lines: 20 }));
 * await registry.stop(); // nothing it started is left running
 * ```
 */
export class BackgroundProcessRegistry extends Actor<never, never, never, RegistryInfo> {
  /** How long the exec tool waits before yielding to the background. */
  readonly yieldAfterMs: number;
  readonly #outputLimit: number;
  readonly #killGraceMs: number;
  readonly #stopGraceMs: number;
  readonly #timeoutMs: number;
  readonly #ttlMs: number;
  readonly #maxProcesses: number;
  readonly #maxFinished: number;
  readonly #trackIntervalMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #spawning = new Set<Promise<unknown>>();
  #counter = 0;
  #scanScheduled = false;

  constructor(options: BackgroundProcessRegistryOptions = {}) {
    super({ name: options.name ?? "BackgroundProcessRegistry" });
    this.yieldAfterMs = positive(options.yieldAfterMs, DEFAULT_YIELD_AFTER_MS, "yieldAfterMs");
    this.#outputLimit = positive(
      options.outputLimitBytes,
      DEFAULT_OUTPUT_LIMIT_BYTES,
      "outputLimitBytes",
    );
    this.#killGraceMs = positive(options.killGraceMs, DEFAULT_KILL_GRACE_MS, "killGraceMs");
    this.#stopGraceMs = Math.min(
      positive(options.stopGraceMs, 2_000, "stopGraceMs"),
      this.#killGraceMs,
    );
    this.#timeoutMs = positive(options.timeoutMs, DEFAULT_EXEC_TIMEOUT_MS, "timeoutMs");
    this.#ttlMs = positive(options.finishedTtlMs, DEFAULT_FINISHED_TTL_MS, "finishedTtlMs");
    this.#maxProcesses = positive(options.maxProcesses, 64, "maxProcesses");
    this.#maxFinished = positive(options.maxFinished, 256, "maxFinished");
    this.#trackIntervalMs = positive(options.trackIntervalMs, 1_000, "trackIntervalMs");
  }

  // ---------------------------------------------------------------- lifecycle

  protected override init(): void {
    // Whatever way this actor ends (even `kill()`, which skips terminate), no tree survives.
    this.monitor(() => {
      for (const entry of this.#entries.values()) {
        entry.child.signal("SIGKILL");
        this.#release(entry);
      }
    });
  }

  protected override async terminate(_reason: ExitReason): Promise<void> {
    await Promise.allSettled([...this.#spawning]);
    const entries = [...this.#entries.values()];
    await Promise.all(entries.map((e) => this.#reap(e, this.#stopGraceMs)));
    await Promise.all(entries.map((e) => within(e.finished, FORCE_WAIT_MS)));
    await Promise.all(entries.map((e) => e.closing));
    this.#entries.clear();
  }

  protected override handleInfo(message: RegistryInfo | DownMessage): void {
    if (message.type === "DOWN") return;
    if (message.type === "scan") {
      this.#scanScheduled = false;
      let running = false;
      for (const entry of this.#entries.values()) {
        if (entry.status === "running" || entry.reaping !== undefined) {
          entry.child.alive(); // records the tree's current members
          running = true;
        }
      }
      if (running) this.#scheduleScan();
      return;
    }
    const entry = this.#entries.get(message.slug);
    if (entry === undefined) return;
    if (message.type === "timeout") {
      if (entry.status !== "running") return;
      entry.timedOut = true;
      void this.#reap(entry, this.#killGraceMs);
    } else if (message.type === "expire" && entry.status === "exited") {
      void this.#reap(entry, this.#killGraceMs).then(() => {
        if (this.#entries.get(entry.slug) === entry) this.#entries.delete(entry.slug);
      });
    }
  }

  // ---------------------------------------------------------------- operations

  /**
   * Starts a command on `host` and registers it (not yet backgrounded).
   *
   * @throws NoProcessError when the registry is not running.
   * @throws OverloadedError when `maxProcesses` commands are already running.
   * @throws whatever the host throws (`SandboxUnavailableError`, `NotSupportedError`, ...).
   */
  async spawn(host: ExecHost, request: BackgroundSpawnRequest): Promise<ProcessSnapshot> {
    if (this.status !== "running") {
      throw new NoProcessError(`${this.name} is not running`, this.exitReason);
    }
    const running = [...this.#entries.values()].filter((e) => e.status === "running").length;
    if (running + this.#spawning.size >= this.#maxProcesses) {
      throw new OverloadedError(
        `${this.name} already runs its maximum of ${this.#maxProcesses} processes`,
        this.#maxProcesses,
      );
    }
    const timeoutMs = positive(request.timeoutMs, this.#timeoutMs, "timeoutMs");
    const pending = host.spawn({
      script: request.script,
      cwd: request.cwd,
      env: request.env,
      timeoutMs,
    });
    this.#spawning.add(pending);
    let child: ExecChild;
    try {
      child = await pending;
    } finally {
      this.#spawning.delete(pending);
    }
    const entry = this.#register(child, host, request, timeoutMs);
    return this.#snapshot(entry);
  }

  /**
   * Waits until the process has exited, at most `timeoutMs`; resolves with its state either
   * way (check `status`).
   *
   * @throws ProcessNotFoundError for an unknown slug.
   * @throws the signal's reason (or `AbortedError`) when `signal` aborts first.
   */
  wait(
    slug: string,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<ProcessSnapshot> {
    const entry = this.#get(slug);
    if (entry.status === "exited") return Promise.resolve(this.#snapshot(entry));
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.reject(signal.reason ?? new AbortedError("aborted"));
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: LongTimer | undefined;
      const finish = (error?: unknown) => {
        if (settled) return;
        settled = true;
        timer?.cancel();
        signal?.removeEventListener("abort", onAbort);
        if (error === undefined) resolve(this.#snapshot(entry));
        else reject(error);
      };
      const onAbort = () =>
        finish(signal?.reason ?? new AbortedError(`waiting for ${slug} was aborted`));
      void entry.finished.then(() => finish());
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        // Chained: a wait past a timer's limit (a huge `yieldAfterMs`) must not end at once.
        timer = startTimer(() => finish(), Math.max(0, timeoutMs));
      }
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Marks a process as handed to the background. */
  background(slug: string): ProcessSnapshot {
    const entry = this.#get(slug);
    entry.backgrounded = true;
    return this.#snapshot(entry);
  }

  /** The state of one process. @throws ProcessNotFoundError */
  get(slug: string): ProcessSnapshot {
    return this.#snapshot(this.#get(slug));
  }

  /** Every process (optionally only those of `owner`), oldest first. */
  list(filter: { owner?: string } = {}): ProcessSnapshot[] {
    return [...this.#entries.values()]
      .filter((e) => filter.owner === undefined || e.owner === filter.owner)
      .map((e) => this.#snapshot(e));
  }

  /**
   * State plus the output written since the previous poll. With `maxJsonBytes`, only the start
   * of that output within that many bytes as the content of a JSON string, cut between
   * characters; the next poll goes on from there (`more`).
   *
   * @throws ProcessNotFoundError
   */
  poll(slug: string, options: { maxJsonBytes?: number } = {}): ProcessPoll {
    const entry = this.#get(slug);
    const { text, next, skipped, more } = entry.ring.since(entry.pollOffset, options.maxJsonBytes);
    entry.pollOffset = next;
    return { process: this.#snapshot(entry), output: text, skippedBytes: skipped, more };
  }

  /** The end of the output: last `lines` lines and/or `bytes` bytes. @throws ProcessNotFoundError */
  log(slug: string, options: TailOptions = {}): string {
    return this.#get(slug).ring.tail(options);
  }

  /** Everything kept of stdout and stderr, and whether anything was dropped. */
  output(slug: string): { stdout: string; stderr: string; truncated: boolean } {
    const ring = this.#get(slug).ring;
    return {
      stdout: ring.text("stdout"),
      stderr: ring.text("stderr"),
      truncated: ring.dropped > 0,
    };
  }

  /**
   * The gate a tool call's write to this process must pass (its spawn request's
   * `gateWrite`), if any. `write` itself does not ask it: the caller (the `process` tool)
   * does, with the call's context.
   *
   * @throws ProcessNotFoundError
   */
  writeGate(slug: string): ProcessWriteGate | undefined {
    return this.#get(slug).gateWrite;
  }

  /**
   * Writes to the process's stdin; `eof` closes it afterwards.
   *
   * @throws ProcessNotFoundError; InvalidArgumentError when stdin is closed.
   */
  async write(
    slug: string,
    data: string | Uint8Array,
    options: { eof?: boolean } = {},
  ): Promise<void> {
    const entry = this.#get(slug);
    const stdin = entry.child.process.stdin;
    if (entry.status !== "running" || stdin === null || !stdin.writable) {
      throw new InvalidArgumentError(`the stdin of process ${slug} is closed`);
    }
    if (typeof data === "string" ? data.length > 0 : data.byteLength > 0) {
      await new Promise<void>((resolve, reject) => {
        stdin.write(data, (error) => {
          if (error) {
            reject(
              new InvalidArgumentError(`could not write to ${slug}: ${error.message}`, {
                cause: error,
              }),
            );
          } else resolve();
        });
      });
    }
    if (options.eof) stdin.end();
  }

  /**
   * Kills the process tree: SIGTERM, then SIGKILL after `graceMs` (default `killGraceMs`).
   * Resolves once it has ended. (Named apart from `kill()`, the actor's own: that one stops
   * the registry at once, with SIGKILL for every tree.)
   *
   * @throws ProcessNotFoundError
   */
  async killProcess(slug: string, options: { graceMs?: number } = {}): Promise<ProcessSnapshot> {
    const entry = this.#get(slug);
    if (entry.status === "running") entry.killed = true;
    await this.#reap(entry, positive(options.graceMs, this.#killGraceMs, "graceMs"));
    await within(entry.finished, FORCE_WAIT_MS);
    return this.#snapshot(entry);
  }

  /**
   * Forgets a process, killing it first if it still runs. Returns false for an unknown slug.
   */
  async remove(slug: string, options: { graceMs?: number } = {}): Promise<boolean> {
    const entry = this.#entries.get(slug);
    if (entry === undefined) return false;
    if (entry.status === "running" || entry.child.alive()) await this.killProcess(slug, options);
    entry.cancelExpiry();
    if (this.#entries.get(slug) === entry) this.#entries.delete(slug);
    return true;
  }

  // ---------------------------------------------------------------- internals

  #get(slug: string): Entry {
    const entry = this.#entries.get(slug);
    if (entry === undefined) throw new ProcessNotFoundError(slug);
    return entry;
  }

  #register(
    child: ExecChild,
    host: ExecHost,
    request: BackgroundSpawnRequest,
    timeoutMs: number,
  ): Entry {
    let resolveFinished!: () => void;
    const finished = new Promise<void>((resolve) => {
      resolveFinished = resolve;
    });
    const entry: Entry = {
      slug: this.#slug(request.command),
      child,
      host: host.id,
      cwd: request.cwd,
      command: request.command,
      owner: request.owner,
      gateWrite: request.gateWrite,
      ring: new OutputRing(this.#outputLimit),
      startedAt: Date.now(),
      endedAt: undefined,
      backgrounded: false,
      status: "running",
      exitCode: null,
      signal: null,
      timedOut: false,
      killed: false,
      pollOffset: 0,
      finished,
      resolveFinished,
      cancelTimeout: () => {},
      cancelExpiry: () => {},
      reaping: undefined,
      closing: Promise.resolve(),
    };
    this.#entries.set(entry.slug, entry);
    const proc = child.process;
    proc.stdout?.on("data", (chunk: Buffer) => entry.ring.append("stdout", chunk));
    proc.stderr?.on("data", (chunk: Buffer) => entry.ring.append("stderr", chunk));
    // EPIPE when the process has closed its stdin: reported by `write`, never thrown.
    proc.stdin?.on("error", () => {});
    proc.on("error", () => {});
    proc.once("exit", (code, signal) => {
      entry.exitCode = code;
      entry.signal = signal;
    });
    proc.once("close", (code, signal) => this.#finish(entry, code, signal));
    entry.cancelTimeout = this.sendAfter({ type: "timeout", slug: entry.slug }, timeoutMs);
    this.#scheduleScan();
    return entry;
  }

  #finish(entry: Entry, code: number | null, signal: NodeJS.Signals | null): void {
    if (entry.status === "exited") return;
    entry.status = "exited";
    entry.endedAt = Date.now();
    entry.exitCode ??= code;
    entry.signal ??= signal;
    entry.cancelTimeout();
    entry.child.process.stdin?.destroy();
    entry.cancelExpiry = this.sendAfter({ type: "expire", slug: entry.slug }, this.#ttlMs);
    // Whatever the command left running when its main process ended goes too.
    if (entry.child.alive()) void this.#reap(entry, this.#killGraceMs);
    // Host cleanup (removing a container) failing does not change how the command ended.
    entry.closing = entry.child.close?.().catch(() => {}) ?? Promise.resolve();
    entry.resolveFinished();
    this.#forgetOldestFinished();
  }

  /**
   * Past `maxFinished` finished background commands, forgets those that ended first (as their
   * expiry would). One still in the foreground is not counted: its caller reads it and
   * removes it itself.
   */
  #forgetOldestFinished(): void {
    const finished = [...this.#entries.values()].filter(
      (e) => e.status === "exited" && e.backgrounded,
    );
    if (finished.length <= this.#maxFinished) return;
    finished.sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0));
    for (const entry of finished.slice(0, finished.length - this.#maxFinished)) {
      entry.cancelExpiry();
      this.#entries.delete(entry.slug);
      if (entry.child.alive()) void this.#reap(entry, this.#killGraceMs);
    }
  }

  /** SIGTERM to the tree, SIGKILL after `graceMs`, then wait until it is gone. */
  #reap(entry: Entry, graceMs: number): Promise<void> {
    if (entry.reaping !== undefined) return entry.reaping;
    const run = async () => {
      if (this.#gone(entry)) return;
      entry.child.signal("SIGTERM");
      if (!(await this.#waitGone(entry, graceMs))) {
        entry.child.signal("SIGKILL");
        await this.#waitGone(entry, FORCE_WAIT_MS);
      }
      // The tree is dead; a process that escaped it may still hold our pipes open.
      if (entry.status === "running" && !entry.child.alive()) this.#release(entry);
    };
    const reaping = run().finally(() => {
      if (entry.reaping === reaping) entry.reaping = undefined;
    });
    entry.reaping = reaping;
    return reaping;
  }

  #gone(entry: Entry): boolean {
    return entry.status === "exited" && !entry.child.alive();
  }

  async #waitGone(entry: Entry, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.#gone(entry)) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())));
    }
  }

  /** Lets go of the pipes so that the child process handle can close. */
  #release(entry: Entry): void {
    const proc = entry.child.process;
    proc.stdin?.destroy();
    proc.stdout?.destroy();
    proc.stderr?.destroy();
  }

  #scheduleScan(): void {
    if (this.#scanScheduled || !this.alive) return;
    this.#scanScheduled = true;
    this.sendAfter({ type: "scan" }, this.#trackIntervalMs);
  }

  #slug(command: string): string {
    const first = command.trim().split(/\s+/, 1)[0] ?? "";
    const base =
      (first.split("/").pop() ?? "")
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, "")
        .slice(0, 12) || "proc";
    let slug: string;
    do slug = `${base}-${++this.#counter}`;
    while (this.#entries.has(slug));
    return slug;
  }

  #snapshot(entry: Entry): ProcessSnapshot {
    const stdin = entry.child.process.stdin;
    return {
      slug: entry.slug,
      pid: entry.child.pid,
      command: entry.command,
      host: entry.host,
      cwd: entry.cwd,
      owner: entry.owner,
      status: entry.status,
      backgrounded: entry.backgrounded,
      startedAt: entry.startedAt,
      endedAt: entry.endedAt,
      durationMs: (entry.endedAt ?? Date.now()) - entry.startedAt,
      exitCode: entry.exitCode,
      signal: entry.signal,
      timedOut: entry.timedOut,
      killed: entry.killed,
      outputBytes: entry.ring.written,
      droppedBytes: entry.ring.dropped,
      stdinOpen: entry.status === "running" && stdin !== null && stdin.writable,
    };
  }
}
