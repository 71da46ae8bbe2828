import { randomUUID } from "node:crypto";
import diagnosticsChannel from "node:diagnostics_channel";
import { hostname } from "node:os";
import {
  type ClusterBackplane,
  ClusterError,
  type ClusterMember,
  InvalidArgumentError,
  isBeamClawError,
  type JoinOptions,
  type JsonObject,
  type MembershipEvent,
  type NodeMessage,
  type NodeMessageHandler,
  StoreError,
} from "@beamclaw/core";
import type { Redis, RedisOptions } from "ioredis";
import { RedisConnection } from "../connection.js";
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PREFIX,
} from "../redis-store.js";
import { requireId, show } from "../validate.js";
import { ClusterKeys } from "./keys.js";
import { RedisClusterPresence } from "./presence.js";
import { RedisClusterPubSub } from "./pubsub.js";
import { NAMED_MESSAGE, nodeMessageJson, RedisClusterRegistry } from "./registry.js";
import { CLUSTER_HEARTBEAT, CLUSTER_LEAVE, CLUSTER_PLACE } from "./scripts.js";
import { Subscriber } from "./subscriber.js";

/** Default heartbeat period: 1 s. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
/** Default time without a heartbeat after which a node is declared down: 3 s. */
export const DEFAULT_DOWN_AFTER_MS = 3_000;

/**
 * Options shared by both ways of reaching Redis. Every duration (`...Ms`) is at most
 * 2,147,483,647 ms, a timer's limit (`InvalidArgumentError` above it).
 */
export interface RedisBackplaneBaseOptions {
  /**
   * Every key and channel starts with this; use the prefix of the cluster's `RedisStore`.
   * Default `beamclaw:`.
   */
  prefix?: string;
  /** This node's id; unique per process. Default `<hostname>-<pid>-<random>`. */
  nodeId?: string;
  /** Heartbeat period. Default 1000 ms. */
  heartbeatIntervalMs?: number;
  /**
   * A node whose last heartbeat is older than this is declared `down` (at least twice the
   * heartbeat period). Default 3000 ms.
   */
  downAfterMs?: number;
  /** Bound on `join()`'s connection. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** How long a command waits for Redis' reply. Default 5000 ms. */
  commandTimeoutMs?: number;
}

/** Connect by URL: the backplane creates (and closes) its two connections. */
export interface RedisBackplaneUrlOptions extends RedisBackplaneBaseOptions {
  /** Default `redis://127.0.0.1:6379`. */
  url?: string;
  client?: undefined;
  /** Extra ioredis options for both connections (TLS, Sentinel, ...). */
  redisOptions?: RedisOptions;
}

/**
 * Use your own ioredis client for commands (never closed by the backplane); the subscriber
 * connection is `client.duplicate()`, owned and closed by the backplane.
 */
export interface RedisBackplaneClientOptions extends RedisBackplaneBaseOptions {
  client: Redis;
  url?: undefined;
  redisOptions?: undefined;
}

/** Options of {@link RedisBackplane}. */
export type RedisBackplaneOptions = RedisBackplaneUrlOptions | RedisBackplaneClientOptions;

/**
 * The `node:diagnostics_channel` channel on which a backplane reports each entry of the
 * cluster's Redis data it skipped because it could not read it (see
 * {@link RedisBackplaneSkippedEntry}). Subscribe to log them.
 *
 * @example
 * ```ts
 * import diagnosticsChannel from "node:diagnostics_channel";
 * diagnosticsChannel.subscribe(REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL, (entry) => console.warn(entry));
 * ```
 */
export const REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL = "beamclaw:store-redis:backplane:skipped-entry";

/** The message of {@link REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL}. */
export interface RedisBackplaneSkippedEntry {
  /** The backplane (node) that skipped it. */
  nodeId: string;
  /** The Redis key (a hash) holding the entry: the names hash, or a node's presence hash. */
  key: string;
  /** The entry's field in that hash: a registered name, or a presence key. */
  field: string;
  /**
   * The node whose data was being removed when the entry was met: one that went down, or,
   * for a presence entry, this node leaving the cluster or untracking the key.
   */
  deadNodeId: string;
  /** Why it was skipped. */
  reason: string;
}

const skippedEntryChannel = diagnosticsChannel.channel(REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL);

type State = "new" | "joining" | "joined" | "left";

interface Notice {
  type?: unknown;
  nodeId?: unknown;
}

/**
 * The cluster backplane on Redis: membership (a hash of members and a sorted set of
 * heartbeats; one Lua script per beat records this node, reaps the dead and reads the
 * rest), node-to-node messages (a channel per node, `PUBLISH` reporting whether the node
 * listens) and the cluster-wide {@link RedisClusterPubSub} (a channel per topic). One
 * command connection and one subscriber connection per node.
 *
 * Delivery is at most once: Redis pub/sub keeps nothing for a node that is not connected.
 * `ClusterNode` relies on that only for speed, never for safety: every message is in the
 * durable queue before it is routed.
 *
 * @example
 * ```ts
 * import { ClusterNode } from "@beamclaw/core";
 * import { createRedisBackplane, createRedisStore } from "@beamclaw/store-redis";
 *
 * const url = "redis://127.0.0.1:6379";
 * const store = createRedisStore({ url, prefix: "myapp:" });
 * await store.open();
 * const node = new ClusterNode({
 *   backplane: createRedisBackplane({ url, prefix: "myapp:" }),
 *   runtime: { store, models, agents },
 * });
 * await node.start();
 * ```
 */
export class RedisBackplane implements ClusterBackplane {
  readonly nodeId: string;
  readonly prefix: string;
  readonly heartbeatIntervalMs: number;
  readonly downAfterMs: number;
  readonly pubsub: RedisClusterPubSub;
  /** Unique names across the cluster; see {@link RedisClusterRegistry}. */
  readonly registry: RedisClusterRegistry;
  /** Cluster-wide presence; see {@link RedisClusterPresence}. */
  readonly presence: RedisClusterPresence;
  readonly #keys: ClusterKeys;
  readonly #conn: RedisConnection;
  readonly #url: string | undefined;
  readonly #client: Redis | undefined;
  readonly #redisOptions: RedisOptions | undefined;
  readonly #connectTimeoutMs: number;
  #subscriber: Subscriber | undefined;
  #state: State = "new";
  #status: JoinOptions["status"] = () => ({ sessions: 0, draining: false });
  #meta: JsonObject = {};
  readonly #members = new Map<string, ClusterMember>();
  readonly #left = new Map<string, number>();
  readonly #membershipHandlers = new Set<(event: MembershipEvent) => void>();
  readonly #messageHandlers = new Set<NodeMessageHandler>();
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #beatAgain = false;
  /** Declared down and back: its names and presence entries are to be restored. */
  #restoreDue = false;
  #restoring: Promise<void> | undefined;
  #skippedEntries = 0;

  /** Creates the backplane; nothing connects until {@link RedisBackplane.join}. */
  constructor(options: RedisBackplaneOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("RedisBackplane options must be an object");
    }
    const { url, client, redisOptions } = options;
    if (url !== undefined && client !== undefined) {
      throw new InvalidArgumentError("give RedisBackplane either `url` or `client`, not both");
    }
    if (url !== undefined && (typeof url !== "string" || url === "")) {
      throw new InvalidArgumentError(
        `RedisBackplane url must be a non-empty string, got ${show(url)}`,
      );
    }
    if (
      client !== undefined &&
      (typeof client !== "object" || client === null || typeof client.duplicate !== "function")
    ) {
      throw new InvalidArgumentError("RedisBackplane client must be an ioredis Redis instance");
    }
    if (
      client !== undefined &&
      typeof client.options?.keyPrefix === "string" &&
      client.options.keyPrefix !== ""
    ) {
      throw new InvalidArgumentError("the injected client has a keyPrefix; use `prefix` instead");
    }
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (typeof prefix !== "string" || prefix === "") {
      throw new InvalidArgumentError(
        `RedisBackplane prefix must be a non-empty string, got ${show(prefix)}`,
      );
    }
    const nodeId = options.nodeId ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    if (typeof nodeId !== "string" || nodeId === "" || /\s/.test(nodeId)) {
      throw new InvalidArgumentError(
        `nodeId must be a non-empty string without spaces, got ${show(nodeId)}`,
      );
    }
    // One with a lone surrogate would name its channel with U+FFFD: it would never hear a thing.
    requireId(nodeId, "nodeId");
    this.heartbeatIntervalMs = ms(
      options.heartbeatIntervalMs,
      DEFAULT_HEARTBEAT_INTERVAL_MS,
      "heartbeatIntervalMs",
    );
    this.downAfterMs = ms(options.downAfterMs, DEFAULT_DOWN_AFTER_MS, "downAfterMs");
    if (this.downAfterMs < 2 * this.heartbeatIntervalMs) {
      throw new InvalidArgumentError(
        `downAfterMs (${this.downAfterMs}) must be at least twice heartbeatIntervalMs (${this.heartbeatIntervalMs})`,
      );
    }
    this.#connectTimeoutMs = ms(
      options.connectTimeoutMs,
      DEFAULT_CONNECT_TIMEOUT_MS,
      "connectTimeoutMs",
    );
    this.nodeId = nodeId;
    this.prefix = prefix;
    this.#keys = new ClusterKeys(prefix);
    this.#url = url;
    this.#client = client;
    this.#redisOptions = redisOptions;
    this.#conn = new RedisConnection({
      url,
      client,
      redisOptions,
      connectTimeoutMs: this.#connectTimeoutMs,
      commandTimeoutMs: ms(
        options.commandTimeoutMs,
        DEFAULT_COMMAND_TIMEOUT_MS,
        "commandTimeoutMs",
      ),
    });
    const keys = this.#keys;
    const isJoined = () => this.#state === "joined";
    this.pubsub = new RedisClusterPubSub({
      nodeId,
      get joined() {
        return isJoined();
      },
      listen: (topic, deliver) => this.#subscriber?.add(keys.topicChannel(topic), deliver),
      unlisten: (topic) => this.#subscriber?.remove(keys.topicChannel(topic)),
      whenListening: (topic) =>
        this.#subscriber?.whenSubscribed(keys.topicChannel(topic)) ?? Promise.resolve(),
      publish: (topic, payload) => this.#conn.send("publish", [keys.topicChannel(topic), payload]),
    });
    const conn = this.#conn;
    const downAfterMs = this.downAfterMs;
    const link = {
      nodeId,
      keys,
      conn,
      downAfterMs,
      get joined() {
        return isJoined();
      },
      skipped: (key: string, field: string, ownerNodeId: string) =>
        this.#skipped(key, field, ownerNodeId),
    };
    this.registry = new RedisClusterRegistry(link);
    this.presence = new RedisClusterPresence(link);
  }

  get joined(): boolean {
    return this.#state === "joined";
  }

  /**
   * How many entries of the cluster's Redis data this backplane skipped because they were not
   * what the backplane writes there (written by something else, or damaged): a value in the
   * names hash, naming a name of a node that went down, that is not a registration (left as it
   * is), and a value in a node's presence hash that is not a presence entry (JSON with a
   * number `t` and an object `m`), met when that node went down, left, or untracked the key:
   * it is removed with the node's other entries but announces no `leave` (its value is not
   * pasted into the notice). The rest of the node's data is removed all the same. Each one is
   * also published on {@link REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL}.
   */
  get skippedEntries(): number {
    return this.#skippedEntries;
  }

  /**
   * Connects (two connections), subscribes to this node's channel and to membership
   * notices, records this node and starts heartbeating. Rejects with `STORE_UNAVAILABLE`
   * (leaving nothing open) when Redis cannot be reached within `connectTimeoutMs`.
   */
  async join(options: JoinOptions): Promise<void> {
    if (this.#state !== "new") {
      throw new InvalidArgumentError(`the backplane cannot join: it is ${this.#state}`);
    }
    if (typeof options !== "object" || options === null || typeof options.status !== "function") {
      throw new InvalidArgumentError("join needs { status: () => MemberStatus }");
    }
    this.#state = "joining";
    this.#status = options.status;
    this.#meta = options.meta ?? {};
    try {
      await this.#conn.open();
      this.#checkStillJoining();
      const client = await this.#subscriberClient();
      if (this.#hasLeft()) client.disconnect();
      this.#checkStillJoining();
      const subscriber = new Subscriber(client);
      this.#subscriber = subscriber;
      subscriber.add(this.#keys.nodeChannel(this.nodeId), (payload) =>
        this.#onNodeMessage(payload),
      );
      subscriber.add(this.#keys.membershipChannel, (payload) => this.#onNotice(payload));
      subscriber.add(this.#keys.presenceChannel, (payload) => this.presence.receive(payload));
      await withDeadline(subscriber.client.connect(), this.#connectTimeoutMs, "connecting");
      this.#checkStillJoining();
      await withDeadline(
        Promise.all([
          subscriber.whenSubscribed(this.#keys.nodeChannel(this.nodeId)),
          subscriber.whenSubscribed(this.#keys.membershipChannel),
          subscriber.whenSubscribed(this.#keys.presenceChannel),
        ]),
        this.#connectTimeoutMs,
        "subscribing",
      );
      this.#checkStillJoining();
      await this.#beat(true);
      this.#checkStillJoining();
    } catch (error) {
      if (this.#hasLeft()) {
        // leave() was called meanwhile: it closes what join opened and removes this node.
        throw new ClusterError(
          "CLUSTER_NOT_RUNNING",
          "the backplane left while joining",
          undefined,
          { cause: error },
        );
      }
      await this.#close();
      this.#state = "new";
      throw isBeamClawError(error)
        ? error
        : new StoreError(
            "STORE_UNAVAILABLE",
            `the backplane could not join: ${(error as Error).message}`,
            {
              cause: error,
            },
          );
    }
    this.#state = "joined";
    this.pubsub.relisten();
    this.#schedule();
  }

  /** True once `leave()` has been called (also while `join()` is still under way). */
  #hasLeft(): boolean {
    return this.#state === "left";
  }

  /** Throws when `leave()` was called since `join()` began (caught by `join`). */
  #checkStillJoining(): void {
    if (this.#hasLeft()) throw new Error("left while joining");
  }

  async heartbeat(): Promise<void> {
    if (this.#state !== "joined") return;
    await this.#beat(false);
  }

  async leave(): Promise<void> {
    if (this.#state === "left" || this.#state === "new") {
      this.#state = "left";
      return;
    }
    this.#state = "left";
    clearTimeout(this.#timer);
    this.pubsub.dropLingering();
    await this.#beating?.catch(() => undefined);
    await this.#restoring;
    try {
      const reply = await this.#conn.script<unknown[]>(
        CLUSTER_LEAVE,
        [this.#keys.members, this.#keys.heartbeats],
        [this.nodeId, this.#keys.membershipChannel, "", "", "", ...this.#forgetArgs()],
      );
      this.#skippedIn(reply, 1, (reply.length - 1) / 3);
    } catch {
      // Redis unreachable: the others declare this node down after downAfterMs instead.
    }
    await this.#close();
    this.#members.clear();
    this.registry.clear();
    this.presence.clear();
  }

  members(): ClusterMember[] {
    return [...this.#members.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1));
  }

  onMembership(handler: (event: MembershipEvent) => void): () => void {
    this.#membershipHandlers.add(handler);
    return () => this.#membershipHandlers.delete(handler);
  }

  async send(nodeId: string, message: NodeMessage): Promise<boolean> {
    if (typeof nodeId !== "string" || nodeId === "") {
      throw new InvalidArgumentError("send needs a node id");
    }
    const body = nodeMessageJson(message, "a node message");
    if (this.#state !== "joined") return false;
    const payload = `{"f":${JSON.stringify(this.nodeId)},"m":${body}}`;
    const receivers = await this.#conn.send<number>("publish", [
      this.#keys.nodeChannel(nodeId),
      payload,
    ]);
    return Number(receivers) > 0;
  }

  /**
   * Picks the least-loaded of `candidates` atomically (one Lua script): load is the
   * sessions a node reported at its last heartbeat plus the placements onto it that its
   * heartbeats have not reported started yet, so concurrent placements from every node
   * count at once, however late the heartbeats are. Ties go to the earliest candidate.
   */
  async place(key: string, candidates: readonly string[]): Promise<string | undefined> {
    if (typeof key !== "string" || key === "") {
      throw new InvalidArgumentError("place needs a session key");
    }
    if (!Array.isArray(candidates) || candidates.some((c) => typeof c !== "string" || c === "")) {
      throw new InvalidArgumentError("place needs an array of node ids");
    }
    if (this.#state !== "joined" || candidates.length === 0) return undefined;
    const keys = this.#keys;
    const chosen = await this.#conn.script<string | null>(
      CLUSTER_PLACE,
      [keys.members, keys.placements, keys.heartbeats],
      [String(this.downAfterMs), ...candidates],
    );
    return chosen === null || chosen === undefined ? undefined : String(chosen);
  }

  onMessage(handler: NodeMessageHandler): () => void {
    this.#messageHandlers.add(handler);
    return () => this.#messageHandlers.delete(handler);
  }

  // ------------------------------------------------------------------ internals

  async #subscriberClient(): Promise<Redis> {
    const shared = {
      lazyConnect: true,
      autoResubscribe: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: this.#connectTimeoutMs,
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** (attempt - 1), 1_000),
    } satisfies RedisOptions;
    if (this.#client !== undefined) return this.#client.duplicate(shared);
    const { Redis } = await import("ioredis");
    return new Redis(this.#url ?? "redis://127.0.0.1:6379", {
      ...shared,
      ...this.#redisOptions,
      lazyConnect: true,
      autoResubscribe: false,
    });
  }

  async #close(): Promise<void> {
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    if (subscriber !== undefined) {
      subscriber.close();
      await shutDown(subscriber.client);
      subscriber.detach();
    }
    await this.#conn.close();
  }

  #schedule(): void {
    if (this.#state !== "joined") return;
    this.#timer = setTimeout(() => {
      void this.#beat(false).finally(() => this.#schedule());
    }, this.heartbeatIntervalMs);
  }

  /** One heartbeat (shared by concurrent callers; a call during a beat runs another after it). */
  #beat(join: boolean): Promise<void> {
    if (this.#beating !== undefined) {
      this.#beatAgain = true;
      return this.#beating;
    }
    const beat = this.#beatOnce(join)
      .catch((error: unknown) => {
        if (join) throw error;
      })
      .finally(() => {
        this.#beating = undefined;
        if (this.#beatAgain && this.#state === "joined") {
          this.#beatAgain = false;
          void this.#beat(false);
        }
      });
    this.#beating = beat;
    return beat;
  }

  async #beatOnce(join: boolean): Promise<void> {
    const status = this.#status();
    const record = JSON.stringify({
      meta: this.#meta,
      sessions: status.sessions,
      draining: status.draining,
    });
    const reply = await this.#conn.script<unknown[]>(
      CLUSTER_HEARTBEAT,
      [this.#keys.members, this.#keys.heartbeats],
      [
        this.nodeId,
        record,
        String(this.downAfterMs),
        this.#keys.membershipChannel,
        join ? "1" : "",
        ...this.#forgetArgs(),
        typeof status.placedStarted === "number" && Number.isSafeInteger(status.placedStarted)
          ? String(status.placedStarted)
          : "",
      ],
    );
    const reapedCount = Number(reply[2]);
    const skippedCount = Number(reply[3]);
    // Reaped nodes (id, record): passed over here, the membership diff reports them.
    let i = this.#skippedIn(reply, 4 + 2 * reapedCount, skippedCount);
    const live = new Map<string, ClusterMember>();
    for (; i + 2 < reply.length; i += 3) {
      const member = parseMember(String(reply[i]), String(reply[i + 1]), Number(reply[i + 2]));
      if (member !== undefined) live.set(member.nodeId, member);
    }
    if (join && this.#state === "joining") this.#publishNotice("join");
    // Not a member any more although it never left: the others declared it down (its
    // heartbeats were late) and removed its names and presence entries with it.
    if (!join && Number(reply[1]) !== 1 && this.#state === "joined") {
      this.#restoreDue = true;
      this.#publishNotice("join");
    }
    this.#apply(live);
    if (this.#restoreDue) this.#restore();
    // Names and presence entries let go here while Redis was unreachable: removed now.
    await Promise.all([this.registry.retryUnregisters(), this.presence.retryUntracks()]).catch(
      () => undefined,
    );
  }

  /**
   * Reports the `count` skipped entries (hash key, node id, field) of a script's reply from
   * index `from`; returns the index after them.
   */
  #skippedIn(reply: unknown[], from: number, count: number): number {
    let i = from;
    for (let n = 0; n < count; n++, i += 3) {
      this.#skipped(String(reply[i]), String(reply[i + 2]), String(reply[i + 1]));
    }
    return i;
  }

  /**
   * Counts and reports an entry (`field` of hash `key`) of node `deadNodeId`'s data that was
   * skipped: a names-hash entry left as it was, or a presence entry removed without a `leave`.
   */
  #skipped(key: string, field: string, deadNodeId: string): void {
    this.#skippedEntries++;
    if (!skippedEntryChannel.hasSubscribers) return;
    const entry: RedisBackplaneSkippedEntry = {
      nodeId: this.nodeId,
      key,
      field,
      deadNodeId,
      reason:
        key === this.#keys.names
          ? "not a registration (not JSON, or not an object with a node id)"
          : "not a presence entry (not JSON, or not an object with a number t and an object m)",
    };
    try {
      skippedEntryChannel.publish(entry);
    } catch {
      // A throwing subscriber does not stop the heartbeat.
    }
  }

  /** Registers this node's names and tracks its presence entries again (retried per beat). */
  #restore(): void {
    if (this.#restoring !== undefined || this.#state !== "joined") return;
    this.#restoreDue = false;
    const restoring = Promise.all([this.registry.reclaim(), this.presence.retrack()])
      .then(() => undefined)
      .catch(() => {
        this.#restoreDue = true;
      })
      .finally(() => {
        if (this.#restoring === restoring) this.#restoring = undefined;
      });
    this.#restoring = restoring;
  }

  /** The arguments of the scripts' `forget` (the names and presence of a node that went). */
  #forgetArgs(): string[] {
    const keys = this.#keys;
    return [
      keys.names,
      keys.namesOf(""),
      keys.presence(""),
      keys.presenceChannel,
      keys.placements,
      keys.placementsReported,
    ];
  }

  /** Replaces the local view with `live` and tells the handlers what changed. */
  #apply(live: Map<string, ClusterMember>): void {
    if (this.#state === "left") return;
    const events: MembershipEvent[] = [];
    for (const [id, member] of live) {
      const before = this.#members.get(id);
      if (id === this.nodeId) continue;
      if (before === undefined) events.push({ type: "join", member });
      else if (
        before.draining !== member.draining ||
        JSON.stringify(before.meta) !== JSON.stringify(member.meta)
      ) {
        events.push({ type: "update", member });
      }
    }
    for (const [id, member] of this.#members) {
      if (live.has(id) || id === this.nodeId) continue;
      events.push({ type: this.#left.has(id) ? "leave" : "down", member });
    }
    this.#members.clear();
    for (const [id, member] of live) this.#members.set(id, member);
    const now = Date.now();
    for (const [id, at] of this.#left) if (now - at > 60_000) this.#left.delete(id);
    for (const event of events) {
      for (const handler of [...this.#membershipHandlers]) {
        try {
          handler(event);
        } catch {
          // A throwing handler does not stop the others.
        }
      }
    }
  }

  #publishNotice(type: "join" | "update"): void {
    const payload = JSON.stringify({ type, nodeId: this.nodeId });
    this.#conn.send("publish", [this.#keys.membershipChannel, payload]).catch(() => undefined);
  }

  #onNotice(payload: string): void {
    let notice: Notice;
    try {
      notice = JSON.parse(payload) as Notice;
    } catch {
      return;
    }
    // Valid JSON that is not an object (`null`, a number) is as malformed as invalid JSON.
    if (typeof notice !== "object" || notice === null) return;
    if (typeof notice.nodeId !== "string" || notice.nodeId === this.nodeId) return;
    if (notice.type === "leave") this.#left.set(notice.nodeId, Date.now());
    if (this.#state === "joined") void this.#beat(false);
  }

  #onNodeMessage(payload: string): void {
    let envelope: { f?: unknown; m?: unknown };
    try {
      envelope = JSON.parse(payload) as { f?: unknown; m?: unknown };
    } catch {
      return;
    }
    if (typeof envelope !== "object" || envelope === null) return;
    const from = envelope.f;
    const message = envelope.m;
    if (typeof from !== "string" || typeof message !== "object" || message === null) return;
    const named = message as { t?: unknown; name?: unknown; m?: unknown };
    if (named.t === NAMED_MESSAGE) {
      if (typeof named.name === "string" && typeof named.m === "object" && named.m !== null) {
        this.registry.deliver(named.name, named.m as NodeMessage, from);
      }
      return;
    }
    for (const handler of [...this.#messageHandlers]) {
      try {
        handler(message as NodeMessage, from);
      } catch {
        // A throwing handler does not stop the others.
      }
    }
  }
}

/**
 * Creates a {@link RedisBackplane} (not yet joined).
 *
 * @example
 * ```ts
 * const backplane = createRedisBackplane({ url: "redis://127.0.0.1:6379", prefix: "myapp:" });
 * await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
 * console.log(backplane.members().map((m) => m.nodeId));
 * await backplane.leave();
 * ```
 */
export function createRedisBackplane(options?: RedisBackplaneOptions): RedisBackplane {
  return new RedisBackplane(options);
}

function parseMember(
  nodeId: string,
  value: string,
  heartbeatAt: number,
): ClusterMember | undefined {
  const match = /^(\d+):([\s\S]*)$/.exec(value);
  if (match === null) return undefined;
  try {
    const record = JSON.parse(match[2] as string) as {
      meta?: JsonObject;
      sessions?: number;
      draining?: boolean;
    };
    return {
      nodeId,
      meta: record.meta ?? {},
      sessions: typeof record.sessions === "number" ? record.sessions : 0,
      draining: record.draining === true,
      joinedAt: Number(match[1]),
      heartbeatAt,
    };
  } catch {
    return undefined;
  }
}

/** The longest delay a timer holds (about 24.8 days); Node fires a longer one at once. */
const MAX_TIMER_MS = 2_147_483_647;

function ms(value: unknown, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" ||
    !Number.isSafeInteger(value) ||
    value < 1 ||
    value > MAX_TIMER_MS
  ) {
    throw new InvalidArgumentError(
      `${what} must be a whole number of ms from 1 to ${MAX_TIMER_MS}, got ${show(value)}`,
    );
  }
  return value;
}

function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms ${what}`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Closes an owned subscriber client: QUIT if connected, then disconnect, waiting for `end`. */
async function shutDown(client: Redis): Promise<void> {
  if (client.status === "ready") {
    await withDeadline(client.quit(), 1_000, "quitting").catch(() => undefined);
  }
  if (client.status === "end" || client.status === "wait") {
    if (client.status === "wait") client.disconnect();
    return;
  }
  if (client.status === "reconnecting" || client.status === "close") {
    // Between attempts the socket is gone; ioredis would wait 2 s for its "close" event.
    const connector = (client as unknown as { connector?: { stream?: { destroyed?: boolean } } })
      .connector;
    if (connector?.stream?.destroyed === true) connector.stream = undefined;
    client.disconnect();
    return;
  }
  const ended = new Promise<void>((resolve) => client.once("end", () => resolve()));
  client.disconnect();
  await withDeadline(ended, 1_000, "disconnecting").catch(() => undefined);
}
