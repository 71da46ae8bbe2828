import {
  AlreadyRegisteredError,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  TenantManager,
} from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createDeviceIdentity } from "../src/index.js";
import { createTenantGateway, type TenantGateway } from "../src/tenant-gateway.js";
import { closeClients, rpcError, TestClient, useSchemaCheck, waitFor } from "./support.js";

useSchemaCheck();

const ACME_TOKEN = "acme-gateway-token";
const GLOBEX_TOKEN = "globex-gateway-token";

interface Setup {
  front: TenantGateway;
  tenants: TenantManager;
  stores: Record<string, MemoryStore>;
  base: string;
  http: string;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeClients();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<Setup> {
  const tenants = new TenantManager();
  const stores: Record<string, MemoryStore> = {};
  const gateways = [];
  for (const [id, token] of [
    ["acme", ACME_TOKEN],
    ["globex", GLOBEX_TOKEN],
  ] as const) {
    const store = new MemoryStore();
    await store.open();
    stores[id] = store;
    const provider = createScriptedProvider({
      id: "scripted",
      responses: Array.from({ length: 20 }, () => ({ text: `hello from ${id}` })),
    });
    const tenant = await tenants.add({
      id,
      runtime: {
        store,
        models: createProviderChain({ providers: [provider], retry: { maxAttempts: 1 } }),
        agents: [{ id: "main", model: "scripted/m1" }],
      },
    });
    gateways.push({
      id,
      gateway: {
        runtime: tenant.runtime,
        auth: { mode: "token" as const, token },
        tickIntervalMs: 60_000,
        dashboardDir: false as const,
      },
    });
  }
  const front = createTenantGateway({ port: 0, tenants: gateways });
  const { port } = await front.start();
  cleanups.push(async () => {
    await front.stop();
    await tenants.stop();
    for (const store of Object.values(stores)) await store.close();
  });
  return {
    front,
    tenants,
    stores,
    base: `ws://127.0.0.1:${port}`,
    http: `http://127.0.0.1:${port}`,
  };
}

describe("TenantGateway: one port, tenants isolated by construction", () => {
  it("admits each tenant's clients with that tenant's token only", async () => {
    const { base } = await setup();
    const acme = await TestClient.connect(`${base}/tenants/acme`, { token: ACME_TOKEN });
    expect(acme.hello.type).toBe("hello-ok");
    const crossed = await TestClient.open(`${base}/tenants/acme`);
    const error = await rpcError(crossed.sendConnect({ token: GLOBEX_TOKEN }));
    expect(error.details).toMatchObject({ code: "AUTH_TOKEN_MISMATCH" });
    const globex = await TestClient.connect(`${base}/tenants/globex`, { token: GLOBEX_TOKEN });
    expect(globex.hello.server.connId).not.toBe(acme.hello.server.connId);
  });

  it("a client of one tenant can never list, read or send to another tenant's sessions", async () => {
    const { base, stores } = await setup();
    const acme = await TestClient.connect(`${base}/tenants/acme`, { token: ACME_TOKEN });
    const globex = await TestClient.connect(`${base}/tenants/globex`, { token: GLOBEX_TOKEN });
    const key = "agent:main:secret-project";
    await acme.request("chat.send", {
      sessionKey: key,
      message: "the acme plan",
      idempotencyKey: "acme-1",
    });
    await acme.waitEvent("chat", (p) => p.state === "final" && p.sessionKey === key, 10_000);
    expect((await stores.acme!.sessions.get(key))?.key).toBe(key);

    const listed = await globex.request("sessions.list", {});
    expect(JSON.stringify(listed)).not.toContain("secret-project");
    const history = await globex.request("chat.history", { sessionKey: key });
    expect(JSON.stringify(history)).not.toContain("the acme plan");
    expect(globex.events.some((e) => JSON.stringify(e.payload ?? {}).includes("acme plan"))).toBe(
      false,
    );

    // Sending to the same key from globex makes a globex session; acme's is untouched.
    const acmeBefore = await stores.acme!.transcripts.read(key);
    await globex.request("chat.send", {
      sessionKey: key,
      message: "globex was here",
      idempotencyKey: "globex-1",
    });
    await globex.waitEvent("chat", (p) => p.state === "final" && p.sessionKey === key, 10_000);
    expect(await stores.acme!.transcripts.read(key)).toEqual(acmeBefore);
    expect(JSON.stringify(await stores.globex!.transcripts.read(key))).toContain("globex was here");
    expect(JSON.stringify(await stores.globex!.transcripts.read(key))).not.toContain("acme plan");
    // And acme's clients never saw globex's run.
    expect(acme.events.some((e) => JSON.stringify(e.payload ?? {}).includes("globex"))).toBe(false);
  });

  it("device pairings and device tokens belong to the tenant that issued them", async () => {
    const { base, stores } = await setup();
    const device = createDeviceIdentity();
    const paired = await TestClient.connect(`${base}/tenants/acme`, {
      token: ACME_TOKEN,
      device,
      scopes: ["operator.read"],
    });
    const deviceToken = paired.hello.auth.deviceToken as string;
    expect(deviceToken).toEqual(expect.any(String));
    expect(await stores.acme!.devices.get(device.deviceId)).toBeDefined();
    expect(await stores.globex!.devices.get(device.deviceId)).toBeUndefined();

    // The same device with acme's device token, at globex: refused.
    const stranger = await TestClient.open(`${base}/tenants/globex`);
    const error = await rpcError(
      stranger.sendConnect({ deviceToken, device, scopes: ["operator.read"] }),
    );
    expect(error.code).toMatch(/INVALID_REQUEST|UNAUTHORIZED|AUTH/);
    expect(await stores.globex!.devices.get(device.deviceId)).toBeUndefined();
    // At acme it still works.
    const again = await TestClient.connect(`${base}/tenants/acme`, {
      deviceToken,
      device,
      scopes: ["operator.read"],
    });
    expect(again.hello.auth.role).toBe("operator");
  });

  it("approvals are seen and resolved only inside their tenant", async () => {
    const { base } = await setup();
    const acme = await TestClient.connect(`${base}/tenants/acme`, { token: ACME_TOKEN });
    const globex = await TestClient.connect(`${base}/tenants/globex`, { token: GLOBEX_TOKEN });
    await acme.request("exec.approval.request", {
      id: "acme-approval",
      command: "rm -rf /srv/acme",
      twoPhase: true,
    });
    await acme.waitEvent("exec.approval.requested", (p) => p.id === "acme-approval");
    const globexList = await globex.request("exec.approval.list", {});
    expect(JSON.stringify(globexList)).not.toContain("acme-approval");
    const refused = await rpcError(
      globex.request("exec.approval.resolve", { id: "acme-approval", decision: "allow-once" }),
    );
    expect(refused.code).toBeDefined();
    expect(globex.events.some((e) => e.event.startsWith("exec.approval"))).toBe(false);
    // Still pending in acme.
    const acmeList = await acme.request("exec.approval.list", {});
    expect(JSON.stringify(acmeList)).toContain("acme-approval");
    await acme.request("exec.approval.resolve", { id: "acme-approval", decision: "deny" });
  });

  it("routes HTTP by tenant: the API takes only that tenant's token; unknown tenants are 404", async () => {
    const { http, base } = await setup();
    const models = (token: string, tenant: string) =>
      fetch(`${http}/tenants/${tenant}/v1/models`, {
        headers: { authorization: `Bearer ${token}` },
      });
    expect((await models(ACME_TOKEN, "acme")).status).toBe(200);
    expect((await models(GLOBEX_TOKEN, "acme")).status).toBe(401);
    expect((await models(GLOBEX_TOKEN, "globex")).status).toBe(200);
    expect((await fetch(`${http}/tenants/nope/v1/models`)).status).toBe(404);
    expect((await fetch(`${http}/v1/models`)).status).toBe(404);
    const health = await fetch(`${http}/healthz`);
    expect(health.status).toBe(200);
    expect((await fetch(`${http}/tenants/acme/readyz`)).status).toBe(200);

    // A WebSocket to an unknown tenant is refused at the upgrade.
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${base}/tenants/nope`);
      ws.on("unexpected-response", (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.on("error", () => undefined);
    });
    expect(status).toBe(404);
  });

  it("adds and removes tenants while running; removing one disconnects only its clients", async () => {
    const { front, base, tenants } = await setup();
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const initech = await tenants.add({
      id: "initech",
      runtime: {
        store,
        models: createProviderChain({
          providers: [createScriptedProvider({ id: "scripted", responses: [] })],
        }),
        agents: [{ id: "main", model: "scripted/m1" }],
      },
    });
    await front.addTenant({
      id: "initech",
      gateway: { runtime: initech.runtime, auth: { mode: "token", token: "initech-token" } },
    });
    expect(front.tenantIds()).toEqual(["acme", "globex", "initech"]);
    await expect(
      front.addTenant({ id: "initech", gateway: { runtime: initech.runtime } }),
    ).rejects.toBeInstanceOf(AlreadyRegisteredError);
    await expect(
      front.addTenant({ id: "Bad Id", gateway: { runtime: initech.runtime } }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);

    const client = await TestClient.connect(`${base}/tenants/initech`, { token: "initech-token" });
    const acme = await TestClient.connect(`${base}/tenants/acme`, { token: ACME_TOKEN });
    expect(await front.removeTenant("initech")).toBe(true);
    const closed = await client.closed;
    expect(closed.code).toBe(1001);
    expect(front.tenantIds()).toEqual(["acme", "globex"]);
    // acme's client is still connected and answered.
    expect((await acme.request("health")).ok).toBe(true);
    await waitFor("the removed tenant's path to 404", async () => {
      const res = await fetch(`${base.replace("ws:", "http:")}/tenants/initech/healthz`);
      return res.status === 404;
    });
  });

  it("refuses a bad base path with a typed error", () => {
    expect(() => createTenantGateway({ basePath: "tenants" })).toThrow(InvalidArgumentError);
    expect(() => createTenantGateway({ basePath: "/a b" })).toThrow(InvalidArgumentError);
  });
});
