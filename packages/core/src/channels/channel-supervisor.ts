/**
 * Channel processes: one actor per channel that owns the plugin's connection (connect,
 * reconnect with backoff, stop), under the `ChannelSupervisor`.
 */
import { InvalidArgumentError } from "../errors.js";
import { raceAbort } from "../providers/backoff.js";
import { Actor } from "../runtime/actor.js";
import { type ExitReason, isNormalExit } from "../runtime/exit.js";
import { DynamicSupervisor, type DynamicSupervisorOptions } from "../runtime/supervisor.js";
import { emitTelemetry } from "../telemetry.js";
import type { ChannelContext, ChannelLogger, ChannelPlugin } from "./types.js";

/** Where a channel is in its life. */
export type ChannelState =
  /** Not started, or stopped. */
  | "stopped"
  /** The first `start` is in progress. */
  | "connecting"
  /** Started: inbound flows, the outbox drains. */
  | "connected"
  /** Lost or failed to connect; `start` is tried again after a backoff. */
  | "reconnecting"
  /** `start` failed with an error that says `isRetryable: false` (bad credentials): no retry. */
  | "failed";

/** How a lost channel reconnects: exponential backoff with jitter. */
export interface ReconnectOptions {
  /** The first retry waits between half of this and all of it. Default 1000. */
  baseDelayMs?: number;
  /**
   * The ceiling of the backoff. Default 60 000. A refused start or a lost connection whose
   * error carries a longer `retryAfterMs` (the platform's own wait) waits that long instead.
   */
  maxDelayMs?: number;
  /** How long `plugin.stop()` may take before the host moves on. Default 10 000. */
  stopTimeoutMs?: number;
}

/**
 * The wait before reconnect attempt `attempt` (1 after the first failure): "equal jitter" —
 * between half and all of `min(maxDelayMs, baseDelayMs * 2^(attempt - 1))` — so that
 * channels that dropped together do not reconnect together, and the wait still grows.
 *
 * @example
 * ```ts
 * reconnectDelay(3, { baseDelayMs: 1000, maxDelayMs: 60_000 }, () => 0.5); // 3000
 * ```
 */
export function reconnectDelay(
  attempt: number,
  options: Pick<ReconnectOptions, "baseDelayMs" | "maxDelayMs"> = {},
  random: () => number = Math.random,
): number {
  const base = options.baseDelayMs ?? 1_000;
  const max = options.maxDelayMs ?? 60_000;
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.floor(ceiling / 2 + random() * (ceiling / 2));
}

/** The longest wait a platform's `retryAfterMs` may impose on a reconnect: an hour. */
const MAX_RETRY_AFTER_MS = 3_600_000;

/** A connection error's `retryAfterMs` (a finite, non-negative number), capped at an hour. */
function retryAfterOf(error: unknown): number | undefined {
  const value = (error as { retryAfterMs?: unknown } | null | undefined)?.retryAfterMs;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return undefined;
  return Math.min(value, MAX_RETRY_AFTER_MS);
}

/**
 * What the channel manager keeps for one channel across restarts of its actor.
 * @internal
 */
export interface ChannelLink {
  readonly plugin: ChannelPlugin;
  readonly config: unknown;
  state: ChannelState;
  /** Consecutive failures (failed starts, disconnects, crashes) since the last good start. */
  attempts: number;
  /** Incremented per connection; a context of an older one is stale. */
  generation: number;
  /** The plugin was started and not stopped since (so it must be stopped before a restart). */
  pluginStarted: boolean;
  lastError: unknown;
  connectedAt: number | undefined;
  /** The current connection's controller; aborting it ends the connection's context. */
  connection: AbortController | undefined;
  actor: ChannelActor | undefined;
}

/**
 * What a channel actor needs from its manager.
 * @internal
 */
export interface ChannelHooks {
  logger: ChannelLogger;
  reconnect: ReconnectOptions;
  random: () => number;
  now: () => number;
  /** Builds the context of one connection. */
  context(link: ChannelLink, generation: number, signal: AbortSignal): ChannelContext<unknown>;
  /** The channel connected, failed or lost its connection (after each attempt). */
  changed(link: ChannelLink): void;
}

type ChannelCast =
  | { type: "disconnected"; generation: number; error: unknown }
  | { type: "restart" };
type ChannelInfo = { type: "connect" };

/**
 * One channel's connection as a process. It starts the plugin, and when the plugin reports a
 * lost connection (or fails to start) stops it and starts it again after a growing, jittered
 * wait — without the supervisor: a flapping network is not a crash. A crash of the actor
 * itself (or a kill) is the supervisor's business: the channel is `transient`, so it is
 * restarted, and the new actor reconnects after the same backoff.
 * @internal
 */
export class ChannelActor extends Actor<never, never, ChannelCast, ChannelInfo> {
  readonly #link: ChannelLink;
  readonly #hooks: ChannelHooks;

  constructor(link: ChannelLink, hooks: ChannelHooks) {
    super({ name: `channel ${link.plugin.id}` });
    this.#link = link;
    this.#hooks = hooks;
  }

  protected override init(): void {
    this.#link.actor = this;
    if (this.#link.pluginStarted) {
      // The previous actor was killed without stopping the plugin: that was a crash too.
      this.#link.attempts++;
      this.#link.state = "reconnecting";
    }
    if (this.#link.attempts > 0) this.#scheduleConnect();
    else this.send({ type: "connect" });
  }

  protected override async handleInfo(message: ChannelInfo): Promise<void> {
    if (message.type === "connect") await this.#connect();
  }

  protected override async handleCast(message: ChannelCast): Promise<void> {
    const link = this.#link;
    if (message.type === "restart") {
      link.connection?.abort();
      await this.#stopPlugin();
      link.attempts = 0;
      await this.#connect();
      return;
    }
    if (message.generation !== link.generation || link.state !== "connected") return;
    link.connection?.abort();
    await this.#stopPlugin();
    this.#failed(message.error);
  }

  protected override async terminate(reason: ExitReason): Promise<void> {
    const link = this.#link;
    link.connection?.abort();
    await this.#stopPlugin();
    if (isNormalExit(reason)) {
      link.state = "stopped";
    } else {
      // A crash: the supervisor restarts the channel, which then waits like a reconnect.
      link.attempts++;
      link.lastError = reason;
      link.state = "reconnecting";
    }
    if (link.actor === this) link.actor = undefined;
    this.#hooks.changed(link);
  }

  async #connect(): Promise<void> {
    const link = this.#link;
    const { plugin } = link;
    // After a kill nothing stopped the plugin: do it before starting it again.
    if (link.pluginStarted) await this.#stopPlugin();
    const generation = ++link.generation;
    const connection = new AbortController();
    link.connection = connection;
    const signal = AbortSignal.any([connection.signal, this.signal]);
    if (link.state !== "reconnecting") link.state = "connecting";
    this.#hooks.changed(link);
    link.pluginStarted = true;
    try {
      await raceAbort(
        Promise.resolve().then(() => plugin.start(this.#hooks.context(link, generation, signal))),
        this.signal,
      );
    } catch (error) {
      if (!this.alive || this.signal.aborted) return; // stopping: terminate stops the plugin
      connection.abort();
      await this.#stopPlugin();
      this.#failed(error);
      return;
    }
    if (!this.alive) return;
    const attempt = link.attempts + 1;
    link.attempts = 0;
    link.lastError = undefined;
    link.state = "connected";
    link.connectedAt = this.#hooks.now();
    emitTelemetry("beamclaw:channel.connect", () => ({ channel: plugin.id, attempt }));
    this.#hooks.logger.info("channel connected", { channel: plugin.id, attempt });
    this.#hooks.changed(link);
  }

  /** After a failed start or a lost connection: retry after a backoff, or give up for good. */
  #failed(error: unknown): void {
    const link = this.#link;
    link.lastError = error;
    link.connectedAt = undefined;
    if ((error as { isRetryable?: unknown } | undefined)?.isRetryable === false) {
      link.state = "failed";
      emitTelemetry("beamclaw:channel.disconnect", () => ({
        channel: link.plugin.id,
        error,
        retryInMs: undefined,
      }));
      this.#hooks.logger.error("channel failed and will not retry", {
        channel: link.plugin.id,
        error,
      });
      this.#hooks.changed(link);
      return;
    }
    link.attempts++;
    link.state = "reconnecting";
    const delay = this.#scheduleConnect(retryAfterOf(error));
    emitTelemetry("beamclaw:channel.disconnect", () => ({
      channel: link.plugin.id,
      error,
      retryInMs: delay,
    }));
    this.#hooks.logger.warn("channel disconnected; reconnecting", {
      channel: link.plugin.id,
      error,
      retryInMs: delay,
      attempt: link.attempts,
    });
    this.#hooks.changed(link);
  }

  /**
   * Connects again after the backoff, or after `retryAfterMs` when the platform asked for a
   * longer wait (a rate limit on connecting: Telegram's `retry_after`, Discord's).
   */
  #scheduleConnect(retryAfterMs?: number): number {
    const backoff = reconnectDelay(this.#link.attempts, this.#hooks.reconnect, this.#hooks.random);
    const delay = retryAfterMs === undefined ? backoff : Math.max(backoff, retryAfterMs);
    this.sendAfter({ type: "connect" }, Math.max(1, delay));
    return delay;
  }

  async #stopPlugin(): Promise<void> {
    const link = this.#link;
    if (!link.pluginStarted) return;
    link.pluginStarted = false;
    const timeoutMs = this.#hooks.reconnect.stopTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(() => link.plugin.stop()),
        new Promise<void>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`stop() did not finish within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (error) {
      this.#hooks.logger.warn("channel plugin stop failed", { channel: link.plugin.id, error });
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Options of {@link ChannelSupervisor}. */
export type ChannelSupervisorOptions = DynamicSupervisorOptions;

/**
 * The dynamic supervisor of channel actors (one `transient` child per channel, its id the
 * channel id). Default intensity: 10 restarts in 60 s.
 *
 * @example
 * ```ts
 * const channels = manager.supervisor; // after manager.start()
 * console.log(await channels?.whichChildren());
 * ```
 */
export class ChannelSupervisor extends DynamicSupervisor {
  constructor(options: ChannelSupervisorOptions = {}) {
    super({ name: "channels", maxRestarts: 10, periodMs: 60_000, ...options });
    if (options.maxChildren !== undefined && options.maxChildren < 1) {
      throw new InvalidArgumentError("a channel supervisor needs room for at least one channel");
    }
  }
}
