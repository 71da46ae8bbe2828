import type { JsonObject, ModelUsage } from "../providers/types.js";
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

/** How many sessions' in-process totals the meter keeps. */
const MAX_TRACKED_SESSIONS = 10_000;

function zero(): UsageTotals {
  return {
    calls: 0,
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    costUsd: 0,
  };
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
 * under `usage:<day>:<agentId>:<provider>:<model>` (writes for one key are serialized, so no
 * update is lost); totals per session live in the session's metadata.
 *
 * @example
 * ```ts
 * const today = runtime.usage.totals({ day: usageDay(Date.now()), agentId: "main" });
 * console.log(today.inputTokens, today.costUsd);
 * ```
 */
export class UsageMeter {
  readonly #store: Store;
  readonly #byKey = new Map<
    string,
    { filter: Required<Omit<UsageFilter, "sessionKey">>; totals: UsageTotals }
  >();
  readonly #bySession = new Map<string, UsageTotals>();
  #writes: Promise<void> = Promise.resolve();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Records one model call. */
  record(entry: UsageEntry): void {
    const day = usageDay(entry.at);
    const key = `usage:${day}:${entry.agentId}:${entry.provider}:${entry.model}`;
    let slot = this.#byKey.get(key);
    if (slot === undefined) {
      slot = {
        filter: { day, agentId: entry.agentId, provider: entry.provider, model: entry.model },
        totals: zero(),
      };
      this.#byKey.set(key, slot);
    }
    add(slot.totals, entry);
    // Recently active sessions only: a bounded map, least recently used first out (a
    // session's lifetime totals live in its metadata).
    let session = this.#bySession.get(entry.sessionKey);
    if (session === undefined) {
      session = zero();
      if (this.#bySession.size >= MAX_TRACKED_SESSIONS) {
        this.#bySession.delete(this.#bySession.keys().next().value!);
      }
    } else {
      this.#bySession.delete(entry.sessionKey);
    }
    this.#bySession.set(entry.sessionKey, session);
    add(session, entry);
    // Persist the delta: read-modify-write, serialized so concurrent records never race.
    this.#writes = this.#writes
      .then(async () => {
        const stored = ((await this.#store.kv.get<UsageTotals>(key)) ?? zero()) as UsageTotals;
        add(stored, entry);
        await this.#store.kv.set(key, stored);
      })
      .catch(() => undefined);
  }

  /**
   * Sums everything recorded in this process that matches `filter`. Per-session totals are
   * kept for the 10,000 most recently active sessions; a session's lifetime totals are in its
   * metadata.
   */
  totals(filter: UsageFilter = {}): UsageTotals {
    if (filter.sessionKey !== undefined) {
      const session = this.#bySession.get(filter.sessionKey);
      return session === undefined ? zero() : { ...session };
    }
    const out = zero();
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
    const keys = await this.#store.kv.keys(`usage:${day}:`);
    const out: Array<{ key: string; totals: UsageTotals }> = [];
    for (const key of keys) {
      const totals = await this.#store.kv.get<UsageTotals>(key);
      if (totals !== undefined) out.push({ key, totals });
    }
    return out;
  }

  /** Waits until every recorded entry is written to the store. */
  async flush(): Promise<void> {
    await this.#writes;
  }
}
