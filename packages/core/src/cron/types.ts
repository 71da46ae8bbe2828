/**
 * The shapes of the cron subsystem: jobs as stored, the run log, the job runner and the
 * delivery callback.
 */
import type { CronJobRecord, CronRunRecord } from "../store/types.js";
import type { CronSchedule } from "./schedule.js";

/** Where a job's prompt goes: the agent's main session, or a fresh session per run. */
export type CronSessionTarget = "main" | "isolated";

/**
 * What happens to runs missed while the service was not running (or could not fire):
 * - `skip`: none of them runs; each is recorded as `missed`.
 * - `run-once`: the most recent runs once, now; the others are recorded as `missed`.
 * - `run-all`: the most recent `catchUpLimit` run now, one after another (oldest first); the
 *   rest are recorded as `missed`.
 */
export type CronCatchUpPolicy = "skip" | "run-once" | "run-all";

/**
 * Where a run's output goes:
 * - `none`: nowhere (it is in the run log and the session transcript).
 * - `announce`: to a channel target through the service's `deliver` callback, for runs
 *   that end `ok` with non-empty output.
 * - `webhook`: a JSON `POST` of every finished run to `url`.
 */
export type CronDelivery =
  | { kind: "none" }
  | { kind: "announce"; channel: string; target: string }
  | { kind: "webhook"; url: string };

/** What `add` accepts. Omitted fields take the defaults shown. */
export interface CronJobInput {
  /** Matches `^[a-z0-9][a-z0-9_-]{0,63}$`; unique in the store (across agents). */
  id: string;
  /** Must be the service's agent when given. */
  agentId?: string;
  schedule: CronSchedule;
  /** Default `isolated`. */
  session?: CronSessionTarget;
  /** The payload: the text sent to the agent. */
  prompt: string;
  /** Default true. */
  enabled?: boolean;
  /** Default `run-once`. */
  catchUp?: CronCatchUpPolicy;
  /** Most missed runs `run-all` runs. Default 10, at most 1000. */
  catchUpLimit?: number;
  /** Default `{ kind: "none" }`. */
  delivery?: CronDelivery;
  /**
   * Time limit of each run, in ms: a whole number from 1 to 2,147,483,647, passed to the run
   * as `SendOptions.timeoutMs` by {@link agentRuntimeJobRunner}. A run past it is cancelled
   * and recorded as an `error` run whose error starts with `RUN_TIMEOUT`. Default: none of
   * the job's own (the agent's `timeoutMs`, if any, still applies; the shorter wins).
   */
  timeoutMs?: number;
}

/**
 * What `update` accepts: any field of the input but the id and agent. `timeoutMs: null`
 * clears the job's time limit.
 */
export type CronJobPatch = Partial<Omit<CronJobInput, "id" | "agentId" | "timeoutMs">> & {
  /** A new time limit of each run, in ms (see {@link CronJobInput.timeoutMs}); `null` clears it. */
  timeoutMs?: number | null;
};

/** A job's scheduling state, kept with the job in the store. */
export type CronJobState = {
  /** The next scheduled run (backoff included); absent when none is scheduled. */
  nextRunAt?: number;
  /**
   * Set while a run is in progress: when it started. (The store marks a run in progress in
   * `kv` under `cron:running:<agentId>:<jobId>`, written before the run starts, so that a
   * run cut short by a crash is reported as interrupted on the next start. The marker names
   * the service that wrote it: a service that starts leaves alone a run another live service
   * sharing the store has in progress, and reports a crashed process's run once that
   * process's liveness key has run out, up to 30 s later.)
   */
  runningAt?: number;
  runningRunId?: string;
  /** The occurrence the run in progress serves. */
  runningScheduledAt?: number;
  /** Missed occurrences still to run after downtime (`run-once` / `run-all`), oldest first. */
  catchUpQueue?: number[];
  /** After an error: not before this time (the backoff). */
  retryAt?: number;
  lastRunAt?: number;
  lastFinishedAt?: number;
  lastStatus?: "ok" | "error" | "interrupted";
  lastError?: string;
  lastDurationMs?: number;
  /** Errors since the last `ok` run. */
  consecutiveErrors: number;
  /** Why the job was disabled (auto-disable keeps the last error here). */
  disabledReason?: string;
  disabledAt?: number;
  /** Set once a one-shot `at` job has run (or its only run was missed): it never runs again. */
  completedAt?: number;
  /** Runs that ended (`ok`, `error` or `interrupted`), in total. */
  runCount: number;
  /** Occurrences recorded as missed, in total. */
  missedCount: number;
};

/** A job as stored and returned by the service (a copy; changing it changes nothing). */
export interface CronJob extends CronJobRecord {
  id: string;
  agentId: string;
  schedule: CronSchedule;
  session: CronSessionTarget;
  prompt: string;
  enabled: boolean;
  catchUp: CronCatchUpPolicy;
  catchUpLimit: number;
  delivery: CronDelivery;
  /** Time limit of each run, in ms; absent when the job has none (see {@link CronJobInput.timeoutMs}). */
  timeoutMs?: number;
  /** `config` for jobs managed by `CronSupervisor.applyConfig`, `api` otherwise. */
  source: "api" | "config";
  createdAt: number;
  updatedAt: number;
  state: CronJobState;
}

/** Why a run started. */
export type CronRunTrigger = "schedule" | "manual" | "catch-up";

/**
 * One entry of a job's run log: a finished run, or a missed occurrence.
 * - `ok` / `error`: the run ended (an error includes a run cleared after `stuckRunMs`).
 * - `interrupted`: the service stopped (or the process died) while it ran.
 * - `missed`: the occurrence passed while the service was not running and was not run
 *   (see {@link CronCatchUpPolicy}); `missedCount` > 1 stands for that many older ones.
 */
export interface CronRun extends CronRunRecord {
  jobId: string;
  agentId: string;
  runId: string;
  trigger: CronRunTrigger;
  status: "ok" | "error" | "interrupted" | "missed";
  /** The occurrence this run served (for a manual run: when it was asked for). */
  scheduledAt: number;
  /** When the run started; for a missed occurrence, `scheduledAt`. */
  startedAt: number;
  finishedAt?: number;
  durationMs?: number;
  /** `startedAt - scheduledAt` for runs; for a missed occurrence, when it was detected minus `scheduledAt`. */
  latenessMs: number;
  sessionKey?: string;
  /** The start of the output, at most `outputSummaryChars` characters. */
  output?: string;
  error?: string;
  /** True when the run was cleared after running longer than `stuckRunMs`. */
  stuck?: boolean;
  /**
   * Errors in a row including this run. Absent for a failed run that a later run of another
   * service sharing the store overtook (their runs overlapped): that failure is not counted,
   * the later run's outcome decides.
   */
  consecutiveErrors?: number;
  /** Occurrences that came due while this run was still going (a job never overlaps itself). */
  skippedWhileRunning?: number;
  /**
   * For a `missed` entry: how many occurrences it stands for (default 1). Past the 100 most
   * recent, missed occurrences are summed up in one entry whose `scheduledAt` is the earliest
   * (a `cron` expression's are counted up to 10,000: stepping through more would hold up
   * the event loop).
   */
  missedCount?: number;
  /** The catch-up policy that decided a `missed` entry or a `catch-up` run. */
  policy?: CronCatchUpPolicy;
  delivery?: CronDeliveryResult;
}

/** How a run's delivery went. */
export type CronDeliveryResult = {
  kind: "announce" | "webhook";
  status: "ok" | "error" | "skipped";
  error?: string;
  /** The webhook's HTTP status. */
  statusCode?: number;
};

/** What {@link CronService.startRun} is told. */
export interface CronStartOptions {
  /**
   * Start the run only if:
   * - `enabled`: the job is enabled;
   * - `due`: a run of the job is due by the service's clock: it is enabled and its next run
   *   (backoff and stagger included) is not in the future.
   *
   * Otherwise nothing starts and the result says why. Default: start in any case (as
   * `runNow`).
   */
  only?: "enabled" | "due";
}

/** A manual run that {@link CronService.startRun} started (its start is recorded in the store). */
export interface CronRunStarted {
  started: true;
  jobId: string;
  runId: string;
  /** When the run was asked for (a manual run's `scheduledAt`), epoch ms by the service's clock. */
  scheduledAt: number;
  startedAt: number;
  sessionKey: string;
  /**
   * Resolves with the run's log entry once it has finished, as `runNow` does (an
   * `interrupted` entry, not stored, when the job is removed meanwhile). Rejects with
   * `NoProcessError` when the service stops first (the run is then recorded as interrupted).
   */
  finished: Promise<CronRun>;
}

/** {@link CronService.startRun} started nothing: the job was not enabled, or no run of it was due. */
export interface CronRunNotStarted {
  started: false;
  jobId: string;
  reason: "disabled" | "not-due";
}

/** What {@link CronService.startRun} resolves with. */
export type CronRunStart = CronRunStarted | CronRunNotStarted;

/** What the job runner is told about a run. */
export interface CronRunContext {
  agentId: string;
  runId: string;
  trigger: CronRunTrigger;
  /** The occurrence this run serves, epoch ms. */
  scheduledAt: number;
  /**
   * The session to run in: `agent:<agentId>:main` for `main` jobs, a fresh
   * `cron:<jobId>.<startedAt>` for `isolated` ones.
   */
  sessionKey: string;
  /** Aborts when the run is cleared as stuck, the job is removed or the service stops. */
  signal: AbortSignal;
}

/** What the job runner reports. A thrown error counts as `{ status: "error" }`. */
export interface CronRunOutcome {
  status: "ok" | "error";
  /** The agent's answer; its start is kept in the run log, all of it is delivered. */
  output?: string;
  error?: string;
  /** The session the run actually used, when it differs from the one it was given. */
  sessionKey?: string;
  /**
   * True when the run did not happen here because another cluster node claimed this due
   * time (see `guardCronRunner`): the service records nothing and moves on to the next.
   */
  skipped?: boolean;
}

/**
 * Runs one job. {@link agentRuntimeJobRunner} runs it through an `AgentRuntime`; tests pass a
 * function.
 *
 * @example
 * ```ts
 * const runJob: CronJobRunner = async (job, { sessionKey, signal }) => {
 *   const run = await runtime.session(sessionKey).send(job.prompt, { signal });
 *   const result = await run.result;
 *   return { status: result.status === "completed" ? "ok" : "error", output: result.text };
 * };
 * ```
 */
export type CronJobRunner = (job: CronJob, context: CronRunContext) => Promise<CronRunOutcome>;

/**
 * Delivers an `announce` job's output to a channel target. Channels are adapters outside
 * core, so the host wires this to its channel (e.g. `discord.send(target, text)`); without
 * it, announce deliveries are recorded as errors.
 *
 * The service waits for it at most `announceTimeoutMs` (see `CronServiceOptions`, default
 * 30 s): one that has not settled by then is recorded as a failed delivery
 * (`TIMEOUT: ...`), the run ends as it would have, and `context.signal` aborts with the
 * `TimeoutError` so that the callback can stop. The signal also aborts when the run is
 * cancelled (the service stops or the job is removed) while it delivers.
 */
export type CronDeliver = (
  target: { channel: string; target: string },
  text: string,
  context: { job: CronJob; runId: string; signal: AbortSignal },
) => void | Promise<void>;

/**
 * A change to one cron job, published by the {@link CronSync} of the service that made it:
 * the job was added, changed, enabled or disabled, removed, or a run of it was recorded.
 * It carries no job data: receivers reload the job from the store, the source of truth.
 */
export interface CronJobChange {
  /** The agent whose job changed. */
  agentId: string;
  /** The job's id. */
  jobId: string;
  /** The publishing service instance (a service ignores its own changes). */
  origin: string;
}

/**
 * A change feed shared by every copy of an agent's `CronService` (one per cluster node) and
 * every `CronSupervisor` (which starts the service of an agent whose first job was added
 * elsewhere):
 * each service publishes the jobs it changed and reloads from the store the jobs the others
 * changed, so every node's schedule, `list()` and `cronStatus()` follow the shared store.
 * Delivery may be at most once: services also reload all their jobs every `resyncMs`, so a
 * lost notification heals within that time.
 *
 * `ClusterNode` provides one over its backplane's pub/sub (`node.cronSync`), and
 * `agentRuntimeJobRunner(node.runtime)` hands it to the `CronService`s by itself. Without a
 * feed (a single process), a service works alone, as before.
 *
 * @example
 * ```ts
 * const cron = await new CronService({ agentId: "ops", store, runJob, sync: node.cronSync }).start();
 * ```
 */
export interface CronSync {
  /** Tells the other services (they may also hear it late or never). */
  publish(change: CronJobChange): Promise<void>;
  /**
   * Receives the changes of every agent's jobs (own ones included; each service keeps its
   * agent's); returns the unsubscribe function.
   */
  subscribe(handler: (change: CronJobChange) => void): () => void;
  /** Optional: resolves once changes published elsewhere reach this process's subscriptions. */
  whenSubscribed?(): Promise<void>;
  /** Period of the full reload that heals lost notifications, ms. Default 30 000. */
  readonly resyncMs?: number;
}
