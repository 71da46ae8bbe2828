/**
 * `trustedProxies`: behind a reverse proxy, failed logins count per client (the address the
 * proxy forwards for), not per proxy. Over real sockets from loopback addresses (all of 127/8
 * is local on Linux) standing in for the proxy; every frame is checked against the schema.
 */
import { ConfigError, parseConfig } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import { createGateway } from "../src/index.js";
import {
  closeClients,
  httpCall,
  type Reply,
  RpcError,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

/** Sends `connect` with `token` from `localAddress`, with these headers on the upgrade. */
async function connectVia(
  url: string,
  localAddress: string,
  headers: Record<string, string>,
  token: string,
): Promise<{ ok: true } | { ok: false; code: string; detail: unknown }> {
  const client = await TestClient.open(url, { localAddress, headers });
  try {
    await client.sendConnect({ token, scopes: ["operator.read"] });
    return { ok: true };
  } catch (error) {
    if (!(error instanceof RpcError)) throw error;
    return { ok: false, code: error.code, detail: (error.details as { code?: string }).code };
  } finally {
    await client.close();
  }
}

const limited = (trustedProxies: string[]) => ({
  gateway: {
    auth: { mode: "token" as const, token: TOKEN, rateLimit: { maxAttempts: 2 } },
    trustedProxies,
  },
});

describe("failed logins through a trusted proxy (WebSocket connect)", () => {
  it("counts them per forwarded client: one client locked out does not lock out the others", async () => {
    const { url } = await startStack(limited(["127.0.0.2"]));
    const mallory = { "x-forwarded-for": "203.0.113.66" };
    const alice = { "x-forwarded-for": "203.0.113.7" };
    for (let i = 0; i < 2; i++) {
      expect(await connectVia(url, "127.0.0.2", mallory, `guess-${i}`)).toMatchObject({
        ok: false,
        detail: "AUTH_TOKEN_MISMATCH",
      });
    }
    expect(await connectVia(url, "127.0.0.2", mallory, TOKEN)).toMatchObject({
      ok: false,
      code: "UNAVAILABLE",
      detail: "AUTH_RATE_LIMITED",
    });
    expect(await connectVia(url, "127.0.0.2", alice, TOKEN)).toEqual({ ok: true });
  });

  it("takes the rightmost hop that is not a trusted proxy: a client cannot spoof its way out", async () => {
    const { url } = await startStack(limited(["127.0.0.2", "10.0.0.0/8"]));
    // The client makes up the leftmost hops; the proxies append what they saw.
    for (let i = 0; i < 2; i++) {
      const spoofed = { "x-forwarded-for": `198.51.100.${i}, 203.0.113.66, 10.1.2.3` };
      expect(await connectVia(url, "127.0.0.2", spoofed, `guess-${i}`)).toMatchObject({
        detail: "AUTH_TOKEN_MISMATCH",
      });
    }
    const again = { "x-forwarded-for": "198.51.100.99, 203.0.113.66, 10.1.2.3" };
    expect(await connectVia(url, "127.0.0.2", again, TOKEN)).toMatchObject({
      detail: "AUTH_RATE_LIMITED",
    });
    const other = { "x-forwarded-for": "203.0.113.66, 203.0.113.7, 10.1.2.3" };
    expect(await connectVia(url, "127.0.0.2", other, TOKEN)).toEqual({ ok: true });
  });

  it("uses X-Real-IP when there is no X-Forwarded-For", async () => {
    const { url } = await startStack(limited(["127.0.0.0/24"]));
    for (let i = 0; i < 2; i++) {
      await connectVia(url, "127.0.0.3", { "x-real-ip": "203.0.113.66" }, `guess-${i}`);
    }
    expect(
      await connectVia(url, "127.0.0.3", { "x-real-ip": "203.0.113.66" }, TOKEN),
    ).toMatchObject({ detail: "AUTH_RATE_LIMITED" });
    expect(await connectVia(url, "127.0.0.3", { "x-real-ip": "203.0.113.7" }, TOKEN)).toEqual({
      ok: true,
    });
  });

  it("ignores forwarded headers from a peer that is not a trusted proxy", async () => {
    const { url } = await startStack(limited(["10.0.0.0/8"]));
    for (let i = 0; i < 2; i++) {
      const forged = { "x-forwarded-for": `203.0.113.${i}` };
      await connectVia(url, "127.0.0.4", forged, `guess-${i}`);
    }
    expect(
      await connectVia(url, "127.0.0.4", { "x-forwarded-for": "203.0.113.50" }, TOKEN),
    ).toMatchObject({ detail: "AUTH_RATE_LIMITED" });
  });

  it("records the forwarded client as a pairing request's remoteIp", async () => {
    const { url } = await startStack({ gateway: { trustedProxies: ["127.0.0.2"] } });
    const device = createDeviceIdentity();
    const client = await TestClient.open(url, {
      localAddress: "127.0.0.2",
      headers: { "x-forwarded-for": "203.0.113.7" },
    });
    const error = await rpcError(client.sendConnect({ token: TOKEN, device }));
    expect(error.details).toMatchObject({ code: "PAIRING_REQUIRED" });
    const admin = await TestClient.connect(url, { token: TOKEN });
    const { pending } = await admin.request("device.pair.list");
    expect(pending).toEqual([expect.objectContaining({ remoteIp: "203.0.113.7" })]);
  });
});

/** `GET /v1/models` from `localAddress` with these headers and `token` as the bearer token. */
function modelsVia(
  port: number,
  localAddress: string,
  headers: Record<string, string>,
  token: string,
): Promise<Reply> {
  return httpCall(port, "/v1/models", {
    localAddress,
    headers: { ...headers, authorization: `Bearer ${token}` },
  });
}

describe("failed logins through a trusted proxy (HTTP API)", () => {
  it("counts wrong bearer tokens per forwarded client", async () => {
    const stack = await startStack(limited(["127.0.0.2"]));
    const mallory = { "x-forwarded-for": "2001:db8::66" };
    for (let i = 0; i < 2; i++) {
      expect((await modelsVia(stack.port, "127.0.0.2", mallory, `guess-${i}`)).status).toBe(401);
    }
    expect((await modelsVia(stack.port, "127.0.0.2", mallory, TOKEN)).status).toBe(429);
    const alice = { "x-forwarded-for": "2001:db8::7" };
    expect((await modelsVia(stack.port, "127.0.0.2", alice, TOKEN)).status).toBe(200);
  });

  it("shares one bucket per proxy without trustedProxies (the default)", async () => {
    const stack = await startStack(limited([]));
    for (let i = 0; i < 2; i++) {
      const forged = { "x-forwarded-for": `203.0.113.${i}` };
      expect((await modelsVia(stack.port, "127.0.0.5", forged, `guess-${i}`)).status).toBe(401);
    }
    const other = { "x-forwarded-for": "203.0.113.50" };
    expect((await modelsVia(stack.port, "127.0.0.5", other, TOKEN)).status).toBe(429);
  });
});

describe("trustedProxies option", () => {
  it("makes createGateway refuse a bad trustedProxies entry", async () => {
    const { runtime } = await startStack();
    const auth = { mode: "token" as const, token: TOKEN };
    for (const trustedProxies of [["not-an-ip"], ["10.0.0.0/33"], ["fd00::/200"]]) {
      expect(() => createGateway({ runtime, auth, trustedProxies })).toThrow(/trustedProxies/);
    }
  });

  it("is read from beamclaw.yaml (gateway.trustedProxies), as are auth.pairingRequests", async () => {
    const config = parseConfig({
      agents: { main: { model: "scripted/test" } },
      gateway: {
        auth: {
          mode: "token",
          token: TOKEN,
          autoApproveLoopback: false,
          pairingRequests: { maxPendingPerAddress: 1 },
        },
        trustedProxies: ["127.0.0.2"],
      },
    });
    const { url } = await startStack({ gateway: { config } });
    /** The `details.code` a device asking to pair through the proxy for `client` gets. */
    const pairVia = async (client: string) => {
      const socket = await TestClient.open(url, {
        localAddress: "127.0.0.2",
        headers: { "x-forwarded-for": client },
      });
      try {
        await socket.sendConnect({
          token: TOKEN,
          device: createDeviceIdentity(),
          scopes: ["operator.read"],
        });
        return "connected";
      } catch (error) {
        if (!(error instanceof RpcError)) throw error;
        return (error.details as { code?: string; limit?: string }).code;
      } finally {
        await socket.close();
      }
    };
    expect(await pairVia("203.0.113.7")).toBe("PAIRING_REQUIRED");
    // One pending request per client address (the forwarded one, not the proxy's).
    expect(await pairVia("203.0.113.7")).toBe("PAIRING_REQUESTS_FULL");
    expect(await pairVia("203.0.113.8")).toBe("PAIRING_REQUIRED");
  });

  it("refuses a bad gateway.trustedProxies or auth.pairingRequests in the configuration, naming the path", () => {
    for (const [gateway, path] of [
      [{ trustedProxies: ["10.0.0.0/33"] }, "gateway.trustedProxies[0]"],
      [{ trustedProxies: ["proxy.internal"] }, "gateway.trustedProxies[0]"],
      [{ auth: { pairingRequests: { maxPending: 0 } } }, "gateway.auth.pairingRequests.maxPending"],
      [{ auth: { pairingRequests: { maxPendng: 5 } } }, "gateway.auth.pairingRequests"],
    ] as const) {
      let caught: unknown;
      try {
        parseConfig({ agents: { main: { model: "scripted/test" } }, gateway });
      } catch (error) {
        caught = error;
      }
      expect(ConfigError.isInstance(caught)).toBe(true);
      expect((caught as Error).message).toContain(path);
    }
  });
});
