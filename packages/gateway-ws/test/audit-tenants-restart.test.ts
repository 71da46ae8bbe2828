/**
 * Audit: a tenant's day budget across a restart of the process, over `@beamclaw/store-fs` and
 * real sockets. The budget spent before the restart stays spent: the tenant's
 * `/v1/chat/completions` is refused with 429 `BUDGET_EXCEEDED` after it, not served afresh.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createProviderChain, TenantManager } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { FsStore } from "@beamclaw/store-fs";
import { afterEach, describe, expect, it } from "vitest";
import { createTenantGateway } from "../src/tenant-gateway.js";
import { httpCall } from "./support.js";

const TOKEN = "acme-gateway-token";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** One "process": the fs store at `dir`, a tenant manager with tenant acme, its front server. */
async function boot(dir: string) {
  const store = new FsStore({ dir, fsync: false });
  await store.open();
  const tenants = new TenantManager();
  const tenant = await tenants.add({
    id: "acme",
    limits: { tokensPerDay: 500 },
    runtime: {
      store,
      models: createProviderChain({
        providers: [
          createScriptedProvider({
            id: "scripted",
            responses: [{ text: "hello", usage: { inputTokens: 400, outputTokens: 200 } }],
          }),
        ],
        retry: { maxAttempts: 1 },
      }),
      agents: [{ id: "main", model: "scripted/m1" }],
    },
  });
  const front = createTenantGateway({
    port: 0,
    tenants: [
      {
        id: "acme",
        gateway: {
          runtime: tenant.runtime,
          auth: { mode: "token", token: TOKEN },
          tickIntervalMs: 60_000,
          dashboardDir: false,
        },
      },
    ],
  });
  const { port } = await front.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await front.stop();
    await tenants.stop();
    await store.close();
  };
  cleanups.push(stop);
  return { port, tenant, stop };
}

function chat(port: number) {
  return httpCall(port, "/tenants/acme/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: { model: "beamclaw", messages: [{ role: "user", content: "hi" }] },
  });
}

describe("a tenant's budget across a restart, over the fs store", () => {
  it("stays spent: the restarted gateway answers 429 BUDGET_EXCEEDED, not a fresh answer", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-audit-tenants-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));

    const first = await boot(dir);
    const served = await chat(first.port);
    expect(served.status).toBe(200);
    expect(first.tenant.limiter.usage.dayTokens).toBe(600);
    await first.stop();

    const second = await boot(dir);
    expect(second.tenant.limiter.usage.dayTokens).toBe(600);
    const refused = await chat(second.port);
    expect(refused.status).toBe(429);
    expect(refused.json.error).toMatchObject({ code: "BUDGET_EXCEEDED" });
    expect(refused.headers["x-should-retry"]).toBe("false");
  });
});
