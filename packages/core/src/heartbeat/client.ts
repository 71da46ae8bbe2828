import { EventEmitter } from "eventemitter3";
import { type Clock, elapsedTime, systemClock, type TimerHandle } from "../cron/clock.js";
import { AlreadyStartedError, describe, InvalidArgumentError } from "../errors.js";
import { DEFAULT_PRESENCE_INTERVAL_MS } from "./presence.js";

/** Retry policy of a heartbeat client: exponential backoff with full jitter. */
export interface HeartbeatBackoff {
  /** The cap of the first retry's delay. Default 1000 ms. */
  initialMs?: number;
  /** The largest delay cap. Default 30 000 ms. */
  maxMs?: number;
  /** Growth of the cap per retry. Default 2. */
  factor?: number;
  /** Retries of one beat before giving it up until the next interval. Default 5. */
  maxRetries?: number;
}

/** What `send` is given for each attempt. */
export interface HeartbeatSendContext {
  /** Epoch ms when this attempt was made (for the receiver's latency). */
  sentAt: number;
  /** 0 for the first attempt of a beat, then 1, 2, ... */
  attempt: number;
  /** Aborts when the client stops. */
  signal: AbortSignal;
}

/** Events of a {@link HeartbeatClient}. */
export interface HeartbeatClientEvents {
  /** A beat was sent successfully. */
  beat: (info: { sentAt: number; attempt: number }) => void;
  /** An attempt failed and another comes after `delayMs`. */
  retry: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  /** Every attempt of a beat failed; the next comes at the next interval. */
  "give-up": (info: { attempts: number; error: unknown }) => void;
}

/** Options of {@link createHeartbeatClient}. */
export interface HeartbeatClientOptions {
  /** Sends one beat (a WebSocket frame, an HTTP request...); a rejection is a failed attempt. */
  send: (context: HeartbeatSendContext) => unknown | Promise<unknown>;
  /** Default 30 s. */
  intervalMs?: number;
  backoff?: HeartbeatBackoff;
  /**
   * Default the system clock. The interval and retry delays are counted in elapsed time (the
   * clock's monotonic timers, {@link Clock.setMonotonicTimer}, when it has them): setting the
   * wall clock back or forward neither delays nor hastens a beat. `sentAt` is wall time.
   */
  clock?: Clock;
  /** Uniform in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** Counters of a {@link HeartbeatClient}. */
export interface HeartbeatClientStats {
  sent: number;
  failedAttempts: number;
  retries: number;
  givenUp: number;
  /** Failed attempts since the last success. */
  consecutiveFailures: number;
}

/** A running heartbeat sender; see {@link createHeartbeatClient}. */
export interface HeartbeatClient {
  readonly events: EventEmitter<HeartbeatClientEvents>;
  /** Sends the first beat at once, then one every `intervalMs`. */
  start(): void;
  /** Stops: clears the timer and aborts an attempt in flight. */
  stop(): void;
  stats(): HeartbeatClientStats;
  /** The upper bound (exclusive) of the delay before retry `attempt` (1-based). */
  readonly retryDelayCap: (attempt: number) => number;
}

/**
 * The client side of heartbeats: sends a beat every `intervalMs` (30 s). A failed beat is
 * retried with exponential backoff and full jitter: retry n waits a random time in
 * `[0, min(maxMs, initialMs * factor^(n-1)))`, so that clients cut off together do not
 * come back together. After `maxRetries` the beat is given up and the next one is sent at
 * the next interval.
 *
 * @example
 * ```ts
 * const client = createHeartbeatClient({
 *   send: ({ sentAt }) => ws.send(JSON.stringify({ type: "heartbeat", sentAt })),
 *   intervalMs: 30_000,
 *   backoff: { initialMs: 1_000, maxMs: 30_000, maxRetries: 5 },
 * });
 * client.start();
 * // ...
 * client.stop();
 * ```
 */
export function createHeartbeatClient(options: HeartbeatClientOptions): HeartbeatClient {
  if (typeof options?.send !== "function") {
    throw new InvalidArgumentError("createHeartbeatClient needs a send function");
  }
  const intervalMs = options.intervalMs ?? DEFAULT_PRESENCE_INTERVAL_MS;
  const initialMs = options.backoff?.initialMs ?? 1_000;
  const maxMs = options.backoff?.maxMs ?? 30_000;
  const factor = options.backoff?.factor ?? 2;
  const maxRetries = options.backoff?.maxRetries ?? 5;
  for (const [name, value, min] of [
    ["intervalMs", intervalMs, 1],
    ["backoff.initialMs", initialMs, 0],
    ["backoff.maxMs", maxMs, 0],
    ["backoff.factor", factor, 1],
    ["backoff.maxRetries", maxRetries, 0],
  ] as const) {
    if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
      throw new InvalidArgumentError(`${name} must be a finite number >= ${min}, got ${value}`);
    }
  }
  const clock = options.clock ?? systemClock;
  const elapsed = elapsedTime(clock);
  const random = options.random ?? Math.random;
  const events = new EventEmitter<HeartbeatClientEvents>();
  const stats: HeartbeatClientStats = {
    sent: 0,
    failedAttempts: 0,
    retries: 0,
    givenUp: 0,
    consecutiveFailures: 0,
  };
  let timer: TimerHandle | undefined;
  let controller: AbortController | null = null;
  let state: "new" | "running" | "stopped" = "new";

  const retryDelayCap = (attempt: number) =>
    Math.min(maxMs, initialMs * factor ** Math.max(0, attempt - 1));

  const emit = <E extends keyof HeartbeatClientEvents>(
    event: E,
    payload: Parameters<HeartbeatClientEvents[E]>[0],
  ) => {
    try {
      (events.emit as (event: E, payload: unknown) => boolean)(event, payload);
    } catch (error) {
      process.emitWarning(
        `a heartbeat client listener threw: ${describe(error)}`,
        "BeamClawWarning",
      );
    }
  };

  const arm = (fn: () => void, ms: number) => {
    if (state !== "running") return;
    if (timer !== undefined) clock.clearTimer(timer);
    timer = elapsed.setTimer(() => {
      timer = undefined;
      fn();
    }, ms);
  };

  const attempt = async (n: number, beatStartedAt: number): Promise<void> => {
    if (state !== "running") return;
    const current = new AbortController();
    controller = current;
    const sentAt = clock.now();
    try {
      await options.send({ sentAt, attempt: n, signal: current.signal });
    } catch (error) {
      if (state !== "running" || controller !== current) return;
      controller = null;
      stats.failedAttempts++;
      stats.consecutiveFailures++;
      if (n < maxRetries) {
        const delayMs = Math.floor(random() * retryDelayCap(n + 1));
        stats.retries++;
        emit("retry", { attempt: n + 1, delayMs, error });
        arm(() => void attempt(n + 1, beatStartedAt), delayMs);
      } else {
        stats.givenUp++;
        emit("give-up", { attempts: n + 1, error });
        arm(() => void attempt(0, elapsed.now()), nextBeatDelay(beatStartedAt));
      }
      return;
    }
    if (state !== "running" || controller !== current) return;
    controller = null;
    stats.sent++;
    stats.consecutiveFailures = 0;
    emit("beat", { sentAt, attempt: n });
    arm(() => void attempt(0, elapsed.now()), nextBeatDelay(beatStartedAt));
  };

  /**
   * Beats keep their rhythm: the next is one interval after this one began (`beatStartedAt`,
   * in elapsed time), at the earliest now.
   */
  const nextBeatDelay = (beatStartedAt: number) =>
    Math.max(0, beatStartedAt + intervalMs - elapsed.now());

  return {
    events,
    retryDelayCap,
    start() {
      if (state !== "new")
        throw new AlreadyStartedError("the heartbeat client was already started");
      state = "running";
      void attempt(0, elapsed.now());
    },
    stop() {
      if (state === "stopped") return;
      state = "stopped";
      if (timer !== undefined) clock.clearTimer(timer);
      timer = undefined;
      controller?.abort();
      controller = null;
    },
    stats: () => ({ ...stats }),
  };
}
