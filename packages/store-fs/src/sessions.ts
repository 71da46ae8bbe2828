/**
 * Session metadata: one append-only log per bucket (`agents/<agentId>/sessions.jsonl`,
 * `unscoped/sessions.jsonl`), one line per change:
 *
 * ```jsonl
 * {"op":"put","record":{"key":"agent:main:main","agentId":"main","createdAt":1,"updatedAt":2}}
 * {"op":"delete","key":"agent:main:old"}
 * ```
 *
 * The last line for a key wins. A save appends one line and fsyncs (cost independent of how
 * many sessions exist); when a log holds more than twice as many lines as live sessions (and
 * at least 1000 dead ones), it is rewritten atomically with one `put`
 * per live session, so the amortized cost stays constant and the file stays readable.
 *
 * The logs are read once on open into an in-memory index: every record's JSON text, plus
 * lists sorted by (`updatedAt` desc, `key` asc), globally and per agent. `get` and `list`
 * never touch the disk; a page of `list` is a binary search and a slice.
 */
import path from "node:path";
import type { Page, SessionListOptions, SessionRecord, SessionStore } from "@beamclaw/core";
import { InvalidArgumentError, StoreError } from "@beamclaw/core";
import { AppendLog, shouldCompact } from "./append-log.js";
import { AGENTS_DIR, bucketOf, UNSCOPED_DIR } from "./buckets.js";
import type { StoreContext } from "./context.js";
import { readDirIfExists } from "./files.js";
import {
  compareCodePoints,
  describeValue,
  isPlainObject,
  optionsBag,
  pageLimit,
  requireFiniteNumber,
  requireKey,
  storedLine,
  toJsonObjectText,
} from "./json.js";
import { badLine, type JsonlLine } from "./jsonl.js";
import { loadLog } from "./log-table.js";
import { SortedList } from "./sorted-list.js";

/** File name of a bucket's session log. */
export const SESSIONS_FILE = "sessions.jsonl";

const PUT_PREFIX = '{"op":"put","record":';

interface Entry {
  key: string;
  agentId: string;
  updatedAt: number;
  /** The record as stored (JSON text); parsed anew for every read, so reads are copies. */
  json: string;
  bucket: Bucket;
}

interface Bucket {
  dir: string;
  log: AppendLog;
  entries: Map<string, Entry>;
}

/** Newest first, ties by key ascending. */
function compare(a: { updatedAt: number; key: string }, b: { updatedAt: number; key: string }) {
  if (a.updatedAt !== b.updatedAt) return a.updatedAt > b.updatedAt ? -1 : 1;
  return compareCodePoints(a.key, b.key);
}

function encodeCursor(entry: Entry): string {
  return Buffer.from(JSON.stringify([entry.updatedAt, entry.key]), "utf8").toString("base64url");
}

function decodeCursor(cursor: unknown): { updatedAt: number; key: string } {
  if (typeof cursor === "string") {
    try {
      const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
      if (
        Array.isArray(value) &&
        value.length === 2 &&
        typeof value[0] === "number" &&
        typeof value[1] === "string"
      ) {
        return { updatedAt: value[0], key: value[1] };
      }
    } catch {
      // fall through
    }
  }
  throw new InvalidArgumentError(
    `cursor ${describeValue(cursor)} is not a cursor returned by sessions.list`,
  );
}

/** Checks a session record's fixed fields and returns its JSON text. */
function checkRecord(record: unknown): {
  json: string;
  key: string;
  agentId: string;
  updatedAt: number;
} {
  if (!isPlainObject(record)) {
    throw new InvalidArgumentError(
      `session record must be a plain object, got ${describeValue(record)}`,
    );
  }
  const key = requireKey(record.key, "session record key");
  const agentId = requireKey(record.agentId, "session record agentId");
  requireFiniteNumber(record.createdAt, "session record createdAt");
  const updatedAt = requireFiniteNumber(record.updatedAt, "session record updatedAt");
  return { json: toJsonObjectText(record, "session record"), key, agentId, updatedAt };
}

/** The session index of one open store. */
export class Sessions implements SessionStore {
  readonly #context: StoreContext;
  readonly #buckets = new Map<string, Bucket>();
  readonly #byKey = new Map<string, Entry>();
  readonly #all = new SortedList<Entry>(compare);
  readonly #byAgent = new Map<string, SortedList<Entry>>();

  private constructor(context: StoreContext) {
    this.#context = context;
  }

  /** Reads every bucket's log (repairing torn tails) and builds the index. */
  static async load(context: StoreContext): Promise<Sessions> {
    const sessions = new Sessions(context);
    const dirs = [UNSCOPED_DIR];
    for (const name of await readDirIfExists(path.join(context.dir, AGENTS_DIR))) {
      dirs.push(path.join(AGENTS_DIR, name));
    }
    for (const dir of dirs) await sessions.#loadBucket(dir);
    // The sorted lists are built once, from the final state of every key.
    const all: Entry[] = [];
    const byAgent = new Map<string, Entry[]>();
    for (const entry of sessions.#byKey.values()) {
      all.push(entry);
      const list = byAgent.get(entry.agentId);
      if (list === undefined) byAgent.set(entry.agentId, [entry]);
      else list.push(entry);
    }
    sessions.#all.reset(all);
    for (const [agentId, list] of byAgent) sessions.#agentList(agentId).reset(list);
    return sessions;
  }

  async #loadBucket(dir: string): Promise<void> {
    // The log is attached once read; the lines need the bucket first.
    const bucket = { dir, entries: new Map() } as Bucket;
    bucket.log = await loadLog(this.#context, path.join(dir, SESSIONS_FILE), (line, name) =>
      this.#applyLine(bucket, line, name),
    );
    this.#buckets.set(dir, bucket);
  }

  #applyLine(bucket: Bucket, line: JsonlLine, name: string): void {
    const op = line.value as { op?: unknown; record?: unknown; key?: unknown };
    if (op?.op === "put" && isPlainObject(op.record)) {
      const record = op.record;
      if (
        typeof record.key !== "string" ||
        typeof record.agentId !== "string" ||
        typeof record.updatedAt !== "number"
      ) {
        throw badLine(name, line, "a session record with key, agentId and updatedAt");
      }
      if (bucketOf(record.key) !== bucket.dir) {
        throw new StoreError(
          "STORE_CORRUPT",
          `${name}: session ${JSON.stringify(record.key)} belongs in ${bucketOf(record.key)}/${SESSIONS_FILE}, not here (was the line moved by hand?)`,
        );
      }
      const json =
        line.text.startsWith(PUT_PREFIX) && line.text.endsWith("}")
          ? line.text.slice(PUT_PREFIX.length, -1)
          : JSON.stringify(record);
      this.#byKey.get(record.key)?.bucket.entries.delete(record.key);
      const entry: Entry = {
        key: record.key,
        agentId: record.agentId,
        updatedAt: record.updatedAt,
        json,
        bucket,
      };
      this.#byKey.set(entry.key, entry);
      bucket.entries.set(entry.key, entry);
    } else if (op?.op === "delete" && typeof op.key === "string") {
      this.#byKey.get(op.key)?.bucket.entries.delete(op.key);
      this.#byKey.delete(op.key);
    } else {
      throw badLine(name, line, '{"op":"put","record":{...}} or {"op":"delete","key":"..."}');
    }
  }

  #bucket(dir: string): Bucket {
    let bucket = this.#buckets.get(dir);
    if (bucket === undefined) {
      const file = path.join(this.#context.dir, dir, SESSIONS_FILE);
      const state = { exists: false, size: 0, lineCount: 0 };
      bucket = {
        dir,
        log: new AppendLog(file, this.#context.files, state, (error, f) =>
          this.#context.fail(error, f),
        ),
        entries: new Map(),
      };
      this.#buckets.set(dir, bucket);
    }
    return bucket;
  }

  #agentList(agentId: string): SortedList<Entry> {
    let list = this.#byAgent.get(agentId);
    if (list === undefined) {
      list = new SortedList<Entry>(compare);
      this.#byAgent.set(agentId, list);
    }
    return list;
  }

  /** Removes `key` from the in-memory index. */
  #remove(key: string): Entry | undefined {
    const entry = this.#byKey.get(key);
    if (entry === undefined) return undefined;
    this.#byKey.delete(key);
    entry.bucket.entries.delete(key);
    const agentList = this.#byAgent.get(entry.agentId);
    this.#all.remove(entry);
    agentList?.remove(entry);
    if (agentList !== undefined && agentList.size === 0) this.#byAgent.delete(entry.agentId);
    return entry;
  }

  async #barrier(bucket?: Bucket): Promise<void> {
    if (bucket !== undefined) return bucket.log.barrier();
    await Promise.all([...this.#buckets.values()].map((b) => b.log.barrier()));
  }

  async get(key: string): Promise<SessionRecord | undefined> {
    requireKey(key, "session key");
    await this.#barrier(this.#buckets.get(bucketOf(key)));
    const entry = this.#byKey.get(key);
    return entry === undefined ? undefined : (JSON.parse(entry.json) as SessionRecord);
  }

  async put(record: SessionRecord): Promise<void> {
    const checked = checkRecord(record);
    const line = storedLine("session record", [PUT_PREFIX, checked.json, "}\n"]);
    const bucket = this.#bucket(bucketOf(checked.key));
    this.#remove(checked.key);
    const entry: Entry = {
      key: checked.key,
      agentId: checked.agentId,
      updatedAt: checked.updatedAt,
      json: checked.json,
      bucket,
    };
    this.#byKey.set(entry.key, entry);
    bucket.entries.set(entry.key, entry);
    this.#all.insert(entry);
    this.#agentList(entry.agentId).insert(entry);
    const written = bucket.log.append(line);
    this.#maybeCompact(bucket);
    await written;
  }

  async delete(key: string): Promise<boolean> {
    requireKey(key, "session key");
    const bucket = this.#buckets.get(bucketOf(key));
    const entry = this.#remove(key);
    if (entry === undefined || bucket === undefined) {
      await this.#barrier(bucket);
      return false;
    }
    const written = bucket.log.append(`{"op":"delete","key":${JSON.stringify(key)}}\n`);
    this.#maybeCompact(bucket);
    await written;
    return true;
  }

  async list(options?: SessionListOptions): Promise<Page<SessionRecord>> {
    const opts = optionsBag(options, "sessions.list options");
    const limit = pageLimit(opts.limit, "limit", 100, 1000);
    if (opts.agentId !== undefined) requireKey(opts.agentId, "agentId");
    const since =
      opts.updatedSince === undefined
        ? -Infinity
        : requireFiniteNumber(opts.updatedSince, "updatedSince");
    const after = opts.cursor === undefined ? undefined : decodeCursor(opts.cursor);
    await this.#barrier();
    const list = opts.agentId === undefined ? this.#all : this.#byAgent.get(opts.agentId);
    if (list === undefined) return { items: [] };
    const items: SessionRecord[] = [];
    let last: Entry | undefined;
    // One more than a page is looked at, to know whether a next page exists.
    for (const entry of list.from(after as Entry | undefined, true)) {
      if (entry.updatedAt < since) break;
      if (items.length === limit) return { items, cursor: encodeCursor(last!) };
      items.push(JSON.parse(entry.json) as SessionRecord);
      last = entry;
    }
    return { items };
  }

  async count(agentId?: string): Promise<number> {
    if (agentId !== undefined) requireKey(agentId, "agentId");
    await this.#barrier();
    if (agentId === undefined) return this.#byKey.size;
    return this.#byAgent.get(agentId)?.size ?? 0;
  }

  /** Rewrites a bucket's log as one line per live session once it is mostly dead lines. */
  #maybeCompact(bucket: Bucket): void {
    const live = bucket.entries.size;
    if (!shouldCompact(bucket.log.lineCount, live)) return;
    const snapshot: string[] = [];
    for (const entry of bucket.entries.values()) snapshot.push(`${PUT_PREFIX}${entry.json}}\n`);
    // Failure stops the store (and rejects the operations waiting on it); nothing to do here.
    bucket.log.rewrite(snapshot, live).catch(() => {});
  }

  /** Closes every log (after pending writes). */
  async close(): Promise<void> {
    await Promise.all([...this.#buckets.values()].map((b) => b.log.close()));
  }
}
