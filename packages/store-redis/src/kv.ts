/**
 * Key/value: one string key per entry (`SET ... PX` for a TTL, so Redis expires it on its
 * own), a lexicographic index of keys for prefix listing, and an expiry index so entries of
 * expired keys are reclaimed. Sets are one script, which also checks a fencing token against
 * the lock's counter and compares the stored value (`ifValue`) when asked; a delete is one
 * too, which compares the stored value when asked (`ifValue`). Listing is by pages of the index (`kv.scan`, one short script a page,
 * resuming after the page's last key), never `KEYS` nor one command over a whole range.
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
  encodeKvCursor,
  FencedError,
  InvalidArgumentError,
  KV_SCAN_MAX_LIMIT,
  readKvScanArguments,
} from "@beamclaw/core";
import type { RedisArg, RedisConnection } from "./connection.js";
import { decodeJson, encodeJson } from "./json.js";
import type { KeySpace } from "./keys.js";
import { KV_DELETE, KV_SCAN, KV_SET } from "./scripts.js";
import { optionsObject, requireId, requireTtl } from "./validate.js";

/** The byte after every UTF-8 byte sequence: the end of a prefix range. */
const LEX_MAX_BYTE = Buffer.from([0xff]);

export class RedisKeyValueStore implements KeyValueStore {
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async get<T extends JsonValue = JsonValue>(key: string): Promise<T | undefined> {
    const redisKey = this.#keys.kv(requireId(key, "kv key"));
    const json = await this.#conn.send<string | null>("get", [redisKey]);
    return json === null ? undefined : decodeJson<T>(json, redisKey);
  }

  async set(key: string, value: JsonValue, options?: KvSetOptions): Promise<boolean> {
    const id = requireId(key, "kv key");
    if (value === undefined) throw new InvalidArgumentError("kv value must not be undefined");
    const json = encodeJson(value, "kv value");
    const { ttlMs, ifAbsent, ifValue, fence } = optionsObject(options, "kv set options");
    const ttl = ttlMs === undefined ? "" : String(requireTtl(ttlMs, "ttlMs"));
    if (ifAbsent !== undefined && typeof ifAbsent !== "boolean") {
      throw new InvalidArgumentError("ifAbsent must be a boolean");
    }
    // Compared with the stored JSON in the script itself, like delete's `ifValue`.
    const expected = ifValue === undefined ? undefined : encodeJson(ifValue, "ifValue");
    if (ifAbsent === true && expected !== undefined) {
      throw new InvalidArgumentError("ifAbsent and ifValue cannot be given together");
    }
    let fenceKey = "";
    let fenceToken = "";
    if (fence !== undefined) {
      if (typeof fence !== "object" || fence === null) {
        throw new InvalidArgumentError("fence must be { lock, token }");
      }
      fenceKey = this.#keys.lockToken(requireId(fence.lock, "fence lock"));
      if (!Number.isSafeInteger(fence.token)) {
        throw new InvalidArgumentError("fence token must be an integer");
      }
      fenceToken = String(fence.token);
    }
    const keys = this.#keys;
    const reply = await this.#conn.script<number[]>(
      KV_SET,
      [keys.kv(id), keys.kvIndex, keys.kvExpiry],
      [
        id,
        json,
        ttl,
        ifAbsent === true ? "1" : "",
        fenceKey,
        fenceToken,
        keys.kv(""),
        ...(expected === undefined ? [] : ["1", expected]),
      ],
    );
    const outcome = reply[0];
    if (outcome === -1 && fence !== undefined) {
      throw new FencedError(fence.lock, fence.token, Number(reply[1]));
    }
    return outcome === 1;
  }

  async delete(key: string, options?: KvDeleteOptions): Promise<boolean> {
    const id = requireId(key, "kv key");
    const { ifValue } = optionsObject(options, "kv delete options");
    // Compared with the stored JSON in the script itself: nothing can change it in between.
    const expected = ifValue === undefined ? undefined : encodeJson(ifValue, "ifValue");
    const keys = this.#keys;
    const n = await this.#conn.script<number>(
      KV_DELETE,
      [keys.kv(id), keys.kvIndex, keys.kvExpiry],
      expected === undefined ? [id] : [id, "1", expected],
    );
    return n === 1;
  }

  /**
   * Every key under `prefix`, read page by page (one short script per 1000 keys, never one
   * command over the whole range, which would hold the server for as long as it runs).
   */
  async keys(prefix: string): Promise<string[]> {
    if (typeof prefix !== "string") {
      throw new InvalidArgumentError("kv keys prefix must be a string");
    }
    const out: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.scan(prefix, { limit: KV_SCAN_MAX_LIMIT, cursor });
      for (const key of page.items) out.push(key);
      cursor = page.cursor;
    } while (cursor !== undefined);
    return out;
  }

  async scan(prefix: string, options?: PageOptions): Promise<Page<string>> {
    const { limit, after } = readKvScanArguments(prefix, options);
    // Keys are well-formed (see requireId), so a cursor's key is: one that is not was not
    // made here, and its UTF-8 form (U+FFFD) would fall outside the prefix's range.
    if (after !== undefined && !isWellFormed(after)) {
      throw new InvalidArgumentError(
        "kv.scan: the cursor is not a cursor kv.scan returned (its key is not well-formed Unicode)",
      );
    }
    const range = lexRange(prefix);
    if (range === undefined) return { items: [] };
    const keys = this.#keys;
    const reply = await this.#conn.script<string[]>(
      KV_SCAN,
      [keys.kvIndex, keys.kvExpiry],
      [keys.kv(""), after === undefined ? range.min : `(${after}`, range.max, String(limit)],
    );
    // Redis orders members by their UTF-8 bytes, which is code point order.
    const [position, ...items] = reply.map(String);
    return position === undefined || position === ""
      ? { items }
      : { items, cursor: encodeKvCursor(position) };
  }
}

function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/**
 * The `ZRANGEBYLEX` range of exactly the keys that start with `prefix`, or undefined when no
 * key can (keys are well-formed Unicode). Redis compares UTF-8 bytes, and UTF-8 turns a lone
 * surrogate into U+FFFD, so a prefix with one is not sent as it is: one ending in a lone high
 * surrogate starts the keys whose next code point is one of the 1024 that surrogate begins;
 * any other lone surrogate starts no well-formed key.
 */
function lexRange(prefix: string): { min: string; max: RedisArg } | undefined {
  if (prefix === "") return { min: "-", max: "+" };
  if (isWellFormed(prefix)) {
    return { min: `[${prefix}`, max: Buffer.concat([Buffer.from(`[${prefix}`), LEX_MAX_BYTE]) };
  }
  const start = wellFormedStart(prefix);
  const high = prefix.charCodeAt(start.length);
  if (prefix.length !== start.length + 1 || high > 0xdbff) return undefined;
  const first = 0x10000 + ((high - 0xd800) << 10);
  const last = String.fromCodePoint(first + 0x3ff);
  return {
    min: `[${start}${String.fromCodePoint(first)}`,
    max: Buffer.concat([Buffer.from(`[${start}${last}`), LEX_MAX_BYTE]),
  };
}

/** `text` up to its first lone surrogate (all of it when it is well-formed). */
function wellFormedStart(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0xd800 || code > 0xdfff) continue;
    const next = text.charCodeAt(i + 1);
    if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      i++;
      continue;
    }
    return text.slice(0, i);
  }
  return text;
}
