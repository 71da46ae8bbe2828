/**
 * Cron across nodes: a job runs once per due time, never on two nodes, and the jobs of a
 * node that died are picked up by another.
 *
 * Two pieces, meant to be used together:
 * - {@link ClusterSingleton} runs one instance of a service (an agent's `CronService`) on
 *   exactly one node at a time, through a lease; when that node dies the lease expires and
 *   another node starts the service, which catches up on missed and interrupted runs as on
 *   a restart.
 * - {@link CronRunGuard} claims each `(job, due time)` once in the shared store
 *   (set-if-absent with a TTL, fenced by the singleton's lease), so that a node that lost
 *   its lease without noticing yet (a long pause) cannot run a due time the new holder runs.
 */

import { CLAIM_MISSED, type ClaimMissed, reportRunClaimed } from "../cron/run-claim.js";
import type { CronJob, CronJobChange, CronJobRunner, CronSync } from "../cron/types.js";
import { FencedError, InvalidArgumentError } from "../errors.js";
import type { PubSub } from "../runtime/pubsub.js";
import type { Lease, Store } from "../store/types.js";

/** A fencing token to check a write against: the lock's current token must equal `token`. */
export interface Fence {
  lock: string;
  token: number;
}

/** How long a claimed due time is remembered by default: 7 days. */
export const DEFAULT_CRON_CLAIM_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

/** Options of {@link CronRunGuard}. */
export interface CronRunGuardOptions {
  /** The store every node shares (its `kv`). */
  store: Pick<Store, "kv">;
  /** This node's id, recorded with each claim. */
  nodeId: string;
  /** How long a claim is kept (must exceed how late a node may still fire a due time). Default 7 days. */
  retentionMs?: number;
}

/** What {@link CronRunGuard.runOnce} did. */
export type RunOnceResult<T> =
  | { ran: true; value: T }
  /** Another node claimed the due time first (`claimedBy`), or this node's fence is stale. */
  | { ran: false; claimedBy: string | undefined; fenced: boolean };

/**
 * Claims `(jobId, dueTime)` pairs cluster-wide: the first node to claim one runs it, every
 * other gets `ran: false`. The claim is a `kv` set-if-absent (`cron-run:<jobId>:<dueTime>`)
 * with a TTL, optionally fenced by a lease.
 *
 * @example
 * ```ts
 * const guard = new CronRunGuard({ store, nodeId: node.nodeId });
 * const outcome = await guard.runOnce("nightly-report", scheduledAt, () => report());
 * if (!outcome.ran) console.log(`already run by ${outcome.claimedBy}`);
 * ```
 */
export class CronRunGuard {
  readonly nodeId: string;
  readonly retentionMs: number;
  readonly #store: Pick<Store, "kv">;

  constructor(options: CronRunGuardOptions) {
    if (typeof options !== "object" || options === null || options.store === undefined) {
      throw new InvalidArgumentError("CronRunGuard needs { store, nodeId }");
    }
    if (typeof options.nodeId !== "string" || options.nodeId === "") {
      throw new InvalidArgumentError("CronRunGuard nodeId must be a non-empty string");
    }
    const retention = options.retentionMs ?? DEFAULT_CRON_CLAIM_RETENTION_MS;
    if (!Number.isSafeInteger(retention) || retention < 1) {
      throw new InvalidArgumentError(
        `retentionMs must be a whole number of ms >= 1, got ${retention}`,
      );
    }
    this.#store = options.store;
    this.nodeId = options.nodeId;
    this.retentionMs = retention;
  }

  /**
   * Claims the due time. Resolves `true` for the one claim that wins, `false` for the
   * others; with `fence`, a stale token also loses (`FencedError` is turned into `false`).
   */
  async claim(jobId: string, dueTime: number, options: { fence?: Fence } = {}): Promise<boolean> {
    return (await this.#claim(jobId, dueTime, options.fence)).won;
  }

  /** Runs `fn` if this node wins the claim of `(jobId, dueTime)`; otherwise does nothing. */
  async runOnce<T>(
    jobId: string,
    dueTime: number,
    fn: () => Promise<T>,
    options: { fence?: Fence } = {},
  ): Promise<RunOnceResult<T>> {
    if (typeof fn !== "function") throw new InvalidArgumentError("runOnce needs a function");
    const claim = await this.#claim(jobId, dueTime, options.fence);
    if (!claim.won) return { ran: false, claimedBy: claim.by, fenced: claim.fenced };
    return { ran: true, value: await fn() };
  }

  async #claim(
    jobId: string,
    dueTime: number,
    fence: Fence | undefined,
  ): Promise<{ won: boolean; by: string | undefined; fenced: boolean }> {
    if (typeof jobId !== "string" || jobId === "") {
      throw new InvalidArgumentError("a cron job id must be a non-empty string");
    }
    if (!Number.isSafeInteger(dueTime)) {
      throw new InvalidArgumentError(`dueTime must be an integer epoch ms, got ${dueTime}`);
    }
    const key = `cron-run:${jobId}:${dueTime}`;
    try {
      const won = await this.#store.kv.set(
        key,
        { nodeId: this.nodeId, at: Date.now() },
        { ifAbsent: true, ttlMs: this.retentionMs, ...(fence === undefined ? {} : { fence }) },
      );
      if (won) return { won: true, by: this.nodeId, fenced: false };
    } catch (error) {
      if (FencedError.isInstance(error)) return { won: false, by: undefined, fenced: true };
      throw error;
    }
    const holder = await this.#store.kv.get<{ nodeId?: string }>(key);
    return { won: false, by: holder?.nodeId, fenced: false };
  }
}

/**
 * Wraps a cron job runner so that scheduled and catch-up runs go through `guard`: the node
 * that claims the due time first runs the job; on any other node the run is skipped and
 * reported `{ status: "ok", skipped: true }`, which the `CronService` does not record
 * (the node that ran it does). Manual runs (`runNow`) are never skipped.
 *
 * `agentRuntimeJobRunner(node.runtime)` does this by itself for the runtime of a
 * `ClusterNode` (with the node's {@link ClusterNode.cronGuard}).
 *
 * @example
 * ```ts
 * runJob: guardCronRunner(agentRuntimeJobRunner(node.runtime), guard, { fence: () => singleton.fence }),
 * ```
 */
export function guardCronRunner(
  runner: CronJobRunner,
  guard: CronRunGuard,
  options: {
    fence?: () => Fence | undefined;
    /**
     * Checked before claiming: `false` skips the run (e.g. the job was removed, disabled or
     * rescheduled through another node, so this node's copy of it is stale).
     */
    current?: (job: CronJob) => Promise<boolean>;
  } = {},
): CronJobRunner {
  const guarded: CronJobRunner = async (job, context) => {
    if (context.trigger === "manual") return runner(job, context);
    if (options.current !== undefined && !(await options.current(job))) {
      return { status: "ok", skipped: true };
    }
    const fence = options.fence?.();
    const run = async () => {
      // The due time is this node's: the service records the run as in progress only now.
      await reportRunClaimed(context);
      return runner(job, context);
    };
    const outcome = await guard.runOnce(job.id, context.scheduledAt, run, {
      ...(fence === undefined ? {} : { fence }),
    });
    return outcome.ran ? outcome.value : { status: "ok", skipped: true };
  };
  // A due time the service found missed (this node was busy or stalled past it) is claimed
  // too before it is recorded `missed`: the node that ran it, or recorded it first, keeps it.
  const claimMissed: ClaimMissed = async (job, scheduledAt) => {
    if (options.current !== undefined && !(await options.current(job))) return false;
    const fence = options.fence?.();
    return guard.claim(job.id, scheduledAt, fence === undefined ? {} : { fence });
  };
  // The `CronService` given this runner leaves the claim of each due time to it (one claim
  // per due time: see `CronService`'s own, used without a guard).
  return Object.assign(guarded, { claimsRuns: true as const, [CLAIM_MISSED]: claimMissed });
}

/** How often the cron services of a cluster reload all their jobs by default: 30 s. */
export const DEFAULT_CRON_RESYNC_MS = 30_000;

/** Options of {@link PubSubCronSync}. */
export interface PubSubCronSyncOptions {
  /** A cluster-wide pub/sub (a `ClusterNode`'s `backplane.pubsub`). */
  pubsub: PubSub & { whenSubscribed?(topic: string): Promise<void> };
  /** The topic of the changes. Default `cron-jobs`. */
  topic?: string;
  /** Period of the services' full reload, ms. Default 30 000. */
  resyncMs?: number;
}

/**
 * The {@link CronSync} of a cluster over its pub/sub: one topic (`cron-jobs`) carries which
 * agent's jobs changed; each node's `CronService` of that agent reloads them
 * from the shared store. The pub/sub delivers at most once, so the services also reload
 * everything every `resyncMs`. `ClusterNode` makes one (`node.cronSync`).
 *
 * @example
 * ```ts
 * const sync = new PubSubCronSync({ pubsub: backplane.pubsub, resyncMs: 10_000 });
 * const cron = await new CronService({ agentId: "ops", store, runJob, sync }).start();
 * ```
 */
export class PubSubCronSync implements CronSync {
  /** Period of the services' full reload, ms. */
  readonly resyncMs: number;
  /** The pub/sub topic of the changes. */
  readonly topic: string;
  readonly #pubsub: PubSubCronSyncOptions["pubsub"];

  constructor(options: PubSubCronSyncOptions) {
    if (typeof options !== "object" || options === null || options.pubsub === undefined) {
      throw new InvalidArgumentError("PubSubCronSync needs { pubsub }");
    }
    const resyncMs = options.resyncMs ?? DEFAULT_CRON_RESYNC_MS;
    if (!Number.isSafeInteger(resyncMs) || resyncMs < 1) {
      throw new InvalidArgumentError(`resyncMs must be a whole number of ms >= 1, got ${resyncMs}`);
    }
    const topic = options.topic ?? "cron-jobs";
    if (typeof topic !== "string" || topic === "") {
      throw new InvalidArgumentError("topic must be a non-empty string");
    }
    this.#pubsub = options.pubsub;
    this.resyncMs = resyncMs;
    this.topic = topic;
  }

  /** Publishes `change` to every node (this one's subscribers included). */
  publish(change: CronJobChange): Promise<void> {
    return this.#pubsub.publish(this.topic, {
      agentId: change.agentId,
      jobId: change.jobId,
      origin: change.origin,
    });
  }

  /** Receives every node's changes; returns the unsubscribe function. */
  subscribe(handler: (change: CronJobChange) => void): () => void {
    return this.#pubsub.subscribe<CronJobChange>(this.topic, (change) => handler(change));
  }

  /** Resolves once other nodes' changes reach this node's subscriptions. */
  whenSubscribed(): Promise<void> {
    return this.#pubsub.whenSubscribed?.(this.topic) ?? Promise.resolve();
  }
}

/** The cron guard and change feed of each clustered runtime, and its shared store. */
const runtimeGuards = new WeakMap<
  object,
  { guard: CronRunGuard; store: Pick<Store, "cron">; sync: CronSync | undefined }
>();

/**
 * Makes `guard` the cron run guard of `runtime` (and `sync` its cron change feed):
 * `agentRuntimeJobRunner(runtime)` then guards every scheduled run with it and hands the
 * feed to the `CronService`s it runs for. `ClusterNode` does this for its runtime.
 * @internal
 */
export function setClusterCronGuard(
  runtime: object,
  guard: CronRunGuard,
  store: Pick<Store, "cron">,
  sync?: CronSync,
): void {
  runtimeGuards.set(runtime, { guard, store, sync });
}

/**
 * The cron change feed of a clustered runtime (the `ClusterNode`'s `cronSync`), or
 * `undefined` for a single-process one.
 */
export function clusterCronSyncOf(runtime: object): CronSync | undefined {
  return runtimeGuards.get(runtime)?.sync;
}

/**
 * The cron run guard of a clustered runtime (the `ClusterNode`'s), or `undefined` for a
 * single-process one.
 */
export function clusterCronGuardOf(runtime: object): CronRunGuard | undefined {
  return runtimeGuards.get(runtime)?.guard;
}

/**
 * `runner` guarded for a clustered runtime: each due time is claimed through the node's
 * guard, and a run of a job whose shared record was removed, disabled or rescheduled (by
 * another node's service) is skipped. `runner` itself for a single-process runtime.
 * @internal
 */
export function clusterCronRunner(runtime: object, runner: CronJobRunner): CronJobRunner {
  const cluster = runtimeGuards.get(runtime);
  if (cluster === undefined) return runner;
  return guardCronRunner(runner, cluster.guard, {
    current: async (job) => {
      const stored = await cluster.store.cron.getJob(job.id);
      return (
        stored !== undefined &&
        stored.enabled !== false &&
        JSON.stringify(stored.schedule) === JSON.stringify(job.schedule)
      );
    },
  });
}

/** What a {@link ClusterSingleton} gives the service it starts. */
export interface SingletonContext {
  /** The lease's fencing token: pass it to writes that a stale holder must not make. */
  fence: Fence;
  /** Aborts when this node loses the lease (the service is being stopped). */
  signal: AbortSignal;
}

/** Options of {@link ClusterSingleton}. */
export interface ClusterSingletonOptions {
  /** The service's name; its lease is the lock `singleton:<name>`. */
  name: string;
  /** The store every node shares (its `locks`). */
  store: Pick<Store, "locks">;
  /** This node's id (the lease owner). */
  nodeId: string;
  /** The lease: renewed every third of it; another node takes over once it expires. Default 5000 ms. */
  ttlMs?: number;
  /** Starts the service on this node; resolves with the function that stops it. */
  start(context: SingletonContext): Promise<() => Promise<void>>;
}

/**
 * Runs one instance of a service in the cluster: every node creates and starts the
 * singleton, the one that takes the lease runs the service, and when that node dies (or
 * stops) another takes the lease and starts it within about `ttlMs`. A node that cannot
 * renew the lease in time stops its instance.
 *
 * @example
 * ```ts
 * const singleton = new ClusterSingleton({
 *   name: `cron:${agentId}`,
 *   store,
 *   nodeId: node.nodeId,
 *   start: async () => {
 *     const cron = await new CronService({
 *       agentId, store,
 *       runJob: guardCronRunner(agentRuntimeJobRunner(node.runtime), guard, { fence: () => singleton.fence }),
 *     }).start();
 *     return () => cron.stop();
 *   },
 * });
 * await singleton.start();
 * // ... later
 * await singleton.stop();
 * ```
 */
export class ClusterSingleton {
  readonly name: string;
  readonly nodeId: string;
  readonly ttlMs: number;
  readonly #store: Pick<Store, "locks">;
  readonly #start: ClusterSingletonOptions["start"];
  #lease: Lease | undefined;
  #validUntil = 0;
  #stopService: (() => Promise<void>) | undefined;
  #controller: AbortController | undefined;
  /** The service's start in progress (the lease is renewed meanwhile). */
  #starting: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #state: "new" | "running" | "stopped" = "new";

  constructor(options: ClusterSingletonOptions) {
    if (typeof options !== "object" || options === null) {
      throw new InvalidArgumentError("ClusterSingleton options must be an object");
    }
    if (typeof options.name !== "string" || options.name === "") {
      throw new InvalidArgumentError("ClusterSingleton name must be a non-empty string");
    }
    if (typeof options.nodeId !== "string" || options.nodeId === "") {
      throw new InvalidArgumentError("ClusterSingleton nodeId must be a non-empty string");
    }
    if (typeof options.start !== "function") {
      throw new InvalidArgumentError("ClusterSingleton needs a start function");
    }
    const ttl = options.ttlMs ?? 5_000;
    if (!Number.isSafeInteger(ttl) || ttl < 30) {
      throw new InvalidArgumentError(`ttlMs must be a whole number of ms >= 30, got ${ttl}`);
    }
    this.name = options.name;
    this.nodeId = options.nodeId;
    this.ttlMs = ttl;
    this.#store = options.store;
    this.#start = options.start;
  }

  /** The lock name of the lease. */
  get lock(): string {
    return `singleton:${this.name}`;
  }

  /** True while the service runs on this node. */
  get leading(): boolean {
    return this.#stopService !== undefined;
  }

  /** The current lease's fence while this node leads. */
  get fence(): Fence | undefined {
    const lease = this.#lease;
    return lease === undefined ? undefined : { lock: this.lock, token: lease.token };
  }

  /** Starts contending for the lease; resolves after the first attempt (led or not; when led, once the service has started). */
  async start(): Promise<void> {
    if (this.#state !== "new") throw new InvalidArgumentError("the singleton was already started");
    this.#state = "running";
    // Tracked, so that a `stop()` meanwhile waits for it (and stops what it started).
    const first = this.#tick();
    this.#ticking = first;
    await first.finally(() => {
      if (this.#ticking === first) this.#ticking = undefined;
    });
    // Renewing from now on, also while the service is still starting.
    this.#schedule();
    await this.#starting;
  }

  /** Stops the service if it runs here and releases the lease. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    clearTimeout(this.#timer);
    await this.#ticking?.catch(() => undefined);
    await this.#resign(true);
  }

  #schedule(): void {
    if (this.#state !== "running") return;
    this.#timer = setTimeout(
      () => {
        this.#ticking = this.#tick().finally(() => {
          this.#ticking = undefined;
          this.#schedule();
        });
      },
      Math.max(10, Math.floor(this.ttlMs / 3)),
    );
  }

  async #tick(): Promise<void> {
    const lease = this.#lease;
    const sentAt = performance.now();
    if (lease !== undefined) {
      let renewed: Lease | undefined | null = null;
      try {
        renewed = await this.#store.locks.renew(lease, this.ttlMs);
      } catch {
        // Unreachable store: keep the service while the lease may still be ours.
      }
      if (renewed) {
        this.#lease = renewed;
        this.#validUntil = sentAt + this.ttlMs;
      } else if (renewed === undefined || performance.now() + this.ttlMs / 3 >= this.#validUntil) {
        await this.#resign(false);
      }
      return;
    }
    let acquired: Lease | undefined;
    try {
      acquired = await this.#store.locks.acquire(this.lock, {
        owner: this.nodeId,
        ttlMs: this.ttlMs,
      });
    } catch {
      return;
    }
    if (acquired === undefined) return;
    if (this.#state !== "running") {
      await this.#store.locks.release(acquired).catch(() => undefined);
      return;
    }
    this.#lease = acquired;
    this.#validUntil = sentAt + this.ttlMs;
    const controller = new AbortController();
    this.#controller = controller;
    // Not awaited by the tick: the lease must be renewed while the service starts.
    const starting = this.#launch(acquired, controller);
    this.#starting = starting;
    void starting.finally(() => {
      if (this.#starting === starting) this.#starting = undefined;
    });
  }

  /** Starts the service under `lease`; stops it at once if the lease went meanwhile. */
  async #launch(lease: Lease, controller: AbortController): Promise<void> {
    let stopService: () => Promise<void>;
    try {
      stopService = await this.#start({
        fence: { lock: this.lock, token: lease.token },
        signal: controller.signal,
      });
    } catch {
      if (this.#controller === controller) {
        this.#controller = undefined;
        this.#lease = undefined;
        await this.#store.locks.release(lease).catch(() => undefined);
      }
      return;
    }
    if (this.#controller !== controller) {
      // Resigned (lease lost, or stopped) while starting: it must not run here.
      await stopService().catch(() => undefined);
      return;
    }
    this.#stopService = stopService;
  }

  async #resign(release: boolean): Promise<void> {
    const stopService = this.#stopService;
    const lease = this.#lease;
    this.#stopService = undefined;
    this.#controller?.abort();
    this.#controller = undefined;
    // A service still starting is stopped as soon as it has started (see #launch).
    await this.#starting?.catch(() => undefined);
    await stopService?.().catch(() => undefined);
    this.#lease = undefined;
    if (release && lease !== undefined)
      await this.#store.locks.release(lease).catch(() => undefined);
  }
}
