/**
 * Remembered approvals: one hash per session, `pattern -> JSON`.
 */
import type { ApprovalRecord, ApprovalStore } from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { decodeJsonObject, encodeJsonObject } from "./json.js";
import type { KeySpace } from "./keys.js";
import { APPROVALS_CLEAR_ALL } from "./scripts.js";
import { requireId, requireNumber } from "./validate.js";

export class RedisApprovalStore implements ApprovalStore {
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async list(sessionKey: string): Promise<ApprovalRecord[]> {
    const key = this.#keys.approvals(requireId(sessionKey, "session key"));
    const all = await this.#conn.send<string[]>("hvals", [key]);
    return all
      .map((json) => decodeJsonObject<ApprovalRecord>(json, key))
      .sort((a, b) => (a.pattern < b.pattern ? -1 : a.pattern > b.pattern ? 1 : 0));
  }

  async put(sessionKey: string, record: ApprovalRecord): Promise<void> {
    const key = this.#keys.approvals(requireId(sessionKey, "session key"));
    if (typeof record !== "object" || record === null) {
      throw new InvalidArgumentError("approval record must be an object");
    }
    const pattern = requireId(record.pattern, "approval pattern");
    if (record.decision !== "allow" && record.decision !== "deny") {
      throw new InvalidArgumentError(`approval decision must be "allow" or "deny"`);
    }
    requireNumber(record.decidedAt, "approval decidedAt");
    const json = encodeJsonObject(record, "approval record");
    await this.#conn.send("hset", [key, pattern, json]);
  }

  async clear(sessionKey: string, pattern?: string): Promise<number> {
    const key = this.#keys.approvals(requireId(sessionKey, "session key"));
    if (pattern === undefined) {
      return this.#conn.script<number>(APPROVALS_CLEAR_ALL, [key], []);
    }
    const field = requireId(pattern, "approval pattern");
    return this.#conn.send<number>("hdel", [key, field]);
  }
}
