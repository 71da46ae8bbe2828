/**
 * Crash audit: an HTTP request target that Node's parser accepts but WHATWG `URL` refuses
 * (`//host:99999`, `//[::1`) must get a 400, not reject the request handler's promise (an
 * unhandled rejection ends the process; vitest reports it as an error of the run).
 */
import { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createTenantGateway } from "../src/tenant-gateway.js";
import { startStack, stopStacks } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await stopStacks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Sends one raw request with `target` and resolves with the whole answer once it ends. */
function rawRequest(port: number, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    const chunks: Buffer[] = [];
    socket.on("error", reject);
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    socket.connect(port, "127.0.0.1", () => {
      socket.end(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    });
  });
}

describe("a request target that is not a valid URL", () => {
  it("is answered 400 invalid_url by the gateway, which still serves", async () => {
    const stack = await startStack();
    for (const target of ["//a:99999", "//[::1", "//%zz/v1/models"]) {
      const answer = await rawRequest(stack.port, target);
      expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 400 Bad Request");
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
      expect(body).toMatchObject({ error: { type: "invalid_request_error", code: "invalid_url" } });
    }
    const health = await fetch(`http://127.0.0.1:${stack.port}/healthz`);
    expect(health.status).toBe(200);
  });

  it("is answered 400 through a tenant front server", async () => {
    const { MemoryStore, TenantManager, createProviderChain } = await import("@beamclaw/core");
    const { createScriptedProvider } = await import("@beamclaw/core/testing");
    const store = new MemoryStore();
    await store.open();
    const tenants = new TenantManager();
    const provider = createScriptedProvider({ id: "scripted", responses: [] });
    const tenant = await tenants.add({
      id: "acme",
      runtime: {
        store,
        models: createProviderChain({ providers: [provider], retry: { maxAttempts: 1 } }),
        agents: [{ id: "main", model: "scripted/m1" }],
      },
    });
    const front = createTenantGateway({
      host: "127.0.0.1",
      port: 0,
      tenants: [
        {
          id: "acme",
          gateway: {
            runtime: tenant.runtime,
            auth: { mode: "token", token: "t" },
            tickIntervalMs: 60_000,
            dashboardDir: false,
          },
        },
      ],
    });
    const { port } = await front.start();
    cleanups.push(async () => {
      await front.stop();
      await tenants.stop();
      await store.close();
    });
    const answer = await rawRequest(port, "/tenants/acme//a:99999");
    expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 400 Bad Request");
    const health = await fetch(`http://127.0.0.1:${port}/tenants/acme/healthz`);
    expect(health.status).toBe(200);
  });
});
