/**
 * A lock's fencing-token counter (`lock-token:<name>`) must not outlive the lock's use for
 * ever. A cluster takes a lease per session (`session:<key>`, so one per chat, hook request,
 * sub-agent and isolated cron run), and the counters of sessions long deleted used to stay
 * in Redis without end. The counter now expires a retention period after the lease runs out
 * (renewals push that back), and a counter started afresh still hands out tokens greater than
 * every earlier one of its lock.
 */
import { FencedError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { LOCK_TOKEN_RETENTION_MS } from "../src/locks.js";
import { keysUnder, storeOpener } from "./support/redis.js";

const { open: openStore, cleanup } = storeOpener("growth-locks");
afterEach(cleanup);

describe("fencing-token counters of locks", () => {
  it("the session leases of many sessions leave no key without an expiry behind", async () => {
    const { store, prefix, raw } = await openStore();
    for (let i = 0; i < 50; i++) {
      const lease = await store.locks.acquire(`session:agent:main:hook:${i}`, {
        owner: "node-a",
        ttlMs: 30_000,
      });
      expect(lease).toBeDefined();
      expect(await store.locks.release(lease!)).toBe(true);
    }
    const keys = await keysUnder(raw, prefix);
    expect(keys).toHaveLength(50);
    const forever: string[] = [];
    for (const key of keys) if ((await raw.pttl(key)) < 0) forever.push(key);
    expect(forever).toEqual([]);
  });

  it("the counter lives the lease plus the retention period, and a renewal pushes it back", async () => {
    const { store, prefix, raw } = await openStore();
    const lease = (await store.locks.acquire("job", { owner: "a", ttlMs: 1_000 }))!;
    const counter = `${prefix}lock-token:job`;
    const afterAcquire = await raw.pttl(counter);
    expect(afterAcquire).toBeGreaterThan(LOCK_TOKEN_RETENTION_MS);
    expect(afterAcquire).toBeLessThanOrEqual(LOCK_TOKEN_RETENTION_MS + 1_000);
    const renewed = await store.locks.renew(lease, 600_000);
    expect(renewed?.token).toBe(lease.token);
    expect(await raw.pttl(counter)).toBeGreaterThan(LOCK_TOKEN_RETENTION_MS + 500_000);
    // A fenced write of the holder still goes through.
    expect(await store.kv.set("k", 1, { fence: { lock: "job", token: lease.token } })).toBe(true);
  });

  it("once the counter is gone, a new acquisition gets a token above every earlier one and the old holder stays fenced", async () => {
    const { store, prefix, raw } = await openStore();
    const tokens: number[] = [];
    let last = (await store.locks.acquire("session:s", { owner: "a", ttlMs: 30_000 }))!;
    tokens.push(last.token);
    for (let i = 0; i < 3; i++) {
      await store.locks.release(last);
      last = (await store.locks.acquire("session:s", { owner: "a", ttlMs: 30_000 }))!;
      tokens.push(last.token);
    }
    await store.locks.release(last);
    // What the counter's expiry does, without waiting for it.
    expect(await raw.del(`${prefix}lock-token:session:s`)).toBe(1);
    const fresh = (await store.locks.acquire("session:s", { owner: "b", ttlMs: 30_000 }))!;
    for (const token of tokens) expect(fresh.token).toBeGreaterThan(token);
    expect(Number.isSafeInteger(fresh.token)).toBe(true);
    const next = await (async () => {
      await store.locks.release(fresh);
      return (await store.locks.acquire("session:s", { owner: "c", ttlMs: 30_000 }))!;
    })();
    expect(next.token).toBe(fresh.token + 1);
    for (const token of [...tokens, fresh.token]) {
      const error = await store
        .fenced({ lock: "session:s", token })
        .transcripts.append("s", [{ text: "stale" }])
        .catch((e: unknown) => e);
      expect(FencedError.isInstance(error)).toBe(true);
    }
    expect(await store.transcripts.lastSeq("s")).toBe(0);
  });
});
