/**
 * The set-up the tests of refusals for capacity and quota share (overload-capacity,
 * overload-retry-after, budget-exceeded): the protocol schema check, clean-up after each test
 * (held model answers released, then clients and stacks closed), model answers held until
 * released, and a gateway over one tenant of core's `TenantManager` with the limits a test
 * sets.
 */
import { createProviderChain, MemoryStore, type TenantLimits, TenantManager } from "@beamclaw/core";
import { createScriptedProvider, type ScriptEntry } from "@beamclaw/core/testing";
import { afterEach } from "vitest";
import { createGateway, type GatewayServerOptions } from "../src/index.js";
import { closeClients, deferred, stopStacks, TOKEN, useSchemaCheck } from "./support.js";

/** The bearer token of the webhook ingress in these tests. */
export const HOOK_TOKEN = "hook-token-0123456789abcdef";

/** Hook settings on `HOOK_TOKEN` that take a request's `sessionKey`, and `more`. */
export function hookSettings(more: Record<string, unknown> = {}): GatewayServerOptions["hooks"] {
  return {
    settings: { enabled: true, token: HOOK_TOKEN, allowRequestSessionKey: true, ...more },
  } as GatewayServerOptions["hooks"];
}

/** Releases of the held answers of the test. */
const gates: Array<() => void> = [];
const cleanups: Array<() => Promise<void> | void> = [];

/**
 * Checks every frame against the protocol's schema and, after each test, releases the held
 * answers, runs what the test left to clean up (last first), then closes the clients and the
 * stacks. Call once, at the top of a test file.
 */
export function useOverloadTests(): void {
  useSchemaCheck();
  afterEach(async () => {
    for (const release of gates.splice(0)) release();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await closeClients();
    await stopStacks();
  });
}

/**
 * A model answer (`text`, after a wait) held until `release` is called, or the test ends.
 */
export function heldAnswer(text = "late"): { entry: ScriptEntry; release: () => void } {
  const gate = deferred();
  gates.push(() => gate.resolve());
  return {
    entry: {
      events: [
        { type: "wait", until: gate.promise },
        { type: "text-delta", text },
        { type: "finish", reason: "stop" },
      ],
    },
    release: () => gate.resolve(),
  };
}

/** Runs `cleanup` after the test (after the held answers' release, before the clients and stacks close). */
export function afterTest(cleanup: () => Promise<void> | void): void {
  cleanups.push(cleanup);
}

/**
 * A gateway on 127.0.0.1 over tenant `acme` of a `TenantManager`, with `limits`, agent `main`
 * answered from `responses` by core's scripted provider; stopped after the test.
 */
export async function startTenantGateway(options: {
  limits: TenantLimits;
  responses: ScriptEntry[];
  gateway?: Partial<GatewayServerOptions>;
}) {
  const tenants = new TenantManager();
  const store = new MemoryStore();
  await store.open();
  const provider = createScriptedProvider({ id: "scripted", responses: options.responses });
  const tenant = await tenants.add({
    id: "acme",
    limits: options.limits,
    runtime: {
      store,
      models: createProviderChain({ providers: [provider], retry: { maxAttempts: 1 } }),
      agents: [{ id: "main", model: "scripted/m1" }],
    },
  });
  const gateway = createGateway({
    runtime: tenant.runtime,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
    dashboardDir: false,
    ...options.gateway,
  });
  const { port } = await gateway.start();
  afterTest(async () => {
    await gateway.stop();
    await tenants.stop();
    await store.close();
  });
  return { port, url: `ws://127.0.0.1:${port}`, provider, tenant, store };
}
