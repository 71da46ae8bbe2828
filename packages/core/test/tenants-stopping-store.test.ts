/**
 * A removed tenant that is still stopping (its `remove` not yet resolved) keeps its store and
 * its id in use: an `add` of the store under another id, or of the id again, waits for that
 * stop instead of starting a second runtime over the store beside the one shutting down. A
 * stop that fails still frees them.
 *
 * The stop is held open the way a real one is: the removed tenant's session is in a tool call
 * that does not answer its abort signal, and the session's shutdown waits for it.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import {
  AlreadyRegisteredError,
  createProviderChain,
  defineTool,
  NoProcessError,
  type Tenant,
  type TenantManager,
  type TenantOptions,
  telemetryTenantOf,
} from "../src/index.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { manager, openStore, useTenantCleanup } from "./audit-tenants-support.js";
import { type Deferred, deferred, failureOf, tick } from "./support.js";

useTenantCleanup();
/** The held tools' gates, opened after each test (so that no stop is left waiting on one). */
const gates: Deferred<void>[] = [];
afterEach(() => {
  for (const gate of gates.splice(0)) gate.resolve();
});

/**
 * Lets the event loop turn a few times (what does not wait for the test runs meanwhile), then
 * checks that none of `promises` (named by what each is) has settled.
 */
async function expectPending(promises: Record<string, Promise<unknown>>): Promise<void> {
  const settled = new Set<string>();
  for (const [what, promise] of Object.entries(promises)) {
    promise.then(
      () => settled.add(what),
      () => settled.add(what),
    );
  }
  for (let i = 0; i < 20; i++) await tick();
  expect([...settled], "settled while the removed tenant was still stopping").toEqual([]);
}

/** Checks that `tenant` is running: a new session of it answers. */
async function expectServing(tenant: Tenant): Promise<void> {
  const run = await tenant.runtime.session("agent:main:fresh").send("again");
  expect((await run.result).text).toBe("hello");
}

/**
 * A tenant over `store` whose agent `main` answers "hello" (three times: a message the removed
 * tenant left queued in the store is run again by the tenant started over it).
 */
function plainTenant(id: string, store: MemoryStore): TenantOptions {
  const model = createScriptedProvider({ id: "scripted", responses: ["hello", "hello", "hello"] });
  return {
    id,
    runtime: {
      store,
      models: createProviderChain({ providers: [model] }),
      agents: [{ id: "main", model: "scripted/m" }],
    },
  };
}

/**
 * A tenant over `store` whose first message makes agent `main` call tool `hold`, which waits
 * for `gate` and ignores its abort signal: while it waits, a stop of the tenant's runtime
 * cannot finish. `called` resolves when the tool is running. The gate is opened after the
 * test in any case.
 */
function heldTenant(
  id: string,
  store: MemoryStore,
): { options: TenantOptions; gate: Deferred<void>; called: Deferred<void> } {
  const gate = deferred();
  const called = deferred();
  gates.push(gate);
  const hold = defineTool({
    name: "hold",
    description: "Waits for the test",
    parameters: z.object({}),
    execute: async () => {
      called.resolve();
      await gate.promise;
      return "released";
    },
  });
  const model = createScriptedProvider({
    id: "scripted",
    responses: [{ toolCalls: [{ toolName: "hold", input: {} }] }, { text: "done" }],
  });
  return {
    gate,
    called,
    options: {
      id,
      runtime: {
        store,
        models: createProviderChain({ providers: [model] }),
        agents: [{ id: "main", model: "scripted/m", tools: ["hold"] }],
        tools: [hold],
      },
    },
  };
}

/** Adds the held tenant and sends it a message: resolves once its tool call is holding. */
async function addHeld(tenants: TenantManager, id: string, store: MemoryStore) {
  const held = heldTenant(id, store);
  const tenant = await tenants.add(held.options);
  const run = await tenant.runtime.session("agent:main:main").send("hi");
  // Stopped mid-run: the run ends without an answer, its message stays queued.
  const ended = run.result.then(
    () => undefined,
    (error: unknown) => error,
  );
  await held.called.promise;
  return { ...held, tenant, ended };
}

/** A manager and a store, with tenant "acme" over it holding in a tool call (see `addHeld`). */
async function heldAcme() {
  const tenants = manager();
  const store = await openStore();
  const acme = await addHeld(tenants, "acme", store);
  return { tenants, store, acme };
}

describe("a store whose tenant is being removed", () => {
  it("is not taken by another id until that tenant has stopped: the add waits, then starts over it", async () => {
    const { tenants, store, acme } = await heldAcme();

    const order: string[] = [];
    const removing = tenants.remove("acme").then(() => order.push("acme stopped"));
    const adding = tenants.add(plainTenant("globex", store)).then((tenant) => {
      order.push("globex started");
      return tenant;
    });
    // acme's session is still shutting down: globex has not started over its store.
    await expectPending({ "globex's add": adding });
    expect(order).toEqual([]);
    // The store's telemetry still names the tenant whose sessions are still running on it.
    expect(telemetryTenantOf(store)).toBe("acme");
    // The waiting tenant holds the store: a third id is refused at once, naming it.
    const third = await failureOf(() => tenants.add(plainTenant("initech", store)));
    expect(AlreadyRegisteredError.isInstance(third)).toBe(true);
    expect(third).toMatchObject({ code: "ALREADY_REGISTERED", key: "globex" });

    acme.gate.resolve();
    await removing;
    const globex = await adding;
    expect(order).toEqual(["acme stopped", "globex started"]);
    expect(NoProcessError.isInstance(await acme.ended)).toBe(true);
    expect(tenants.ids()).toEqual(["globex"]);
    expect(telemetryTenantOf(store)).toBe("globex");
    await expectServing(globex);
  });

  it("is freed when the stop fails: remove rejects with the error, and the waiting add starts", async () => {
    const { tenants, store, acme } = await heldAcme();
    // The runtime's stop runs to its end, then fails (as a store that breaks while a tenant
    // stops would make it): nothing is left running, but remove cannot report success.
    const stop = acme.tenant.runtime.stop.bind(acme.tenant.runtime);
    const failure = new Error("the store went away while acme stopped");
    vi.spyOn(acme.tenant.runtime, "stop").mockImplementationOnce(async () => {
      await stop();
      throw failure;
    });

    const removing = failureOf(() => tenants.remove("acme"));
    const adding = tenants.add(plainTenant("globex", store));
    await expectPending({ "globex's add": adding });

    acme.gate.resolve();
    expect(await removing).toBe(failure);
    const globex = await adding;
    expect(tenants.ids()).toEqual(["globex"]);
    await expectServing(globex);
  });

  it("makes a waiting add reject with NoProcessError when the manager stops, once that stop is done", async () => {
    const { tenants, store, acme } = await heldAcme();
    const removing = tenants.remove("acme");
    const adding = failureOf(() => tenants.add(plainTenant("globex", store)));
    const stopping = tenants.stop();
    // Both wait for acme's stop: the add ends only once the store is free again.
    await expectPending({ "globex's add": adding, "the manager's stop": stopping });

    acme.gate.resolve();
    await Promise.all([removing, stopping]);
    expect(NoProcessError.isInstance(await adding)).toBe(true);
    expect(tenants.ids()).toEqual([]);
  });
});

describe("a tenant id whose tenant is being removed", () => {
  it("added again, removed while it waits, and added a third time: the third still waits for the first stop", async () => {
    const { tenants, store, acme: first } = await heldAcme();
    const removingFirst = tenants.remove("acme");

    // The second waits for the first's stop; removed meanwhile, it will never start.
    const second = failureOf(() => tenants.add(plainTenant("acme", store)));
    await expectPending({ "the second add": second });
    await tenants.remove("acme");

    // The first is still stopping: the third must not start beside it.
    const adding = tenants.add(plainTenant("acme", store));
    await expectPending({ "the third add": adding });

    first.gate.resolve();
    await removingFirst;
    expect(NoProcessError.isInstance(await second)).toBe(true);
    const third = await adding;
    expect(tenants.ids()).toEqual(["acme"]);
    await expectServing(third);
  });
});
