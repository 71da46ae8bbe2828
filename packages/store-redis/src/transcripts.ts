/**
 * Transcripts: one Redis list per session, entry `seq` at index `seq - 1`. An append is one
 * `RPUSH` of every entry, which Redis applies atomically and which returns the new length:
 * the last entry's seq. Concurrent appenders (other processes included) therefore get
 * distinct, gap-free seqs without a separate counter.
 */
import type {
  JsonObject,
  TranscriptReadOptions,
  TranscriptRecord,
  TranscriptStore,
} from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { decodeJsonObject, encodeJsonObject } from "./json.js";
import type { KeySpace } from "./keys.js";
import { TRANSCRIPT_READ } from "./scripts.js";
import { optionsObject, pageLimit, requireId, requireInteger } from "./validate.js";

export class RedisTranscriptStore implements TranscriptStore {
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async append(sessionKey: string, entries: JsonObject[]): Promise<number> {
    const key = this.#keys.transcript(requireId(sessionKey, "session key"));
    if (!Array.isArray(entries)) {
      throw new InvalidArgumentError("transcript entries must be an array");
    }
    if (entries.length === 0) return this.#conn.send<number>("llen", [key]);
    const encoded = entries.map((entry, i) => encodeJsonObject(entry, `transcript entry ${i}`));
    return this.#conn.send<number>("rpush", [key, ...encoded]);
  }

  async read(sessionKey: string, options?: TranscriptReadOptions): Promise<TranscriptRecord[]> {
    const key = this.#keys.transcript(requireId(sessionKey, "session key"));
    const { afterSeq, beforeSeq, limit, order } = optionsObject(options, "read options");
    const after = afterSeq === undefined ? 0 : requireInteger(afterSeq, "afterSeq", 0);
    const upper =
      beforeSeq === undefined ? "" : String(requireInteger(beforeSeq, "beforeSeq", 0) - 1);
    if (order !== undefined && order !== "asc" && order !== "desc") {
      throw new InvalidArgumentError(`read order must be "asc" or "desc"`);
    }
    const reply = await this.#conn.script<[number, ...string[]]>(
      TRANSCRIPT_READ,
      [key],
      [String(after), upper, String(pageLimit(limit, "read limit")), order ?? "asc"],
    );
    const first = reply[0];
    const records: TranscriptRecord[] = [];
    for (let i = 1; i < reply.length; i++) {
      records.push({
        seq: first + i - 1,
        entry: decodeJsonObject<JsonObject>(reply[i] as string, key),
      });
    }
    return order === "desc" ? records.reverse() : records;
  }

  async lastSeq(sessionKey: string): Promise<number> {
    const key = this.#keys.transcript(requireId(sessionKey, "session key"));
    return this.#conn.send<number>("llen", [key]);
  }

  async delete(sessionKey: string): Promise<boolean> {
    const key = this.#keys.transcript(requireId(sessionKey, "session key"));
    return (await this.#conn.send<number>("del", [key])) === 1;
  }
}
