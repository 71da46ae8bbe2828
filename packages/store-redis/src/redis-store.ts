import type {
  ApprovalStore,
  CronStore,
  DeviceStore,
  FencedWrites,
  InboundQueue,
  KeyValueStore,
  LockStore,
  SessionStore,
  Store,
  StoreCapabilities,
  TranscriptStore,
  WriteFence,
} from "@beamclaw/core";
import { InvalidArgumentError } from "@beamclaw/core";
import type { Redis, RedisOptions } from "ioredis";
import { RedisApprovalStore } from "./approvals.js";
import { RedisConnection } from "./connection.js";
import { RedisCronStore } from "./cron.js";
import { RedisDeviceStore } from "./devices.js";
import { fencedWrites } from "./fenced.js";
import { KeySpace } from "./keys.js";
import { RedisKeyValueStore } from "./kv.js";
import { RedisLockStore } from "./locks.js";
import { DEFAULT_DEDUPE_WINDOW_MS, RedisInboundQueue } from "./queue.js";
import { RedisSessionStore } from "./sessions.js";
import { RedisTranscriptStore } from "./transcripts.js";
import { show } from "./validate.js";

/** The key prefix when none is given. */
export const DEFAULT_PREFIX = "beamclaw:";
/** How long `open()` waits for a connection (and an owned client for each TCP connect). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;
/** How long any command may wait for its reply before it fails with `STORE_UNAVAILABLE`. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 5_000;

/** Options shared by both ways of reaching Redis. */
export interface RedisStoreBaseOptions {
  /**
   * Every key the store writes starts with this. Default `beamclaw:`. Give each store its
   * own prefix (a tenant, a test); two stores with one prefix share one data set.
   */
  prefix?: string;
  /**
   * Bound on `open()` and on each (re)connection attempt. Default 2000 ms; at most
   * 2 147 483 647 (a timer's limit).
   */
  connectTimeoutMs?: number;
  /**
   * How long an operation waits for Redis to reply before it rejects with
   * `STORE_UNAVAILABLE`. Default 5000 ms; at most 2 147 483 647 (a timer's limit). The store
   * applies it itself (one timer per batch of commands), to an owned and an injected client
   * alike.
   */
  commandTimeoutMs?: number;
  /** How long acknowledged idempotency keys of the inbound queue are remembered. Default 24 h. */
  dedupeWindowMs?: number;
}

/** Connect by URL: the store loads ioredis, creates the client, and closes it on `close()`. */
export interface RedisStoreUrlOptions extends RedisStoreBaseOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://...`. Default `redis://127.0.0.1:6379`. */
  url?: string;
  client?: undefined;
  /**
   * Extra ioredis options (TLS, sentinels, ...). They are applied over the store's fail-fast
   * defaults, so overriding `enableOfflineQueue`, `maxRetriesPerRequest` or `retryStrategy`
   * changes how the store behaves while Redis is down.
   */
  redisOptions?: RedisOptions;
}

/** Use your own ioredis client: the store never quits it. */
export interface RedisStoreClientOptions extends RedisStoreBaseOptions {
  /**
   * An ioredis `Redis` instance (not a `Cluster`) without `keyPrefix` (use `prefix`). For
   * fail-fast behaviour while Redis is down, create it with `enableOfflineQueue: false` and
   * `maxRetriesPerRequest: 0`; the store also refuses operations at once while the client is
   * not `ready`.
   */
  client: Redis;
  url?: undefined;
  redisOptions?: undefined;
}

/** Options of {@link RedisStore}: `{ url }` (or nothing, for a local Redis) or `{ client }`. */
export type RedisStoreOptions = RedisStoreUrlOptions | RedisStoreClientOptions;

/**
 * BeamClaw's Redis store: the `Store` contract (v1) on a standalone Redis (or a
 * Sentinel-managed primary), shared safely by any number of processes. Multi-key changes are
 * Lua scripts, so they are atomic; while Redis is unreachable every operation rejects at
 * once with a retryable `StoreError` (`STORE_UNAVAILABLE`), and the client reconnects by
 * itself when Redis is back.
 *
 * Durability is the Redis server's: with `appendonly yes` an acknowledged write survives a
 * Redis crash or restart; with persistence off (`save ""`, `appendonly no`) a restart empties
 * the store.
 *
 * @example
 * ```ts
 * import { createRedisStore } from "@beamclaw/store-redis";
 *
 * const store = createRedisStore({ url: "redis://127.0.0.1:6379", prefix: "myapp:" });
 * await store.open();
 * await store.sessions.put({ key: "agent:main:main", agentId: "main", createdAt: 1, updatedAt: 1 });
 * const seq = await store.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
 * await store.close();
 * ```
 */
export class RedisStore implements Store {
  readonly specificationVersion = "v1" as const;
  readonly kind = "redis";
  readonly capabilities: StoreCapabilities = Object.freeze({
    durable: "process",
    multiProcess: true,
    ttl: true,
    distributedLocks: true,
  } as const);
  /** The prefix of every key this store uses. */
  readonly prefix: string;
  readonly sessions: SessionStore;
  readonly transcripts: TranscriptStore;
  readonly cron: CronStore;
  readonly devices: DeviceStore;
  readonly approvals: ApprovalStore;
  readonly queue: InboundQueue;
  readonly kv: KeyValueStore;
  readonly locks: LockStore;
  readonly #conn: RedisConnection;
  readonly #keys: KeySpace;
  readonly #dedupeWindowMs: number;

  /** Creates the store; nothing connects until {@link RedisStore.open}. */
  constructor(options: RedisStoreOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("RedisStore options must be an object");
    }
    const { url, client, redisOptions } = options;
    if (url !== undefined && client !== undefined) {
      throw new InvalidArgumentError("give RedisStore either `url` or `client`, not both");
    }
    if (url !== undefined && (typeof url !== "string" || url === "")) {
      throw new InvalidArgumentError(`RedisStore url must be a non-empty string, got ${show(url)}`);
    }
    if (client !== undefined) checkClient(client);
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (typeof prefix !== "string" || prefix === "") {
      throw new InvalidArgumentError(
        `RedisStore prefix must be a non-empty string, got ${show(prefix)}`,
      );
    }
    this.prefix = prefix;
    this.#conn = new RedisConnection({
      url,
      client,
      redisOptions,
      connectTimeoutMs: positive(
        options.connectTimeoutMs,
        "connectTimeoutMs",
        DEFAULT_CONNECT_TIMEOUT_MS,
      ),
      commandTimeoutMs: positive(
        options.commandTimeoutMs,
        "commandTimeoutMs",
        DEFAULT_COMMAND_TIMEOUT_MS,
      ),
    });
    const dedupeWindowMs = options.dedupeWindowMs ?? DEFAULT_DEDUPE_WINDOW_MS;
    if (!Number.isSafeInteger(dedupeWindowMs) || dedupeWindowMs < 0) {
      throw new InvalidArgumentError(
        `dedupeWindowMs must be a whole number of ms >= 0, got ${show(dedupeWindowMs)}`,
      );
    }
    const keys = new KeySpace(prefix);
    this.#keys = keys;
    this.#dedupeWindowMs = dedupeWindowMs;
    this.sessions = new RedisSessionStore(this.#conn, keys);
    this.transcripts = new RedisTranscriptStore(this.#conn, keys);
    this.cron = new RedisCronStore(this.#conn, keys);
    this.devices = new RedisDeviceStore(this.#conn, keys);
    this.approvals = new RedisApprovalStore(this.#conn, keys);
    this.queue = new RedisInboundQueue(this.#conn, keys, dedupeWindowMs);
    this.kv = new RedisKeyValueStore(this.#conn, keys);
    this.locks = new RedisLockStore(this.#conn, keys);
  }

  /**
   * Connects (loading ioredis on first use when given a `url`) and waits until Redis is
   * ready, at most `connectTimeoutMs`; rejects with `STORE_UNAVAILABLE` if it is not, leaving
   * nothing open. Idempotent; a closed store may be opened again.
   */
  open(): Promise<void> {
    return this.#conn.open();
  }

  /**
   * Waits for the operations in flight (each made before `close()` is applied and settles as
   * it would have, within `commandTimeoutMs`), then closes an owned client (`QUIT`, then
   * disconnect) and waits until its socket is gone; an injected client is left as it is.
   * Afterwards operations reject with `STORE_CLOSED`. Idempotent.
   */
  close(): Promise<void> {
    return this.#conn.close();
  }

  /**
   * The session writes fenced by `fence` (a lock's name and the fencing token its holder
   * got from `locks.acquire`): each checks in the same Lua script that no later `acquire`
   * has taken the lock, and otherwise rejects with `FencedError`, writing nothing.
   *
   * @example
   * ```ts
   * const lease = await store.locks.acquire("session:agent:main:main", { owner: "me", ttlMs: 3_000 });
   * const writes = store.fenced({ lock: lease!.name, token: lease!.token });
   * await writes.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
   * // ... after another holder acquired the lock: rejects with FencedError (code "FENCED")
   * ```
   */
  fenced(fence: WriteFence): FencedWrites {
    return fencedWrites(this.#conn, this.#keys, this.#dedupeWindowMs, fence);
  }

  /** True between a successful `open()` and `close()`. */
  get isOpen(): boolean {
    return this.#conn.isOpen;
  }
}

/**
 * Creates a {@link RedisStore} (not yet open).
 *
 * @example
 * ```ts
 * const store = createRedisStore({ client: new Redis({ enableOfflineQueue: false }) });
 * await store.open();
 * ```
 */
export function createRedisStore(options?: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}

function checkClient(client: unknown): void {
  const candidate = client as Partial<Redis> | null;
  if (
    typeof candidate !== "object" ||
    candidate === null ||
    typeof candidate.evalsha !== "function" ||
    typeof candidate.once !== "function" ||
    typeof candidate.status !== "string"
  ) {
    throw new InvalidArgumentError("RedisStore client must be an ioredis Redis instance");
  }
  if ((candidate as { isCluster?: boolean }).isCluster === true) {
    throw new InvalidArgumentError("RedisStore does not support Redis Cluster clients");
  }
  const keyPrefix = candidate.options?.keyPrefix;
  if (typeof keyPrefix === "string" && keyPrefix !== "") {
    throw new InvalidArgumentError(
      "the injected client has a keyPrefix; use the store's `prefix` option instead",
    );
  }
}

/** The longest delay a timer holds (about 24.8 days); Node fires a longer one at once. */
const MAX_TIMER_MS = 2_147_483_647;

function positive(value: unknown, what: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new InvalidArgumentError(
      `${what} must be a positive number of ms up to ${MAX_TIMER_MS}, got ${show(value)}`,
    );
  }
  return value;
}
