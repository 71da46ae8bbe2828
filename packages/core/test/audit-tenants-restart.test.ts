/**
 * Audit of a tenant's token counts across a restart: a new `TenantManager` over the same store
 * keeps the day's spent budget; counts are kept by tenant id, so a tenant never reads another's;
 * and a source's usage without a count cannot make the budget stop counting.
 */
import { describe, expect, it } from "vitest";
import {
  BudgetExceededError,
  limitModelSource,
  type ModelSource,
  NoProcessError,
  RateLimitedError,
  ResourceLimiter,
  type TenantManager,
} from "../src/index.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { manager, openStore, scriptedTenant, useTenantCleanup } from "./audit-tenants-support.js";

useTenantCleanup();

function addTenant(tenants: TenantManager, id: string, store: MemoryStore, tokensPerDay: number) {
  return tenants.add(scriptedTenant(id, store, { tokensPerDay }));
}

describe("TenantManager: token counts across a restart", () => {
  it("keeps a spent day budget spent after the tenants are stopped and added again over the same store", async () => {
    const store = await openStore();
    const before = manager();
    const acme = await addTenant(before, "acme", store, 500);
    const run = await acme.runtime.session("agent:main:main").send("hi");
    expect((await run.result).text).toBe("ok");
    expect(acme.limiter.usage.dayTokens).toBe(600);
    await before.stop();

    // The process restarts: a new manager, the same store.
    const after = manager();
    const again = await addTenant(after, "acme", store, 500);
    expect(again.limiter.usage.dayTokens).toBe(600);
    await expect(again.runtime.session("agent:main:main").send("again")).rejects.toThrow(
      BudgetExceededError,
    );
  });

  it("keeps the counts of a removed tenant that is added back", async () => {
    const store = await openStore();
    const tenants = manager();
    const acme = await addTenant(tenants, "acme", store, 10_000);
    const run = await acme.runtime.session("agent:main:main").send("hi");
    await run.result;
    await tenants.remove("acme");
    const again = await addTenant(tenants, "acme", store, 10_000);
    expect(again.limiter.usage.dayTokens).toBe(600);
  });

  it("keeps each tenant's counts under its own id: a tenant sharing the store reads none of another's", async () => {
    const store = await openStore();
    const tenants = manager();
    const acme = await addTenant(tenants, "acme", store, 500);
    await (await acme.runtime.session("agent:main:main").send("hi")).result;
    await tenants.stop();
    const next = manager();
    const globex = await addTenant(next, "globex", store, 500);
    expect(globex.limiter.usage.dayTokens).toBe(0);
  });

  it("takes the month's counts of an earlier day but not its day's, and ignores a value that is not counts", () => {
    let now = Date.UTC(2026, 10, 22, 12);
    const limiter = new ResourceLimiter("t", { tokensPerDay: 100 }, { now: () => now });
    limiter.recordUsage({ inputTokens: 80, outputTokens: 0 });
    const kept = limiter.snapshot();
    now += 86_400_000;
    const fresh = new ResourceLimiter("t", { tokensPerDay: 100 }, { now: () => now });
    expect(fresh.restore(kept)).toBe(true);
    expect(fresh.usage.dayTokens).toBe(0);
    expect(fresh.usage.monthTokens).toBe(80);
    // A month later nothing counts.
    now += 31 * 86_400_000;
    const later = new ResourceLimiter("t", { tokensPerDay: 100 }, { now: () => now });
    expect(later.restore(kept)).toBe(false);
    now -= 32 * 86_400_000;
    const same = new ResourceLimiter("t", { tokensPerDay: 100 }, { now: () => now });
    expect(same.restore({ day: "x" })).toBe(false);
    expect(same.restore(null)).toBe(false);
    expect(same.restore(kept)).toBe(true);
    expect(same.usage.dayTokens).toBe(80);
  });
});

describe("ResourceLimiter: usage a source reports without a count", () => {
  it("counts the count it has, and the budget still refuses once spent", async () => {
    // A custom source reporting usage parsed from a vendor's JSON that lacks a field.
    const source: ModelSource = {
      async *stream() {
        yield JSON.parse('{"type":"usage","usage":{"inputTokens":150}}');
        yield { type: "finish", reason: "stop" };
      },
    };
    const limiter = new ResourceLimiter("t", { tokensPerDay: 100 });
    const limited = limitModelSource(source, limiter);
    for await (const _event of limited.stream({ messages: [] }, { models: ["p/m"] })) {
      // read it all
    }
    expect(limiter.usage.dayTokens).toBe(150);
    expect(() => limiter.admit()).toThrow(BudgetExceededError);
  });
});

describe("TenantManager: stopped while a tenant is being added", () => {
  it("does not start the tenant: add() rejects with NoProcessError and nothing keeps running", async () => {
    const store = await openStore();
    const tenants = manager();
    const adding = addTenant(tenants, "late", store, 500);
    const settled = adding.then(
      () => undefined,
      (error: unknown) => error,
    );
    await tenants.stop();
    const error = await settled;
    expect(NoProcessError.isInstance(error)).toBe(true);
    expect(tenants.ids()).toEqual([]);
  });
});

describe("Requests of the last minute across a restart", () => {
  it("keeps a spent per-minute request limit spent after the tenants are stopped and added again", async () => {
    const store = await openStore();
    const add = (tenants: TenantManager) =>
      tenants.add({
        id: "acme",
        limits: { requestsPerMinute: 2 },
        runtime: {
          store,
          models: createScriptedProvider({
            id: "scripted",
            responses: [
              { text: "one", usage: { inputTokens: 1, outputTokens: 1 } },
              { text: "two", usage: { inputTokens: 1, outputTokens: 1 } },
              { text: "three", usage: { inputTokens: 1, outputTokens: 1 } },
            ],
          }),
          agents: [{ id: "main", model: "scripted/m" }],
        },
      });
    const before = manager();
    const acme = await add(before);
    await (await acme.runtime.session("agent:main:main").send("one")).result;
    await (await acme.runtime.session("agent:main:other").send("two")).result;
    expect(acme.limiter.usage.requestsLastMinute).toBe(2);
    await before.stop();

    // Restarted within the minute: the two requests still count.
    const after = manager();
    const again = await add(after);
    expect(again.limiter.usage.requestsLastMinute).toBe(2);
    await expect(again.runtime.session("agent:main:main").send("three")).rejects.toThrow(
      RateLimitedError,
    );
  });

  it("restores each request as made at the end of its second, drops expired ones, and caps a corrupt count at the limit", () => {
    let now = Date.UTC(2026, 10, 22, 12, 0, 0, 250);
    const options = { now: () => now };
    const limiter = new ResourceLimiter("t", { requestsPerMinute: 5 }, options);
    limiter.admit();
    // Three requests in two seconds.
    void limiter.acquire("main").then((slot) => slot.release());
    now += 100;
    void limiter.acquire("main").then((slot) => slot.release());
    now += 1000;
    void limiter.acquire("main").then((slot) => slot.release());
    const kept = limiter.snapshot();
    expect(kept.requests).toEqual([
      [Date.UTC(2026, 10, 22, 12, 0, 0), 2],
      [Date.UTC(2026, 10, 22, 12, 0, 1), 1],
    ]);

    // 59.5 s after the first second began: its two requests still count, so only 2 are left.
    now = Date.UTC(2026, 10, 22, 12, 0, 59, 500);
    const fresh = new ResourceLimiter("t", { requestsPerMinute: 5 }, options);
    expect(fresh.restore(kept)).toBe(true);
    expect(fresh.usage.requestsLastMinute).toBe(3);
    // At 12:01:00.999 the first second's requests (counted at 12:00:00.999) have expired.
    now = Date.UTC(2026, 10, 22, 12, 1, 0, 999);
    expect(fresh.usage.requestsLastMinute).toBe(1);

    // A count beyond the limit counts as the limit; a malformed window is not a snapshot.
    const capped = new ResourceLimiter("t", { requestsPerMinute: 5 }, options);
    expect(capped.restore({ ...kept, requests: [[now - 1000, 1e12]] })).toBe(true);
    expect(capped.usage.requestsLastMinute).toBe(5);
    expect(() => capped.admit()).toThrow(RateLimitedError);
    const bad = new ResourceLimiter("t", { requestsPerMinute: 5 }, options);
    expect(bad.restore({ ...kept, requests: [[now, -1]] })).toBe(false);
    expect(bad.restore({ ...kept, requests: "x" })).toBe(false);

    // Without a limit nothing of the window is kept or taken.
    const unlimited = new ResourceLimiter("t", {}, options);
    void unlimited.acquire("main").then((slot) => slot.release());
    expect(unlimited.snapshot().requests).toBeUndefined();
    const noLimit = new ResourceLimiter("t", {}, options);
    expect(noLimit.restore(kept)).toBe(false);
    expect(noLimit.usage.requestsLastMinute).toBe(0);
  });
});
