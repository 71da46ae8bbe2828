/**
 * Helpers of the pairing race tests: holding one store call until the test lets it go, the
 * outcome of a `connect`, and a device paired through the shared secret. Not a test file.
 */
import type { DeviceStore, DeviceTokenRecord } from "@beamclaw/core";
import { createDeviceIdentity } from "../src/auth/device-identity.js";
import { hashToken } from "../src/auth/shared-secret.js";
import { type ConnectOptions, deferred, RpcError, TestClient, TOKEN } from "./support.js";

/** The operator scopes the race tests' devices ask for. */
export const SCOPES = ["operator.read", "operator.pairing"];

/** A hold on one store call: `reached` once it is made; the call goes on after `release()`. */
export interface Hold {
  reached: Promise<void>;
  release(): void;
  /** In the wrapped call: waits for `release()` the first time `matches` is true. */
  pass(matches: boolean): Promise<void>;
}

/** A {@link Hold}, armed for one call. */
export function holdOnce(): Hold {
  const reached = deferred();
  const released = deferred();
  let armed = true;
  return {
    reached: reached.promise,
    release: () => released.resolve(),
    async pass(matches: boolean): Promise<void> {
      if (!matches || !armed) return;
      armed = false;
      reached.resolve();
      await released.promise;
    },
  };
}

/** Holds the next lookup of `token` in `devices`, returning what was read then (the token live). */
export function holdTokenLookup(devices: DeviceStore, token: string): Hold {
  const realGetToken = devices.getToken.bind(devices);
  const h = holdOnce();
  const target = hashToken(token);
  devices.getToken = async (tokenHash: string): Promise<DeviceTokenRecord | undefined> => {
    const record = await realGetToken(tokenHash);
    await h.pass(tokenHash === target);
    return record;
  };
  return h;
}

export type Outcome =
  | { ok: true; client: TestClient }
  | { ok: false; error: RpcError; close: { code: number; reason: string } };

/** Sends `connect` on `client`: its opening, or its error and close. */
export async function connectOutcome(
  client: TestClient,
  options: ConnectOptions,
): Promise<Outcome> {
  try {
    await client.sendConnect(options);
    return { ok: true, client };
  } catch (error) {
    if (!(error instanceof RpcError)) throw error;
    return { ok: false, error, close: await client.closed };
  }
}

/** An {@link Outcome} to compare: `{ opened: true }`, or the refusal's codes and close. */
export function refusalOf(outcome: Outcome) {
  if (outcome.ok) return { opened: true };
  return {
    code: outcome.error.code,
    detail: (outcome.error.details as { code?: string }).code,
    close: outcome.close,
  };
}

/**
 * A device paired through the shared secret (loopback: approved at once) for `role`, its
 * first device token, and the options it connected with.
 */
export async function pairedDevice(url: string, role: "operator" | "node" = "operator") {
  const device = createDeviceIdentity();
  const options: ConnectOptions =
    role === "node"
      ? { token: TOKEN, device, role, scopes: [], clientId: "node-host", mode: "node" }
      : { token: TOKEN, device, scopes: SCOPES };
  const bySecret = await TestClient.connect(url, options);
  const token = bySecret.hello.auth.deviceToken as string;
  await bySecret.close();
  return { device, token, options };
}
