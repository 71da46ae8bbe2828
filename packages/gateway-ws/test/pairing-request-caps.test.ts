/**
 * Caps on pending pairing requests (`auth.pairingRequests`): whoever holds the shared secret
 * cannot queue requests without end. Over real sockets, from different loopback source
 * addresses (all of 127/8 is local on Linux); every frame is checked against the schema.
 */
import { InvalidArgumentError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceIdentity, type DeviceIdentity } from "../src/auth/device-identity.js";
import { createGateway } from "../src/index.js";
import {
  closeClients,
  RpcError,
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

interface Attempt {
  ok: boolean;
  error?: RpcError;
  close?: { code: number; reason: string };
}

/** A device asking to pair from `localAddress` (headers on the upgrade when given). */
async function askToPair(
  url: string,
  device: DeviceIdentity,
  localAddress: string,
  headers: Record<string, string> = {},
): Promise<Attempt> {
  const client = await TestClient.open(url, { localAddress, headers });
  try {
    await client.sendConnect({ token: TOKEN, device, scopes: ["operator.read"] });
    await client.close();
    return { ok: true };
  } catch (error) {
    if (!(error instanceof RpcError)) throw error;
    return { ok: false, error, close: await client.closed };
  }
}

const detailOf = (attempt: Attempt) => attempt.error?.details as Record<string, unknown>;

function capped(maxPending: number, maxPendingPerAddress: number, storeNow?: () => number) {
  return {
    gateway: {
      auth: {
        mode: "token" as const,
        token: TOKEN,
        autoApproveLoopback: false,
        pairingRequests: { maxPending, maxPendingPerAddress },
      },
    },
    ...(storeNow === undefined ? {} : { store: { now: storeNow } }),
  };
}

describe("pending pairing request caps", () => {
  it("refuses a request past the per-address cap with PAIRING_REQUESTS_FULL; a device asking again keeps its slot", async () => {
    const { url } = await startStack(capped(10, 2));
    const [a1, a2, a3] = [createDeviceIdentity(), createDeviceIdentity(), createDeviceIdentity()];
    const first = await askToPair(url, a1, "127.0.0.2");
    expect(detailOf(first)).toMatchObject({ code: "PAIRING_REQUIRED" });
    expect(detailOf(await askToPair(url, a2, "127.0.0.2"))).toMatchObject({
      code: "PAIRING_REQUIRED",
    });
    const again = await askToPair(url, a1, "127.0.0.2");
    expect(detailOf(again)).toMatchObject({
      code: "PAIRING_REQUIRED",
      requestId: detailOf(first).requestId,
    });
    const full = await askToPair(url, a3, "127.0.0.2");
    expect(full.error).toMatchObject({ code: "UNAVAILABLE", retryable: true });
    expect(detailOf(full)).toEqual({
      code: "PAIRING_REQUESTS_FULL",
      limit: "address",
      max: 2,
      recommendedNextStep: "wait_then_retry",
    });
    expect(full.close).toEqual({ code: 1008, reason: "too many pending pairing requests" });
    // Another address still has room.
    expect(detailOf(await askToPair(url, a3, "127.0.0.3"))).toMatchObject({
      code: "PAIRING_REQUIRED",
    });
  });

  it("refuses past the total cap, and approving or rejecting a request frees its slot", async () => {
    const { url } = await startStack(capped(2, 2));
    const devices = [1, 2, 3, 4].map(() => createDeviceIdentity());
    const first = await askToPair(url, devices[0]!, "127.0.0.2");
    const second = await askToPair(url, devices[1]!, "127.0.0.3");
    expect(detailOf(second)).toMatchObject({ code: "PAIRING_REQUIRED" });
    expect(detailOf(await askToPair(url, devices[2]!, "127.0.0.4"))).toMatchObject({
      code: "PAIRING_REQUESTS_FULL",
      limit: "total",
      max: 2,
    });
    const admin = await TestClient.connect(url, { token: TOKEN });
    await admin.request("device.pair.reject", { requestId: detailOf(first).requestId });
    expect(detailOf(await askToPair(url, devices[2]!, "127.0.0.4"))).toMatchObject({
      code: "PAIRING_REQUIRED",
    });
    expect(detailOf(await askToPair(url, devices[3]!, "127.0.0.5"))).toMatchObject({
      code: "PAIRING_REQUESTS_FULL",
    });
    await admin.request("device.pair.approve", { requestId: detailOf(second).requestId });
    expect(detailOf(await askToPair(url, devices[3]!, "127.0.0.5"))).toMatchObject({
      code: "PAIRING_REQUIRED",
    });
    expect((await askToPair(url, devices[1]!, "127.0.0.3")).ok).toBe(true);
  });

  it("does not count expired requests", async () => {
    let offsetMs = 0;
    const { url } = await startStack(capped(1, 1, () => Date.now() + offsetMs));
    expect(detailOf(await askToPair(url, createDeviceIdentity(), "127.0.0.2"))).toMatchObject({
      code: "PAIRING_REQUIRED",
    });
    const late = createDeviceIdentity();
    expect(detailOf(await askToPair(url, late, "127.0.0.3"))).toMatchObject({
      code: "PAIRING_REQUESTS_FULL",
    });
    offsetMs = 10 * 60_000 + 1_000;
    expect(detailOf(await askToPair(url, late, "127.0.0.3"))).toMatchObject({
      code: "PAIRING_REQUIRED",
    });
  });

  it("never refuses a loopback device approved at once", async () => {
    const { url } = await startStack({
      gateway: {
        auth: {
          mode: "token",
          token: TOKEN,
          autoApproveLoopback: true,
          pairingRequests: { maxPending: 1, maxPendingPerAddress: 1 },
        },
      },
    });
    // Relayed by a proxy: not local, so it waits for an operator and fills the queue.
    const relayed = { "x-forwarded-for": "203.0.113.7" };
    expect(
      detailOf(await askToPair(url, createDeviceIdentity(), "127.0.0.1", relayed)),
    ).toMatchObject({ code: "PAIRING_REQUIRED" });
    expect((await askToPair(url, createDeviceIdentity(), "127.0.0.1")).ok).toBe(true);
  });

  it("refuses caps that are not positive integers when the gateway is made", async () => {
    const { runtime } = await startStack();
    for (const pairingRequests of [{ maxPending: 0 }, { maxPendingPerAddress: 1.5 }]) {
      expect(() =>
        createGateway({ runtime, auth: { mode: "token", token: TOKEN, pairingRequests } }),
      ).toThrow(InvalidArgumentError);
    }
  });
});
