/**
 * Leak audit: the usage meter's in-process totals per day. A gateway that runs for months
 * must not keep one in-memory total per day (per agent, provider and model) for ever.
 */
import { afterEach, describe, expect, it } from "vitest";
import { UsageMeter, usageDay } from "../src/sessions/usage.js";
import { MemoryStore } from "../src/store/memory-store.js";

const DAY_MS = 24 * 60 * 60 * 1000;

describe("UsageMeter: per-day totals over a long-running process", () => {
  const stores: MemoryStore[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });

  const entry = (at: number, model: string) => ({
    sessionKey: `agent:main:s-${at}`,
    agentId: "main",
    provider: "p",
    model,
    usage: { inputTokens: 10, outputTokens: 4 },
    costUsd: 0.5,
    at,
  });

  it("keeps in-memory totals for a bounded number of days, and loses no call from the all-time totals or the store", async () => {
    const store = new MemoryStore();
    await store.open();
    stores.push(store);
    const meter = new UsageMeter(store);
    const start = Date.UTC(2025, 0, 1, 12);
    const days = 400;
    for (let d = 0; d < days; d++) {
      meter.record(entry(start + d * DAY_MS, "m1"));
      meter.record(entry(start + d * DAY_MS, "m2"));
    }
    await meter.flush();

    let daysInMemory = 0;
    for (let d = 0; d < days; d++) {
      if (meter.totals({ day: usageDay(start + d * DAY_MS) }).calls > 0) daysInMemory++;
    }
    expect(daysInMemory).toBeLessThanOrEqual(31);
    // The latest days are all there.
    expect(meter.totals({ day: usageDay(start + (days - 1) * DAY_MS) }).calls).toBe(2);
    expect(meter.totals({ day: usageDay(start + (days - 31) * DAY_MS) }).calls).toBe(2);
    // Nothing is lost from the all-time totals, per model too.
    expect(meter.totals({ agentId: "main" })).toMatchObject({ calls: 800, inputTokens: 8000 });
    expect(meter.totals({ model: "m1" }).calls).toBe(400);
    expect(meter.totals({ provider: "p", model: "m2" }).costUsd).toBe(200);
    // An old day's totals stay in the store.
    expect((await meter.persisted(usageDay(start))).map((r) => r.totals.calls)).toEqual([1, 1]);
  });

  it("still counts a late call of an old day in the all-time totals", async () => {
    const store = new MemoryStore();
    await store.open();
    stores.push(store);
    const meter = new UsageMeter(store);
    const start = Date.UTC(2025, 0, 1, 12);
    meter.record(entry(start + 100 * DAY_MS, "m"));
    meter.record(entry(start, "m"));
    await meter.flush();
    expect(meter.totals({ model: "m" }).calls).toBe(2);
  });
});
