import { afterEach, describe, expect, it } from "vitest";
import {
  AbortedError,
  AlreadyRegisteredError,
  BudgetExceededError,
  InvalidArgumentError,
  limitModelSource,
  type ModelProvider,
  type ModelSource,
  OverloadedError,
  ProviderError,
  RateLimitedError,
  ResourceLimiter,
  TenantManager,
} from "../src/index.js";
import { createProviderChain, readEvents } from "../src/providers/chain.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";

function clock(start = Date.UTC(2026, 10, 21, 12)) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

describe("ResourceLimiter", () => {
  it("refuses a call that would exceed the day budget with BudgetExceededError, and resets the next UTC day", async () => {
    const c = clock();
    const limiter = new ResourceLimiter("acme", { tokensPerDay: 1000 }, { now: c.now });
    (await limiter.acquire("a", { estimatedTokens: 100 })).release();
    limiter.recordUsage({ inputTokens: 800, outputTokens: 150 });
    const error = await limiter.acquire("a", { estimatedTokens: 100 }).catch((e: unknown) => e);
    expect(BudgetExceededError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({
      code: "BUDGET_EXCEEDED",
      period: "day",
      used: 950,
      limit: 1000,
      isRetryable: false,
    });
    expect((error as BudgetExceededError).resetsAt).toBe(Date.UTC(2026, 10, 22));
    c.advance(12 * 3600_000);
    (await limiter.acquire("a", { estimatedTokens: 100 })).release();
    expect(limiter.usage.dayTokens).toBe(0);
  });

  it("enforces the month budget across days and resets on the first of the month", async () => {
    const c = clock(Date.UTC(2026, 10, 29));
    const limiter = new ResourceLimiter("acme", { tokensPerMonth: 500 }, { now: c.now });
    limiter.recordUsage({ inputTokens: 400, outputTokens: 0 });
    c.advance(86_400_000);
    limiter.recordUsage({ inputTokens: 100, outputTokens: 0 });
    await expect(limiter.acquire("a", { estimatedTokens: 1 })).rejects.toMatchObject({
      period: "month",
    });
    c.advance(86_400_000);
    (await limiter.acquire("a", { estimatedTokens: 1 })).release();
  });

  it("refuses more than requestsPerMinute with a retryable RateLimitedError carrying retryAfterMs", async () => {
    const c = clock();
    const limiter = new ResourceLimiter("acme", { requestsPerMinute: 2 }, { now: c.now });
    (await limiter.acquire("a")).release();
    c.advance(10_000);
    (await limiter.acquire("a")).release();
    const error = await limiter.acquire("a").catch((e: unknown) => e);
    expect(RateLimitedError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: "RATE_LIMITED", isRetryable: true, retryAfterMs: 50_000 });
    c.advance(50_000);
    (await limiter.acquire("a")).release();
  });

  it("gives each agent its own lane: a busy agent cannot take the slots another agent needs", async () => {
    const limiter = new ResourceLimiter("acme", {
      maxConcurrentRuns: 3,
      maxConcurrentRunsPerAgent: 2,
    });
    const busy1 = await limiter.acquire("busy");
    const busy2 = await limiter.acquire("busy");
    let third = false;
    const busy3 = limiter.acquire("busy").then((slot) => {
      third = true;
      return slot;
    });
    const quiet = await limiter.acquire("quiet");
    await new Promise((r) => setImmediate(r));
    expect(third).toBe(false);
    expect(limiter.usage.running).toBe(3);
    busy1.release();
    (await busy3).release();
    expect(third).toBe(true);
    busy2.release();
    quiet.release();
    expect(limiter.usage.running).toBe(0);
  });

  it("stops waiting for a slot when the caller's signal aborts", async () => {
    const limiter = new ResourceLimiter("acme", { maxConcurrentRuns: 1 });
    const held = await limiter.acquire("a");
    const controller = new AbortController();
    const waiting = limiter.acquire("a", { signal: controller.signal });
    controller.abort(new AbortedError("gave up"));
    await expect(waiting).rejects.toThrow("gave up");
    held.release();
    (await limiter.acquire("a")).release();
  });

  it("admit() refuses, taking nothing, once a budget is reached or the rate is exhausted", async () => {
    const c = clock();
    const limiter = new ResourceLimiter(
      "acme",
      { tokensPerDay: 100, requestsPerMinute: 2 },
      { now: c.now },
    );
    limiter.admit();
    limiter.admit();
    expect(limiter.usage.requestsLastMinute).toBe(0);
    (await limiter.acquire("a")).release();
    limiter.recordUsage({ inputTokens: 99, outputTokens: 0 });
    limiter.admit();
    limiter.recordUsage({ inputTokens: 1, outputTokens: 0 });
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
    c.advance(86_400_000);
    limiter.admit();
    (await limiter.acquire("a")).release();
    (await limiter.acquire("a")).release();
    let refused: unknown;
    try {
      limiter.admit();
    } catch (error) {
      refused = error;
    }
    expect(refused).toMatchObject({ code: "RATE_LIMITED", retryAfterMs: 60_000 });
    c.advance(60_000);
    limiter.admit();
  });

  it("refuses limits that are not non-negative integers", () => {
    expect(() => new ResourceLimiter("t", { tokensPerDay: -1 })).toThrow(InvalidArgumentError);
    expect(() => new ResourceLimiter("t", { requestsPerMinute: 1.5 })).toThrow(
      InvalidArgumentError,
    );
  });
});

describe("limitModelSource", () => {
  const echo: ModelSource = {
    async *stream() {
      yield { type: "text-delta", text: "hi" };
      yield { type: "usage", usage: { inputTokens: 30, outputTokens: 5 } };
      yield { type: "finish", reason: "stop" };
    },
  };

  it("checks the limiter before the provider is called and counts reported usage", async () => {
    const limiter = new ResourceLimiter("acme", { tokensPerDay: 50 });
    const limited = limitModelSource(echo, limiter);
    const events = [];
    for await (const e of limited.stream(
      { messages: [] },
      { models: ["p/m"], telemetry: { agent: "a" } },
    ))
      events.push(e.type);
    expect(events).toEqual(["text-delta", "usage", "finish"]);
    expect(limiter.usage.dayTokens).toBe(35);
    expect(limiter.usage.running).toBe(0);
    let called = false;
    const spy: ModelSource = {
      // biome-ignore lint/correctness/useYield: the provider must never be reached
      async *stream() {
        called = true;
      },
    };
    const blocked = limitModelSource(spy, limiter);
    const drain = async () => {
      for await (const _ of blocked.stream(
        { messages: [{ role: "user", content: [{ type: "text", text: "x".repeat(400) }] }] },
        { models: ["p/m"] },
      )) {
        // drain
      }
    };
    await expect(drain()).rejects.toBeInstanceOf(BudgetExceededError);
    expect(called).toBe(false);
  });
});

describe("limitModelSource: push mode (how the agent loop reads it)", () => {
  const request = {
    messages: [{ role: "user" as const, content: [{ type: "text" as const, text: "hi" }] }],
  };

  async function both(make: () => ModelSource) {
    const pulled: string[] = [];
    for await (const e of make().stream(request, { models: ["a/m", "b/m"] })) pulled.push(e.type);
    const pushed: string[] = [];
    await readEvents(make().stream(request, { models: ["a/m", "b/m"] }), (e) =>
      pushed.push(e.type),
    );
    return { pulled, pushed };
  }

  it("passes a chain's events straight through and counts each attempt's usage, as for await does", async () => {
    const limiters: ResourceLimiter[] = [];
    const make = () => {
      const limiter = new ResourceLimiter("acme", { tokensPerDay: 1_000 });
      limiters.push(limiter);
      const chain = createProviderChain({
        providers: [
          {
            // Reports usage, then its connection drops: the chain fails over to "b".
            specificationVersion: "v1",
            id: "a",
            async *stream() {
              yield { type: "text-delta", text: "part" };
              yield { type: "usage", usage: { inputTokens: 7, outputTokens: 1 } };
              throw new ProviderError("reset", { kind: "network", provider: "a" });
            },
          } satisfies ModelProvider,
          createScriptedProvider({
            id: "b",
            responses: [{ text: "whole", usage: { inputTokens: 20, outputTokens: 3 } }],
          }),
        ],
        retry: { maxAttempts: 1 },
      });
      return limitModelSource(chain, limiter);
    };
    const { pulled, pushed } = await both(make);
    expect(pushed).toEqual(pulled);
    expect(pushed.filter((type) => type === "attempt-failed")).toHaveLength(1);
    // The failed attempt's usage and the answer's: 8 + 23 tokens, on either path.
    expect(limiters.map((l) => l.usage.dayTokens)).toEqual([31, 31]);
    expect(limiters.map((l) => l.usage.running)).toEqual([0, 0]);
  });

  it("frees the slot and counts the usage seen when the reader throws, and is read only once", async () => {
    const limiter = new ResourceLimiter("acme", { maxConcurrentRuns: 1 });
    const chain = createProviderChain({
      providers: [
        createScriptedProvider({
          id: "a",
          responses: [{ text: ["x", "y"], usage: { inputTokens: 4, outputTokens: 2 } }],
        }),
      ],
    });
    const limited = limitModelSource(chain, limiter);
    const stream = limited.stream(request, { models: ["a/m"] });
    const failure = new Error("the reader broke");
    const seen: string[] = [];
    const error = await readEvents(stream, (e) => {
      seen.push(e.type);
      if (e.type === "finish") throw failure;
    }).catch((e: unknown) => e);
    expect(error).toBe(failure);
    expect(seen.at(-2)).toBe("usage");
    expect(limiter.usage).toMatchObject({ running: 0, dayTokens: 6 });
    const again = await readEvents(stream, () => {}).catch((e: unknown) => e);
    expect(InvalidArgumentError.isInstance(again)).toBe(true);
    // The one slot is free: the next call gets it at once.
    const next: string[] = [];
    await readEvents(
      limitModelSource(
        createProviderChain({
          providers: [createScriptedProvider({ id: "a", responses: ["ok"] })],
        }),
        limiter,
      ).stream(request, { models: ["a/m"] }),
      (e) => next.push(e.type),
    );
    expect(next).toContain("text-delta");
  });
});

describe("TenantManager", () => {
  const managers: TenantManager[] = [];
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.stop();
  });

  async function store() {
    const s = new MemoryStore();
    await s.open();
    return s;
  }

  const source = (text: string): ModelSource => ({
    async *stream() {
      yield { type: "text-delta", text };
      yield { type: "usage", usage: { inputTokens: 10, outputTokens: 2 } };
      yield { type: "finish", reason: "stop" };
    },
  });

  it("runs each tenant in its own runtime over its own store: the same session key never meets", async () => {
    const tenants = new TenantManager();
    managers.push(tenants);
    const acme = await tenants.add({
      id: "acme",
      runtime: {
        store: await store(),
        models: source("acme"),
        agents: [{ id: "main", model: "p/m" }],
      },
    });
    const globex = await tenants.add({
      id: "globex",
      runtime: {
        store: await store(),
        models: source("globex"),
        agents: [{ id: "main", model: "p/m" }],
      },
    });
    expect((await (await acme.runtime.session("agent:main:main").send("hi")).result).text).toBe(
      "acme",
    );
    expect((await (await globex.runtime.session("agent:main:main").send("hi")).result).text).toBe(
      "globex",
    );
    expect(await acme.runtime.session("agent:main:main").history()).toHaveLength(2);
    expect(await globex.runtime.session("agent:main:main").history()).toHaveLength(2);
    expect(acme.limiter.usage.dayTokens).toBe(12);
    expect(tenants.ids()).toEqual(["acme", "globex"]);
  });

  it("refuses at send, queueing nothing, a message of a tenant whose budget is spent, and leaves other tenants alone", async () => {
    const tenants = new TenantManager();
    managers.push(tenants);
    const poorStore = await store();
    const poor = await tenants.add({
      id: "poor",
      limits: { tokensPerDay: 12 },
      runtime: {
        store: poorStore,
        models: source("x"),
        agents: [{ id: "main", model: "p/m" }],
      },
    });
    const rich = await tenants.add({
      id: "rich",
      runtime: {
        store: await store(),
        models: source("ok"),
        agents: [{ id: "main", model: "p/m" }],
      },
    });
    // The first run spends the 12 tokens; the day budget is then reached.
    expect((await (await poor.runtime.session("agent:main:main").send("hi")).result).text).toBe(
      "x",
    );
    const refused = await poor.runtime
      .session("agent:main:other")
      .send("again")
      .catch((e: unknown) => e);
    expect(BudgetExceededError.isInstance(refused)).toBe(true);
    expect(refused).toMatchObject({ code: "BUDGET_EXCEEDED", period: "day", used: 12, limit: 12 });
    expect(await poorStore.queue.pending({ sessionKey: "agent:main:other" })).toEqual([]);
    expect(poor.runtime.activeSessions()).toEqual(["agent:main:main"]);
    expect((await (await rich.runtime.session("agent:main:main").send("hi")).result).text).toBe(
      "ok",
    );
  });

  it("refuses at send while the tenant's request rate is exhausted, with retryAfterMs, until the minute has passed", async () => {
    const tenants = new TenantManager();
    managers.push(tenants);
    const tenantStore = await store();
    const busy = await tenants.add({
      id: "busy",
      limits: { requestsPerMinute: 2 },
      runtime: {
        store: tenantStore,
        models: source("ok"),
        agents: [{ id: "main", model: "p/m" }],
      },
    });
    for (const key of ["agent:main:a", "agent:main:b"]) {
      expect((await (await busy.runtime.session(key).send("hi")).result).text).toBe("ok");
    }
    const refused = await busy.runtime
      .session("agent:main:c")
      .send("hi")
      .catch((e: unknown) => e);
    expect(RateLimitedError.isInstance(refused)).toBe(true);
    expect((refused as RateLimitedError).retryAfterMs).toBeGreaterThan(0);
    expect((refused as RateLimitedError).retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(await tenantStore.queue.pending({ sessionKey: "agent:main:c" })).toEqual([]);
    expect(busy.runtime.activeSessions().sort()).toEqual(["agent:main:a", "agent:main:b"]);
  });

  it("refuses at send with OverloadedError once maxPendingMessages messages are unfinished, and accepts again when they finish", async () => {
    const tenants = new TenantManager();
    managers.push(tenants);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow: ModelSource = {
      async *stream() {
        await gate;
        yield { type: "text-delta", text: "done" };
        yield { type: "finish", reason: "stop" };
      },
    };
    const tenantStore = await store();
    const busy = await tenants.add({
      id: "busy",
      limits: { maxPendingMessages: 2 },
      runtime: { store: tenantStore, models: slow, agents: [{ id: "main", model: "p/m" }] },
    });
    const first = await busy.runtime.session("agent:main:a").send("one");
    const second = await busy.runtime.session("agent:main:a").send("two");
    const refused = await busy.runtime
      .session("agent:main:b")
      .send("three")
      .catch((e: unknown) => e);
    expect(OverloadedError.isInstance(refused)).toBe(true);
    expect(refused).toMatchObject({ code: "OVERLOADED", limit: 2 });
    expect(await tenantStore.queue.pending({ sessionKey: "agent:main:b" })).toEqual([]);
    release();
    expect((await first.result).text).toBe("done");
    expect((await second.result).text).toBe("done");
    const again = await busy.runtime.session("agent:main:b").send("three");
    expect((await again.result).text).toBe("done");
  });

  it("answers a run whose first model call would exceed the budget with a failed run naming BUDGET_EXCEEDED", async () => {
    const tenants = new TenantManager();
    managers.push(tenants);
    const poor = await tenants.add({
      id: "poor",
      limits: { tokensPerDay: 10 },
      runtime: {
        store: await store(),
        models: source("x"),
        agents: [{ id: "main", model: "p/m" }],
      },
    });
    // Admitted (nothing is spent yet), but the request alone is estimated at ~100 tokens.
    const run = await poor.runtime.session("agent:main:main").send("x".repeat(400));
    const result = await run.result;
    expect(result.status).toBe("failed");
    expect(result.error?.code).toBe("BUDGET_EXCEEDED");
  });

  it("refuses a duplicate id, a bad id, and more agents than maxAgents", async () => {
    const tenants = new TenantManager();
    managers.push(tenants);
    const runtime = {
      store: await store(),
      models: source("x"),
      agents: [
        { id: "a", model: "p/m" },
        { id: "b", model: "p/m" },
      ],
    };
    await expect(tenants.add({ id: "Bad Id", runtime })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(tenants.add({ id: "t", limits: { maxAgents: 1 }, runtime })).rejects.toThrow(
      /its limit is 1/,
    );
    await tenants.add({ id: "t", runtime });
    await expect(tenants.add({ id: "t", runtime })).rejects.toBeInstanceOf(AlreadyRegisteredError);
  });

  it("keeps a flooding tenant's calls in its own slots: another tenant's call does not wait behind them", async () => {
    const tenants = new TenantManager();
    managers.push(tenants);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow: ModelSource = {
      async *stream() {
        await gate;
        yield { type: "text-delta", text: "late" };
        yield { type: "finish", reason: "stop" };
      },
    };
    const flood = await tenants.add({
      id: "flood",
      limits: { maxConcurrentRuns: 2 },
      runtime: { store: await store(), models: slow, agents: [{ id: "main", model: "p/m" }] },
    });
    const calm = await tenants.add({
      id: "calm",
      runtime: {
        store: await store(),
        models: source("fast"),
        agents: [{ id: "main", model: "p/m" }],
      },
    });
    const flooding = await Promise.all(
      Array.from({ length: 6 }, (_, i) => flood.runtime.session(`agent:main:s${i}`).send("go")),
    );
    expect(flood.limiter.usage.running).toBe(2);
    const answer = await (await calm.runtime.session("agent:main:main").send("hi")).result;
    expect(answer.text).toBe("fast");
    release();
    for (const run of flooding) expect((await run.result).text).toBe("late");
  });
});
