/**
 * Key/value: one string key per entry (`SET ... PX` for a TTL, so Redis expires it on its
 * own), a lexicographic index of keys for prefix listing, and an expiry index so entries of
 * expired keys are reclaimed. Sets are one script, which also checks a fencing token against
 * the lock's counter when asked; a delete is one too, which compares the stored value when
 * asked (`ifValue`).
 */
import type { JsonValue, KeyValueStore, KvDeleteOptions, KvSetOptions } from "@beamclaw/core";
import { FencedError, InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { decodeJson, encodeJson } from "./json.js";
import type { KeySpace } from "./keys.js";
import { KV_DELETE, KV_KEYS, KV_SET } from "./scripts.js";
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
    const { ttlMs, ifAbsent, fence } = optionsObject(options, "kv set options");
    const ttl = ttlMs === undefined ? "" : String(requireTtl(ttlMs, "ttlMs"));
    if (ifAbsent !== undefined && typeof ifAbsent !== "boolean") {
      throw new InvalidArgumentError("ifAbsent must be a boolean");
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
      [id, json, ttl, ifAbsent === true ? "1" : "", fenceKey, fenceToken, keys.kv("")],
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

  async keys(prefix: string): Promise<string[]> {
    if (typeof prefix !== "string") {
      throw new InvalidArgumentError("kv keys prefix must be a string");
    }
    // UTF-8 turns a lone surrogate into U+FFFD, so the range is that of the prefix's
    // well-formed start, and the keys found are then matched against the whole prefix.
    const start = wellFormedStart(prefix);
    const min = start === "" ? "-" : `[${start}`;
    const max = start === "" ? "+" : Buffer.concat([Buffer.from(`[${start}`), LEX_MAX_BYTE]);
    const keys = this.#keys;
    const found = await this.#conn.script<string[]>(
      KV_KEYS,
      [keys.kvIndex, keys.kvExpiry],
      [keys.kv(""), min, max],
    );
    // Redis orders members by their UTF-8 bytes, which is code point order.
    return start === prefix ? found : found.filter((key) => key.startsWith(prefix));
  }
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
