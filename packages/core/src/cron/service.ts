import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import type { CronJobConfig } from "../config/schema.js";
import { CronError, describe, InvalidArgumentError } from "../errors.js";
import type { JsonValue } from "../providers/types.js";
import { Actor, type NoReply, noReply, type ReplyTo } from "../runtime/actor.js";
import type { ExitReason } from "../runtime/exit.js";
import { defineLazySignal, LazyAbortController } from "../runtime/lazy-abort.js";
import { describeArg, optionalFunction, requireObject } from "../runtime/validate.js";
import { normalizeAgentId } from "../sessions/session-key.js";
import { iterateKvKeys } from "../store/kv-paging.js";
import type { CronRunPage, Lease, LockStore, Store } from "../store/types.js";
import {
  type CronRunTrace,
  emitTelemetry,
  telemetryTenantOf,
  traceTelemetry,
} from "../telemetry.js";
import {
  type Clock,
  type ElapsedTime,
  elapsedTime,
  systemClock,
  type TimerHandle,
} from "./clock.js";
import { type CronWebhookPayload, deliverRun } from "./delivery.js";
import { type HeapEntry, MinHeap } from "./heap.js";
import { parseJobInput, parseJobPatch } from "./job.js";
import { type ClaimMissed, claimMissedOf, RUN_CLAIMED } from "./run-claim.js";
import { type CompiledSchedule, compileSchedule } from "./schedule.js";
import type {
  CronCatchUpPolicy,
  CronDeliver,
  CronDeliveryResult,
  CronJob,
  CronJobChange,
  CronJobInput,
  CronJobPatch,
  CronJobRunner,
  CronRun,
  CronRunNotStarted,
  CronRunOutcome,
  CronRunStart,
  CronRunStarted,
  CronRunTrigger,
  CronStartOptions,
  CronSync,
} from "./types.js";

/** Backoff after consecutive errors: 30 s, 1 min, 5 min, 15 min, then 60 min. */
export const DEFAULT_CRON_BACKOFF_MS: readonly number[] = Object.freeze([
  30_000, 60_000, 300_000, 900_000, 3_600_000,
]);
/** A run without a result after this long is cleared. */
export const DEFAULT_STUCK_RUN_MS = 2 * 60 * 60 * 1000;
/** A job is disabled after this many errors in a row. */
export const DEFAULT_MAX_CONSECUTIVE_ERRORS = 3;
/** Isolated sessions are deleted this long after their run started. */
export const DEFAULT_ISOLATED_SESSION_TTL_MS = 24 * 60 * 60 * 1000;

/** Missed occurrences recorded one by one before the rest are summed up in one entry. */
const MISSED_RECORDED_EACH = 100;
/**
 * Occurrences of a cron expression counted at most when looking for missed runs. croner
 * steps through them one by one on the event loop (tens of µs each), so a per-second job
 * after days of downtime is counted up to this many, not to the hundreds of thousands.
 */
const MISSED_COUNT_LIMIT = 10_000;
/** How often isolated sessions are swept (checked on activity, never with a timer of its own). */
const SWEEP_INTERVAL_MS = 60 * 60 * 1000;
/** The retry of an internal message refused by a full mailbox. */
const WAKE_RETRY_MS = 10;
/** Default period of the full reload of a synced service. */
const DEFAULT_RESYNC_MS = 30_000;
/** How long an `announce` delivery waits for the host's `deliver` by default. */
const DEFAULT_ANNOUNCE_TIMEOUT_MS = 30_000;
/** Job ids waiting to be reloaded beyond which one full reload is done instead. */
const MAX_PENDING_SYNC = 1_000;
/** In a cluster: how long a write waits for a job's lock before it looks at the holder's lease, and that lease. */
const LOCK_WAIT_MS = 2_000;
const LOCK_TTL_MS = 10_000;
/**
 * How long a write inside the service's actor waits for a job's lock (a merge holds it for a
 * few milliseconds) before the wait moves outside the mailbox (see `#write`, `#deferWrite`).
 */
const MERGE_LOCK_WAIT_MS = 250;
/** `#lockForWrite`: the lock is held longer than a merge takes. */
const BUSY: unique symbol = Symbol("busy");
/**
 * How long the claim of a job's latest fired due time (see `#claimFire`) is kept after it was
 * last taken: past it, a job that fired nothing for that long is claimed afresh, and the key
 * of a removed job is gone from the store.
 */
const FIRE_CLAIM_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** Slack for the clocks of the nodes that write a lease's expiry and read it. */
const LOCK_SKEW_MS = 250;
/** State fields that count up: merged by their difference, so concurrent runs add up. */
const COUNTERS = new Set(["runCount", "missedCount"]);
/**
 * How long the liveness key of a service with runs in progress (`cron:alive:<agentId>:<id>`
 * in `store.kv`) lasts unless renewed; it is renewed every third of it while runs last. A run
 * marker whose writer's key is gone is of a service that died: a service started while the
 * key of a crashed process still lasts records that process's run interrupted once it runs out.
 */
const RUN_LEASE_MS = 30_000;
/**
 * The pages in which a run is looked up in a job's run log (see `CronService.#logged`): the
 * default page, then pages of the most a store lists at once (`CronStore.listRuns`, at most
 * 1000) from where the last one ended.
 */
const RUN_LOOKUP_FIRST_PAGE = 100;
const RUN_LOOKUP_PAGE = 1000;
/** This process, in the running markers its services write (see `RunMarker.process`). */
const PROCESS_ID = randomUUID();
/** The instance ids of this process's services that are started and not yet stopped (or killed). */
const LIVE_SERVICES = new Set<string>();

/** Options of {@link CronService}. */
export interface CronServiceOptions {
  /** The agent whose jobs this service runs. */
  agentId: string;
  /**
   * Where jobs, run logs and the isolated-session index live (`store.cron`, `store.kv`). With
   * a `sync` (a cluster), each write of a job is merged with the stored record under a lock
   * of `store.locks` (when the store has one), so that two nodes changing the same job at
   * once lose neither change.
   */
  store: Pick<Store, "cron" | "kv"> & { readonly locks?: LockStore };
  /** Runs one job; see {@link agentRuntimeJobRunner}. */
  runJob: CronJobRunner;
  /** Delivers `announce` output to a channel target (channels are wired by the host). */
  deliver?: CronDeliver;
  /**
   * Deletes an isolated session once it is older than `isolatedSessionTtlMs`. Default: the
   * runner's own `deleteSession` when it has one (as `agentRuntimeJobRunner` does); without
   * either, isolated sessions are left alone.
   */
  deleteSession?: (sessionKey: string) => Promise<void>;
  /** `fetch` for webhook deliveries. Default the global `fetch`. */
  fetch?: typeof fetch;
  /** Default {@link systemClock}. */
  clock?: Clock;
  /**
   * How long a run may go without a result before it is cleared as stuck. Default 2 h. It is
   * measured with the clock's monotonic time when it has one (as {@link systemClock} does):
   * time the host spent suspended, or a wall clock set forward, does not count.
   */
  stuckRunMs?: number;
  /** Delays after the 1st, 2nd, ... consecutive error; the last repeats. Default 30 s, 1, 5, 15, 60 min. */
  backoffMs?: readonly number[];
  /** Disable a job after this many errors in a row (`Infinity`: never). Default 3. */
  maxConsecutiveErrors?: number;
  /** Default 24 h. */
  isolatedSessionTtlMs?: number;
  /**
   * The change feed shared with the other copies of this agent's service (one per cluster
   * node): changes made here are published, changes made elsewhere are reloaded from the
   * store. Default: the runner's own `cronSync` when it has one (as
   * `agentRuntimeJobRunner(node.runtime)` does on a `ClusterNode`); without either, none.
   */
  sync?: CronSync;
  /**
   * Period of the full reload of this agent's jobs from the store, in ms (of elapsed time).
   * With a `sync` it heals lost notifications: default `sync.resyncMs`, else 30 s. Without
   * one there is no reload unless this is given: set it when other services share the store
   * without a change feed (several processes on one Redis, a restart overlapping the old
   * process), so that a job added, changed or removed on one of them is taken in here within
   * the period (scheduled, rescheduled or dropped) instead of only when asked for by id or on
   * the next start. Each reload lists the agent's jobs once.
   */
  resyncMs?: number;
  /** Run-log entries kept per job. Default 200. */
  runLogKeep?: number;
  /** Characters of output kept in the run log. Default 500. */
  outputSummaryChars?: number;
  /** Default 10 000. */
  webhookTimeoutMs?: number;
  /**
   * How long an `announce` delivery waits for `deliver` to settle, in ms (`Infinity`: for
   * ever). Past it the delivery is recorded as an error `TIMEOUT: ...` (the run itself is
   * not failed by it, and ends at once), and the callback's `signal` aborts. Default 30 000.
   */
  announceTimeoutMs?: number;
  /** Actor name. Default `cron:<agentId>`. */
  name?: string;
  /** Mailbox bound. Default 10 000. */
  mailboxLimit?: number;
}

/** What `status()` reports. */
export interface CronServiceStatus {
  agentId: string;
  jobs: number;
  enabled: number;
  running: number;
  /** The earliest scheduled run of any job, and whose. */
  nextRunAt?: number;
  nextJobId?: string;
  /** True while the service's single timer is armed. */
  timerArmed: boolean;
}

/**
 * How a change sent by a caller takes a job's lock in a cluster (see `#write`): `"call"`, held
 * past `MERGE_LOCK_WAIT_MS`, fails the request with {@link JobLockBusy} so that the caller
 * waits for the lock outside the mailbox and sends the change again; `"none"` (the caller
 * waited for a whole lease and the lock is still taken, by live writers) writes unlocked;
 * `"inside"` (a change sent to the actor directly, not through `#write`, which could not send
 * it again) waits inside the mailbox as long as `#lockJob` does.
 */
type CallLockWait = "call" | "none" | "inside";

/** The requests that change stored jobs (see `#write`). */
const WRITE_OPS: ReadonlySet<CronCall["op"]> = new Set([
  "update",
  "remove",
  "enable",
  "disable",
  "sync-config",
]);

type CronCall =
  | { op: "add"; input: CronJobInput }
  | { op: "update"; id: string; patch: CronJobPatch; lockWait?: CallLockWait }
  | { op: "remove"; id: string; lockWait?: CallLockWait }
  | { op: "get"; id: string }
  | { op: "list" }
  | { op: "enable"; id: string; lockWait?: CallLockWait }
  | { op: "disable"; id: string; lockWait?: CallLockWait }
  | {
      op: "run-now";
      id: string;
      only?: CronStartOptions["only"];
      /** Told once the run has started (its start recorded), before it is launched. */
      onStarted?: (run: Omit<CronRunStarted, "started" | "finished">) => void;
    }
  | { op: "status" }
  | {
      op: "sync-config";
      jobs: readonly CronJobConfig[];
      keep: ReadonlySet<string>;
      lockWait?: CallLockWait;
    }
  | { op: "check-config"; jobs: readonly CronJobConfig[]; movable: ReadonlySet<string> };

/**
 * `tick`: the timer fired, start what is due. `drain`: runs finished, record them. `sync`:
 * jobs changed elsewhere (or the resync period passed), reload them from the store. Due jobs
 * start only on a tick, which comes from a timer: under a constant stream of completions
 * the service still yields to the event loop between batches. `markers`: the liveness of
 * running markers of other services found on start is due to be looked at again.
 */
type CronInfo =
  | { type: "tick" }
  | { type: "drain" }
  | { type: "sync" }
  | { type: "markers" }
  | { type: "flush" };

/** A failed request, carried as a reply so that the service survives bad input. */
class CallFailure {
  constructor(readonly error: unknown) {}
}

/**
 * A caller's change found its job's lock held longer than a merge takes (its holder may have
 * died): the request fails with it, so that the wait for the lock happens outside the mailbox
 * (see `#write`) rather than hold up every request and due job behind it.
 */
class JobLockBusy extends Error {
  constructor(readonly jobId: string) {
    super(`the lock of cron job "${jobId}" is held`);
    this.name = "JobLockBusy";
  }
}

interface ActiveRun {
  readonly runId: string;
  readonly trigger: CronRunTrigger;
  readonly scheduledAt: number;
  readonly startedAt: number;
  /**
   * The clock's monotonic time at the start (when it has one): how long the run has been
   * going is measured with it, so a suspend or a wall-clock jump is not taken for a stuck run.
   */
  readonly startedMonotonic: number | undefined;
  readonly sessionKey: string;
  readonly controller: LazyAbortController;
  readonly waiters: ReplyTo<unknown>[];
  readonly policy: CronCatchUpPolicy | undefined;
  /** The job's schedule when the run started (JSON): a run of an edited schedule does not complete it. */
  readonly schedule: string;
  /**
   * Set when another service on the store claimed this due time first (see `#claimFire`):
   * the run is dropped before it is launched, and nothing is recorded here.
   */
  lost?: boolean;
  /** With `lost`: the due time of the retry after a failed run elsewhere, which this service contends for too. */
  retryAt?: number;
  /**
   * A scheduled or catch-up run of a runner that claims due times itself (a cluster's
   * `guardCronRunner`), until it has claimed this one: writes the running marker, and is
   * called (then cleared) when the runner reports the claim won (see `RUN_CLAIMED`). While
   * it is set, the run may be another node's: it is not recorded as interrupted here.
   */
  unclaimed?: () => Promise<unknown>;
  /** The running marker this run wrote, once written: only it is deleted when the run ends. */
  marker?: RunMarker;
}

/**
 * The record of a job's runs kept in `store.kv` by the services sharing the store (see
 * `#claimFire`): the latest due time fired, and the backoff after the latest failed run.
 * Every field is optional: records of older versions have no `errors` nor `retryAt`.
 */
type FireClaim = {
  /** The latest due time fired, and by which service. */
  scheduledAt?: number;
  by?: string;
  /** The job's errors in a row, on any of the services: the backoff step and the disable count. */
  errors?: number;
  /** After a failed run: the retry's due time, before which no due time is claimed. */
  retryAt?: number;
};

/** What a claim of a due time found (see `#claimFire`). */
type ClaimResult = { won: true; errors: number | undefined } | { won: false; retryAt?: number };

/** Whether claim record `claim` is of a due time later than `scheduledAt` (a run that overtook one due then). */
function overtakes(claim: FireClaim, scheduledAt: number): boolean {
  return typeof claim.scheduledAt === "number" && claim.scheduledAt > scheduledAt;
}

/** A claim record read from the store, or an empty one for anything else. */
function fireClaimOf(value: unknown): FireClaim {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as FireClaim)
    : {};
}

interface Entry extends HeapEntry {
  job: CronJob;
  compiled: CompiledSchedule;
  run: ActiveRun | null;
  removed: boolean;
  /**
   * Why the stored schedule no longer validates (the job was loaded disabled, with `compiled`
   * never due): it cannot be enabled until it is given a new schedule.
   */
  invalid?: string;
  /**
   * In a cluster (with a `sync`): the job as this service last read or wrote it in the store,
   * the base of the three-way merge of its next write (see `#putJob`).
   */
  stored?: CronJob;
  /**
   * In a cluster: the job's latest state is not written yet, because its lock was held
   * longer than a merge takes (see `#deferWrite`); it is written once the lock is free.
   */
  unwritten?: boolean;
}

interface Completion {
  readonly entry: Entry;
  readonly runId: string;
  readonly outcome: CronRunOutcome;
  readonly finishedAt: number;
  readonly delivery: CronDeliveryResult | undefined;
  readonly stuck?: boolean;
  /**
   * A failed run that a later run of another service overtook (see `#findOvertaken`): the
   * claim record that run wrote, whose errors in a row the job takes (this failure is
   * logged, but neither counted nor retried here: the later run's outcome decides).
   */
  overtaken?: FireClaim;
}

/** Kept in `store.kv` while a run is in progress (see `#begin`). */
type RunMarker = {
  /**
   * The service that wrote it (its instance id) and that service's process: a service that
   * starts leaves alone the marker of a writer that is still running (see `#writerAlive`).
   * Absent in markers of older versions, which are left alone until their run is older
   * than a live writer would let it go on (see `#ownerlessRunMs`).
   */
  owner?: string;
  process?: string;
  runId: string;
  startedAt: number;
  scheduledAt: number;
  trigger: CronRunTrigger;
  sessionKey: string;
  /** The job's schedule when the run started (JSON); absent in markers of older versions. */
  schedule?: string;
};

/**
 * A run of another service found in progress on start (see `CronService.#foreign`). Once this
 * service writes its own marker for the job (a new run of it, which takes the marker's key),
 * the run is `detached`: followed by its writer's liveness key alone, and once the writer is
 * gone, recorded `interrupted` unless the job's run log has it (its writer recorded it).
 */
type ForeignRun = { marker: RunMarker; detached?: boolean };

/** Writes of one handler, issued together. */
type Writes = Promise<unknown>[];

function copy<T>(value: T): T {
  return structuredClone(value);
}

/** A list of job ids given to a request, as a set. */
function idSet(value: Iterable<string> | undefined, what: string): Set<string> {
  if (value === undefined) return new Set();
  if (typeof value === "string" || typeof value?.[Symbol.iterator] !== "function") {
    throw new InvalidArgumentError(`${what} must be a list of job ids, got ${describeArg(value)}`);
  }
  return new Set(value);
}

function freshState(): CronJob["state"] {
  return { consecutiveErrors: 0, runCount: 0, missedCount: 0 };
}

function positiveMs(value: number | undefined, fallback: number, what: string): number {
  const ms = value ?? fallback;
  if (typeof ms !== "number" || !(ms > 0)) {
    throw new InvalidArgumentError(`${what} must be > 0 ms, got ${describeArg(ms)}`);
  }
  return ms;
}

/**
 * The cron worker of one agent: its jobs, their schedules and runs, as an actor (one per
 * agent under a {@link CronSupervisor}).
 *
 * Jobs sit in a min-heap by due time and one timer is armed for the earliest, however many
 * jobs there are. When it fires, every due job starts; a run goes through the injected
 * `runJob` outside the mailbox, so a long run never blocks the service. A job never
 * overlaps itself.
 *
 * Reliability rules: a run without a result after `stuckRunMs` (2 h) is aborted and recorded
 * as an error; errors back off 30 s, 1 min, 5 min, 15 min, 60 min (the next run is not
 * before that); 3 errors in a row disable the job with the reason kept; every run and every
 * missed occurrence is logged in the store. After downtime, missed runs are detected on
 * start and handled by the job's `catchUp` policy. A one-shot `at` job that ran (or whose
 * run was interrupted) never runs again.
 *
 * Services of one agent sharing a store (two processes without a cluster, or a restart that
 * overlaps the old process) fire each occurrence once between them: a scheduled or catch-up
 * run first claims its due time in `store.kv` (the job's latest fired due time, taken by
 * compare-and-set), and the service that loses drops the run and records nothing. A runner
 * that claims due times itself (`guardCronRunner`, as on a `ClusterNode`) is left to it.
 * When the runs of two services overlap (a run goes on past the next due time, which the
 * other service fires), the later run's outcome sets the backoff: two overlapping failures
 * are retried once, and the earlier failure (logged) neither counts toward the errors in a
 * row nor disables the job. A service that starts beside another one's run in progress
 * leaves that run to it (its running marker names its writer, whose liveness key lasts while
 * its runs do; a marker of an older version, which names none, until the run is older than
 * its time limit or `stuckRunMs`); a crashed process's run is reported `interrupted` once
 * its key has run out (30 s), also when this service has run the job again meanwhile
 * (unless the job's run log has it).
 *
 * @example
 * ```ts
 * const cron = await new CronService({
 *   agentId: "ops",
 *   store,
 *   runJob: agentRuntimeJobRunner(runtime),
 * }).start();
 * await cron.add({ id: "standup", schedule: { cron: "0 9 * * 1-5", timezone: "Europe/Berlin" }, prompt: "Post the stand-up summary." });
 * const run = await cron.runNow("standup"); // { status: "ok", output: "...", ... }
 * await cron.stop();
 * ```
 */
export class CronService extends Actor<CronCall, unknown, never, CronInfo> {
  /** The agent whose jobs this service runs. */
  readonly agentId: string;
  readonly #store: Pick<Store, "cron" | "kv"> & { readonly locks?: LockStore };
  readonly #runJob: CronJobRunner;
  readonly #deliver: CronDeliver | undefined;
  readonly #deleteSession: ((sessionKey: string) => Promise<void>) | undefined;
  readonly #fetch: typeof fetch;
  readonly #clock: Clock;
  /**
   * The clock's elapsed time, for the waits of an interval (the mailbox retry, the resync, the
   * liveness key's renewal): a wall clock set back does not put them off. Due times stay on
   * the wall clock (`#clock.setTimer`).
   */
  readonly #elapsed: ElapsedTime;
  readonly #stuckRunMs: number;
  readonly #backoffMs: readonly number[];
  readonly #maxConsecutiveErrors: number;
  readonly #isolatedSessionTtlMs: number;
  readonly #runLogKeep: number;
  readonly #outputSummaryChars: number;
  readonly #webhookTimeoutMs: number;
  readonly #announceTimeoutMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #heap = new MinHeap<Entry>();
  #completions: Completion[] = [];
  #timer: TimerHandle | undefined;
  #armedFor: number | undefined;
  #retryTimer: TimerHandle | undefined;
  readonly #queued = { tick: false, drain: false, sync: false, markers: false, flush: false };
  /**
   * How the request in progress takes a job's lock (`undefined`: no caller waits on it, a
   * busy lock defers the write, see `#deferWrite`).
   */
  #callLockWait: CallLockWait | undefined;
  /** The service is stopping: a write waits for its job's lock, however long. */
  #stopping = false;
  /** Jobs whose deferred write may go ahead (see `#deferWrite`): unlocked if `true`. */
  readonly #flushReady = new Map<string, boolean>();
  /** Aborts the waits of deferred writes for their locks when the service stops. */
  readonly #lockWaits = unlimitedAbortController();
  #lastSweepAt = Number.NEGATIVE_INFINITY;
  #sweeping = false;
  readonly #sync: CronSync | undefined;
  readonly #resyncMs: number;
  /** Whether the jobs are reloaded every `#resyncMs`: with a sync, or a `resyncMs` given. */
  readonly #resyncs: boolean;
  /** This instance, as the origin of the changes it publishes. */
  readonly #instanceId = randomUUID();
  #unsubscribe: (() => void) | undefined;
  #resyncTimer: TimerHandle | undefined;
  /** Jobs changed elsewhere, to reload. */
  readonly #pendingSync = new Set<string>();
  #fullResync = false;
  /** Jobs written (or deleted) by the handler in progress, published once it is done. */
  readonly #dirty = new Set<string>();
  /**
   * Whether scheduled runs claim their due time in `store.kv` first: not when the runner
   * claims them itself (a cluster's `guardCronRunner`), so that a due time is never claimed
   * twice over (a stale claim of one kind would then skip the run on every node).
   */
  readonly #claimFires: boolean;
  /**
   * With a runner that claims due times itself: claims a due time found missed before it is
   * recorded (see `CLAIM_MISSED`), so that a due time another node ran is not also `missed`.
   */
  readonly #claimMissed: ClaimMissed | undefined;
  /** The last write of this service's liveness key while it has runs in progress, and the timer that renews it. */
  #lease: Promise<unknown> | undefined;
  #leaseTimer: TimerHandle | undefined;
  #leaseWritten = false;
  /**
   * Running markers of other services found on start whose writer was still alive: their runs
   * are theirs. Looked at again (`#checkForeign`) until each is gone or its writer is. A run
   * of the job started here meanwhile detaches its entry (see `ForeignRun`) before writing its
   * own marker, so that a run of a crashed writer is not lost under it.
   */
  readonly #foreign = new Map<string, ForeignRun>();
  #foreignTimer: TimerHandle | undefined;

  constructor(options: CronServiceOptions) {
    requireObject(options, "CronService options");
    const agentId = normalizeAgentId(options.agentId);
    super({
      name: options.name ?? `cron:${agentId}`,
      mailboxLimit: options.mailboxLimit ?? 10_000,
    });
    if (typeof options.runJob !== "function") {
      throw new InvalidArgumentError("CronService needs a runJob function");
    }
    if (options.store?.cron === undefined || options.store.kv === undefined) {
      throw new InvalidArgumentError("CronService needs a store with cron and kv");
    }
    this.agentId = agentId;
    this.#store = options.store;
    this.#runJob = options.runJob;
    optionalFunction(options.deliver, "deliver");
    optionalFunction(options.deleteSession, "deleteSession");
    optionalFunction(options.fetch, "fetch");
    const clock = options.clock as Partial<Clock> | undefined;
    if (
      clock !== undefined &&
      (typeof clock !== "object" ||
        clock === null ||
        typeof clock.now !== "function" ||
        typeof clock.setTimer !== "function" ||
        typeof clock.clearTimer !== "function")
    ) {
      throw new InvalidArgumentError(
        `clock must be a Clock (now, setTimer, clearTimer), got ${describeArg(clock)}`,
      );
    }
    this.#deliver = options.deliver;
    this.#claimFires = (options.runJob as { claimsRuns?: unknown }).claimsRuns !== true;
    this.#claimMissed = this.#claimFires ? undefined : claimMissedOf(options.runJob);
    const runnerCleanup = (options.runJob as { deleteSession?: (key: string) => Promise<void> })
      .deleteSession;
    this.#deleteSession = options.deleteSession ?? runnerCleanup;
    this.#sync = options.sync ?? (options.runJob as { cronSync?: CronSync }).cronSync;
    if (this.#sync !== undefined) {
      const sync = this.#sync;
      if (typeof sync.publish !== "function" || typeof sync.subscribe !== "function") {
        throw new InvalidArgumentError("sync must have publish and subscribe functions");
      }
    }
    this.#resyncMs = positiveMs(
      options.resyncMs ?? this.#sync?.resyncMs,
      DEFAULT_RESYNC_MS,
      "resyncMs",
    );
    this.#resyncs = this.#sync !== undefined || options.resyncMs !== undefined;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#clock = options.clock ?? systemClock;
    this.#elapsed = elapsedTime(this.#clock);
    this.#stuckRunMs = positiveMs(options.stuckRunMs, DEFAULT_STUCK_RUN_MS, "stuckRunMs");
    this.#backoffMs = options.backoffMs ?? DEFAULT_CRON_BACKOFF_MS;
    if (
      !Array.isArray(this.#backoffMs) ||
      this.#backoffMs.length === 0 ||
      this.#backoffMs.some((ms) => typeof ms !== "number" || !(ms >= 0))
    ) {
      throw new InvalidArgumentError("backoffMs must be a non-empty list of delays >= 0");
    }
    this.#maxConsecutiveErrors = options.maxConsecutiveErrors ?? DEFAULT_MAX_CONSECUTIVE_ERRORS;
    if (typeof this.#maxConsecutiveErrors !== "number" || !(this.#maxConsecutiveErrors >= 1)) {
      throw new InvalidArgumentError("maxConsecutiveErrors must be >= 1 (or Infinity)");
    }
    this.#isolatedSessionTtlMs = positiveMs(
      options.isolatedSessionTtlMs,
      DEFAULT_ISOLATED_SESSION_TTL_MS,
      "isolatedSessionTtlMs",
    );
    this.#runLogKeep = options.runLogKeep ?? 200;
    this.#outputSummaryChars = options.outputSummaryChars ?? 500;
    for (const [what, value] of [
      ["runLogKeep", this.#runLogKeep],
      ["outputSummaryChars", this.#outputSummaryChars],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < (what === "runLogKeep" ? 1 : 0)) {
        throw new InvalidArgumentError(`${what} must be a whole number, got ${describeArg(value)}`);
      }
    }
    this.#webhookTimeoutMs = positiveMs(options.webhookTimeoutMs, 10_000, "webhookTimeoutMs");
    this.#announceTimeoutMs = positiveMs(
      options.announceTimeoutMs,
      DEFAULT_ANNOUNCE_TIMEOUT_MS,
      "announceTimeoutMs",
    );
    // Whatever the way out (a kill included), no timer and no run outlives the service.
    this.monitor(() => {
      LIVE_SERVICES.delete(this.#instanceId);
      this.#disarm();
      this.#stopSync();
      this.#stopLease();
      for (const entry of this.#entries.values()) entry.run?.controller.abort();
    });
  }

  // ------------------------------------------------------------------ public API

  /**
   * Adds a job and schedules it.
   *
   * @throws InvalidArgumentError for malformed input; CronError `INVALID_CRON_SCHEDULE` for a
   *   bad expression, zone or date; `CRON_JOB_EXISTS` when the id is taken.
   */
  async add(input: CronJobInput): Promise<CronJob> {
    return (await this.#request({ op: "add", input })) as CronJob;
  }

  /**
   * Changes a job. A new schedule is computed from now (an `at` job with a new time may run
   * again; the job's current schedule given again changes nothing); `enabled` behaves as
   * `enable()` / `disable()`; `timeoutMs: null` clears the job's time limit (a run in
   * progress keeps the limit it started with).
   *
   * In a cluster the change is written under the job's lock; when the node holding it died,
   * it waits for that lock's lease to run out (at most about 12 s). It waits outside the
   * service's mailbox: reads, other changes and due jobs go on meanwhile. The same holds for
   * `remove`, `enable`, `disable` and `syncConfig`.
   *
   * @throws InvalidArgumentError for a malformed patch (nothing changes); CronError
   *   `CRON_JOB_NOT_FOUND`, `INVALID_CRON_SCHEDULE`, `CRON_JOB_COMPLETED`.
   */
  async update(id: string, patch: CronJobPatch): Promise<CronJob> {
    return (await this.#write({ op: "update", id, patch })) as CronJob;
  }

  /** Deletes a job and its run log; a run in progress is aborted. Resolves false if unknown. */
  async remove(id: string): Promise<boolean> {
    return (await this.#write({ op: "remove", id })) as boolean;
  }

  /** @throws CronError `CRON_JOB_NOT_FOUND`. */
  async get(id: string): Promise<CronJob> {
    return (await this.#request({ op: "get", id })) as CronJob;
  }

  /** Every job of this agent, by id. */
  async list(): Promise<CronJob[]> {
    return (await this.#request({ op: "list" })) as CronJob[];
  }

  /**
   * Enables a job: its error count and disable reason are cleared and it is scheduled from
   * now (runs missed while it was disabled are not caught up).
   *
   * @throws CronError `CRON_JOB_COMPLETED` for an `at` job that already ran;
   *   `INVALID_CRON_SCHEDULE` for a stored job whose schedule no longer validates (it was
   *   loaded disabled, with the reason; give it a new schedule with `update`).
   */
  async enable(id: string): Promise<CronJob> {
    return (await this.#write({ op: "enable", id })) as CronJob;
  }

  /** Disables a job; a run in progress finishes. */
  async disable(id: string): Promise<CronJob> {
    return (await this.#write({ op: "disable", id })) as CronJob;
  }

  /**
   * Runs a job now, enabled or not, and resolves with its run-log entry once it has
   * finished. Its schedule is unchanged.
   *
   * A job removed while this run is in progress resolves it at once with an `interrupted`
   * run (not stored: the job's log is gone with it).
   *
   * @throws CronError `CRON_JOB_RUNNING` if it is running, `CRON_JOB_COMPLETED` for an `at`
   *   job that already ran.
   */
  async runNow(id: string): Promise<CronRun> {
    return (await this.#request({ op: "run-now", id }, Infinity)) as CronRun;
  }

  /**
   * Starts a manual run of a job (as {@link runNow}) and resolves as soon as it has started,
   * its start recorded in the store, with its run id and a `finished` promise of its run-log
   * entry. With `only`, it starts only if the job is enabled (`"enabled"`) or a run of it is
   * due by this service's clock (`"due"`); otherwise it resolves `{ started: false, reason }`
   * and nothing runs. The check and the start are one step of the service: no run can slip
   * in between.
   *
   * @example
   * ```ts
   * const start = await cron.startRun("standup", { only: "due" });
   * if (start.started) {
   *   console.log(`run ${start.runId} started`);
   *   const run = await start.finished; // { status: "ok", ... }
   * }
   * ```
   *
   * @throws InvalidArgumentError for bad options; CronError `CRON_JOB_NOT_FOUND`,
   *   `CRON_JOB_RUNNING` if it is running, `CRON_JOB_COMPLETED` for an `at` job that already
   *   ran; the store's error when the start cannot be recorded (nothing runs then).
   */
  async startRun(id: string, options: CronStartOptions = {}): Promise<CronRunStart> {
    requireObject(options, "startRun options");
    const only = options.only;
    if (only !== undefined && only !== "enabled" && only !== "due") {
      throw new InvalidArgumentError(
        `startRun options.only must be "enabled" or "due", got ${describeArg(only)}`,
      );
    }
    return new Promise<CronRunStart>((resolve, reject) => {
      let started = false;
      // The call is answered when the run ends (or at once when nothing starts): the start
      // itself is told through `onStarted`, from the handler that recorded it.
      const finished = this.#request(
        {
          op: "run-now",
          id,
          ...(only === undefined ? {} : { only }),
          onStarted: (run) => {
            started = true;
            resolve({ started: true, ...run, finished: finished as Promise<CronRun> });
          },
        },
        Infinity,
      );
      finished.then(
        (value) => {
          if (!started) resolve(value as CronRunNotStarted);
        },
        (error: unknown) => {
          if (!started) reject(error);
        },
      );
    });
  }

  /**
   * The job's run log, newest first: `limit` entries (default 100, at most 1000) after the
   * `offset` newest (default 0). A log kept longer than a page (`runLogKeep` over 1000) is
   * read by pages, `offset += limit` until a page comes back shorter than `limit`; a run
   * logged meanwhile may list one entry twice, none is missed (see `CronStore.listRuns`).
   */
  async runs(id: string, options?: CronRunPage): Promise<CronRun[]> {
    await this.get(id);
    return (await this.#store.cron.listRuns(id, options)) as CronRun[];
  }

  /**
   * Counts, the next due run, and whether the timer is armed. (`status` is the actor's
   * lifecycle status, as on every process.)
   */
  async cronStatus(): Promise<CronServiceStatus> {
    return (await this.#request({ op: "status" })) as CronServiceStatus;
  }

  /**
   * Makes the jobs marked `source: "config"` match `jobs` (this agent's `cron.jobs` from the
   * configuration): new ones are added, changed ones updated (state kept), and config jobs
   * no longer listed are removed. Jobs added through the API are left alone. The file is the
   * truth for config jobs, `enabled` included: a config job disabled at runtime (by request
   * or after errors) is enabled again when the file says `enabled: true` (a one-shot job that
   * already ran stays as it is).
   *
   * The whole list is checked before anything changes: a job that does not validate, an id
   * listed twice, a new id already held by another job in the store, or the id of a job
   * this agent has from the API refuses it all, and no job is added, updated or removed.
   *
   * @throws InvalidArgumentError, CronError `INVALID_CRON_SCHEDULE` or `CRON_JOB_EXISTS`.
   */
  async syncConfig(
    jobs: readonly CronJobConfig[],
    options: {
      /**
       * Ids of config jobs not in `jobs` to leave as they are for now rather than remove
       * (`applyConfig` removes jobs only once every agent has taken its additions).
       */
      keep?: Iterable<string>;
    } = {},
  ): Promise<CronJob[]> {
    const keep = idSet(options?.keep, "syncConfig options.keep");
    return (await this.#write({ op: "sync-config", jobs, keep })) as CronJob[];
  }

  /**
   * Checks `jobs` as {@link syncConfig} would, changing nothing: resolves when `syncConfig`
   * would accept them, else rejects with the error it would throw. `movable` are ids of
   * config jobs of other agents that the caller moves to this agent (removing them from
   * their agent first), so they are not refused as taken. Used by
   * {@link CronSupervisor.applyConfig} to check every agent before changing any.
   *
   * @throws InvalidArgumentError, CronError `INVALID_CRON_SCHEDULE` or `CRON_JOB_EXISTS`.
   */
  async checkConfig(jobs: readonly CronJobConfig[], movable: Iterable<string> = []): Promise<void> {
    await this.#request({ op: "check-config", jobs, movable: idSet(movable, "movable") });
  }

  /**
   * Sends a change to a stored job. In a cluster the change is written under the job's lock;
   * when the actor finds the lock held longer than a merge takes (its holder may have died),
   * the request fails with {@link JobLockBusy} having changed nothing, and the wait for the
   * lock, as long as the lease of a holder that died (see `#lockJob`), happens here, outside
   * the mailbox, before the change is sent again. Once a whole lease has passed with the lock
   * still taken (live writers without end), the change is written unlocked.
   */
  async #write(
    message: Extract<CronCall, { op: "update" | "remove" | "enable" | "disable" | "sync-config" }>,
  ): Promise<unknown> {
    const latest = Date.now() + LOCK_WAIT_MS + LOCK_TTL_MS + LOCK_SKEW_MS;
    let lockWait: CallLockWait = "call";
    for (;;) {
      try {
        return await this.#request({ ...message, lockWait });
      } catch (error) {
        if (!(error instanceof JobLockBusy)) throw error;
        const lease =
          Date.now() >= latest
            ? undefined
            : await this.#lockJob(error.jobId, this.#lockWaits.signal);
        if (lease === undefined) lockWait = "none";
        else await this.#store.locks?.release(lease).catch(() => false);
      }
    }
  }

  async #request(message: CronCall, timeoutMs?: number): Promise<unknown> {
    const reply = await this.call(message, timeoutMs === undefined ? undefined : { timeoutMs });
    if (reply instanceof CallFailure) throw reply.error;
    return reply;
  }

  // ------------------------------------------------------------------ actor callbacks

  protected override async init(): Promise<void> {
    const sync = this.#sync;
    if (sync !== undefined) {
      // Subscribed before loading: a change made elsewhere meanwhile is reloaded after.
      this.#unsubscribe = sync.subscribe((change) => this.#onChange(change));
      await sync.whenSubscribed?.();
    }
    LIVE_SERVICES.add(this.#instanceId);
    const records = (await this.#store.cron.listJobs(this.agentId)) as CronJob[];
    const byId = new Map(records.map((record) => [record.id, record]));
    const markers = new Map<string, RunMarker>();
    const markerKeys: Array<[string, RunMarker]> = [];
    for await (const key of iterateKvKeys(this.#store.kv, this.#markerPrefix())) {
      const marker = await this.#store.kv.get<RunMarker>(key);
      const jobId = key.slice(this.#markerPrefix().length);
      if (marker !== undefined && (await this.#writerAlive(marker, byId.get(jobId)))) {
        // Another service's run in progress (sharing the store): its writer records it.
        this.#foreign.set(jobId, { marker });
        continue;
      }
      if (marker === undefined) continue; // gone meanwhile
      markerKeys.push([key, marker]);
      markers.set(jobId, marker);
    }
    const now = this.#clock.now();
    const writes: Writes = [];
    for (const record of records) {
      const job = this.#revive(record, now);
      let compiled: CompiledSchedule;
      let invalid: string | undefined;
      try {
        compiled = compileSchedule(job.schedule, job.createdAt, job.id);
      } catch (error) {
        compiled = NEVER;
        invalid = `invalid schedule: ${describe(error)}`;
      }
      const entry: Entry = { job, compiled, run: null, removed: false, dueAt: 0, heapIndex: -1 };
      entry.stored = copy(job);
      this.#entries.set(job.id, entry);
      // Only jobs whose state changes here are written back: a restart with many jobs and
      // nothing missed costs no writes.
      let changed = false;
      if (invalid !== undefined) {
        // A stored job that no longer validates is kept, disabled, with the reason: nothing
        // lost, and still listed, so that it can be given a new schedule or removed.
        entry.invalid = invalid;
        if (job.enabled) {
          job.enabled = false;
          job.state.disabledReason = invalid;
          job.state.disabledAt = now;
          changed = true;
        }
        if (job.state.nextRunAt !== undefined || job.state.catchUpQueue !== undefined) {
          delete job.state.nextRunAt;
          delete job.state.catchUpQueue;
          changed = true;
        }
      }
      const marker = markers.get(job.id);
      if (marker !== undefined) this.#resumeMarker(entry, marker);
      if (job.state.runningAt !== undefined) {
        this.#recordInterrupted(
          entry,
          now,
          writes,
          marker?.trigger,
          marker?.sessionKey,
          marker?.schedule,
        );
        changed = true;
      }
      if (this.#schedulable(entry)) {
        if (job.state.nextRunAt === undefined) {
          job.state.nextRunAt = this.#firstRun(entry, now);
          changed = true;
        }
        if (job.state.nextRunAt !== undefined && job.state.nextRunAt <= now) {
          this.#handleMissed(entry, now, writes);
          changed = true;
        }
        this.#reschedule(entry);
      }
      if (changed) writes.push(this.#putJob(job, entry));
    }
    // Markers of this agent's runs are accounted for (or belonged to jobs since removed); one
    // written again meanwhile (a new run of a live service) is left alone.
    for (const [key, marker] of markerKeys) {
      writes.push(this.#store.kv.delete(key, { ifValue: marker as JsonValue }));
    }
    await Promise.all(writes);
    this.#publishChanges();
    this.#arm();
    this.#armResync();
    this.#armForeignCheck();
    this.#maybeSweep(now);
  }

  /**
   * A run was in progress when the previous process stopped: its marker says which
   * occurrence it served, which therefore counts as attempted (not missed).
   */
  #resumeMarker(entry: Entry, marker: RunMarker): void {
    const state = entry.job.state;
    state.runningAt = marker.startedAt;
    state.runningRunId = marker.runId;
    state.runningScheduledAt = marker.scheduledAt;
    if (marker.trigger === "catch-up" && state.catchUpQueue !== undefined) {
      state.catchUpQueue = state.catchUpQueue.filter((at) => at !== marker.scheduledAt);
      if (state.catchUpQueue.length === 0) delete state.catchUpQueue;
    } else if (
      marker.trigger === "schedule" &&
      state.nextRunAt !== undefined &&
      state.nextRunAt <= marker.scheduledAt
    ) {
      const following =
        entry.compiled.kind === "at" ? undefined : entry.compiled.nextAfter(marker.scheduledAt);
      if (following === undefined) delete state.nextRunAt;
      else state.nextRunAt = following;
    }
  }

  protected override async handleCall(
    message: CronCall,
    from: ReplyTo<unknown>,
  ): Promise<unknown | NoReply> {
    this.#callLockWait = !WRITE_OPS.has(message.op)
      ? undefined
      : "lockWait" in message && message.lockWait !== undefined
        ? message.lockWait
        : "inside";
    try {
      return await this.#answer(message, from);
    } catch (error) {
      return new CallFailure(error);
    } finally {
      this.#callLockWait = undefined;
      this.#publishChanges();
    }
  }

  protected override async handleInfo(message: CronInfo): Promise<void> {
    this.#queued[message.type] = false;
    if (message.type === "sync") {
      await this.#applySync();
      return;
    }
    if (message.type === "markers") {
      await this.#checkForeign();
      return;
    }
    if (message.type === "flush") {
      await this.#flushDeferred();
      return;
    }
    const now = this.#clock.now();
    const writes: Writes = [];
    const replies: Array<() => void> = [];
    const completions = this.#completions;
    this.#completions = [];
    await this.#findOvertaken(completions);
    for (const completion of completions) this.#finish(completion, writes, replies);
    const starts: Entry[] = [];
    if (message.type === "tick") {
      for (;;) {
        const top = this.#heap.peek();
        if (top === undefined || top.dueAt > now) break;
        this.#heap.pop();
        if (top.run !== null) {
          // Due by the wall clock, but the host may have slept (or the clock been set
          // forward) meanwhile: a run that has not been going that long is left alone.
          if (this.#runningFor(top.run, now) < this.#stuckRunMs) this.#reschedule(top);
          else this.#clearStuck(top, now, writes, replies);
          continue;
        }
        if (this.#prepareScheduledRun(top, now, writes)) starts.push(top);
      }
    }
    try {
      await Promise.all(writes);
    } finally {
      this.#publishChanges();
    }
    for (const reply of replies) reply();
    for (const entry of starts) {
      if (entry.run?.lost === true) this.#dropLost(entry);
      else this.#launch(entry);
    }
    this.#arm();
    this.#maybeSweep(now);
  }

  protected override async terminate(reason: ExitReason): Promise<void> {
    void reason;
    this.#stopping = true;
    this.#lockWaits.abort();
    this.#disarm();
    this.#stopSync();
    this.#stopLease();
    const now = this.#clock.now();
    const writes: Writes = [];
    const replies: Array<() => void> = [];
    // Runs that finished but were not recorded yet are recorded as they ended.
    for (const completion of this.#completions.splice(0)) {
      this.#finish(completion, writes, replies);
    }
    const markers: Writes = [];
    for (const entry of this.#entries.values()) {
      if (entry.run === null) continue;
      entry.run.controller.abort();
      // A run whose due time the runner had not claimed yet (or lost, and is skipping) may be
      // another node's: that node records it. Its marker, if any, is not this run's either.
      if (entry.run.unclaimed !== undefined) continue;
      const marker = this.#clearMarker(entry.job.id, entry.run);
      markers.push(marker);
      this.#recordInterrupted(entry, now, writes);
      writes.push(this.#putJob(entry.job, entry), marker);
    }
    for (const entry of this.#entries.values()) {
      // A write deferred for its job's lock (see `#deferWrite`) that no run above wrote.
      if (entry.unwritten === true && entry.run === null && !entry.removed) {
        writes.push(this.#putJob(entry.job, entry));
      }
    }
    if (this.#leaseWritten) {
      // This service's runs are recorded: its liveness key goes after their markers.
      const alive = this.#aliveKey(this.#instanceId);
      writes.push(Promise.allSettled(markers).then(() => this.#store.kv.delete(alive)));
    }
    // A store that fails now must not turn a clean stop into a crash; the running markers
    // it could not clear are reported as interrupted on the next start instead.
    await Promise.allSettled(writes);
    // Its markers are cleared (or, if the store failed, left for the next start to report).
    LIVE_SERVICES.delete(this.#instanceId);
    this.#publishChanges();
    for (const reply of replies) reply();
  }

  // ------------------------------------------------------------------ requests

  async #answer(message: CronCall, from: ReplyTo<unknown>): Promise<unknown | NoReply> {
    if (
      "id" in message &&
      typeof message.id === "string" &&
      message.id !== "" &&
      !this.#entries.has(message.id)
    ) {
      // Added through another node (or another service on the store) and not heard of yet:
      // the store knows.
      await this.#reload([message.id], false);
    }
    const now = this.#clock.now();
    switch (message.op) {
      case "add":
        return this.#add(message.input, now, "api");
      case "update":
        return this.#update(this.#entry(message.id), message.patch, now);
      case "remove":
        return this.#remove(message.id);
      case "get":
        return copy(this.#entry(message.id).job);
      case "list":
        return [...this.#entries.values()]
          .map((e) => copy(e.job))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      case "enable":
        return this.#setEnabled(this.#entry(message.id), true, now);
      case "disable":
        return this.#setEnabled(this.#entry(message.id), false, now);
      case "run-now":
        return this.#runNow(this.#entry(message.id), now, from, message);
      case "status":
        return this.#status();
      case "sync-config":
        return this.#syncConfig(message.jobs, now, message.keep);
      case "check-config":
        await this.#checkConfig(await this.#configOf(message.jobs), now, message.movable);
        return null;
      default:
        throw new InvalidArgumentError(`unknown cron request ${JSON.stringify(message)}`);
    }
  }

  #entry(id: unknown): Entry {
    if (typeof id !== "string" || id === "") {
      throw new InvalidArgumentError(`a cron job id must be a non-empty string, got ${String(id)}`);
    }
    const entry = this.#entries.get(id);
    if (entry === undefined) {
      throw new CronError(
        "CRON_JOB_NOT_FOUND",
        `agent "${this.agentId}" has no cron job "${id}"`,
        id,
      );
    }
    return entry;
  }

  async #add(input: CronJobInput, now: number, source: CronJob["source"]): Promise<CronJob> {
    const { job, compiled } = parseJobInput(input, this.agentId, now, source);
    if (this.#entries.has(job.id)) {
      throw new CronError("CRON_JOB_EXISTS", `cron job "${job.id}" already exists`, job.id);
    }
    await this.#checkIdFree(job.id);
    const entry: Entry = { job, compiled, run: null, removed: false, dueAt: 0, heapIndex: -1 };
    if (job.enabled) job.state.nextRunAt = this.#firstRun(entry, now);
    // A backoff left in the claim record by an earlier job of this id is not this one's.
    await this.#clearBackoff(job.id);
    // Stored first: if the write fails, nothing was added.
    await this.#putJob(job, entry);
    this.#entries.set(job.id, entry);
    this.#reschedule(entry);
    this.#arm();
    return copy(job);
  }

  /** @throws CronError `CRON_JOB_EXISTS` when a job in the store (of any agent) has `id`. */
  async #checkIdFree(id: string): Promise<void> {
    const stored = await this.#store.cron.getJob(id);
    if (stored !== undefined) {
      throw new CronError(
        "CRON_JOB_EXISTS",
        `cron job "${id}" already exists (agent "${stored.agentId}")`,
        id,
      );
    }
  }

  async #update(entry: Entry, rawPatch: CronJobPatch, now: number): Promise<CronJob> {
    const patch = parseJobPatch(rawPatch, entry.job.id);
    const next: CronJob = copy(entry.job);
    let compiled = entry.compiled;
    // The job's own schedule repeated (as `syncConfig` sends it with any change) is not a new one.
    const newSchedule =
      patch.schedule !== undefined &&
      JSON.stringify(patch.schedule) !== JSON.stringify(entry.job.schedule);
    if (newSchedule) {
      compiled = compileSchedule(patch.schedule!, next.createdAt, next.id);
      next.schedule = patch.schedule!;
    }
    if (patch.session !== undefined) next.session = patch.session;
    if (patch.prompt !== undefined) next.prompt = patch.prompt;
    if (patch.catchUp !== undefined) next.catchUp = patch.catchUp;
    if (patch.catchUpLimit !== undefined) next.catchUpLimit = patch.catchUpLimit;
    if (patch.delivery !== undefined) next.delivery = patch.delivery;
    if (patch.timeoutMs === null) delete next.timeoutMs;
    else if (patch.timeoutMs !== undefined) next.timeoutMs = patch.timeoutMs;
    next.updatedAt = now;
    const state = next.state;
    if (newSchedule) {
      // A new schedule starts afresh: a completed `at` job given a new time may run again.
      delete state.completedAt;
      delete state.catchUpQueue;
    }
    const enabledChanged = patch.enabled !== undefined && patch.enabled !== next.enabled;
    if (enabledChanged) {
      if (patch.enabled && state.completedAt !== undefined) throw this.#completed(next.id);
      if (patch.enabled && !newSchedule && entry.invalid !== undefined) {
        throw this.#invalidStored(entry);
      }
      next.enabled = patch.enabled!;
      this.#applyEnabled(next, now);
    }
    const probe: Entry = { ...entry, job: next, compiled };
    if (newSchedule || enabledChanged) {
      state.nextRunAt = this.#schedulable(probe) ? this.#firstRun(probe, now) : undefined;
    }
    if (enabledChanged && next.enabled) await this.#clearBackoff(next.id);
    await this.#putJob(next, entry);
    entry.job = next;
    entry.compiled = compiled;
    if (newSchedule) delete entry.invalid;
    this.#reschedule(entry);
    this.#arm();
    return copy(next);
  }

  async #remove(id: string): Promise<boolean> {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    // Under the job's lock: another service's merged write (read, then write) of this job
    // cannot straddle the removal and bring the job back.
    const lease = await this.#lockForWrite(id, this.#callLockWait);
    if (lease === BUSY) throw new JobLockBusy(id);
    try {
      await this.#store.cron.deleteJob(id);
    } finally {
      if (lease !== undefined) await this.#store.locks?.release(lease).catch(() => false);
    }
    this.#changed(id);
    if (entry.run !== null) await this.#clearMarker(id, entry.run);
    entry.removed = true;
    this.#abandonRun(entry);
    this.#heap.delete(entry);
    this.#entries.delete(id);
    this.#arm();
    return true;
  }

  async #setEnabled(entry: Entry, enabled: boolean, now: number): Promise<CronJob> {
    const next = copy(entry.job);
    if (enabled && next.state.completedAt !== undefined) throw this.#completed(next.id);
    if (enabled && entry.invalid !== undefined) throw this.#invalidStored(entry);
    next.enabled = enabled;
    next.updatedAt = now;
    this.#applyEnabled(next, now);
    const probe: Entry = { ...entry, job: next };
    next.state.nextRunAt = this.#schedulable(probe) ? this.#firstRun(probe, now) : undefined;
    if (enabled) await this.#clearBackoff(next.id);
    await this.#putJob(next, entry);
    entry.job = next;
    this.#reschedule(entry);
    this.#arm();
    return copy(next);
  }

  #applyEnabled(job: CronJob, now: number): void {
    const state = job.state;
    if (job.enabled) {
      state.consecutiveErrors = 0;
      delete state.disabledReason;
      delete state.disabledAt;
      delete state.retryAt;
    } else {
      state.disabledReason = "disabled by request";
      state.disabledAt = now;
      delete state.catchUpQueue;
    }
  }

  #invalidStored(entry: Entry): CronError {
    const id = entry.job.id;
    return new CronError(
      "INVALID_CRON_SCHEDULE",
      `cron job "${id}" cannot be enabled: its stored schedule no longer validates (${entry.invalid}); give it a new schedule`,
      id,
    );
  }

  #completed(id: string): CronError {
    return new CronError(
      "CRON_JOB_COMPLETED",
      `cron job "${id}" is a one-shot job that already ran; give it a new schedule to run it again`,
      id,
    );
  }

  async #runNow(
    entry: Entry,
    now: number,
    from: ReplyTo<unknown>,
    request: Extract<CronCall, { op: "run-now" }>,
  ): Promise<CronRunNotStarted | NoReply> {
    const id = entry.job.id;
    if (request.only === "enabled" && !entry.job.enabled) {
      return { started: false, jobId: id, reason: "disabled" };
    }
    if (request.only === "due") {
      const due = this.#dueOf(entry);
      if (due === undefined || due > now) return { started: false, jobId: id, reason: "not-due" };
    }
    if (entry.job.state.completedAt !== undefined) throw this.#completed(id);
    if (entry.run !== null) {
      throw new CronError("CRON_JOB_RUNNING", `cron job "${id}" is running`, id);
    }
    const writes: Writes = [];
    const before = copy(entry.job.state);
    this.#begin(entry, now, now, "manual", undefined, writes);
    entry.run!.waiters.push(from);
    try {
      await Promise.all(writes);
    } catch (error) {
      // The start could not be recorded: it does not happen.
      entry.run = null;
      entry.job.state = before;
      this.#reschedule(entry);
      throw error;
    }
    const run = entry.run!;
    request.onStarted?.({
      jobId: id,
      runId: run.runId,
      scheduledAt: run.scheduledAt,
      startedAt: run.startedAt,
      sessionKey: run.sessionKey,
    });
    this.#launch(entry);
    this.#arm();
    return noReply;
  }

  #status(): CronServiceStatus {
    let enabled = 0;
    let running = 0;
    let next: Entry | undefined;
    for (const entry of this.#entries.values()) {
      if (entry.job.enabled) enabled++;
      if (entry.run !== null) running++;
      else if (this.#heap.has(entry) && (next === undefined || entry.dueAt < next.dueAt)) {
        next = entry;
      }
    }
    return {
      agentId: this.agentId,
      jobs: this.#entries.size,
      enabled,
      running,
      ...(next === undefined ? {} : { nextRunAt: next.dueAt, nextJobId: next.job.id }),
      timerArmed: this.#timer !== undefined,
    };
  }

  /** This agent's jobs of a config list, those another node just added reloaded. */
  async #configOf(jobs: readonly CronJobConfig[]): Promise<CronJobConfig[]> {
    if (!Array.isArray(jobs)) throw new InvalidArgumentError("syncConfig needs an array of jobs");
    const mine = jobs.filter((job) => job.agentId === this.agentId);
    if (this.#sync !== undefined) {
      // Added by another node (applying the same file) and not heard of yet: the store knows.
      const unheard = mine.map((job) => job.id).filter((id) => !this.#entries.has(id));
      if (unheard.length > 0) await this.#reload(unheard, false);
    }
    return mine;
  }

  async #syncConfig(
    jobs: readonly CronJobConfig[],
    now: number,
    keep: ReadonlySet<string>,
  ): Promise<CronJob[]> {
    const mine = await this.#configOf(jobs);
    // Every job is checked before anything changes: a list with one job that cannot be
    // applied is refused whole, not half-applied.
    await this.#checkConfig(mine, now);
    const wanted = new Set(mine.map((job) => job.id));
    for (const entry of [...this.#entries.values()]) {
      if (entry.job.source === "config" && !wanted.has(entry.job.id) && !keep.has(entry.job.id)) {
        await this.#remove(entry.job.id);
      }
    }
    for (const config of mine) {
      const existing = this.#entries.get(config.id);
      const { id, agentId, ...fields } = config;
      void agentId;
      if (existing === undefined) await this.#add({ ...fields, id }, now, "config");
      else if (
        existing.job.source === "config" &&
        // A time limit taken out of the file is cleared (the file is the truth).
        (changed(existing.job, fields) ||
          (fields.timeoutMs === undefined && existing.job.timeoutMs !== undefined))
      ) {
        await this.#update(existing, configPatch(existing.job, fields), now);
      }
    }
    return [...this.#entries.values()]
      .filter((e) => e.job.source === "config")
      .map((e) => copy(e.job));
  }

  /**
   * Refuses a config list `syncConfig` could not apply whole: the same id twice, a job that
   * does not validate, a new id already held by another job in the store, or the id of an API
   * job of this agent. A new id in `movable` (a config job another agent gives up) is not
   * refused as taken.
   */
  async #checkConfig(
    mine: readonly CronJobConfig[],
    now: number,
    movable: ReadonlySet<string> = new Set(),
  ): Promise<void> {
    const seen = new Set<string>();
    for (const config of mine) {
      const { id, agentId, ...fields } = config;
      void id;
      void agentId;
      if (seen.has(config.id)) {
        throw new InvalidArgumentError(
          `the cron configuration of agent "${this.agentId}" lists job "${config.id}" twice`,
        );
      }
      seen.add(config.id);
      const existing = this.#entries.get(config.id);
      if (existing === undefined) {
        parseJobInput({ ...fields, id: config.id }, this.agentId, now, "config");
        if (!movable.has(config.id)) await this.#checkIdFree(config.id);
      } else if (existing.job.source === "config") {
        const patch = parseJobPatch(configPatch(existing.job, fields), config.id);
        if (patch.schedule !== undefined && !sameJson(patch.schedule, existing.job.schedule)) {
          compileSchedule(patch.schedule, existing.job.createdAt, config.id);
        }
      } else {
        // Added through the API: the file cannot manage it, and passing over the file's job
        // silently would leave its schedule and prompt without effect.
        throw new CronError(
          "CRON_JOB_EXISTS",
          `cron job "${config.id}" of agent "${this.agentId}" was added through the API, so the configuration cannot manage it: remove it (cron.remove) or give the configured job another id`,
          config.id,
        );
      }
    }
  }

  // ------------------------------------------------------------------ scheduling

  /** Enabled, not completed: the job has runs ahead of it. */
  #schedulable(entry: Entry): boolean {
    return entry.job.enabled && entry.job.state.completedAt === undefined;
  }

  /** The first run from `now`: an `at` job that has not run is due at its time even if past. */
  #firstRun(entry: Entry, now: number): number | undefined {
    if (entry.compiled.kind === "at") return parseAtOf(entry);
    return entry.compiled.nextAfter(now);
  }

  /** Puts the entry in the heap at its due time, or takes it out when nothing is due. */
  #reschedule(entry: Entry): void {
    if (entry.removed) {
      // A removed job's last run may still finish: it is never scheduled again.
      this.#heap.delete(entry);
      return;
    }
    if (entry.run !== null) {
      const now = this.#clock.now();
      this.#heap.set(entry, now + this.#stuckRunMs - this.#runningFor(entry.run, now));
      return;
    }
    const due = this.#dueOf(entry);
    if (due === undefined) this.#heap.delete(entry);
    else this.#heap.set(entry, due);
  }

  /**
   * How long a run has been going: by the clock's monotonic time when it has one (time the
   * host slept does not count), else by the wall clock.
   */
  #runningFor(run: ActiveRun, now: number): number {
    const monotonic = run.startedMonotonic === undefined ? undefined : this.#clock.monotonic?.();
    if (monotonic === undefined || run.startedMonotonic === undefined) return now - run.startedAt;
    return monotonic - run.startedMonotonic;
  }

  #dueOf(entry: Entry): number | undefined {
    if (!this.#schedulable(entry)) return undefined;
    const state = entry.job.state;
    if (state.catchUpQueue !== undefined && state.catchUpQueue.length > 0) {
      return state.retryAt ?? 0;
    }
    return state.nextRunAt;
  }

  /** Arms the one timer for the earliest entry (or clears it when nothing is due). */
  #arm(): void {
    if (!this.alive) return;
    const top = this.#heap.peek();
    if (top === undefined) {
      this.#disarm();
      return;
    }
    // A timer armed for an earlier time stays: it fires, finds nothing due and re-arms.
    if (this.#armedFor !== undefined && this.#armedFor <= top.dueAt) return;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    const at = top.dueAt;
    this.#armedFor = at;
    this.#timer = this.#clock.setTimer(
      () => {
        this.#timer = undefined;
        this.#armedFor = undefined;
        this.#notify("tick");
      },
      Math.max(0, at - this.#clock.now()),
    );
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    if (this.#retryTimer !== undefined) this.#clock.clearTimer(this.#retryTimer);
    this.#timer = this.#retryTimer = this.#armedFor = undefined;
  }

  /** Sends the actor a tick or a drain; one of each is queued at most. */
  #notify(type: CronInfo["type"]): void {
    if (this.#queued[type] || !this.alive) return;
    // Set first: an idle actor handles the message on this very stack, inside `send`.
    this.#queued[type] = true;
    try {
      if (!this.send({ type })) this.#queued[type] = false;
    } catch {
      this.#queued[type] = false;
      // The mailbox is full of requests: try again shortly rather than lose the message.
      if (this.#retryTimer === undefined) {
        this.#retryTimer = this.#elapsed.setTimer(() => {
          this.#retryTimer = undefined;
          this.#notify("drain");
          this.#notify("tick");
          if (this.#fullResync || this.#pendingSync.size > 0) this.#notify("sync");
          if (this.#foreign.size > 0 && this.#foreignTimer === undefined) this.#notify("markers");
          if (this.#flushReady.size > 0) this.#notify("flush");
        }, WAKE_RETRY_MS);
      }
    }
  }

  /**
   * A job came due: decides which occurrence it runs for, handling occurrences it missed
   * (the timer fired late, or it was queued for catch-up). Returns whether it starts.
   */
  #prepareScheduledRun(entry: Entry, now: number, writes: Writes): boolean {
    const state = entry.job.state;
    if (!this.#schedulable(entry)) return false;
    let trigger: CronRunTrigger = "schedule";
    let scheduledAt: number;
    let policy: CronCatchUpPolicy | undefined;
    const queue = state.catchUpQueue;
    if (queue === undefined || queue.length === 0) {
      const due = state.nextRunAt;
      if (due === undefined) return false;
      const following = entry.compiled.nextAfter(due);
      if (following !== undefined && following <= now) {
        // More than one occurrence passed (the process stalled or slept): they were missed.
        this.#handleMissed(entry, now, writes);
        this.#reschedule(entry);
        if (state.catchUpQueue === undefined || state.catchUpQueue.length === 0) {
          writes.push(this.#putJob(entry.job, entry));
          return false;
        }
        return this.#prepareScheduledRun(entry, now, writes);
      }
      scheduledAt = due;
      state.nextRunAt = entry.compiled.kind === "at" ? undefined : following;
    } else {
      scheduledAt = queue.shift()!;
      if (queue.length === 0) delete state.catchUpQueue;
      trigger = "catch-up";
      policy = entry.job.catchUp;
    }
    this.#begin(entry, scheduledAt, now, trigger, policy, writes, this.#claimFires);
    return true;
  }

  /** Marks a run as started (in memory and in the store) before it is launched. */
  #begin(
    entry: Entry,
    scheduledAt: number,
    now: number,
    trigger: CronRunTrigger,
    policy: CronCatchUpPolicy | undefined,
    writes: Writes,
    claim = false,
  ): void {
    const job = entry.job;
    const runId = randomUUID();
    const sessionKey =
      job.session === "main" ? `agent:${this.agentId}:main` : `cron:${job.id}.${now}`;
    entry.run = {
      runId,
      trigger,
      scheduledAt,
      startedAt: now,
      startedMonotonic: this.#clock.monotonic?.(),
      sessionKey,
      controller: new LazyAbortController(),
      waiters: [],
      policy,
      schedule: JSON.stringify(job.schedule),
    };
    const state = job.state;
    state.runningAt = now;
    state.runningRunId = runId;
    state.runningScheduledAt = scheduledAt;
    this.#reschedule(entry);
    // Recorded before the run starts: a crash mid-run is then reported as interrupted and a
    // one-shot job is never run twice. A small marker rather than the whole job, which is
    // written once, when the run ends.
    const marker: RunMarker = {
      owner: this.#instanceId,
      process: PROCESS_ID,
      runId,
      startedAt: now,
      scheduledAt,
      trigger,
      sessionKey,
      schedule: entry.run.schedule,
    };
    const run = entry.run;
    // The marker names this service, whose liveness key is written first: a service that
    // starts meanwhile on the same store sees a live writer and leaves the marker alone.
    const record = (): Promise<unknown> =>
      this.#holdLease().then(() => {
        run.marker = marker;
        // The marker of another service's run that this one replaces is followed apart from
        // now on: its run is recorded interrupted if its writer turns out to have crashed.
        const foreign = this.#foreign.get(job.id);
        if (foreign !== undefined) foreign.detached = true;
        return Promise.all([
          this.#store.kv.set(this.#markerKey(job.id), marker),
          job.session === "isolated" && this.#deleteSession !== undefined
            ? this.#indexIsolated(sessionKey, job.id, now)
            : undefined,
        ]);
      });
    if (!this.#claimFires && trigger !== "manual") {
      // The runner claims the due time (a cluster's guard, which may find it another
      // node's): the marker is written when it has, not by every node that fires it.
      run.unclaimed = record;
      return;
    }
    if (!claim) {
      writes.push(record());
      return;
    }
    // The due time is claimed before anything is written: a service that loses it leaves no
    // marker behind (the marker's key is the job's, shared with the winner). A scheduled run
    // came due at its due time, a queued catch-up run now (its due time is long past).
    const cameDue = trigger === "catch-up" ? now : scheduledAt;
    writes.push(
      this.#claimFire(job.id, scheduledAt, cameDue, state.consecutiveErrors).then((claim) => {
        if (claim.won) {
          // The errors in a row counted by every service: the next backoff step is theirs.
          if (claim.errors !== undefined) state.consecutiveErrors = claim.errors;
          return record();
        }
        run.lost = true;
        if (claim.retryAt !== undefined) run.retryAt = claim.retryAt;
        return undefined;
      }),
    );
  }

  /**
   * Claims due time `scheduledAt` of job `jobId` for this service, so that of the services
   * sharing the store (two processes on one store without a cluster, or a restart overlapping
   * the old process) only one fires each occurrence. The store keeps, per job, the latest due
   * time fired (`cron:fired:<agentId>:<jobId>`): a due time at or before it was fired
   * elsewhere and is lost; a later one is taken with a compare-and-set of the value read (or
   * a set-if-absent), so two services cannot both take it. The key expires
   * `FIRE_CLAIM_TTL_MS` after it was last taken (a removed job's goes away); a claimer that
   * crashed holds only the due time it claimed, never a later one.
   *
   * The same record carries the backoff (see `#recordBackoff`): after a failed run, a run
   * that came due (`cameDue`) before the retry's due time is lost, and the loser is told
   * that due time so that it contends for the retry too (which one service then wins); the
   * winner takes the record's count of errors in a row (`localErrors` when it has none).
   */
  async #claimFire(
    jobId: string,
    scheduledAt: number,
    cameDue: number,
    localErrors: number,
  ): Promise<ClaimResult> {
    const kv = this.#store.kv;
    const key = this.#fireKey(jobId);
    // Each failed compare-and-set means another service took a due time meanwhile: a few
    // rounds settle it (a later due time taken elsewhere ends it with a loss).
    for (let attempt = 0; attempt < 8; attempt++) {
      const current = await kv.get(key);
      const claim = fireClaimOf(current);
      if (typeof claim.scheduledAt === "number" && claim.scheduledAt >= scheduledAt) {
        return { won: false };
      }
      if (typeof claim.retryAt === "number" && cameDue < claim.retryAt) {
        return { won: false, retryAt: claim.retryAt };
      }
      const errors = typeof claim.errors === "number" ? claim.errors : undefined;
      if (errors !== undefined && errors >= this.#maxConsecutiveErrors) {
        // The job was disabled after as many errors on another service: until it is
        // enabled again (which clears the count), it does not run here either.
        return { won: false };
      }
      // The retry's due time is passed once a run is claimed for it: only the count stays.
      const mine: FireClaim = { scheduledAt, by: this.#instanceId, errors: errors ?? localErrors };
      if (await this.#replaceFireClaim(key, current, mine)) return { won: true, errors };
    }
    return { won: false };
  }

  /**
   * Writes the backoff of job `jobId` into its claim record (see `#claimFire`), for the
   * other services sharing the store: its errors in a row, and after a failed run the due
   * time of the retry (`undefined`: none, as after a success). A record that is absent
   * stays so when there is no backoff to record. Compare-and-set on the record as read, so
   * that a due time claimed meanwhile is kept.
   *
   * With `ranFor`, the due time of the run that ended: when a later due time was claimed
   * since (another service started a run of the job while this one ran, the runs overlap),
   * the record is left as it is, and this resolves with it: the later run sets the backoff,
   * so that two overlapping failed runs are retried once, not once each.
   */
  async #recordBackoff(
    jobId: string,
    errors: number,
    retryAt: number | undefined,
    ranFor?: number,
  ): Promise<FireClaim | undefined> {
    const kv = this.#store.kv;
    const key = this.#fireKey(jobId);
    for (let attempt = 0; attempt < 8; attempt++) {
      const current = await kv.get(key);
      if (current === undefined && errors === 0 && retryAt === undefined) return undefined;
      if (ranFor !== undefined && overtakes(fireClaimOf(current), ranFor)) {
        return fireClaimOf(current);
      }
      const { retryAt: _passed, ...kept } = fireClaimOf(current);
      const next: FireClaim = { ...kept, errors, ...(retryAt === undefined ? {} : { retryAt }) };
      if (sameJson(next, current)) return undefined;
      if (await this.#replaceFireClaim(key, current, next)) return undefined;
    }
    return undefined;
  }

  /**
   * Failed runs that ended while a later run of their job was claimed by another service
   * (their runs overlapped): each is given that run's claim record (see `Completion`). A
   * record that cannot be read leaves the run to `#recordBackoff`, which looks again.
   */
  async #findOvertaken(completions: Completion[]): Promise<void> {
    if (!this.#claimFires) return;
    await Promise.all(
      completions.map(async (completion) => {
        const { entry, runId, outcome } = completion;
        const run = entry.run;
        if (outcome.status === "ok" || outcome.skipped === true || entry.removed) return;
        if (run === null || run.runId !== runId) return;
        try {
          const claim = fireClaimOf(await this.#store.kv.get(this.#fireKey(entry.job.id)));
          if (overtakes(claim, run.scheduledAt)) completion.overtaken = claim;
        } catch {
          // Looked at again when the backoff is written.
        }
      }),
    );
  }

  /**
   * Writes claim record `next` if the one in the store is still `current` as read (absent
   * for `undefined`), kept `FIRE_CLAIM_TTL_MS`; resolves whether it was written.
   */
  #replaceFireClaim(key: string, current: unknown, next: FireClaim): Promise<boolean> {
    return this.#store.kv.set(
      key,
      next,
      current === undefined
        ? { ifAbsent: true, ttlMs: FIRE_CLAIM_TTL_MS }
        : { ifValue: current as JsonValue, ttlMs: FIRE_CLAIM_TTL_MS },
    );
  }

  /**
   * A job enabled (or added): its errors in a row start again from 0 on every service
   * sharing the store, so a count that disabled it elsewhere no longer holds it back.
   */
  async #clearBackoff(jobId: string): Promise<void> {
    if (this.#claimFires) await this.#recordBackoff(jobId, 0, undefined);
  }

  /** Where the claim record of a job's due times is kept (see `#claimFire`). */
  #fireKey(jobId: string): string {
    return `cron:fired:${this.agentId}:${jobId}`;
  }

  /** A scheduled run whose due time another service claimed: dropped, nothing recorded. */
  #dropLost(entry: Entry): void {
    const state = entry.job.state;
    const run = entry.run!;
    entry.run = null;
    delete state.runningAt;
    delete state.runningRunId;
    delete state.runningScheduledAt;
    // The due time is already past in `nextRunAt` (or off the catch-up queue). Lost to a
    // failed run's backoff elsewhere: the retry is due then, here too (a queued catch-up
    // run goes back to the queue, to run after the backoff unless the other service did).
    const retryAt = run.retryAt;
    if (retryAt !== undefined && this.#schedulable(entry)) {
      if (run.trigger === "catch-up") {
        state.catchUpQueue = [run.scheduledAt, ...(state.catchUpQueue ?? [])];
        state.retryAt = retryAt;
      } else if (entry.compiled.kind !== "at") {
        state.nextRunAt = retryAt;
      }
    }
    this.#reschedule(entry);
    if (this.#sync === undefined && retryAt === undefined && !entry.removed) {
      void this.#takeInChanged(entry.job.id, entry.stored);
    }
  }

  /**
   * Without a sync, nothing announces a change made to a job by another service on the
   * store: when that service won a due time here (see `#dropLost`), the job's stored record
   * is read, and taken in when it was removed, or its definition (anything but its state:
   * enabled, schedule, prompt, ...) differs from `base`, this service's copy as last stored.
   * State alone (the winner's run count, its next due time) is not: this service's schedule
   * already went past the due time it lost, and its next write merges the rest.
   */
  async #takeInChanged(id: string, base: CronJob | undefined): Promise<void> {
    let stored: CronJob | undefined;
    try {
      stored = (await this.#store.cron.getJob(id)) as CronJob | undefined;
    } catch {
      return; // The store is unreachable: the next lost due time looks again.
    }
    if (stored === undefined || base === undefined || !sameDefinition(stored, base)) {
      this.#pendingSync.add(id);
      this.#notify("sync");
    }
  }

  /** Starts the run outside the mailbox; its completion comes back as a drain. */
  #launch(entry: Entry): void {
    const run = entry.run;
    if (run === null) return;
    // The runner's own view: changing it changes nothing here. Shallow, as this is per run.
    const job: CronJob = { ...entry.job, state: { ...entry.job.state } };
    void traceTelemetry(
      "beamclaw:cron.run",
      () => ({
        agent: this.agentId,
        jobId: job.id,
        runId: run.runId,
        trigger: run.trigger,
        scheduledAt: run.scheduledAt,
        session: run.sessionKey,
        tenant: telemetryTenantOf(this.#store),
      }),
      () => this.#execute(job, run),
      settleCronTrace,
    ).then((result) => {
      this.#completions.push({ entry, runId: run.runId, ...result });
      this.#notify("drain");
    });
  }

  async #execute(
    job: CronJob,
    run: ActiveRun,
  ): Promise<Omit<Completion, "entry" | "runId" | "stuck">> {
    let outcome: CronRunOutcome;
    try {
      outcome = checkOutcome(
        await this.#runJob(
          job,
          // The signal is made only if the job's code reads it: most quick jobs never do.
          this.#claimable(
            defineLazySignal(
              {
                agentId: this.agentId,
                runId: run.runId,
                trigger: run.trigger,
                scheduledAt: run.scheduledAt,
                sessionKey: run.sessionKey,
              },
              run.controller,
            ),
            run,
          ),
        ),
      );
    } catch (error) {
      outcome = { status: "error", error: describe(error) };
    }
    const finishedAt = this.#clock.now();
    let delivery: CronDeliveryResult | undefined;
    if (job.delivery.kind !== "none" && !run.controller.aborted) {
      const payload: CronWebhookPayload = {
        type: "cron.run",
        agentId: this.agentId,
        jobId: job.id,
        runId: run.runId,
        trigger: run.trigger,
        status: outcome.status,
        scheduledAt: run.scheduledAt,
        startedAt: run.startedAt,
        finishedAt,
        ...(outcome.output === undefined ? {} : { output: outcome.output }),
        ...(outcome.error === undefined ? {} : { error: outcome.error }),
      };
      delivery = await deliverRun(job, payload, run.controller.signal, {
        deliver: this.#deliver,
        fetch: this.#fetch,
        webhookTimeoutMs: this.#webhookTimeoutMs,
        announceTimeoutMs: this.#announceTimeoutMs,
      });
    }
    return { outcome, finishedAt, delivery };
  }

  /**
   * The context of a run whose due time the runner claims: given the function the runner
   * calls once it has won the claim (see `RUN_CLAIMED`), which writes the running marker.
   */
  #claimable<T extends object>(context: T, run: ActiveRun): T {
    if (run.unclaimed === undefined) return context;
    Object.defineProperty(context, RUN_CLAIMED, {
      value: async () => {
        // Stopped (or the job removed) before the claim came back: the run does not start.
        run.controller.signal.throwIfAborted();
        const write = run.unclaimed;
        run.unclaimed = undefined;
        await write?.();
      },
    });
    return context;
  }

  /** Records a finished run and schedules what comes next. */
  #finish(completion: Completion, writes: Writes, replies: Array<() => void>): void {
    const { entry, runId, outcome, finishedAt, delivery } = completion;
    const run = entry.run;
    // A run cleared as stuck, or of a removed job, has already been accounted for.
    if (run === null || run.runId !== runId) return;
    entry.run = null;
    this.#releaseLeaseIfIdle();
    const job = entry.job;
    const state = job.state;
    delete state.runningAt;
    delete state.runningRunId;
    delete state.runningScheduledAt;
    if (outcome.skipped === true) {
      // Another cluster node ran this due time and records it: only move on to the next.
      if (state.nextRunAt !== undefined && state.nextRunAt <= finishedAt) {
        state.nextRunAt = entry.compiled.nextAfter(finishedAt);
      }
      this.#reschedule(entry);
      for (const waiter of run.waiters) replies.push(() => waiter.reply(null));
      return;
    }
    const ok = outcome.status === "ok";
    const overtaken = ok ? undefined : completion.overtaken;
    state.runCount++;
    state.lastRunAt = run.startedAt;
    state.lastFinishedAt = finishedAt;
    state.lastStatus = outcome.status;
    state.lastDurationMs = Math.max(0, finishedAt - run.startedAt);
    if (ok) {
      state.consecutiveErrors = 0;
      delete state.lastError;
      delete state.retryAt;
    } else if (overtaken !== undefined) {
      // A later run of another service is the job's next attempt: the errors in a row are
      // the shared record's (this failure is logged, not counted twice nor retried).
      if (typeof overtaken.errors === "number") state.consecutiveErrors = overtaken.errors;
      state.lastError = outcome.error ?? "the run failed";
    } else {
      state.consecutiveErrors++;
      state.lastError = outcome.error ?? "the run failed";
    }
    const record: CronRun = {
      jobId: job.id,
      agentId: this.agentId,
      runId,
      trigger: run.trigger,
      status: outcome.status,
      scheduledAt: run.scheduledAt,
      startedAt: run.startedAt,
      finishedAt,
      durationMs: state.lastDurationMs,
      latenessMs: run.startedAt - run.scheduledAt,
      sessionKey: outcome.sessionKey ?? run.sessionKey,
      ...(outcome.output === undefined ? {} : { output: this.#summary(outcome.output) }),
      ...(ok ? {} : { error: state.lastError }),
      ...(ok || overtaken !== undefined ? {} : { consecutiveErrors: state.consecutiveErrors }),
      ...(completion.stuck === true ? { stuck: true } : {}),
      ...(run.policy === undefined ? {} : { policy: run.policy }),
      ...(delivery === undefined ? {} : { delivery }),
    };
    /** With a retry after this failed run: the next run as the schedule has it. */
    let onSchedule: number | undefined;
    /** When this failed run disabled the job: what the disable changed, to undo if it was overtaken. */
    let disabled: Pick<CronJob["state"], "nextRunAt" | "catchUpQueue" | "retryAt"> | undefined;
    // A one-shot job is done once its run ends, unless it was given a new schedule meanwhile:
    // then the run served the old one, and the new one is still ahead.
    if (entry.compiled.kind === "at" && run.schedule === JSON.stringify(job.schedule)) {
      state.completedAt = finishedAt;
      delete state.nextRunAt;
    } else if (!ok && state.consecutiveErrors >= this.#maxConsecutiveErrors) {
      if (job.enabled) {
        const { nextRunAt, catchUpQueue, retryAt } = state;
        disabled = { nextRunAt, catchUpQueue, retryAt };
      }
      job.enabled = false;
      state.disabledReason = `disabled after ${state.consecutiveErrors} consecutive errors; last error: ${state.lastError}`;
      state.disabledAt = finishedAt;
      delete state.nextRunAt;
      delete state.catchUpQueue;
      delete state.retryAt;
    } else if (job.enabled) {
      if (
        entry.compiled.kind !== "at" &&
        state.nextRunAt !== undefined &&
        state.nextRunAt <= finishedAt
      ) {
        // Occurrences that came due during the run are skipped: a job never overlaps itself.
        const skipped =
          1 + entry.compiled.countBetween(state.nextRunAt, finishedAt, MISSED_COUNT_LIMIT);
        record.skippedWhileRunning = skipped;
        state.nextRunAt = entry.compiled.nextAfter(finishedAt);
      }
      if (!ok && overtaken === undefined) {
        const retryAt = finishedAt + this.#backoff(state.consecutiveErrors);
        onSchedule = state.nextRunAt;
        state.retryAt = retryAt;
        if (state.nextRunAt !== undefined) state.nextRunAt = Math.max(state.nextRunAt, retryAt);
      }
    }
    this.#reschedule(entry);
    if (!entry.removed) {
      writes.push(
        this.#putJob(job, entry),
        this.#appendRun(record),
        this.#clearMarker(job.id, run),
      );
      if (this.#claimFires && overtaken === undefined) {
        // The backoff is shared with the other services on the store: after a failure,
        // the next due time here is the retry's, which one of them runs. Unless another
        // service started a later run of the job while this one ran: that run is the job's
        // next attempt, and its outcome sets the backoff (this run then retries nothing).
        // Found when the run ended (`overtaken`), nothing is written; claimed meanwhile,
        // what this failure changed here is undone.
        const retryAt = ok ? undefined : state.retryAt;
        const counted = state.consecutiveErrors;
        writes.push(
          this.#recordBackoff(
            job.id,
            state.consecutiveErrors,
            ok ? undefined : this.#dueOf(entry),
            run.scheduledAt,
          ).then((by) => {
            if (by === undefined || ok) return;
            if (entry.run !== null || entry.removed || entry.job !== job) return;
            if (state.consecutiveErrors !== counted) return;
            const errors = typeof by.errors === "number" ? by.errors : counted - 1;
            state.consecutiveErrors = errors;
            if (disabled !== undefined && errors < this.#maxConsecutiveErrors) {
              job.enabled = true;
              delete state.disabledReason;
              delete state.disabledAt;
              for (const field of ["nextRunAt", "catchUpQueue", "retryAt"] as const) {
                if (disabled[field] === undefined) delete state[field];
                else Object.assign(state, { [field]: disabled[field] });
              }
              if (
                entry.compiled.kind !== "at" &&
                state.nextRunAt !== undefined &&
                state.nextRunAt <= finishedAt
              ) {
                state.nextRunAt = entry.compiled.nextAfter(finishedAt);
              }
            }
            if (retryAt !== undefined && state.retryAt === retryAt) {
              delete state.retryAt;
              if (onSchedule !== undefined && state.nextRunAt !== undefined) {
                state.nextRunAt = onSchedule;
              }
            }
            this.#reschedule(entry);
            return this.#putJob(job, entry);
          }),
        );
      }
      if (outcome.sessionKey !== undefined && outcome.sessionKey !== run.sessionKey) {
        if (job.session === "isolated" && this.#deleteSession !== undefined) {
          writes.push(this.#indexIsolated(outcome.sessionKey, job.id, run.startedAt));
        }
      }
    }
    this.#emit(record);
    for (const waiter of run.waiters) replies.push(() => waiter.reply(copy(record)));
  }

  /** A run without a result after `stuckRunMs`: aborted and recorded as an error. */
  #clearStuck(entry: Entry, now: number, writes: Writes, replies: Array<() => void>): void {
    const run = entry.run!;
    run.controller.abort();
    this.#finish(
      {
        entry,
        runId: run.runId,
        outcome: {
          status: "error",
          error: `no result after ${formatMs(this.#stuckRunMs)}; the run was cleared as stuck`,
        },
        finishedAt: now,
        delivery: undefined,
        stuck: true,
      },
      writes,
      replies,
    );
  }

  #backoff(consecutiveErrors: number): number {
    const steps = this.#backoffMs;
    return steps[Math.min(consecutiveErrors, steps.length) - 1]!;
  }

  /**
   * Occurrences from `state.nextRunAt` up to `now` were missed. The job's policy decides
   * which of them run now (queued, oldest first); every other one is recorded as `missed`.
   */
  #handleMissed(entry: Entry, now: number, writes: Writes): void {
    const job = entry.job;
    const state = job.state;
    const first = state.nextRunAt!;
    const { compiled } = entry;
    const total = 1 + compiled.countBetween(first, now, MISSED_COUNT_LIMIT);
    const policy = job.catchUp;
    const toRun =
      policy === "skip" ? 0 : policy === "run-once" ? 1 : Math.min(total, job.catchUpLimit);
    const recentCount = Math.min(total, toRun + MISSED_RECORDED_EACH);
    const recent = recentOccurrences(compiled, first, now, recentCount);
    const runs = recent.slice(recent.length - toRun);
    const missedEach = recent.slice(0, recent.length - toRun);
    const older = total - recent.length;
    // Catch-up runs still queued from an earlier start (the service stopped before it ran
    // them) count against the same cap: the policy's most recent runs win, the queued
    // ones past it are missed too.
    const queue = [...(state.catchUpQueue ?? []), ...runs];
    const cap = policy === "skip" ? 0 : policy === "run-once" ? 1 : job.catchUpLimit;
    const dropped = queue.splice(0, Math.max(0, queue.length - cap));
    for (const scheduledAt of dropped) this.#recordMissed(entry, scheduledAt, now, 1, writes);
    if (older > 0) {
      this.#recordMissed(entry, first, now, older, writes);
    }
    for (const scheduledAt of missedEach) this.#recordMissed(entry, scheduledAt, now, 1, writes);
    state.missedCount += total - toRun + dropped.length;
    if (queue.length > 0) state.catchUpQueue = queue;
    else delete state.catchUpQueue;
    if (compiled.kind === "at") {
      delete state.nextRunAt;
      if (runs.length === 0) state.completedAt = now;
    } else {
      state.nextRunAt = compiled.nextAfter(now);
    }
  }

  #recordMissed(entry: Entry, scheduledAt: number, now: number, count: number, writes: Writes) {
    const job = entry.job;
    const record: CronRun = {
      jobId: job.id,
      agentId: this.agentId,
      runId: randomUUID(),
      trigger: "schedule",
      status: "missed",
      scheduledAt,
      startedAt: scheduledAt,
      latenessMs: now - scheduledAt,
      policy: job.catchUp,
      ...(count > 1 ? { missedCount: count } : {}),
    };
    const claim = this.#claimMissed;
    if (claim === undefined) {
      writes.push(this.#appendRun(record));
      this.#emit(record);
      return;
    }
    // A cluster: the due time may have been run (or recorded missed) by another node while
    // this one was busy or stalled. Only the node that claims it records it; a claim that
    // cannot be made (the store unreachable) records it, as without a guard.
    const recordIt = (): Promise<unknown> => {
      this.#emit(record);
      return this.#appendRun(record);
    };
    writes.push(
      claim(job, scheduledAt).then((won) => {
        if (won) return recordIt();
        // Not missed after all: the job's count of missed due times is put right on its
        // next write (a counter is written as this service's difference).
        const state = entry.job.state;
        state.missedCount = Math.max(0, state.missedCount - count);
        return undefined;
      }, recordIt),
    );
  }

  /**
   * The run of a job that was just removed: aborted, and over at once for whoever waits on
   * it (`runNow`), as `interrupted`, whether or not the job's code ever settles. Nothing is
   * stored (the job and its log are gone); the run's late end is ignored.
   */
  #abandonRun(entry: Entry): void {
    const run = entry.run;
    if (run === null) return;
    entry.run = null;
    this.#releaseLeaseIfIdle();
    run.controller.abort();
    const now = this.#clock.now();
    const record: CronRun = {
      jobId: entry.job.id,
      agentId: this.agentId,
      runId: run.runId,
      trigger: run.trigger,
      status: "interrupted",
      scheduledAt: run.scheduledAt,
      startedAt: run.startedAt,
      finishedAt: now,
      durationMs: Math.max(0, now - run.startedAt),
      latenessMs: run.startedAt - run.scheduledAt,
      sessionKey: run.sessionKey,
      error: "the job was removed while it ran",
    };
    this.#emit(record);
    for (const waiter of run.waiters) waiter.reply(copy(record));
  }

  /** A run in progress when the previous process (or this service) stopped. */
  #recordInterrupted(
    entry: Entry,
    now: number,
    writes: Writes,
    trigger?: CronRunTrigger,
    sessionKey?: string,
    schedule?: string,
  ): void {
    const job = entry.job;
    const startedUnder = entry.run?.schedule ?? schedule;
    const state = job.state;
    const startedAt = state.runningAt ?? now;
    const scheduledAt = state.runningScheduledAt ?? startedAt;
    const record: CronRun = {
      jobId: job.id,
      agentId: this.agentId,
      runId: state.runningRunId ?? randomUUID(),
      trigger: entry.run?.trigger ?? trigger ?? "schedule",
      status: "interrupted",
      scheduledAt,
      startedAt,
      finishedAt: now,
      durationMs: Math.max(0, now - startedAt),
      latenessMs: startedAt - scheduledAt,
      error: "the cron service stopped while the job was running",
      ...((entry.run?.sessionKey ?? sessionKey) === undefined
        ? {}
        : { sessionKey: entry.run?.sessionKey ?? sessionKey }),
    };
    entry.run = null;
    delete state.runningAt;
    delete state.runningRunId;
    delete state.runningScheduledAt;
    state.lastStatus = "interrupted";
    state.lastRunAt = startedAt;
    state.runCount++;
    if (
      entry.compiled.kind === "at" &&
      (startedUnder === undefined || startedUnder === JSON.stringify(job.schedule))
    ) {
      // At most once: a one-shot job that started counts as run (unless it was given a new
      // schedule while it ran).
      state.completedAt = now;
      delete state.nextRunAt;
    }
    writes.push(this.#appendRun(record));
    this.#emit(record);
  }

  #revive(record: CronJob, now: number): CronJob {
    const job = copy(record);
    job.state = { ...freshState(), ...(job.state ?? {}) };
    job.source ??= "api";
    job.createdAt ??= now;
    return job;
  }

  // ------------------------------------------------------------------ sync across nodes

  /** A change published by another copy of this service: reloaded in the mailbox. */
  #onChange(change: CronJobChange): void {
    if (typeof change !== "object" || change === null || change.origin === this.#instanceId) return;
    if (change.agentId !== this.agentId) return;
    if (typeof change.jobId !== "string" || change.jobId === "") return;
    if (this.#pendingSync.size >= MAX_PENDING_SYNC) {
      this.#pendingSync.clear();
      this.#fullResync = true;
    } else if (!this.#fullResync) {
      this.#pendingSync.add(change.jobId);
    }
    this.#notify("sync");
  }

  /** Reloads the jobs changed elsewhere, or all of them when the resync period passed. */
  async #applySync(): Promise<void> {
    const full = this.#fullResync;
    const ids = [...this.#pendingSync];
    this.#fullResync = false;
    this.#pendingSync.clear();
    try {
      await this.#reload(ids, full);
    } catch {
      // The store is unreachable: the next full resync reloads everything.
    } finally {
      if (full) this.#armResync();
    }
    this.#arm();
  }

  /**
   * Makes this service's copies of `ids` (all jobs when `full`) match the store: jobs added
   * elsewhere are scheduled here, removed ones dropped (a run of them here is aborted), and
   * changed ones take the stored definition and state.
   */
  async #reload(ids: readonly string[], full: boolean): Promise<void> {
    const now = this.#clock.now();
    const writes: Writes = [];
    if (full) {
      const records = (await this.#store.cron.listJobs(this.agentId)) as CronJob[];
      const stored = new Set<string>();
      for (const record of records) {
        stored.add(record.id);
        this.#merge(record.id, record, now, writes);
      }
      for (const id of [...this.#entries.keys()]) {
        if (!stored.has(id)) this.#merge(id, undefined, now, writes);
      }
    } else {
      const records = await Promise.all(ids.map((id) => this.#store.cron.getJob(id)));
      ids.forEach((id, i) => {
        this.#merge(id, records[i] as CronJob | undefined, now, writes);
      });
    }
    // Only markers of runs aborted here; failures leave them to the next start.
    await Promise.allSettled(writes);
  }

  /** Takes the stored `record` of job `id` (`undefined`: it was removed) into this service. */
  #merge(id: string, record: CronJob | undefined, now: number, writes: Writes): void {
    const entry = this.#entries.get(id);
    /** The record in the store: the base of the job's next merged write. */
    const inStore = record;
    if (entry?.unwritten === true && entry.stored !== undefined && record !== undefined) {
      // A write of this job is deferred (see `#deferWrite`): its changes are kept on top of
      // the stored record, and the deferred write merges them into the store later.
      record = mergeJob(entry.stored, withoutRunning(entry.job), record);
    }
    let job: CronJob | undefined;
    let compiled: CompiledSchedule | undefined;
    let invalid: string | undefined;
    if (record !== undefined && record.agentId === this.agentId) {
      job = this.#revive(record, now);
      try {
        compiled = compileSchedule(job.schedule, job.createdAt, job.id);
      } catch (error) {
        // A stored job that no longer validates is kept but never scheduled (as on start).
        compiled = NEVER;
        invalid = `invalid schedule: ${describe(error)}`;
      }
    }
    if (job === undefined || compiled === undefined) {
      if (entry === undefined) return;
      entry.removed = true;
      if (entry.run !== null) writes.push(this.#clearMarker(id, entry.run));
      this.#abandonRun(entry);
      this.#heap.delete(entry);
      this.#entries.delete(id);
      return;
    }
    const state = job.state;
    const stored = copy(inStore === record ? job : this.#revive(inStore as CronJob, now));
    if (entry === undefined) {
      const added: Entry = { job, compiled, run: null, removed: false, dueAt: 0, heapIndex: -1 };
      added.stored = stored;
      if (invalid !== undefined) added.invalid = invalid;
      this.#settleSynced(added, now);
      this.#entries.set(id, added);
      this.#reschedule(added);
      return;
    }
    const local = entry.job;
    if (entry.run !== null) {
      // The run in progress here goes on; it is not part of the stored state.
      state.runningAt = local.state.runningAt;
      state.runningRunId = local.state.runningRunId;
      state.runningScheduledAt = local.state.runningScheduledAt;
    }
    const sameDefinition =
      local.updatedAt === job.updatedAt &&
      local.enabled === job.enabled &&
      JSON.stringify(local.schedule) === JSON.stringify(job.schedule);
    if (
      sameDefinition &&
      local.state.nextRunAt !== undefined &&
      state.nextRunAt !== undefined &&
      local.state.nextRunAt > state.nextRunAt
    ) {
      // Due times this service already went past (run or skipped here) are not taken back.
      state.nextRunAt = local.state.nextRunAt;
    }
    entry.job = job;
    entry.compiled = compiled;
    entry.stored = stored;
    if (invalid === undefined) delete entry.invalid;
    else entry.invalid = invalid;
    this.#settleSynced(entry, now);
    this.#reschedule(entry);
  }

  /**
   * A reloaded job's next run: occurrences that passed while another node had the job are
   * that node's business (run, skipped or recorded as missed there), so only the current
   * one is contended for here (through the runner's cluster guard) and older ones are not
   * recorded again as missed.
   */
  #settleSynced(entry: Entry, now: number): void {
    if (!this.#schedulable(entry)) return;
    const state = entry.job.state;
    if (state.nextRunAt === undefined) {
      state.nextRunAt = this.#firstRun(entry, now);
      return;
    }
    if (entry.compiled.kind === "at" || state.nextRunAt > now) return;
    const following = entry.compiled.nextAfter(state.nextRunAt);
    if (following !== undefined && following <= now)
      state.nextRunAt = entry.compiled.nextAfter(now);
  }

  /** Arms the timer of the next full resync (with a sync, or a `resyncMs` given). */
  #armResync(): void {
    if (!this.#resyncs || !this.alive) return;
    if (this.#resyncTimer !== undefined) this.#clock.clearTimer(this.#resyncTimer);
    this.#resyncTimer = this.#elapsed.setTimer(() => {
      this.#resyncTimer = undefined;
      this.#fullResync = true;
      this.#pendingSync.clear();
      this.#notify("sync");
    }, this.#resyncMs);
  }

  #stopSync(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#resyncTimer !== undefined) this.#clock.clearTimer(this.#resyncTimer);
    this.#resyncTimer = undefined;
  }

  /** Job `id` was written or deleted: the other services hear of it after the handler. */
  #changed(id: string): void {
    if (this.#sync !== undefined) this.#dirty.add(id);
  }

  /**
   * Publishes the jobs changed by the handler that just ran (after its writes). A publish
   * that fails is left to the other services' next full resync.
   */
  #publishChanges(): void {
    const sync = this.#sync;
    if (sync === undefined || this.#dirty.size === 0) return;
    for (const jobId of this.#dirty) {
      try {
        void sync
          .publish({ agentId: this.agentId, jobId, origin: this.#instanceId })
          .catch(() => undefined);
      } catch {
        // As a rejection: healed by the resync.
      }
    }
    this.#dirty.clear();
  }

  // ------------------------------------------------------------------ isolated sessions

  /** Where the marker of a job's run in progress is kept. */
  #markerKey(jobId: string): string {
    return this.#markerPrefix() + jobId;
  }

  #markerPrefix(): string {
    return `cron:running:${this.agentId}:`;
  }

  /** Deletes the running marker of `run` if it wrote one and it is still there (not a later run's). */
  #clearMarker(jobId: string, run: ActiveRun): Promise<unknown> {
    const marker = run.marker;
    if (marker === undefined) return Promise.resolve();
    return this.#store.kv.delete(this.#markerKey(jobId), { ifValue: marker as JsonValue });
  }

  /** Where the liveness key of service `owner` is kept while it has runs in progress. */
  #aliveKey(owner: string): string {
    return `cron:alive:${this.agentId}:${owner}`;
  }

  /**
   * Whether the service that wrote `marker` (of a run of `job`) may still be running it: this
   * same service; a service of this process that is started and not stopped; a service of
   * another process whose liveness key has not run out (see `RUN_LEASE_MS`). A marker of an
   * older version names no writer, which may still be running it (a rolling upgrade): it is
   * taken as left by a stopped writer only once the run is older than that writer would let
   * it go on (see `#ownerlessRunMs`).
   */
  async #writerAlive(marker: RunMarker, job: CronJob | undefined): Promise<boolean> {
    const owner = marker.owner;
    if (typeof owner !== "string") {
      return job !== undefined && this.#clock.now() - marker.startedAt < this.#ownerlessRunMs(job);
    }
    if (owner === this.#instanceId) return true;
    if (marker.process === PROCESS_ID) return LIVE_SERVICES.has(owner);
    return (await this.#store.kv.get(this.#aliveKey(owner))) !== undefined;
  }

  /**
   * How long after its start the run of `job` under a marker of an older version (no writer
   * named, see `RunMarker.owner`) may still be in progress on a live writer. Such a writer
   * ends a run within the job's `timeoutMs` (the run is cancelled past it) and its delivery
   * (bounded by `announceTimeoutMs` / `webhookTimeoutMs`), and in any case clears it as
   * stuck after `stuckRunMs` (a rolling upgrade keeps the configuration: taken as this
   * service's); plus a lease (30 s) for its last writes. Past that, the marker is of a
   * writer that is gone, and its run is recorded `interrupted`.
   */
  #ownerlessRunMs(job: CronJob): number {
    const delivery =
      job.delivery?.kind === "announce"
        ? this.#announceTimeoutMs
        : job.delivery?.kind === "webhook"
          ? this.#webhookTimeoutMs
          : 0;
    const limited = typeof job.timeoutMs === "number" ? job.timeoutMs + delivery : Infinity;
    return Math.min(limited, this.#stuckRunMs) + RUN_LEASE_MS;
  }

  /**
   * Whether the run of `marker` was recorded in the job's run log (by its writer). The log
   * is newest first by start: it is read by pages (the default page, then the store's largest,
   * each from where the last ended) until the run is found, a page reaches runs that started
   * before it (the run would be among the runs read), or the log ends, so that the run is
   * found however many runs were logged since. A store that ignored `offset` would list its
   * first page again: the lookup ends once a page repeats the last one's first run.
   */
  async #logged(jobId: string, marker: RunMarker): Promise<boolean> {
    let offset = 0;
    let limit = RUN_LOOKUP_FIRST_PAGE;
    let previousFirst: string | undefined;
    for (;;) {
      const page = await this.#store.cron.listRuns(
        jobId,
        offset === 0 ? { limit } : { limit, offset },
      );
      if (page.some((run) => run.runId === marker.runId)) return true;
      const oldest = page.at(-1);
      if (page.length < limit || oldest === undefined || oldest.startedAt < marker.startedAt) {
        return false;
      }
      const first = JSON.stringify(page[0]);
      if (first === previousFirst) return false;
      previousFirst = first;
      offset += limit;
      limit = RUN_LOOKUP_PAGE;
    }
  }

  /**
   * Writes this service's liveness key before a running marker that names it, and keeps it
   * renewed while this service has runs in progress (past them, it runs out on its own).
   * Resolves once the key is written (a write already under way is shared).
   */
  #holdLease(): Promise<unknown> {
    if (this.#lease !== undefined && this.#leaseTimer !== undefined) return this.#lease;
    return this.#renewLease();
  }

  #renewLease(): Promise<unknown> {
    const write = this.#store.kv.set(
      this.#aliveKey(this.#instanceId),
      { process: PROCESS_ID },
      { ttlMs: RUN_LEASE_MS },
    );
    this.#lease = write;
    this.#leaseWritten = true;
    // A write that failed is not shared with the next run's start: that one writes again.
    write.catch(() => {
      if (this.#lease === write) this.#lease = undefined;
    });
    if (this.#leaseTimer !== undefined) this.#clock.clearTimer(this.#leaseTimer);
    this.#leaseTimer = undefined;
    if (!this.alive) return write;
    this.#leaseTimer = this.#elapsed.setTimer(() => {
      this.#leaseTimer = undefined;
      // A renewal that fails is tried again at the next one (the key lasts three of them).
      if (this.#hasMarkedRuns()) this.#renewLease().catch(() => undefined);
    }, RUN_LEASE_MS / 3);
    return write;
  }

  #hasMarkedRuns(): boolean {
    for (const entry of this.#entries.values()) if (entry.run?.marker !== undefined) return true;
    return false;
  }

  /** A run ended: with none left in progress, the liveness key is no longer renewed (it runs out). */
  #releaseLeaseIfIdle(): void {
    if (this.#leaseTimer === undefined || this.#hasMarkedRuns()) return;
    this.#clock.clearTimer(this.#leaseTimer);
    this.#leaseTimer = this.#lease = undefined;
  }

  #stopLease(): void {
    if (this.#leaseTimer !== undefined) this.#clock.clearTimer(this.#leaseTimer);
    if (this.#foreignTimer !== undefined) this.#clock.clearTimer(this.#foreignTimer);
    this.#leaseTimer = this.#foreignTimer = undefined;
  }

  /** With markers of other live services found on start: looks at them again in a lease's time. */
  #armForeignCheck(): void {
    if (this.#foreign.size === 0 || !this.alive || this.#foreignTimer !== undefined) return;
    this.#foreignTimer = this.#elapsed.setTimer(() => {
      this.#foreignTimer = undefined;
      this.#notify("markers");
    }, RUN_LEASE_MS);
  }

  /**
   * The markers of other services' runs found on start: one gone (or replaced by a later
   * run's) was recorded by its writer; one whose writer has died since (its liveness key ran
   * out: the process crashed) is recorded `interrupted` here, as on a start; the others are
   * looked at again later. A job running here right now is looked at again after its run.
   * A detached one (its marker replaced by a run of this service, see `ForeignRun`) is
   * followed by its writer's liveness key, and once the writer is gone looked up in the job's
   * run log: there, its writer recorded it; absent, it is recorded `interrupted` (without
   * changing the job's last status when a later run has set it).
   */
  async #checkForeign(): Promise<void> {
    const writes: Writes = [];
    try {
      for (const [jobId, { marker: seen, detached }] of [...this.#foreign]) {
        const key = this.#markerKey(jobId);
        const marker = detached ? seen : await this.#store.kv.get<RunMarker>(key);
        if (marker === undefined || marker.runId !== seen.runId) {
          this.#foreign.delete(jobId);
          continue;
        }
        const entry = this.#entries.get(jobId);
        if (
          (await this.#writerAlive(marker, entry?.job)) ||
          (entry !== undefined && entry.run !== null)
        )
          continue;
        if (detached) {
          const logged = entry === undefined || (await this.#logged(jobId, marker));
          this.#foreign.delete(jobId);
          if (logged) continue;
        } else {
          this.#foreign.delete(jobId);
          writes.push(this.#store.kv.delete(key, { ifValue: marker as JsonValue }));
        }
        if (entry === undefined) continue;
        const { lastStatus, lastRunAt } = entry.job.state;
        this.#resumeMarker(entry, marker);
        this.#recordInterrupted(
          entry,
          this.#clock.now(),
          writes,
          marker.trigger,
          marker.sessionKey,
          marker.schedule,
        );
        if (lastRunAt !== undefined && lastRunAt > marker.startedAt) {
          // A later run (this service's, under a detached marker) keeps its place as the last.
          Object.assign(entry.job.state, { lastStatus, lastRunAt });
        }
        writes.push(this.#putJob(entry.job, entry));
        this.#reschedule(entry);
      }
    } catch {
      // The store is unreachable: looked at again later.
    }
    await Promise.allSettled(writes);
    this.#publishChanges();
    this.#armForeignCheck();
    this.#arm();
  }

  #indexIsolated(sessionKey: string, jobId: string, createdAt: number): Promise<unknown> {
    return this.#store.kv.set(this.#indexPrefix() + sessionKey, { jobId, createdAt });
  }

  #indexPrefix(): string {
    return `cron:isolated:${this.agentId}:`;
  }

  /** Deletes isolated sessions older than the TTL, at most once an hour, in the background. */
  #maybeSweep(now: number): void {
    if (this.#deleteSession === undefined || this.#sweeping) return;
    if (now - this.#lastSweepAt < SWEEP_INTERVAL_MS) return;
    this.#lastSweepAt = now;
    this.#sweeping = true;
    void this.#sweep(now)
      .catch(() => undefined) // the next sweep retries
      .finally(() => {
        this.#sweeping = false;
      });
  }

  async #sweep(now: number): Promise<void> {
    const prefix = this.#indexPrefix();
    const cutoff = now - this.#isolatedSessionTtlMs;
    // Page by page: the index of isolated sessions can be long, and entries go as it runs.
    for await (const key of iterateKvKeys(this.#store.kv, prefix)) {
      if (!this.alive) return;
      const entry = await this.#store.kv.get<{ createdAt?: number }>(key);
      if (entry === undefined || typeof entry.createdAt !== "number" || entry.createdAt > cutoff) {
        continue;
      }
      await this.#deleteSession!(key.slice(prefix.length));
      await this.#store.kv.delete(key);
    }
  }

  // ------------------------------------------------------------------ store and telemetry

  /**
   * Stores the job. A run in progress is not part of it: that is the marker's business, so
   * an update during a run never makes a stale "running" state durable.
   *
   * Alone (a job not stored yet), `job` is written as it is. When `entry` holds the job as
   * last stored (its base), the write is a three-way merge under the job's lock (when the
   * store has locks): the fields this service changed since the base are applied to the
   * record now in the store (counters by their difference), so that a change another service
   * made meanwhile (another node of a cluster, or another process on the store without one)
   * is kept; if there was one, the job is then reloaded here. A job removed elsewhere
   * meanwhile is not written back, and is dropped here.
   */
  #putJob(job: CronJob, entry?: Entry): Promise<void> {
    this.#changed(job.id);
    if (entry?.stored !== undefined) {
      return this.#putMerged(entry, entry.stored, job, this.#callLockWait);
    }
    const record = withoutRunning(job);
    if (entry !== undefined) entry.stored = copy(record);
    return this.#store.cron.putJob(record);
  }

  /**
   * `lockWait`: how the request in progress takes the lock (see {@link CallLockWait});
   * `undefined` for the service's own writes, which are deferred while the lock is held
   * longer than a merge takes (see `#deferWrite`).
   */
  async #putMerged(
    entry: Entry,
    base: CronJob,
    mine: CronJob,
    lockWait: CallLockWait | undefined,
  ): Promise<void> {
    // Already waiting for the lock: that write carries this change too.
    if (lockWait === undefined && entry.unwritten === true && !this.#stopping) return;
    const mineStored = withoutRunning(mine);
    const lease = await this.#lockForWrite(mine.id, lockWait);
    if (lease === BUSY) {
      if (lockWait === "call") throw new JobLockBusy(mine.id);
      this.#deferWrite(entry);
      return;
    }
    entry.unwritten = false;
    try {
      const theirs = (await this.#store.cron.getJob(mine.id)) as CronJob | undefined;
      if (theirs === undefined) {
        // Removed elsewhere: a write would bring it back. The change feed drops it here.
        this.#pendingSync.add(mine.id);
        this.#notify("sync");
        return;
      }
      const merged = mergeJob(base, mineStored, theirs);
      await this.#store.cron.putJob(merged);
      entry.stored = copy(merged);
      if (JSON.stringify(merged) !== JSON.stringify(mineStored)) {
        // Another node's change is in the merged record: take it in here too.
        this.#pendingSync.add(mine.id);
        this.#notify("sync");
      }
    } finally {
      if (lease !== undefined) await this.#store.locks?.release(lease).catch(() => false);
    }
  }

  /**
   * The job's write lock as a write inside the actor takes it: waiting no longer than a merge
   * holds it (`MERGE_LOCK_WAIT_MS`), so that a lock whose holder died never holds up the
   * mailbox; past that, {@link BUSY}. Unlocked (`undefined`) without a lock store, or when
   * the caller already waited a whole lease (`"none"`). A stopping service, and a change sent
   * to the actor directly (`"inside"`), wait as long as `#lockJob` does.
   */
  async #lockForWrite(
    id: string,
    lockWait?: CallLockWait,
  ): Promise<Lease | undefined | typeof BUSY> {
    const locks = this.#store.locks;
    if (locks === undefined) return undefined;
    if (this.#stopping || lockWait === "inside") return this.#lockJob(id);
    const name = this.#lockName(id);
    const until = Date.now() + (lockWait === "none" ? 0 : MERGE_LOCK_WAIT_MS);
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      const lease = await locks.acquire(name, { owner: this.#instanceId, ttlMs: LOCK_TTL_MS });
      if (lease !== undefined) return lease;
      if (Date.now() >= until) return lockWait === "none" ? undefined : BUSY;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /**
   * A write of the service's own (a run recorded, a due time moved) found the job's lock held
   * longer than a merge takes: the job's state stays as it is here (served to reads, used by
   * the schedule), and is written once the lock is free, waited for outside the mailbox. Its
   * merge base is unchanged meanwhile, so the write then carries every change made since.
   */
  #deferWrite(entry: Entry): void {
    if (entry.unwritten === true) return;
    entry.unwritten = true;
    const id = entry.job.id;
    void this.#lockJob(id, this.#lockWaits.signal).then(
      async (lease) => {
        if (lease !== undefined) await this.#store.locks?.release(lease).catch(() => false);
        if (this.#lockWaits.signal.aborted) return;
        this.#flushReady.set(id, lease === undefined);
        this.#notify("flush");
      },
      () => {
        // The store failed: the next write of the job, or the next tick, tries again.
        entry.unwritten = false;
      },
    );
  }

  /** Writes the jobs whose deferred write may go ahead (see `#deferWrite`). */
  async #flushDeferred(): Promise<void> {
    const ready = [...this.#flushReady];
    this.#flushReady.clear();
    const writes: Writes = [];
    for (const [id, unlocked] of ready) {
      const entry = this.#entries.get(id);
      if (entry === undefined || entry.removed || entry.unwritten !== true) continue;
      entry.unwritten = false;
      this.#changed(id);
      if (entry.stored === undefined) writes.push(this.#putJob(entry.job, entry));
      else
        writes.push(this.#putMerged(entry, entry.stored, entry.job, unlocked ? "none" : undefined));
    }
    try {
      await Promise.all(writes);
    } finally {
      this.#publishChanges();
    }
  }

  #lockName(id: string): string {
    return `cron-job:${this.agentId}:${id}`;
  }

  /**
   * The job's write lock, waited for outside the mailbox (see `#write`, `#deferWrite`), or
   * inside it by a stopping service; `undefined` without a lock store. A merge holds it for
   * a few milliseconds: past `LOCK_WAIT_MS` its holder may have died, so the wait goes on
   * until the holder's lease runs out (at most `LOCK_TTL_MS`, after which the lock is free).
   * Only when the lock is taken again and again for longer than a whole lease (live writers
   * without end), or `signal` aborts, does it give up (`undefined`), and the merge goes ahead
   * unlocked, which still loses nothing but a change made in the same few milliseconds.
   */
  async #lockJob(id: string, signal?: AbortSignal): Promise<Lease | undefined> {
    const locks = this.#store.locks;
    if (locks === undefined) return undefined;
    const name = this.#lockName(id);
    const started = Date.now();
    // The longest anyone can hold the lock without renewing it, with room for clock skew.
    const latest = started + LOCK_WAIT_MS + LOCK_TTL_MS + LOCK_SKEW_MS;
    let deadline = started + LOCK_WAIT_MS;
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      if (signal?.aborted === true) return undefined;
      const lease = await locks.acquire(name, { owner: this.#instanceId, ttlMs: LOCK_TTL_MS });
      if (lease !== undefined) return lease;
      const now = Date.now();
      if (now >= latest) return undefined;
      if (now >= deadline) {
        // Held longer than a merge takes: wait for the holder's lease to run out.
        const holder = await locks.holder(name);
        deadline = Math.min(
          latest,
          holder === undefined ? now : Math.min(holder.expiresAt, now + LOCK_TTL_MS) + LOCK_SKEW_MS,
        );
        wait = 2;
      }
      await pause(wait, signal);
    }
  }

  #appendRun(record: CronRun): Promise<void> {
    return this.#store.cron.appendRun(record, { keep: this.#runLogKeep });
  }

  #summary(output: string): string {
    const max = this.#outputSummaryChars;
    return output.length <= max ? output : `${output.slice(0, max)}…`;
  }

  #emit(record: CronRun): void {
    emitTelemetry("beamclaw:cron.run", () => ({
      agentId: record.agentId,
      jobId: record.jobId,
      runId: record.runId,
      trigger: record.trigger,
      status: record.status,
      scheduledAt: record.scheduledAt,
      startedAt: record.startedAt,
      durationMs: record.durationMs ?? 0,
      latenessMs: record.latenessMs,
      ...(record.error === undefined ? {} : { error: record.error }),
      session: record.sessionKey,
      tenant: telemetryTenantOf(this.#store),
    }));
  }
}

/** Copies a run's outcome onto its `beamclaw:cron.run` trace; a run in `error` is an error. */
function settleCronTrace(result: { outcome: CronRunOutcome }, trace: CronRunTrace): void {
  trace.status = result.outcome.status;
  if (result.outcome.status === "error") trace.error = result.outcome.error ?? "error";
  if (result.outcome.sessionKey !== undefined) trace.session = result.outcome.sessionKey;
}

/** An AbortController whose signal any number of waits may listen to. */
function unlimitedAbortController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}

/** Resolves after `ms`, or at once when `signal` aborts (a stopping service's lock waits). */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** The schedule of a stored job whose own no longer validates: never due. */
const NEVER: CompiledSchedule = Object.freeze({
  kind: "cron",
  nextAfter: () => undefined,
  countBetween: () => 0,
  recentBetween: () => [],
});

/** The instant of an `at` schedule (already validated). */
function parseAtOf(entry: Entry): number | undefined {
  return entry.compiled.nextAfter(Number.NEGATIVE_INFINITY);
}

/**
 * The `count` most recent of: `first` (a due time, possibly moved by backoff), then the
 * schedule's occurrences after it up to `now`; oldest first.
 */
function recentOccurrences(
  compiled: CompiledSchedule,
  first: number,
  now: number,
  count: number,
): number[] {
  if (count <= 0) return [];
  const after = compiled.recentBetween(first, now, count);
  return after.length >= count ? after : [first, ...after];
}

function checkOutcome(value: unknown): CronRunOutcome {
  const outcome = value as CronRunOutcome | undefined;
  if (
    typeof outcome !== "object" ||
    outcome === null ||
    (outcome.status !== "ok" && outcome.status !== "error")
  ) {
    return {
      status: "error",
      error: `runJob must resolve to { status: "ok" | "error" }, got ${describe(value)}`,
    };
  }
  return {
    status: outcome.status,
    ...(typeof outcome.output === "string" ? { output: outcome.output } : {}),
    ...(typeof outcome.error === "string" ? { error: outcome.error } : {}),
    ...(typeof outcome.sessionKey === "string" ? { sessionKey: outcome.sessionKey } : {}),
    ...(outcome.skipped === true ? { skipped: true } : {}),
  };
}

function changed(job: CronJob, fields: Omit<CronJobConfig, "id" | "agentId">): boolean {
  for (const [key, value] of Object.entries(fields)) {
    if (JSON.stringify((job as Record<string, unknown>)[key]) !== JSON.stringify(value)) {
      return true;
    }
  }
  return false;
}

/**
 * The update that makes config job `job` match the file's `fields`. A one-shot job that
 * already ran keeps its `enabled` unless it is given a new schedule: it cannot run again, and
 * asking to enable it would refuse the whole reload.
 */
function configPatch(job: CronJob, fields: Omit<CronJobConfig, "id" | "agentId">): CronJobPatch {
  const patch: CronJobPatch = { ...fields, timeoutMs: fields.timeoutMs ?? null };
  if (job.state.completedAt !== undefined && sameJson(fields.schedule, job.schedule)) {
    delete patch.enabled;
  }
  return patch;
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms} ms`;
}

/** The job as stored: the running markers live in `store.kv`, not in the record. */
function withoutRunning(job: CronJob): CronJob {
  const { runningAt, runningRunId, runningScheduledAt, ...state } = job.state;
  if (runningAt === undefined && runningRunId === undefined && runningScheduledAt === undefined) {
    return job;
  }
  return { ...job, state: state as CronJob["state"] };
}

/** Whether two records of a job have the same definition: every field but its state. */
function sameDefinition(a: CronJob, b: CronJob): boolean {
  const left = a as unknown as Record<string, unknown>;
  const right = b as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(left), ...Object.keys(right)])) {
    if (key !== "state" && key !== "createdAt" && !sameJson(left[key], right[key])) return false;
  }
  return true;
}

function sameJson(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Three-way merge of a job record: `theirs` (in the store now) with the changes `mine`
 * made to `base`, field by field (state fields too); a counter gets `mine`'s increment.
 * @internal
 */
export function mergeJob(base: CronJob, mine: CronJob, theirs: CronJob): CronJob {
  const out = { ...theirs, state: { ...theirs.state } } as CronJob;
  const target = out as unknown as Record<string, unknown>;
  const before = base as unknown as Record<string, unknown>;
  const after = mine as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (key === "state" || sameJson(before[key], after[key])) continue;
    if (key in after) target[key] = after[key];
    else delete target[key];
  }
  const state = out.state as unknown as Record<string, unknown>;
  const baseState = base.state as unknown as Record<string, unknown>;
  const mineState = mine.state as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(baseState), ...Object.keys(mineState)])) {
    const was = baseState[key];
    const now = mineState[key];
    if (sameJson(was, now)) continue;
    if (COUNTERS.has(key) && typeof was === "number" && typeof now === "number") {
      const current = state[key];
      state[key] = (typeof current === "number" ? current : was) + (now - was);
    } else if (key in mineState) {
      state[key] = now;
    } else {
      delete state[key];
    }
  }
  return out;
}
