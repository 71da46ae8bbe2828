/**
 * What the audit-tenants tests share: tenant managers and opened memory stores, each stopped
 * or closed after the test (managers first). Not a test file itself.
 */
import { afterEach } from "vitest";
import { TenantManager, type TenantOptions } from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";

const managers: TenantManager[] = [];
const stores: MemoryStore[] = [];

/** Stops the managers and closes the stores a test made (call once per file). */
export function useTenantCleanup(): void {
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.stop();
    for (const s of stores.splice(0)) await s.close();
  });
}

/** An opened `MemoryStore`, closed after the test. */
export async function openStore(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open();
  stores.push(store);
  return store;
}

/** A `TenantManager`, stopped after the test. */
export function manager(): TenantManager {
  const m = new TenantManager();
  managers.push(m);
  return m;
}

/**
 * A tenant's options: agent `main` over a scripted model that answers "ok" once, using 600
 * tokens, on `store`, with `limits`.
 */
export function scriptedTenant(
  id: string,
  store: MemoryStore,
  limits: TenantOptions["limits"] = {},
): TenantOptions {
  return {
    id,
    limits,
    runtime: {
      store,
      models: createScriptedProvider({
        id: "scripted",
        responses: [{ text: "ok", usage: { inputTokens: 400, outputTokens: 200 } }],
      }),
      agents: [{ id: "main", model: "scripted/m" }],
    },
  };
}
