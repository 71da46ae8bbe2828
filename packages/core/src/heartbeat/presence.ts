import { EventEmitter } from "eventemitter3";
import { type Clock, elapsedTime, systemClock, type TimerHandle } from "../cron/clock.js";
import { type HeapEntry, MinHeap } from "../cron/heap.js";
import { describe, InvalidArgumentError, NoProcessError } from "../errors.js";

/** Default expected interval between beats: 30 s. */
export const DEFAULT_PRESENCE_INTERVAL_MS = 30_000;
/** Default number of missed beats after which a node is offline. */
export const DEFAULT_MISSED_BEATS_OFFLINE = 3;

/** A node's (or client's) presence as the tracker sees it. */
export interface NodePresence {
  nodeId: string;
  status: "online" | "offline";
  /** Epoch ms of the first beat. */
  firstSeenAt: number;
  /** Epoch ms of the last beat received. */
  lastBeatAt: number;
  /** Beats this node was expected to send since its last one and did not. */
  missedBeats: number;
  /** Beats received in total. */
  beats: number;
  /** The interval this node is expected to beat at. */
  intervalMs: number;
  /** Receive time minus `sentAt` of the last beat that carried one. */
  lastLatencyMs?: number;
}

/** A change of a node's status. */
export interface PresenceChange {
  nodeId: string;
  /** `undefined` for a node seen for the first time. */
  from: "online" | "offline" | undefined;
  to: "online" | "offline";
  at: number;
  presence: NodePresence;
}

/** Events of a {@link PresenceTracker}. */
export interface PresenceEvents {
  /** A node came online (first beat, or a beat after being offline). */
  online: (presence: NodePresence) => void;
  /** A node missed `missedBeatsOffline` beats in a row. */
  offline: (presence: NodePresence) => void;
  /** Any status change: the union of `online` and `offline`, with the previous status. */
  changed: (change: PresenceChange) => void;
  /** An expected beat did not come (the node may still be online). */
  missed: (presence: NodePresence) => void;
}

/** The tracker's counters. */
export interface PresenceStats {
  nodes: number;
  online: number;
  offline: number;
  /** Beats received in total. */
  beats: number;
  /** Beats received in the last 60 s. */
  beatsPerMinute: number;
  /** Expected beats that did not come, in total. */
  missedBeats: number;
  /**
   * Times the tracker's deadline timer fired more than {@link PRESENCE_STALL_TOLERANCE_MS}
   * late: the process itself stalled (a long synchronous task, a GC pause, a starved CPU), and
   * deadlines that passed meanwhile were put off rather than counted (see
   * {@link PresenceTracker}).
   */
  stalls: number;
  /** Of the last 1024 beats that carried `sentAt`. */
  latencyMs: { p50: number | undefined; p99: number | undefined; samples: number };
}

/** Options of {@link PresenceTracker}. */
export interface PresenceTrackerOptions {
  /** The interval nodes are expected to beat at (a node may announce its own). Default 30 s. */
  intervalMs?: number;
  /** Missed beats in a row after which a node is offline. Default 3. */
  missedBeatsOffline?: number;
  /**
   * How late a beat may be before it counts as missed. Default 20% of the interval, so that
   * a client retrying with backoff is not marked missed at once.
   */
  graceMs?: number;
  /**
   * Default the system clock. Missed beats are counted in elapsed time (the clock's monotonic
   * timers, {@link Clock.setMonotonicTimer}, when it has them): setting the wall clock back
   * does not hide a silent node, nor does setting it forward mark nodes missed.
   */
  clock?: Clock;
}

/**
 * How late the deadline timer may fire before the tracker takes it as a stall of its own
 * process rather than timer jitter: 25 ms.
 */
export const PRESENCE_STALL_TOLERANCE_MS = 25;

/** A node; its heap `dueAt` (the deadline of its next beat) is in elapsed time. */
interface NodeState extends HeapEntry {
  presence: NodePresence;
  graceMs: number;
  /** When the last beat came, in elapsed time. */
  lastBeat: number;
  /** Whether its current deadline was already put off once for a stall of the tracker. */
  deferred: boolean;
}

const LATENCY_SAMPLES = 1024;

/**
 * Presence and health of connected clients and nodes from their heartbeats. Each node is
 * expected to beat every `intervalMs` (30 s); every interval that passes without a beat
 * (plus `graceMs`) is a missed beat, and after `missedBeatsOffline` (3) in a row the node is
 * offline. The next beat brings it back online. Status changes are events; counters give
 * beats per minute, missed beats and latency percentiles. One timer, for the earliest
 * deadline of all nodes.
 *
 * A stall of the tracker's own process is not held against the nodes: when the deadline
 * timer fires more than {@link PRESENCE_STALL_TOLERANCE_MS} late, the beats that came during
 * the stall may not have been read yet (and pings the process should have sent, were not), so
 * each deadline that passed meanwhile is put off by the stall's length (and by at least the
 * node's grace, for a round trip) instead of being counted. Each deadline is put off at most
 * once: a process that stalls all the time still finds its dead nodes, each missed beat at
 * most one stall later.
 *
 * @example
 * ```ts
 * const presence = new PresenceTracker({ intervalMs: 30_000, missedBeatsOffline: 3 });
 * presence.events.on("offline", (node) => console.warn(`${node.nodeId} went offline`));
 * presence.start();
 * presence.beat("laptop-1", { sentAt: msg.sentAt }); // on every heartbeat message
 * console.log(presence.stats().latencyMs.p99);
 * presence.stop();
 * ```
 */
export class PresenceTracker {
  readonly events = new EventEmitter<PresenceEvents>();
  readonly #intervalMs: number;
  readonly #missedBeatsOffline: number;
  readonly #graceMs: number | undefined;
  readonly #clock: Clock;
  /** The clock's elapsed time, which deadlines are counted on. */
  readonly #elapsed: ReturnType<typeof elapsedTime>;
  readonly #nodes = new Map<string, NodeState>();
  readonly #deadlines = new MinHeap<NodeState>();
  #timer: TimerHandle | undefined;
  #armedFor: number | undefined;
  #running = false;
  #beats = 0;
  #missedBeats = 0;
  #stalls = 0;
  readonly #latencies: number[] = [];
  #latencyNext = 0;
  /** Beats per second over the last 60 s: counts, and the second each bucket holds. */
  readonly #buckets = new Float64Array(60);
  readonly #bucketSecond = new Float64Array(60).fill(-1);

  constructor(options: PresenceTrackerOptions = {}) {
    this.#intervalMs = options.intervalMs ?? DEFAULT_PRESENCE_INTERVAL_MS;
    checkInterval(this.#intervalMs, "intervalMs");
    this.#missedBeatsOffline = options.missedBeatsOffline ?? DEFAULT_MISSED_BEATS_OFFLINE;
    if (!Number.isInteger(this.#missedBeatsOffline) || this.#missedBeatsOffline < 1) {
      throw new InvalidArgumentError(
        `missedBeatsOffline must be an integer >= 1, got ${options.missedBeatsOffline}`,
      );
    }
    this.#graceMs = options.graceMs;
    if (this.#graceMs !== undefined && !(this.#graceMs >= 0)) {
      throw new InvalidArgumentError(`graceMs must be >= 0, got ${options.graceMs}`);
    }
    this.#clock = options.clock ?? systemClock;
    this.#elapsed = elapsedTime(this.#clock);
  }

  /** Starts watching for missed beats. */
  start(): this {
    this.#running = true;
    this.#arm();
    return this;
  }

  /** Stops the timer; the nodes and counters are kept, and `start()` resumes. */
  stop(): void {
    this.#running = false;
    this.#disarm();
  }

  /**
   * Records a beat from `nodeId`. `sentAt` (the sender's epoch ms) gives the latency;
   * `intervalMs` announces the node's own interval.
   *
   * @throws NoProcessError before `start()`; InvalidArgumentError for a bad node id or interval.
   */
  beat(nodeId: string, options: { sentAt?: number; intervalMs?: number } = {}): NodePresence {
    if (!this.#running) throw new NoProcessError("the presence tracker is not started");
    if (typeof nodeId !== "string" || nodeId === "") {
      throw new InvalidArgumentError("a node id must be a non-empty string");
    }
    const now = this.#clock.now();
    if (
      options.sentAt !== undefined &&
      (typeof options.sentAt !== "number" || !Number.isFinite(options.sentAt))
    ) {
      throw new InvalidArgumentError(`sentAt must be epoch ms, got ${String(options.sentAt)}`);
    }
    // Checked before anything is counted: a refused beat leaves no trace.
    if (options.intervalMs !== undefined) checkInterval(options.intervalMs, "intervalMs");
    this.#beats++;
    this.#countBeat(now);
    let latency: number | undefined;
    if (options.sentAt !== undefined) {
      latency = Math.max(0, now - options.sentAt);
      this.#recordLatency(latency);
    }
    let node = this.#nodes.get(nodeId);
    const from = node?.presence.status;
    if (node === undefined) {
      const intervalMs = options.intervalMs ?? this.#intervalMs;
      checkInterval(intervalMs, "intervalMs");
      node = {
        presence: {
          nodeId,
          status: "online",
          firstSeenAt: now,
          lastBeatAt: now,
          missedBeats: 0,
          beats: 0,
          intervalMs,
        },
        graceMs: this.#graceMs ?? Math.round(intervalMs * 0.2),
        lastBeat: 0,
        deferred: false,
        dueAt: 0,
        heapIndex: -1,
      };
      this.#nodes.set(nodeId, node);
    } else if (options.intervalMs !== undefined) {
      checkInterval(options.intervalMs, "intervalMs");
      node.presence.intervalMs = options.intervalMs;
      if (this.#graceMs === undefined) node.graceMs = Math.round(options.intervalMs * 0.2);
    }
    const presence = node.presence;
    presence.status = "online";
    presence.lastBeatAt = now;
    presence.missedBeats = 0;
    presence.beats++;
    if (latency !== undefined) presence.lastLatencyMs = latency;
    node.lastBeat = this.#elapsed.now();
    node.deferred = false;
    this.#deadlines.set(node, node.lastBeat + presence.intervalMs + node.graceMs);
    this.#arm();
    if (from !== "online") {
      this.#emit("online", { ...presence });
      this.#emit("changed", { nodeId, from, to: "online", at: now, presence: { ...presence } });
    }
    return { ...presence };
  }

  /** Forgets a node (it is not reported offline). Returns whether it was known. */
  remove(nodeId: string): boolean {
    const node = this.#nodes.get(nodeId);
    if (node === undefined) return false;
    this.#deadlines.delete(node);
    this.#nodes.delete(nodeId);
    this.#arm();
    return true;
  }

  /** One node's presence, or `undefined`. */
  get(nodeId: string): NodePresence | undefined {
    const node = this.#nodes.get(nodeId);
    return node === undefined ? undefined : { ...node.presence };
  }

  /** Every node's presence. */
  list(): NodePresence[] {
    return [...this.#nodes.values()].map((node) => ({ ...node.presence }));
  }

  stats(): PresenceStats {
    let online = 0;
    for (const node of this.#nodes.values()) if (node.presence.status === "online") online++;
    const sorted = [...this.#latencies].sort((a, b) => a - b);
    return {
      nodes: this.#nodes.size,
      online,
      offline: this.#nodes.size - online,
      beats: this.#beats,
      beatsPerMinute: this.#beatsInLastMinute(this.#clock.now()),
      missedBeats: this.#missedBeats,
      stalls: this.#stalls,
      latencyMs: {
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        samples: sorted.length,
      },
    };
  }

  /** `lateMs`: how long after its due time the timer fired. */
  #onDeadline(lateMs: number): void {
    const now = this.#clock.now();
    const elapsed = this.#elapsed.now();
    const stalled = lateMs > PRESENCE_STALL_TOLERANCE_MS;
    if (stalled) this.#stalls++;
    for (;;) {
      const node = this.#deadlines.peek();
      if (node === undefined || node.dueAt > elapsed) break;
      if (stalled && !node.deferred) {
        // Put off past now: the loop reaches each node once for the stall.
        node.deferred = true;
        const due = Math.max(node.dueAt + lateMs, elapsed + Math.max(1, node.graceMs));
        this.#deadlines.set(node, due);
        continue;
      }
      this.#deadlines.pop();
      node.deferred = false;
      const presence = node.presence;
      presence.missedBeats++;
      this.#missedBeats++;
      this.#emit("missed", { ...presence });
      if (presence.missedBeats >= this.#missedBeatsOffline) {
        presence.status = "offline";
        this.#emit("offline", { ...presence });
        this.#emit("changed", {
          nodeId: presence.nodeId,
          from: "online",
          to: "offline",
          at: now,
          presence: { ...presence },
        });
      } else {
        const next =
          node.lastBeat + (presence.missedBeats + 1) * presence.intervalMs + node.graceMs;
        this.#deadlines.set(node, next);
      }
    }
    this.#arm();
  }

  #arm(): void {
    if (!this.#running) return;
    const top = this.#deadlines.peek();
    if (top === undefined) {
      this.#disarm();
      return;
    }
    if (this.#armedFor !== undefined && this.#armedFor <= top.dueAt) return;
    this.#disarm();
    const armedFor = top.dueAt;
    this.#armedFor = armedFor;
    this.#timer = this.#elapsed.setTimer(
      () => {
        this.#timer = this.#armedFor = undefined;
        this.#onDeadline(this.#elapsed.now() - armedFor);
      },
      Math.max(0, top.dueAt - this.#elapsed.now()),
    );
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = this.#armedFor = undefined;
  }

  #emit<E extends keyof PresenceEvents>(event: E, payload: Parameters<PresenceEvents[E]>[0]) {
    try {
      (this.events.emit as (event: E, payload: unknown) => boolean)(event, payload);
    } catch (error) {
      process.emitWarning(`a presence listener threw: ${describe(error)}`, "BeamClawWarning");
    }
  }

  #countBeat(now: number): void {
    const second = Math.floor(now / 1000);
    const bucket = second % 60;
    if (this.#bucketSecond[bucket] !== second) {
      this.#bucketSecond[bucket] = second;
      this.#buckets[bucket] = 0;
    }
    this.#buckets[bucket]!++;
  }

  #beatsInLastMinute(now: number): number {
    const second = Math.floor(now / 1000);
    let total = 0;
    for (let i = 0; i < 60; i++) {
      const at = this.#bucketSecond[i]!;
      if (at > second - 60 && at <= second) total += this.#buckets[i]!;
    }
    return total;
  }

  #recordLatency(ms: number): void {
    if (this.#latencies.length < LATENCY_SAMPLES) this.#latencies.push(ms);
    else this.#latencies[this.#latencyNext] = ms;
    this.#latencyNext = (this.#latencyNext + 1) % LATENCY_SAMPLES;
  }
}

function checkInterval(ms: unknown, what: string): void {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 1) {
    throw new InvalidArgumentError(`${what} must be a finite number of ms >= 1, got ${String(ms)}`);
  }
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1];
}
