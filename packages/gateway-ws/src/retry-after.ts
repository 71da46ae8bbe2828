/**
 * How the gateway tells a client when to try an overloaded request again: the runtime's own
 * suggestion (`OverloadedError.retryAfterMs`: a session's full queue estimates when its
 * active run ends, memory pressure its sampling interval), or a default for an overload whose
 * source has none (an actor's mailbox, a task supervisor, a tenant's cap).
 */

/** The wait suggested for an overload that came without one, in ms. */
export const DEFAULT_OVERLOAD_RETRY_AFTER_MS = 1_000;

/**
 * The codes of the runtime's refusals for capacity, which pass and are retried later:
 * `OVERLOADED` (a full session queue or mailbox, memory pressure, a tenant's pending
 * messages), `MAX_CHILDREN` (the runtime's cap on live sessions, `maxActiveSessions`) and
 * `RATE_LIMITED` (a tenant's `requestsPerMinute`).
 */
export const OVERLOAD_CODES: ReadonlySet<string> = new Set([
  "OVERLOADED",
  "MAX_CHILDREN",
  "RATE_LIMITED",
]);

/** Whether `error` is one of the runtime's refusals for capacity (see {@link OVERLOAD_CODES}). */
export function isOverload(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" && OVERLOAD_CODES.has(code);
}

/**
 * The wait to tell a client about `error`, in whole ms: its own `retryAfterMs` when it has a
 * usable one, else {@link DEFAULT_OVERLOAD_RETRY_AFTER_MS} for an overload (see
 * {@link OVERLOAD_CODES}), else undefined.
 */
export function retryAfterMsOf(error: unknown): number | undefined {
  const e = error as { code?: unknown; retryAfterMs?: unknown } | null | undefined;
  const ms = e?.retryAfterMs;
  if (typeof ms === "number" && Number.isFinite(ms) && ms >= 0) return Math.ceil(ms);
  return isOverload(error) ? DEFAULT_OVERLOAD_RETRY_AFTER_MS : undefined;
}

/**
 * The HTTP headers that carry a wait: `Retry-After` in whole seconds (RFC 9110 §10.2.3;
 * rounded up, at least 1) and `retry-after-ms`, which the official OpenAI SDKs read before
 * `Retry-After` (openai-node `retryRequest` in src/client.ts, as in openai 6.x: "the
 * `retry-after-ms` header may not be standard, but is a good idea"; for both SDKs see
 * https://github.com/openai/openai-python/issues/1102), so that they wait the estimate
 * itself rather than their own 0.5 s backoff, or the next whole second. Empty without a
 * wait.
 */
export function retryAfterHeaders(ms: number | undefined): Record<string, string> {
  if (ms === undefined || !Number.isFinite(ms)) return {};
  return {
    "retry-after": String(Math.max(1, Math.ceil(ms / 1000))),
    "retry-after-ms": String(Math.max(1, Math.ceil(ms))),
  };
}

/**
 * The code of a tenant's spent token budget (core's `BudgetExceededError`, from its
 * `tokensPerDay` or `tokensPerMonth`). Not an overload: no retry gets through before the
 * budget resets, so the gateway answers it as a refusal not to retry (HTTP 429 with
 * `x-should-retry: false`; on the WebSocket protocol `retryable: false`, no `retryAfterMs`).
 */
export const BUDGET_EXCEEDED = "BUDGET_EXCEEDED";

/** Whether `error` (or a run's `{ code }` error) is a spent budget, see {@link BUDGET_EXCEEDED}. */
export function isBudgetExceeded(error: unknown): boolean {
  return (error as { code?: unknown } | null | undefined)?.code === BUDGET_EXCEEDED;
}

/**
 * `Retry-After` (whole seconds, rounded up, at least 1) to when a spent budget resets: the
 * error's `resetsAt` (epoch ms, as `BudgetExceededError` has it). Empty when the error does
 * not say when, or says a time already past. No `retry-after-ms`: that header is for an
 * SDK's next retry, and a spent budget is not retried.
 */
export function budgetResetHeaders(
  error: unknown,
  now: number = Date.now(),
): Record<string, string> {
  const resetsAt = (error as { resetsAt?: unknown } | null | undefined)?.resetsAt;
  if (typeof resetsAt !== "number" || !Number.isFinite(resetsAt) || resetsAt <= now) return {};
  return { "retry-after": String(Math.max(1, Math.ceil((resetsAt - now) / 1000))) };
}
