/**
 * Expired device tokens leave `device-tokens/` (and memory) while the store stays open: a
 * gateway that issues short-lived tokens for months must not keep a file for every token it
 * ever issued until its next restart.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TOKENS_DIR } from "../src/devices.js";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;

let dir: string;
let store: FsStore | undefined;

beforeEach(async () => {
  dir = await tempDir();
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(T0);
});

afterEach(async () => {
  vi.useRealTimers();
  await store?.close();
  store = undefined;
  await removeDir(dir);
});

async function open(): Promise<FsStore> {
  await store?.close();
  store = createFsStore({ dir, fsync: false });
  await store.open();
  return store;
}

async function tokenFiles(): Promise<string[]> {
  return (await readdir(path.join(dir, TOKENS_DIR))).sort();
}

describe("expired device tokens in an open store", () => {
  it("do not pile up in device-tokens/ when a token is issued every hour for a month", async () => {
    const s = await open();
    await s.devices.put({ deviceId: "phone" });
    for (let hour = 0; hour < 24 * 31; hour++) {
      vi.setSystemTime(T0 + hour * HOUR);
      await s.devices.putToken({
        tokenHash: `h${hour}`,
        deviceId: "phone",
        expiresAt: T0 + hour * HOUR + HOUR / 2,
      });
    }
    // Only the token issued last is live (and on disk); 743 expired ones are gone.
    expect(await tokenFiles()).toEqual(["h743.json"]);
    expect(await s.devices.listTokens("phone")).toEqual([
      { tokenHash: "h743", deviceId: "phone", expiresAt: T0 + 743 * HOUR + HOUR / 2 },
    ]);
  });

  it("are removed by the next putToken, keeping live and non-expiring tokens, also after a reopen", async () => {
    const s = await open();
    await s.devices.putToken({ tokenHash: "forever", deviceId: "a" });
    await s.devices.putToken({ tokenHash: "later", deviceId: "a", expiresAt: T0 + 10 * HOUR });
    for (let i = 0; i < 20; i++) {
      await s.devices.putToken({ tokenHash: `short${i}`, deviceId: "b", expiresAt: T0 + HOUR });
    }
    expect(await tokenFiles()).toHaveLength(22);

    vi.setSystemTime(T0 + HOUR);
    // Expired at exactly expiresAt, as getToken sees it.
    expect(await s.devices.getToken("short0")).toBeUndefined();
    await s.devices.putToken({ tokenHash: "new", deviceId: "b", expiresAt: T0 + 2 * HOUR });
    expect(await tokenFiles()).toEqual(["forever.json", "later.json", "new.json"]);
    expect(await s.devices.deleteToken("short3")).toBe(false);

    const reopened = await open();
    expect((await reopened.devices.listTokens("a")).map((t) => t.tokenHash)).toEqual([
      "forever",
      "later",
    ]);
    expect((await reopened.devices.listTokens("b")).map((t) => t.tokenHash)).toEqual(["new"]);
    expect(await tokenFiles()).toEqual(["forever.json", "later.json", "new.json"]);
  });
});
