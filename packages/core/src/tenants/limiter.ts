import { AbortedError, BeamClawError, InvalidArgumentError } from "../errors.js";
import type { ModelUsage } from "../providers/types.js";

/** What one tenant may use. Every limit is optional; an absent limit is unlimited. */
export interface TenantLimits {
  /** Input + output tokens per UTC day. */
  tokensPerDay?: number;
  /** Input + output tokens per UTC calendar month. */
  tokensPerMonth?: number;
  /** Model requests per rolling minute. */
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
  /** Agents the tenant may define. */
  maxAgents?: number;
}

/** A tenant's token budget for the day or month is spent. Not retryable until it resets. */
export class BudgetExceededError extends BeamClawError {
  readonly tenant: string;
  readonly period: "day" | "month";
  readonly limit: number;
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

/** A slot taken for one model call; release it when the call ends. */
export interface RunSlot {
  release(): void;
}

interface Waiter {
  agentId: string;
  resolve: (slot: RunSlot) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

function checkLimit(name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
    throw new InvalidArgumentError(`${name} must be an integer >= 0, got ${value}`);
  }
}

const MINUTE_MS = 60_000;

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
  #day = 0;
  #dayTokens = 0;
  #month = 0;
  #monthTokens = 0;
  /** Request start times within the last minute, oldest first. */
  #requests: number[] = [];
  #running = 0;
  readonly #runningByAgent = new Map<string, number>();
  #waiters: Waiter[] = [];

  constructor(tenant: string, limits: TenantLimits = {}, options: { now?: () => number } = {}) {
    for (const [name, value] of Object.entries(limits))
      checkLimit(name, value as number | undefined);
    this.tenant = tenant;
    this.limits = { ...limits };
    this.#now = options.now ?? Date.now;
  }

  /** Tokens used today and this month, requests in the last minute, calls in flight. */
  get usage(): {
    dayTokens: number;
    monthTokens: number;
    requestsLastMinute: number;
    running: number;
  } {
    this.#roll(this.#now());
    return {
      dayTokens: this.#dayTokens,
      monthTokens: this.#monthTokens,
      requestsLastMinute: this.#requests.length,
      running: this.#running,
    };
  }

  /**
   * Checks budgets and the request rate, then waits for a concurrency slot for `agentId`.
   *
   * @throws BudgetExceededError when a token budget (including `estimatedTokens`) is spent.
   * @throws RateLimitedError when the tenant made `requestsPerMinute` requests in the last minute.
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
    this.#checkBudgets(now, options.estimatedTokens ?? 0);
    this.#checkRate(now);
    this.#requests.push(now);
    if (this.#hasRoom(agentId)) return this.#take(agentId);
    return new Promise<RunSlot>((resolve, reject) => {
      const waiter: Waiter = {
        agentId,
        resolve,
        reject,
        signal: options.signal,
        onAbort: () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          // The request it counted was never made.
          const index = this.#requests.lastIndexOf(now);
          if (index >= 0) this.#requests.splice(index, 1);
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
   * @throws RateLimitedError when the tenant made `requestsPerMinute` requests in the last minute.
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
    if (tokensPerDay !== undefined && this.#dayTokens + estimate > tokensPerDay) {
      throw new BudgetExceededError(
        this.tenant,
        "day",
        tokensPerDay,
        this.#dayTokens,
        this.#day + 86_400_000,
      );
    }
    if (tokensPerMonth !== undefined && this.#monthTokens + estimate > tokensPerMonth) {
      throw new BudgetExceededError(
        this.tenant,
        "month",
        tokensPerMonth,
        this.#monthTokens,
        nextMonthStart(now),
      );
    }
  }

  #checkRate(now: number): void {
    const { requestsPerMinute } = this.limits;
    if (requestsPerMinute !== undefined && this.#requests.length >= requestsPerMinute) {
      const retryAfterMs = Math.max(1, this.#requests[0]! + MINUTE_MS - now);
      throw new RateLimitedError(this.tenant, requestsPerMinute, retryAfterMs);
    }
  }

  /** Counts tokens a call used against the day and month budgets. */
  recordUsage(usage: ModelUsage): void {
    this.#roll(this.#now());
    const tokens = usage.inputTokens + usage.outputTokens;
    this.#dayTokens += tokens;
    this.#monthTokens += tokens;
  }

  #hasRoom(agentId: string): boolean {
    const { maxConcurrentRuns, maxConcurrentRunsPerAgent } = this.limits;
    if (maxConcurrentRuns !== undefined && this.#running >= maxConcurrentRuns) return false;
    const agentRunning = this.#runningByAgent.get(agentId) ?? 0;
    return maxConcurrentRunsPerAgent === undefined || agentRunning < maxConcurrentRunsPerAgent;
  }

  #take(agentId: string): RunSlot {
    this.#running++;
    this.#runningByAgent.set(agentId, (this.#runningByAgent.get(agentId) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
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
      waiter.resolve(this.#take(waiter.agentId));
      if (
        this.limits.maxConcurrentRuns !== undefined &&
        this.#running >= this.limits.maxConcurrentRuns
      )
        return;
    }
  }

  #roll(now: number): void {
    const day = dayStart(now);
    if (day !== this.#day) {
      this.#day = day;
      this.#dayTokens = 0;
    }
    const month = monthStart(now);
    if (month !== this.#month) {
      this.#month = month;
      this.#monthTokens = 0;
    }
    let drop = 0;
    while (drop < this.#requests.length && this.#requests[drop]! <= now - MINUTE_MS) drop++;
    if (drop > 0) this.#requests.splice(0, drop);
  }
}
