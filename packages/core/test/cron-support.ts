/**
 * Helpers for the cron tests: a store, a manual clock, a runner that records every call,
 * and a service built from them. Not a test file itself.
 */
import { afterEach } from "vitest";
import {
  type CronJob,
  type CronJobRunner,
  type CronRunContext,
  type CronRunOutcome,
  CronService,
  type CronServiceOptions,
  createManualClock,
  type ManualClock,
  MemoryStore,
} from "../src/index.js";

/** One call of the recording runner. */
export interface RunnerCall {
  jobId: string;
  at: number;
  context: CronRunContext;
  job: CronJob;
}

/** A runner that records its calls; `behave` decides each outcome (default `ok`). */
export interface RecordingRunner {
  readonly runJob: CronJobRunner;
  readonly calls: RunnerCall[];
  behave: (job: CronJob, context: CronRunContext) => CronRunOutcome | Promise<CronRunOutcome>;
  /** Times (epoch ms, per the clock) a job was started. */
  timesOf(jobId: string): number[];
}

export function recordingRunner(clock: ManualClock): RecordingRunner {
  const calls: RunnerCall[] = [];
  const runner: RecordingRunner = {
    calls,
    behave: (job) => ({ status: "ok", output: `done: ${job.prompt}` }),
    runJob: async (job, context) => {
      calls.push({ jobId: job.id, at: clock.now(), context, job });
      return runner.behave(job, context);
    },
    timesOf: (jobId) => calls.filter((c) => c.jobId === jobId).map((c) => c.at),
  };
  return runner;
}

export async function openStore(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open();
  return store;
}

/** A store whose TTLs follow the manual clock (a liveness key runs out as the clock moves). */
export async function clockedStore(clock: ManualClock): Promise<MemoryStore> {
  const store = new MemoryStore({ now: () => clock.now() });
  await store.open();
  return store;
}

/** A job record as the store holds it (for tests that write the store directly). */
export function storedJob(fields: Partial<CronJob> & Pick<CronJob, "id" | "schedule">): CronJob {
  return {
    agentId: "ops",
    session: "isolated",
    prompt: "p",
    enabled: true,
    catchUp: "skip",
    catchUpLimit: 10,
    delivery: { kind: "none" },
    source: "api",
    createdAt: 0,
    updatedAt: 0,
    state: { consecutiveErrors: 0, runCount: 0, missedCount: 0 },
    ...fields,
  };
}

/** Epoch ms of an ISO instant. */
export function at(iso: string): number {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) throw new Error(`bad instant ${iso}`);
  return ms;
}

export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** Everything a cron test needs, started; `stop()` stops the service. */
export interface CronFixture {
  clock: ManualClock;
  store: MemoryStore;
  runner: RecordingRunner;
  service: CronService;
  /** Starts another service over the same store and clock (a restart). */
  restart(options?: Partial<CronServiceOptions>): Promise<CronService>;
}

export async function startCron(
  options: Partial<CronServiceOptions> & { startAt?: number; store?: MemoryStore } = {},
): Promise<CronFixture> {
  const { startAt = at("2026-01-05T00:00:00Z"), store: given, ...rest } = options;
  const clock = (rest.clock as ManualClock | undefined) ?? createManualClock(startAt);
  const store = given ?? (await openStore());
  const runner = recordingRunner(clock);
  const make = (extra: Partial<CronServiceOptions> = {}) =>
    new CronService({
      agentId: "ops",
      store,
      clock,
      runJob: runner.runJob,
      ...rest,
      ...extra,
    }).start();
  const fixture: CronFixture = {
    clock,
    store,
    runner,
    service: await make(),
    restart: async (extra) => {
      fixture.service = await make(extra);
      return fixture.service;
    },
  };
  return fixture;
}

/**
 * Registers an `afterEach` that stops every fixture handed out, and returns the function
 * that starts one (see {@link startCron}).
 */
export function useCronFixtures(): (
  options?: Parameters<typeof startCron>[0],
) => Promise<CronFixture> {
  const fixtures: CronFixture[] = [];
  afterEach(async () => {
    for (const fixture of fixtures.splice(0)) await fixture.service.stop();
  });
  return async (options) => {
    const fixture = await startCron(options);
    fixtures.push(fixture);
    return fixture;
  };
}
