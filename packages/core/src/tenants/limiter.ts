import { AbortedError, BeamClawError, InvalidArgumentError } from "../errors.js";
import type { ModelUsage } from "../providers/types.js";

/**
 * What one tenant may use. Every limit is optional; an absent limit (or `Infinity`) is
 * unlimited. Budgets may be 0 (the tenant makes no model call: every one is refused with
 * `BudgetExceededError`); the request rate and the concurrency and pending-message caps are at
 * least 1, since 0 would refuse or stall every call without saying when it could pass.
 */
export interface TenantLimits {
  /** Input + output tokens per UTC day. */
  tokensPerDay?: number;
  /** Input + output tokens per UTC calendar month. */
  tokensPerMonth?: number;
  /**
   * Model requests per rolling minute. A request counts from when it starts (it has its
   * concurrency slot), not while it waits for one; a call waiting for a slot holds a place in
   * the count, so that `acquire` refuses at once what could not start within the limit.
   */
  requestsPerMinute?: number;
  /** Model calls in flight at once, across the tenant. */
  maxConcurrentRuns?: number;
  /** Model calls in flight at once per agent: one agent cannot take every slot. */
  maxConcurrentRunsPerAgent?: number;
  /** Sessions alive in memory at once. */
  maxConcurrentSessions?: number;
  /**
   * Messages accepted and not yet finished, across the tenant: one more is refused at `send`
   * with `OverloadedError` before anything is queued. Bounds the work a burst can leave queued
   * (each session's own queue bound, `maxQueuedMessages`, applies per session).
   */
  maxPendingMessages?: number;
  /** Agents the tenant may define: checked by `TenantManager.add` and its `runtime.reconfigure`. */
  maxAgents?: number;
}

/** A tenant's token budget for the day or month is spent. Not retryable until it resets. */
export class BudgetExceededError extends BeamClawError {
  readonly tenant: string;
  readonly period: "day" | "month";
  readonly limit: number;
  /** Tokens used in the period, and reserved by the tenant's calls in flight. */
  readonly used: number;
  /** When the budget resets (epoch ms). */
  readonly resetsAt: number;
  readonly isRetryable = false;
  constructor(
    tenant: string,
    period: "day" | "month",
    limit: number,
    used: number,
    resetsAt: number,
  ) {
    super(
      "BUDGET_EXCEEDED",
      `tenant "${tenant}" spent its ${period} budget (${used} of ${limit} tokens); it resets at ${new Date(resetsAt).toISOString()}`,
    );
    this.tenant = tenant;
    this.period = period;
    this.limit = limit;
    this.used = used;
    this.resetsAt = resetsAt;
  }
  static override isInstance = (value: unknown): value is BudgetExceededError =>
    BeamClawError.isInstance(value) && value.code === "BUDGET_EXCEEDED";
}

/** A tenant exceeded its request rate. Retryable after `retryAfterMs`. */
export class RateLimitedError extends BeamClawError {
  readonly tenant: string;
  readonly limit: number;
  readonly retryAfterMs: number;
  readonly isRetryable = true;
  constructor(tenant: string, limit: number, retryAfterMs: number) {
    super(
      "RATE_LIMITED",
      `tenant "${tenant}" exceeded ${limit} requests per minute; retry in ${retryAfterMs} ms`,
    );
    this.tenant = tenant;
    this.limit = limit;
    this.retryAfterMs = retryAfterMs;
  }
  static override isInstance = (value: unknown): value is RateLimitedError =>
    BeamClawError.isInstance(value) && value.code === "RATE_LIMITED";
}

/**
 * A tenant's token counts, kept so that a restart does not hand out a fresh budget: the UTC
 * day and month they count (epoch ms of their start) and the tokens used in each; and, when
 * the tenant has a `requestsPerMinute` limit, the requests of the last minute, so that a
 * restart does not hand out a fresh minute either.
 */
export interface TenantUsageSnapshot {
  day: number;
  dayTokens: number;
  month: number;
  monthTokens: number;
  /**
   * The requests of the last minute by second: `[start of the second (epoch ms), count]`,
   * oldest first (at most 61 entries). Absent without a `requestsPerMinute` limit, and in
   * snapshots written before it was kept.
   */
  requests?: Array<[second: number, count: number]>;
}

/** Options of {@link ResourceLimiter}. */
export interface ResourceLimiterOptions {
  /** The clock. Default `Date.now`. */
  now?: () => number;
  /** Called after each `recordUsage`: e.g. to save {@link ResourceLimiter.snapshot}. */
  onUsage?: () => void;
}

/** A slot taken for one model call; release it when the call ends. */
export interface RunSlot {
  release(): void;
}

interface Waiter {
  agentId: string;
  resolve: (slot: RunSlot) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  /** The tokens it reserved (its estimate), handed on to its slot. */
  reserved: number;
  onAbort: () => void;
}

/** Limits that cannot be 0: a call would be refused with no time to retry at, or wait forever. */
const AT_LEAST_ONE = new Set([
  "requestsPerMinute",
  "maxConcurrentRuns",
  "maxConcurrentRunsPerAgent",
  "maxPendingMessages",
]);

/** The limits checked, with `Infinity` (unlimited) left out as absent. */
function checkedLimits(limits: TenantLimits): TenantLimits {
  const checked: Record<string, number> = {};
  for (const [name, value] of Object.entries(limits) as Array<[string, unknown]>) {
    if (value === undefined || value === Number.POSITIVE_INFINITY) continue;
    const min = AT_LEAST_ONE.has(name) ? 1 : 0;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
      throw new InvalidArgumentError(
        `${name} must be an integer >= ${min} (or Infinity: unlimited), got ${String(value)}` +
          (min === 1 && value === 0 ? "; to stop a tenant's model calls set tokensPerDay: 0" : ""),
      );
    }
    checked[name] = value;
  }
  return checked;
}

const MINUTE_MS = 60_000;

function tokenCount(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : 0;
}

function isSnapshot(value: unknown): value is TenantUsageSnapshot {
  if (value === null || typeof value !== "object") return false;
  const v = value as Record<string, unknown>;
  return (
    ["day", "dayTokens", "month", "monthTokens"].every(
      (k) => typeof v[k] === "number" && Number.isFinite(v[k]) && (v[k] as number) >= 0,
    ) &&
    (v.requests === undefined ||
      (Array.isArray(v.requests) &&
        v.requests.every(
          (entry) =>
            Array.isArray(entry) &&
            entry.length === 2 &&
            entry.every((n) => Number.isSafeInteger(n) && n >= 0),
        )))
  );
}

/** Request start times grouped by second: `[second start, count]`, oldest first. */
function requestsBySecond(times: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const time of times) {
    const second = time - (time % 1000);
    const last = out[out.length - 1];
    if (last !== undefined && last[0] === second) last[1]++;
    else out.push([second, 1]);
  }
  return out;
}

function dayStart(at: number): number {
  const d = new Date(at);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

function monthStart(at: number): number {
  const d = new Date(at);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

function nextMonthStart(at: number): number {
  const d = new Date(at);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/**
 * Enforces one tenant's limits before every model call: token budgets per day and month,
 * requests per minute, and concurrency — overall and per agent, in fair lanes, so one busy
 * agent cannot starve the others. Waiting for a slot honours an `AbortSignal`; budgets and
 * rate limits fail at once with typed errors.
 *
 * @example
 * ```ts
 * const limiter = new ResourceLimiter("acme", { tokensPerDay: 1_000_000, requestsPerMinute: 60 });
 * const slot = await limiter.acquire("support", { estimatedTokens: 2_000 });
 * try { ... } finally { slot.release(); }
 * limiter.recordUsage({ inputTokens: 1_800, outputTokens: 400 });
 * ```
 */
export class ResourceLimiter {
  readonly tenant: string;
  readonly limits: Readonly<TenantLimits>;
  readonly #now: () => number;
  readonly #onUsage: (() => void) | undefined;
  #day = 0;
  #dayTokens = 0;
  #month = 0;
  #monthTokens = 0;
  /**
   * The estimates of the calls admitted and not yet ended: counted against the budgets until
   * their usage is recorded, so that calls made at once cannot all pass a budget that only
   * one of them fits.
   */
  #reserved = 0;
  /** Start times of the requests started within the last minute, oldest first. */
  #requests: number[] = [];
  /**
   * Calls admitted and waiting for a concurrency slot: each holds a place in the
   * `requestsPerMinute` count until it starts (then its start time counts) or is aborted.
   */
  #waiting = 0;
  #running = 0;
  readonly #runningByAgent = new Map<string, number>();
  #waiters: Waiter[] = [];

  constructor(tenant: string, limits: TenantLimits = {}, options: ResourceLimiterOptions = {}) {
    this.limits = checkedLimits(limits);
    this.tenant = tenant;
    this.#now = options.now ?? Date.now;
    this.#onUsage = options.onUsage;
  }

  /**
   * The day's and the month's token counts, for {@link ResourceLimiter.restore} after a
   * restart.
   */
  snapshot(): TenantUsageSnapshot {
    this.#roll(this.#now());
    return {
      day: this.#day,
      dayTokens: this.#dayTokens,
      month: this.#month,
      monthTokens: this.#monthTokens,
      // Bounded by the limit (and by 60 entries); not kept without one, where it counts nothing.
      ...(this.limits.requestsPerMinute === undefined
        ? {}
        : { requests: requestsBySecond(this.#requests) }),
    };
  }

  /**
   * Takes back counts a {@link ResourceLimiter.snapshot} kept (before a restart): those of
   * the current UTC day and month count again (the higher of the two where both have some);
   * older ones, and a value that is not a snapshot, are ignored. Its requests of the last
   * minute count against `requestsPerMinute` again when they are more than the limiter has
   * counted since (each as made at the end of its second, so none expires early). Returns
   * whether anything was taken.
   *
   * @example
   * ```ts
   * const kept = await kv.get("usage");
   * limiter.restore(kept); // a budget spent before the restart stays spent
   * ```
   */
  restore(snapshot: unknown): boolean {
    if (!isSnapshot(snapshot)) return false;
    this.#roll(this.#now());
    let taken = false;
    if (snapshot.day === this.#day && snapshot.dayTokens > this.#dayTokens) {
      this.#dayTokens = snapshot.dayTokens;
      taken = true;
    }
    if (snapshot.month === this.#month && snapshot.monthTokens > this.#monthTokens) {
      this.#monthTokens = snapshot.monthTokens;
      taken = true;
    }
    const limit = this.limits.requestsPerMinute;
    if (snapshot.requests !== undefined && limit !== undefined) {
      const now = this.#now();
      const kept: number[] = [];
      // A time ahead of this clock (another host's, or a clock stepped back) counts as now;
      // more than the limit counts for nothing more (a corrupt count cannot loop for long).
      for (const [second, count] of snapshot.requests) {
        const at = Math.min(second + 999, now);
        if (at <= now - MINUTE_MS) continue;
        for (let i = 0; i < count && kept.length < limit; i++) kept.push(at);
      }
      if (kept.length > this.#requests.length) {
        this.#requests = kept.sort((a, b) => a - b);
        taken = true;
      }
    }
    return taken;
  }

  /**
   * Tokens used today and this month, requests started in the last minute, calls in flight,
   * and calls waiting for a slot (which count against `requestsPerMinute` too: the rate is
   * exhausted when `requestsLastMinute + waiting` reaches it).
   */
  get usage(): {
    dayTokens: number;
    monthTokens: number;
    requestsLastMinute: number;
    running: number;
    waiting: number;
  } {
    this.#roll(this.#now());
    return {
      dayTokens: this.#dayTokens,
      monthTokens: this.#monthTokens,
      requestsLastMinute: this.#requests.length,
      running: this.#running,
      waiting: this.#waiting,
    };
  }

  /**
   * Checks budgets and the request rate, then waits for a concurrency slot for `agentId`.
   *
   * @throws BudgetExceededError when a token budget is spent, counting `estimatedTokens` (at
   *   least 1) and the estimates of the calls still in flight (reserved until their slot is
   *   released, by when their usage has been recorded).
   * @throws RateLimitedError when the requests the tenant started in the last minute and the
   *   calls waiting for a slot reach `requestsPerMinute`. A call counts from when it gets its
   *   slot and starts, by the limiter's clock; while it waits it only holds its place.
   * @throws AbortedError when `signal` is aborted already or aborts while waiting (the
   *   signal's reason, when it has one). A call aborted so never counts against
   *   `requestsPerMinute`: it made no request.
   */
  async acquire(
    agentId: string,
    options: { estimatedTokens?: number; signal?: AbortSignal } = {},
  ): Promise<RunSlot> {
    if (options.signal?.aborted) throw options.signal.reason ?? new AbortedError("aborted");
    const now = this.#now();
    this.#roll(now);
    // Any call needs at least one token: a budget is spent once it is reached.
    const estimate = Math.max(1, tokenCount(options.estimatedTokens));
    this.#checkBudgets(now, estimate);
    this.#checkRate(now);
    this.#reserved += estimate;
    if (this.#hasRoom(agentId)) return this.#take(agentId, estimate);
    // Holds its place in the rate until it starts; its request counts from then.
    this.#waiting++;
    return new Promise<RunSlot>((resolve, reject) => {
      const waiter: Waiter = {
        agentId,
        resolve,
        reject,
        signal: options.signal,
        reserved: estimate,
        onAbort: () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          this.#reserved -= estimate;
          // Its request is never made: its place in the rate is free again.
          this.#waiting--;
          reject(
            options.signal?.reason ?? new AbortedError("aborted while waiting for a run slot"),
          );
        },
      };
      options.signal?.addEventListener("abort", waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Refuses new work the tenant cannot do now, taking nothing: throws when a token budget is
   * already spent or the request rate is exhausted — what the next `acquire` would throw.
   * `TenantManager` calls it before a message is accepted, so that a flood is turned away at
   * the door, before anything is queued, instead of being queued, run and failed one by one.
   *
   * @throws BudgetExceededError when the day or month budget has no token left.
   * @throws RateLimitedError when the requests started in the last minute and the calls waiting
   *   for a slot reach `requestsPerMinute`.
   * @example
   * ```ts
   * limiter.admit(); // throws RateLimitedError (with retryAfterMs) while the rate is exhausted
   * ```
   */
  admit(): void {
    const now = this.#now();
    this.#roll(now);
    // Any call needs at least one token: a budget is spent once it is reached.
    this.#checkBudgets(now, 1);
    this.#checkRate(now);
  }

  #checkBudgets(now: number, estimate: number): void {
    const { tokensPerDay, tokensPerMonth } = this.limits;
    if (tokensPerDay !== undefined && this.#dayTokens + this.#reserved + estimate > tokensPerDay) {
      throw new BudgetExceededError(
        this.tenant,
        "day",
        tokensPerDay,
        this.#dayTokens + this.#reserved,
        this.#day + 86_400_000,
      );
    }
    if (
      tokensPerMonth !== undefined &&
      this.#monthTokens + this.#reserved + estimate > tokensPerMonth
    ) {
      throw new BudgetExceededError(
        this.tenant,
        "month",
        tokensPerMonth,
        this.#monthTokens + this.#reserved,
        nextMonthStart(now),
      );
    }
  }

  #checkRate(now: number): void {
    const { requestsPerMinute } = this.limits;
    if (requestsPerMinute === undefined) return;
    const counted = this.#requests.length + this.#waiting;
    if (counted < requestsPerMinute) return;
    // A place frees when enough started requests leave the minute; a waiting call counts for a
    // minute from its start, at the earliest now: a full minute when the waiting fill the limit.
    const expiring = this.#requests[counted - requestsPerMinute];
    const retryAfterMs = Math.max(1, (expiring ?? now) + MINUTE_MS - now);
    throw new RateLimitedError(this.tenant, requestsPerMinute, retryAfterMs);
  }

  /** Counts tokens a call used against the day and month budgets. */
  recordUsage(usage: ModelUsage): void {
    this.#roll(this.#now());
    // A count a source did not report (or reported as garbage) is none: a NaN here would
    // make every later budget check pass.
    const tokens = tokenCount(usage.inputTokens) + tokenCount(usage.outputTokens);
    this.#dayTokens += tokens;
    this.#monthTokens += tokens;
    this.#onUsage?.();
  }

  #hasRoom(agentId: string): boolean {
    const { maxConcurrentRuns, maxConcurrentRunsPerAgent } = this.limits;
    if (maxConcurrentRuns !== undefined && this.#running >= maxConcurrentRuns) return false;
    const agentRunning = this.#runningByAgent.get(agentId) ?? 0;
    return maxConcurrentRunsPerAgent === undefined || agentRunning < maxConcurrentRunsPerAgent;
  }

  /** Starts a call: its slot is taken and, from now, its request counts against the rate. */
  #take(agentId: string, reserved: number): RunSlot {
    this.#requests.push(this.#now());
    this.#running++;
    this.#runningByAgent.set(agentId, (this.#runningByAgent.get(agentId) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#reserved -= reserved;
        this.#running--;
        const left = (this.#runningByAgent.get(agentId) ?? 1) - 1;
        if (left === 0) this.#runningByAgent.delete(agentId);
        else this.#runningByAgent.set(agentId, left);
        this.#wake();
      },
    };
  }

  /** Hands freed slots to waiters, first come first served among agents that have room. */
  #wake(): void {
    for (let i = 0; i < this.#waiters.length; ) {
      const waiter = this.#waiters[i]!;
      if (!this.#hasRoom(waiter.agentId)) {
        i++;
        continue;
      }
      this.#waiters.splice(i, 1);
      waiter.signal?.removeEventListener("abort", waiter.onAbort);
      this.#waiting--;
      waiter.resolve(this.#take(waiter.agentId, waiter.reserved));
      if (
        this.limits.maxConcurrentRuns !== undefined &&
        this.#running >= this.limits.maxConcurrentRuns
      )
        return;
    }
  }

  #roll(now: number): void {
    // Forward only: a clock stepped back over midnight (NTP) must not hand out a fresh budget.
    const day = dayStart(now);
    if (day > this.#day) {
      this.#day = day;
      this.#dayTokens = 0;
    }
    const month = monthStart(now);
    if (month > this.#month) {
      this.#month = month;
      this.#monthTokens = 0;
    }
    let drop = 0;
    while (drop < this.#requests.length && this.#requests[drop]! <= now - MINUTE_MS) drop++;
    if (drop > 0) this.#requests.splice(0, drop);
  }
}
