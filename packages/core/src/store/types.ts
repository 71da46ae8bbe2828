/**
 * The storage contract: everything BeamClaw persists, behind one small, versioned interface
 * that adapters implement (`MemoryStore` in core, `@beamclaw/store-fs`,
 * `@beamclaw/store-redis`). Every adapter passes the same conformance suite
 * (`storeConformanceSuite` in `@beamclaw/core/testing`) against its real backend.
 *
 * Rules every adapter keeps:
 * - A promise that resolves means the write is durable to the adapter's declared level
 *   (`capabilities.durable`). Every operation applies entirely or not at all (no half-written
 *   state). A rejection means the write was not acknowledged: for a local store nothing was
 *   written; for a network store whose connection dropped after sending, the operation may
 *   have been applied in full, so retries must be idempotent (puts, sets and keyed enqueues
 *   are). Errors are `StoreError`s (`STORE_UNAVAILABLE`, `STORE_LOCKED`,
 *   `STORE_CORRUPT`, `STORE_CLOSED`), `InvalidArgumentError` or `FencedError`.
 * - Values are JSON: what is written is what is read back (deep-equal), unicode included.
 *   Every write refuses a value nested deeper than `MAX_STORED_JSON_DEPTH` (512) levels of
 *   arrays and objects, counted alike by every adapter (see `MAX_STORED_JSON_DEPTH`), with an
 *   `InvalidArgumentError` naming the path and the limit, writing nothing.
 * - Keys are opaque strings; an adapter must never let a key escape its namespace (no path
 *   traversal, no collision between `a:b` + `c` and `a` + `b:c`). Keys, ids and names must be
 *   non-empty strings (`InvalidArgumentError` otherwise).
 * - "Sorted" and "ties by key" mean Unicode code point order (the order of the UTF-8 bytes, as
 *   Redis and most databases compare), not JavaScript's default UTF-16 `sort()`.
 * - Reads return copies: mutating a returned object never changes stored data.
 */
import type { JsonObject, JsonValue } from "../providers/types.js";

/** Version of this contract. */
export type StoreSpecificationVersion = "v1";

/**
 * What an adapter can do; the conformance suite runs every specification except those of what
 * is declared unsupported.
 */
export interface StoreCapabilities {
  /**
   * `process`: survives the process crashing (fsync'd files, Redis with persistence);
   * `memory`: lost when the process exits.
   */
  durable: "memory" | "process";
  /** Several processes may open the same store at once (Redis: yes; files: single writer). */
  multiProcess: boolean;
  /** TTLs expire on their own (without a read touching the key). */
  ttl: boolean;
  /** Leased locks with fencing tokens are safe across processes. */
  distributedLocks: boolean;
}

/** One page of a listing. Pass `cursor` back to get the next page; absent on the last. */
export interface Page<T> {
  items: T[];
  cursor?: string;
}

/** Paging options. */
export interface PageOptions {
  /** Maximum items per page. Default 100, at most 1000. */
  limit?: number;
  /** The `cursor` of the previous page. */
  cursor?: string;
}

// ------------------------------------------------------------------ sessions

/**
 * A session's metadata. `key` and `agentId` are fixed; everything else is the session
 * layer's business and stored as given.
 */
export interface SessionRecord extends JsonObject {
  /** The normalized session key, e.g. `agent:main:main`. */
  key: string;
  agentId: string;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms; `list` orders by this, newest first. */
  updatedAt: number;
}

/** Filters for listing sessions. */
export interface SessionListOptions extends PageOptions {
  agentId?: string;
  /** Only sessions updated at or after this epoch ms. */
  updatedSince?: number;
}

/** Session metadata, per agent. */
export interface SessionStore {
  get(key: string): Promise<SessionRecord | undefined>;
  /** Creates or replaces the record for `record.key`. */
  put(record: SessionRecord): Promise<void>;
  /** Deletes the record (not its transcript). Returns whether it existed. */
  delete(key: string): Promise<boolean>;
  /**
   * Newest `updatedAt` first (ties by key). Must not read every record for one page. A cursor
   * marks a position in that order, not an offset: a record left unchanged while paging is
   * returned exactly once; one put or deleted between pages may or may not be seen.
   */
  list(options?: SessionListOptions): Promise<Page<SessionRecord>>;
  /** Number of sessions, optionally of one agent. */
  count(agentId?: string): Promise<number>;
}

// ------------------------------------------------------------------ transcripts

/** One transcript entry as stored: a sequence number assigned on append, and the entry. */
export interface TranscriptRecord<T extends JsonValue = JsonObject> {
  /** 1, 2, 3, ... per session, in append order, never reused. */
  seq: number;
  entry: T;
}

/** Options for reading a transcript. */
export interface TranscriptReadOptions {
  /** Only entries with `seq` greater than this. Default 0. */
  afterSeq?: number;
  /** Only entries with `seq` less than this (for paging backwards). */
  beforeSeq?: number;
  /** Maximum entries. Default 100, at most 1000. */
  limit?: number;
  /** `asc` (default) from the oldest, `desc` from the newest. */
  order?: "asc" | "desc";
}

/** Append-only conversation history per session. */
export interface TranscriptStore {
  /**
   * Appends entries atomically (all or none) and returns the `seq` of the last one. An empty
   * array appends nothing and returns the current last seq.
   */
  append(sessionKey: string, entries: JsonObject[]): Promise<number>;
  read(sessionKey: string, options?: TranscriptReadOptions): Promise<TranscriptRecord[]>;
  /** The seq of the last entry, 0 when empty. */
  lastSeq(sessionKey: string): Promise<number>;
  /**
   * Deletes the whole transcript; a later append starts again at seq 1. Returns whether there
   * was one.
   */
  delete(sessionKey: string): Promise<boolean>;
}

// ------------------------------------------------------------------ cron

/** A cron job as stored; its shape is the cron layer's business. */
export interface CronJobRecord extends JsonObject {
  id: string;
  agentId: string;
}

/** One run of a cron job (start, end, status, error, output summary, ...). */
export interface CronRunRecord extends JsonObject {
  jobId: string;
  /** Epoch ms the run started; runs are listed newest first by this. */
  startedAt: number;
}

/** A page of a job's run log (`CronStore.listRuns`). */
export interface CronRunPage {
  /** Runs listed, an integer in 1..1000; default 100. */
  limit?: number;
  /** Newest runs skipped before the page, a non-negative safe integer; default 0. */
  offset?: number;
}

/** Cron jobs and their run logs. */
export interface CronStore {
  getJob(id: string): Promise<CronJobRecord | undefined>;
  putJob(job: CronJobRecord): Promise<void>;
  /** Deletes the job and its run log. */
  deleteJob(id: string): Promise<boolean>;
  /** All jobs, or one agent's. */
  listJobs(agentId?: string): Promise<CronJobRecord[]>;
  /** Appends to the job's run log; keeps at most `keep` newest runs (default 200). */
  appendRun(run: CronRunRecord, options?: { keep?: number }): Promise<void>;
  /**
   * Newest first. `limit`: default 100, at most 1000. `offset`: how many of the newest runs to
   * skip (default 0), to read a log kept longer than one page: page by `offset += limit` until
   * a page comes back shorter than `limit`. Runs are added at their place by `startedAt` and
   * the oldest trimmed, so paging this way never misses a run present throughout; a run added
   * meanwhile may push one already read onto the next page, where it is listed again. A
   * `limit` or `offset` that is not an integer in range is refused with
   * `InvalidArgumentError`.
   */
  listRuns(jobId: string, options?: CronRunPage): Promise<CronRunRecord[]>;
}

// ------------------------------------------------------------------ devices and tokens

/** A paired device (gateway client or node). */
export interface DeviceRecord extends JsonObject {
  deviceId: string;
}

/** A device token, stored by the hash of its secret (never the secret itself). */
export interface DeviceTokenRecord extends JsonObject {
  /** e.g. SHA-256 hex of the token. */
  tokenHash: string;
  deviceId: string;
  /** Epoch ms; absent for tokens that do not expire. */
  expiresAt?: number;
}

/** Paired devices and their tokens. */
export interface DeviceStore {
  get(deviceId: string): Promise<DeviceRecord | undefined>;
  put(device: DeviceRecord): Promise<void>;
  /** Deletes the device and every token of it. */
  delete(deviceId: string): Promise<boolean>;
  list(): Promise<DeviceRecord[]>;
  putToken(token: DeviceTokenRecord): Promise<void>;
  /** Expired tokens are not returned. */
  getToken(tokenHash: string): Promise<DeviceTokenRecord | undefined>;
  deleteToken(tokenHash: string): Promise<boolean>;
  /** The device's unexpired tokens. */
  listTokens(deviceId: string): Promise<DeviceTokenRecord[]>;
}

// ------------------------------------------------------------------ approvals

/** A remembered approval decision for a session (`allow-always` / `deny` patterns). */
export interface ApprovalRecord extends JsonObject {
  /** What was approved: a tool name, or a command pattern for exec. */
  pattern: string;
  decision: "allow" | "deny";
  /** Epoch ms. */
  decidedAt: number;
}

/** Approvals remembered per session. */
export interface ApprovalStore {
  list(sessionKey: string): Promise<ApprovalRecord[]>;
  /** Adds or replaces the record for `record.pattern`. */
  put(sessionKey: string, record: ApprovalRecord): Promise<void>;
  /** Removes one pattern, or all of the session's when `pattern` is omitted. */
  clear(sessionKey: string, pattern?: string): Promise<number>;
}

// ------------------------------------------------------------------ durable inbound queue

/** A message accepted from a channel or the gateway, waiting for its turn to finish. */
export interface QueuedMessage {
  /** Assigned by the store on enqueue; unique and increasing in enqueue order. */
  id: string;
  /** The caller's idempotency key: a second enqueue with the same key is a duplicate. */
  idempotencyKey: string;
  sessionKey: string;
  payload: JsonObject;
  /** Epoch ms. */
  enqueuedAt: number;
  /** How many times it has been handed out by `replay` (0 before the first). */
  deliveries: number;
}

/** The result of an enqueue. */
export interface EnqueueResult {
  message: QueuedMessage;
  /**
   * True when the idempotency key was seen before (pending, or acknowledged within the
   * dedupe window): nothing new was stored and `message` is the original.
   */
  duplicate: boolean;
}

/** Options of {@link InboundQueue.pending}. */
export interface QueuePendingOptions {
  /** Only this session's messages. */
  sessionKey?: string;
  /** Maximum messages returned: an integer in 1..1000, default 100. */
  limit?: number;
  /**
   * A position in the queue: only messages enqueued after the message with this `id` are
   * returned. Pass the `id` of the last message of the previous page to get the next one.
   *
   * It is a position, not a pointer: the message need not be pending any more (acknowledged or
   * discarded between two pages, the next page still starts right after it), and with
   * `sessionKey` it may be the id of another session's message. Every message pending for the
   * whole paging is returned exactly once, in enqueue order; one enqueued meanwhile comes on a
   * later page (ids increase), one acknowledged before its page is read is not listed. An id
   * greater than any the store assigned gives an empty page. A value that is not a message id
   * of this store (not a string, empty, not of the store's id format) is refused with
   * `InvalidArgumentError`.
   */
  after?: string;
}

/**
 * The durable inbound queue. A message is written here before it is acknowledged to the
 * sender and removed (`ack`) only when its turn is done; after a crash, `replay` hands back
 * everything not acknowledged, in enqueue order, so nothing is dropped and nothing is run
 * twice for one idempotency key.
 */
export interface InboundQueue {
  /**
   * Stores the message durably before resolving. A repeated idempotency key, pending or
   * acknowledged less than `dedupeWindowMs` ago, returns the original with `duplicate: true`.
   */
  enqueue(message: {
    idempotencyKey: string;
    sessionKey: string;
    payload: JsonObject;
  }): Promise<EnqueueResult>;
  /** Removes a message whose turn is done. Remembers its key for the dedupe window. Idempotent. */
  ack(id: string): Promise<void>;
  /**
   * Removes a message that was refused (overload, bad request) and so never accepted: unlike
   * `ack`, its idempotency key is forgotten, so the sender's retry is a new message.
   * Idempotent.
   */
  discard(id: string): Promise<void>;
  /**
   * Pending (unacknowledged) messages, optionally of one session, in enqueue order. `limit`:
   * default 100, at most 1000. To read them all, page with `after`: pass the `id` of the last
   * message of the previous page until a page comes back shorter than `limit` (see
   * {@link QueuePendingOptions.after}). Reading never counts a delivery.
   */
  pending(options?: QueuePendingOptions): Promise<QueuedMessage[]>;
  /**
   * Like `pending`, and counts a delivery on each message returned (for poison-message
   * detection by the caller).
   */
  replay(options?: { sessionKey?: string; limit?: number }): Promise<QueuedMessage[]>;
  /** How long acknowledged idempotency keys are remembered. */
  readonly dedupeWindowMs: number;
}

// ------------------------------------------------------------------ key/value, locks

/** Options of `kv.set`. */
export interface KvSetOptions {
  /** Expire after this many ms (an integer >= 1). */
  ttlMs?: number;
  /** Only set when the key is absent (or expired): set-if-not-exists. */
  ifAbsent?: boolean;
  /**
   * Only set when the key holds this value (compare-and-set, decided atomically with the
   * write): equal as JSON text, the same rule as `kv.delete`'s `ifValue`, so pass the value
   * as it was written or read (an object's keys in the same order). An absent or expired key
   * never matches (use `ifAbsent` for that). The write then replaces the value and its TTL
   * like any set (`ttlMs` or none). Giving both `ifValue` and `ifAbsent: true` is an
   * `InvalidArgumentError`. How a writer replaces a value it read without losing a write
   * another made since.
   */
  ifValue?: JsonValue;
  /** Reject with `FencedError` unless `token` is the lock's current fencing token. */
  fence?: { lock: string; token: number };
}

/** Options of `kv.delete`. */
export interface KvDeleteOptions {
  /**
   * Only delete when the key holds this value (compare-and-delete, decided atomically with
   * the delete): equal as JSON text, that is `JSON.stringify(ifValue)` is the stored value's
   * JSON, so pass the value as it was written or read (an object's keys in the same order).
   * How a claimant takes back only its own claim, never one another writer made since.
   */
  ifValue?: JsonValue;
}

/** Key/value with TTL and set-if-absent: the primitive the cluster builds on. */
export interface KeyValueStore {
  get<T extends JsonValue = JsonValue>(key: string): Promise<T | undefined>;
  /**
   * Returns false only when the write was refused: `ifAbsent` was set and the key exists, or
   * `ifValue` was given and the key is absent or holds another value (it is then left as it
   * is).
   */
  set(key: string, value: JsonValue, options?: KvSetOptions): Promise<boolean>;
  /**
   * Returns whether the key existed (unexpired) and was deleted: false when it was absent,
   * or when `ifValue` was given and the key holds another value (it is then left as it is).
   */
  delete(key: string, options?: KvDeleteOptions): Promise<boolean>;
  /**
   * Every key starting with `prefix` (unexpired), sorted, in one array. Unbounded: a prefix
   * with a million keys returns a million keys. Use {@link KeyValueStore.scan} (or
   * `iterateKvKeys`) for any prefix that can hold many keys.
   *
   * @deprecated for prefixes that can hold many keys; use {@link KeyValueStore.scan}.
   */
  keys(prefix: string): Promise<string[]>;
  /**
   * One page of the keys starting with `prefix` (unexpired), sorted by code point. The prefix
   * is matched literally (`*`, `?`, `[`, `\` and `%` are characters like any other).
   * `limit`: an integer in 1..1000, default 100. Pass the returned `cursor` back, with the same
   * prefix, for the next page; it is absent on the last page (a page may be shorter than
   * `limit`, even empty, and still carry a cursor).
   *
   * A cursor is opaque and marks a position in key order, not an offset: a key present for the
   * whole scan is returned exactly once, however many keys are set or deleted meanwhile; a key
   * set or deleted during the scan may or may not be returned. A cursor that `scan` did not
   * return (edited, made up, not a string), or whose position is outside this prefix (one of
   * another prefix's listing), is refused with `InvalidArgumentError`, as are a bad `limit`
   * and a prefix that is not a string; nothing is changed.
   *
   * @example
   * ```ts
   * let cursor: string | undefined;
   * do {
   *   const page = await store.kv.scan("usage:", { limit: 500, cursor });
   *   for (const key of page.items) console.log(key);
   *   cursor = page.cursor;
   * } while (cursor !== undefined);
   * ```
   */
  scan(prefix: string, options?: PageOptions): Promise<Page<string>>;
}

/** A held lock. */
export interface Lease {
  name: string;
  /** Who holds it (node id, process id): for diagnostics and `renew`/`release` checks. */
  owner: string;
  /**
   * Fencing token: strictly increasing across every acquisition of this lock name, so a
   * resource can refuse a write from a holder whose lease has since passed to another.
   */
  token: number;
  /** Epoch ms. */
  expiresAt: number;
}

/** Leased locks with fencing tokens. */
export interface LockStore {
  /** Takes the lock if it is free or expired; `undefined` if someone else holds it. */
  acquire(name: string, options: { owner: string; ttlMs: number }): Promise<Lease | undefined>;
  /** Extends a lease still held (same name, owner and token); `undefined` if it was lost. */
  renew(lease: Lease, ttlMs: number): Promise<Lease | undefined>;
  /** Releases a lease still held. Returns false if it had already expired or passed on. */
  release(lease: Lease): Promise<boolean>;
  /** The current holder, if any (unexpired). */
  holder(name: string): Promise<Lease | undefined>;
}

// ------------------------------------------------------------------ fenced writes

/** A fencing token presented with a write: a lock's name and the token its holder got. */
export interface WriteFence {
  lock: string;
  token: number;
}

/**
 * The writes a session's owner makes, fenced by the fencing token of the session's lease
 * (an optional capability: {@link Store.fenced}). Each one checks, atomically with the write
 * itself, that `fence.token` is still the lock's current fencing token (no later holder has
 * acquired the lock since), and otherwise rejects with `FencedError`, writing nothing. A
 * holder paused past its lease (a long GC pause, `SIGSTOP`) therefore cannot overwrite what
 * the next holder wrote. The operations behave like those of the same name on the `Store`.
 */
export interface FencedWrites {
  /** The fence every write presents. */
  readonly fence: WriteFence;
  readonly sessions: Pick<SessionStore, "put" | "delete">;
  readonly transcripts: Pick<TranscriptStore, "append" | "delete">;
  readonly queue: Pick<InboundQueue, "ack" | "discard">;
}

// ------------------------------------------------------------------ the store

/**
 * Everything BeamClaw persists.
 *
 * @example
 * ```ts
 * const store = new MemoryStore();
 * await store.open();
 * await store.sessions.put({ key: "agent:main:main", agentId: "main", createdAt: 1, updatedAt: 1 });
 * await store.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
 * await store.close();
 * ```
 */
export interface Store {
  readonly specificationVersion: StoreSpecificationVersion;
  /** Adapter name for diagnostics, e.g. `memory`, `fs`, `redis`. */
  readonly kind: string;
  readonly capabilities: StoreCapabilities;
  /** Opens connections / files / locks. Operations before `open` reject with `STORE_CLOSED`. */
  open(): Promise<void>;
  /** Flushes and releases everything; afterwards operations reject with `STORE_CLOSED`. Idempotent. */
  close(): Promise<void>;
  readonly sessions: SessionStore;
  readonly transcripts: TranscriptStore;
  readonly cron: CronStore;
  readonly devices: DeviceStore;
  readonly approvals: ApprovalStore;
  readonly queue: InboundQueue;
  readonly kv: KeyValueStore;
  readonly locks: LockStore;
  /**
   * Optional capability: the session-scoped writes fenced by a lock's fencing token (see
   * {@link FencedWrites}). A cluster node makes its sessions write through it, so that a
   * node that lost a session's lease cannot write to the session any more. Stores without
   * it (single-process ones) write unfenced.
   */
  fenced?(fence: WriteFence): FencedWrites;
}
