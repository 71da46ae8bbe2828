/**
 * `FsStore`: BeamClaw's embedded default store. Everything in one directory, as JSON and
 * JSONL files a person can read; atomic whole-file writes; append-only logs with torn-tail
 * repair; a single-writer lock. See the package README for the layout and the durability
 * argument.
 */
import fs from "node:fs/promises";
import path from "node:path";
import type {
  ApprovalStore,
  CronStore,
  DeviceStore,
  InboundQueue,
  JsonValue,
  KeyValueStore,
  LockStore,
  SessionStore,
  Store,
  StoreCapabilities,
  TranscriptStore,
} from "@beamclaw/core";
import { BeamClawError, InvalidArgumentError, StoreError } from "@beamclaw/core";
import { Approvals } from "./approvals.js";
import {
  createContext,
  describeIo,
  type FsStoreRecovery,
  type StoreContext,
  toStoreError,
} from "./context.js";
import { Cron } from "./cron.js";
import { Devices } from "./devices.js";
import { FileSystem, readDirIfExists, readFileIfExists } from "./files.js";
import { describeValue } from "./json.js";
import { kernelFilesystemOf } from "./kernel-fs.js";
import { KeyValue } from "./kv.js";
import { acquireLock, confirmLock, type HeldLock, LOCK_FILE, releaseLock } from "./lock-file.js";
import { Locks } from "./locks.js";
import { Queue } from "./queue.js";
import { Sessions } from "./sessions.js";
import { Transcripts } from "./transcripts.js";

/** File that marks a directory as a store-fs store, with the format version. */
export const MARKER_FILE = "beamclaw-store.json";
/** Directory of temp files (atomic writes in progress); emptied on open. */
export const TMP_DIR = "tmp";
const FORMAT = "beamclaw-store-fs";
const FORMAT_VERSION = 1;
const DEFAULT_DEDUPE_WINDOW_MS = 24 * 60 * 60 * 1000;

/** Options of {@link FsStore}. */
export interface FsStoreOptions {
  /**
   * The store directory. Created if missing; must be empty or an existing store (a
   * directory with other files in it is refused rather than written into).
   */
  dir: string;
  /**
   * fsync every write before acknowledging it (default `true`): acknowledged writes survive
   * a power loss. `false` still survives a crash of the process (the kernel has the data)
   * but not of the machine; for tests and scratch data.
   */
  fsync?: boolean;
  /**
   * How long the inbound queue remembers acknowledged idempotency keys, so that a sender's
   * retry within it is a duplicate. Default 24 h. Memory holds about 180 bytes per key (the
   * payload stays on disk), so size it to the message rate; `0` remembers none.
   */
  dedupeWindowMs?: number;
  /**
   * Called for every repair made on open or on first touch of a file (a torn last line cut,
   * a stale lock broken, leftover temp files removed). Exceptions it throws are ignored. The
   * same records are in {@link FsStore.recoveries}.
   */
  onRecovery?: (recovery: FsStoreRecovery) => void;
}

interface Parts {
  context: StoreContext;
  lock: HeldLock;
  sessions: Sessions;
  transcripts: Transcripts;
  cron: Cron;
  devices: Devices;
  approvals: Approvals;
  queue: Queue;
  locks: Locks;
  kv: KeyValue;
}

type Status = "closed" | "opening" | "open" | "closing";

/**
 * The file-system store: sessions, transcripts, cron, devices, approvals, the durable inbound
 * queue, key/value and locks under one directory, crash-safe, for one process at a time.
 *
 * @example
 * ```ts
 * import { createFsStore } from "@beamclaw/store-fs";
 *
 * const store = createFsStore({ dir: "./data" });
 * await store.open(); // STORE_LOCKED if another process has ./data open
 * await store.sessions.put({ key: "agent:main:main", agentId: "main", createdAt: 1, updatedAt: 1 });
 * await store.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
 * await store.close();
 * ```
 */
export class FsStore implements Store {
  readonly specificationVersion = "v1" as const;
  readonly kind = "fs";
  readonly capabilities: StoreCapabilities = Object.freeze({
    durable: "process",
    multiProcess: false,
    ttl: true,
    distributedLocks: false,
  });
  /** The absolute store directory. */
  readonly dir: string;
  readonly sessions: SessionStore;
  readonly transcripts: TranscriptStore;
  readonly cron: CronStore;
  readonly devices: DeviceStore;
  readonly approvals: ApprovalStore;
  readonly queue: InboundQueue;
  readonly kv: KeyValueStore;
  readonly locks: LockStore;

  readonly #fsync: boolean;
  readonly #dedupeWindowMs: number;
  readonly #onRecovery: ((recovery: FsStoreRecovery) => void) | undefined;
  #status: Status = "closed";
  #parts: Parts | undefined;
  /** What the last `open()` or `close()` asked for. */
  #wanted: "open" | "closed" = "closed";
  /** The open or close in progress (or the last one queued). */
  #transition: Promise<void> | undefined;
  #failure: StoreError | undefined;
  readonly #inflight = new Set<Promise<unknown>>();
  #recoveries: FsStoreRecovery[] = [];

  constructor(options: FsStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError(
        `FsStore options must be an object, got ${describeValue(options)}`,
      );
    }
    if (typeof options.dir !== "string" || options.dir.length === 0) {
      throw new InvalidArgumentError(
        `FsStore option dir must be a non-empty path, got ${describeValue(options.dir)}`,
      );
    }
    if (options.fsync !== undefined && typeof options.fsync !== "boolean") {
      throw new InvalidArgumentError(
        `FsStore option fsync must be a boolean, got ${describeValue(options.fsync)}`,
      );
    }
    const window = options.dedupeWindowMs ?? DEFAULT_DEDUPE_WINDOW_MS;
    if (typeof window !== "number" || !Number.isFinite(window) || window < 0) {
      throw new InvalidArgumentError(
        `FsStore option dedupeWindowMs must be a non-negative number, got ${describeValue(window)}`,
      );
    }
    if (options.onRecovery !== undefined && typeof options.onRecovery !== "function") {
      throw new InvalidArgumentError("FsStore option onRecovery must be a function");
    }
    this.dir = path.resolve(options.dir);
    this.#fsync = options.fsync ?? true;
    this.#dedupeWindowMs = window;
    this.#onRecovery = options.onRecovery;

    const run = this.#run.bind(this);
    this.sessions = {
      get: (key) => run((p) => p.sessions.get(key)),
      put: (record) => run((p) => p.sessions.put(record)),
      delete: (key) => run((p) => p.sessions.delete(key)),
      list: (options) => run((p) => p.sessions.list(options)),
      count: (agentId) => run((p) => p.sessions.count(agentId)),
    };
    this.transcripts = {
      append: (key, entries) => run((p) => p.transcripts.append(key, entries)),
      read: (key, options) => run((p) => p.transcripts.read(key, options)),
      lastSeq: (key) => run((p) => p.transcripts.lastSeq(key)),
      delete: (key) => run((p) => p.transcripts.delete(key)),
    };
    this.cron = {
      getJob: (id) => run((p) => p.cron.getJob(id)),
      putJob: (job) => run((p) => p.cron.putJob(job)),
      deleteJob: (id) => run((p) => p.cron.deleteJob(id)),
      listJobs: (agentId) => run((p) => p.cron.listJobs(agentId)),
      appendRun: (record, options) => run((p) => p.cron.appendRun(record, options)),
      listRuns: (jobId, options) => run((p) => p.cron.listRuns(jobId, options)),
    };
    this.devices = {
      get: (id) => run((p) => p.devices.get(id)),
      put: (device) => run((p) => p.devices.put(device)),
      delete: (id) => run((p) => p.devices.delete(id)),
      list: () => run((p) => p.devices.list()),
      putToken: (token) => run((p) => p.devices.putToken(token)),
      getToken: (hash) => run((p) => p.devices.getToken(hash)),
      deleteToken: (hash) => run((p) => p.devices.deleteToken(hash)),
      listTokens: (id) => run((p) => p.devices.listTokens(id)),
    };
    this.approvals = {
      list: (key) => run((p) => p.approvals.list(key)),
      put: (key, record) => run((p) => p.approvals.put(key, record)),
      clear: (key, pattern) => run((p) => p.approvals.clear(key, pattern)),
    };
    this.queue = {
      enqueue: (message) => run((p) => p.queue.enqueue(message)),
      ack: (id) => run((p) => p.queue.ack(id)),
      discard: (id) => run((p) => p.queue.discard(id)),
      pending: (options) => run((p) => p.queue.pending(options)),
      replay: (options) => run((p) => p.queue.replay(options)),
      dedupeWindowMs: window,
    };
    this.kv = {
      get: <T extends JsonValue = JsonValue>(key: string) => run((p) => p.kv.get<T>(key)),
      set: (key, value, options) => run((p) => p.kv.set(key, value, options)),
      delete: (key, options) => run((p) => p.kv.delete(key, options)),
      keys: (prefix) => run((p) => p.kv.keys(prefix)),
      scan: (prefix, options) => run((p) => p.kv.scan(prefix, options)),
    };
    this.locks = {
      acquire: (name, options) => run((p) => p.locks.acquire(name, options)),
      renew: (lease, ttlMs) => run((p) => p.locks.renew(lease, ttlMs)),
      release: (lease) => run((p) => p.locks.release(lease)),
      holder: (name) => run((p) => p.locks.holder(name)),
    };
  }

  /** What was repaired or cleaned up since the last `open()` (see {@link FsStoreRecovery}). */
  get recoveries(): readonly FsStoreRecovery[] {
    return this.#recoveries;
  }

  /**
   * Takes the directory's single-writer lock, repairs what a crash left behind and loads the
   * indexes. Rejects with `STORE_LOCKED` (naming the pid) if another process holds the
   * directory, `STORE_CORRUPT` if a file cannot be read back, `INVALID_ARGUMENT` if the
   * directory holds something that is not a store. Resolves at once if already open.
   */
  open(): Promise<void> {
    // Joins the open in progress or queued; after a failed one, tries again.
    if (this.#wanted === "open" && (this.#transition !== undefined || this.#status === "open")) {
      return this.#transition ?? Promise.resolve();
    }
    this.#wanted = "open";
    return this.#enqueue(async () => {
      if (this.#status === "open") return;
      this.#status = "opening";
      try {
        this.#parts = await this.#load();
        this.#status = "open";
      } catch (error) {
        this.#status = "closed";
        throw error;
      }
    });
  }

  /**
   * Waits for operations in flight, closes every file and releases the lock. Afterwards
   * operations reject with `STORE_CLOSED`; `open()` may be called again. Idempotent.
   * `open()` and `close()` take effect in call order: a `close()` made while an `open()` is in
   * progress (or queued behind an earlier `close()`) closes the store once it has opened.
   */
  close(): Promise<void> {
    if (this.#wanted === "closed") return this.#transition ?? Promise.resolve();
    this.#wanted = "closed";
    return this.#enqueue(async () => {
      const parts = this.#parts;
      if (parts === undefined) return;
      this.#status = "closing";
      try {
        await Promise.allSettled([...this.#inflight]);
        await closeParts(parts);
        try {
          await releaseLock(parts.lock, parts.context.files);
        } catch (error) {
          throw new StoreError(
            "STORE_UNAVAILABLE",
            `store-fs at ${this.dir} is closed, but its lock file ${parts.lock.file} could not be removed (${describeIo(error)}); every acknowledged write is intact. open() in this process takes the lock over; another process can once this one has exited`,
            { cause: error },
          );
        }
      } finally {
        this.#parts = undefined;
        this.#status = "closed";
      }
    });
  }

  /** Runs an open or close after the one before it has settled. */
  #enqueue(step: () => Promise<void>): Promise<void> {
    const next = (this.#transition ?? Promise.resolve()).catch(() => {}).then(step);
    this.#transition = next;
    const settled = () => {
      if (this.#transition === next) this.#transition = undefined;
    };
    next.then(settled, settled);
    return next;
  }

  #run<T>(fn: (parts: Parts) => Promise<T>): Promise<T> {
    const parts = this.#parts;
    if (this.#status !== "open" || parts === undefined) {
      return Promise.reject(
        new StoreError(
          "STORE_CLOSED",
          this.#status === "closing"
            ? `store-fs at ${this.dir} is closing`
            : `store-fs at ${this.dir} is not open: call open() first`,
        ),
      );
    }
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const promise = (async () => {
      try {
        return await fn(parts);
      } catch (error) {
        throw toStoreError(error, parts.context);
      }
    })();
    this.#inflight.add(promise);
    const done = () => this.#inflight.delete(promise);
    promise.then(done, done);
    return promise;
  }

  #report(recovery: FsStoreRecovery): void {
    this.#recoveries.push(recovery);
    try {
      this.#onRecovery?.(recovery);
    } catch {
      // A broken callback must not break the store.
    }
  }

  async #load(): Promise<Parts> {
    this.#recoveries = [];
    this.#failure = undefined;
    const files = new FileSystem({ fsync: this.#fsync, tmpDir: path.join(this.dir, TMP_DIR) });
    try {
      // Before the recursive mkdir, which never returns for a path under /proc (Node 20).
      const kernel = await kernelFilesystemOf(this.dir);
      if (kernel !== undefined) {
        throw new InvalidArgumentError(
          `${this.dir} is on the kernel's ${kernel} filesystem, which cannot hold a store's files: give FsStore a directory on a disk`,
        );
      }
      await files.ensureDir(this.dir);
      await this.#refuseForeignDirectory();
      await files.ensureDir(files.tmpDir);
      const lock = await acquireLock(this.dir, files);
      const context = createContext({
        dir: this.dir,
        files,
        report: (r) => this.#report(r),
        fail: (error) => {
          this.#failure ??= error;
        },
      });
      const parts: Partial<Parts> = { context, lock };
      try {
        if (lock.broke !== undefined) {
          const broke = lock.broke;
          // Judged by the lock's nonce, not its boot id: a store of this process that could
          // not delete its lock, before a checkpoint/restore changed the boot id, is still one.
          const why = lock.staleBecause;
          const when =
            why === "earlier-boot"
              ? ", before the machine restarted"
              : why === "pid-reused"
                ? ", its pid now another process's"
                : "";
          const who =
            "pid" in broke
              ? `process ${broke.pid} (since ${broke.since}${when})`
              : "an unreadable lock file";
          this.#report({
            kind: "stale-lock-broken",
            file: LOCK_FILE,
            detail:
              "pid" in broke && why === "released-here"
                ? `${LOCK_FILE} was left by a store of this process (since ${broke.since}) whose close() could not delete it`
                : `${LOCK_FILE} was left by ${who}, which is gone: it did not close the store, so its last writes are checked`,
          });
        }
        await this.#removeTempFiles(files);
        await confirmLock(lock, files);
        // Read under the lock: the marker is only ever created by a lock holder.
        if (!(await this.#readMarker())) {
          const marker = {
            format: FORMAT,
            version: FORMAT_VERSION,
            createdAt: new Date().toISOString(),
          };
          await files.writeFileAtomic(
            path.join(this.dir, MARKER_FILE),
            `${JSON.stringify(marker, null, 2)}\n`,
          );
        }
        parts.sessions = await Sessions.load(context);
        parts.transcripts = new Transcripts(context);
        parts.approvals = new Approvals(context);
        parts.cron = await Cron.load(context);
        parts.devices = await Devices.load(context);
        parts.queue = await Queue.load(context, this.#dedupeWindowMs);
        parts.locks = await Locks.load(context);
        parts.kv = await KeyValue.load(context, parts.locks);
        return parts as Parts;
      } catch (error) {
        await closeParts(parts).catch(() => {});
        await releaseLock(lock, files).catch(() => {});
        throw error;
      }
    } catch (error) {
      if (BeamClawError.isInstance(error)) throw error;
      throw new StoreError(
        "STORE_UNAVAILABLE",
        `store-fs cannot open ${this.dir}: ${describeIo(error)}`,
        { cause: error },
      );
    }
  }

  /**
   * Refuses, before writing anything, a directory that holds files but is not a store. (The
   * listing is what decides: the marker is created before any data file, so a store being
   * created by another process at this very moment is never mistaken for a foreign directory.)
   */
  async #refuseForeignDirectory(): Promise<void> {
    const names = await readDirIfExists(this.dir);
    if (names.includes(MARKER_FILE)) return;
    const other = names.filter((n) => n !== TMP_DIR && n !== LOCK_FILE);
    if (other.length > 0) {
      throw new InvalidArgumentError(
        `${this.dir} is not empty and is not a store-fs directory (no ${MARKER_FILE}; found ${other.slice(0, 3).join(", ")}${other.length > 3 ? ", ..." : ""}): give FsStore an empty or new directory`,
      );
    }
  }

  /** Whether the directory has its marker (checked: format and version); false if not yet. */
  async #readMarker(): Promise<boolean> {
    const content = await readFileIfExists(path.join(this.dir, MARKER_FILE));
    if (content === undefined) return false;
    let marker: { format?: unknown; version?: unknown };
    try {
      marker = JSON.parse(content.toString("utf8")) as typeof marker;
    } catch (error) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${path.join(this.dir, MARKER_FILE)} is not valid JSON`,
        {
          cause: error,
        },
      );
    }
    if (marker?.format !== FORMAT || typeof marker.version !== "number") {
      throw new StoreError(
        "STORE_CORRUPT",
        `${path.join(this.dir, MARKER_FILE)} does not describe a ${FORMAT} store`,
      );
    }
    if (marker.version > FORMAT_VERSION) {
      throw new StoreError(
        "STORE_CORRUPT",
        `${this.dir} was written by a newer @beamclaw/store-fs (format ${marker.version}; this one reads ${FORMAT_VERSION}): upgrade the package`,
      );
    }
    return true;
  }

  async #removeTempFiles(files: FileSystem): Promise<void> {
    const names = await readDirIfExists(files.tmpDir);
    if (names.length === 0) return;
    let removed = 0;
    for (const name of names) {
      await fs.rm(path.join(files.tmpDir, name), { force: true, recursive: true });
      removed++;
    }
    if (removed > 0) {
      this.#report({
        kind: "temp-files-removed",
        file: TMP_DIR,
        detail: `removed ${removed} temp file(s) of atomic writes interrupted by a crash; the files they were to replace are intact`,
      });
    }
  }
}

async function closeParts(parts: Partial<Parts>): Promise<void> {
  // Transcripts, approvals, cron and devices wait for their queued work; the logs flush.
  await parts.transcripts?.close();
  await parts.approvals?.close();
  await parts.cron?.close();
  await parts.devices?.close();
  await parts.sessions?.close();
  await parts.queue?.close();
  await parts.kv?.close();
  await parts.locks?.close();
}

/**
 * Creates an {@link FsStore}; call `open()` before use.
 *
 * @example
 * ```ts
 * const store = createFsStore({ dir: "./data" });
 * await store.open();
 * const page = await store.sessions.list({ agentId: "main", limit: 20 });
 * await store.close();
 * ```
 */
export function createFsStore(options: FsStoreOptions): FsStore {
  return new FsStore(options);
}
