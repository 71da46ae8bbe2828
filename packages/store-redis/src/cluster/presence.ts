/**
 * Cluster-wide presence on Redis: one hash per node of what is present on it, which the
 * node's heartbeats keep alive (it expires two `downAfterMs` after the last one) and which
 * the heartbeat that declares the node `down`, or its own `leave`, removes with a `leave`
 * event per entry. A listing reads the hashes of the nodes that heartbeated within
 * `downAfterMs`, so a dead node's entries are gone from it as soon as the node is. Changes
 * are published on one channel that every node listens to.
 */
import {
  ClusterError,
  type ClusterPresence,
  type ClusterPresenceEntry,
  type ClusterPresenceEvent,
  InvalidArgumentError,
  type JsonObject,
} from "@beamclaw/core";
import { requireId } from "../validate.js";
import { PendingRemovals } from "./pending-removals.js";
import { type ClusterLink, json } from "./registry.js";
import { PRESENCE_LIST, PRESENCE_TRACK, PRESENCE_UNTRACK } from "./scripts.js";

/** The Redis {@link ClusterPresence}: get it as `backplane.presence`. */
export class RedisClusterPresence implements ClusterPresence {
  readonly #link: ClusterLink;
  readonly #handlers = new Set<(event: ClusterPresenceEvent) => void>();
  /** What this node tracks (key -> meta JSON), to track it again (see `retrack`). */
  readonly #tracked = new Map<string, string>();
  /** Keys untracked here whose removal from Redis failed; retried at each heartbeat. */
  readonly #untracked = new PendingRemovals((key) => this.#remove(key));

  /**
   * Tracks this node's entries again after the cluster declared it down (its heartbeats were
   * late) and so removed them. Rejects when Redis cannot be reached (tried again later).
   * @internal
   */
  async retrack(): Promise<void> {
    const { conn, keys, nodeId, downAfterMs } = this.#link;
    for (const [key, body] of [...this.#tracked]) {
      if (!this.#link.joined) return;
      await conn.script(
        PRESENCE_TRACK,
        [keys.presence(nodeId)],
        [key, body, String(2 * downAfterMs), keys.presenceChannel, nodeId],
      );
    }
  }

  /** Forgets what this node tracks (it left the cluster). @internal */
  clear(): void {
    this.#tracked.clear();
    this.#untracked.clear();
  }

  /** @internal */
  constructor(link: ClusterLink) {
    this.#link = link;
  }

  async track(key: string, meta: JsonObject = {}): Promise<void> {
    requireKey(key);
    const body = json(meta, "presence meta");
    this.#requireJoined("track");
    const { conn, keys, nodeId, downAfterMs } = this.#link;
    await this.#untracked.takeUp(key, () =>
      conn.script(
        PRESENCE_TRACK,
        [keys.presence(nodeId)],
        [key, body, String(2 * downAfterMs), keys.presenceChannel, nodeId],
      ),
    );
    this.#tracked.set(key, body);
  }

  async untrack(key: string): Promise<boolean> {
    requireKey(key);
    this.#tracked.delete(key);
    if (!this.#link.joined) return false;
    // A failure (Redis unreachable) leaves the entry listed there for as long as this node
    // lives (its heartbeats keep it): the removal is tried again.
    return this.#untracked.remove(key);
  }

  /**
   * Tries again the removals from Redis that failed (see `untrack`). Rejects when Redis
   * still cannot be reached (the next heartbeat tries again).
   * @internal
   */
  async retryUntracks(): Promise<void> {
    if (this.#link.joined) await this.#untracked.retry();
  }

  async #remove(key: string): Promise<boolean> {
    const { conn, keys, nodeId } = this.#link;
    const n = Number(
      await conn.script<number>(
        PRESENCE_UNTRACK,
        [keys.presence(nodeId)],
        [key, keys.presenceChannel, nodeId],
      ),
    );
    // 2: the value there was not a presence entry (something else wrote it): removed, but
    // announced by no `leave`, and reported.
    if (n === 2) this.#link.skipped(keys.presence(nodeId), key, nodeId);
    return n === 1 || n === 2;
  }

  async list(): Promise<ClusterPresenceEntry[]> {
    this.#requireJoined("list presence");
    const { conn, keys, downAfterMs } = this.#link;
    const reply = await conn.script<string[]>(
      PRESENCE_LIST,
      [keys.heartbeats],
      [String(downAfterMs), keys.presence("")],
    );
    const out: ClusterPresenceEntry[] = [];
    for (let i = 0; i + 2 < reply.length; i += 3) {
      const entry = parseEntry(String(reply[i]), String(reply[i + 1]), String(reply[i + 2]));
      if (entry !== undefined) out.push(entry);
    }
    return out.sort((a, b) =>
      a.key !== b.key ? (a.key < b.key ? -1 : 1) : a.nodeId < b.nodeId ? -1 : 1,
    );
  }

  onChange(handler: (event: ClusterPresenceEvent) => void): () => void {
    if (typeof handler !== "function") {
      throw new InvalidArgumentError("onChange needs a handler function");
    }
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  /** A message from the presence channel. @internal */
  receive(payload: string): void {
    let event: { type?: unknown; nodeId?: unknown; key?: unknown; entry?: unknown };
    try {
      event = JSON.parse(payload) as typeof event;
    } catch {
      return;
    }
    // Valid JSON that is not an object (`null`, a number) is as malformed as invalid JSON.
    if (typeof event !== "object" || event === null) return;
    const { type, nodeId, key } = event;
    if (type !== "join" && type !== "update" && type !== "leave") return;
    if (typeof nodeId !== "string" || typeof key !== "string") return;
    const entry = parseEntry(nodeId, key, JSON.stringify(event.entry ?? {}));
    if (entry === undefined) return;
    for (const handler of [...this.#handlers]) {
      try {
        handler({ type, entry });
      } catch {
        // A throwing handler does not stop the others.
      }
    }
  }

  #requireJoined(what: string): void {
    if (!this.#link.joined) {
      throw new ClusterError(
        "CLUSTER_NOT_RUNNING",
        `cannot ${what}: the backplane has not joined the cluster`,
      );
    }
  }
}

/**
 * A non-empty, well-formed key: one with a lone surrogate would reach Redis as U+FFFD, the
 * same key as another.
 */
function requireKey(key: unknown): asserts key is string {
  requireId(key, "a presence key");
}

/**
 * The entry a presence hash value (or a notice's `entry`) holds, or `undefined` when it is not
 * one `PRESENCE_TRACK` wrote (not JSON, or not an object with a number `t` and an object `m`:
 * something else wrote it).
 */
function parseEntry(nodeId: string, key: string, value: string): ClusterPresenceEntry | undefined {
  let record: unknown;
  try {
    record = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof record !== "object" || record === null || Array.isArray(record)) return undefined;
  const { t, m } = record as { t?: unknown; m?: unknown };
  if (typeof t !== "number" || !Number.isFinite(t)) return undefined;
  if (typeof m !== "object" || m === null || Array.isArray(m)) return undefined;
  return { key, nodeId, meta: m as JsonObject, updatedAt: t };
}
