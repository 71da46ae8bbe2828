import { randomUUID } from "node:crypto";
import {
  BeamClawError,
  ClusterError,
  InvalidArgumentError,
  InvalidSessionKeyError,
  isBeamClawError,
  MaxChildrenError,
  NoProcessError,
  NotSupportedError,
  OverloadedError,
  SessionBusyError,
} from "../errors.js";
import type { JsonObject, JsonValue, ModelMessage } from "../providers/types.js";
import type { ExitReason } from "../runtime/exit.js";
import type { PubSub } from "../runtime/pubsub.js";
import { MAX_TIMER_DELAY_MS } from "../runtime/timers.js";
import { DEFAULT_COMPACTION_TIMEOUT_MS } from "../sessions/compaction.js";
import { RunHandle } from "../sessions/run-handle.js";
import { AgentRuntime, type AgentRuntimeOptions } from "../sessions/runtime.js";
import { liveEntries, type SessionActor } from "../sessions/session-actor.js";
import { savedCallUsage } from "../sessions/transcript-usage.js";
import type { RunResult } from "../sessions/types.js";
import type { Lease, QueuedMessage, Store, TranscriptRecord } from "../store/types.js";
import { emitTelemetry } from "../telemetry.js";
import { CronRunGuard, PubSubCronSync, setClusterCronGuard } from "./cron.js";
import { FencedSessionStore } from "./fencing.js";
import { RunFollower } from "./follower.js";
import type { RoutedSessionRequest, SessionOwnership } from "./ownership.js";
import { leastLoaded, rendezvous } from "./placement.js";
import type {
  ClusterBackplane,
  ClusterMember,
  ClusterPresence,
  ClusterRegistry,
  MembershipEvent,
  NodeMessage,
} from "./types.js";

/** Default lease of a session on its node: 3 s, renewed every second. */
export const DEFAULT_SESSION_LEASE_MS = 3_000;
/** Default wait for another node's answer: 5 s. */
export const DEFAULT_CLUSTER_REQUEST_TIMEOUT_MS = 5_000;
/** Default period of the sweep for orphaned messages: 2 s. */
export const DEFAULT_CLUSTER_SWEEP_MS = 2_000;
/** Default number of unfinished messages the sweep reads from the queue at once: 1000. */
export const DEFAULT_CLUSTER_SWEEP_PAGE_SIZE = 1_000;
/** Default number of pages one sweep pass reads: 10. */
export const DEFAULT_CLUSTER_SWEEP_PAGES_PER_PASS = 10;
/** Default bound on handing one session over while draining: 30 s. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

/** Routing attempts for one message or request before it is left to the sweep. */
const MAX_ROUTE_ATTEMPTS = 8;
/** Default of {@link ClusterNodeOptions.maxRouteHints}. */
const DEFAULT_MAX_ROUTE_HINTS = 10_000;

/** Run events of one session held back while its lease is in doubt (see `sessionPubSub`). */
const MAX_HELD_BACK_EVENTS = 10_000;

/** Options of {@link ClusterNode}. */
/**
 * How long a node waits for a session's owner to answer an injection routed to it: the owner
 * saves it once the session's active run has ended (the request timeout would cut a long run
 * short, and the caller would be told of a failure that is not one).
 */
const INJECT_WAIT_MS = 600_000;

/**
 * Options of {@link ClusterNode}. Every duration (`...Ms`) is at most 2,147,483,647 ms, a
 * timer's limit (`InvalidArgumentError` above it).
 */
export interface ClusterNodeOptions {
  /** How nodes meet and talk (e.g. `createRedisBackplane` from `@beamclaw/store-redis`). */
  backplane: ClusterBackplane;
  /**
   * The runtime of this node. Its `store` must be shared by every node and support
   * distributed locks (`@beamclaw/store-redis`); `pubsub` and `ownership` are set by the node.
   */
  runtime: Omit<AgentRuntimeOptions, "pubsub" | "ownership">;
  /** Metadata the other nodes see. */
  meta?: JsonObject;
  /**
   * A session's lease: renewed every third of it while the session lives here; after its
   * owner dies, another node takes the session over once it expires. Default 3000 ms.
   */
  leaseTtlMs?: number;
  /**
   * How long to wait for another node's answer before following the run (or, for a session
   * request, failing with `CLUSTER_UNREACHABLE`). Default 5000 ms. A compaction gets its own
   * time limit and an injection up to 10 minutes instead (both wait for the session's active
   * run); a node declared down ends any wait at once.
   */
  requestTimeoutMs?: number;
  /** Period of the sweep that revives orphaned sessions and delivers lost messages. Default 2000 ms. */
  sweepIntervalMs?: number;
  /**
   * How many unfinished messages the sweep reads from the shared queue at once (one
   * `queue.pending` page): an integer in 1..1000. Default 1000.
   */
  sweepPageSize?: number;
  /**
   * How many pages one sweep pass reads at most (an integer >= 1). A pass that stops before
   * the end of the queue leaves a cursor, and the next pass goes on from there, so every
   * unfinished message is looked at within `ceil(pending / (sweepPageSize * sweepPagesPerPass))`
   * passes, however many older ones wait before it. Default 10.
   */
  sweepPagesPerPass?: number;
  /** Default bound on `drain()`'s wait for each session's runs. Default 30 000 ms. */
  drainTimeoutMs?: number;
  /**
   * How many sessions owned by other nodes this node remembers the owner of, to route their
   * messages there without asking the store (an integer >= 1). Past it the least recently
   * routed is forgotten, and its next message asks the store again. Default 10 000.
   */
  maxRouteHints?: number;
  /**
   * How often each node's cron services reload all their jobs from the store, healing a
   * lost change notification (see {@link ClusterNode.cronSync}). Default 30 000 ms.
   */
  cronResyncMs?: number;
}

interface HeldLease {
  lease: Lease;
  /** `performance.now()` until which the lease is certainly still ours. */
  validUntil: number;
  /** Acquired and not yet claimed by a starting session: that start is a takeover. */
  fresh: boolean;
  acquiredAt: number;
  /**
   * Run events of the session published while the lease was in doubt (past `validUntil`,
   * not yet renewed), in order: published once it is renewed, dropped when it is lost.
   */
  heldBack?: Array<{ topic: string; event: unknown }>;
}

interface PendingRequest {
  node: string;
  resolve(outcome: RequestOutcome): void;
  timer: NodeJS.Timeout;
}

type RequestOutcome =
  | { kind: "ok"; value: JsonValue }
  | { kind: "error"; error: ErrorJson }
  | { kind: "unreachable" }
  | { kind: "timeout" };

type Target =
  | { kind: "local" }
  | { kind: "remote"; node: string; expiresAt?: number; placed?: boolean }
  | { kind: "wait"; until: number }
  | { kind: "none" };

type State = "new" | "starting" | "running" | "draining" | "stopping" | "stopped";

/** Codes of errors that refuse a message for good (it is acknowledged away, as locally). */
const DEFINITIVE = new Set([
  "OVERLOADED",
  "INVALID_ARGUMENT",
  "INVALID_SESSION_KEY",
  "MAX_CHILDREN",
]);

/**
 * One node of a BeamClaw cluster: an `AgentRuntime` whose sessions are owned cluster-wide.
 *
 * - **Ownership.** A session runs on exactly one node: the one holding its lease
 *   (`session:<key>` in the shared store's `locks`, with a fencing token), renewed every
 *   third of `leaseTtlMs` while the session lives here and released when it hibernates or
 *   stops. A node that cannot renew in time stops the session itself. When the store has
 *   fenced writes (`store.fenced`, as `@beamclaw/store-redis` does), the session's writes
 *   carry its lease's fencing token: a node paused past its lease finds them refused
 *   (`FencedError`) once another node took the session, and its session stops without
 *   acknowledging anything. `node.runtime.store` is that fencing view of the store.
 * - **Routing.** `runtime.session(key)` works on every node. A message is written to the
 *   durable queue first (that is the acknowledgement), then handed to the owner over the
 *   backplane; the caller's `RunHandle` follows the run through the cluster pub/sub topic
 *   `session:<key>`. `abort`, `info`, `patch`, `reset`, `compact`, `rewind`, `inject` and
 *   `delete` go to the owner too.
 * - **Placement.** A session nobody owns goes to the least-loaded node that is not draining
 *   (chosen and counted atomically by the backplane's `place` when it has one).
 * - **Cron, registry, presence.** `agentRuntimeJobRunner(node.runtime)` claims every due
 *   time through {@link ClusterNode.cronGuard} and keeps every node's cron services in step
 *   through {@link ClusterNode.cronSync}; {@link ClusterNode.registry} and
 *   {@link ClusterNode.presence} are the backplane's cluster-wide names and presence.
 * - **Failover.** When a node dies its leases expire; the next message, or the sweep,
 *   revives each session on another node from the store, replaying its unfinished messages
 *   from the durable queue. Each message runs to completion once: the replay and late
 *   deliveries are deduplicated by queue id, and acknowledged ones never come back.
 * - **Drain.** `drain()` stops taking new sessions, lets each session finish its runs, hands
 *   it over, and leaves: a rolling deploy loses nothing.
 *
 * @example
 * ```ts
 * import { ClusterNode } from "@beamclaw/core";
 * import { createRedisBackplane, createRedisStore } from "@beamclaw/store-redis";
 *
 * const url = "redis://127.0.0.1:6379";
 * const node = new ClusterNode({
 *   backplane: createRedisBackplane({ url, prefix: "myapp:" }),
 *   runtime: { store: createRedisStore({ url, prefix: "myapp:" }), models, agents },
 * });
 * await node.runtime.store.open();
 * await node.start();
 * const run = await node.runtime.session("agent:main:main").send("hi"); // on whichever node owns it
 * console.log((await run.result).text);
 * await node.drain(); // rolling deploy: hand the sessions over, leave, stop
 * ```
 */
export class ClusterNode implements SessionOwnership {
  /** This node's runtime; use it as a single-process one. */
  readonly runtime: AgentRuntime;
  readonly backplane: ClusterBackplane;
  readonly store: Store;
  readonly leaseTtlMs: number;
  readonly requestTimeoutMs: number;
  readonly sweepIntervalMs: number;
  /** Unfinished messages the sweep reads per page (see {@link ClusterNodeOptions.sweepPageSize}). */
  readonly sweepPageSize: number;
  /** Pages one sweep pass reads at most (see {@link ClusterNodeOptions.sweepPagesPerPass}). */
  readonly sweepPagesPerPass: number;
  readonly drainTimeoutMs: number;
  /** Owners of other nodes' sessions remembered at most (see {@link ClusterNodeOptions.maxRouteHints}). */
  readonly maxRouteHints: number;
  /**
   * Claims each cron due time once across the cluster. `agentRuntimeJobRunner(node.runtime)`
   * uses it by itself, so a `CronSupervisor` on every node runs each job once per due time.
   */
  readonly cronGuard: CronRunGuard;
  /**
   * The cron change feed over the backplane's pub/sub: a job added, changed, run or removed
   * through one node's `CronService` is reloaded from the store by every other node's.
   * `agentRuntimeJobRunner(node.runtime)` hands it to the services by itself.
   */
  readonly cronSync: PubSubCronSync;
  /**
   * @internal See {@link SessionOwnership.sessionPubSub}: the backplane's pub/sub, through
   * which this node's sessions publish their run events only while this node certainly holds
   * the session's lease. A node paused past its lease (a long GC pause, `SIGSTOP`) wakes up
   * with its runs' events held back until its lease is renewed, and drops them when it finds
   * the lease lost (another node has taken the session over and replays the run): the
   * callers following the run never see events of two owners. The session's writes are
   * refused at the same time (fenced).
   */
  readonly sessionPubSub: PubSub;
  readonly #meta: JsonObject;
  readonly #leases = new Map<string, HeldLease>();
  /**
   * The fencing token each session running here started under: its writes present it, so
   * once another node has taken the lease they are refused (kept after the lease is lost,
   * until the session has stopped here).
   */
  readonly #writeFences = new Map<string, number>();
  /** The runtime's store: the shared one, with session writes fenced (when it can). */
  readonly #fencedStore: FencedSessionStore | undefined;
  readonly #acquiring = new Map<string, Promise<Lease | undefined>>();
  readonly #releasing = new Set<Promise<unknown>>();
  readonly #requests = new Map<string, PendingRequest>();
  readonly #followers = new Set<RunFollower>();
  readonly #moving = new Map<string, Promise<void>>();
  /**
   * The node each session routed elsewhere was last delivered to, least recently routed
   * first; at most `maxRouteHints` (sessions come and go for months: see `#hint`).
   */
  readonly #hints = new Map<string, string>();
  readonly #placed = new Map<string, { count: number; since: number }>();
  /** Nodes that did not take a message although listed (gone before `down` is declared). */
  readonly #unreachable = new Map<string, number>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #handlers = new Set<Promise<unknown>>();
  #offs: Array<() => void> = [];
  #renewTimer: NodeJS.Timeout | undefined;
  /** Lease renewals under way (`stop()` waits for them before it releases the leases). */
  readonly #renewals = new Set<Promise<void>>();
  /**
   * True while `stop()` waits for the runtime to stop: the leases are still renewed, and a
   * session that stops keeps its lease until every session (and its tool calls) has stopped.
   */
  #holdingLeases = false;
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #sweepAgain = false;
  /**
   * The sweep's round in progress: where its next page starts (after this queue id; from the
   * beginning when undefined), the followers it judges and which of their messages it found.
   */
  #sweepRound:
    | { after: string | undefined; followers: Set<RunFollower>; seen: Set<string> }
    | undefined;
  /** Sessions started here on a placement, in total (reported with every heartbeat). */
  #placedStarted = 0;
  #state: State = "new";

  constructor(options: ClusterNodeOptions) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("ClusterNode options must be an object");
    }
    const { backplane, runtime } = options;
    if (
      typeof backplane !== "object" ||
      backplane === null ||
      typeof backplane.join !== "function"
    ) {
      throw new InvalidArgumentError("ClusterNode needs a backplane (a ClusterBackplane)");
    }
    if (typeof runtime !== "object" || runtime === null || runtime.store === undefined) {
      throw new InvalidArgumentError("ClusterNode needs runtime options with a shared store");
    }
    const caps = runtime.store.capabilities;
    if (!caps.multiProcess || !caps.distributedLocks) {
      throw new InvalidArgumentError(
        `a cluster needs a store shared by every node with distributed locks; "${runtime.store.kind}" has multiProcess: ${caps.multiProcess}, distributedLocks: ${caps.distributedLocks}`,
      );
    }
    this.leaseTtlMs = positiveMs(options.leaseTtlMs, DEFAULT_SESSION_LEASE_MS, "leaseTtlMs", 30);
    this.requestTimeoutMs = positiveMs(
      options.requestTimeoutMs,
      DEFAULT_CLUSTER_REQUEST_TIMEOUT_MS,
      "requestTimeoutMs",
    );
    this.sweepIntervalMs = positiveMs(
      options.sweepIntervalMs,
      DEFAULT_CLUSTER_SWEEP_MS,
      "sweepIntervalMs",
    );
    this.sweepPageSize = positiveInteger(
      options.sweepPageSize,
      DEFAULT_CLUSTER_SWEEP_PAGE_SIZE,
      "sweepPageSize",
      1_000,
    );
    this.sweepPagesPerPass = positiveInteger(
      options.sweepPagesPerPass,
      DEFAULT_CLUSTER_SWEEP_PAGES_PER_PASS,
      "sweepPagesPerPass",
    );
    this.drainTimeoutMs = positiveMs(
      options.drainTimeoutMs,
      DEFAULT_DRAIN_TIMEOUT_MS,
      "drainTimeoutMs",
    );
    this.maxRouteHints = positiveInteger(
      options.maxRouteHints,
      DEFAULT_MAX_ROUTE_HINTS,
      "maxRouteHints",
    );
    this.#meta = options.meta ?? {};
    this.backplane = backplane;
    this.store = runtime.store;
    this.#fencedStore =
      typeof runtime.store.fenced === "function"
        ? new FencedSessionStore(runtime.store, (key) => {
            const token = this.#writeFences.get(key);
            return token === undefined ? undefined : { lock: leaseName(key), token };
          })
        : undefined;
    const pubsub = backplane.pubsub;
    this.sessionPubSub = {
      subscribe: (topic, handler, options) => pubsub.subscribe(topic, handler, options),
      publish: (topic, message) => this.#publishSessionEvent(topic, message),
      subscriberCount: (topic) => pubsub.subscriberCount(topic),
      // The backplane's, closed by `leave()`.
      close: () => Promise.resolve(),
    };
    this.runtime = new AgentRuntime({
      ...runtime,
      ...(this.#fencedStore === undefined ? {} : { store: this.#fencedStore }),
      pubsub: backplane.pubsub,
      ownership: this,
    });
    this.cronGuard = new CronRunGuard({ store: this.store, nodeId: backplane.nodeId });
    this.cronSync = new PubSubCronSync({
      pubsub: backplane.pubsub,
      ...(options.cronResyncMs === undefined ? {} : { resyncMs: options.cronResyncMs }),
    });
    setClusterCronGuard(this.runtime, this.cronGuard, this.store, this.cronSync);
  }

  /** This node's id (the backplane's). */
  get nodeId(): string {
    return this.backplane.nodeId;
  }

  /** `new`, `starting`, `running`, `draining`, `stopping` or `stopped`. */
  get state(): State {
    return this.#state;
  }

  /** Live members, this node included. */
  members(): ClusterMember[] {
    return this.backplane.members();
  }

  /**
   * The cluster-wide registry of unique names (the backplane's): register a process here,
   * find it and send it messages from any node.
   *
   * @throws NotSupportedError when the backplane has no registry.
   */
  get registry(): ClusterRegistry {
    const registry = this.backplane.registry;
    if (registry === undefined) {
      throw new NotSupportedError("cluster registry", "this cluster backplane has no registry");
    }
    return registry;
  }

  /**
   * Cluster-wide presence (the backplane's): track what is connected to this node, list
   * what is connected anywhere.
   *
   * @throws NotSupportedError when the backplane has no presence.
   */
  get presence(): ClusterPresence {
    const presence = this.backplane.presence;
    if (presence === undefined) {
      throw new NotSupportedError("cluster presence", "this cluster backplane has no presence");
    }
    return presence;
  }

  /** Keys of the sessions whose lease this node holds. */
  ownedSessions(): string[] {
    return [...this.#leases.keys()];
  }

  /** The node that owns session `key` now (holds its lease), if any. */
  async ownerOf(key: string): Promise<string | undefined> {
    const sessionKey = this.runtime.session(key).key;
    return (await this.store.locks.holder(leaseName(sessionKey)))?.owner;
  }

  /**
   * Joins the cluster and starts the runtime (which replays unfinished messages of sessions
   * no node owns). The store must be open.
   *
   * @throws ClusterError `CLUSTER_NOT_RUNNING` when `stop()` is called before it has finished
   * (the node is then stopped for good), or when the node was started before.
   */
  async start(): Promise<void> {
    if (this.#state !== "new") {
      throw new ClusterError("CLUSTER_NOT_RUNNING", `the cluster node is ${this.#state}`);
    }
    this.#state = "starting";
    this.#offs.push(
      this.backplane.onMessage((message, from) => this.#onMessage(message, from)),
      this.backplane.onMembership((event) => this.#onMembership(event)),
    );
    try {
      await this.backplane.join({
        meta: this.#meta,
        status: () => ({
          sessions: this.runtime.activeSessions().length,
          draining: this.#state === "draining",
          placedStarted: this.#placedStarted,
        }),
      });
      await this.runtime.start();
    } catch (error) {
      if (this.#stopRequested()) {
        // stop() was called meanwhile and tears everything down: wait for it.
        await this.stop();
        throw new ClusterError(
          "CLUSTER_NOT_RUNNING",
          "the cluster node was stopped while starting",
          undefined,
          { cause: error },
        );
      }
      this.#state = "stopping";
      await this.runtime.stop().catch(() => undefined);
      await this.backplane.leave().catch(() => undefined);
      for (const off of this.#offs.splice(0)) off();
      this.#state = "stopped";
      throw error;
    }
    if (this.#stopRequested()) {
      // stop() ran while the runtime started: the node must not come back (nor its timers).
      await this.stop();
      throw new ClusterError("CLUSTER_NOT_RUNNING", "the cluster node was stopped while starting");
    }
    this.#state = "running";
    const renewEvery = Math.max(10, Math.floor(this.leaseTtlMs / 3));
    this.#renewTimer = setInterval(() => {
      const renewal = this.#renewAll().catch(() => undefined);
      this.#renewals.add(renewal);
      void renewal.finally(() => this.#renewals.delete(renewal));
    }, renewEvery);
    this.#sweepTimer = setInterval(() => this.#requestSweep(), this.sweepIntervalMs);
    this.#requestSweep();
  }

  /** True once `stop()` (or `drain()`) has begun: read through a method, past TS narrowing. */
  #stopRequested(): boolean {
    return this.#state === "stopping" || this.#state === "stopped";
  }

  /**
   * Rolling-deploy shutdown: stops taking new sessions (other nodes place nothing here),
   * lets every session finish its active and queued runs (at most `timeoutMs` each, default
   * `drainTimeoutMs`; after that the run is cut and replayed elsewhere), releases it and
   * hands it to another node when messages are waiting, waits for the runs this node's
   * callers follow on other nodes, then stops like {@link stop}. Take the node out of your
   * load balancer first: messages sent through it while it drains still work, but keep it
   * alive longer.
   */
  async drain(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#state !== "running") {
      if (this.#state === "new") throw new ClusterError("CLUSTER_NOT_RUNNING", "not started");
      return this.stop();
    }
    const timeoutMs = positiveMs(options.timeoutMs, this.drainTimeoutMs, "timeoutMs");
    this.#state = "draining";
    await this.backplane.heartbeat().catch(() => undefined);
    const deadline = performance.now() + timeoutMs;
    const keys = new Set([...this.#leases.keys(), ...this.runtime.activeSessions()]);
    await Promise.all([...keys].map((key) => this.#handOver(key, deadline)));
    // Runs this node's callers follow on other nodes end there; their handles stay whole.
    while (this.#followers.size > 0 && performance.now() < deadline) await sleep(20);
    await this.stop();
  }

  /**
   * Stops the runtime (sessions are saved; unfinished messages stay queued and are taken
   * over by the other nodes), then releases the sessions' leases and leaves the cluster.
   * The leases are renewed until the runtime has stopped (within its sessions' and tool
   * calls' stop timeouts): a session whose run takes longer than `leaseTtlMs` to stop (a
   * tool call finishing) is not taken over by another node while it still runs here.
   * Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#state === "stopped" || this.#state === "stopping") {
      while (this.#state !== "stopped") await sleep(5);
      return;
    }
    const wasNew = this.#state === "new";
    this.#state = "stopping";
    clearInterval(this.#sweepTimer);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    if (wasNew) clearInterval(this.#renewTimer);
    else {
      this.#holdingLeases = true;
      try {
        await this.runtime.stop();
      } finally {
        this.#holdingLeases = false;
        clearInterval(this.#renewTimer);
      }
      await Promise.allSettled([...this.#renewals]);
      await this.#sweeping?.catch(() => undefined);
      await Promise.allSettled([...this.#handlers]);
      await Promise.allSettled([...this.#releasing]);
      await Promise.allSettled(
        [...this.#leases.keys()].map((key) => this.#release(key, "released")),
      );
    }
    const stopped = new ClusterError("CLUSTER_NOT_RUNNING", "the cluster node stopped");
    for (const [id, request] of this.#requests) {
      clearTimeout(request.timer);
      this.#requests.delete(id);
      request.resolve({ kind: "error", error: { code: stopped.code, message: stopped.message } });
    }
    for (const follower of [...this.#followers]) {
      follower.fail(
        new NoProcessError(
          "this cluster node stopped; the message stays queued and runs on another node",
          "shutdown",
        ),
      );
    }
    await this.backplane.leave().catch(() => undefined);
    for (const off of this.#offs.splice(0)) off();
    this.#state = "stopped";
  }

  // ------------------------------------------------------------------ SessionOwnership

  /** @internal See {@link SessionOwnership.claim}. */
  async claim(sessionKey: string): Promise<{ takeover: boolean }> {
    const held = this.#held(sessionKey);
    if (held !== undefined) {
      const takeover = held.fresh;
      held.fresh = false;
      this.#writeFences.set(sessionKey, held.lease.token);
      return { takeover };
    }
    if (this.#state === "stopping" || this.#state === "stopped" || this.#state === "new") {
      throw new ClusterError(
        "CLUSTER_NOT_RUNNING",
        `cluster node ${this.nodeId} is ${this.#state}`,
      );
    }
    if (this.#state === "draining") {
      throw new ClusterError(
        "CLUSTER_DRAINING",
        `cluster node ${this.nodeId} is draining and takes no new sessions`,
      );
    }
    const lease = await this.#acquire(sessionKey);
    if (lease !== undefined) {
      const entry = this.#leases.get(sessionKey);
      if (entry !== undefined) entry.fresh = false;
      this.#writeFences.set(sessionKey, lease.token);
      return { takeover: true };
    }
    const holder = await this.store.locks.holder(leaseName(sessionKey));
    throw new ClusterError(
      "CLUSTER_NOT_OWNER",
      `session ${sessionKey} is owned by node ${holder?.owner ?? "(unknown)"}`,
      holder?.owner,
    );
  }

  /** @internal See {@link SessionOwnership.released}. */
  released(sessionKey: string, reason: ExitReason): void {
    // A crashed session is restarted here at once and keeps its lease.
    if (reason !== "normal" && reason !== "shutdown") return;
    // (The registry may still list the actor that just stopped; a live one is a new start.)
    const current = this.runtime.registry.whereis(`session:${sessionKey}`);
    if (current !== undefined && current.status !== "stopping" && current.status !== "stopped") {
      return;
    }
    // Its writes are over; messages it left unfinished run where the session goes next.
    const ranUnder = this.#writeFences.get(sessionKey);
    this.#writeFences.delete(sessionKey);
    this.#widenFollowers(sessionKey);
    const held = this.#leases.get(sessionKey);
    if (held !== undefined && ranUnder !== undefined && held.lease.token !== ranUnder) {
      // A lease this node took since (the old one was lost while the session stopped), for
      // the session's next start here: only the lease the session ran under is let go.
      return;
    }
    this.#fencedStore?.forgetSession(sessionKey);
    // While the node stops, the lease is kept (and renewed) until the runtime has stopped:
    // the run's tool calls may still be finishing. `stop()` releases it then.
    if (this.#holdingLeases) return;
    void this.#release(sessionKey, "released");
  }

  /**
   * @internal See {@link SessionOwnership.routeSend}. Every caller follows its run through
   * the cluster pub/sub topic `session:<key>`, wherever it runs: here, on the owner, or on
   * the node that takes the session over after a failure.
   */
  async routeSend(
    message: QueuedMessage,
    options: { signal?: AbortSignal; duplicate?: boolean },
  ): Promise<RunHandle | undefined> {
    if (!this.#routing()) return undefined;
    const key = message.sessionKey;
    const payloadRunId = String((message.payload as { runId?: JsonValue }).runId ?? message.id);
    // Listening here only while the run is expected here; cluster-wide once it goes elsewhere.
    const follower = this.#follow(key, message.id, payloadRunId, false);
    let subscribed = false;
    try {
      for (let attempt = 0; attempt < MAX_ROUTE_ATTEMPTS; attempt++) {
        await this.#moving.get(key);
        const target = await this.#target(key);
        if (target.kind === "local") {
          // Its acknowledgement here is fenced by the session's lease.
          this.#fencedStore?.noteMessage(message);
          let local: RunHandle;
          try {
            local = await this.runtime.deliver(message, { fresh: options.duplicate !== true });
          } catch (error) {
            if (isBeamClawError(error, "DUPLICATE")) {
              follower.fail(error);
              return this.#handle(follower, payloadRunId, "duplicate", options);
            }
            // Lost a race for the session: route again.
            if (ClusterError.isInstance(error) && error.code !== "CLUSTER_NOT_RUNNING") continue;
            throw error;
          }
          follower.accept(local.runId);
          return this.#handle(follower, local.runId, local.disposition, options);
        }
        if (target.kind === "wait") {
          await this.#sleep(Math.min(target.until - Date.now(), this.leaseTtlMs) + 25);
          continue;
        }
        if (target.kind === "none") break;
        if (!subscribed) {
          subscribed = true;
          follower.widen();
          await withTimeout(
            this.backplane.pubsub.whenSubscribed(`session:${key}`),
            this.requestTimeoutMs,
          );
        }
        follower.target = target.node;
        const outcome = await this.#request(target.node, {
          t: "deliver",
          message: toJson(message),
          ...(target.placed === true ? { placed: true } : {}),
        });
        if (outcome.kind === "ok") {
          const { runId, disposition } = outcome.value as { runId: string; disposition: string };
          this.#hint(key, target.node);
          follower.accept(runId);
          return this.#handle(follower, runId, disposition as RunHandle["disposition"], options);
        }
        if (outcome.kind === "timeout") break;
        if (outcome.kind === "unreachable") {
          this.#markUnreachable(target.node);
          if (target.expiresAt !== undefined) {
            await this.#sleep(Math.min(target.expiresAt - Date.now(), this.leaseTtlMs) + 25);
          }
          continue;
        }
        const { code } = outcome.error;
        if (code === "DUPLICATE") {
          // A repeated idempotency key whose run is already over, as a local duplicate.
          follower.fail(toError(outcome.error));
          return this.#handle(follower, payloadRunId, "duplicate", options);
        }
        this.#hints.delete(key);
        if (DEFINITIVE.has(code)) {
          // Refused for good, as a local session would: it must not run later, and a retry
          // with the same idempotency key counts as new.
          await this.store.queue.discard(message.id).catch(() => undefined);
          throw toError(outcome.error);
        }
        if (code === "CLUSTER_NOT_OWNER" || code === "CLUSTER_DRAINING") continue;
        // Anything else (the owner stopping, a store error there): try again shortly.
        await this.#sleep(50);
      }
    } catch (error) {
      // Refused for good (and discarded): the caller is told. Anything else (the store
      // unreachable while routing, this runtime stopping) leaves the message queued: it runs
      // anyway, so the caller gets a handle that follows it.
      if (isBeamClawError(error) && DEFINITIVE.has(error.code)) {
        follower.fail(error);
        throw error;
      }
    }
    // Not confirmed by any owner: the message is durable and the sweep delivers it; the
    // handle follows its run wherever it happens.
    follower.widen();
    follower.followOwnRun();
    this.#requestSweep();
    return this.#handle(follower, payloadRunId, "queued", options);
  }

  /**
   * @internal See {@link SessionOwnership.routeRequest}.
   *
   * An injection asked of a node that was lost before it answered (it died, or left) is
   * asked again, wherever the session goes, as one that may have been saved already: the
   * session first looks for it (by its id) among the transcript entries written since the
   * first attempt, so it is saved once.
   */
  async routeRequest(
    sessionKey: string,
    request: RoutedSessionRequest,
  ): Promise<{ reply: unknown } | undefined> {
    if (!this.#routing()) return undefined;
    // What is asked: the request, or after an unanswered injection, its retry.
    let asked: RoutedSessionRequest = request;
    let injection: { savedAfter: number } | undefined;
    const ask = async (node: string, expiresAt?: number) => {
      if (request.type === "inject" && injection === undefined) {
        asked = { ...request, id: request.id ?? randomUUID() };
        // Whatever an owner saves of it comes after the transcript's current end.
        injection = { savedAfter: await this.store.transcripts.lastSeq(sessionKey) };
      }
      const answered = await this.#ask(node, sessionKey, asked, expiresAt);
      if (answered === undefined && asked.type === "inject" && injection !== undefined) {
        asked = { ...asked, savedAfter: injection.savedAfter };
      }
      return answered;
    };
    // Answered here: as asked, or the retry of an injection (which the runtime's own request
    // is not).
    const here = async () =>
      asked === request
        ? undefined
        : { reply: await this.runtime.answerRequest(sessionKey, asked) };
    for (let attempt = 0; attempt < MAX_ROUTE_ATTEMPTS; attempt++) {
      await this.#moving.get(sessionKey);
      if (this.#held(sessionKey) !== undefined) return here();
      const holder = await this.store.locks.holder(leaseName(sessionKey));
      if (holder === undefined) {
        // Nothing runs the session: no run to abort, and a delete only touches the store.
        if (request.type === "abort") return { reply: false };
        if (request.type === "delete") return undefined;
        const target = await this.#target(sessionKey);
        if (target.kind === "local") return here();
        if (target.kind !== "remote") {
          await this.#sleep(50);
          continue;
        }
        const answered = await ask(target.node);
        if (answered !== undefined) return answered;
        continue;
      }
      if (holder.owner === this.nodeId) {
        await this.#sleep(Math.min(Math.max(holder.expiresAt - Date.now(), 0), 50) + 5);
        continue;
      }
      const answered = await ask(holder.owner, holder.expiresAt);
      if (answered !== undefined) return answered;
    }
    // An injection some node was asked for may have been saved there before it was lost.
    const unsure =
      injection !== undefined && asked.type === "inject"
        ? `; the injection may have been saved all the same (its run id is inject:${asked.id}): look for it in the transcript before injecting it again`
        : "";
    throw new ClusterError(
      "CLUSTER_UNREACHABLE",
      `no node answered a ${request.type} request for session ${sessionKey}${unsure}`,
    );
  }

  // ------------------------------------------------------------------ routing

  #routing(): boolean {
    return this.#state === "running" || this.#state === "draining" || this.#state === "starting";
  }

  /** Where a message for `key` goes now. */
  async #target(key: string): Promise<Target> {
    if (this.#held(key) !== undefined) return { kind: "local" };
    const hint = this.#hints.get(key);
    if (hint !== undefined && this.#isLive(hint)) return { kind: "remote", node: hint };
    const acquiring = this.#acquiring.get(key);
    if (acquiring !== undefined) {
      await acquiring.catch(() => undefined);
      if (this.#held(key) !== undefined) return { kind: "local" };
    }
    const holder = await this.store.locks.holder(leaseName(key));
    if (holder !== undefined) {
      if (holder.owner === this.nodeId) {
        // A release of ours still on its way, or a lease we stopped trusting: wait it out.
        if (this.#releasing.size > 0) await Promise.allSettled([...this.#releasing]);
        return { kind: "wait", until: Math.min(holder.expiresAt, Date.now() + 50) };
      }
      return { kind: "remote", node: holder.owner, expiresAt: holder.expiresAt };
    }
    const node = await this.#placeNew(key);
    if (node === undefined) return { kind: "none" };
    if (node === this.nodeId) {
      const lease = await this.#acquire(key);
      if (lease !== undefined) {
        this.#placedStarted++;
        return { kind: "local" };
      }
      return { kind: "wait", until: Date.now() };
    }
    return { kind: "remote", node, placed: true };
  }

  /**
   * Where a new session goes: through the backplane's atomic placement when it has one
   * (every node's placements counted, whatever the heartbeats say), else by the heartbeats
   * and this node's own recent placements.
   */
  async #placeNew(key: string): Promise<string | undefined> {
    const place = this.backplane.place;
    if (place !== undefined) {
      const candidates = this.#candidates().map((m) => m.nodeId);
      // Preference for ties: this node (no hop), then the key's rendezvous order.
      const ordered: string[] = [];
      if (candidates.includes(this.nodeId)) ordered.push(this.nodeId);
      const rest = candidates.filter((id) => id !== this.nodeId);
      while (rest.length > 0) {
        const next = rendezvous(key, rest)!;
        ordered.push(next);
        rest.splice(rest.indexOf(next), 1);
      }
      try {
        const chosen = await place.call(this.backplane, key, ordered);
        if (chosen !== undefined) return chosen;
      } catch {
        // The backplane cannot place now (Redis unreachable): decide locally.
      }
    }
    const node = this.#place(key);
    if (node !== undefined) this.#countPlacement(node);
    return node;
  }

  /**
   * Placements made here since the last heartbeat, per node: added to each node's reported
   * load, so that a burst of new sessions spreads instead of piling on the node that looked
   * least loaded at the last heartbeat.
   */
  #countPlacement(node: string): void {
    const placed = this.#placed.get(node);
    const now = Date.now();
    if (placed === undefined || now - placed.since > this.backplane.heartbeatIntervalMs) {
      this.#placed.set(node, { count: 1, since: now });
    } else {
      placed.count++;
    }
  }

  /** The least-loaded live node that takes new sessions (ties: this node). */
  #place(key: string): string | undefined {
    const candidates = this.#candidates();
    const now = Date.now();
    return leastLoaded(
      key,
      candidates,
      (member) => {
        // Every node, this one included, by its last heartbeat plus recent placements: the
        // same staleness for all, so that equally loaded nodes tie (and keep their own).
        const placed = this.#placed.get(member.nodeId);
        const recent =
          placed !== undefined && now - placed.since <= this.backplane.heartbeatIntervalMs
            ? placed.count
            : 0;
        return member.sessions + recent;
      },
      this.nodeId,
    );
  }

  /** Live, non-draining, reachable members (this one while it is running). */
  #candidates(): ClusterMember[] {
    return this.backplane.members().filter((member) => {
      if (member.nodeId === this.nodeId) return this.#state === "running";
      return !member.draining && this.#isLive(member.nodeId);
    });
  }

  #isLive(nodeId: string): boolean {
    const since = this.#unreachable.get(nodeId);
    if (since !== undefined) {
      if (Date.now() - since < this.backplane.downAfterMs + this.leaseTtlMs) return false;
      this.#unreachable.delete(nodeId);
    }
    return this.backplane.members().some((m) => m.nodeId === nodeId);
  }

  /** Remembers that `key`'s session runs on `node`, forgetting the least recently routed. */
  #hint(key: string, node: string): void {
    this.#hints.delete(key);
    this.#hints.set(key, node);
    if (this.#hints.size > this.maxRouteHints) {
      this.#hints.delete(this.#hints.keys().next().value!);
    }
  }

  #markUnreachable(nodeId: string): void {
    this.#unreachable.set(nodeId, Date.now());
    for (const [key, node] of this.#hints) if (node === nodeId) this.#hints.delete(key);
  }

  /** Asks `node` to answer `request`; undefined when it is not the owner (route again). */
  async #ask(
    node: string,
    sessionKey: string,
    request: RoutedSessionRequest,
    expiresAt?: number,
  ): Promise<{ reply: unknown } | undefined> {
    // A compaction waits for the model (and for the session's active run): it gets the
    // compaction's own time limit, with room to spare, instead of the request timeout. An
    // injection waits for the session's active run, which may take minutes: it gets
    // INJECT_WAIT_MS. A dead owner ends either wait sooner (it is declared down).
    const timeoutMs =
      request.type === "compact"
        ? Math.max(
            this.requestTimeoutMs,
            (request.options?.timeoutMs ?? DEFAULT_COMPACTION_TIMEOUT_MS) * 2 + 5_000,
          )
        : request.type === "inject"
          ? Math.max(this.requestTimeoutMs, INJECT_WAIT_MS)
          : this.requestTimeoutMs;
    const outcome = await this.#request(
      node,
      { t: "request", key: sessionKey, request: request as unknown as JsonValue },
      timeoutMs,
    );
    if (outcome.kind === "ok") return { reply: outcome.value };
    if (outcome.kind === "timeout") {
      const maybe =
        request.type === "info" || request.type === "abort"
          ? ""
          : ` (the ${request.type} may have been carried out there, or be still)`;
      throw new ClusterError(
        "CLUSTER_UNREACHABLE",
        `node ${node} did not answer a ${request.type} request for session ${sessionKey} within ${timeoutMs} ms${maybe}`,
        node,
      );
    }
    if (outcome.kind === "unreachable") {
      this.#markUnreachable(node);
      if (expiresAt !== undefined) {
        await this.#sleep(Math.min(expiresAt - Date.now(), this.leaseTtlMs) + 25);
      }
      return undefined;
    }
    const { code } = outcome.error;
    if (code === "CLUSTER_NOT_OWNER" || code === "CLUSTER_DRAINING") return undefined;
    if (code === "CLUSTER_NOT_RUNNING") {
      await this.#sleep(50);
      return undefined;
    }
    throw toError(outcome.error);
  }

  #follow(key: string, queueId: string, payloadRunId: string, wide: boolean): RunFollower {
    const follower = new RunFollower(this.backplane.pubsub, key, queueId, payloadRunId, wide, (f) =>
      this.#followers.delete(f),
    );
    this.#followers.add(follower);
    return follower;
  }

  #handle(
    follower: RunFollower,
    runId: string,
    disposition: RunHandle["disposition"],
    options: { signal?: AbortSignal },
  ): RunHandle {
    const key = follower.sessionKey;
    const handle = new RunHandle(runId, key, disposition, follower.log, () =>
      this.runtime.session(key).abort(runId),
    );
    const { signal } = options;
    if (signal !== undefined) {
      const onAbort = () => void handle.abort().catch(() => undefined);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        void follower.log.result
          .finally(() => signal.removeEventListener("abort", onAbort))
          .catch(() => undefined);
      }
    }
    return handle;
  }

  // ------------------------------------------------------------------ node messages

  /** Sends a request to `node` and waits for its reply (or learns it is gone). */
  async #request(
    node: string,
    body: NodeMessage,
    timeoutMs = this.requestTimeoutMs,
  ): Promise<RequestOutcome> {
    if (node === this.nodeId) {
      return this.#answer(body).then(
        (value): RequestOutcome => ({ kind: "ok", value }),
        (error: unknown): RequestOutcome => ({ kind: "error", error: errorJson(error) }),
      );
    }
    const id = randomUUID();
    const outcome = new Promise<RequestOutcome>((resolve) => {
      const timer = setTimeout(() => {
        this.#requests.delete(id);
        resolve({ kind: "timeout" });
      }, timeoutMs);
      this.#requests.set(id, { node, resolve, timer });
    });
    try {
      const delivered = await this.backplane.send(node, { ...body, c: id });
      if (!delivered) this.#settle(id, { kind: "unreachable" });
    } catch (error) {
      // The backplane itself failed (Redis down): not a verdict on the node.
      this.#settle(id, { kind: "error", error: errorJson(error) });
    }
    return outcome;
  }

  #settle(id: string, outcome: RequestOutcome): void {
    const request = this.#requests.get(id);
    if (request === undefined) return;
    this.#requests.delete(id);
    clearTimeout(request.timer);
    request.resolve(outcome);
  }

  #onMessage(message: NodeMessage, from: string): void {
    if (typeof message !== "object" || message === null) return;
    const id = typeof message.c === "string" ? message.c : undefined;
    if (message.t === "reply") {
      if (id === undefined) return;
      if (message.ok === true) this.#settle(id, { kind: "ok", value: message.value ?? null });
      else {
        this.#settle(id, {
          kind: "error",
          error: message.error as unknown as ErrorJson,
        });
      }
      return;
    }
    if (id === undefined) return;
    const work = this.#answer(message).then(
      (value) => this.backplane.send(from, { t: "reply", c: id, ok: true, value }),
      (error: unknown) =>
        this.backplane.send(from, {
          t: "reply",
          c: id,
          ok: false,
          error: errorJson(error) as unknown as JsonValue,
        }),
    );
    const tracked = work.catch(() => undefined).finally(() => this.#handlers.delete(tracked));
    this.#handlers.add(tracked);
  }

  /** Serves a request from another node (or from this one). */
  async #answer(message: NodeMessage): Promise<JsonValue> {
    if (!this.#routing()) {
      throw new ClusterError(
        "CLUSTER_NOT_RUNNING",
        `cluster node ${this.nodeId} is ${this.#state}`,
      );
    }
    switch (message.t) {
      case "deliver": {
        const queued = message.message as unknown as QueuedMessage;
        const key = queued.sessionKey;
        this.#fencedStore?.noteMessage(queued);
        await this.#moving.get(key);
        this.#refuseNewWhileDraining(key);
        const heldBefore = this.#held(key) !== undefined;
        const handle = await this.runtime.deliver(queued);
        // A new session placed here has started: the next heartbeat says so.
        if (message.placed === true && !heldBefore && this.#held(key) !== undefined) {
          this.#placedStarted++;
        }
        return { runId: handle.runId, disposition: handle.disposition };
      }
      case "request": {
        const key = String(message.key);
        const request = message.request as unknown as RoutedSessionRequest;
        await this.#moving.get(key);
        if (request.type !== "abort" && request.type !== "delete") {
          this.#refuseNewWhileDraining(key);
        }
        if (request.type === "abort" && this.#held(key) === undefined) return false;
        // Answered here: this node owns the session (or takes it, when nobody does).
        await this.#own(key);
        const session = this.runtime.session(key);
        switch (request.type) {
          case "abort":
            return session.abort(request.runId);
          case "info":
            return (await session.info()) as unknown as JsonValue;
          case "patch":
            return (await session.patch(request.patch)) as unknown as JsonValue;
          case "reset":
            await session.reset();
            return null;
          case "compact":
            return (await session.compact(request.options)) as unknown as JsonValue;
          case "rewind":
            return (await session.rewind(request.options)) as unknown as JsonValue;
          case "inject":
            if (
              typeof request.text !== "string" ||
              request.text === "" ||
              (request.label !== undefined && typeof request.label !== "string") ||
              (request.id !== undefined && typeof request.id !== "string") ||
              (request.idempotencyKey !== undefined &&
                (typeof request.idempotencyKey !== "string" || request.idempotencyKey === "")) ||
              (request.savedAfter !== undefined &&
                !(Number.isSafeInteger(request.savedAfter) && request.savedAfter >= 0))
            ) {
              throw new InvalidArgumentError(
                `malformed inject request ${JSON.stringify(request).slice(0, 200)}`,
              );
            }
            // With its id (and, on a retry, where to look for it): saved once.
            return (await this.runtime.answerRequest(key, request)) as JsonValue;
          case "delete": {
            const deleted = await session.delete(request.options);
            await this.#release(key, "released");
            return deleted as unknown as JsonValue;
          }
          default:
            throw new InvalidArgumentError(`unknown session request ${JSON.stringify(request)}`);
        }
      }
      case "revive": {
        const key = String(message.key);
        this.#refuseNewWhileDraining(key);
        await this.#revive(key);
        return null;
      }
      default:
        throw new InvalidArgumentError(`unknown cluster message type ${String(message.t)}`);
    }
  }

  #refuseNewWhileDraining(key: string): void {
    if (this.#state === "draining" && this.#held(key) === undefined) {
      throw new ClusterError(
        "CLUSTER_DRAINING",
        `cluster node ${this.nodeId} is draining and takes no new sessions`,
      );
    }
  }

  // ------------------------------------------------------------------ membership

  #onMembership(event: MembershipEvent): void {
    emitTelemetry("beamclaw:cluster.membership", () => ({
      nodeId: this.nodeId,
      type: event.type,
      member: event.member.nodeId,
    }));
    if (event.type !== "down" && event.type !== "leave") return;
    const gone = event.member.nodeId;
    for (const [key, node] of this.#hints) if (node === gone) this.#hints.delete(key);
    for (const [id, request] of this.#requests) {
      if (request.node === gone) this.#settle(id, { kind: "unreachable" });
    }
    if (event.type === "down") {
      for (const follower of this.#followers) if (follower.target === gone) follower.ownerDown();
    }
    // Its sessions are orphans once their leases expire (at once, for a graceful leave).
    this.#requestSweep();
    this.#later(() => this.#requestSweep(), this.leaseTtlMs + 50);
  }

  // ------------------------------------------------------------------ leases

  #held(key: string): HeldLease | undefined {
    const held = this.#leases.get(key);
    if (held === undefined || performance.now() >= held.validUntil) return undefined;
    return held;
  }

  #acquire(key: string): Promise<Lease | undefined> {
    const existing = this.#acquiring.get(key);
    if (existing !== undefined) return existing;
    const attempt = (async () => {
      const sentAt = performance.now();
      const lease = await this.store.locks.acquire(leaseName(key), {
        owner: this.nodeId,
        ttlMs: this.leaseTtlMs,
      });
      if (lease === undefined) return undefined;
      if (this.#state === "stopping" || this.#state === "stopped") {
        await this.store.locks.release(lease).catch(() => undefined);
        return undefined;
      }
      this.#leases.set(key, {
        lease,
        validUntil: sentAt + this.leaseTtlMs,
        fresh: true,
        acquiredAt: sentAt,
      });
      this.#hints.delete(key);
      emitTelemetry("beamclaw:cluster.lease", () => ({
        nodeId: this.nodeId,
        sessionKey: key,
        event: "acquired",
        token: lease.token,
      }));
      return lease;
    })();
    this.#acquiring.set(key, attempt);
    void attempt
      .finally(() => {
        if (this.#acquiring.get(key) === attempt) this.#acquiring.delete(key);
      })
      .catch(() => undefined);
    return attempt;
  }

  #release(key: string, event: "released" | "lost"): Promise<unknown> {
    const held = this.#leases.get(key);
    if (held === undefined) return Promise.resolve();
    this.#leases.delete(key);
    emitTelemetry("beamclaw:cluster.lease", () => ({
      nodeId: this.nodeId,
      sessionKey: key,
      event,
      token: held.lease.token,
    }));
    if (event === "lost") return Promise.resolve();
    const releasing = this.store.locks.release(held.lease).catch(() => false);
    this.#releasing.add(releasing);
    void releasing.finally(() => this.#releasing.delete(releasing));
    return releasing;
  }

  /**
   * Renews every held lease (one batch). A lease that was lost, or could not be renewed
   * before it may have expired, stops its session here: another node may own it now.
   */
  async #renewAll(): Promise<void> {
    if (this.#state === "stopped" || (this.#state === "stopping" && !this.#holdingLeases)) return;
    const now = performance.now();
    const period = Math.max(10, Math.floor(this.leaseTtlMs / 3));
    await Promise.all(
      [...this.#leases].map(async ([key, held]) => {
        // A session that started here under this lease and has not stopped cleanly is
        // starting, or starting again after a crash: not registered, but not gone either.
        const active =
          this.runtime.registry.whereis(`session:${key}`) !== undefined ||
          this.#writeFences.get(key) === held.lease.token;
        if (
          !active &&
          !this.#holdingLeases &&
          !this.#moving.has(key) &&
          now - held.acquiredAt > this.leaseTtlMs
        ) {
          // The session is gone (hibernated or given up) without telling: let the lease go,
          // and follow its unfinished runs to whichever node takes it.
          this.#widenFollowers(key);
          await this.#release(key, "released");
          return;
        }
        const sentAt = performance.now();
        let renewed: Lease | undefined | null = null;
        try {
          renewed = await this.store.locks.renew(held.lease, this.leaseTtlMs);
        } catch {
          // Unreachable store: keep trying while the lease may still be ours.
        }
        if (this.#leases.get(key) !== held) return;
        if (renewed !== null && renewed !== undefined) {
          held.lease = renewed;
          held.validUntil = sentAt + this.leaseTtlMs;
          if (performance.now() < held.validUntil) this.#publishHeldBack(held);
          return;
        }
        if (renewed === undefined || performance.now() + period >= held.validUntil) {
          this.#fence(key);
        }
      }),
    );
  }

  /**
   * Publishes a session's run event (see {@link ClusterNode.sessionPubSub}): now while this
   * node certainly holds the lease the session runs under; held back while the lease is in
   * doubt; dropped when the session no longer runs under a lease of this node.
   */
  #publishSessionEvent(topic: string, message: unknown): Promise<void> {
    const pubsub = this.backplane.pubsub;
    const key = runEventSession(topic, message);
    if (key === undefined) return pubsub.publish(topic, message);
    const held = this.#leases.get(key);
    const ranUnder = this.#writeFences.get(key);
    if (held === undefined || (ranUnder !== undefined && held.lease.token !== ranUnder)) {
      // The lease was lost (or passed on) under the session: its run goes on elsewhere.
      return Promise.resolve();
    }
    if (performance.now() < held.validUntil) {
      this.#publishHeldBack(held);
      return pubsub.publish(topic, message);
    }
    held.heldBack ??= [];
    if (held.heldBack.length < MAX_HELD_BACK_EVENTS) held.heldBack.push({ topic, event: message });
    return Promise.resolve();
  }

  /** Publishes the events held back while `held` was in doubt, in order. */
  #publishHeldBack(held: HeldLease): void {
    const events = held.heldBack;
    if (events === undefined) return;
    held.heldBack = undefined;
    const pubsub = this.backplane.pubsub;
    for (const { topic, event } of events) pubsub.publish(topic, event).catch(() => undefined);
  }

  /** This node lost `key`'s lease: the session stops here at once (its messages stay queued). */
  #fence(key: string): void {
    this.#widenFollowers(key);
    void this.#release(key, "lost");
    const actor = this.runtime.registry.whereis<SessionActor>(`session:${key}`);
    if (actor !== undefined) void actor.stop("normal").catch(() => undefined);
  }

  /** The runs of `key` this node's callers follow may now happen on another node. */
  #widenFollowers(key: string): void {
    for (const follower of this.#followers) if (follower.sessionKey === key) follower.widen();
  }

  // ------------------------------------------------------------------ failover sweep

  #requestSweep(): void {
    if (this.#state !== "running" && this.#state !== "draining") return;
    if (this.#sweeping !== undefined) {
      this.#sweepAgain = true;
      return;
    }
    this.#sweeping = this.#sweep()
      .catch(() => undefined)
      .finally(() => {
        this.#sweeping = undefined;
        if (this.#sweepAgain) {
          this.#sweepAgain = false;
          this.#requestSweep();
        }
      });
  }

  /**
   * Finds messages no session is working on: those of sessions nobody owns (their node died
   * or left; revived on the node the rendezvous hash picks, or on any node once they are
   * old), and those of this node's sessions whose delivery was lost. Also ends followed runs
   * whose events were lost while the backplane was down.
   *
   * The queue is read page by page (`queue.pending` with `after`), oldest first, at most
   * `sweepPagesPerPass` pages per pass; a pass that stops before the end leaves the cursor
   * for the next one, so a message is looked at however many older ones wait before it. One
   * round reads the queue once through, over as many passes as it takes.
   */
  async #sweep(): Promise<void> {
    this.#sweepRound ??= { after: undefined, followers: new Set(this.#followers), seen: new Set() };
    const round = this.#sweepRound;
    try {
      for (let page = 0; page < this.sweepPagesPerPass; page++) {
        const pending = await this.store.queue.pending({
          limit: this.sweepPageSize,
          ...(round.after === undefined ? {} : { after: round.after }),
        });
        const followed = new Set([...round.followers].map((f) => f.queueId));
        for (const message of pending) if (followed.has(message.id)) round.seen.add(message.id);
        await this.#sweepPage(pending);
        if (pending.length < this.sweepPageSize) {
          // The end of the queue: the round is complete, the next pass starts a new one.
          this.#sweepRound = undefined;
          await this.#resyncFollowers(round.seen, round.followers);
          return;
        }
        round.after = pending.at(-1)!.id;
      }
    } catch (error) {
      // An unreadable queue (or a cursor it refuses) starts the next pass from the beginning.
      if (this.#sweepRound === round) this.#sweepRound = undefined;
      throw error;
    }
  }

  /** One page of the sweep: revives the orphans among its sessions, redelivers lost messages. */
  async #sweepPage(pending: QueuedMessage[]): Promise<void> {
    for (const message of pending) {
      if (this.#held(message.sessionKey) !== undefined) this.#fencedStore?.noteMessage(message);
    }
    const now = Date.now();
    const bySession = new Map<string, QueuedMessage[]>();
    for (const message of pending) {
      const list = bySession.get(message.sessionKey);
      if (list === undefined) bySession.set(message.sessionKey, [message]);
      else list.push(message);
    }
    const orphanAfterMs = this.requestTimeoutMs + this.sweepIntervalMs;
    await Promise.all(
      [...bySession].map(async ([key, messages]) => {
        if (this.#moving.has(key)) return;
        if (this.#held(key) !== undefined) {
          for (const message of messages) {
            if (now - message.enqueuedAt < orphanAfterMs) continue;
            await this.runtime.deliver(message).catch(() => undefined);
          }
          return;
        }
        if (this.#state !== "running") return;
        const holder = await this.store.locks.holder(leaseName(key));
        if (holder !== undefined) {
          if (!this.#isLive(holder.owner) && holder.owner !== this.nodeId) {
            this.#later(() => this.#requestSweep(), Math.max(0, holder.expiresAt - now) + 50);
          }
          return;
        }
        const candidates = this.#candidates().map((m) => m.nodeId);
        const chosen = rendezvous(key, candidates);
        const oldest = Math.min(...messages.map((m) => m.enqueuedAt));
        if (chosen !== this.nodeId && now - oldest < 3 * this.sweepIntervalMs + orphanAfterMs) {
          return;
        }
        const lease = await this.#acquire(key);
        if (lease === undefined) return;
        emitTelemetry("beamclaw:cluster.failover", () => ({
          nodeId: this.nodeId,
          sessionKey: key,
          pending: messages.length,
        }));
        await this.#revive(key).catch(() => undefined);
      }),
    );
  }

  /** Starts session `key` here (recovering: its queued messages run again). */
  async #revive(key: string): Promise<void> {
    await this.#own(key);
    await this.runtime.session(key).info();
  }

  /**
   * Makes sure this node holds `key`'s lease, taking it when nobody does, so that the
   * session's requests are answered here (routing sees the lease and stays local).
   */
  async #own(key: string): Promise<void> {
    if (this.#held(key) !== undefined) return;
    if ((await this.#acquire(key)) !== undefined) return;
    const holder = await this.store.locks.holder(leaseName(key));
    throw new ClusterError(
      "CLUSTER_NOT_OWNER",
      `session ${key} is owned by node ${holder?.owner ?? "(unknown)"}`,
      holder?.owner,
    );
  }

  /**
   * Ends followed runs whose message is acknowledged but whose `run-end` never came, after a
   * round of the sweep read the whole queue: `pendingIds` are the ids of `judged` (the
   * followers when the round began) it found pending. A follower that began during the round
   * is judged by the next one.
   */
  async #resyncFollowers(pendingIds: Set<string>, judged: Set<RunFollower>): Promise<void> {
    for (const follower of [...this.#followers]) {
      if (follower.closed || !judged.has(follower)) continue;
      if (pendingIds.has(follower.queueId)) {
        follower.staleSweeps = 0;
        continue;
      }
      follower.staleSweeps++;
      if (follower.staleSweeps < 2) continue;
      const result = await this.#rebuildResult(follower).catch(() => undefined);
      if (result !== undefined) follower.finish(result);
    }
  }

  /**
   * A run's result from the transcript, for a run whose events were not delivered: its live
   * entries (an attempt cancelled by a discard marker, after a failed save or a crash, left
   * out), with the usage and cost saved with its assistant messages.
   */
  async #rebuildResult(follower: RunFollower): Promise<RunResult> {
    const runIds = new Set([follower.runId, follower.payloadRunId]);
    const records = await readBackToRunStart(this.store, follower.sessionKey, runIds);
    const messages: ModelMessage[] = [];
    const usage: RunResult["usage"] = { inputTokens: 0, outputTokens: 0 };
    let costUsd = 0;
    let runId = follower.runId;
    for (const record of liveEntries(records.reverse())) {
      const entry = record.entry as { runId?: string; message?: ModelMessage };
      if (entry.runId === undefined || !runIds.has(entry.runId) || entry.message === undefined) {
        continue;
      }
      runId = entry.runId;
      if (entry.message.role !== "user") messages.push(entry.message);
      const call = savedCallUsage(record.entry);
      if (call === undefined) continue;
      usage.inputTokens += call.inputTokens;
      usage.outputTokens += call.outputTokens;
      if (call.cacheReadTokens > 0) {
        usage.cacheReadTokens = (usage.cacheReadTokens ?? 0) + call.cacheReadTokens;
      }
      if (call.cacheWriteTokens > 0) {
        usage.cacheWriteTokens = (usage.cacheWriteTokens ?? 0) + call.cacheWriteTokens;
      }
      costUsd += call.costUsd;
    }
    const last = messages.findLast((m) => m.role === "assistant");
    const text =
      last?.content.map((part) => (part.type === "text" ? part.text : "")).join("") ?? "";
    const base = {
      runId,
      sessionKey: follower.sessionKey,
      text,
      messages,
      steps: messages.filter((m) => m.role === "assistant").length,
      usage,
      costUsd,
    };
    if (last !== undefined) return { ...base, status: "completed" };
    return {
      ...base,
      status: "failed",
      error: {
        code: "RESULT_UNKNOWN",
        message: "the run ended while its events could not be delivered; see the transcript",
      },
    };
  }

  // ------------------------------------------------------------------ drain

  /** Lets session `key` finish its runs, stops it here, and hands it on if messages wait. */
  async #handOver(key: string, deadline: number): Promise<void> {
    let done!: () => void;
    const moved = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.#moving.set(key, moved);
    try {
      const name = `session:${key}`;
      for (;;) {
        const actor = this.runtime.registry.whereis<SessionActor>(name);
        if (actor === undefined || performance.now() >= deadline) break;
        const info = await actor.call({ type: "info" }).catch(() => undefined);
        const idle =
          info === undefined ||
          ((info as { activeRunId?: string }).activeRunId === undefined &&
            (info as { queued: number }).queued === 0);
        if (idle) break;
        await sleep(20);
      }
      const actor = this.runtime.registry.whereis<SessionActor>(name);
      if (actor !== undefined) await actor.stop("normal").catch(() => undefined);
      await this.#release(key, "released");
      const waiting = await this.store.queue.pending({ sessionKey: key, limit: 1 });
      if (waiting.length > 0) {
        const target = this.#place(key);
        if (target !== undefined && target !== this.nodeId) {
          await this.#request(target, { t: "revive", key });
        }
      }
    } catch {
      // The sweep of the other nodes takes over whatever is left.
    } finally {
      this.#moving.delete(key);
      done();
    }
  }

  // ------------------------------------------------------------------ timers

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#later(resolve, Math.max(0, ms)));
  }

  #later(fn: () => void, ms: number): void {
    if (this.#state === "stopping" || this.#state === "stopped") {
      fn();
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }
}

/** The session of a run event published on `session:<key>` or `events:global`, if it is one. */
function runEventSession(topic: string, message: unknown): string | undefined {
  if (typeof message !== "object" || message === null) return undefined;
  const { sessionKey, runId } = message as { sessionKey?: unknown; runId?: unknown };
  if (typeof sessionKey !== "string" || typeof runId !== "string") return undefined;
  return topic === `session:${sessionKey}` || topic === "events:global" ? sessionKey : undefined;
}

/** The lock name of a session's lease. */
export function leaseName(sessionKey: string): string {
  return `session:${sessionKey}`;
}

/** A number of ms from `min` to a timer's limit (Node fires a longer timer at once). */
function positiveMs(value: unknown, fallback: number, what: string, min = 1): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" ||
    !Number.isFinite(value) ||
    value < min ||
    value > MAX_TIMER_DELAY_MS
  ) {
    throw new InvalidArgumentError(
      `${what} must be a number of ms from ${min} to ${MAX_TIMER_DELAY_MS}, got ${String(value)}`,
    );
  }
  return value;
}

function positiveInteger(
  value: unknown,
  fallback: number,
  what: string,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? ">= 1" : `within 1..${max}`;
    throw new InvalidArgumentError(`${what} must be an integer ${range}, got ${String(value)}`);
  }
  return value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function toJson(message: QueuedMessage): JsonValue {
  return { ...message } as unknown as JsonValue;
}

interface ErrorJson {
  code: string;
  message: string;
  owner?: string;
  limit?: number;
  /** An overload's suggested wait (`OverloadedError.retryAfterMs`). */
  retryAfterMs?: number;
}

function errorJson(error: unknown): ErrorJson {
  if (isBeamClawError(error)) {
    const { owner, limit, retryAfterMs } = error as {
      owner?: unknown;
      limit?: unknown;
      retryAfterMs?: unknown;
    };
    return {
      code: error.code,
      message: error.message,
      ...(typeof owner === "string" ? { owner } : {}),
      ...(typeof limit === "number" ? { limit } : {}),
      ...(typeof retryAfterMs === "number" ? { retryAfterMs } : {}),
    };
  }
  return { code: "INTERNAL", message: error instanceof Error ? error.message : String(error) };
}

/** The typed error of a remote failure (class by code, so `XError.isInstance` holds). */
function toError(error: ErrorJson): BeamClawError {
  switch (error.code) {
    case "OVERLOADED":
      return new OverloadedError(error.message, error.limit ?? 0, {
        retryAfterMs: error.retryAfterMs,
      });
    case "INVALID_ARGUMENT":
      return new InvalidArgumentError(error.message);
    case "SESSION_BUSY":
      return new SessionBusyError(error.message);
    case "INVALID_SESSION_KEY":
      return new InvalidSessionKeyError("", error.message);
    case "MAX_CHILDREN":
      return new MaxChildrenError(error.limit ?? 0);
    case "CLUSTER_NOT_OWNER":
    case "CLUSTER_DRAINING":
    case "CLUSTER_UNREACHABLE":
    case "CLUSTER_NOT_RUNNING":
      return new ClusterError(error.code, error.message, error.owner);
    default:
      return new BeamClawError(error.code, error.message);
  }
}

/** Transcript entries read at a time when a run's result is rebuilt. */
const REBUILD_PAGE = 200;

/**
 * The newest entries of `key`'s transcript back to the start of the run saved under one of
 * `runIds` (newest first): pages are read back until an entry of another run (not a discard
 * marker) comes before one of the run's messages, so that however many entries a long run
 * saved, all of them are read (and any discarded attempt with its marker), or until the
 * transcript's start.
 */
async function readBackToRunStart(
  store: Store,
  key: string,
  runIds: ReadonlySet<string>,
): Promise<TranscriptRecord[]> {
  const records: TranscriptRecord[] = [];
  let seenRun = false;
  for (let beforeSeq: number | undefined; ; ) {
    const page = await store.transcripts.read(key, {
      order: "desc",
      limit: REBUILD_PAGE,
      ...(beforeSeq === undefined ? {} : { beforeSeq }),
    });
    records.push(...page);
    for (const record of page) {
      const entry = record.entry as { runId?: unknown; message?: unknown; discarded?: unknown };
      const ofRun = typeof entry.runId === "string" && runIds.has(entry.runId);
      if (ofRun && entry.message !== undefined) seenRun = true;
      else if (seenRun && !ofRun && entry.discarded !== true) return records;
    }
    if (page.length < REBUILD_PAGE) return records;
    beforeSeq = page.at(-1)!.seq;
  }
}
