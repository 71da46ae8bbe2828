/**
 * Work waiting for a node (`node.pending.*`): operators enqueue requests (`status.request`,
 * `location.request`) for a paired node, connected or not; the node drains or pulls them
 * when it connects (or is woken) and acknowledges what it handled. Kept in `store.kv` per
 * node, so a queue survives restarts; every change bumps the node's `revision`.
 */
import { randomUUID } from "node:crypto";
import type { JsonObject, KeyValueStore } from "@beamclaw/core";

const PREFIX = "gateway:node-pending:";
/** Items one node's queue holds at most (the oldest are dropped first). */
export const MAX_PENDING_PER_NODE = 100;

/** The kinds of work the protocol defines. */
export const NODE_PENDING_TYPES = ["status.request", "location.request"] as const;
/** A kind of work. */
export type NodePendingType = (typeof NODE_PENDING_TYPES)[number];

/** One queued item (the protocol's `NodePendingDrainResult.items[]`). */
export interface NodePendingItem {
  id: string;
  type: NodePendingType;
  priority: "default" | "normal" | "high";
  createdAtMs: number;
  /** Epoch ms after which the item is dropped; `null` for never. */
  expiresAtMs: number | null;
  payload?: Record<string, unknown>;
}

interface QueueState {
  revision: number;
  items: NodePendingItem[];
}

const RANK = { high: 0, normal: 1, default: 2 } as const;

/** See the module comment. Every change of one node's queue runs after the one before. */
export class NodePendingQueues {
  readonly #kv: KeyValueStore;
  readonly #now: () => number;
  readonly #chains = new Map<string, Promise<unknown>>();

  constructor(kv: KeyValueStore, now: () => number) {
    this.#kv = kv;
    this.#now = now;
  }

  /**
   * Queues an item. An item of the same type already waiting is refreshed instead (it keeps
   * its id; the higher priority and the later expiry win), so repeated requests do not pile up.
   */
  enqueue(
    nodeId: string,
    request: { type: NodePendingType; priority: "normal" | "high"; expiresInMs?: number },
  ): Promise<{ revision: number; queued: NodePendingItem }> {
    return this.#change(nodeId, (state, now) => {
      const expiresAtMs = request.expiresInMs === undefined ? null : now + request.expiresInMs;
      const existing = state.items.find((i) => i.type === request.type);
      let queued: NodePendingItem;
      if (existing !== undefined) {
        if (RANK[request.priority] < RANK[existing.priority]) existing.priority = request.priority;
        existing.expiresAtMs =
          existing.expiresAtMs === null || expiresAtMs === null
            ? null
            : Math.max(existing.expiresAtMs, expiresAtMs);
        queued = existing;
      } else {
        queued = {
          id: randomUUID(),
          type: request.type,
          priority: request.priority,
          createdAtMs: now,
          expiresAtMs,
        };
        state.items.push(queued);
        if (state.items.length > MAX_PENDING_PER_NODE) state.items.shift();
      }
      state.revision++;
      return { revision: state.revision, queued: { ...queued } };
    });
  }

  /**
   * Up to `maxItems` items, most urgent first. `take` removes them from the queue (a drain);
   * otherwise they stay until acknowledged (a pull).
   */
  next(
    nodeId: string,
    maxItems: number,
    take: boolean,
  ): Promise<{ revision: number; items: NodePendingItem[]; hasMore: boolean }> {
    return this.#change(nodeId, (state) => {
      const ordered = [...state.items].sort(
        (a, b) => RANK[a.priority] - RANK[b.priority] || a.createdAtMs - b.createdAtMs,
      );
      const items = ordered.slice(0, maxItems);
      if (take && items.length > 0) {
        const taken = new Set(items.map((i) => i.id));
        state.items = state.items.filter((i) => !taken.has(i.id));
        state.revision++;
      }
      return {
        revision: state.revision,
        items: items.map((i) => ({ ...i })),
        hasMore: ordered.length > items.length,
      };
    });
  }

  /** Removes acknowledged items; ids that are not queued are reported back as `unknown`. */
  ack(
    nodeId: string,
    ids: readonly string[],
  ): Promise<{ revision: number; acked: string[]; unknown: string[]; remaining: number }> {
    return this.#change(nodeId, (state) => {
      const wanted = new Set(ids);
      const acked = state.items.filter((i) => wanted.has(i.id)).map((i) => i.id);
      if (acked.length > 0) {
        state.items = state.items.filter((i) => !wanted.has(i.id));
        state.revision++;
      }
      const found = new Set(acked);
      return {
        revision: state.revision,
        acked,
        unknown: [...wanted].filter((id) => !found.has(id)),
        remaining: state.items.length,
      };
    });
  }

  /** Forgets a node's queue (it was unpaired). */
  clear(nodeId: string): Promise<void> {
    return this.#serial(nodeId, async () => {
      await this.#kv.delete(PREFIX + nodeId);
    });
  }

  async #change<T>(nodeId: string, apply: (state: QueueState, now: number) => T): Promise<T> {
    return this.#serial(nodeId, async () => {
      const now = this.#now();
      const stored = (await this.#kv.get(PREFIX + nodeId)) as unknown as QueueState | undefined;
      const state: QueueState = {
        revision: stored?.revision ?? 0,
        items: (stored?.items ?? []).map((i) => ({ ...i })),
      };
      const before = state.items.length;
      state.items = state.items.filter((i) => i.expiresAtMs === null || i.expiresAtMs > now);
      if (state.items.length !== before) state.revision++;
      const result = apply(state, now);
      if (state.revision !== (stored?.revision ?? 0)) {
        await this.#kv.set(PREFIX + nodeId, state as unknown as JsonObject);
      }
      return result;
    });
  }

  #serial<T>(nodeId: string, run: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(nodeId) ?? Promise.resolve();
    const next = previous.then(run, run);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(nodeId, settled);
    void settled.then(() => {
      if (this.#chains.get(nodeId) === settled) this.#chains.delete(nodeId);
    });
    return next;
  }
}

const queues = new WeakMap<KeyValueStore, NodePendingQueues>();

/** The queues kept in a store (one instance per store, so changes of a node stay in order). */
export function nodePendingQueues(kv: KeyValueStore, now: () => number): NodePendingQueues {
  let q = queues.get(kv);
  if (q === undefined) {
    q = new NodePendingQueues(kv, now);
    queues.set(kv, q);
  }
  return q;
}
