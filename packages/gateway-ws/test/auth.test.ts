import crypto from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import { secretsEqual } from "../src/auth/shared-secret.js";
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
  vi.restoreAllMocks();
  await closeClients();
  await stopStacks();
});

describe("shared-secret auth", () => {
  it("lets anyone in with auth mode none", async () => {
    const { url } = await startStack({ gateway: { auth: { mode: "none" } } });
    const client = await TestClient.connect(url, { scopes: ["operator.read"] });
    expect(client.hello.auth.role).toBe("operator");
  });

  it("admits a client presenting the gateway token", async () => {
    const { url } = await startStack();
    const client = await TestClient.connect(url, { token: TOKEN });
    expect(client.hello.type).toBe("hello-ok");
  });

  it("refuses a wrong token with AUTH_TOKEN_MISMATCH and closes with 1008", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(client.sendConnect({ token: `${TOKEN}x` }));
    expect(error.code).toBe("INVALID_REQUEST");
    expect(error.details).toMatchObject({ code: "AUTH_TOKEN_MISMATCH" });
    expect((await client.closed).code).toBe(1008);
  });

  it("refuses a missing token with AUTH_TOKEN_MISSING", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(client.sendConnect({}));
    expect(error.details).toMatchObject({ code: "AUTH_TOKEN_MISSING" });
  });

  it("admits the right password and refuses a wrong one in password mode", async () => {
    const { url } = await startStack({
      gateway: { auth: { mode: "password", password: "hunter2-hunter2" } },
    });
    const good = await TestClient.connect(url, { password: "hunter2-hunter2" });
    expect(good.hello.type).toBe("hello-ok");
    const bad = await TestClient.open(url);
    const error = await rpcError(bad.sendConnect({ password: "hunter3-hunter3" }));
    expect(error.details).toMatchObject({ code: "AUTH_PASSWORD_MISMATCH" });
  });

  it("compares secrets with crypto.timingSafeEqual over equal-length digests", async () => {
    const spy = vi.spyOn(crypto, "timingSafeEqual");
    const { url } = await startStack();
    const client = await TestClient.open(url);
    await rpcError(client.sendConnect({ token: "short" }));
    expect(spy).toHaveBeenCalled();
    for (const [a, b] of spy.mock.calls) {
      expect((a as Buffer).length).toBe(32);
      expect((b as Buffer).length).toBe(32);
    }
  });

  it("treats secrets as equal only when identical, whatever their lengths", () => {
    expect(secretsEqual("abc", "abc")).toBe(true);
    expect(secretsEqual("abc", "abd")).toBe(false);
    expect(secretsEqual("abc", "abcd")).toBe(false);
    expect(secretsEqual("", "")).toBe(false);
    expect(secretsEqual("ünïcödé", "ünïcödé")).toBe(true);
  });

  it("refuses to build a token-mode gateway without a token", async () => {
    await expect(startStack({ gateway: { auth: { mode: "token", token: "" } } })).rejects.toThrow(
      /no token is set/,
    );
  });
});

describe("device identity", () => {
  it("admits a device whose ed25519 signature covers this connection's nonce, pairing it on loopback", async () => {
    const stack = await startStack();
    const device = createDeviceIdentity();
    const client = await TestClient.connect(stack.url, {
      token: TOKEN,
      device,
      scopes: ["operator.read"],
    });
    expect(client.hello.auth.deviceToken).toEqual(expect.any(String));
    expect(client.hello.auth.scopes).toEqual(["operator.read"]);
    const paired = await stack.store.devices.get(device.deviceId);
    expect(paired).toMatchObject({
      deviceId: device.deviceId,
      roles: ["operator"],
      scopes: ["operator.read"],
    });
  });

  it("stores device tokens by SHA-256 hash only", async () => {
    const stack = await startStack();
    const device = createDeviceIdentity();
    const client = await TestClient.connect(stack.url, { token: TOKEN, device });
    const token = client.hello.auth.deviceToken as string;
    const [stored] = await stack.store.devices.listTokens(device.deviceId);
    expect(stored!.tokenHash).toBe(crypto.createHash("sha256").update(token).digest("hex"));
    expect(JSON.stringify(stored)).not.toContain(token);
  });

  it("refuses a bad signature with DEVICE_AUTH_SIGNATURE_INVALID", async () => {
    const { url } = await startStack();
    const device = createDeviceIdentity();
    const client = await TestClient.open(url);
    const params = client.connectParams({ token: TOKEN, device });
    const proof = params.device as { signature: string };
    proof.signature = Buffer.from(proof.signature, "base64url").reverse().toString("base64url");
    const error = await rpcError(client.requestUnchecked("connect", params));
    expect(error.details).toMatchObject({ code: "DEVICE_AUTH_SIGNATURE_INVALID" });
    expect((await client.closed).code).toBe(1008);
  });

  it("refuses a signature made for another connection's nonce (a replay)", async () => {
    const { url } = await startStack();
    const device = createDeviceIdentity();
    const first = await TestClient.open(url);
    const replayed = first.connectParams({ token: TOKEN, device });
    const second = await TestClient.open(url);
    const error = await rpcError(second.requestUnchecked("connect", replayed));
    expect(error.details).toMatchObject({ code: "DEVICE_AUTH_NONCE_MISMATCH" });
  });

  it("refuses a replayed nonce even when the attacker signs it with their own key", async () => {
    const { url } = await startStack();
    const victim = await TestClient.open(url);
    const attacker = await TestClient.open(url);
    const error = await rpcError(
      attacker.sendConnect({
        token: TOKEN,
        device: createDeviceIdentity(),
        signNonce: victim.challenge!.nonce,
      }),
    );
    expect(error.details).toMatchObject({ code: "DEVICE_AUTH_NONCE_MISMATCH" });
  });

  it("refuses a device id that is not the hash of its public key", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const params = client.connectParams({ token: TOKEN, device: createDeviceIdentity() });
    (params.device as { id: string }).id = "0".repeat(64);
    const error = await rpcError(client.requestUnchecked("connect", params));
    expect(error.details).toMatchObject({ code: "DEVICE_AUTH_DEVICE_ID_MISMATCH" });
  });

  it("refuses a signature dated outside the allowed clock skew", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const params = client.connectParams({ token: TOKEN, device: createDeviceIdentity() });
    (params.device as { signedAt: number }).signedAt = Date.now() - 60 * 60_000;
    const error = await rpcError(client.requestUnchecked("connect", params));
    expect(error.details).toMatchObject({ code: "DEVICE_AUTH_SIGNATURE_EXPIRED" });
  });

  it("reconnects with its device token instead of the shared token", async () => {
    const { url } = await startStack();
    const device = createDeviceIdentity();
    const first = await TestClient.connect(url, {
      token: TOKEN,
      device,
      scopes: ["operator.read"],
    });
    const deviceToken = first.hello.auth.deviceToken as string;
    const again = await TestClient.connect(url, { deviceToken, device, scopes: ["operator.read"] });
    expect(again.hello.auth).toMatchObject({ role: "operator", scopes: ["operator.read"] });
    expect(again.hello.auth.deviceToken).toBeUndefined();
  });

  it("refuses a device token presented by another device", async () => {
    const { url } = await startStack();
    const first = await TestClient.connect(url, { token: TOKEN, device: createDeviceIdentity() });
    const thief = await TestClient.open(url);
    const error = await rpcError(
      thief.sendConnect({
        deviceToken: first.hello.auth.deviceToken,
        device: createDeviceIdentity(),
      }),
    );
    expect(error.details).toMatchObject({ code: "AUTH_DEVICE_TOKEN_MISMATCH" });
  });

  it("requires a device identity for the node role", async () => {
    const { url } = await startStack();
    const client = await TestClient.open(url);
    const error = await rpcError(client.sendConnect({ token: TOKEN, role: "node", scopes: [] }));
    expect(error.code).toBe("NOT_PAIRED");
    expect(error.details).toMatchObject({ code: "DEVICE_IDENTITY_REQUIRED" });
  });
});

describe("pairing", () => {
  it("holds an unknown device until an operator with operator.pairing approves it", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "token", token: TOKEN, autoApproveLoopback: false } },
    });
    // An approver grants only scopes it holds itself: pairing, and the read it hands out.
    const operator = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.pairing", "operator.read"],
    });
    const device = createDeviceIdentity();
    const asking = await TestClient.open(stack.url);
    const refused = await rpcError(
      asking.sendConnect({ token: TOKEN, device, scopes: ["operator.read"] }),
    );
    expect(refused.code).toBe("NOT_PAIRED");
    const { requestId } = refused.details as { requestId: string };
    expect((await asking.closed).code).toBe(1008);
    const requested = await operator.waitEvent("device.pair.requested");
    expect(requested.payload).toMatchObject({
      requestId,
      deviceId: device.deviceId,
      scopes: ["operator.read"],
    });
    const listed = await operator.request("device.pair.list");
    expect(listed.pending.map((r: { requestId: string }) => r.requestId)).toEqual([requestId]);
    await operator.request("device.pair.approve", { requestId });
    await operator.waitEvent("device.pair.resolved", (p) => p.decision === "approved");
    const admitted = await TestClient.connect(stack.url, {
      token: TOKEN,
      device,
      scopes: ["operator.read"],
    });
    expect(admitted.hello.auth.deviceToken).toEqual(expect.any(String));
  });

  it("asks again when a paired device wants more scopes than were approved", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "token", token: TOKEN, autoApproveLoopback: false } },
    });
    // An approver grants only scopes it holds itself: pairing, and the read it hands out.
    const operator = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.pairing", "operator.read"],
    });
    const device = createDeviceIdentity();
    const first = await TestClient.open(stack.url);
    const { requestId } = (
      await rpcError(first.sendConnect({ token: TOKEN, device, scopes: ["operator.read"] }))
    ).details as { requestId: string };
    await operator.request("device.pair.approve", { requestId });
    const wider = await TestClient.open(stack.url);
    const refused = await rpcError(
      wider.sendConnect({ token: TOKEN, device, scopes: ["operator.admin"] }),
    );
    expect(refused.details).toMatchObject({ code: "PAIRING_REQUIRED", reason: "scope-upgrade" });
  });

  it("rejecting a request leaves the device unpaired", async () => {
    const stack = await startStack({
      gateway: { auth: { mode: "token", token: TOKEN, autoApproveLoopback: false } },
    });
    const operator = await TestClient.connect(stack.url, {
      token: TOKEN,
      scopes: ["operator.pairing"],
    });
    const device = createDeviceIdentity();
    const asking = await TestClient.open(stack.url);
    const { requestId } = (await rpcError(asking.sendConnect({ token: TOKEN, device })))
      .details as { requestId: string };
    await operator.request("device.pair.reject", { requestId });
    expect(await stack.store.devices.get(device.deviceId)).toBeUndefined();
    const error = await rpcError(operator.request("device.pair.approve", { requestId }));
    expect(error.details).toMatchObject({ code: "PAIRING_REQUEST_NOT_FOUND" });
  });
});

describe("device tokens", () => {
  it("rotating a token invalidates the old one; the device alone receives the new one", async () => {
    const { url } = await startStack();
    const device = createDeviceIdentity();
    const first = await TestClient.connect(url, {
      token: TOKEN,
      device,
      scopes: ["operator.read", "operator.pairing"],
    });
    const oldToken = first.hello.auth.deviceToken as string;
    const self = await TestClient.connect(url, {
      deviceToken: oldToken,
      device,
      scopes: ["operator.read", "operator.pairing"],
    });
    const rotated = await self.request("device.token.rotate", {
      deviceId: device.deviceId,
      role: "operator",
    });
    expect(rotated.tokenDelivery).toBe("in-band");
    const stale = await TestClient.open(url);
    const error = await rpcError(
      stale.sendConnect({ deviceToken: oldToken, device, scopes: ["operator.read"] }),
    );
    expect(error.details).toMatchObject({ code: "AUTH_DEVICE_TOKEN_MISMATCH" });
    const fresh = await TestClient.connect(url, {
      deviceToken: rotated.token,
      device,
      scopes: ["operator.read"],
    });
    expect(fresh.hello.type).toBe("hello-ok");
  });

  it("an admin rotating another device's token does not get the token back", async () => {
    const { url } = await startStack();
    const device = createDeviceIdentity();
    await TestClient.connect(url, { token: TOKEN, device, scopes: ["operator.read"] });
    const admin = await TestClient.connect(url, { token: TOKEN });
    const rotated = await admin.request("device.token.rotate", {
      deviceId: device.deviceId,
      role: "operator",
    });
    expect(rotated.tokenDelivery).toBe("withheld-cross-device");
    expect(rotated.token).toBeUndefined();
  });

  it("revoking a device token disconnects the sessions that used it and refuses it afterwards", async () => {
    const { url } = await startStack();
    const device = createDeviceIdentity();
    const first = await TestClient.connect(url, {
      token: TOKEN,
      device,
      scopes: ["operator.read"],
    });
    const token = first.hello.auth.deviceToken as string;
    const user = await TestClient.connect(url, {
      deviceToken: token,
      device,
      scopes: ["operator.read"],
    });
    const admin = await TestClient.connect(url, { token: TOKEN });
    const revoked = await admin.request("device.token.revoke", {
      deviceId: device.deviceId,
      role: "operator",
    });
    expect(revoked).toMatchObject({ revoked: 1, disconnected: 1 });
    expect(await user.closed).toEqual({ code: 1008, reason: "device token revoked" });
    const again = await TestClient.open(url);
    expect(
      (await rpcError(again.sendConnect({ deviceToken: token, device }))).details,
    ).toMatchObject({
      code: "AUTH_DEVICE_TOKEN_MISMATCH",
    });
  });

  it("a non-admin may not manage another device's tokens", async () => {
    const { url } = await startStack();
    const other = createDeviceIdentity();
    await TestClient.connect(url, { token: TOKEN, device: other, scopes: ["operator.read"] });
    const pairingOnly = await TestClient.connect(url, {
      token: TOKEN,
      scopes: ["operator.pairing"],
    });
    const error = await rpcError(
      pairingOnly.request("device.token.revoke", { deviceId: other.deviceId, role: "operator" }),
    );
    expect(error.code).toBe("FORBIDDEN");
  });
});
