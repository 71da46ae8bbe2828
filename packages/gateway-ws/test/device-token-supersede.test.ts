/**
 * Rotating or revoking a device token ends the connections that authenticated with the old
 * token: over real sockets, they are closed with 1008 (as on unpairing), the caller itself
 * after it was answered. Connections that came in with the shared secret stay open.
 * Every frame is checked against the protocol schema.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import {
  closeClients,
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

const SCOPES = ["operator.read", "operator.pairing"];

/**
 * Whether the gateway still serves `client`: `"answered"` when a request of it is answered,
 * else the close the connection ended with (whichever comes first; no timers).
 */
function served(client: TestClient): Promise<"answered" | { code: number; reason: string }> {
  return Promise.race([
    client.closed,
    client.request("health").then(
      () => "answered" as const,
      () => client.closed,
    ),
  ]);
}

/** A device paired through the shared secret, its first token, and connections using it. */
async function deviceWithTokenConnections(url: string) {
  const device = createDeviceIdentity();
  const bySecret = await TestClient.connect(url, { token: TOKEN, device, scopes: SCOPES });
  const oldToken = bySecret.hello.auth.deviceToken as string;
  const self = await TestClient.connect(url, { deviceToken: oldToken, device, scopes: SCOPES });
  const other = await TestClient.connect(url, {
    deviceToken: oldToken,
    device,
    scopes: ["operator.read"],
  });
  return { device, bySecret, oldToken, self, other };
}

describe("device.token.rotate", () => {
  it("answers the caller with the new token, then closes every connection of the old token with 1008", async () => {
    const { url } = await startStack();
    const { device, bySecret, self, other } = await deviceWithTokenConnections(url);
    const rotated = await self.request("device.token.rotate", {
      deviceId: device.deviceId,
      role: "operator",
    });
    expect(rotated.tokenDelivery).toBe("in-band");
    expect(rotated.token).toEqual(expect.any(String));
    expect(await served(self)).toEqual({ code: 1008, reason: "device token rotated" });
    expect(await served(other)).toEqual({ code: 1008, reason: "device token rotated" });
    // The connection that came in with the shared secret did not use the token.
    expect(await served(bySecret)).toBe("answered");
    const fresh = await TestClient.connect(url, {
      deviceToken: rotated.token,
      device,
      scopes: ["operator.read"],
    });
    expect(await served(fresh)).toBe("answered");
  });

  it("closes the old token's connections when an admin rotates another device's token", async () => {
    const { url } = await startStack();
    const { device, bySecret, self, other } = await deviceWithTokenConnections(url);
    const admin = await TestClient.connect(url, { token: TOKEN });
    const rotated = await admin.request("device.token.rotate", {
      deviceId: device.deviceId,
      role: "operator",
    });
    expect(rotated.tokenDelivery).toBe("withheld-cross-device");
    expect(await served(self)).toEqual({ code: 1008, reason: "device token rotated" });
    expect(await served(other)).toEqual({ code: 1008, reason: "device token rotated" });
    expect(await served(bySecret)).toBe("answered");
    expect(await served(admin)).toBe("answered");
  });

  it("leaves the device's token connections of another role open", async () => {
    const { url } = await startStack();
    const { device, self } = await deviceWithTokenConnections(url);
    const node = await TestClient.connect(url, {
      token: TOKEN,
      device,
      role: "node",
      scopes: [],
      clientId: "node-host",
      mode: "node",
    });
    // Loopback: the node role was approved at once.
    expect(node.hello.auth.role).toBe("node");
    const admin = await TestClient.connect(url, { token: TOKEN });
    await admin.request("device.token.rotate", { deviceId: device.deviceId, role: "node" });
    expect(await served(self)).toBe("answered");
  });
});

describe("device.token.revoke", () => {
  it("answers a caller revoking its own token before closing it with the others", async () => {
    const { url } = await startStack();
    const { device, bySecret, self, other } = await deviceWithTokenConnections(url);
    const revoked = await self.request("device.token.revoke", {
      deviceId: device.deviceId,
      role: "operator",
    });
    expect(revoked).toMatchObject({ ok: true, revoked: 1, disconnected: 2 });
    expect(await self.closed).toEqual({ code: 1008, reason: "device token revoked" });
    expect(await served(other)).toEqual({ code: 1008, reason: "device token revoked" });
    expect(await served(bySecret)).toBe("answered");
  });

  it("refuses the revoked token afterwards", async () => {
    const { url } = await startStack();
    const { device, oldToken } = await deviceWithTokenConnections(url);
    const admin = await TestClient.connect(url, { token: TOKEN });
    await admin.request("device.token.revoke", { deviceId: device.deviceId, role: "operator" });
    const stale = await TestClient.open(url);
    const error = await rpcError(
      stale.sendConnect({ deviceToken: oldToken, device, scopes: ["operator.read"] }),
    );
    expect(error.details).toMatchObject({ code: "AUTH_DEVICE_TOKEN_MISMATCH" });
  });
});
