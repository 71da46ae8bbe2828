/**
 * Liveness of connected clients and nodes, on core's `PresenceTracker`: every open connection
 * is pinged (a WebSocket ping carrying the send time) each `intervalMs`; its pong, or any frame
 * it sends, is a beat. A connection that misses `missedBeatsOffline` beats in a row (a sleeping
 * laptop, a cut network, a half-open TCP connection) is marked offline: it is terminated, which
 * removes its presence entry and tells every client through the `presence` event, and a node
 * leaves `node.list`. Counters (beats per minute, missed beats, round-trip latency) are part of
 * `status` (the protocol's `health` shape has no room for them).
 */
import { type NodePresence, type PresenceStats, PresenceTracker } from "@beamclaw/core";
import type { WebSocket } from "ws";
import type { GatewayConnection } from "./connection.js";
import type { GatewayLog } from "./logs.js";

/** Liveness settings (`gateway.presence` in the configuration). */
export interface LivenessSettings {
  /** How often every connection is pinged, and the beat interval expected of it. Default 30 s. */
  intervalMs: number;
  /** Missed beats in a row after which a connection is offline and closed. Default 3. */
  missedBeatsOffline: number;
}

/** Default liveness settings. */
export const DEFAULT_LIVENESS: LivenessSettings = { intervalMs: 30_000, missedBeatsOffline: 3 };

/** Frames closer together than this count as one beat (a busy client is not a busier beat). */
const TOUCH_EVERY_MS = 1000;

interface Tracked {
  readonly connection: GatewayConnection;
  readonly socket: WebSocket;
  /** Wall time of the last beat recorded for a frame (throttles frame beats). */
  touchedAt: number;
  registered: boolean;
}

/** See the module comment. */
export class ConnectionLiveness {
  readonly settings: LivenessSettings;
  readonly #tracker: PresenceTracker;
  readonly #log: GatewayLog;
  readonly #tracked = new Map<string, Tracked>();
  #timer: NodeJS.Timeout | null = null;

  constructor(settings: LivenessSettings, log: GatewayLog) {
    this.settings = settings;
    this.#log = log;
    this.#tracker = new PresenceTracker({
      intervalMs: settings.intervalMs,
      missedBeatsOffline: settings.missedBeatsOffline,
    });
    this.#tracker.events.on("offline", (presence) => this.#offline(presence));
  }

  /** Starts pinging and watching for missed beats. */
  start(): void {
    if (this.#timer !== null) return;
    this.#tracker.start();
    this.#timer = setInterval(() => this.#pingAll(), this.settings.intervalMs);
  }

  /** Stops the ping timer and the tracker's timer. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#tracker.stop();
    this.#tracked.clear();
  }

  /** Follows one accepted WebSocket from its upgrade until it closes. */
  attach(connection: GatewayConnection, socket: WebSocket): void {
    const entry: Tracked = { connection, socket, touchedAt: 0, registered: false };
    this.#tracked.set(connection.connId, entry);
    socket.on("pong", (data: Buffer) => this.#beat(entry, sentAtOf(data)));
    socket.on("message", () => {
      const now = Date.now();
      if (now - entry.touchedAt < TOUCH_EVERY_MS) return;
      // Only a recorded beat starts the throttle: the handshake's frames, before the
      // connection is open, must not keep its first request from counting.
      if (this.#beat(entry, undefined)) entry.touchedAt = now;
    });
    socket.once("close", () => {
      this.#tracked.delete(connection.connId);
      this.#tracker.remove(connection.connId);
    });
  }

  /** Records a beat that carries the sender's clock (e.g. a node's `node.presence.alive`). */
  beat(connId: string, sentAt?: number): void {
    const entry = this.#tracked.get(connId);
    if (entry !== undefined) this.#beat(entry, sentAt);
  }

  /** One open connection's liveness, or `undefined` before its first beat. */
  get(connId: string): NodePresence | undefined {
    return this.#tracker.get(connId);
  }

  /** Counters: connections tracked, online, beats per minute, missed beats, latency. */
  stats(): PresenceStats {
    return this.#tracker.stats();
  }

  /** Records a beat of `entry`; false when none can be (stopped, or not open yet). */
  #beat(entry: Tracked, sentAt: number | undefined): boolean {
    if (this.#timer === null || !entry.connection.isOpen) return false;
    entry.registered = true;
    this.#tracker.beat(entry.connection.connId, sentAt === undefined ? {} : { sentAt });
    return true;
  }

  #pingAll(): void {
    const payload = Buffer.allocUnsafe(8);
    payload.writeDoubleBE(Date.now());
    for (const entry of this.#tracked.values()) {
      if (!entry.connection.isOpen) continue;
      // A connection opened since the last round starts being watched from now.
      if (!entry.registered) this.#beat(entry, undefined);
      try {
        entry.socket.ping(payload);
      } catch {
        // The socket is closing; its close event forgets it.
      }
    }
  }

  #offline(presence: NodePresence): void {
    const entry = this.#tracked.get(presence.nodeId);
    if (entry === undefined) {
      this.#tracker.remove(presence.nodeId);
      return;
    }
    const { connection } = entry;
    this.#log.warn(
      `conn=${connection.connId} missed ${presence.missedBeats} beats (last ${Math.max(0, Date.now() - presence.lastBeatAt)} ms ago, every ${presence.intervalMs} ms): offline, closing${connection.deviceId === undefined ? "" : ` device=${connection.deviceId.slice(0, 12)}`}`,
    );
    this.#tracked.delete(presence.nodeId);
    this.#tracker.remove(presence.nodeId);
    connection.terminate();
  }
}

/** The send time a pong echoes back (our ping payload), or `undefined` for anything else. */
function sentAtOf(data: Buffer): number | undefined {
  if (data.length !== 8) return undefined;
  const sentAt = data.readDoubleBE(0);
  return Number.isFinite(sentAt) && sentAt > 0 ? sentAt : undefined;
}
