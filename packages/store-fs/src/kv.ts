/**
 * Key/value with TTL, set-if-absent, compare-and-set and compare-and-delete, in one append-only log, `kv.jsonl`:
 *
 * ```jsonl
 * {"op":"set","key":"presence:alice","value":{"online":true},"expiresAt":1700000060000}
 * {"op":"delete","key":"presence:alice"}
 * ```
 *
 * Everything is held in memory (values as JSON text). An entry whose `expiresAt` has passed
 * is invisible at once to every read, `keys`, `scan` and `ifAbsent` (no timer needed). It leaves
 * memory at the first write at least {@link KV_SWEEP_INTERVAL_MS} after the last purge (or
 * when the store is opened again), and the file at the next compaction: keys written once
 * with a TTL and never touched again (channel dedupe marks, kept responses) do not pile up
 * in a store that stays open.
 */
import type {
  JsonValue,
  KeyValueStore,
  KvDeleteOptions,
  KvSetOptions,
  Page,
  PageOptions,
} from "@beamclaw/core";
import {
  FencedError,
  InvalidArgumentError,
  readKvScanArguments,
  SortedKeyIndex,
} from "@beamclaw/core";
import { type AppendLog, shouldCompact } from "./append-log.js";
import type { StoreContext } from "./context.js";
import {
  compareCodePoints,
  describeValue,
  isPlainObject,
  optionsBag,
  requireKey,
  storedLine,
  toJsonText,
} from "./json.js";
import { badLine } from "./jsonl.js";
import type { Locks } from "./locks.js";
import { loadLog } from "./log-table.js";

/** File name of the key/value log. */
export const KV_FILE = "kv.jsonl";

/** Expired entries are purged from memory by the first write this long (store clock) after the last purge. */
export const KV_SWEEP_INTERVAL_MS = 30_000;

interface Item {
  json: string;
  expiresAt: number | undefined;
}

/** The key/value store of one open store. */
export class KeyValue implements KeyValueStore {
  readonly #context: StoreContext;
  readonly #locks: Locks;
  readonly #items = new Map<string, Item>();
  readonly #index = new SortedKeyIndex(
    () => this.#items.keys(),
    () => this.#items.size,
  );
  #log!: AppendLog;
  #lastSweep: number;

  private constructor(context: StoreContext, locks: Locks) {
    this.#context = context;
    this.#locks = locks;
    this.#lastSweep = context.now();
  }

  /** Replays the log, forgetting expired entries. */
  static async load(context: StoreContext, locks: Locks): Promise<KeyValue> {
    const kv = new KeyValue(context, locks);
    kv.#log = await loadLog(context, KV_FILE, (line, name) => {
      const op = line.value as Record<string, unknown> | null;
      if (op?.op === "set" && typeof op.key === "string" && "value" in op) {
        const expiresAt = typeof op.expiresAt === "number" ? op.expiresAt : undefined;
        kv.#items.set(op.key, { json: JSON.stringify(op.value), expiresAt });
      } else if (op?.op === "delete" && typeof op.key === "string") {
        kv.#items.delete(op.key);
      } else {
        throw badLine(name, line, '{"op":"set","key":..,"value":..} or {"op":"delete","key":..}');
      }
    });
    kv.#sweep(context.now());
    return kv;
  }

  async get<T extends JsonValue = JsonValue>(key: string): Promise<T | undefined> {
    requireKey(key, "key");
    await this.#log.barrier();
    const item = this.#live(key);
    return item === undefined ? undefined : (JSON.parse(item.json) as T);
  }

  async set(key: string, value: JsonValue, options?: KvSetOptions): Promise<boolean> {
    requireKey(key, "key");
    if (value === undefined) {
      throw new InvalidArgumentError("value must be a JSON value, got undefined (use delete)");
    }
    const json = toJsonText(value, "value");
    const opts = optionsBag(options, "kv.set options");
    let expiresAt: number | undefined;
    if (opts.ttlMs !== undefined) {
      if (typeof opts.ttlMs !== "number" || !Number.isSafeInteger(opts.ttlMs) || opts.ttlMs < 1) {
        throw new InvalidArgumentError(
          `ttlMs must be an integer >= 1, got ${describeValue(opts.ttlMs)}`,
        );
      }
      expiresAt = this.#context.now() + opts.ttlMs;
    }
    if (opts.ifAbsent !== undefined && typeof opts.ifAbsent !== "boolean") {
      throw new InvalidArgumentError(
        `ifAbsent must be a boolean, got ${describeValue(opts.ifAbsent)}`,
      );
    }
    const expected = opts.ifValue === undefined ? undefined : toJsonText(opts.ifValue, "ifValue");
    if (opts.ifAbsent === true && expected !== undefined) {
      throw new InvalidArgumentError("ifAbsent and ifValue cannot be given together");
    }
    if (opts.fence !== undefined) {
      const fence = opts.fence as unknown;
      if (
        !isPlainObject(fence) ||
        typeof fence.lock !== "string" ||
        fence.lock.length === 0 ||
        typeof fence.token !== "number" ||
        !Number.isFinite(fence.token)
      ) {
        throw new InvalidArgumentError(
          `fence must be { lock: string, token: number }, got ${describeValue(fence)}`,
        );
      }
      // Decided against every lock change submitted so far (applied in call order, like this).
      const current = this.#locks.currentToken(fence.lock);
      if (fence.token !== current) throw new FencedError(fence.lock, fence.token, current);
    }
    if (opts.ifAbsent === true && this.#live(key) !== undefined) {
      await this.#log.barrier();
      return false;
    }
    // Compared and written in one synchronous step: no other call runs in between.
    if (expected !== undefined && this.#live(key)?.json !== expected) {
      await this.#log.barrier();
      return false;
    }
    const keyJson = toJsonText(key, "key");
    const line = storedLine("key and value", [
      '{"op":"set","key":',
      keyJson,
      ',"value":',
      json,
      expiresAt === undefined ? "}\n" : `,"expiresAt":${expiresAt}}\n`,
    ]);
    if (!this.#items.has(key)) this.#index.added(key);
    this.#items.set(key, { json, expiresAt });
    await this.#append(line);
    return true;
  }

  async delete(key: string, options?: KvDeleteOptions): Promise<boolean> {
    requireKey(key, "key");
    const { ifValue } = optionsBag(options, "kv.delete options");
    const expected = ifValue === undefined ? undefined : toJsonText(ifValue, "ifValue");
    const live = this.#live(key);
    if (expected !== undefined && live?.json !== expected) {
      await this.#log.barrier();
      return false;
    }
    const existed = live !== undefined;
    if (!this.#items.has(key)) {
      await this.#log.barrier();
      return false;
    }
    this.#items.delete(key);
    await this.#append(`{"op":"delete","key":${JSON.stringify(key)}}\n`);
    return existed;
  }

  async keys(prefix: string): Promise<string[]> {
    if (typeof prefix !== "string") {
      throw new InvalidArgumentError(`prefix must be a string, got ${describeValue(prefix)}`);
    }
    await this.#log.barrier();
    const out: string[] = [];
    for (const key of this.#items.keys()) {
      if (key.startsWith(prefix) && this.#live(key) !== undefined) out.push(key);
    }
    return out.sort(compareCodePoints);
  }

  async scan(prefix: string, options?: PageOptions): Promise<Page<string>> {
    const args = readKvScanArguments(prefix, options);
    await this.#log.barrier();
    return this.#index.page(args, (key) => this.#live(key) !== undefined);
  }

  /** Closes the log (after pending writes). */
  async close(): Promise<void> {
    await this.#log.close();
  }

  #live(key: string): Item | undefined {
    const item = this.#items.get(key);
    if (item === undefined) return undefined;
    if (item.expiresAt !== undefined && item.expiresAt <= this.#context.now()) return undefined;
    return item;
  }

  /** Forgets every entry expired at `now` (their lines become garbage for compaction). */
  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [key, item] of this.#items) {
      if (item.expiresAt !== undefined && item.expiresAt <= now) this.#items.delete(key);
    }
  }

  async #append(line: string): Promise<void> {
    const written = this.#log.append(line);
    const now = this.#context.now();
    if (now - this.#lastSweep >= KV_SWEEP_INTERVAL_MS) this.#sweep(now);
    if (shouldCompact(this.#log.lineCount, this.#items.size)) {
      this.#sweep(now);
      const snapshot: string[] = [];
      let count = 0;
      for (const [key, item] of this.#items) {
        snapshot.push(
          item.expiresAt === undefined
            ? `{"op":"set","key":${JSON.stringify(key)},"value":${item.json}}\n`
            : `{"op":"set","key":${JSON.stringify(key)},"value":${item.json},"expiresAt":${item.expiresAt}}\n`,
        );
        count++;
      }
      this.#log.rewrite(snapshot, count).catch(() => {});
    }
    await written;
  }
}
