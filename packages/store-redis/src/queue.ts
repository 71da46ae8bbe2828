/**
 * The durable inbound queue. A message is one hash (`{ i: idempotencyKey, s: sessionKey,
 * p: payload JSON, t: enqueuedAt, d: deliveries }`) under an id from a counter; pending ids
 * sit in a sorted set scored by that counter (enqueue order), globally and per session, and
 * a session index (`queue:session-of`) maps each pending id to its session key; the
 * idempotency key points to the id. Enqueue, ack and replay are each one script, so a crash
 * between two steps cannot leave a message half-queued or half-acknowledged.
 *
 * On `ack` the message leaves the pending sets, and the message hash and its idempotency
 * key are kept for `dedupeWindowMs` (Redis expires them), so a late duplicate still gets the
 * original back with `duplicate: true`.
 *
 * A pending id whose message hash is gone (an evicting `maxmemory-policy`, which the README
 * forbids, or a manual `DEL`) is an orphan: `pending` and `replay` remove it from both pending
 * sets and the session index (in their script; read through all sessions, its session set
 * is found through the index), fill the page from the ids after it, and report it once on
 * {@link REDIS_QUEUE_ORPHAN_ID_CHANNEL}.
 */
import diagnosticsChannel from "node:diagnostics_channel";
import type {
  EnqueueResult,
  InboundQueue,
  JsonObject,
  QueuedMessage,
  QueuePendingOptions,
} from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import type { RedisConnection } from "./connection.js";
import { decodeJson, decodeJsonObject, encodeJsonObject } from "./json.js";
import type { KeySpace } from "./keys.js";
import { QUEUE_ACK, QUEUE_ENQUEUE, QUEUE_PENDING } from "./scripts.js";
import { optionsObject, pageLimit, requireId, show } from "./validate.js";

/** Acknowledged idempotency keys are remembered this long unless configured: 24 hours. */
export const DEFAULT_DEDUPE_WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * The `node:diagnostics_channel` channel on which the inbound queue reports each pending
 * message id it met without its message hash (see {@link RedisQueueOrphanId}) while reading
 * `pending` or `replay`. The id has then been removed from every pending set that held it
 * (the one read, the all-sessions one and its session's); its message is lost (not
 * delivered). Each orphan is reported once. Subscribe to log them.
 *
 * @example
 * ```ts
 * import diagnosticsChannel from "node:diagnostics_channel";
 * diagnosticsChannel.subscribe(REDIS_QUEUE_ORPHAN_ID_CHANNEL, (orphan) => console.warn(orphan));
 * ```
 */
export const REDIS_QUEUE_ORPHAN_ID_CHANNEL = "beamclaw:store-redis:queue:orphan-id";

/** The message of {@link REDIS_QUEUE_ORPHAN_ID_CHANNEL}. */
export interface RedisQueueOrphanId {
  /** The pending message id. */
  id: string;
  /** The message hash that is gone (`<prefix>queue:msg:<id>`). */
  key: string;
  /**
   * The pending sets it was removed from: first the one read (all sessions', or one
   * session's), then the other one that held it: its session's (found through the session
   * index) or the all-sessions one. An id enqueued by a version without the index, met
   * through all sessions, lists only the all-sessions set: it stays in its session's set
   * until that session's pending messages are read, which removes it without reporting it
   * again.
   */
  removedFrom: string[];
  /** Why it was removed. */
  reason: string;
}

const orphanIdChannel = diagnosticsChannel.channel(REDIS_QUEUE_ORPHAN_ID_CHANNEL);

/** Message ids are the enqueue counter, zero-padded to 16 digits (see `QUEUE_ENQUEUE`). */
const QUEUE_ID = /^[0-9]{16}$/;

/**
 * The `after` of `pending`: a message id of this store's form, as the score it stands for
 * (the counter without its leading zeros), or `InvalidArgumentError`.
 */
function queuePosition(value: unknown): string {
  if (typeof value !== "string" || !QUEUE_ID.test(value)) {
    throw new InvalidArgumentError(
      `queue after must be the id of a queued message (16 digits), got ${show(value)}`,
    );
  }
  return BigInt(value).toString();
}

export class RedisInboundQueue implements InboundQueue {
  readonly dedupeWindowMs: number;
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;

  constructor(conn: RedisConnection, keys: KeySpace, dedupeWindowMs: number) {
    this.#conn = conn;
    this.#keys = keys;
    this.dedupeWindowMs = dedupeWindowMs;
  }

  async enqueue(message: {
    idempotencyKey: string;
    sessionKey: string;
    payload: JsonObject;
  }): Promise<EnqueueResult> {
    if (typeof message !== "object" || message === null) {
      throw new InvalidArgumentError("queued message must be an object");
    }
    const idempotencyKey = requireId(message.idempotencyKey, "idempotencyKey");
    const sessionKey = requireId(message.sessionKey, "message sessionKey");
    const payload = encodeJsonObject(message.payload, "message payload");
    const enqueuedAt = Date.now();
    const keys = this.#keys;
    const reply = await this.#conn.script<string[]>(
      QUEUE_ENQUEUE,
      [
        keys.queueIdempotency(idempotencyKey),
        keys.queueSeq,
        keys.queuePending,
        keys.queueSessionOf,
      ],
      [
        keys.queueMessage(""),
        keys.queueOfSession(""),
        idempotencyKey,
        sessionKey,
        payload,
        String(enqueuedAt),
      ],
    );
    const [flag, id] = reply;
    if (Number(flag) === 1) {
      return { message: this.#decode(reply, 1), duplicate: true };
    }
    return {
      message: {
        id: id as string,
        idempotencyKey,
        sessionKey,
        payload: decodeJson<JsonObject>(payload, keys.queueMessage(id as string)),
        enqueuedAt,
        deliveries: 0,
      },
      duplicate: false,
    };
  }

  async ack(id: string): Promise<void> {
    const messageId = requireId(id, "message id");
    const keys = this.#keys;
    await this.#conn.script(
      QUEUE_ACK,
      [keys.queuePending, keys.queueMessage(messageId), keys.queueSessionOf],
      [messageId, keys.queueOfSession(""), keys.queueIdempotency(""), String(this.dedupeWindowMs)],
    );
  }

  async discard(id: string): Promise<void> {
    const messageId = requireId(id, "message id");
    const keys = this.#keys;
    // An ack with a zero dedupe window deletes the message and its idempotency key at once.
    await this.#conn.script(
      QUEUE_ACK,
      [keys.queuePending, keys.queueMessage(messageId), keys.queueSessionOf],
      [messageId, keys.queueOfSession(""), keys.queueIdempotency(""), "0"],
    );
  }

  async pending(options?: QueuePendingOptions): Promise<QueuedMessage[]> {
    const { after } = optionsObject(options, "queue options");
    return this.#list(options, false, after === undefined ? undefined : queuePosition(after));
  }

  replay(options?: { sessionKey?: string; limit?: number }): Promise<QueuedMessage[]> {
    return this.#list(options, true);
  }

  /** `after`: the enqueue counter (the pending sets' score) to start after. */
  async #list(
    options: { sessionKey?: string; limit?: number } | undefined,
    countDelivery: boolean,
    after?: string,
  ): Promise<QueuedMessage[]> {
    const { sessionKey, limit } = optionsObject(options, "queue options");
    const set =
      sessionKey === undefined
        ? this.#keys.queuePending
        : this.#keys.queueOfSession(requireId(sessionKey, "sessionKey"));
    const count = pageLimit(limit, "queue limit");
    const keys = this.#keys;
    const [reply, orphans] = await this.#conn.script<[string[], string[]]>(
      QUEUE_PENDING,
      [set, keys.queuePending, keys.queueSessionOf],
      [
        keys.queueMessage(""),
        String(count - 1),
        countDelivery ? "1" : "0",
        after ?? "",
        keys.queueOfSession(""),
      ],
    );
    if (orphans.length > 0) this.#orphans(orphans, set);
    const messages: QueuedMessage[] = [];
    for (let i = 0; i < reply.length; i += 6) messages.push(this.#decode(reply, i));
    return messages;
  }

  /**
   * Reports the pending ids, met in `set`, that the script removed for want of a hash:
   * `reply` holds `id, other set` pairs, the other set being the pending set besides `set`
   * the id was removed from ('' if none).
   */
  #orphans(reply: readonly string[], set: string): void {
    if (!orphanIdChannel.hasSubscribers) return;
    for (let i = 0; i < reply.length; i += 2) {
      const id = String(reply[i]);
      const other = String(reply[i + 1] ?? "");
      const orphan: RedisQueueOrphanId = {
        id,
        key: this.#keys.queueMessage(id),
        removedFrom: other === "" ? [set] : [set, other],
        reason: "its message hash is gone (evicted or deleted): the message is lost",
      };
      try {
        orphanIdChannel.publish(orphan);
      } catch {
        // A throwing subscriber does not fail the read.
      }
    }
  }

  /** Reads `id, i, s, p, t, d` starting at `at`. */
  #decode(reply: readonly unknown[], at: number): QueuedMessage {
    const id = String(reply[at]);
    return {
      id,
      idempotencyKey: String(reply[at + 1]),
      sessionKey: String(reply[at + 2]),
      payload: decodeJsonObject<JsonObject>(String(reply[at + 3]), this.#keys.queueMessage(id)),
      enqueuedAt: Number(reply[at + 4]),
      deliveries: Number(reply[at + 5]),
    };
  }
}
