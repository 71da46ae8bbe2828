import type { CronJobConfig } from "../config/schema.js";
import {
  BeamClawError,
  CronError,
  describe,
  InvalidArgumentError,
  OverloadedError,
} from "../errors.js";
import { Registry } from "../runtime/registry.js";
import { DynamicSupervisor } from "../runtime/supervisor.js";
import { normalizeAgentId } from "../sessions/session-key.js";
import { elapsedTime, systemClock, type TimerHandle } from "./clock.js";
import { CronService, type CronServiceOptions } from "./service.js";
import type { CronJob, CronJobChange, CronSync } from "./types.js";

/** Default period of the supervisor's look for agents with jobs but no service here. */
const DEFAULT_RESYNC_MS = 30_000;

/** Options of {@link CronSupervisor}: what every agent's {@link CronService} is given. */
export interface CronSupervisorOptions extends Omit<CronServiceOptions, "agentId" | "name"> {
  /** Agents whose services start with the supervisor (those with stored jobs always do). */
  agents?: readonly string[];
  /** Where services are registered as `cron:<agentId>`. Default: a registry of its own. */
  registry?: Registry;
  /** Restart intensity. Default 10 restarts in 60 s. */
  maxRestarts?: number;
  periodMs?: number;
  /** How long a service gets to stop. Default 5000 ms. */
  shutdownMs?: number;
}

/**
 * The `DynamicSupervisor` of the per-agent {@link CronService}s (`transient`: a crashed
 * service is restarted, reloads its jobs from the store and catches up what it missed).
 *
 * `start()` also starts the service of every agent that has jobs in the store, so that
 * schedules resume (and missed runs are caught up) after a restart without anyone asking.
 * With a change feed (`sync`, or the runner's `cronSync` as on a `ClusterNode`), a job added
 * through another node for an agent without a service here starts that agent's service too
 * (at once on the notification, at the latest at the next resync). Without a feed, a
 * `resyncMs` given makes it look for such agents in the store every `resyncMs` (and the
 * services reload their jobs as often; see {@link CronServiceOptions.resyncMs}).
 *
 * @example
 * ```ts
 * const crons = await new CronSupervisor({ store, runJob: agentRuntimeJobRunner(runtime) }).start();
 * const ops = await crons.forAgent("ops");
 * await ops.add({ id: "digest", schedule: { every: 3_600_000 }, prompt: "Summarize new issues." });
 * await crons.stop();
 * ```
 */
export class CronSupervisor extends DynamicSupervisor {
  /** Services are registered here as `cron:<agentId>`. */
  readonly registry: Registry;
  readonly #options: CronSupervisorOptions;
  readonly #starting = new Map<string, Promise<CronService>>();
  readonly #sync: CronSync | undefined;
  #unsubscribe: (() => void) | undefined;
  #resyncTimer: TimerHandle | undefined;

  constructor(options: CronSupervisorOptions) {
    super({
      name: "cron",
      maxRestarts: options?.maxRestarts ?? 10,
      periodMs: options?.periodMs ?? 60_000,
    });
    if (options?.store === undefined || typeof options.runJob !== "function") {
      throw new InvalidArgumentError("CronSupervisor needs a store and a runJob function");
    }
    this.#options = options;
    this.registry = options.registry ?? new Registry();
    this.#sync = options.sync ?? (options.runJob as { cronSync?: CronSync }).cronSync;
    const resyncMs = options.resyncMs ?? this.#sync?.resyncMs;
    if (resyncMs !== undefined && !(resyncMs > 0)) {
      throw new InvalidArgumentError(`resyncMs must be > 0 ms, got ${resyncMs}`);
    }
    this.monitor(() => this.#stopSync());
  }

  /** Starts the supervisor, then the services of configured agents and of stored jobs. */
  override async start(): Promise<this> {
    await super.start();
    try {
      if (this.#sync !== undefined) {
        // Before the store is read: an agent's first job added meanwhile is heard of.
        this.#unsubscribe = this.#sync.subscribe((change) => this.#onChange(change));
      }
      if (this.#sync !== undefined || this.#options.resyncMs !== undefined) this.#armResync();
      const agents = new Set((this.#options.agents ?? []).map((id) => normalizeAgentId(id)));
      for (const job of await this.#options.store.cron.listJobs()) agents.add(job.agentId);
      for (const agentId of agents) await this.forAgent(agentId);
    } catch (error) {
      await this.stop("shutdown");
      throw error;
    }
    return this;
  }

  /**
   * The running cron service of `agentId`, started on first use. After a crash the
   * supervisor starts a new one: ask again rather than keeping the old reference.
   */
  async forAgent(agentId: string): Promise<CronService> {
    const id = normalizeAgentId(agentId);
    const name = `cron:${id}`;
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = this.registry.whereis<CronService>(name);
      if (existing !== undefined) {
        if (existing.status === "running") return existing;
        await existing.whenStopped();
        continue;
      }
      const pending = this.#starting.get(id);
      if (pending !== undefined) return pending;
      const { agents, registry, maxRestarts, periodMs, shutdownMs, ...serviceOptions } =
        this.#options;
      void agents;
      void registry;
      void maxRestarts;
      void periodMs;
      const starting = this.startChild<CronService>({
        id: name,
        restart: "transient",
        shutdownMs: shutdownMs ?? 5_000,
        start: () => new CronService({ ...serviceOptions, agentId: id }).start(),
        via: this.registry.via(name),
      });
      this.#starting.set(id, starting);
      try {
        return await starting;
      } catch (error) {
        // A restart of the same service got there first: look it up again.
        if (!(error instanceof BeamClawError && error.code === "INVALID_ARGUMENT")) throw error;
      } finally {
        this.#starting.delete(id);
      }
    }
    throw new OverloadedError(`the cron service of "${id}" keeps stopping`, 5);
  }

  /** Starts the service of an agent whose job changed elsewhere, if none runs here. */
  #onChange(change: CronJobChange): void {
    if (typeof change !== "object" || change === null) return;
    let id: string;
    try {
      id = normalizeAgentId(change.agentId);
    } catch {
      return;
    }
    this.#ensure([id]);
  }

  #ensure(agentIds: Iterable<string>): void {
    if (!this.alive) return;
    for (const id of agentIds) {
      if (this.registry.whereis(`cron:${id}`) !== undefined || this.#starting.has(id)) continue;
      // A service that cannot start now is started on the next change or resync.
      void this.forAgent(id).catch(() => undefined);
    }
  }

  /**
   * Looks for agents with jobs in the store but no service here, every resync period (of
   * elapsed time: a wall-clock change does not put it off).
   */
  #armResync(): void {
    const clock = this.#options.clock ?? systemClock;
    const every = this.#options.resyncMs ?? this.#sync?.resyncMs ?? DEFAULT_RESYNC_MS;
    this.#resyncTimer = elapsedTime(clock).setTimer(() => {
      this.#resyncTimer = undefined;
      if (!this.alive) return;
      // Called inside the promise: a store that throws instead of rejecting must not throw
      // out of this timer (an uncaught exception) nor stop the resyncs.
      void Promise.resolve()
        .then(() => this.#options.store.cron.listJobs())
        .then((jobs) => this.#ensure(new Set(jobs.map((job) => job.agentId))))
        .catch(() => undefined)
        .finally(() => {
          if (this.alive) this.#armResync();
        });
    }, every);
  }

  #stopSync(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#resyncTimer !== undefined)
      (this.#options.clock ?? systemClock).clearTimer(this.#resyncTimer);
    this.#resyncTimer = undefined;
  }

  /** Agents whose services are running. */
  runningAgents(): string[] {
    return [...this.registry.registeredKeys()]
      .filter((key) => key.startsWith("cron:"))
      .map((key) => key.slice("cron:".length));
  }

  /**
   * Applies `cron.jobs` from the configuration (on start and on every reload): each agent's
   * config-managed jobs are made to match (see {@link CronService.syncConfig}); jobs added
   * through the API are untouched. A job the file moves to another agent (same id) is
   * removed from the old agent first, then added to the new one.
   *
   * All or nothing: every agent's jobs are checked before any changes (a bad schedule, an id
   * listed for two agents, an id held by an API job), and such a list is refused with the
   * same typed errors as `syncConfig`, changing nothing. Jobs are then added and updated
   * first and removed last; if a write fails midway (the store refuses it), the previous
   * configuration is put back (a config job removed meanwhile comes back with a fresh state
   * and run log) and `CronError` `CRON_CONFIG_NOT_APPLIED` is thrown, its `cause` the failure.
   *
   * @throws InvalidArgumentError, CronError `INVALID_CRON_SCHEDULE`, `CRON_JOB_EXISTS` (nothing
   *   changed) or `CRON_CONFIG_NOT_APPLIED`.
   */
  async applyConfig(jobs: readonly CronJobConfig[]): Promise<void> {
    if (!Array.isArray(jobs)) {
      throw new InvalidArgumentError(`applyConfig needs an array of cron jobs, got ${typeof jobs}`);
    }
    const ownerOf = new Map<string, string>();
    for (const job of jobs) {
      if (typeof job !== "object" || job === null) {
        throw new InvalidArgumentError(`a cron job config must be an object, got ${String(job)}`);
      }
      const owner = ownerOf.get(job.id);
      if (owner !== undefined && owner !== job.agentId) {
        throw new InvalidArgumentError(
          `the cron configuration lists job "${job.id}" for agents "${owner}" and "${job.agentId}"; a job id belongs to one agent`,
        );
      }
      ownerOf.set(job.id, job.agentId);
    }
    const agents = new Set(jobs.map((job) => normalizeAgentId(job.agentId)));
    for (const agentId of this.runningAgents()) agents.add(agentId);
    const services: CronService[] = [];
    for (const agentId of agents) services.push(await this.forAgent(agentId));
    // What each agent has from the configuration now: what a failed apply puts back.
    const before = new Map<CronService, CronJobConfig[]>();
    const holders = new Map<string, CronService>();
    for (const service of services) {
      const own = (await service.list()).filter((job) => job.source === "config");
      before.set(service, own.map(configOf));
      for (const job of own) holders.set(job.id, service);
    }
    // Ids another agent has as config jobs: removed there, then added here.
    const moved = new Set<string>();
    for (const job of jobs) {
      const holder = holders.get(job.id);
      if (holder !== undefined && holder.agentId !== job.agentId) moved.add(job.id);
    }
    for (const service of services) await service.checkConfig(jobs, moved);
    const staying = jobs.filter((job) => !moved.has(job.id));
    const listedHere = (service: CronService, id: string) =>
      jobs.some((job) => job.id === id && job.agentId === service.agentId);
    try {
      // Added and updated; the jobs the file drops (or moves away) are kept as they are.
      for (const service of services) {
        const kept = before.get(service)!.filter((job) => !listedHere(service, job.id));
        await service.syncConfig(staying, { keep: kept.map((job) => job.id) });
      }
      // Then removed, and the moved ones added to their new agent.
      for (const service of services) await service.syncConfig(staying);
      if (moved.size > 0) for (const service of services) await service.syncConfig(jobs);
    } catch (error) {
      const failure = await this.#restore(services, before);
      const what = `the cron configuration could not be applied (${describe(error)})`;
      throw new CronError(
        "CRON_CONFIG_NOT_APPLIED",
        failure === undefined
          ? `${what}; the previous configuration was restored`
          : `${what}, nor the previous configuration restored (${describe(failure)}): the jobs are partly updated until a reload applies the configuration`,
        undefined,
        { cause: error },
      );
    }
  }

  /**
   * Puts back each agent's config jobs of `before` (as `applyConfig` applies a list: what an
   * agent still holds first, then what moved away). Returns the first failure, if any.
   */
  async #restore(
    services: readonly CronService[],
    before: ReadonlyMap<CronService, CronJobConfig[]>,
  ): Promise<unknown> {
    let failure: unknown;
    const all = [...before.values()].flat();
    for (const service of services) {
      try {
        const holds = new Set((await service.list()).map((job) => job.id));
        await service.syncConfig(before.get(service)!.filter((job) => holds.has(job.id)));
      } catch (error) {
        failure ??= error;
      }
    }
    for (const service of services) {
      try {
        await service.syncConfig(all);
      } catch (error) {
        failure ??= error;
      }
    }
    return failure;
  }
}

/** The configuration entry a config job was made from. */
function configOf(job: CronJob): CronJobConfig {
  return {
    id: job.id,
    agentId: job.agentId,
    schedule: job.schedule,
    session: job.session,
    prompt: job.prompt,
    enabled: job.enabled,
    catchUp: job.catchUp,
    catchUpLimit: job.catchUpLimit,
    delivery: job.delivery,
    ...(job.timeoutMs === undefined ? {} : { timeoutMs: job.timeoutMs }),
  };
}
