/**
 * Paging of key/value keys (`kv.scan`): the key order, the options every adapter validates
 * alike, the opaque cursor every adapter hands out alike, an in-memory sorted key index for
 * adapters that hold their keys in memory, and {@link iterateKvKeys} for callers.
 */
import { InvalidArgumentError } from "../errors.js";
import type { KeyValueStore, Page, PageOptions } from "./types.js";

/** Keys per page of `kv.scan` when `limit` is not given. */
export const KV_SCAN_DEFAULT_LIMIT = 100;
/** The largest `limit` of `kv.scan`. */
export const KV_SCAN_MAX_LIMIT = 1000;

/**
 * Orders strings by Unicode code point (the same order as their UTF-8 bytes, which is what
 * Redis and most databases use), not by UTF-16 code unit as `Array.prototype.sort` does. The
 * Store contract's "sorted" and "ties by key" mean this order.
 *
 * @example
 * ```ts
 * ["\u{1F600}", "\uFF5A"].sort(compareCodePoints); // ["\uFF5A", "\u{1F600}"]
 * ```
 */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** Surrogates (U+D800–DFFF) stand for code points above U+FFFF, so they rank after U+E000–FFFF. */
function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

/** The arguments of one `kv.scan` call, validated (see {@link readKvScanArguments}). */
export interface KvScanArguments {
  prefix: string;
  /** Keys wanted on the page, 1..{@link KV_SCAN_MAX_LIMIT}. */
  limit: number;
  /** The page starts after this key (in code point order); undefined on the first page. */
  after: string | undefined;
}

const CURSOR_HEAD = "kv1.";

/**
 * The cursor of a `kv.scan` page whose last key (or last position looked at) is `key`: opaque
 * to callers, the same format in every adapter. For store adapters.
 */
export function encodeKvCursor(key: string): string {
  return CURSOR_HEAD + Buffer.from(JSON.stringify(key), "utf8").toString("base64url");
}

/**
 * Validates the arguments of `kv.scan(prefix, options)` the way every adapter must: `prefix` a
 * string, `options` an object or undefined, `limit` an integer in 1..1000 (default 100), and
 * `cursor` undefined or a cursor that `kv.scan` returned for the same prefix. Anything else is
 * an `InvalidArgumentError` naming it. For store adapters.
 */
export function readKvScanArguments(prefix: unknown, options: unknown): KvScanArguments {
  if (typeof prefix !== "string") {
    throw new InvalidArgumentError(`kv.scan: prefix must be a string, got ${show(prefix)}`);
  }
  if (
    options !== undefined &&
    (typeof options !== "object" || options === null || Array.isArray(options))
  ) {
    throw new InvalidArgumentError(`kv.scan: options must be an object, got ${show(options)}`);
  }
  const { limit = KV_SCAN_DEFAULT_LIMIT, cursor } = (options ?? {}) as PageOptions;
  if (
    typeof limit !== "number" ||
    !Number.isInteger(limit) ||
    limit < 1 ||
    limit > KV_SCAN_MAX_LIMIT
  ) {
    throw new InvalidArgumentError(
      `kv.scan: limit must be an integer within 1..${KV_SCAN_MAX_LIMIT}, got ${show(limit)}`,
    );
  }
  return { prefix, limit, after: cursor === undefined ? undefined : cursorKey(cursor, prefix) };
}

/** The key a cursor stands for, or `InvalidArgumentError` when it is not one of ours. */
function cursorKey(cursor: unknown, prefix: string): string {
  if (typeof cursor === "string" && cursor.startsWith(CURSOR_HEAD)) {
    const body = cursor.slice(CURSOR_HEAD.length);
    if (/^[A-Za-z0-9_-]+$/.test(body)) {
      let key: unknown;
      try {
        key = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
      } catch {
        key = undefined;
      }
      // The cursor must be exactly what encodeKvCursor made, for a key under this prefix.
      if (typeof key === "string" && key.startsWith(prefix) && encodeKvCursor(key) === cursor) {
        return key;
      }
    }
  }
  throw new InvalidArgumentError(
    `kv.scan: cursor ${show(cursor)} is not a cursor kv.scan returned for prefix ${show(prefix)}`,
  );
}

function show(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  }
  if (value === null || Array.isArray(value)) return value === null ? "null" : "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return typeof value;
}

/**
 * The keys of an in-memory key/value map, kept in code point order for `kv.scan`. The adapter
 * tells it about each key that becomes present ({@link SortedKeyIndex.added}); removed keys
 * need no notice, since a page checks every key it returns against the map. The order is
 * rebuilt lazily (new keys are merged in at the next page), so paging through a map nobody
 * writes to costs a binary search and the page, not a sort per page. For store adapters.
 */
export class SortedKeyIndex {
  readonly #all: () => Iterable<string>;
  readonly #count: () => number;
  #sorted: string[] = [];
  #fresh: string[] = [];
  #built = false;

  /**
   * @param all every key of the map (present ones; expired ones are filtered per page).
   * @param count how many keys the map holds (to know when removed keys pile up).
   */
  constructor(all: () => Iterable<string>, count: () => number) {
    this.#all = all;
    this.#count = count;
  }

  /** Tells the index that `key` was not in the map and now is. */
  added(key: string): void {
    if (this.#built) this.#fresh.push(key);
  }

  /**
   * One page: up to `limit` keys after `after` that start with `prefix` and are `live`, in
   * code point order, with a cursor when more may follow.
   */
  page({ prefix, limit, after }: KvScanArguments, live: (key: string) => boolean): Page<string> {
    const sorted = this.#current();
    // The first key past the start: after the cursor's key, or at the prefix.
    const start = after ?? prefix;
    let low = 0;
    let high = sorted.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const order = compareCodePoints(sorted[middle]!, start);
      if (order < 0 || (order === 0 && after !== undefined)) low = middle + 1;
      else high = middle;
    }
    const items: string[] = [];
    let previous: string | undefined;
    for (let i = low; i < sorted.length; i++) {
      const key = sorted[i]!;
      if (!key.startsWith(prefix)) break;
      if (key === previous || !live(key)) continue;
      previous = key;
      if (items.length === limit) return { items, cursor: encodeKvCursor(items[limit - 1]!) };
      items.push(key);
    }
    return { items };
  }

  /** The sorted keys, with the keys added since merged in (duplicates may remain adjacent). */
  #current(): string[] {
    if (!this.#built || this.#sorted.length > 2 * this.#count() + 1024) {
      this.#sorted = [...this.#all()].sort(compareCodePoints);
      this.#fresh = [];
      this.#built = true;
      return this.#sorted;
    }
    if (this.#fresh.length > 0) {
      const fresh = this.#fresh.sort(compareCodePoints);
      this.#fresh = [];
      const old = this.#sorted;
      const merged: string[] = new Array(old.length + fresh.length);
      let i = 0;
      let j = 0;
      let k = 0;
      while (i < old.length && j < fresh.length) {
        merged[k++] = compareCodePoints(old[i]!, fresh[j]!) <= 0 ? old[i++]! : fresh[j++]!;
      }
      while (i < old.length) merged[k++] = old[i++]!;
      while (j < fresh.length) merged[k++] = fresh[j++]!;
      this.#sorted = merged;
    }
    return this.#sorted;
  }
}

/**
 * Every key under `prefix`, read page by page with `kv.scan` (so neither the store nor the
 * caller ever holds more than a page at once). A key present for the whole iteration is
 * yielded exactly once, in code point order; one set or deleted meanwhile may or may not be.
 * Stop early with `break`.
 *
 * @example
 * ```ts
 * for await (const key of iterateKvKeys(store.kv, "usage:2026-01-01:")) {
 *   console.log(key, await store.kv.get(key));
 * }
 * ```
 */
export async function* iterateKvKeys(
  kv: Pick<KeyValueStore, "scan">,
  prefix: string,
  options: { pageSize?: number } = {},
): AsyncGenerator<string, void, undefined> {
  let cursor: string | undefined;
  do {
    const page = await kv.scan(prefix, { limit: options.pageSize ?? KV_SCAN_MAX_LIMIT, cursor });
    yield* page.items;
    cursor = page.cursor;
  } while (cursor !== undefined);
}
