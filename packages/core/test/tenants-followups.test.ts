/**
 * Tenants' follow-ups: `requestsPerMinute` counts a model request from when it starts (gets its
 * concurrency slot), by the limiter's clock — a call waiting for a slot holds its place but is
 * not stamped with the time it queued; and a store serves one live tenant, its telemetry mark
 * following the tenant served over it now.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../src/cron/clock.js";
import {
  AlreadyRegisteredError,
  createProviderChain,
  RateLimitedError,
  ResourceLimiter,
  subscribeTelemetry,
  TenantManager,
  telemetryTenantOf,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rateError(call: () => Promise<unknown>): Promise<RateLimitedError> {
  const error = await call().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(RateLimitedError.isInstance(error)).toBe(true);
  return error as RateLimitedError;
}

describe("requestsPerMinute counts a request from when it starts", () => {
  it("stamps a call that waited for a slot with its start, so no rolling minute starts more than the limit", async () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 28, 12));
    const limiter = new ResourceLimiter(
      "acme",
      { requestsPerMinute: 2, maxConcurrentRuns: 1 },
      { now: () => clock.now() },
    );
    const first = await limiter.acquire("a");
    const second = limiter.acquire("a"); // waits for the slot
    expect(limiter.usage).toMatchObject({ requestsLastMinute: 1, running: 1, waiting: 1 });
    // The waiting call holds its place: a third is refused at once, and no place frees for a
    // full minute (the waiting call counts for a minute from its start, not yet come).
    expect((await rateError(() => limiter.acquire("a"))).retryAfterMs).toBe(60_000);

    await clock.advance(50_000);
    first.release();
    const started = await second; // starts now, 50 s in
    expect(limiter.usage).toMatchObject({ requestsLastMinute: 2, running: 1, waiting: 0 });

    // 61 s in: the first request has left the minute; the second, started at 50 s, has not.
    await clock.advance(11_000);
    expect(limiter.usage.requestsLastMinute).toBe(1);
    const third = limiter.acquire("a"); // waits for the slot the second holds
    const refused = await rateError(() => limiter.acquire("a"));
    expect(refused.retryAfterMs).toBe(49_000); // when the second's minute ends: 110 s in
    expect(() => limiter.admit()).toThrow(RateLimitedError);

    started.release();
    (await third).release();
    expect(limiter.usage).toMatchObject({ requestsLastMinute: 2, running: 0, waiting: 0 });
    await clock.advance(49_000);
    (await limiter.acquire("a")).release();
  });

  it("lets a burst queued behind a concurrency limit start within the limit and keeps the minute of each start", async () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 28, 12));
    const limiter = new ResourceLimiter(
      "acme",
      { requestsPerMinute: 3, maxConcurrentRuns: 1 },
      { now: () => clock.now() },
    );
    const held = await limiter.acquire("a");
    const burst = [limiter.acquire("a"), limiter.acquire("b")];
    await rateError(() => limiter.acquire("c"));
    // The slot frees 40 s later: the burst starts then, and counts from then.
    await clock.advance(40_000);
    held.release();
    const next = await burst[0]!;
    next.release();
    (await burst[1]!).release();
    await clock.advance(30_000); // 70 s in: the held call's request has left the minute
    expect(limiter.usage.requestsLastMinute).toBe(2);
    (await limiter.acquire("c")).release();
    const error = await rateError(() => limiter.acquire("d"));
    expect(error.retryAfterMs).toBe(30_000); // the burst's minute ends 100 s in
  });
});

describe("a tenant's store", () => {
  async function openStore(): Promise<MemoryStore> {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    return store;
  }

  function runtime(store: MemoryStore) {
    const model = createScriptedProvider({ id: "demo", responses: [{ text: "hello" }] });
    return {
      store,
      models: createProviderChain({ providers: [model] }),
      agents: [{ id: "support", model: "demo/any" }],
    };
  }

  it("serves one live tenant: another id over it is refused with AlreadyRegisteredError, nothing started", async () => {
    const tenants = new TenantManager();
    cleanups.push(() => tenants.stop());
    const store = await openStore();
    const acme = await tenants.add({ id: "acme", runtime: runtime(store) });
    const refused = await tenants.add({ id: "globex", runtime: runtime(store) }).catch((e) => e);
    expect(AlreadyRegisteredError.isInstance(refused)).toBe(true);
    expect(refused).toMatchObject({ code: "ALREADY_REGISTERED", key: "acme" });
    expect(tenants.ids()).toEqual(["acme"]);
    expect(telemetryTenantOf(store)).toBe("acme");
    // The live tenant is untouched.
    const run = await acme.runtime.session("agent:support:main").send("hi");
    expect((await run.result).text).toBe("hello");
  });

  it("given to a new id once its tenant is removed, reports the new tenant in telemetry, not none", async () => {
    const tenants = new TenantManager();
    cleanups.push(() => tenants.stop());
    const store = await openStore();
    await tenants.add({ id: "acme", runtime: runtime(store) });
    await tenants.remove("acme");
    const globex = await tenants.add({ id: "globex", runtime: runtime(store) });
    expect(telemetryTenantOf(store)).toBe("globex");

    const seen: Array<string | undefined> = [];
    const off = subscribeTelemetry("beamclaw:session.run", (event) => seen.push(event.tenant));
    cleanups.push(off);
    const run = await globex.runtime.session("agent:support:main").send("hi");
    expect((await run.result).status).toBe("completed");
    await expect.poll(() => seen).toEqual(["globex"]);

    // And back to the first id: the mark follows again.
    await tenants.remove("globex");
    await tenants.add({ id: "acme", runtime: runtime(store) });
    expect(telemetryTenantOf(store)).toBe("acme");
  });
});
