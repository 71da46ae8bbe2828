/**
 * One connection to the Discord gateway, on `@discordjs/ws`: its `WebSocketShard`s do the
 * protocol (HELLO, heartbeats and zombie detection, IDENTIFY or RESUME, READY, RESUMED,
 * RECONNECT, INVALID_SESSION, zlib), this class decides what a lost connection means.
 *
 * `@discordjs/ws` would reconnect a dropped shard by itself, half a second later and for
 * ever. Here a connection is one attempt instead: when its socket closes (or Discord asks
 * for a reconnect), the connection is over, the channel reports it (`ctx.disconnected`),
 * and the host reconnects with its backoff, jitter and status — resuming the session kept
 * in {@link GatewaySessions}. The shards are told so by turning their own recovery into a
 * plain close (the `destroy` they call on themselves keeps the close code but not the
 * `recover`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { AbortedError, type ChannelLogger } from "@beamclaw/core";
import type { REST } from "@discordjs/rest";
import type {
  IIdentifyThrottler,
  IShardingStrategy,
  OptionalWebSocketManagerOptions,
  SessionInfo,
  WebSocketManager,
  WebSocketShard,
} from "@discordjs/ws";
import { DiscordGatewayError, endsSession } from "./errors.js";
import type { DiscordLibraries } from "./libraries.js";
import type { GatewaySessions } from "./sessions.js";

/** A gateway dispatch (op 0) as the channel handles it. */
export interface GatewayDispatch {
  t: string;
  s: number | null;
  d: unknown;
}

/** Gateway settings passed to `@discordjs/ws`. */
export interface DiscordGatewaySettings {
  /** Total shards; default Discord's recommendation from `GET /gateway/bot`. */
  shardCount?: number | null;
  /** The shards this process runs (default all). */
  shardIds?: number[] | { start: number; end: number } | null;
  /** Transport compression (`@discordjs/ws` `CompressionMethod`); default none. */
  compression?: number | null;
  /** Presence sent with IDENTIFY. */
  initialPresence?: OptionalWebSocketManagerOptions["initialPresence"];
  /** Members above which offline members are not sent (50-250). */
  largeThreshold?: number | null;
  /** How long the WebSocket handshake may take, ms. Default 30 000. */
  handshakeTimeout?: number | null;
  /** Gateway version. Default `10`. */
  version?: string;
}

/**
 * Spaces IDENTIFYs as Discord requires (`max_concurrency` per interval, 5 s), across the
 * connections of one channel: a channel that reconnects and cannot resume must not
 * identify twice within the interval.
 */
export class IdentifyThrottle {
  readonly #intervalMs: number;
  readonly #last = new Map<number, number>();
  #queue: Promise<void> = Promise.resolve();

  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }

  /** A throttler for one manager, sharing this throttle's clock. */
  forConcurrency(maxConcurrency: number): IIdentifyThrottler {
    const concurrency = Math.max(1, maxConcurrency);
    return {
      waitForIdentify: (shardId, signal) => {
        const turn = this.#queue.then(async () => {
          const key = shardId % concurrency;
          const wait = (this.#last.get(key) ?? Number.NEGATIVE_INFINITY) + this.#intervalMs;
          const delay = wait - Date.now();
          if (delay > 0) await sleep(delay, undefined, { signal });
          this.#last.set(key, Date.now());
        });
        this.#queue = turn.catch(() => undefined);
        return turn;
      },
    };
  }
}

/** What a {@link GatewayConnection} needs. */
export interface GatewayConnectionOptions {
  libraries: DiscordLibraries;
  rest: REST;
  token: string;
  intents: number;
  sessions: GatewaySessions;
  identify: IdentifyThrottle;
  settings: DiscordGatewaySettings;
  logger: ChannelLogger;
  /** Every dispatch, in the order received. */
  onDispatch(payload: GatewayDispatch, shardId: number): void;
  /** The connection was lost after `connect` resolved (called once). */
  onLost(error: DiscordGatewayError): void;
}

type ConnectionState = "idle" | "connecting" | "open" | "lost" | "closing" | "closed";

/** How long a closing socket may take before it is cut. */
const CLOSE_TIMEOUT_MS = 3_000;

/** `WebSocketShardDestroyRecovery` of `@discordjs/ws`. */
const RECOVER_RECONNECT = 0;
const RECOVER_RESUME = 1;
/** The close code `@discordjs/ws` uses for a close it means to resume after. */
const RESUMABLE_CLOSE = 4200;
/** WebSocket readyState OPEN. */
const OPEN = 1;

/** A socket as `@discordjs/ws` holds it (the `ws` package's WebSocket). */
interface ShardSocket {
  readyState: number;
  terminate?(): void;
  on?(event: "error", listener: (error: unknown) => void): unknown;
}

/** What the shards of a connection tell it. */
interface ShardHooks {
  listen(shard: WebSocketShard, shardId: number): void;
  /**
   * A shard wants to recover by itself (`recover` set): RECONNECT, INVALID_SESSION, a
   * zombie connection, a closed socket. `sessionEnded` when it meant to identify afresh on
   * an open socket (INVALID_SESSION `false`): Discord ended the session.
   */
  recovering(shardId: number, sessionEnded: boolean): void;
  /** A frame the gateway sent that is not its protocol was dropped (or failed to be read). */
  malformed(shardId: number, problem: string): void;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * What is wrong with a text frame of the gateway, or `undefined` when the fields
 * `@discordjs/ws` reads have the types Discord documents: an object with an integer `op`;
 * dispatches (op 0) with a string `t` and an integer (or null) `s`, READY with `session_id`
 * and `resume_gateway_url`; HELLO (op 10) with a positive `heartbeat_interval`;
 * INVALID_SESSION (op 9) with a boolean `d`. `@discordjs/ws` reads them unchecked: a READY
 * without `d`, say, would be an unhandled rejection, a HELLO without an interval a heartbeat
 * loop without pause.
 */
export function gatewayFrameProblem(data: unknown): string | undefined {
  if (typeof data !== "string") return undefined; // binary: compressed, read by the library
  let frame: unknown;
  try {
    frame = JSON.parse(data);
  } catch {
    return "not JSON";
  }
  if (!isRecord(frame)) return "not a JSON object";
  const { op, d } = frame;
  if (!Number.isSafeInteger(op)) return "op is not an integer";
  switch (op) {
    case 0: {
      if (typeof frame.t !== "string") return "a dispatch without a string t";
      if (frame.s !== null && frame.s !== undefined && !Number.isSafeInteger(frame.s)) {
        return "a dispatch whose s is not an integer";
      }
      if (
        frame.t === "READY" &&
        !(
          isRecord(d) &&
          typeof d.session_id === "string" &&
          typeof d.resume_gateway_url === "string"
        )
      ) {
        return "a READY without session_id and resume_gateway_url";
      }
      return undefined;
    }
    case 9:
      return typeof d === "boolean" ? undefined : "an INVALID_SESSION whose d is not a boolean";
    case 10:
      return isRecord(d) &&
        typeof d.heartbeat_interval === "number" &&
        Number.isFinite(d.heartbeat_interval) &&
        d.heartbeat_interval > 0
        ? undefined
        : "a HELLO without a positive heartbeat_interval";
    default:
      return undefined;
  }
}

/**
 * The shards of one connection. Like `@discordjs/ws`'s SimpleShardingStrategy, plus: its
 * shards do not reconnect by themselves (see the module comment), events go straight to
 * the connection, and after `destroy` any socket the library left open is cut (one still
 * connecting is not closed by `WebSocketShard.destroy`).
 */
class ConnectionShards implements IShardingStrategy {
  readonly #shards = new Map<number, WebSocketShard>();
  readonly #manager: WebSocketManager;
  readonly #libraries: DiscordLibraries;
  readonly #hooks: ShardHooks;

  constructor(manager: WebSocketManager, libraries: DiscordLibraries, hooks: ShardHooks) {
    this.#manager = manager;
    this.#libraries = libraries;
    this.#hooks = hooks;
  }

  async spawn(shardIds: number[]): Promise<void> {
    const { SimpleContextFetchingStrategy, WebSocketShard, managerToFetchingStrategyOptions } =
      this.#libraries.ws;
    const hooks = this.#hooks;
    /**
     * A shard whose own recovery ends in a plain close (the host reconnects instead), and
     * which destroys itself once: `WebSocketShard.destroy` aborts the shard's own waits,
     * whose handlers call `destroy` again, and the nested call would drop the first one's
     * wait for the close.
     */
    class OneConnectionShard extends WebSocketShard {
      #destroying: Promise<void> | undefined;

      constructor(...args: ConstructorParameters<typeof WebSocketShard>) {
        super(...args);
        // `onMessage` is private to WebSocketShard and reads frames unchecked (see
        // `gatewayFrameProblem`); the socket's handler calls `this.onMessage`, so an own
        // property in front of it drops malformed frames and catches what still fails.
        const receive = Reflect.get(WebSocketShard.prototype, "onMessage") as unknown;
        // A release of @discordjs/ws without this method keeps its own frame handling.
        if (typeof receive !== "function") return;
        Reflect.set(this, "onMessage", async (data: unknown, isBinary: boolean) => {
          const problem = isBinary ? undefined : gatewayFrameProblem(data);
          if (problem !== undefined) {
            hooks.malformed(this.id, problem);
            return;
          }
          try {
            await receive.call(this, data, isBinary);
          } catch (error) {
            hooks.malformed(this.id, error instanceof Error ? error.message : String(error));
          }
        });
      }

      override destroy(options: Parameters<WebSocketShard["destroy"]>[0] = {}): Promise<void> {
        if (this.#destroying !== undefined) return this.#destroying;
        let plain = options;
        if (options.recover !== undefined) {
          const socket = Reflect.get(this, "connection") as ShardSocket | null;
          hooks.recovering(
            this.id,
            options.recover === RECOVER_RECONNECT && socket?.readyState === OPEN,
          );
          plain = {
            ...options,
            code: options.code ?? (options.recover === RECOVER_RESUME ? RESUMABLE_CLOSE : 1000),
            recover: undefined,
          };
        }
        this.#destroying = super.destroy(plain).finally(() => {
          this.#destroying = undefined;
        });
        return this.#destroying;
      }
    }
    const options = await managerToFetchingStrategyOptions(this.#manager);
    for (const shardId of shardIds) {
      const shard = new OneConnectionShard(
        new SimpleContextFetchingStrategy(this.#manager, options),
        shardId,
      );
      hooks.listen(shard, shardId);
      this.#shards.set(shardId, shard);
    }
  }

  async connect(): Promise<void> {
    await Promise.all([...this.#shards.values()].map((shard) => shard.connect()));
  }

  async destroy(options?: { code?: number; reason?: string }): Promise<void> {
    const shards = [...this.#shards.values()];
    this.#shards.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(shards.map((shard) => shard.destroy(options))),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    for (const shard of shards) {
      // `connection` is private to WebSocketShard; it is read only to cut what it left open.
      const socket = Reflect.get(shard, "connection") as ShardSocket | null | undefined;
      if (socket !== null && socket !== undefined && socket.readyState !== 3) {
        // `ws` reports a socket terminated while still connecting with an "error" event on
        // the next tick; the shard has let go of the socket, so nothing else would listen.
        socket.on?.("error", () => undefined);
        socket.terminate?.();
      }
    }
  }

  async send(shardId: number, payload: Parameters<IShardingStrategy["send"]>[1]): Promise<void> {
    const shard = this.#shards.get(shardId);
    if (shard === undefined) throw new RangeError(`shard ${shardId} is not running`);
    await shard.send(payload);
  }

  fetchStatus(): ReturnType<IShardingStrategy["fetchStatus"]> {
    const status = new Map<number, number>();
    for (const [id, shard] of this.#shards) status.set(id, shard.status);
    return status as unknown as ReturnType<IShardingStrategy["fetchStatus"]>;
  }
}

/** Turns what a failed connect threw into a channel error (`isRetryable` decides the host's retry). */
function connectError(error: unknown, libraries: DiscordLibraries): unknown {
  if (DiscordGatewayError.isInstance(error) || AbortedError.isInstance(error)) return error;
  const { DiscordAPIError, HTTPError, RateLimitError } = libraries.rest;
  if (error instanceof DiscordAPIError) {
    const refused = error.status === 401 || error.status === 403;
    return new DiscordGatewayError(
      error.status === 401
        ? "Discord rejected the bot token (HTTP 401 on GET /gateway/bot)"
        : `Discord refused GET /gateway/bot: ${error.message} (HTTP ${error.status})`,
      { isRetryable: !refused, statusCode: error.status, cause: error },
    );
  }
  if (error instanceof HTTPError) {
    return new DiscordGatewayError(`Discord answered HTTP ${error.status} to GET /gateway/bot`, {
      isRetryable: true,
      statusCode: error.status,
      cause: error,
    });
  }
  if (error instanceof RateLimitError) {
    return new DiscordGatewayError(
      `GET /gateway/bot is rate limited for ${Math.ceil(error.retryAfter)} ms`,
      { isRetryable: true, statusCode: 429, cause: error },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new DiscordGatewayError(`could not connect to the Discord gateway: ${message}`, {
    isRetryable: true,
    cause: error,
  });
}

/** One connection: connect once, report once when lost, close once. */
export class GatewayConnection {
  readonly #options: GatewayConnectionOptions;
  #state: ConnectionState = "idle";
  #manager: WebSocketManager | undefined;
  #failConnect: ((error: DiscordGatewayError) => void) | undefined;
  #latencyMs: number | undefined;
  #resumed = false;
  #closing: Promise<void> | undefined;

  constructor(options: GatewayConnectionOptions) {
    this.#options = options;
  }

  /** True once the socket closed (or the connect failed) without `close` being asked. */
  get lost(): boolean {
    return this.#state === "lost";
  }

  get open(): boolean {
    return this.#state === "open";
  }

  /** The last heartbeat round trip, ms. */
  get latencyMs(): number | undefined {
    return this.#latencyMs;
  }

  /** True when the connection resumed a session rather than identifying. */
  get resumed(): boolean {
    return this.#resumed;
  }

  /**
   * Connects every shard: RESUME where a session is kept, IDENTIFY otherwise. Resolves on
   * READY or RESUMED of all of them.
   *
   * @throws DiscordGatewayError (`isRetryable` false for a rejected token or intent),
   *   AbortedError when `signal` aborts.
   */
  async connect(signal: AbortSignal, timeoutMs: number): Promise<void> {
    if (this.#state !== "idle") throw new Error("a gateway connection connects once");
    this.#state = "connecting";
    const { libraries, rest, token, intents, identify, settings } = this.#options;
    const { WebSocketManager } = libraries.ws;
    const manager = new WebSocketManager({
      token,
      intents,
      rest,
      ...(settings.shardCount === undefined ? {} : { shardCount: settings.shardCount }),
      ...(settings.shardIds === undefined ? {} : { shardIds: settings.shardIds }),
      ...(settings.compression === undefined ? {} : { compression: settings.compression }),
      ...(settings.initialPresence === undefined
        ? {}
        : { initialPresence: settings.initialPresence }),
      ...(settings.largeThreshold === undefined ? {} : { largeThreshold: settings.largeThreshold }),
      ...(settings.version === undefined ? {} : { version: settings.version }),
      handshakeTimeout: settings.handshakeTimeout ?? 30_000,
      // The connect as a whole is timed below; a connection is not retried inside.
      helloTimeout: null,
      readyTimeout: null,
      retrieveSessionInfo: (shardId) => this.#retrieveSession(shardId),
      updateSessionInfo: (shardId, info) => this.#updateSession(shardId, info),
      buildIdentifyThrottler: async (m) =>
        identify.forConcurrency(
          (await m.fetchGatewayInformation()).session_start_limit.max_concurrency,
        ),
      buildStrategy: (m) =>
        new ConnectionShards(m, libraries, {
          listen: (shard, id) => this.#listen(shard, id),
          recovering: (id, sessionEnded) => {
            if (sessionEnded) this.#options.sessions.clear(id);
          },
          malformed: (id, problem) => {
            this.#options.logger.warn("discord gateway frame dropped", { shardId: id, problem });
          },
        }),
    });
    this.#manager = manager;

    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const failed = new Promise<never>((_, reject) => {
      this.#failConnect = reject;
      timer = setTimeout(
        () =>
          reject(
            new DiscordGatewayError(`no READY or RESUMED from the gateway within ${timeoutMs} ms`, {
              isRetryable: true,
            }),
          ),
        timeoutMs,
      );
      onAbort = () => reject(new AbortedError("the Discord connect was aborted"));
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
    const connecting = manager.connect();
    // Settled later (or never) when the race is lost; its outcome no longer matters then.
    connecting.catch(() => undefined);
    try {
      await Promise.race([connecting, failed]);
      this.#state = "open";
    } catch (error) {
      if (this.#state === "connecting") this.#state = "lost";
      throw connectError(error, libraries);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
      this.#failConnect = undefined;
      failed.catch(() => undefined);
    }
  }

  /**
   * Closes every shard. `keepSession` closes with a resumable code (4200) and keeps the
   * sessions, so that the next connection resumes and Discord replays what was missed;
   * otherwise the close is a normal one (1000: Discord ends the session, the bot goes
   * offline) and the sessions are forgotten. Resolves once nothing of the connection is
   * left: no socket, no timer.
   */
  close(keepSession: boolean): Promise<void> {
    this.#closing ??= this.#close(keepSession);
    return this.#closing;
  }

  async #close(keepSession: boolean): Promise<void> {
    this.#state = "closing";
    const manager = this.#manager;
    if (manager !== undefined) {
      await manager.destroy({
        code: keepSession ? 4200 : 1000,
        reason: keepSession ? "reconnecting" : "stopping",
      });
      manager.removeAllListeners();
    }
    if (!keepSession) this.#options.sessions.clear();
    this.#state = "closed";
  }

  #listen(shard: WebSocketShard, shardId: number): void {
    const { WebSocketShardEvents } = this.#options.libraries.ws;
    const { logger } = this.#options;
    shard.on(WebSocketShardEvents.Dispatch, (payload) => {
      if (this.#state !== "connecting" && this.#state !== "open") return;
      this.#options.onDispatch(payload as unknown as GatewayDispatch, shardId);
    });
    shard.on(WebSocketShardEvents.Closed, (code) => this.#closed(code, shardId));
    shard.on(WebSocketShardEvents.Error, (error) => {
      logger.error("discord gateway error", { shardId, error });
    });
    shard.on(WebSocketShardEvents.SocketError, (error) => {
      logger.warn("discord gateway socket error", { shardId, error });
    });
    shard.on(WebSocketShardEvents.Ready, () => {
      this.#resumed = false;
    });
    shard.on(WebSocketShardEvents.Resumed, () => {
      this.#resumed = true;
    });
    shard.on(WebSocketShardEvents.HeartbeatComplete, ({ latency }) => {
      this.#latencyMs = latency;
    });
    shard.on(WebSocketShardEvents.Debug, (message) => {
      logger.debug("discord gateway", { shardId, message });
    });
  }

  #closed(code: number, shardId: number): void {
    if (this.#state !== "connecting" && this.#state !== "open") return;
    const wasOpen = this.#state === "open";
    this.#state = "lost";
    if (endsSession(code)) this.#options.sessions.clear(shardId);
    const error = DiscordGatewayError.closed(code);
    if (wasOpen) this.#options.onLost(error);
    else this.#failConnect?.(error);
  }

  #retrieveSession(shardId: number): SessionInfo | null | Promise<never> {
    if (this.#state === "connecting" || this.#state === "open") {
      return this.#options.sessions.info(shardId);
    }
    // Only a live connection may open a socket. (The shards do not reconnect by themselves;
    // should one try anyway, it never gets an answer, and a pending promise holds no handle.)
    return new Promise<never>(() => undefined);
  }

  #updateSession(shardId: number, info: SessionInfo | null): void {
    // A session is forgotten by this class's own rules (close codes, INVALID_SESSION), not
    // by the shards' `null`, which they also send for closes that may well resume.
    if (info === null) return;
    if (this.#state !== "connecting" && this.#state !== "open") return;
    this.#options.sessions.update(shardId, info);
  }
}
