import type { CronJobConfig } from "../config/schema.js";
import { BeamClawError, InvalidArgumentError, OverloadedError } from "../errors.js";
import { Registry } from "../runtime/registry.js";
import { DynamicSupervisor } from "../runtime/supervisor.js";
import { normalizeAgentId } from "../sessions/session-key.js";
import { systemClock, type TimerHandle } from "./clock.js";
import { CronService, type CronServiceOptions } from "./service.js";
import type { CronJobChange, CronSync } from "./types.js";

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
 * (at once on the notification, at the latest at the next resync).
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
        this.#armResync();
      }
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

  /** Looks for agents with jobs in the store but no service here, every resync period. */
  #armResync(): void {
    const clock = this.#options.clock ?? systemClock;
    const every = this.#options.resyncMs ?? this.#sync?.resyncMs ?? DEFAULT_RESYNC_MS;
    this.#resyncTimer = clock.setTimer(() => {
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
   */
  async applyConfig(jobs: readonly CronJobConfig[]): Promise<void> {
    const agents = new Set(jobs.map((job) => normalizeAgentId(job.agentId)));
    for (const agentId of this.runningAgents()) agents.add(agentId);
    const services: CronService[] = [];
    for (const agentId of agents) services.push(await this.forAgent(agentId));
    // First each agent keeps only the config jobs it has and still owns (updated; the others
    // removed), so that an id moved to another agent is free when that agent adds it.
    for (const service of services) {
      const own = (await service.list()).filter((job) => job.source === "config");
      const ids = new Set(own.map((job) => job.id));
      await service.syncConfig(jobs.filter((job) => ids.has(job.id)));
    }
    for (const service of services) await service.syncConfig(jobs);
  }
}
