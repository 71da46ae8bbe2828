/**
 * Audit of a tenant's lifecycle: an id that is not a string is refused; a tenant removed (or
 * the manager stopped) while its runtime starts is not handed back as running; and a tenant
 * added again while its earlier self is still being removed waits for that stop, reading back
 * the counts it saves.
 */
import { describe, expect, it, vi } from "vitest";
import {
  BudgetExceededError,
  InvalidArgumentError,
  NoProcessError,
  RateLimitedError,
  type TenantManager,
  type TenantOptions,
} from "../src/index.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { manager, openStore, scriptedTenant, useTenantCleanup } from "./audit-tenants-support.js";
import { type Deferred, deferred, failureOf, tick } from "./support.js";

useTenantCleanup();

function tenantOptions(id: string, store: MemoryStore): TenantOptions {
  return scriptedTenant(id, store, { tokensPerDay: 10_000 });
}

/**
 * Holds the store's writes of token counts (as a slow remote store would) until the returned
 * deferred is resolved.
 */
function holdUsageWrites(store: MemoryStore): Deferred<void> {
  const held = deferred();
  const set = store.kv.set.bind(store.kv);
  vi.spyOn(store.kv, "set").mockImplementation(async (key, value, options) => {
    if (key.startsWith("tenant:usage:")) await held.promise;
    return set(key, value, options);
  });
  return held;
}

/** Lets the event loop turn a few times: what does not wait for the test runs meanwhile. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await tick();
}

describe("TenantManager.add: an id that is not a string", () => {
  it("refuses undefined, a number and an array (and options without a runtime) with InvalidArgumentError, adding nothing", async () => {
    const store = await openStore();
    const tenants = manager();
    // A regular expression reads each of these as text that matches ("undefined", "42", "acme").
    for (const id of [undefined, 42, ["acme"]]) {
      const options = { ...tenantOptions("x", store), id } as unknown as TenantOptions;
      await expect(tenants.add(options)).rejects.toThrow(InvalidArgumentError);
    }
    // Options that are not options at all: the same typed error, not a TypeError.
    for (const options of [undefined, null, { id: "acme" }, { id: "acme", runtime: null }]) {
      await expect(tenants.add(options as unknown as TenantOptions)).rejects.toThrow(
        InvalidArgumentError,
      );
    }
    expect(tenants.ids()).toEqual([]);
    // The store was not written to: no counts kept for a tenant that was never added.
    expect(await store.kv.keys("tenant:")).toEqual([]);
  });
});

describe("TenantManager.add: ids that could reach out of a key or a path", () => {
  it("refuses dots, slashes, colons, upper case, unicode, a trailing newline and more than 64 characters", async () => {
    const store = await openStore();
    const tenants = manager();
    const bad = [
      "..",
      "a/b",
      "a:b",
      "ACME",
      "Acme",
      "\uff41cme",
      "caf\u00e9",
      "acme\n",
      "-a",
      "",
      "a".repeat(65),
    ];
    for (const id of bad) {
      await expect(tenants.add(tenantOptions(id, store))).rejects.toThrow(InvalidArgumentError);
    }
    expect(tenants.ids()).toEqual([]);
    expect(await store.kv.keys("")).toEqual([]);
    await tenants.add(tenantOptions("a".repeat(64), store));
    expect(tenants.ids()).toEqual(["a".repeat(64)]);
  });
});

describe("TenantManager: removed or stopped while a tenant's runtime starts", () => {
  for (const how of ["remove", "stop"] as const) {
    it(`${how}(): add() rejects with NoProcessError instead of handing back a stopped tenant`, async () => {
      const store = await openStore();
      const tenants = manager();
      // The runtime's start reads the queue's unfinished messages: held until the test opens it.
      const held = deferred();
      const reading = deferred();
      const pending = store.queue.pending.bind(store.queue);
      vi.spyOn(store.queue, "pending").mockImplementationOnce(async (options) => {
        reading.resolve();
        await held.promise;
        return pending(options);
      });
      const adding = tenants.add(tenantOptions("acme", store));
      await reading.promise; // the runtime is starting now
      const stopping = how === "remove" ? tenants.remove("acme") : tenants.stop();
      held.resolve();
      await stopping;
      const outcome = await failureOf(() => adding);
      expect(NoProcessError.isInstance(outcome)).toBe(true);
      expect(tenants.ids()).toEqual([]);
    });
  }
});

describe("TenantManager: added again while it is being removed", () => {
  it("waits for the removal's stop, and reads back the counts it saved", async () => {
    const store = await openStore();
    const tenants: TenantManager = manager();
    const acme = await tenants.add(tenantOptions("acme", store));
    const held = holdUsageWrites(store);
    await (await acme.runtime.session("agent:main:main").send("hi")).result;
    expect(acme.limiter.usage.dayTokens).toBe(600);

    const removing = tenants.remove("acme");
    const adding = tenants.add(tenantOptions("acme", store));
    // Let the new add read the store, if it does not wait.
    await settle();
    held.resolve();
    await removing;
    const again = await adding;
    expect(again.limiter.usage.dayTokens).toBe(600);
    expect(tenants.ids()).toEqual(["acme"]);
  });
});

describe("TenantManager: the runtime's clock", () => {
  it("is the clock of the tenant's budgets and request rate: they roll over when it does", async () => {
    const store = await openStore();
    const tenants = manager();
    let now = Date.UTC(2026, 10, 22, 23, 59, 30);
    const options = tenantOptions("acme", store);
    const acme = await tenants.add({
      ...options,
      limits: { tokensPerDay: 600, requestsPerMinute: 1 },
      runtime: {
        ...options.runtime,
        now: () => now,
        models: createScriptedProvider({
          id: "scripted",
          responses: [
            { text: "one", usage: { inputTokens: 400, outputTokens: 200 } },
            { text: "two", usage: { inputTokens: 1, outputTokens: 1 } },
            { text: "three", usage: { inputTokens: 1, outputTokens: 1 } },
          ],
        }),
      },
    });
    const session = acme.runtime.session("agent:main:main");
    const refusal = (text: string) =>
      session.send(text).then(
        () => undefined,
        (error: unknown) => error,
      );
    await (await session.send("one")).result;
    const spent = await refusal("again");
    expect(BudgetExceededError.isInstance(spent)).toBe(true);
    expect((spent as BudgetExceededError).resetsAt).toBe(Date.UTC(2026, 10, 23));

    now = Date.UTC(2026, 10, 23, 0, 0, 30); // the next day: a fresh budget, and a new minute
    expect((await (await session.send("two")).result).text).toBe("two");
    expect(acme.limiter.usage.dayTokens).toBe(2);
    const limited = await refusal("again");
    expect(RateLimitedError.isInstance(limited)).toBe(true);
    expect((limited as RateLimitedError).retryAfterMs).toBe(60_000);

    now += 60_000; // that minute is over
    expect((await (await session.send("three")).result).text).toBe("three");
  });
});

describe("TenantManager.stop while a tenant is being removed", () => {
  it("resolves once that tenant is stopped and its counts are saved", async () => {
    const store = await openStore();
    const tenants = manager();
    const acme = await tenants.add(tenantOptions("acme", store));
    const held = holdUsageWrites(store);
    await (await acme.runtime.session("agent:main:main").send("hi")).result;

    const removing = tenants.remove("acme");
    let stopped = false;
    const stopping = tenants.stop().then(() => {
      stopped = true;
    });
    await settle();
    expect(stopped).toBe(false);
    held.resolve();
    await Promise.all([removing, stopping]);
    expect(await store.kv.get("tenant:usage:acme")).toMatchObject({ dayTokens: 600 });
  });
});

describe("A tenant's runtime.reconfigure", () => {
  it("refuses more agents than maxAgents with InvalidArgumentError, changing nothing", async () => {
    const store = await openStore();
    const tenants = manager();
    const options = tenantOptions("acme", store);
    const acme = await tenants.add({ ...options, limits: { maxAgents: 1 } });
    const two = [
      { id: "main", model: "scripted/m" },
      { id: "other", model: "scripted/m" },
    ];
    expect(() => acme.runtime.reconfigure({ agents: two })).toThrow(InvalidArgumentError);
    expect(acme.runtime.agents.map((a) => a.id)).toEqual(["main"]);
    // Within the limit it still applies.
    acme.runtime.reconfigure({ agents: [{ id: "main", model: "scripted/other" }] });
    expect(acme.runtime.agents[0]?.model).toBe("scripted/other");
  });
});
