/**
 * `devices.putToken` takes any finite `expiresAt` (as every store does). One outside the
 * range of Redis' `PEXPIREAT` (a far-future "practically never", or a far past) is stored
 * like any other, and never makes the script stop halfway: before, it failed with a
 * retryable `STORE_UNAVAILABLE` after it had already replaced the token.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, keysUnder, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

const prefixes: string[] = [];
const stores: RedisStore[] = [];

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function openStore(): Promise<{ store: RedisStore; prefix: string }> {
  const prefix = uniquePrefix("token-expiry");
  prefixes.push(prefix);
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  return { store, prefix };
}

describe("device tokens with an expiresAt beyond what Redis can expire at", () => {
  it("a far-future expiresAt is stored, listed, and replaces the previous token whole", async () => {
    const { store } = await openStore();
    await store.devices.putToken({
      tokenHash: "h",
      deviceId: "old",
      expiresAt: Date.now() + 60_000,
    });
    for (const expiresAt of [1e21, Number.MAX_VALUE, 2 ** 63]) {
      const token = { tokenHash: "h", deviceId: "d", expiresAt };
      await store.devices.putToken(token);
      expect(await store.devices.getToken("h")).toEqual(token);
      expect(await store.devices.listTokens("d")).toEqual([token]);
      expect(await store.devices.listTokens("old")).toEqual([]);
    }
  });

  it("a far-past expiresAt is an expired token: nothing is kept of it or of the one it replaced", async () => {
    const { store, prefix } = await openStore();
    await store.devices.putToken({ tokenHash: "h", deviceId: "d", expiresAt: Date.now() + 60_000 });
    await store.devices.putToken({ tokenHash: "h", deviceId: "d", expiresAt: -1e21 });
    expect(await store.devices.getToken("h")).toBeUndefined();
    expect(await store.devices.listTokens("d")).toEqual([]);
    const raw = rawClient();
    try {
      expect(await keysUnder(raw, prefix)).toEqual([]);
    } finally {
      await raw.quit();
    }
  });
});
