/**
 * The store's link to Redis: who owns the client, opening and closing it, failing fast
 * while Redis is unreachable, running Lua scripts, and turning client errors into
 * `StoreError`s. Every sub-store goes through `send` / `script`.
 */
import { isBeamClawError, StoreError } from "@beamclaw/core";
import type { Redis, RedisOptions } from "ioredis";
import type { LuaScript } from "./scripts.js";

/** What the connection needs to know; resolved from `RedisStoreOptions`. */
export interface ConnectionSettings {
  url: string | undefined;
  client: Redis | undefined;
  redisOptions: RedisOptions | undefined;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}

type State = "new" | "opening" | "open" | "closed";

/** How long `close()` waits for a `QUIT` and then for the socket to end. */
const CLOSE_WAIT_MS = 1_000;

/** The longest pause between reconnection attempts of an owned client. */
const MAX_RECONNECT_DELAY_MS = 1_000;

export class RedisConnection {
  readonly #settings: ConnectionSettings;
  #state: State = "new";
  #opening: Promise<void> | undefined;
  #client: Redis | undefined;
  /** True when the store created the client (from `url`) and must close it. */
  #owned = false;
  #lastError: unknown;
  /** Commands sent in the current turn, and the client they go to. */
  #batch: QueuedCommand[] = [];
  #batchClient: Redis | undefined;
  /**
   * Operations sent and not yet settled, awaited by `close()` before the connection goes:
   * an operation may send a second command after its first reply (`EVAL` after `NOSCRIPT`).
   */
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #onError = (error: unknown) => {
    // Kept for the message of the next STORE_UNAVAILABLE; ioredis reconnects by itself.
    this.#lastError = error;
  };

  constructor(settings: ConnectionSettings) {
    this.#settings = settings;
  }

  get isOpen(): boolean {
    return this.#state === "open";
  }

  async open(): Promise<void> {
    if (this.#state === "open") return;
    if (this.#opening !== undefined) return this.#opening;
    this.#state = "opening";
    this.#opening = this.#connect().then(
      () => {
        this.#opening = undefined;
        // close() may have run while we were connecting; it then owns the cleanup.
        if (this.#state === "opening") this.#state = "open";
      },
      (error: unknown) => {
        this.#opening = undefined;
        if (this.#state === "opening") this.#state = "new";
        throw error;
      },
    );
    return this.#opening;
  }

  async #connect(): Promise<void> {
    const { client, connectTimeoutMs } = this.#settings;
    this.#lastError = undefined;
    if (client !== undefined) {
      this.#client = client;
      this.#owned = false;
      await this.#awaitInjectedReady(client, connectTimeoutMs);
      return;
    }
    const { Redis } = await import("ioredis");
    const owned = new Redis(this.#settings.url ?? "redis://127.0.0.1:6379", {
      // Fail fast: no queueing while disconnected, and in-flight commands rejected when the
      // connection drops (never silently resent later). The bound on each command's wait is
      // the store's own (one timer per pipeline, see #flush), not ioredis' timer per command.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: connectTimeoutMs,
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** (attempt - 1), MAX_RECONNECT_DELAY_MS),
      ...this.#settings.redisOptions,
      lazyConnect: true,
    });
    owned.on("error", this.#onError);
    this.#client = owned;
    this.#owned = true;
    try {
      await withDeadline(owned.connect(), connectTimeoutMs, "connecting");
    } catch (error) {
      await shutDown(owned);
      this.#client = undefined;
      throw unavailable(`cannot connect to Redis at ${describeTarget(owned)}`, error);
    }
  }

  async #awaitInjectedReady(client: Redis, timeoutMs: number): Promise<void> {
    if (client.status === "ready") return;
    if (client.status === "end") {
      throw new StoreError(
        "STORE_UNAVAILABLE",
        "the injected Redis client has been closed (status end)",
      );
    }
    let onReady: (() => void) | undefined;
    let onEnd: (() => void) | undefined;
    const connecting =
      client.status === "wait"
        ? client.connect()
        : new Promise<void>((resolve, reject) => {
            onReady = resolve;
            onEnd = () => reject(new Error("the client was closed"));
            client.once("ready", onReady);
            client.once("end", onEnd);
          });
    try {
      await withDeadline(connecting, timeoutMs, "waiting for the injected client to be ready");
    } catch (error) {
      throw unavailable(
        `the injected Redis client at ${describeTarget(client)} is not ready`,
        error,
      );
    } finally {
      if (onReady !== undefined) client.off("ready", onReady);
      if (onEnd !== undefined) client.off("end", onEnd);
    }
  }

  async close(): Promise<void> {
    if (this.#state === "closed") return;
    // Commands accepted before close() leave before the connection does, and operations
    // accepted before it finish on it (each is bounded by the command timeout).
    this.#flush();
    const opening = this.#opening;
    this.#state = "closed";
    if (opening !== undefined) await opening.catch(() => undefined);
    await Promise.allSettled([...this.#inflight]);
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined || !this.#owned) return;
    await shutDown(client);
    client.off("error", this.#onError);
  }

  /**
   * The client, if the store is open and connected; otherwise throws `STORE_CLOSED` or,
   * without waiting, `STORE_UNAVAILABLE`.
   */
  ready(): Redis {
    const client = this.#client;
    if (this.#state !== "open" || client === undefined) {
      throw new StoreError(
        "STORE_CLOSED",
        this.#state === "closed" ? "the Redis store is closed" : "the Redis store is not open",
      );
    }
    if (client.status !== "ready") {
      throw unavailable(
        `Redis at ${describeTarget(client)} is not connected (${client.status})`,
        this.#lastError,
      );
    }
    return client;
  }

  /**
   * Sends one command and resolves with its reply; rejects with a `StoreError` (or throws
   * one at once when the store is closed or Redis is not connected).
   *
   * Commands sent in the same turn of the event loop (concurrent operations) are queued and
   * leave together as one pipeline, in one socket write, on the next microtask. That keeps
   * the per-operation cost close to a hand-written pipeline without delaying a lone command
   * to a later event-loop phase.
   */
  send<T>(name: string, args: readonly RedisArg[]): Promise<T> {
    return this.#track(
      this.#queue<T>(this.ready(), name, args).then(undefined, rethrowAsStoreError),
    );
  }

  /** Runs a Lua script (`EVALSHA`, then `EVAL` if the server does not know it yet). */
  script<T>(script: LuaScript, keys: readonly string[], args: readonly RedisArg[]): Promise<T> {
    const client = this.ready();
    return this.#track(
      this.#queue<T>(client, "evalsha", [script.sha, keys.length, ...keys, ...args]).then(
        undefined,
        (error: unknown) => {
          if (!isNoScript(error)) rethrowAsStoreError(error);
          return this.#queue<T>(client, "eval", [
            script.source,
            keys.length,
            ...keys,
            ...args,
          ]).then(undefined, rethrowAsStoreError);
        },
      ),
    );
  }

  /** Keeps `operation` in `#inflight` until it settles; returns it. */
  #track<T>(operation: Promise<T>): Promise<T> {
    this.#inflight.add(operation);
    const done = () => this.#inflight.delete(operation);
    operation.then(done, done);
    return operation;
  }

  /** Queues a command for the next flush; rejects with the client's own error. */
  #queue<T>(client: Redis, name: string, args: readonly RedisArg[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#batch.push({ name, args, resolve: resolve as (value: unknown) => void, reject });
      if (this.#batch.length === 1) {
        this.#batchClient = client;
        queueMicrotask(this.#flush);
      }
    });
  }

  /**
   * Sends the queued commands (alone as a plain command, several as one pipeline) under one
   * timer: if no reply has come within `commandTimeoutMs`, every command of the batch
   * rejects. A settled promise ignores the later call, so the timer and the replies may race.
   */
  readonly #flush = (): void => {
    const batch = this.#batch;
    const client = this.#batchClient;
    if (batch.length === 0 || client === undefined) return;
    this.#batch = [];
    this.#batchClient = undefined;
    const timeoutMs = this.#settings.commandTimeoutMs;
    const timer = setTimeout(() => {
      const error = new Error(`Command timed out: no reply from Redis within ${timeoutMs} ms`);
      for (const command of batch) command.reject(error);
    }, timeoutMs);
    if (batch.length === 1) {
      const { name, args, resolve, reject } = batch[0] as QueuedCommand;
      // The arguments go as one array (ioredis flattens it), never spread into the call: a
      // command with more than about 120,000 of them (a long transcript appended at once)
      // would overflow the call stack, an uncaught RangeError out of this microtask.
      client.call(name, args as RedisArg[]).then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
      return;
    }
    const pipeline = client.pipeline();
    for (const { name, args } of batch) pipeline.call(name, args as RedisArg[]);
    pipeline.exec().then(
      (results) => {
        clearTimeout(timer);
        for (let i = 0; i < batch.length; i++) {
          const command = batch[i] as QueuedCommand;
          const [error, value] = results?.[i] ?? [new Error("no reply in the pipeline result")];
          if (error) command.reject(error);
          else command.resolve(value);
        }
      },
      (error: unknown) => {
        clearTimeout(timer);
        for (const command of batch) command.reject(error);
      },
    );
  };
}

/** An argument of a Redis command. */
export type RedisArg = string | number | Buffer;

interface QueuedCommand {
  name: string;
  args: readonly RedisArg[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

function rethrowAsStoreError(error: unknown): never {
  throw toStoreError(error);
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

/**
 * Replies that mean a stored value is not what the store wrote (something else wrote under
 * its prefix): a key of another type, or a counter that is not a number. Matched anywhere
 * in the message: Redis 6 reports an error of a command inside a script as
 * `ERR Error running script (...): @user_script:1: WRONGTYPE ...`, Redis 7 as `WRONGTYPE ...`.
 */
const CORRUPT_REPLY = /(?:^|: )(?:WRONGTYPE |ERR (?:hash )?value is not an integer)/;

/**
 * A client error as a `StoreError`. A reply saying a key holds the wrong type or a counter
 * holds no number means something else wrote under the store's prefix: `STORE_CORRUPT`
 * (retrying cannot help). Everything else (refused or dropped connections, timeouts, a
 * server that is loading, read-only or out of memory) is `STORE_UNAVAILABLE`, which is
 * retryable.
 *
 * @internal exported for its tests
 */
export function toStoreError(error: unknown): unknown {
  if (isBeamClawError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (CORRUPT_REPLY.test(message)) {
    return new StoreError(
      "STORE_CORRUPT",
      `a key under the store's prefix holds an unexpected value: ${message}`,
      { cause: error },
    );
  }
  return unavailable("Redis command failed", error);
}

function unavailable(message: string, cause: unknown): StoreError {
  const detail = cause instanceof Error ? `: ${cause.message}` : "";
  return new StoreError(
    "STORE_UNAVAILABLE",
    `${message}${detail}`,
    cause === undefined ? undefined : { cause },
  );
}

function describeTarget(client: Redis): string {
  const { host, port, path } = client.options ?? {};
  if (typeof path === "string" && path !== "") return path;
  return `${host ?? "?"}:${port ?? "?"}`;
}

/** Settles like `promise`, or rejects once `ms` have passed; leaves no timer behind. */
function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Closes an owned client: `QUIT` if connected, then a hard disconnect; waits for `end` when
 * there was a socket to close.
 */
async function shutDown(client: Redis): Promise<void> {
  if (client.status === "ready") {
    await withDeadline(client.quit(), CLOSE_WAIT_MS, "quitting").catch(() => undefined);
  }
  if (client.status === "end") return;
  if (client.status === "reconnecting" || client.status === "close") {
    // Between attempts the socket is already gone. `disconnect()` cancels the next attempt,
    // but ioredis would also arm a `disconnectTimeout` timer (2 s) waiting for that dead
    // socket's "close" event, which never comes; forgetting the dead socket first avoids it.
    forgetDeadSocket(client);
    client.disconnect();
    return;
  }
  const ended = new Promise<void>((resolve) => client.once("end", () => resolve()));
  client.disconnect();
  await withDeadline(ended, CLOSE_WAIT_MS, "disconnecting").catch(() => undefined);
}

function forgetDeadSocket(client: Redis): void {
  const connector = (client as unknown as { connector?: { stream?: { destroyed?: boolean } } })
    .connector;
  if (connector?.stream?.destroyed === true) connector.stream = undefined;
}
