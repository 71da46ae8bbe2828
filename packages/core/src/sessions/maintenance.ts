/**
 * Session maintenance: a long-lived gateway gathers sessions (every chat that ever wrote,
 * every hook request, every sub-agent) and the store grows without end. Maintenance deletes
 * the sessions nobody used for `pruneAfterMs`, and beyond `maxSessions` per agent the least
 * recently used, as OpenClaw's `session.maintenance` does. In `warn` mode (the default) it only
 * reports what it would delete; in `enforce` mode it deletes them (record and transcript, or
 * the transcript archived with `archiveTranscripts`).
 *
 * An agent's main session (`agent:<id>:main`), the sessions alive in this process and the keys
 * a caller protects are never deleted. A pass reads the store a page at a time (newest first),
 * so it holds one page whatever the number of sessions: once for the stale sessions, and with
 * `maxSessions` once more for the cap, over what the first walk left (a sub-agent that goes
 * with its stale parent takes no place under the cap, whichever page lists it). In a cluster
 * a store lock lets one node at a time run it.
 */
import { describe, InvalidArgumentError, StoreError } from "../errors.js";
import { MAX_TIMER_DELAY_MS } from "../runtime/timers.js";
import { iterateKvKeys } from "../store/kv-paging.js";
import type { Lease, SessionRecord, Store } from "../store/types.js";
import type { AgentRuntime } from "./runtime.js";
import { parseSubagentIndexKey, subagentIndexPrefix } from "./session-actor.js";

/** How maintenance treats old sessions. */
export interface SessionMaintenanceSettings {
  /** `warn`: report only (default); `enforce`: delete. */
  mode?: "warn" | "enforce";
  /** Sessions not updated for this long are stale. Default 30 days. */
  pruneAfterMs?: number;
  /**
   * At most this many sessions per agent are kept (the most recently updated), besides those
   * always kept (main sessions, sessions in memory, protected keys). Default no limit.
   */
  maxSessions?: number;
  /** Keep the transcripts of deleted sessions (moved to `<key>:deleted:<ms>`). Default false. */
  archiveTranscripts?: boolean;
}

/** Options of {@link SessionMaintenance}. */
export interface SessionMaintenanceOptions {
  /** The settings, or a function read at each pass (for live configuration). */
  settings: SessionMaintenanceSettings | (() => SessionMaintenanceSettings | undefined);
  /** How often a pass runs after `start()`. Default 1 hour. */
  everyMs?: number;
  /** Called with each pass's summaries (log them, count them). */
  onPass?: (summaries: SessionCleanupSummary[]) => void;
  /**
   * Called when a periodic pass fails, or `onPass` or the settings function throws (the next
   * pass tries again). If it throws in turn, that is reported as a `BeamClawWarning`.
   */
  onError?: (error: unknown) => void;
  /** Clock, for tests. Default `Date.now`. */
  now?: () => number;
}

/** Options of one pass ({@link SessionMaintenance.run}). */
export interface SessionCleanupOptions {
  /** Only this agent's sessions. Default every agent. */
  agentId?: string;
  /** Delete even in `warn` mode. */
  enforce?: boolean;
  /** Report only, even in `enforce` mode. */
  dryRun?: boolean;
  /** Keys never to delete (besides main sessions and the sessions in memory). */
  protect?: readonly string[];
}

/** What a pass found for one agent, and what it did. */
export interface SessionCleanupSummary {
  agentId: string;
  mode: "warn" | "enforce";
  /** True when nothing was deleted on purpose (`warn` mode without `enforce`, or `dryRun`). */
  dryRun: boolean;
  /** Sessions before, and after the pass (or after it, had it applied). */
  beforeCount: number;
  afterCount: number;
  /** Stale sessions (older than `pruneAfterMs`). */
  pruned: number;
  /** Sessions beyond `maxSessions`. */
  capped: number;
  /** Whether the pass found anything to delete. */
  wouldMutate: boolean;
  /**
   * Sub-agent sessions deleted (or that would be) with the sessions above, at any depth and
   * under any agent, that were not stale or over the cap themselves: deleting a session
   * deletes the sub-agents it spawned (see `SessionHandle.delete`). Counted apart from
   * `pruned` and `capped`; included in `appliedCount` and `sample`, and in `afterCount` when
   * of this agent.
   */
  subagents: number;
  /** How many it deleted (applied passes), the sub-agent sessions deleted with them included. */
  appliedCount: number;
  /** Up to 50 of the keys it deleted or would delete (sub-agent sessions included). */
  sample: string[];
}

const DEFAULT_PRUNE_AFTER_MS = 30 * 24 * 60 * 60 * 1000;
const DEFAULT_EVERY_MS = 60 * 60 * 1000;
const LOCK = "sessions:maintenance";
const LOCK_TTL_MS = 10 * 60 * 1000;
const PAGE = 500;
const SAMPLE = 50;

/**
 * See the module comment.
 *
 * @example
 * ```ts
 * const maintenance = new SessionMaintenance(runtime, {
 *   settings: { mode: "enforce", pruneAfterMs: 7 * 86_400_000, maxSessions: 10_000 },
 * });
 * maintenance.start(); // a pass every hour
 * console.log(await maintenance.run({ dryRun: true })); // what a pass would do now
 * await maintenance.stop();
 * ```
 */
export class SessionMaintenance {
  readonly #runtime: AgentRuntime;
  readonly #settings: () => SessionMaintenanceSettings | undefined;
  #everyMs: number;
  readonly #onPass: ((summaries: SessionCleanupSummary[]) => void) | undefined;
  readonly #onError: ((error: unknown) => void) | undefined;
  readonly #now: () => number;
  readonly #owner = `maintenance:${Math.random().toString(36).slice(2)}`;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = false;

  constructor(runtime: AgentRuntime, options: SessionMaintenanceOptions) {
    const settings = options.settings;
    this.#runtime = runtime;
    this.#settings = typeof settings === "function" ? settings : () => settings;
    this.#everyMs = checkEveryMs(options.everyMs ?? DEFAULT_EVERY_MS);
    this.#onPass = options.onPass;
    this.#onError = options.onError;
    this.#now = options.now ?? Date.now;
    checkSettings(this.#settings());
  }

  /** Runs a pass every `everyMs` (the first one `everyMs` from now) until {@link stop}. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#arm(this.#everyMs);
  }

  /**
   * Runs a pass `ms` from now, then every `everyMs`. A period longer than a timer holds
   * (about 24.8 days, which Node would fire at once, again and again) is waited in steps.
   */
  #arm(ms: number): void {
    const step = Math.min(ms, MAX_TIMER_DELAY_MS);
    this.#timer = setTimeout(() => {
      if (ms > step) {
        this.#arm(ms - step);
        return;
      }
      this.#arm(this.#everyMs);
      if (this.#running !== undefined) return;
      this.#running = this.#periodicPass().finally(() => {
        this.#running = undefined;
      });
    }, step);
    this.#timer.unref();
  }

  /**
   * One periodic pass; never rejects. A failure (the store, the settings function, `onPass`)
   * goes to `onError`; what `onError` itself throws is reported as a `BeamClawWarning`, as it
   * would otherwise end the process from the timer.
   */
  async #periodicPass(): Promise<void> {
    try {
      if (this.#settings() === undefined) return;
      this.#onPass?.(await this.run());
    } catch (error) {
      try {
        this.#onError?.(error);
      } catch (thrown) {
        process.emitWarning(
          `session maintenance's onError threw: ${describe(thrown)}`,
          "BeamClawWarning",
        );
      }
    }
  }

  /** How often passes run. */
  get everyMs(): number {
    return this.#everyMs;
  }

  /**
   * Changes how often passes run (a configuration reload): when started, the next pass is
   * `everyMs` from now, and every one after it.
   *
   * @throws InvalidArgumentError unless `everyMs` is a whole number of ms >= 1000 (nothing
   *   changes then).
   */
  setEveryMs(everyMs: number): void {
    this.#everyMs = checkEveryMs(everyMs);
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.start();
  }

  /** Stops the periodic passes and waits for one in progress (which stops between pages). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /**
   * One pass now, over every agent (or `options.agentId`'s): what is stale or over the cap,
   * deleted when the mode is `enforce` (or `options.enforce`) and not `dryRun`.
   *
   * @throws InvalidArgumentError for an unknown agent or invalid settings; a store error.
   */
  async run(options: SessionCleanupOptions = {}): Promise<SessionCleanupSummary[]> {
    const settings = this.#settings() ?? {};
    checkSettings(settings);
    const agents = this.#runtime.agents.map((a) => a.id);
    if (options.agentId !== undefined && !agents.includes(options.agentId)) {
      throw new InvalidArgumentError(
        `no agent ${options.agentId} (the agents are ${agents.join(", ")})`,
      );
    }
    const mode = settings.mode ?? "warn";
    const apply = options.dryRun !== true && (mode === "enforce" || options.enforce === true);
    const { store } = this.#runtime;
    // One node of a cluster at a time deletes; a report needs no lock.
    const held: { lease: Lease | undefined } = {
      lease: apply
        ? await store.locks.acquire(LOCK, { owner: this.#owner, ttlMs: LOCK_TTL_MS })
        : undefined,
    };
    if (apply && held.lease === undefined) {
      throw new StoreError(
        "STORE_LOCKED",
        "another process is running session maintenance; try again later",
      );
    }
    try {
      const summaries: SessionCleanupSummary[] = [];
      for (const agentId of options.agentId === undefined ? agents : [options.agentId]) {
        if (this.#stopped && options.agentId === undefined && summaries.length > 0) break;
        summaries.push(await this.#pass(agentId, settings, mode, held, options.protect ?? []));
      }
      return summaries;
    } finally {
      if (held.lease !== undefined) await store.locks.release(held.lease).catch(() => false);
    }
  }

  async #pass(
    agentId: string,
    settings: SessionMaintenanceSettings,
    mode: "warn" | "enforce",
    held: { lease: Lease | undefined },
    protect: readonly string[],
  ): Promise<SessionCleanupSummary> {
    const apply = held.lease !== undefined;
    const runtime = this.#runtime;
    const { store } = runtime;
    const cutoff = this.#now() - (settings.pruneAfterMs ?? DEFAULT_PRUNE_AFTER_MS);
    const cap = settings.maxSessions ?? Number.POSITIVE_INFINITY;
    const kept = new Set([`agent:${agentId}:main`, ...protect.map((k) => k.toLowerCase())]);
    const live = new Set(runtime.activeSessions());
    const summary: SessionCleanupSummary = {
      agentId,
      mode,
      dryRun: !apply,
      beforeCount: await store.sessions.count(agentId),
      afterCount: 0,
      pruned: 0,
      capped: 0,
      subagents: 0,
      wouldMutate: false,
      appliedCount: 0,
      sample: [],
    };
    /** This agent's sessions that go with a doomed session's (its sub-agents). */
    let ownSubagents = 0;
    /** Sessions counted already (doomed, or sub-agents of a doomed one), across pages. */
    const counted = new Set<string>();
    const note = (key: string) => {
      counted.add(key);
      if (summary.sample.length < SAMPLE) summary.sample.push(key);
    };
    /**
     * Dooms `record` with its family (its sub-agents at any depth), unless a member of the
     * family must stay; false then. `keptSubagents`: sub-agents kept so far (counted toward
     * the cap), uncounted when they go with the doomed session.
     */
    const doom = async (
      record: SessionRecord,
      cause: "pruned" | "capped",
      doomed: string[],
      keptSubagents?: Set<string>,
    ): Promise<boolean> => {
      // Its sub-agents go with it: a session whose family holds one that must stay stays.
      const family = await subagentsOf(store, record.key);
      if (family.some((r) => kept.has(r.key) || live.has(r.key))) return false;
      summary[cause]++;
      doomed.push(record.key);
      note(record.key);
      for (const sub of family) {
        if (counted.has(sub.key)) continue;
        if (keptSubagents?.delete(sub.key) === true) keptCount--;
        summary.subagents++;
        if (sub.agentId === agentId) ownSubagents++;
        note(sub.key);
      }
      return true;
    };
    const skip = (key: string) => kept.has(key) || live.has(key) || counted.has(key);
    const walk = (visit: (record: SessionRecord, doomed: string[]) => Promise<void>) =>
      this.#walk(store, agentId, held, settings, visit, skip);
    let keptCount = 0;
    // Two walks: the stale sessions (and the sub-agents that go with them) first, then the
    // cap over what is left, so that a session the first walk deletes (a sub-agent listed
    // before its stale parent) never takes a place under the cap.
    await walk(async (record, doomed) => {
      if (record.updatedAt < cutoff) await doom(record, "pruned", doomed);
    });
    if (cap !== Number.POSITIVE_INFINITY && !this.#stopped) {
      /** Sub-agents kept under the cap so far: a capped parent met later takes them along. */
      const keptSubagents = new Set<string>();
      await walk(async (record, doomed) => {
        if (keptCount < cap || !(await doom(record, "capped", doomed, keptSubagents))) {
          keptCount++;
          if (record.parentKey !== undefined) keptSubagents.add(record.key);
        }
      });
    }
    const removed = summary.pruned + summary.capped;
    summary.wouldMutate = removed > 0;
    if (apply) summary.appliedCount = removed + summary.subagents;
    summary.afterCount = Math.max(0, summary.beforeCount - removed - ownSubagents);
    return summary;
  }

  /**
   * Reads `agentId`'s sessions a page at a time (newest first) and hands each one that may
   * go (not a main or protected session, not in memory, not doomed already) to `visit`,
   * which adds the keys to delete to `doomed`; an applied pass deletes them page by page.
   */
  async #walk(
    store: Store,
    agentId: string,
    held: { lease: Lease | undefined },
    settings: SessionMaintenanceSettings,
    visit: (record: SessionRecord, doomed: string[]) => Promise<void>,
    skip: (key: string) => boolean,
  ): Promise<void> {
    let cursor: string | undefined;
    do {
      const page = await store.sessions.list({
        agentId,
        limit: PAGE,
        ...(cursor === undefined ? {} : { cursor }),
      });
      const doomed: string[] = [];
      for (const record of page.items) {
        if (!skip(record.key)) await visit(record, doomed);
      }
      if (held.lease !== undefined && doomed.length > 0) {
        // A long pass keeps its lock; one that lost it stops deleting.
        const renewed = await store.locks.renew(held.lease, LOCK_TTL_MS);
        if (renewed === undefined) {
          throw new StoreError(
            "STORE_LOCKED",
            "session maintenance lost its lock to another process; stopped",
          );
        }
        held.lease = renewed;
        for (const key of doomed) {
          await this.#runtime
            .session(key)
            .delete({ archiveTranscript: settings.archiveTranscripts === true });
        }
      }
      cursor = page.cursor;
    } while (cursor !== undefined && !this.#stopped);
  }
}

/**
 * The sub-agent sessions `key` spawned, at any depth, that have a record: those its delete
 * deletes with it, found as it finds them (the spawns recorded in the store).
 */
async function subagentsOf(store: Store, key: string): Promise<SessionRecord[]> {
  const found: SessionRecord[] = [];
  const seen = new Set([key]);
  const parents = [key];
  for (let i = 0; i < parents.length; i++) {
    for await (const spawn of iterateKvKeys(store.kv, subagentIndexPrefix(parents[i]!))) {
      const child = parseSubagentIndexKey(spawn).child;
      if (seen.has(child)) continue;
      seen.add(child);
      parents.push(child);
      const record = await store.sessions.get(child);
      if (record !== undefined) found.push(record);
    }
  }
  return found;
}

function checkSettings(settings: SessionMaintenanceSettings | undefined): void {
  if (settings === undefined) return;
  if (settings.mode !== undefined && settings.mode !== "warn" && settings.mode !== "enforce") {
    throw new InvalidArgumentError(
      `maintenance mode must be warn or enforce, got ${String(settings.mode)}`,
    );
  }
  for (const [name, value] of [
    ["pruneAfterMs", settings.pruneAfterMs],
    ["maxSessions", settings.maxSessions],
  ] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      throw new InvalidArgumentError(
        `maintenance ${name} must be a whole number >= 1, got ${value}`,
      );
    }
  }
}

function checkEveryMs(everyMs: number): number {
  if (!Number.isSafeInteger(everyMs) || everyMs < 1000) {
    throw new InvalidArgumentError(`everyMs must be a whole number of ms >= 1000, got ${everyMs}`);
  }
  return everyMs;
}
