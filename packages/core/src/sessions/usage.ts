import type { JsonObject, ModelUsage } from "../providers/types.js";
import { iterateKvKeys } from "../store/kv-paging.js";
import type { Store } from "../store/types.js";

/** One metered model call. */
export interface UsageEntry {
  sessionKey: string;
  agentId: string;
  provider: string;
  model: string;
  usage: ModelUsage;
  costUsd: number;
  /** Epoch ms. */
  at: number;
}

/** Summed usage. */
export interface UsageTotals extends JsonObject {
  calls: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  costUsd: number;
}

/** Which entries to sum. */
export interface UsageFilter {
  /** `YYYY-MM-DD` (UTC). */
  day?: string;
  agentId?: string;
  provider?: string;
  model?: string;
  sessionKey?: string;
}

/** The in-process totals of one kv key (day, agent, provider, model). */
interface UsageSlot {
  key: string;
  filter: Required<Omit<UsageFilter, "sessionKey">>;
  totals: UsageTotals;
}

/** How many sessions' in-process totals the meter keeps. */
const MAX_TRACKED_SESSIONS = 10_000;

/**
 * How many UTC days (the latest recorded and those before it) keep their own in-process
 * totals; older days are folded into one total per agent, provider and model.
 */
const USAGE_TRACKED_DAYS = 31;

const DAY_MS = 24 * 60 * 60 * 1000;

/** Totals of nothing. */
export function zeroUsageTotals(): UsageTotals {
  return {
    calls: 0,
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    costUsd: 0,
  };
}

function addTotals(total: UsageTotals, more: UsageTotals): void {
  total.calls += more.calls;
  total.inputTokens += more.inputTokens;
  total.outputTokens += more.outputTokens;
  total.cacheReadTokens += more.cacheReadTokens;
  total.cacheWriteTokens += more.cacheWriteTokens;
  total.costUsd += more.costUsd;
}

function add(total: UsageTotals, entry: { usage: ModelUsage; costUsd: number }, calls = 1): void {
  total.calls += calls;
  total.inputTokens += entry.usage.inputTokens;
  total.outputTokens += entry.usage.outputTokens;
  total.cacheReadTokens += entry.usage.cacheReadTokens ?? 0;
  total.cacheWriteTokens += entry.usage.cacheWriteTokens ?? 0;
  total.costUsd += entry.costUsd;
}

/** The UTC day of an epoch-ms time, `YYYY-MM-DD`. */
export function usageDay(at: number): string {
  return new Date(at).toISOString().slice(0, 10);
}

/**
 * Meters model usage and cost per session, agent, provider, model and day. Totals per
 * day/agent/provider/model are kept in memory and written to the store's key/value space
 * under `usage:<day>:<agentId>:<provider>:<model>`; totals per session live in the session's
 * metadata. In memory, days keep their own totals for 31 days (the latest recorded and the 30
 * before it), so a process that runs for months holds a bounded number of them: an older
 * day still counts in {@link UsageMeter.totals} without a `day` filter, and its own totals
 * stay in the store ({@link UsageMeter.persisted}).
 *
 * Store writes are batched: calls recorded close together are summed in memory and added to
 * the stored totals by one read-modify-write per key, soon after (on the next turn of the
 * event loop) and on {@link UsageMeter.flush}, which `AgentRuntime.stop()` awaits, so a clean
 * stop loses nothing. Writes are serialized, so no update is lost; a write the store refuses
 * is kept and tried again with the next one.
 *
 * @example
 * ```ts
 * const today = runtime.usage.totals({ day: usageDay(Date.now()), agentId: "main" });
 * console.log(today.inputTokens, today.costUsd);
 * ```
 */
export class UsageMeter {
  readonly #store: Store;
  readonly #byKey = new Map<string, UsageSlot>();
  /** The slot of the last recorded call. */
  #last: UsageSlot | undefined;
  readonly #bySession = new Map<string, UsageTotals>();
  /** Usage recorded but not yet added to the store, by kv key. */
  #unwritten = new Map<string, UsageTotals>();
  #writeScheduled: NodeJS.Immediate | undefined;
  #writes: Promise<void> = Promise.resolve();
  /** The UTC day (`Math.floor(at / DAY_MS)`) last formatted, and its text. */
  #dayNumber = Number.NaN;
  #dayText = "";
  /** The latest UTC day (`Math.floor(at / DAY_MS)`) recorded. */
  #latestDay = Number.NEGATIVE_INFINITY;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Records one model call. */
  record(entry: UsageEntry): void {
    const dayNumber = Math.floor(entry.at / DAY_MS);
    if (dayNumber !== this.#dayNumber) {
      this.#dayNumber = dayNumber;
      this.#dayText = usageDay(entry.at);
      if (dayNumber > this.#latestDay) {
        this.#latestDay = dayNumber;
        this.#foldOldDays();
      }
    }
    const day = this.#dayText;
    // The same agent, provider and model as the last call (the common case) reuses its slot
    // rather than building and hashing the key again.
    let slot = this.#last;
    if (
      slot === undefined ||
      slot.filter.day !== day ||
      slot.filter.agentId !== entry.agentId ||
      slot.filter.provider !== entry.provider ||
      slot.filter.model !== entry.model
    ) {
      const key = `usage:${day}:${entry.agentId}:${entry.provider}:${entry.model}`;
      slot = this.#byKey.get(key);
      if (slot === undefined) {
        slot = {
          key,
          filter: { day, agentId: entry.agentId, provider: entry.provider, model: entry.model },
          totals: zeroUsageTotals(),
        };
        this.#byKey.set(key, slot);
      }
      this.#last = slot;
    }
    const key = slot.key;
    add(slot.totals, entry);
    // Recently active sessions only: a bounded map, least recently used first out (a
    // session's lifetime totals live in its metadata).
    let session = this.#bySession.get(entry.sessionKey);
    if (session === undefined) {
      session = zeroUsageTotals();
      if (this.#bySession.size >= MAX_TRACKED_SESSIONS) {
        this.#bySession.delete(this.#bySession.keys().next().value!);
      }
    } else {
      this.#bySession.delete(entry.sessionKey);
    }
    this.#bySession.set(entry.sessionKey, session);
    add(session, entry);
    let unwritten = this.#unwritten.get(key);
    if (unwritten === undefined) {
      unwritten = zeroUsageTotals();
      this.#unwritten.set(key, unwritten);
    }
    add(unwritten, entry);
    this.#writeScheduled ??= setImmediate(() => {
      this.#writeScheduled = undefined;
      void this.#write();
    });
  }

  /**
   * Folds the in-process totals of days before the last `USAGE_TRACKED_DAYS` into one total
   * per agent, provider and model (day `""`, which no `day` filter matches). The store's
   * per-day totals are not touched.
   */
  #foldOldDays(): void {
    const oldest = usageDay((this.#latestDay - USAGE_TRACKED_DAYS + 1) * DAY_MS);
    for (const [key, slot] of this.#byKey) {
      const { day, agentId, provider, model } = slot.filter;
      if (day === "" || day >= oldest) continue;
      this.#byKey.delete(key);
      if (this.#last === slot) this.#last = undefined;
      const earlierKey = `earlier:${agentId}:${provider}:${model}`;
      let earlier = this.#byKey.get(earlierKey);
      if (earlier === undefined) {
        earlier = {
          key: earlierKey,
          filter: { day: "", agentId, provider, model },
          totals: zeroUsageTotals(),
        };
        this.#byKey.set(earlierKey, earlier);
      }
      addTotals(earlier.totals, slot.totals);
    }
  }

  /** Adds everything unwritten to the stored totals; serialized after earlier writes. */
  #write(): Promise<void> {
    this.#writes = this.#writes.then(async () => {
      const batch = this.#unwritten;
      if (batch.size === 0) return;
      this.#unwritten = new Map();
      for (const [key, delta] of batch) {
        try {
          const stored = ((await this.#store.kv.get<UsageTotals>(key)) ??
            zeroUsageTotals()) as UsageTotals;
          addTotals(stored, delta);
          await this.#store.kv.set(key, stored);
        } catch {
          // Not written (the store refused): keep it for the next write.
          const later = this.#unwritten.get(key);
          if (later === undefined) this.#unwritten.set(key, delta);
          else addTotals(later, delta);
        }
      }
    });
    return this.#writes;
  }

  /**
   * Sums everything recorded in this process that matches `filter`. Per-session totals are
   * kept for the 10,000 most recently active sessions; a session's lifetime totals are in its
   * metadata. A `day` filter sees the last 31 days recorded only (an older day's totals are
   * in the store: {@link UsageMeter.persisted}).
   */
  totals(filter: UsageFilter = {}): UsageTotals {
    if (filter.sessionKey !== undefined) {
      const session = this.#bySession.get(filter.sessionKey);
      return session === undefined ? zeroUsageTotals() : { ...session };
    }
    const out = zeroUsageTotals();
    for (const { filter: f, totals } of this.#byKey.values()) {
      if (filter.day !== undefined && f.day !== filter.day) continue;
      if (filter.agentId !== undefined && f.agentId !== filter.agentId) continue;
      if (filter.provider !== undefined && f.provider !== filter.provider) continue;
      if (filter.model !== undefined && f.model !== filter.model) continue;
      out.calls += totals.calls;
      out.inputTokens += totals.inputTokens;
      out.outputTokens += totals.outputTokens;
      out.cacheReadTokens += totals.cacheReadTokens;
      out.cacheWriteTokens += totals.cacheWriteTokens;
      out.costUsd += totals.costUsd;
    }
    return out;
  }

  /** Persisted totals of one day (from every process sharing the store), per agent/provider/model. */
  async persisted(day: string): Promise<Array<{ key: string; totals: UsageTotals }>> {
    const out: Array<{ key: string; totals: UsageTotals }> = [];
    for await (const key of iterateKvKeys(this.#store.kv, `usage:${day}:`)) {
      const totals = await this.#store.kv.get<UsageTotals>(key);
      if (totals !== undefined) out.push({ key, totals });
    }
    return out;
  }

  /**
   * Writes every recorded entry to the store now and waits until it is written. An entry
   * the store refuses stays pending and is tried again by the next write.
   */
  async flush(): Promise<void> {
    if (this.#writeScheduled !== undefined) {
      clearImmediate(this.#writeScheduled);
      this.#writeScheduled = undefined;
    }
    await this.#write();
  }
}
