/**
 * A real `TenantGateway` changed while its `start()` is still in progress: a tenant added
 * then is started once and served, a tenant removed then ends stopped (not started behind
 * the removal's back), and a `stop()` then leaves no port bound and no tenant running.
 */
import { type AddressInfo, createConnection, createServer } from "node:net";
import { AgentRuntime, createProviderChain, MemoryStore } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createTenantGateway, type TenantGatewayTenant } from "../src/tenant-gateway.js";
import { closeClients, TestClient, useSchemaCheck } from "./support.js";

useSchemaCheck();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeClients();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A tenant over a runtime of its own (stopped after the test). */
async function tenant(
  id: string,
  gateway: Partial<TenantGatewayTenant["gateway"]> = {},
): Promise<TenantGatewayTenant> {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({
      providers: [createScriptedProvider({ id: "scripted", responses: [] })],
      retry: { maxAttempts: 1 },
    }),
    agents: [{ id: "main", model: "scripted/m1" }],
  });
  await runtime.start();
  cleanups.push(async () => {
    await runtime.stop();
    await store.close();
  });
  return {
    id,
    gateway: {
      runtime,
      auth: { mode: "token", token: `${id}-token-0123456789` },
      tickIntervalMs: 60_000,
      dashboardDir: false,
      ...gateway,
    },
  };
}

/** The timers holding the event loop now. */
function timers(): number {
  return process.getActiveResourcesInfo().filter((type) => type === "Timeout").length;
}

/** Whether something accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("TenantGateway changed during start()", () => {
  it("a tenant added while starting is started once and served", async () => {
    const front = createTenantGateway({ port: 0, tenants: [await tenant("acme")] });
    cleanups.push(() => front.stop());
    const globexTenant = await tenant("globex");
    const starting = front.start();
    const adding = front.addTenant(globexTenant);
    const [{ port }, globex] = await Promise.all([starting, adding]);
    expect(globex.phase).toBe("running");
    expect(front.tenant("acme")?.phase).toBe("running");
    expect(front.tenantIds()).toEqual(["acme", "globex"]);
    for (const id of ["acme", "globex"]) {
      const client = await TestClient.connect(`ws://127.0.0.1:${port}/tenants/${id}`, {
        token: `${id}-token-0123456789`,
      });
      expect(client.hello.type).toBe("hello-ok");
    }
  });

  it("a tenant added while starting that cannot start fails alone; the others serve", async () => {
    const front = createTenantGateway({ port: 0, tenants: [await tenant("acme")] });
    cleanups.push(() => front.stop());
    // A heartbeat the hub refuses to start: this tenant's start fails.
    const broken = await tenant("broken", { heartbeat: { enabled: true, everyMs: 0 } });
    const starting = front.start();
    const adding = front.addTenant(broken);
    const [started, added] = await Promise.allSettled([starting, adding]);
    expect(added.status).toBe("rejected");
    expect(started.status).toBe("fulfilled");
    expect(front.tenantIds()).toEqual(["acme"]);
    const { port } = front.address!;
    const client = await TestClient.connect(`ws://127.0.0.1:${port}/tenants/acme`, {
      token: "acme-token-0123456789",
    });
    expect(client.hello.type).toBe("hello-ok");
  });

  it("a tenant added while a start fails (its port taken) is refused, not handed back stopped", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => taken.close(() => resolve())));
    const port = (taken.address() as AddressInfo).port;
    const front = createTenantGateway({ port, tenants: [await tenant("acme")] });
    cleanups.push(() => front.stop());
    const globexTenant = await tenant("globex");
    const starting = front.start();
    const adding = front.addTenant(globexTenant);
    const [started, added] = await Promise.allSettled([starting, adding]);
    expect(started).toMatchObject({ status: "rejected", reason: { code: "EADDRINUSE" } });
    expect(added).toMatchObject({ status: "rejected", reason: { code: "NO_PROCESS" } });
    expect(front.tenantIds()).toEqual(["acme"]);
    expect(front.tenant("acme")?.phase).toBe("stopped");
  });

  it("a tenant removed while starting ends stopped, whether its start was under way or not", async () => {
    const front = createTenantGateway({
      port: 0,
      tenants: [await tenant("acme"), await tenant("globex"), await tenant("initech")],
    });
    cleanups.push(() => front.stop());
    const acme = front.tenant("acme")!;
    const globex = front.tenant("globex")!;
    const timersBefore = timers();
    const starting = front.start();
    // acme's start is under way (the first), globex's has not begun.
    const removals = Promise.all([front.removeTenant("acme"), front.removeTenant("globex")]);
    const [, removed] = await Promise.all([starting, removals]);
    expect(removed).toEqual([true, true]);
    expect(acme.phase).toBe("stopped");
    expect(globex.phase).toBe("stopped");
    expect(front.tenantIds()).toEqual(["initech"]);
    expect(front.tenant("initech")?.phase).toBe("running");
    // A removed tenant runs nothing: once the front stops, no timer of any tenant is left
    // (a gateway stopped while still starting would go on to arm its tick and liveness).
    await front.stop();
    expect(timers()).toBe(timersBefore);
  });

  it("a tenant removed while starting is not served", async () => {
    const front = createTenantGateway({
      port: 0,
      tenants: [await tenant("acme"), await tenant("globex")],
    });
    cleanups.push(() => front.stop());
    const starting = front.start();
    const removals = Promise.all([front.removeTenant("acme"), front.removeTenant("globex")]);
    const [{ port }] = await Promise.all([starting, removals]);
    const refused = await fetch(`http://127.0.0.1:${port}/tenants/acme/healthz`);
    expect(refused.status).toBe(404);
    await refused.text();
  });

  it("stop() while starting leaves no port bound and no tenant running", async () => {
    const front = createTenantGateway({
      port: 0,
      tenants: [await tenant("acme"), await tenant("globex")],
    });
    const gateways = front.tenantIds().map((id) => front.tenant(id)!);
    const starting = front.start();
    const stopping = front.stop();
    const [started] = await Promise.all([starting, stopping]);
    expect(await listening(started.port)).toBe(false);
    expect(gateways.map((g) => g.phase)).toEqual(["stopped", "stopped"]);
  });
});

describe("TenantGateway stopped twice", () => {
  it("a second stop() while the first is under way resolves only once nothing listens and every tenant is stopped", async () => {
    const front = createTenantGateway({ port: 0, tenants: [await tenant("acme")] });
    const acme = front.tenant("acme")!;
    const { port } = await front.start();
    const first = front.stop();
    await front.stop();
    expect(acme.phase).toBe("stopped");
    expect(await listening(port)).toBe(false);
    await first;
  });
});
