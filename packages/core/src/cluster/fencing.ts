/**
 * The store a cluster node's runtime writes through: the shared store, with the writes of a
 * session that runs here fenced by the fencing token of the lease it started under (the
 * store's optional `fenced` capability). A node paused past its lease (a long GC pause,
 * `SIGSTOP`) wakes up to writes the store refuses with `FencedError`, instead of
 * overwriting what the session's new owner wrote; its session actor then stops without
 * acknowledging anything, and the new owner replays the unfinished messages.
 * @internal
 */
import type { JsonObject } from "../providers/types.js";
import type {
  ApprovalStore,
  CronStore,
  DeviceStore,
  EnqueueResult,
  FencedWrites,
  InboundQueue,
  KeyValueStore,
  LockStore,
  QueuedMessage,
  SessionListOptions,
  SessionRecord,
  SessionStore,
  Store,
  StoreCapabilities,
  TranscriptReadOptions,
  TranscriptRecord,
  TranscriptStore,
  WriteFence,
} from "../store/types.js";

/** Message ids remembered per session, to fence acknowledgements (bounded). */
const MAX_TRACKED_MESSAGES = 100_000;

/**
 * Wraps `inner`: a write for session `key` goes through `inner.fenced(fenceOf(key))` when
 * `fenceOf` returns a fence, unfenced otherwise (sessions this node does not run: a new
 * sub-agent's record, a delete of an idle session). Reads and every other part of the store
 * are `inner`'s own.
 */
export class FencedSessionStore implements Store {
  readonly specificationVersion = "v1" as const;
  readonly sessions: SessionStore;
  readonly transcripts: TranscriptStore;
  readonly queue: InboundQueue;
  readonly #inner: Store;
  readonly #fenceOf: (sessionKey: string) => WriteFence | undefined;
  /** The session of each queued message seen through this store, for fenced `ack`s. */
  readonly #sessionOf = new Map<string, string>();
  readonly #idsOf = new Map<string, Set<string>>();

  constructor(inner: Store, fenceOf: (sessionKey: string) => WriteFence | undefined) {
    this.#inner = inner;
    this.#fenceOf = fenceOf;
    const writes = (key: string): FencedWrites | undefined => {
      const fence = this.#fenceOf(key);
      return fence === undefined ? undefined : inner.fenced?.(fence);
    };
    const sessions = inner.sessions;
    this.sessions = {
      get: (key: string) => sessions.get(key),
      put: (record: SessionRecord) => {
        const key = (record as { key?: unknown } | null)?.key;
        const fenced = typeof key === "string" ? writes(key) : undefined;
        return fenced === undefined ? sessions.put(record) : fenced.sessions.put(record);
      },
      delete: (key: string) => (writes(key)?.sessions ?? sessions).delete(key),
      list: (options?: SessionListOptions) => sessions.list(options),
      count: (agentId?: string) => sessions.count(agentId),
    };
    const transcripts = inner.transcripts;
    this.transcripts = {
      append: (sessionKey: string, entries: JsonObject[]) =>
        (writes(sessionKey)?.transcripts ?? transcripts).append(sessionKey, entries),
      read: (sessionKey: string, options?: TranscriptReadOptions): Promise<TranscriptRecord[]> =>
        transcripts.read(sessionKey, options),
      lastSeq: (sessionKey: string) => transcripts.lastSeq(sessionKey),
      delete: (sessionKey: string) =>
        (writes(sessionKey)?.transcripts ?? transcripts).delete(sessionKey),
    };
    const queue = inner.queue;
    // Messages of sessions that run here (have a fence) are remembered as they pass.
    const remember = (messages: QueuedMessage[]): QueuedMessage[] => {
      for (const message of messages) {
        if (this.#fenceOf(message.sessionKey) !== undefined) this.noteMessage(message);
      }
      return messages;
    };
    const settle = async (id: string, how: "ack" | "discard"): Promise<void> => {
      const key = this.#sessionOf.get(id);
      const fenced = key === undefined ? undefined : writes(key);
      await (fenced === undefined ? queue[how](id) : fenced.queue[how](id));
      this.#forget(id);
    };
    this.queue = {
      get dedupeWindowMs() {
        return queue.dedupeWindowMs;
      },
      enqueue: async (message): Promise<EnqueueResult> => {
        const result = await queue.enqueue(message);
        remember([result.message]);
        return result;
      },
      ack: (id: string) => settle(id, "ack"),
      discard: (id: string) => settle(id, "discard"),
      pending: async (options) => remember(await queue.pending(options)),
      replay: async (options) => remember(await queue.replay(options)),
    };
  }

  get kind(): string {
    return this.#inner.kind;
  }
  get capabilities(): StoreCapabilities {
    return this.#inner.capabilities;
  }
  get cron(): CronStore {
    return this.#inner.cron;
  }
  get devices(): DeviceStore {
    return this.#inner.devices;
  }
  get approvals(): ApprovalStore {
    return this.#inner.approvals;
  }
  get kv(): KeyValueStore {
    return this.#inner.kv;
  }
  get locks(): LockStore {
    return this.#inner.locks;
  }

  open(): Promise<void> {
    return this.#inner.open();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  /** Remembers which session a queued message belongs to (its `ack` is then fenced). */
  noteMessage(message: Pick<QueuedMessage, "id" | "sessionKey">): void {
    if (this.#sessionOf.has(message.id)) return;
    if (this.#sessionOf.size >= MAX_TRACKED_MESSAGES) {
      // Oldest first: a message long unacknowledged here was taken elsewhere.
      const oldest = this.#sessionOf.keys().next().value;
      if (oldest !== undefined) this.#forget(oldest);
    }
    this.#sessionOf.set(message.id, message.sessionKey);
    const ids = this.#idsOf.get(message.sessionKey);
    if (ids === undefined) this.#idsOf.set(message.sessionKey, new Set([message.id]));
    else ids.add(message.id);
  }

  /** Forgets the messages of a session that left this node. */
  forgetSession(sessionKey: string): void {
    for (const id of this.#idsOf.get(sessionKey) ?? []) this.#sessionOf.delete(id);
    this.#idsOf.delete(sessionKey);
  }

  #forget(id: string): void {
    const key = this.#sessionOf.get(id);
    if (key === undefined) return;
    this.#sessionOf.delete(id);
    const ids = this.#idsOf.get(key);
    ids?.delete(id);
    if (ids?.size === 0) this.#idsOf.delete(key);
  }
}
