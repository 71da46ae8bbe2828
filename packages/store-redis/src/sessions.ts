/**
 * Session metadata: one hash per session (`{ a: agentId, j: JSON }`) and two sorted sets
 * scored by `-updatedAt` (all sessions, and per agent), so ascending rank is newest first
 * and equal times fall back to key order. A page is one script: rank lookup, a range of
 * `limit + 1`, and the records of that range only.
 */
import {
  InvalidArgumentError,
  type Page,
  type SessionListOptions,
  type SessionRecord,
  type SessionStore,
} from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { decodeJsonObject, encodeJsonObject } from "./json.js";
import type { KeySpace } from "./keys.js";
import { SESSION_DELETE, SESSION_LIST, SESSION_PUT } from "./scripts.js";
import { optionsObject, pageLimit, requireId, requireNumber } from "./validate.js";

export class RedisSessionStore implements SessionStore {
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async get(key: string): Promise<SessionRecord | undefined> {
    const redisKey = this.#keys.session(requireId(key, "session key"));
    const json = await this.#conn.send<string | null>("hget", [redisKey, "j"]);
    return json === null ? undefined : decodeJsonObject<SessionRecord>(json, redisKey);
  }

  async put(record: SessionRecord): Promise<void> {
    if (typeof record !== "object" || record === null) {
      throw new InvalidArgumentError("session record must be an object");
    }
    const key = requireId(record.key, "session record key");
    const agentId = requireId(record.agentId, "session record agentId");
    requireNumber(record.createdAt, "session record createdAt");
    const updatedAt = requireNumber(record.updatedAt, "session record updatedAt");
    const json = encodeJsonObject(record, "session record");
    const keys = this.#keys;
    await this.#conn.script(
      SESSION_PUT,
      [keys.session(key), keys.sessionsAll, keys.sessionsOfAgent(agentId)],
      [json, String(-updatedAt), key, agentId, keys.sessionsOfAgent("")],
    );
  }

  async delete(key: string): Promise<boolean> {
    const keys = this.#keys;
    const id = requireId(key, "session key");
    const n = await this.#conn.script<number>(
      SESSION_DELETE,
      [keys.session(id), keys.sessionsAll],
      [id, keys.sessionsOfAgent("")],
    );
    return n === 1;
  }

  async list(options?: SessionListOptions): Promise<Page<SessionRecord>> {
    const { agentId, updatedSince, limit, cursor } = optionsObject(options, "list options");
    const pageSize = pageLimit(limit, "list limit");
    const index =
      agentId === undefined
        ? this.#keys.sessionsAll
        : this.#keys.sessionsOfAgent(requireId(agentId, "agentId"));
    const maxScore =
      updatedSince === undefined ? "" : String(-requireNumber(updatedSince, "updatedSince"));
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const reply = await this.#conn.script<string[]>(
      SESSION_LIST,
      [index],
      [
        this.#keys.session(""),
        String(pageSize),
        maxScore,
        after === undefined ? "" : String(-after[0]),
        after === undefined ? "" : after[1],
      ],
    );
    const more = reply.pop() === "1";
    const items = reply.map((json) => decodeJsonObject<SessionRecord>(json, index));
    const last = items.at(-1);
    return more && last !== undefined
      ? { items, cursor: encodeCursor(last.updatedAt, last.key) }
      : { items };
  }

  async count(agentId?: string): Promise<number> {
    const index =
      agentId === undefined
        ? this.#keys.sessionsAll
        : this.#keys.sessionsOfAgent(requireId(agentId, "agentId"));
    return this.#conn.send<number>("zcard", [index]);
  }
}

/** A cursor is the `(updatedAt, key)` of the last item served, as base64url JSON. */
function encodeCursor(updatedAt: number, key: string): string {
  return Buffer.from(JSON.stringify([updatedAt, key])).toString("base64url");
}

function decodeCursor(cursor: unknown): [number, string] {
  if (typeof cursor === "string") {
    try {
      const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
      if (
        Array.isArray(value) &&
        value.length === 2 &&
        typeof value[0] === "number" &&
        Number.isFinite(value[0]) &&
        typeof value[1] === "string"
      ) {
        return [value[0], value[1]];
      }
    } catch {
      // Falls through to the error below.
    }
  }
  throw new InvalidArgumentError("invalid session list cursor (pass back a cursor from a page)");
}
