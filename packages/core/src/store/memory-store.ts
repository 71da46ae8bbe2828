/**
 * `MemoryStore`: the Store contract held in this process's memory, for tests and ephemeral
 * use. It passes the same conformance suite as the durable adapters; what it cannot do is
 * survive the process (`capabilities.durable: "memory"`).
 */
import { FencedError, InvalidArgumentError, StoreError } from "../errors.js";
import type { JsonObject, JsonValue } from "../providers/types.js";
import { compareCodePoints, readKvScanArguments, SortedKeyIndex } from "./kv-paging.js";
import {
  MAX_STORED_JSON_DEPTH,
  storedJsonTooDeepMessage,
  unreadableStoredValueError,
} from "./limits.js";
import type {
  ApprovalRecord,
  ApprovalStore,
  CronJobRecord,
  CronRunPage,
  CronRunRecord,
  CronStore,
  DeviceRecord,
  DeviceStore,
  DeviceTokenRecord,
  EnqueueResult,
  InboundQueue,
  KeyValueStore,
  KvDeleteOptions,
  KvSetOptions,
  Lease,
  LockStore,
  Page,
  PageOptions,
  QueuedMessage,
  QueuePendingOptions,
  SessionListOptions,
  SessionRecord,
  SessionStore,
  Store,
  StoreCapabilities,
  TranscriptReadOptions,
  TranscriptRecord,
  TranscriptStore,
} from "./types.js";

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** How long acknowledged idempotency keys of the inbound queue are remembered. Default 24 h. */
  dedupeWindowMs?: number;
  /**
   * The clock (epoch ms) for TTLs, leases, token expiry and the dedupe window. Default
   * `Date.now`.
   */
  now?: () => number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
const DEFAULT_RUNS_KEPT = 200;
/**
 * Expired data (TTL keys, expired tokens and leases, old acknowledged queue keys) is purged by
 * a write at most this often: memory is bounded without a timer, and a store nobody writes to
 * does not grow.
 */
const SWEEP_INTERVAL_MS = 30_000;

/**
 * The Store contract in memory. Everything is lost when the object is garbage collected;
 * `close()` followed by `open()` on the same object keeps the data. Reads and writes copy, so
 * callers can never change stored data by mutating an object. TTLs use the injected clock, and
 * no timer is ever started.
 *
 * @example
 * ```ts
 * const store = new MemoryStore();
 * await store.open();
 * await store.sessions.put({ key: "agent:main:main", agentId: "main", createdAt: 1, updatedAt: 1 });
 * await store.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
 * console.log(await store.transcripts.lastSeq("agent:main:main")); // 1
 * await store.close();
 * ```
 */
export class MemoryStore implements Store {
  readonly specificationVersion = "v1" as const;
  readonly kind = "memory";
  readonly capabilities: StoreCapabilities = Object.freeze({
    durable: "memory",
    multiProcess: false,
    ttl: true,
    distributedLocks: false,
  } as const);
  readonly sessions: SessionStore;
  readonly transcripts: TranscriptStore;
  readonly cron: CronStore;
  readonly devices: DeviceStore;
  readonly approvals: ApprovalStore;
  readonly queue: InboundQueue;
  readonly kv: KeyValueStore;
  readonly locks: LockStore;
  readonly #core: Core;

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("MemoryStore options must be an object");
    }
    const { dedupeWindowMs = DAY_MS, now = Date.now } = options;
    if (
      typeof dedupeWindowMs !== "number" ||
      !(dedupeWindowMs >= 0) ||
      dedupeWindowMs === Infinity
    ) {
      throw new InvalidArgumentError(
        `MemoryStore dedupeWindowMs must be a finite number >= 0, got ${String(dedupeWindowMs)}`,
      );
    }
    if (typeof now !== "function")
      throw new InvalidArgumentError("MemoryStore now must be a function");
    const core = new Core(now);
    this.#core = core;
    const locks = new MemoryLocks(core);
    this.sessions = new MemorySessions(core);
    this.transcripts = new MemoryTranscripts(core);
    this.cron = new MemoryCron(core);
    this.devices = new MemoryDevices(core);
    this.approvals = new MemoryApprovals(core);
    this.queue = new MemoryQueue(core, dedupeWindowMs);
    this.kv = new MemoryKeyValue(core, locks);
    this.locks = locks;
  }

  /** Makes the store usable. Opening twice does nothing; a closed store reopens, data kept. */
  async open(): Promise<void> {
    this.#core.state = "open";
  }

  /** Makes every operation reject with `STORE_CLOSED` until `open()`; keeps data. Idempotent. */
  async close(): Promise<void> {
    if (this.#core.state === "open") this.#core.state = "closed";
  }
}

/**
 * Creates a {@link MemoryStore}.
 *
 * @example
 * ```ts
 * const store = createMemoryStore({ dedupeWindowMs: 60_000 });
 * await store.open();
 * ```
 */
export function createMemoryStore(options?: MemoryStoreOptions): MemoryStore {
  return new MemoryStore(options);
}

// ------------------------------------------------------------------ shared machinery

/** What every sub-store shares: the open/closed state, the clock and the purge of expired data. */
class Core {
  state: "new" | "open" | "closed" = "new";
  readonly #now: () => number;
  readonly #sweepers: Array<(now: number) => void> = [];
  #lastSweep = Number.NEGATIVE_INFINITY;

  constructor(now: () => number) {
    this.#now = now;
  }

  now(): number {
    return this.#now();
  }

  /** Throws `STORE_CLOSED` unless open. Called first by every operation. */
  ensureOpen(operation: string): void {
    if (this.state === "open") return;
    throw new StoreError(
      "STORE_CLOSED",
      this.state === "new"
        ? `${operation}: the memory store is not open yet (call open() first)`
        : `${operation}: the memory store is closed`,
    );
  }

  onSweep(sweeper: (now: number) => void): void {
    this.#sweepers.push(sweeper);
  }

  /** Called by every write: purges expired data when the last purge is old enough. */
  wrote(): void {
    const now = this.now();
    if (now - this.#lastSweep < SWEEP_INTERVAL_MS) return;
    this.#lastSweep = now;
    for (const sweep of this.#sweepers) sweep(now);
  }
}

function invalid(message: string): InvalidArgumentError {
  return new InvalidArgumentError(message);
}

/** A non-empty string, or `InvalidArgumentError` naming the argument. */
function requireKey(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw invalid(`${what} must be a non-empty string, got ${describeValue(value)}`);
  }
  return value;
}

function requireFinite(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw invalid(`${what} must be a finite number, got ${describeValue(value)}`);
  }
  return value;
}

function requireInteger(value: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `within ${min}..${max}`;
    throw invalid(`${what} must be an integer ${range}, got ${describeValue(value)}`);
  }
  return value;
}

function limitOf(value: unknown, what: string): number {
  return value === undefined ? DEFAULT_LIMIT : requireInteger(value, what, 1, MAX_LIMIT);
}

function optionsObject<T extends object>(value: T | undefined, what: string): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(`${what} must be an object, got ${describeValue(value)}`);
  }
  return value;
}

function describeValue(value: unknown): string {
  if (typeof value === "string")
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol" || typeof value === "function") return typeof value;
  if (typeof value === "object" && value !== null) {
    return Array.isArray(value)
      ? "an array"
      : `an object (${value.constructor?.name ?? "null prototype"})`;
  }
  return String(value);
}

/**
 * A deep copy of `value` as JSON would carry it, or `InvalidArgumentError` naming the path of
 * the first part JSON cannot represent. Object properties that are `undefined` are dropped
 * (as `JSON.stringify` does) and `-0` becomes `0`, so this store reads back exactly what a
 * JSON-backed store would. A value deeper than {@link MAX_STORED_JSON_DEPTH} is refused: the
 * `depth` the walks below pass down is the number of arrays and objects enclosing `value`, so
 * an array or object is refused when `depth >= MAX_STORED_JSON_DEPTH` (it would be one level
 * too many).
 */
function copyJson(value: unknown, path: string): JsonValue {
  try {
    return copyValid(value, 0, []);
  } catch (error) {
    if (error !== NOT_JSON) throw unreadableStoredValueError(path, error);
    // Rare: walk again, building paths, to name the first part JSON cannot represent.
    return readingJson(path, () => copyJsonAt(value, path, 0, new Set()));
  }
}

/** Runs `read`, turning anything a getter or proxy trap of the value throws into {@link unreadableStoredValueError}. */
function readingJson<T>(path: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error === NOT_JSON) throw error;
    throw unreadableStoredValueError(path, error);
  }
}

/** Thrown by {@link copyValid} at the first part JSON cannot represent. */
const NOT_JSON: unique symbol = Symbol("not JSON");

/**
 * The fast path of {@link copyJson}: the same checks, but no path strings and no per-call
 * allocations beyond the copy itself. `ancestors[i]` is the object at depth `i` on the way
 * down, for the circular-reference check (stores hold shallow data, so the scan is short).
 */
function copyValid(value: unknown, depth: number, ancestors: object[]): JsonValue {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value)) throw NOT_JSON;
      return value === 0 ? 0 : value;
    case "object": {
      if (value === null) return null;
      if (depth >= MAX_STORED_JSON_DEPTH) throw NOT_JSON;
      for (let i = 0; i < depth; i++) if (ancestors[i] === value) throw NOT_JSON;
      ancestors[depth] = value;
      if (Array.isArray(value)) {
        const out: JsonValue[] = [];
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          if (item === undefined || !(i in value)) throw NOT_JSON;
          out.push(copyValid(item, depth + 1, ancestors));
        }
        return out;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw NOT_JSON;
      const out: JsonObject = {};
      for (const key of Object.keys(value)) {
        const item: unknown = (value as Record<string, unknown>)[key];
        if (item === undefined) continue;
        setOwn(out, key, copyValid(item, depth + 1, ancestors));
      }
      return out;
    }
    default:
      throw NOT_JSON;
  }
}

function copyJsonAt(
  value: unknown,
  path: string,
  depth: number,
  ancestors: Set<object>,
): JsonValue {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value))
        throw invalid(`${path} is ${value}, which JSON cannot represent`);
      return value === 0 ? 0 : value;
    case "object": {
      if (value === null) return null;
      if (depth >= MAX_STORED_JSON_DEPTH) throw invalid(storedJsonTooDeepMessage(path));
      if (ancestors.has(value)) throw invalid(`${path} is a circular reference`);
      ancestors.add(value);
      try {
        if (Array.isArray(value)) {
          const out: JsonValue[] = [];
          for (let i = 0; i < value.length; i++) {
            if (!(i in value) || value[i] === undefined) {
              throw invalid(`${path}[${i}] is undefined, which a JSON array cannot hold`);
            }
            out.push(copyJsonAt(value[i], `${path}[${i}]`, depth + 1, ancestors));
          }
          return out;
        }
        const proto: unknown = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw invalid(`${path} is ${describeValue(value)}, not a plain JSON object`);
        }
        const out: JsonObject = {};
        for (const [key, item] of Object.entries(value)) {
          if (item === undefined) continue;
          setOwn(out, key, copyJsonAt(item, `${path}.${key}`, depth + 1, ancestors));
        }
        return out;
      } finally {
        ancestors.delete(value);
      }
    }
    default:
      throw invalid(`${path} is ${describeValue(value)}, which JSON cannot represent`);
  }
}

/**
 * `out[key] = value`, except that a `"__proto__"` key stays an ordinary own property (as
 * `JSON.parse` makes it) instead of setting the prototype.
 */
function setOwn(out: JsonObject, key: string, value: JsonValue): void {
  if (key === "__proto__") {
    Object.defineProperty(out, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    out[key] = value;
  }
}

/**
 * `text`, made flat. `JSON.stringify` builds a long result as a tree of pieces (cons strings);
 * a text kept for long (a transcript entry, a cron job, a run-log entry) then costs about a
 * third more memory than its characters, and each piece is one more object for the collector
 * to trace. Reading a character makes V8 flatten it, once.
 */
function flatten(text: string): string {
  text.charCodeAt(0);
  return text;
}

/**
 * A JSON object argument (not an array, not null) as JSON text, checked as strictly as
 * {@link copyJson}: what `JSON.parse` gives back equals what `copyJson` would have stored.
 */
function serializeObject(value: unknown, path: string): string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(`${path} must be a JSON object, got ${describeValue(value)}`);
  }
  try {
    checkValid(value, 0, []);
  } catch (error) {
    if (error !== NOT_JSON) throw unreadableStoredValueError(path, error);
    // Throws, naming the first bad part.
    readingJson(path, () => copyJsonAt(value, path, 0, new Set()));
    throw error;
  }
  // Kept for as long as the record lives: flat, not the pieces `JSON.stringify` built it from.
  return flatten(readingJson(path, () => JSON.stringify(value)));
}

/** {@link copyValid} without the copy: throws {@link NOT_JSON} at the first bad part. */
function checkValid(value: unknown, depth: number, ancestors: object[]): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw NOT_JSON;
      return;
    case "object": {
      if (value === null) return;
      if (depth >= MAX_STORED_JSON_DEPTH) throw NOT_JSON;
      for (let i = 0; i < depth; i++) if (ancestors[i] === value) throw NOT_JSON;
      ancestors[depth] = value;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          if (item === undefined || !(i in value)) throw NOT_JSON;
          checkValid(item, depth + 1, ancestors);
        }
        return;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw NOT_JSON;
      for (const key of Object.keys(value)) {
        const item: unknown = (value as Record<string, unknown>)[key];
        if (item !== undefined) checkValid(item, depth + 1, ancestors);
      }
      return;
    }
    default:
      throw NOT_JSON;
  }
}

/** A deep copy of a JSON object argument (not an array, not null). */
function copyObject(value: unknown, path: string): JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(`${path} must be a JSON object, got ${describeValue(value)}`);
  }
  return copyJson(value, path) as JsonObject;
}

/**
 * Reads hand out copies so that callers can never change stored data. Everything stored went
 * through {@link copyJson} (or is built here from such values), so it is plain JSON and a
 * plain recursive copy is exact, and several times cheaper than `structuredClone`.
 */
function clone<T>(value: T): T {
  return cloneStored(value as JsonValue) as T;
}

function cloneStored(value: JsonValue): JsonValue {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    const out: JsonValue[] = [];
    for (let i = 0; i < value.length; i++) out.push(cloneStored(value[i]!));
    return out;
  }
  const out: JsonObject = {};
  for (const key of Object.keys(value)) {
    setOwn(out, key, cloneStored(value[key]!));
  }
  return out;
}

function sortedBy<T>(items: Iterable<T>, keyOf: (item: T) => string): T[] {
  return [...items].sort((a, b) => compareCodePoints(keyOf(a), keyOf(b)));
}

// ------------------------------------------------------------------ sessions

/** Newest `updatedAt` first, ties by key. */
function compareSessions(
  a: { updatedAt: number; key: string },
  b: { updatedAt: number; key: string },
) {
  return b.updatedAt - a.updatedAt || compareCodePoints(a.key, b.key);
}

const CURSOR_PREFIX = "m1.";

function encodeCursor(position: { updatedAt: number; key: string }): string {
  return (
    CURSOR_PREFIX +
    Buffer.from(JSON.stringify([position.updatedAt, position.key])).toString("base64url")
  );
}

function decodeCursor(cursor: unknown): { updatedAt: number; key: string } {
  if (typeof cursor === "string" && cursor.startsWith(CURSOR_PREFIX)) {
    try {
      const decoded: unknown = JSON.parse(
        Buffer.from(cursor.slice(CURSOR_PREFIX.length), "base64url").toString("utf8"),
      );
      if (
        Array.isArray(decoded) &&
        decoded.length === 2 &&
        typeof decoded[0] === "number" &&
        typeof decoded[1] === "string"
      ) {
        return { updatedAt: decoded[0], key: decoded[1] };
      }
    } catch {
      // fall through to the error below
    }
  }
  throw invalid(
    `sessions.list: cursor ${describeValue(cursor)} is not a cursor this store returned`,
  );
}

function validSession(record: unknown, what: string): SessionRecord {
  const copy = copyObject(record, what);
  requireKey(copy.key, `${what}.key`);
  requireKey(copy.agentId, `${what}.agentId`);
  requireFinite(copy.createdAt, `${what}.createdAt`);
  requireFinite(copy.updatedAt, `${what}.updatedAt`);
  return copy as SessionRecord;
}

class MemorySessions implements SessionStore {
  readonly #core: Core;
  readonly #records = new Map<string, SessionRecord>();
  /** All records in list order; rebuilt lazily after a write. */
  #ordered: SessionRecord[] | undefined;

  constructor(core: Core) {
    this.#core = core;
  }

  async get(key: string): Promise<SessionRecord | undefined> {
    this.#core.ensureOpen("sessions.get");
    const record = this.#records.get(requireKey(key, "sessions.get: key"));
    return record && clone(record);
  }

  async put(record: SessionRecord): Promise<void> {
    this.#core.ensureOpen("sessions.put");
    const copy = validSession(record, "sessions.put: record");
    this.#records.set(copy.key, copy);
    this.#ordered = undefined;
    this.#core.wrote();
  }

  async delete(key: string): Promise<boolean> {
    this.#core.ensureOpen("sessions.delete");
    const existed = this.#records.delete(requireKey(key, "sessions.delete: key"));
    if (existed) this.#ordered = undefined;
    return existed;
  }

  async list(options?: SessionListOptions): Promise<Page<SessionRecord>> {
    this.#core.ensureOpen("sessions.list");
    const {
      agentId,
      updatedSince,
      limit: rawLimit,
      cursor,
    } = optionsObject(options, "sessions.list: options");
    if (agentId !== undefined) requireKey(agentId, "sessions.list: agentId");
    if (updatedSince !== undefined) requireFinite(updatedSince, "sessions.list: updatedSince");
    const limit = limitOf(rawLimit, "sessions.list: limit");
    const after = cursor === undefined ? undefined : decodeCursor(cursor);

    this.#ordered ??= [...this.#records.values()].sort(compareSessions);
    const ordered = this.#ordered;
    let index = 0;
    if (after) {
      // Keyset paging: start right after the cursor's position in the order, wherever the
      // records around it moved, so unchanged records are never skipped or repeated.
      let high = ordered.length;
      while (index < high) {
        const middle = (index + high) >>> 1;
        if (compareSessions(ordered[middle]!, after) <= 0) index = middle + 1;
        else high = middle;
      }
    }
    const items: SessionRecord[] = [];
    for (; index < ordered.length && items.length <= limit; index++) {
      const record = ordered[index]!;
      if (updatedSince !== undefined && record.updatedAt < updatedSince) break;
      if (agentId !== undefined && record.agentId !== agentId) continue;
      items.push(record);
    }
    const page: Page<SessionRecord> = { items: [] };
    if (items.length > limit) {
      items.length = limit;
      page.cursor = encodeCursor(items[limit - 1]!);
    }
    page.items = items.map(clone);
    return page;
  }

  async count(agentId?: string): Promise<number> {
    this.#core.ensureOpen("sessions.count");
    if (agentId === undefined) return this.#records.size;
    requireKey(agentId, "sessions.count: agentId");
    let n = 0;
    for (const record of this.#records.values()) if (record.agentId === agentId) n++;
    return n;
  }
}

// ------------------------------------------------------------------ transcripts

/**
 * Transcript entries are kept as JSON text: one string per entry instead of a tree of
 * objects, so a long transcript costs the garbage collector almost nothing to trace (it grows
 * with every turn and is rarely read), and every read parses a fresh copy.
 */
class MemoryTranscripts implements TranscriptStore {
  readonly #core: Core;
  /** Entry `seq` lives at index `seq - 1`, as JSON text. */
  readonly #entries = new Map<string, string[]>();

  constructor(core: Core) {
    this.#core = core;
  }

  async append(sessionKey: string, entries: JsonObject[]): Promise<number> {
    this.#core.ensureOpen("transcripts.append");
    requireKey(sessionKey, "transcripts.append: sessionKey");
    if (!Array.isArray(entries)) {
      throw invalid(`transcripts.append: entries must be an array, got ${describeValue(entries)}`);
    }
    // Check and serialize every entry before storing any: all or none.
    const copies = entries.map((entry, i) =>
      serializeObject(entry, `transcripts.append: entries[${i}]`),
    );
    const stored = this.#entries.get(sessionKey);
    if (copies.length === 0) return stored?.length ?? 0;
    if (stored) stored.push(...copies);
    else this.#entries.set(sessionKey, copies);
    this.#core.wrote();
    return (stored ?? copies).length;
  }

  async read(sessionKey: string, options?: TranscriptReadOptions): Promise<TranscriptRecord[]> {
    this.#core.ensureOpen("transcripts.read");
    requireKey(sessionKey, "transcripts.read: sessionKey");
    const {
      afterSeq = 0,
      beforeSeq,
      limit: rawLimit,
      order = "asc",
    } = optionsObject(options, "transcripts.read: options");
    requireInteger(afterSeq, "transcripts.read: afterSeq", 0);
    if (beforeSeq !== undefined) requireInteger(beforeSeq, "transcripts.read: beforeSeq", 0);
    const limit = limitOf(rawLimit, "transcripts.read: limit");
    if (order !== "asc" && order !== "desc") {
      throw invalid(`transcripts.read: order must be "asc" or "desc", got ${describeValue(order)}`);
    }
    const entries = this.#entries.get(sessionKey) ?? [];
    const first = afterSeq + 1;
    const last = Math.min(entries.length, beforeSeq === undefined ? Infinity : beforeSeq - 1);
    const out: TranscriptRecord[] = [];
    if (order === "asc") {
      for (let seq = first; seq <= last && out.length < limit; seq++) {
        out.push({ seq, entry: JSON.parse(entries[seq - 1]!) as JsonObject });
      }
    } else {
      for (let seq = last; seq >= first && out.length < limit; seq--) {
        out.push({ seq, entry: JSON.parse(entries[seq - 1]!) as JsonObject });
      }
    }
    return out;
  }

  async lastSeq(sessionKey: string): Promise<number> {
    this.#core.ensureOpen("transcripts.lastSeq");
    return (
      this.#entries.get(requireKey(sessionKey, "transcripts.lastSeq: sessionKey"))?.length ?? 0
    );
  }

  async delete(sessionKey: string): Promise<boolean> {
    this.#core.ensureOpen("transcripts.delete");
    return this.#entries.delete(requireKey(sessionKey, "transcripts.delete: sessionKey"));
  }
}

// ------------------------------------------------------------------ cron

class MemoryCron implements CronStore {
  readonly #core: Core;
  /**
   * Jobs and runs are kept as JSON text (checked as strictly as `copyJson`): a service with
   * 100,000 jobs rewrites a job at every run, and a replaced string is one object for the
   * garbage collector where a replaced record is a dozen, so full collections stay short.
   */
  readonly #jobs = new Map<string, { agentId: string; text: string }>();
  /** Per job, newest first (by `startedAt`; of equal ones, the later appended first). */
  readonly #runs = new Map<string, Array<{ startedAt: number; text: string }>>();

  constructor(core: Core) {
    this.#core = core;
  }

  async getJob(id: string): Promise<CronJobRecord | undefined> {
    this.#core.ensureOpen("cron.getJob");
    const job = this.#jobs.get(requireKey(id, "cron.getJob: id"));
    return job && (JSON.parse(job.text) as CronJobRecord);
  }

  async putJob(job: CronJobRecord): Promise<void> {
    this.#core.ensureOpen("cron.putJob");
    const text = serializeObject(job, "cron.putJob: job");
    const id = requireKey(job.id, "cron.putJob: job.id");
    const agentId = requireKey(job.agentId, "cron.putJob: job.agentId");
    this.#jobs.set(id, { agentId, text });
    this.#core.wrote();
  }

  async deleteJob(id: string): Promise<boolean> {
    this.#core.ensureOpen("cron.deleteJob");
    requireKey(id, "cron.deleteJob: id");
    this.#runs.delete(id);
    return this.#jobs.delete(id);
  }

  async listJobs(agentId?: string): Promise<CronJobRecord[]> {
    this.#core.ensureOpen("cron.listJobs");
    if (agentId !== undefined) requireKey(agentId, "cron.listJobs: agentId");
    const ids: string[] = [];
    for (const [id, job] of this.#jobs) {
      if (agentId === undefined || job.agentId === agentId) ids.push(id);
    }
    return sortedBy(ids, (id) => id).map(
      (id) => JSON.parse(this.#jobs.get(id)!.text) as CronJobRecord,
    );
  }

  async appendRun(run: CronRunRecord, options?: { keep?: number }): Promise<void> {
    this.#core.ensureOpen("cron.appendRun");
    const text = serializeObject(run, "cron.appendRun: run");
    const jobId = requireKey(run.jobId, "cron.appendRun: run.jobId");
    requireFinite(run.startedAt, "cron.appendRun: run.startedAt");
    const { keep = DEFAULT_RUNS_KEPT } = optionsObject(options, "cron.appendRun: options");
    requireInteger(keep, "cron.appendRun: keep", 1);
    const startedAt = run.startedAt;
    const runs = this.#runs.get(jobId) ?? [];
    let index = runs.findIndex((other) => other.startedAt <= startedAt);
    if (index === -1) index = runs.length;
    runs.splice(index, 0, { startedAt, text });
    if (runs.length > keep) runs.length = keep;
    this.#runs.set(jobId, runs);
    this.#core.wrote();
  }

  async listRuns(jobId: string, options?: CronRunPage): Promise<CronRunRecord[]> {
    this.#core.ensureOpen("cron.listRuns");
    requireKey(jobId, "cron.listRuns: jobId");
    const { limit: rawLimit, offset: rawOffset } = optionsObject(options, "cron.listRuns: options");
    const limit = limitOf(rawLimit, "cron.listRuns: limit");
    const offset =
      rawOffset === undefined ? 0 : requireInteger(rawOffset, "cron.listRuns: offset", 0);
    return (this.#runs.get(jobId) ?? [])
      .slice(offset, offset + limit)
      .map((run) => JSON.parse(run.text) as CronRunRecord);
  }
}

// ------------------------------------------------------------------ devices and tokens

class MemoryDevices implements DeviceStore {
  readonly #core: Core;
  readonly #devices = new Map<string, DeviceRecord>();
  readonly #tokens = new Map<string, DeviceTokenRecord>();
  /** deviceId -> its token hashes. */
  readonly #tokensOf = new Map<string, Set<string>>();

  constructor(core: Core) {
    this.#core = core;
    core.onSweep((now) => {
      for (const token of [...this.#tokens.values()]) {
        if (isExpired(token, now)) this.#removeToken(token.tokenHash);
      }
    });
  }

  async get(deviceId: string): Promise<DeviceRecord | undefined> {
    this.#core.ensureOpen("devices.get");
    const device = this.#devices.get(requireKey(deviceId, "devices.get: deviceId"));
    return device && clone(device);
  }

  async put(device: DeviceRecord): Promise<void> {
    this.#core.ensureOpen("devices.put");
    const copy = copyObject(device, "devices.put: device") as DeviceRecord;
    requireKey(copy.deviceId, "devices.put: device.deviceId");
    this.#devices.set(copy.deviceId, copy);
    this.#core.wrote();
  }

  async delete(deviceId: string): Promise<boolean> {
    this.#core.ensureOpen("devices.delete");
    requireKey(deviceId, "devices.delete: deviceId");
    for (const hash of [...(this.#tokensOf.get(deviceId) ?? [])]) this.#removeToken(hash);
    return this.#devices.delete(deviceId);
  }

  async list(): Promise<DeviceRecord[]> {
    this.#core.ensureOpen("devices.list");
    return sortedBy(this.#devices.values(), (device) => device.deviceId).map(clone);
  }

  async putToken(token: DeviceTokenRecord): Promise<void> {
    this.#core.ensureOpen("devices.putToken");
    const copy = copyObject(token, "devices.putToken: token") as DeviceTokenRecord;
    requireKey(copy.tokenHash, "devices.putToken: token.tokenHash");
    requireKey(copy.deviceId, "devices.putToken: token.deviceId");
    if (copy.expiresAt !== undefined)
      requireFinite(copy.expiresAt, "devices.putToken: token.expiresAt");
    this.#removeToken(copy.tokenHash);
    this.#tokens.set(copy.tokenHash, copy);
    const hashes = this.#tokensOf.get(copy.deviceId) ?? new Set<string>();
    hashes.add(copy.tokenHash);
    this.#tokensOf.set(copy.deviceId, hashes);
    this.#core.wrote();
  }

  async getToken(tokenHash: string): Promise<DeviceTokenRecord | undefined> {
    this.#core.ensureOpen("devices.getToken");
    const token = this.#tokens.get(requireKey(tokenHash, "devices.getToken: tokenHash"));
    return token && !isExpired(token, this.#core.now()) ? clone(token) : undefined;
  }

  async deleteToken(tokenHash: string): Promise<boolean> {
    this.#core.ensureOpen("devices.deleteToken");
    return this.#removeToken(requireKey(tokenHash, "devices.deleteToken: tokenHash"));
  }

  async listTokens(deviceId: string): Promise<DeviceTokenRecord[]> {
    this.#core.ensureOpen("devices.listTokens");
    requireKey(deviceId, "devices.listTokens: deviceId");
    const now = this.#core.now();
    const tokens: DeviceTokenRecord[] = [];
    for (const hash of this.#tokensOf.get(deviceId) ?? []) {
      const token = this.#tokens.get(hash);
      if (token && !isExpired(token, now)) tokens.push(token);
    }
    return sortedBy(tokens, (token) => token.tokenHash).map(clone);
  }

  #removeToken(tokenHash: string): boolean {
    const token = this.#tokens.get(tokenHash);
    if (!token) return false;
    this.#tokens.delete(tokenHash);
    const hashes = this.#tokensOf.get(token.deviceId);
    hashes?.delete(tokenHash);
    if (hashes?.size === 0) this.#tokensOf.delete(token.deviceId);
    return true;
  }
}

function isExpired(token: DeviceTokenRecord, now: number): boolean {
  return token.expiresAt !== undefined && token.expiresAt <= now;
}

// ------------------------------------------------------------------ approvals

class MemoryApprovals implements ApprovalStore {
  readonly #core: Core;
  /** sessionKey -> pattern -> record. */
  readonly #approvals = new Map<string, Map<string, ApprovalRecord>>();

  constructor(core: Core) {
    this.#core = core;
  }

  async list(sessionKey: string): Promise<ApprovalRecord[]> {
    this.#core.ensureOpen("approvals.list");
    const records = this.#approvals.get(requireKey(sessionKey, "approvals.list: sessionKey"));
    return records ? sortedBy(records.values(), (record) => record.pattern).map(clone) : [];
  }

  async put(sessionKey: string, record: ApprovalRecord): Promise<void> {
    this.#core.ensureOpen("approvals.put");
    requireKey(sessionKey, "approvals.put: sessionKey");
    const copy = copyObject(record, "approvals.put: record") as ApprovalRecord;
    requireKey(copy.pattern, "approvals.put: record.pattern");
    if (copy.decision !== "allow" && copy.decision !== "deny") {
      throw invalid(
        `approvals.put: record.decision must be "allow" or "deny", got ${describeValue(copy.decision)}`,
      );
    }
    requireFinite(copy.decidedAt, "approvals.put: record.decidedAt");
    const records = this.#approvals.get(sessionKey) ?? new Map<string, ApprovalRecord>();
    records.set(copy.pattern, copy);
    this.#approvals.set(sessionKey, records);
    this.#core.wrote();
  }

  async clear(sessionKey: string, pattern?: string): Promise<number> {
    this.#core.ensureOpen("approvals.clear");
    requireKey(sessionKey, "approvals.clear: sessionKey");
    if (pattern !== undefined) requireKey(pattern, "approvals.clear: pattern");
    const records = this.#approvals.get(sessionKey);
    if (!records) return 0;
    if (pattern === undefined) {
      this.#approvals.delete(sessionKey);
      return records.size;
    }
    const removed = records.delete(pattern) ? 1 : 0;
    if (records.size === 0) this.#approvals.delete(sessionKey);
    return removed;
  }
}

// ------------------------------------------------------------------ inbound queue

/** Ids are zero-padded so that they increase as strings as well as in enqueue order. */
const QUEUE_ID_DIGITS = 16;

class MemoryQueue implements InboundQueue {
  readonly dedupeWindowMs: number;
  readonly #core: Core;
  #lastId = 0;
  /** Pending messages by id, in enqueue order (a Map keeps insertion order). */
  readonly #pending = new Map<string, QueuedMessage>();
  /** idempotencyKey -> id of its pending message. */
  readonly #pendingByKey = new Map<string, string>();
  /** idempotencyKey -> the acknowledged message and when it was acknowledged. */
  readonly #acked = new Map<string, { message: QueuedMessage; ackedAt: number }>();

  constructor(core: Core, dedupeWindowMs: number) {
    this.#core = core;
    this.dedupeWindowMs = dedupeWindowMs;
    core.onSweep((now) => {
      for (const [key, { ackedAt }] of this.#acked) {
        if (now - ackedAt >= this.dedupeWindowMs) this.#acked.delete(key);
      }
    });
  }

  async enqueue(message: {
    idempotencyKey: string;
    sessionKey: string;
    payload: JsonObject;
  }): Promise<EnqueueResult> {
    this.#core.ensureOpen("queue.enqueue");
    if (typeof message !== "object" || message === null) {
      throw invalid(`queue.enqueue: message must be an object, got ${describeValue(message)}`);
    }
    const idempotencyKey = requireKey(
      message.idempotencyKey,
      "queue.enqueue: message.idempotencyKey",
    );
    const sessionKey = requireKey(message.sessionKey, "queue.enqueue: message.sessionKey");
    const payload = copyObject(message.payload, "queue.enqueue: message.payload");
    const now = this.#core.now();

    const pendingId = this.#pendingByKey.get(idempotencyKey);
    const original = pendingId === undefined ? undefined : this.#pending.get(pendingId);
    if (original) return { message: clone(original), duplicate: true };
    const acked = this.#acked.get(idempotencyKey);
    if (acked && now - acked.ackedAt < this.dedupeWindowMs) {
      return { message: clone(acked.message), duplicate: true };
    }

    const id = String(++this.#lastId).padStart(QUEUE_ID_DIGITS, "0");
    const stored: QueuedMessage = {
      id,
      idempotencyKey,
      sessionKey,
      payload,
      enqueuedAt: now,
      deliveries: 0,
    };
    this.#pending.set(id, stored);
    this.#pendingByKey.set(idempotencyKey, id);
    this.#acked.delete(idempotencyKey);
    this.#core.wrote();
    return { message: clone(stored), duplicate: false };
  }

  async ack(id: string): Promise<void> {
    this.#core.ensureOpen("queue.ack");
    const message = this.#pending.get(requireKey(id, "queue.ack: id"));
    if (!message) return;
    this.#pending.delete(id);
    this.#pendingByKey.delete(message.idempotencyKey);
    if (this.dedupeWindowMs > 0) {
      this.#acked.set(message.idempotencyKey, { message, ackedAt: this.#core.now() });
    }
    this.#core.wrote();
  }

  async discard(id: string): Promise<void> {
    this.#core.ensureOpen("queue.discard");
    const message = this.#pending.get(requireKey(id, "queue.discard: id"));
    if (!message) return;
    this.#pending.delete(id);
    this.#pendingByKey.delete(message.idempotencyKey);
    this.#core.wrote();
  }

  async pending(options?: QueuePendingOptions): Promise<QueuedMessage[]> {
    this.#core.ensureOpen("queue.pending");
    const after = optionsObject(options, "queue.pending: options").after;
    const from = after === undefined ? undefined : queuePosition(after, "queue.pending: after");
    return this.#select(options, "queue.pending", from).map(clone);
  }

  async replay(options?: { sessionKey?: string; limit?: number }): Promise<QueuedMessage[]> {
    this.#core.ensureOpen("queue.replay");
    const messages = this.#select(options, "queue.replay");
    for (const message of messages) message.deliveries++;
    return messages.map(clone);
  }

  /** Pending messages in enqueue order (ids increase, zero-padded, as strings), from `after`. */
  #select(
    options: { sessionKey?: string; limit?: number } | undefined,
    what: string,
    after?: string,
  ): QueuedMessage[] {
    const { sessionKey, limit: rawLimit } = optionsObject(options, `${what}: options`);
    if (sessionKey !== undefined) requireKey(sessionKey, `${what}: sessionKey`);
    const limit = limitOf(rawLimit, `${what}: limit`);
    const out: QueuedMessage[] = [];
    for (const message of this.#pending.values()) {
      if (out.length >= limit) break;
      if (after !== undefined && message.id <= after) continue;
      if (sessionKey === undefined || message.sessionKey === sessionKey) out.push(message);
    }
    return out;
  }
}

const QUEUE_ID = new RegExp(`^[0-9]{${QUEUE_ID_DIGITS}}$`);

/** The `after` of `queue.pending`: an id of this store's form, or `InvalidArgumentError`. */
function queuePosition(value: unknown, what: string): string {
  if (typeof value !== "string" || !QUEUE_ID.test(value)) {
    throw invalid(
      `${what} must be the id of a queued message (${QUEUE_ID_DIGITS} digits), got ${describeValue(value)}`,
    );
  }
  return value;
}

// ------------------------------------------------------------------ locks

interface LockState {
  /** The token of the latest acquisition; 0 before the first. Never goes down. */
  lastToken: number;
  lease: Lease | undefined;
}

function validLease(lease: unknown, what: string): Lease {
  if (typeof lease !== "object" || lease === null) {
    throw invalid(`${what} must be a lease, got ${describeValue(lease)}`);
  }
  const { name, owner, token } = lease as Partial<Lease>;
  requireKey(name, `${what}.name`);
  requireKey(owner, `${what}.owner`);
  requireInteger(token, `${what}.token`, 1);
  return lease as Lease;
}

class MemoryLocks implements LockStore {
  readonly #core: Core;
  readonly #locks = new Map<string, LockState>();

  constructor(core: Core) {
    this.#core = core;
    core.onSweep((now) => {
      for (const state of this.#locks.values()) {
        if (state.lease && state.lease.expiresAt <= now) state.lease = undefined;
      }
    });
  }

  async acquire(
    name: string,
    options: { owner: string; ttlMs: number },
  ): Promise<Lease | undefined> {
    this.#core.ensureOpen("locks.acquire");
    requireKey(name, "locks.acquire: name");
    if (typeof options !== "object" || options === null) {
      throw invalid(`locks.acquire: options must be an object, got ${describeValue(options)}`);
    }
    const owner = requireKey(options.owner, "locks.acquire: owner");
    const ttlMs = requireInteger(options.ttlMs, "locks.acquire: ttlMs", 1);
    const now = this.#core.now();
    const state = this.#locks.get(name) ?? { lastToken: 0, lease: undefined };
    if (this.#live(state, now)) return undefined;
    this.#locks.set(name, state);
    state.lastToken++;
    state.lease = { name, owner, token: state.lastToken, expiresAt: now + ttlMs };
    this.#core.wrote();
    return clone(state.lease);
  }

  async renew(lease: Lease, ttlMs: number): Promise<Lease | undefined> {
    this.#core.ensureOpen("locks.renew");
    validLease(lease, "locks.renew: lease");
    requireInteger(ttlMs, "locks.renew: ttlMs", 1);
    const now = this.#core.now();
    const held = this.#heldAs(lease, now);
    if (!held) return undefined;
    held.expiresAt = now + ttlMs;
    return clone(held);
  }

  async release(lease: Lease): Promise<boolean> {
    this.#core.ensureOpen("locks.release");
    validLease(lease, "locks.release: lease");
    if (!this.#heldAs(lease, this.#core.now())) return false;
    this.#locks.get(lease.name)!.lease = undefined;
    return true;
  }

  async holder(name: string): Promise<Lease | undefined> {
    this.#core.ensureOpen("locks.holder");
    const state = this.#locks.get(requireKey(name, "locks.holder: name"));
    return state && this.#live(state, this.#core.now()) ? clone(state.lease) : undefined;
  }

  /** The latest token issued for `name` (0 if never acquired), for fenced writes. */
  currentToken(name: string): number {
    return this.#locks.get(name)?.lastToken ?? 0;
  }

  #live(state: LockState, now: number): state is LockState & { lease: Lease } {
    return state.lease !== undefined && state.lease.expiresAt > now;
  }

  /** The stored lease if `lease` is still the live one (same owner and token). */
  #heldAs(lease: Lease, now: number): Lease | undefined {
    const state = this.#locks.get(lease.name);
    if (!state || !this.#live(state, now)) return undefined;
    return state.lease.owner === lease.owner && state.lease.token === lease.token
      ? state.lease
      : undefined;
  }
}

// ------------------------------------------------------------------ key/value

interface KvEntry {
  value: JsonValue;
  expiresAt: number | undefined;
}

class MemoryKeyValue implements KeyValueStore {
  readonly #core: Core;
  readonly #locks: MemoryLocks;
  readonly #entries = new Map<string, KvEntry>();
  readonly #index = new SortedKeyIndex(
    () => this.#entries.keys(),
    () => this.#entries.size,
  );

  constructor(core: Core, locks: MemoryLocks) {
    this.#core = core;
    this.#locks = locks;
    core.onSweep((now) => {
      for (const [key, entry] of this.#entries) {
        if (entry.expiresAt !== undefined && entry.expiresAt <= now) this.#entries.delete(key);
      }
    });
  }

  async get<T extends JsonValue = JsonValue>(key: string): Promise<T | undefined> {
    this.#core.ensureOpen("kv.get");
    const entry = this.#live(requireKey(key, "kv.get: key"), this.#core.now());
    return entry && (clone(entry.value) as T);
  }

  async set(key: string, value: JsonValue, options?: KvSetOptions): Promise<boolean> {
    this.#core.ensureOpen("kv.set");
    requireKey(key, "kv.set: key");
    const copy = copyJson(value, "kv.set: value");
    const { ttlMs, ifAbsent = false, ifValue, fence } = optionsObject(options, "kv.set: options");
    if (ttlMs !== undefined) requireInteger(ttlMs, "kv.set: ttlMs", 1);
    if (typeof ifAbsent !== "boolean") {
      throw invalid(`kv.set: ifAbsent must be a boolean, got ${describeValue(ifAbsent)}`);
    }
    const expected =
      ifValue === undefined
        ? undefined
        : JSON.stringify(copyJson(ifValue, "kv.set: options.ifValue"));
    if (ifAbsent && expected !== undefined) {
      throw invalid("kv.set: ifAbsent and ifValue cannot be given together");
    }
    if (fence !== undefined) {
      if (typeof fence !== "object" || fence === null) {
        throw invalid(`kv.set: fence must be { lock, token }, got ${describeValue(fence)}`);
      }
      requireKey(fence.lock, "kv.set: fence.lock");
      requireInteger(fence.token, "kv.set: fence.token", 0);
      const current = this.#locks.currentToken(fence.lock);
      if (fence.token !== current) throw new FencedError(fence.lock, fence.token, current);
    }
    const now = this.#core.now();
    if (ifAbsent && this.#live(key, now)) return false;
    if (expected !== undefined) {
      const entry = this.#live(key, now);
      if (entry === undefined || JSON.stringify(entry.value) !== expected) return false;
    }
    if (!this.#entries.has(key)) this.#index.added(key);
    this.#entries.set(key, {
      value: copy,
      expiresAt: ttlMs === undefined ? undefined : now + ttlMs,
    });
    this.#core.wrote();
    return true;
  }

  async delete(key: string, options?: KvDeleteOptions): Promise<boolean> {
    this.#core.ensureOpen("kv.delete");
    requireKey(key, "kv.delete: key");
    const { ifValue } = optionsObject(options, "kv.delete: options");
    const expected =
      ifValue === undefined
        ? undefined
        : JSON.stringify(copyJson(ifValue, "kv.delete: options.ifValue"));
    const entry = this.#live(key, this.#core.now());
    if (
      expected !== undefined &&
      (entry === undefined || JSON.stringify(entry.value) !== expected)
    ) {
      return false;
    }
    this.#entries.delete(key);
    return entry !== undefined;
  }

  async keys(prefix: string): Promise<string[]> {
    this.#core.ensureOpen("kv.keys");
    if (typeof prefix !== "string") {
      throw invalid(`kv.keys: prefix must be a string, got ${describeValue(prefix)}`);
    }
    const now = this.#core.now();
    const keys: string[] = [];
    for (const [key, entry] of this.#entries) {
      if (key.startsWith(prefix) && (entry.expiresAt === undefined || entry.expiresAt > now)) {
        keys.push(key);
      }
    }
    return keys.sort(compareCodePoints);
  }

  async scan(prefix: string, options?: PageOptions): Promise<Page<string>> {
    this.#core.ensureOpen("kv.scan");
    const args = readKvScanArguments(prefix, options);
    const now = this.#core.now();
    return this.#index.page(args, (key) => this.#live(key, now) !== undefined);
  }

  /** The entry if present and unexpired; an expired one is dropped on the way. */
  #live(key: string, now: number): KvEntry | undefined {
    const entry = this.#entries.get(key);
    if (entry?.expiresAt !== undefined && entry.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }
}
