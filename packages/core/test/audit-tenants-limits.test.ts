/**
 * Audit of a tenant's limits at their edges: a limit of 0 or `Infinity`, and a clock stepped
 * back over midnight (or over the first of the month).
 */
import { describe, expect, it } from "vitest";
import { BudgetExceededError, InvalidArgumentError, ResourceLimiter } from "../src/index.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { manager, openStore, useTenantCleanup } from "./audit-tenants-support.js";

useTenantCleanup();

function clockAt(start: number) {
  let now = start;
  return {
    now: () => now,
    set(at: number) {
      now = at;
    },
  };
}

describe("ResourceLimiter: limits of 0 and Infinity", () => {
  it("reads Infinity as no limit, as the runtime's own caps do", async () => {
    const limiter = new ResourceLimiter("t", {
      tokensPerDay: Number.POSITIVE_INFINITY,
      requestsPerMinute: Number.POSITIVE_INFINITY,
      maxConcurrentRuns: Number.POSITIVE_INFINITY,
    });
    expect(limiter.limits).toEqual({});
    limiter.recordUsage({ inputTokens: 10_000_000, outputTokens: 0 });
    const slot = await limiter.acquire("a", { estimatedTokens: 1_000_000 });
    slot.release();
    limiter.admit();
  });

  it("refuses 0 for the rate and the concurrency caps with InvalidArgumentError, not a NaN wait or a call that never starts", () => {
    for (const name of [
      "requestsPerMinute",
      "maxConcurrentRuns",
      "maxConcurrentRunsPerAgent",
      "maxPendingMessages",
    ]) {
      expect(() => new ResourceLimiter("t", { [name]: 0 })).toThrow(InvalidArgumentError);
      expect(() => new ResourceLimiter("t", { [name]: 0 })).toThrow(/tokensPerDay: 0/);
    }
    expect(() => new ResourceLimiter("t", { requestsPerMinute: Number.NaN })).toThrow(
      InvalidArgumentError,
    );
  });

  it("takes a budget of 0: every call is refused with BudgetExceededError", async () => {
    const limiter = new ResourceLimiter("t", { tokensPerDay: 0 });
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
    await expect(limiter.acquire("a")).rejects.toThrow(BudgetExceededError);
  });

  it("a TenantManager takes Infinity too, for maxAgents and maxConcurrentSessions", async () => {
    const store = await openStore();
    const tenants = manager();
    const tenant = await tenants.add({
      id: "inf",
      limits: {
        maxAgents: Number.POSITIVE_INFINITY,
        maxConcurrentSessions: Number.POSITIVE_INFINITY,
      },
      runtime: {
        store,
        models: createScriptedProvider({ id: "scripted", responses: [{ text: "hi" }] }),
        agents: [{ id: "main", model: "scripted/m" }],
      },
    });
    const run = await tenant.runtime.session("agent:main:main").send("hello");
    expect((await run.result).text).toBe("hi");
  });
});

describe("ResourceLimiter: a clock stepped back", () => {
  it("keeps the day's spent budget when the clock steps back over midnight and forward again", () => {
    const midnight = Date.UTC(2026, 10, 22);
    const clock = clockAt(midnight + 1_000);
    const limiter = new ResourceLimiter("t", { tokensPerDay: 100 }, { now: clock.now });
    limiter.recordUsage({ inputTokens: 100, outputTokens: 0 });
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
    // NTP steps the clock back 2 s: it reads the day before for a moment.
    clock.set(midnight - 1_000);
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
    clock.set(midnight + 2_000);
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
    expect(limiter.usage.dayTokens).toBe(100);
    // The next day's budget is fresh.
    clock.set(midnight + 86_400_000);
    limiter.admit();
  });

  it("keeps the month's spent budget over a step back across the first of the month", () => {
    const first = Date.UTC(2026, 11, 1);
    const clock = clockAt(first + 1_000);
    const limiter = new ResourceLimiter("t", { tokensPerMonth: 50 }, { now: clock.now });
    limiter.recordUsage({ inputTokens: 30, outputTokens: 20 });
    clock.set(first - 1_000);
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
    clock.set(first + 5_000);
    expect(limiter.usage.monthTokens).toBe(50);
  });
});

describe("ResourceLimiter: a budget exactly reached", () => {
  it("refuses acquire() without an estimate once the day's tokens reach the budget, as admit() does", async () => {
    const limiter = new ResourceLimiter("t", { tokensPerDay: 100 });
    limiter.recordUsage({ inputTokens: 60, outputTokens: 40 });
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
    await expect(limiter.acquire("a")).rejects.toThrow(BudgetExceededError);
    expect(limiter.usage.running).toBe(0);
    expect(limiter.usage.requestsLastMinute).toBe(0);
  });
});

describe("ResourceLimiter: calls made at once", () => {
  it("does not let calls in flight together pass a budget only one of them fits", async () => {
    const limiter = new ResourceLimiter("t", { tokensPerDay: 1_000 });
    const first = await limiter.acquire("a", { estimatedTokens: 600 });
    // The first call has not reported its usage yet: its estimate still counts.
    await expect(limiter.acquire("b", { estimatedTokens: 600 })).rejects.toThrow(
      BudgetExceededError,
    );
    expect(() => limiter.admit()).not.toThrow();
    limiter.recordUsage({ inputTokens: 550, outputTokens: 0 });
    first.release();
    // Once it ended, only what it used counts.
    const second = await limiter.acquire("b", { estimatedTokens: 400 });
    second.release();
  });

  it("gives back the estimate of a call aborted while it waited for a slot", async () => {
    const limiter = new ResourceLimiter("t", { tokensPerDay: 1_000, maxConcurrentRuns: 1 });
    const first = await limiter.acquire("a", { estimatedTokens: 300 });
    const abort = new AbortController();
    const waiting = limiter.acquire("a", { estimatedTokens: 600, signal: abort.signal });
    abort.abort();
    await expect(waiting).rejects.toThrow();
    first.release();
    const next = await limiter.acquire("a", { estimatedTokens: 999 });
    next.release();
  });

  it("refuses at once the messages sent together over the budget, through a TenantManager", async () => {
    const store = await openStore();
    const tenants = manager();
    // Each call's prompt is about 400 tokens (4 characters a token); the budget fits two.
    const prompt = "x".repeat(1_600);
    const tenant = await tenants.add({
      id: "burst",
      limits: { tokensPerDay: 1_000 },
      runtime: {
        store,
        models: createScriptedProvider({
          id: "scripted",
          responses: Array.from({ length: 5 }, () => ({
            text: "ok",
            usage: { inputTokens: 400, outputTokens: 50 },
          })),
        }),
        agents: [{ id: "main", model: "scripted/m" }],
      },
    });
    const runs = await Promise.all(
      Array.from({ length: 5 }, (_, i) => tenant.runtime.session(`agent:main:s${i}`).send(prompt)),
    );
    const results = await Promise.all(runs.map((r) => r.result));
    const refused = results.filter((r) => r.error?.code === "BUDGET_EXCEEDED");
    expect(refused.length).toBeGreaterThanOrEqual(3);
    expect(tenant.limiter.usage.dayTokens).toBeLessThanOrEqual(1_000);
  });
});
