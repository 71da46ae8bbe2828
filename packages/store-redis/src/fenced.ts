/**
 * Session writes fenced by a lock's fencing token (`store.fenced(fence)`): each is the
 * unfenced operation's script with a check in front, in the same script, that the lock's
 * fencing counter still holds the token presented. A later `acquire` of the lock (by any
 * process) increments the counter, so from then on the earlier holder's writes are refused
 * with `FencedError` and write nothing. The lease itself may have lapsed meanwhile: as long
 * as nobody has acquired the lock since, nobody else has written either, so the write is
 * still safe (for `LOCK_TOKEN_RETENTION_MS` after the lease ran out, while Redis keeps the
 * counter; later writes are refused).
 */
import type {
  FencedWrites,
  InboundQueue,
  JsonObject,
  SessionRecord,
  SessionStore,
  TranscriptStore,
  WriteFence,
} from "@beamclaw/core";
import { FencedError, InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { encodeJsonObject } from "./json.js";
import type { KeySpace } from "./keys.js";
import {
  fencedScript,
  type LuaScript,
  QUEUE_ACK,
  SESSION_DELETE,
  SESSION_PUT,
  TRANSCRIPT_APPEND,
  TRANSCRIPT_DELETE,
} from "./scripts.js";
import { requireId, requireNumber } from "./validate.js";

const SESSION_PUT_FENCED = fencedScript(SESSION_PUT);
const SESSION_DELETE_FENCED = fencedScript(SESSION_DELETE);
const TRANSCRIPT_APPEND_FENCED = fencedScript(TRANSCRIPT_APPEND);
const TRANSCRIPT_DELETE_FENCED = fencedScript(TRANSCRIPT_DELETE);
const QUEUE_ACK_FENCED = fencedScript(QUEUE_ACK);

/** The writes of {@link FencedWrites} on Redis. @internal */
export class RedisFencedWrites implements FencedWrites {
  readonly fence: WriteFence;
  readonly sessions: Pick<SessionStore, "put" | "delete">;
  readonly transcripts: Pick<TranscriptStore, "append" | "delete">;
  readonly queue: Pick<InboundQueue, "ack" | "discard">;
  readonly #conn: RedisConnection;
  readonly #counter: string;

  constructor(conn: RedisConnection, keys: KeySpace, dedupeWindowMs: number, fence: WriteFence) {
    if (typeof fence !== "object" || fence === null) {
      throw new InvalidArgumentError("fence must be { lock, token }");
    }
    const lock = requireId(fence.lock, "fence lock");
    if (!Number.isSafeInteger(fence.token)) {
      throw new InvalidArgumentError("fence token must be an integer");
    }
    this.fence = Object.freeze({ lock, token: fence.token });
    this.#conn = conn;
    this.#counter = keys.lockToken(lock);
    this.sessions = {
      put: async (record: SessionRecord): Promise<void> => {
        if (typeof record !== "object" || record === null) {
          throw new InvalidArgumentError("session record must be an object");
        }
        const key = requireId(record.key, "session record key");
        const agentId = requireId(record.agentId, "session record agentId");
        requireNumber(record.createdAt, "session record createdAt");
        const updatedAt = requireNumber(record.updatedAt, "session record updatedAt");
        const json = encodeJsonObject(record, "session record");
        await this.#run(
          SESSION_PUT_FENCED,
          [keys.session(key), keys.sessionsAll, keys.sessionsOfAgent(agentId)],
          [json, String(-updatedAt), key, agentId, keys.sessionsOfAgent("")],
        );
      },
      delete: async (key: string): Promise<boolean> => {
        const id = requireId(key, "session key");
        const n = await this.#run(
          SESSION_DELETE_FENCED,
          [keys.session(id), keys.sessionsAll],
          [id, keys.sessionsOfAgent("")],
        );
        return n === 1;
      },
    };
    this.transcripts = {
      append: async (sessionKey: string, entries: JsonObject[]): Promise<number> => {
        const key = keys.transcript(requireId(sessionKey, "session key"));
        if (!Array.isArray(entries)) {
          throw new InvalidArgumentError("transcript entries must be an array");
        }
        const encoded = entries.map((entry, i) => encodeJsonObject(entry, `transcript entry ${i}`));
        return this.#run(TRANSCRIPT_APPEND_FENCED, [key], encoded);
      },
      delete: async (sessionKey: string): Promise<boolean> => {
        const key = keys.transcript(requireId(sessionKey, "session key"));
        return (await this.#run(TRANSCRIPT_DELETE_FENCED, [key], [])) === 1;
      },
    };
    const settle = async (id: string, window: number): Promise<void> => {
      const messageId = requireId(id, "message id");
      await this.#run(
        QUEUE_ACK_FENCED,
        [keys.queuePending, keys.queueMessage(messageId), keys.queueSessionOf],
        [messageId, keys.queueOfSession(""), keys.queueIdempotency(""), String(window)],
      );
    };
    this.queue = {
      ack: (id: string) => settle(id, dedupeWindowMs),
      // As in the unfenced queue: an ack with a zero window forgets the idempotency key.
      discard: (id: string) => settle(id, 0),
    };
  }

  /** Runs the fenced `script`: its number, or `FencedError` when the token is stale. */
  async #run(script: LuaScript, keys: string[], args: string[]): Promise<number> {
    const reply = await this.#conn.script<number | number[]>(
      script,
      [...keys, this.#counter],
      [...args, String(this.fence.token)],
    );
    if (Array.isArray(reply)) {
      throw new FencedError(this.fence.lock, this.fence.token, Number(reply[1]));
    }
    return Number(reply);
  }
}

/** Creates the fenced writes of a store's key space. @internal */
export function fencedWrites(
  conn: RedisConnection,
  keys: KeySpace,
  dedupeWindowMs: number,
  fence: WriteFence,
): FencedWrites {
  return new RedisFencedWrites(conn, keys, dedupeWindowMs, fence);
}
