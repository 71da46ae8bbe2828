import {
  AlreadyRegisteredError,
  InvalidArgumentError,
  NoProcessError,
  OverloadedError,
} from "../errors.js";
import { DRAIN_EVENTS, type DrainableStream, readEvents } from "../providers/chain.js";
import { estimateRequestTokens } from "../providers/rate-limiter.js";
import type { ModelUsage } from "../providers/types.js";
import type { ModelSource } from "../sessions/agent-loop.js";
import type { RunHandle } from "../sessions/run-handle.js";
import { AgentRuntime, type AgentRuntimeOptions, type SessionHandle } from "../sessions/runtime.js";
import type { KeyValueStore } from "../store/types.js";
import { claimTelemetryTenant } from "../telemetry/identity.js";
import { ResourceLimiter, type TenantLimits } from "./limiter.js";

/**
 * Wraps a model source so that every call goes through a tenant's limiter first: budgets and
 * the request rate are checked, a concurrency slot (overall and in the calling agent's lane) is
 * taken for the whole stream, and reported usage is counted against the budgets. The tenant is
 * added to each call's telemetry context.
 *
 * The stream it returns can be read with `for await`, or in push mode as the agent loop reads
 * it (see `DRAIN_EVENTS`): then a `ProviderChain` underneath hands its events straight through,
 * with no generator step of this wrapper per event.
 */
export function limitModelSource(source: ModelSource, limiter: ResourceLimiter): ModelSource {
  return {
    stream(request, options) {
      return new LimitedStream(source, limiter, request, options);
    },
  };
}

type SourceEvent = { type: string; [key: string]: unknown };

/** One call of {@link limitModelSource}: its slot is taken when reading starts. */
class LimitedStream implements AsyncIterable<SourceEvent>, DrainableStream<SourceEvent> {
  readonly #source: ModelSource;
  readonly #limiter: ResourceLimiter;
  readonly #request: Parameters<ModelSource["stream"]>[0];
  readonly #options: Parameters<ModelSource["stream"]>[1];
  #read = false;

  constructor(
    source: ModelSource,
    limiter: ResourceLimiter,
    request: Parameters<ModelSource["stream"]>[0],
    options: Parameters<ModelSource["stream"]>[1],
  ) {
    this.#source = source;
    this.#limiter = limiter;
    this.#request = request;
    this.#options = options;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SourceEvent, void, undefined> {
    const { slot, tally, stream } = await this.#open();
    try {
      for await (const event of stream) {
        tally.see(event);
        yield event;
      }
    } finally {
      tally.flush();
      slot.release();
    }
  }

  async [DRAIN_EVENTS](sink: (event: SourceEvent) => void): Promise<void> {
    const { slot, tally, stream } = await this.#open();
    try {
      await readEvents(stream, (event) => {
        tally.see(event);
        sink(event);
      });
    } finally {
      tally.flush();
      slot.release();
    }
  }

  /** Takes the slot (waiting, or refused), then starts the wrapped source's call. */
  async #open() {
    // One call, one read: a second reader would make a second model call on the same request.
    if (this.#read) throw new InvalidArgumentError("a model stream can be read only once");
    this.#read = true;
    const options = this.#options;
    const limiter = this.#limiter;
    const slot = await limiter.acquire(options.telemetry?.agent ?? "default", {
      estimatedTokens: estimateRequestTokens(this.#request),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    try {
      const stream = this.#source.stream(this.#request, {
        ...options,
        telemetry: { ...options.telemetry, tenant: limiter.tenant },
      });
      return { slot, tally: new UsageTally(limiter), stream };
    } catch (error) {
      slot.release();
      throw error;
    }
  }
}

/** Counts a call's reported usage against the tenant's budgets. */
class UsageTally {
  readonly #limiter: ResourceLimiter;
  #usage: ModelUsage | undefined;

  constructor(limiter: ResourceLimiter) {
    this.#limiter = limiter;
  }

  see(event: SourceEvent): void {
    if (event.type === "usage") this.#usage = event.usage as ModelUsage;
    // A fallback attempt reports its own usage: count each attempt's last one.
    if (event.type === "attempt-failed") this.flush();
  }

  /** Records the usage seen since the last flush, if any. */
  flush(): void {
    if (this.#usage === undefined) return;
    this.#limiter.recordUsage(this.#usage);
    this.#usage = undefined;
  }
}

/**
 * A tenant's runtime: an `AgentRuntime` whose sessions refuse a message at `send` — before
 * anything is queued or a session is started — while the tenant's budget is spent, its
 * request rate exhausted or `maxPendingMessages` messages are unfinished. Without this, each
 * message of a flood would be queued, start a run and fail at its first model call, costing
 * the process several times what the refusal does.
 */
class TenantRuntime extends AgentRuntime {
  readonly #limiter: ResourceLimiter;
  #pending = 0;

  constructor(options: AgentRuntimeOptions, limiter: ResourceLimiter) {
    super(options);
    this.#limiter = limiter;
  }

  /**
   * As `AgentRuntime.reconfigure`, within the tenant's `maxAgents`.
   *
   * @throws InvalidArgumentError for more agents than `limits.maxAgents` (nothing is changed).
   */
  override reconfigure(changes: Parameters<AgentRuntime["reconfigure"]>[0]): void {
    const max = this.#limiter.limits.maxAgents;
    const agents: unknown = changes?.agents;
    if (max !== undefined && Array.isArray(agents) && agents.length > max) {
      throw new InvalidArgumentError(
        `tenant "${this.#limiter.tenant}" would define ${agents.length} agents; its limit is ${max}`,
      );
    }
    super.reconfigure(changes);
  }

  override session(rawKey: string): SessionHandle {
    const handle = super.session(rawKey);
    const send = handle.send;
    return {
      ...handle,
      send: (message, options) => this.#admitted(() => send(message, options)),
    };
  }

  async #admitted<T>(send: () => Promise<RunHandle<T>>): Promise<RunHandle<T>> {
    const max = this.#limiter.limits.maxPendingMessages;
    if (max !== undefined && this.#pending >= max) {
      throw new OverloadedError(
        `tenant "${this.#limiter.tenant}" has ${this.#pending} unfinished messages, its limit`,
        max,
      );
    }
    this.#limiter.admit();
    this.#pending++;
    let run: RunHandle<T>;
    try {
      run = await send();
    } catch (error) {
      this.#pending--;
      throw error;
    }
    void run.result.then(
      () => this.#pending--,
      () => this.#pending--,
    );
    return run;
  }
}

/** How to create one tenant. */
export interface TenantOptions {
  /** A string matching `^[a-z0-9][a-z0-9_-]{0,63}$`. */
  id: string;
  limits?: TenantLimits;
  /**
   * The tenant's runtime: its own store (or store namespace), agents and tools. Its `now`
   * clock, when given, is also the clock of the tenant's limiter (its days, months and minute).
   */
  runtime: AgentRuntimeOptions;
}

/** A running tenant. */
export interface Tenant {
  readonly id: string;
  readonly runtime: AgentRuntime;
  readonly limiter: ResourceLimiter;
}

const TENANT_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Where a tenant's token counts are kept in its store's kv, by tenant id. */
const USAGE_KEY_PREFIX = "tenant:usage:";
/** How long kept counts live: past the end of any month they count. */
const USAGE_TTL_MS = 32 * 86_400_000;

/**
 * Keeps a tenant's token counts in its store, so that a restart does not hand out a fresh
 * budget: one write at a time, the latest counts written after the one in flight. A write the
 * store refuses is tried again with the next usage (and at stop).
 */
class UsageKeeper {
  readonly #kv: KeyValueStore;
  readonly #key: string;
  readonly #limiter: ResourceLimiter;
  #writing: Promise<void> | undefined;
  #dirty = false;

  constructor(kv: KeyValueStore, key: string, limiter: ResourceLimiter) {
    this.#kv = kv;
    this.#key = key;
    this.#limiter = limiter;
  }

  save(): void {
    this.#dirty = true;
    this.#writing ??= this.#write();
  }

  /** Resolves once the latest counts are written (or the store refused them). */
  async flush(): Promise<void> {
    if (this.#dirty) this.save();
    await this.#writing;
  }

  async #write(): Promise<void> {
    try {
      while (this.#dirty) {
        this.#dirty = false;
        const snapshot = this.#limiter.snapshot();
        try {
          await this.#kv.set(this.#key, { ...snapshot }, { ttlMs: USAGE_TTL_MS });
        } catch {
          // Kept dirty for the next usage or the stop; nothing is lost in memory meanwhile.
          this.#dirty = true;
          return;
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }
}

/**
 * Several tenants in one process. Each tenant is its own `AgentRuntime` — its own supervision
 * subtree of sessions (and the channels and cron a host attaches to it), over its own store —
 * behind a `ResourceLimiter` enforced before every provider call. A tenant that crashes or
 * floods is limited to its own subtree, slots and budget; while its budget is spent or its
 * request rate exhausted, `send` refuses its messages at once (`BudgetExceededError`,
 * `RateLimitedError`) and nothing is queued.
 *
 * @example
 * ```ts
 * const tenants = new TenantManager();
 * const acme = await tenants.add({
 *   id: "acme",
 *   limits: { tokensPerDay: 2_000_000, requestsPerMinute: 120, maxConcurrentRunsPerAgent: 4 },
 *   runtime: { store: acmeStore, models: chain, agents: [{ id: "support", model: "openai/gpt-4.1" }] },
 * });
 * await acme.runtime.session("agent:support:main").send("hi");
 * await tenants.stop();
 * ```
 */
export class TenantManager {
  readonly #tenants = new Map<string, Tenant>();
  readonly #keepers = new WeakMap<Tenant, UsageKeeper>();
  /** Each tenant's store: one store serves one live tenant. */
  readonly #stores = new WeakMap<Tenant, object>();
  /** Each tenant's `runtime.start()`, awaited before it is stopped (it may still be running). */
  readonly #starts = new WeakMap<Tenant, Promise<void>>();
  /**
   * Removed tenants still stopping, each with its stop (settled, failed or not, when it ends):
   * until then an `add` of the same id, or over the same store, waits for it.
   */
  readonly #stopping = new Map<Tenant, Promise<void>>();
  #stopped = false;

  /**
   * Creates and starts a tenant.
   *
   * @throws InvalidArgumentError for options without a runtime, a bad id, a bad limit (see
   *   `TenantLimits`) or more agents than `limits.maxAgents`.
   * @throws AlreadyRegisteredError when the id is taken, or when `runtime.store` is the store
   *   of another live tenant of this manager (`key` is that tenant's id): two tenants over one
   *   store would share their sessions and transcripts, and its telemetry could name neither.
   *   A tenant being added (waiting, see below) counts as live. A store of a removed tenant
   *   may be given to a new id: its telemetry then names the new tenant.
   * @throws NoProcessError when the manager is stopped, or stops (or the tenant is removed)
   *   before the tenant has started; its runtime is stopped then.
   *
   * A removed tenant still stopping (its `remove` not yet settled: its sessions shutting
   * down, its token counts being saved) holds its id and its store until it has stopped: a
   * tenant of the same id, or over the same store under another id, waits for that stop
   * before it reads its counts, marks the store for telemetry or starts, so two runtimes
   * never write through one store at once. It waits rather than being refused because the
   * stop is already under way and ends by itself (a session's shutdown is bounded by its
   * actor's stop timeout), and the code adding a tenant often does not hold the `remove`
   * promise to wait on; the store of a live tenant, not being removed, is refused at once,
   * as waiting for it would never end. A stop that fails ends the wait too: `remove` rejects
   * with its error, and the id and the store are free. While it waits the new tenant is
   * listed by `ids()`; removing it, or stopping the manager, makes this `add` reject with
   * `NoProcessError` once the wait ends.
   */
  async add(options: TenantOptions): Promise<Tenant> {
    if (this.#stopped) throw new NoProcessError("the tenant manager is stopped");
    if (typeof options?.runtime !== "object" || options.runtime === null) {
      throw new InvalidArgumentError("a tenant needs options with a runtime object");
    }
    // A string only: a regular expression reads `undefined` or `["acme"]` as text that matches.
    if (typeof options.id !== "string" || !TENANT_ID.test(options.id)) {
      throw new InvalidArgumentError(
        `tenant id must be a string matching ${TENANT_ID.source}, got ${typeof options.id === "string" ? `"${options.id}"` : String(options.id)}`,
      );
    }
    if (this.#tenants.has(options.id)) {
      throw new AlreadyRegisteredError(`tenant "${options.id}" already exists`, options.id);
    }
    const store: object = options.runtime.store;
    for (const other of this.#tenants.values()) {
      if (this.#stores.get(other) === store) {
        throw new AlreadyRegisteredError(
          `the store given for tenant "${options.id}" is tenant "${other.id}"'s: give each tenant its own store (or namespace)`,
          other.id,
        );
      }
    }
    // Checked first (`Infinity` read as no limit), then read back from the limiter.
    const kv = options.runtime.store.kv;
    const usageKey = `${USAGE_KEY_PREFIX}${options.id}`;
    let keeper: UsageKeeper | undefined;
    const limiter = new ResourceLimiter(options.id, options.limits ?? {}, {
      // The runtime's clock (for tests) is the budgets' and the rate's too.
      ...(options.runtime.now === undefined ? {} : { now: options.runtime.now }),
      onUsage: () => keeper?.save(),
    });
    keeper = new UsageKeeper(kv, usageKey, limiter);
    const limits = limiter.limits;
    if (limits.maxAgents !== undefined && options.runtime.agents.length > limits.maxAgents) {
      throw new InvalidArgumentError(
        `tenant "${options.id}" defines ${options.runtime.agents.length} agents; its limit is ${limits.maxAgents}`,
      );
    }
    const runtime = new TenantRuntime(
      {
        ...options.runtime,
        models: limitModelSource(options.runtime.models, limiter),
        ...(limits.maxConcurrentSessions === undefined
          ? {}
          : { maxActiveSessions: limits.maxConcurrentSessions }),
      },
      limiter,
    );
    const tenant: Tenant = { id: options.id, runtime, limiter };
    this.#keepers.set(tenant, keeper);
    this.#stores.set(tenant, store);
    // From here the id and the store are this tenant's: another add of either is refused.
    this.#tenants.set(options.id, tenant);
    try {
      // Removed tenants of this id or over this store that are still stopping: their sessions
      // stop and their counts are saved first, so that the counts are read back here and two
      // runtimes never write through one store (or serve one tenant) at once.
      await this.#stopOf(options.id, store);
      // What the tenant spent before a restart stays spent.
      limiter.restore(await kv.get(usageKey));
      // Removed (or the manager stopped) meanwhile: not started at all.
      if (this.#tenants.get(options.id) !== tenant) {
        throw new NoProcessError(`tenant "${options.id}" was removed while it was being added`);
      }
      // Telemetry of this tenant's sessions (and of a cron service over its store) carries its
      // id — this tenant's, not that of a removed tenant the store served before (whose
      // sessions, stopped by now, reported theirs to the end).
      claimTelemetryTenant(store, options.id);
      const starting = runtime.start();
      this.#starts.set(tenant, starting);
      await starting;
      // Removed (or the manager stopped) while it started: that stop ends the runtime.
      if (this.#tenants.get(options.id) !== tenant) {
        throw new NoProcessError(`tenant "${options.id}" was removed while it was being added`);
      }
    } catch (error) {
      if (this.#tenants.get(options.id) === tenant) this.#tenants.delete(options.id);
      throw error;
    }
    return tenant;
  }

  /** The tenant with this id. @throws InvalidArgumentError if there is none. */
  get(id: string): Tenant {
    const tenant = this.#tenants.get(id);
    if (tenant === undefined) throw new InvalidArgumentError(`no tenant "${id}"`);
    return tenant;
  }

  /** Every tenant id. */
  ids(): string[] {
    return [...this.#tenants.keys()];
  }

  /**
   * Stops one tenant's runtime (its live sessions stop; their unfinished messages stay queued),
   * saves its token counts, and forgets it: it leaves `ids()` at once. Its store is left as it
   * is: added again over it, the tenant carries on with its sessions, transcripts and counts.
   * Until this resolves (or rejects) the id and the store stay in use: an `add` of either
   * waits for the stop (see {@link TenantManager.add}).
   *
   * @throws InvalidArgumentError if there is no tenant with this id.
   * @throws the error the runtime's stop failed with; the id and the store are free then too.
   */
  async remove(id: string): Promise<void> {
    const tenant = this.get(id);
    this.#tenants.delete(id);
    const stopping = this.#stopTenant(tenant);
    this.#stopping.set(
      tenant,
      stopping.then(
        () => undefined,
        () => undefined,
      ),
    );
    try {
      await stopping;
    } finally {
      this.#stopping.delete(tenant);
    }
  }

  /** Stops every tenant (saving their token counts), and waits for removals in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const all = [...this.#tenants.values()];
    this.#tenants.clear();
    await Promise.all([
      ...all.map((t) => this.#stopTenant(t)),
      // A tenant removed just before is stopped (and its counts saved) by the time this resolves.
      ...this.#stopping.values(),
    ]);
  }

  /** Resolves once every removed tenant of this id, or over this store, has stopped. */
  async #stopOf(id: string, store: object): Promise<void> {
    const stops: Promise<void>[] = [];
    for (const [removed, stop] of this.#stopping) {
      if (removed.id === id || this.#stores.get(removed) === store) stops.push(stop);
    }
    await Promise.all(stops);
  }

  async #stopTenant(tenant: Tenant): Promise<void> {
    try {
      // A stop while it starts would miss what the start has not made yet.
      await this.#starts.get(tenant)?.catch(() => undefined);
      await tenant.runtime.stop();
    } finally {
      await this.#keepers.get(tenant)?.flush();
    }
  }
}
