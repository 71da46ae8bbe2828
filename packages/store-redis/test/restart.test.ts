/**
 * Redis crashes and comes back mid-run. Against a private redis-server with `appendonly yes`
 * (and an fsync per write), every write the store acknowledged before the crash is there
 * afterwards, the store reconnects by itself, and the durable inbound queue replays each
 * pending message exactly once per idempotency key.
 */
import { isBeamClawError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { uniquePrefix } from "./support/redis.js";
import { RedisServerProcess } from "./support/redis-server.js";
import { settleWithin, sleep, waitUntil } from "./support/settle.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function persistentServer(): Promise<RedisServerProcess> {
  const server = await RedisServerProcess.start({ appendonly: true });
  cleanups.push(() => server.stop());
  return server;
}

function storeOn(server: RedisServerProcess, prefix: string): RedisStore {
  const store = createRedisStore({ url: server.url, prefix, commandTimeoutMs: 2_000 });
  cleanups.push(() => store.close());
  return store;
}

/** What one writer had acknowledged, and how its failures looked. */
interface WriterLog {
  appended: Array<{ writer: number; i: number; last: number }>;
  kv: Array<{ key: string; value: number }>;
  enqueued: Array<{ idempotencyKey: string; id: string }>;
  failures: number;
  otherErrors: unknown[];
}

/**
 * A writer loop: each step appends a two-entry batch, sets a kv key and enqueues a message,
 * recording what was acknowledged. A rejection must be STORE_UNAVAILABLE; anything else is
 * kept to fail the test.
 */
async function writer(store: RedisStore, id: number, log: WriterLog, stop: () => boolean) {
  for (let i = 0; !stop() && i < 100_000; i++) {
    try {
      const last = await store.transcripts.append("s", [
        { writer: id, i, part: 0 },
        { writer: id, i, part: 1 },
      ]);
      log.appended.push({ writer: id, i, last });
      const key = `w${id}:${i}`;
      await store.kv.set(key, i);
      log.kv.push({ key, value: i });
      const idempotencyKey = `m${id}:${i}`;
      const { message } = await store.queue.enqueue({
        idempotencyKey,
        sessionKey: "s",
        payload: { i },
      });
      log.enqueued.push({ idempotencyKey, id: message.id });
    } catch (error) {
      if (isBeamClawError(error, "STORE_UNAVAILABLE")) log.failures++;
      else log.otherErrors.push(error);
      await sleep(5);
    }
  }
}

describe("a Redis restart mid-run", () => {
  it("loses no acknowledged write (appendonly yes), and the store reconnects by itself", async () => {
    const server = await persistentServer();
    const store = storeOn(server, uniquePrefix("restart"));
    await store.open();

    const log: WriterLog = { appended: [], kv: [], enqueued: [], failures: 0, otherErrors: [] };
    let stopped = false;
    const writers = [0, 1, 2, 3].map((id) => writer(store, id, log, () => stopped));

    await waitUntil("writes before the crash", () => log.enqueued.length >= 100);
    await server.kill("SIGKILL");
    const acknowledgedBeforeCrash = {
      appended: log.appended.length,
      kv: log.kv.length,
      enqueued: log.enqueued.length,
    };
    await waitUntil("writers to see Redis down", () => log.failures >= 4);
    await server.restart();
    await waitUntil(
      "writes after the restart",
      () => log.enqueued.length >= acknowledgedBeforeCrash.enqueued + 100,
    );
    stopped = true;
    await Promise.all(writers);

    expect(log.otherErrors).toEqual([]);
    expect(log.failures).toBeGreaterThan(0);

    // Every acknowledged append is at the seqs it was given, whole and in order.
    const lastSeq = await store.transcripts.lastSeq("s");
    const transcript: Array<{ seq: number; entry: Record<string, unknown> }> = [];
    while (transcript.length < lastSeq) {
      const page = await store.transcripts.read("s", { afterSeq: transcript.length, limit: 1000 });
      transcript.push(...page);
    }
    expect(transcript.map((r) => r.seq)).toEqual(Array.from({ length: lastSeq }, (_, i) => i + 1));
    for (const { writer: w, i, last } of log.appended) {
      expect(transcript[last - 2]?.entry).toEqual({ writer: w, i, part: 0 });
      expect(transcript[last - 1]?.entry).toEqual({ writer: w, i, part: 1 });
    }
    // A batch whose append failed is either all there, next to itself, or not there at all.
    for (const [index, record] of transcript.entries()) {
      if (record.entry.part === 0)
        expect(transcript[index + 1]?.entry).toEqual({ ...record.entry, part: 1 });
    }

    for (const { key, value } of log.kv) expect(await store.kv.get(key), key).toBe(value);

    const pending = await store.queue.pending({ limit: 1000 });
    expect(pending.length).toBeLessThan(1000); // one page holds them all
    const pendingIds = new Set(pending.map((m) => m.id));
    for (const { id } of log.enqueued) expect(pendingIds.has(id), id).toBe(true);

    // The counts show the writes on both sides of the crash were checked.
    expect(acknowledgedBeforeCrash.appended).toBeGreaterThanOrEqual(100);
    expect(log.appended.length).toBeGreaterThan(acknowledgedBeforeCrash.appended);
    expect(log.kv.length).toBeGreaterThan(acknowledgedBeforeCrash.kv);
  });

  it("replays each pending message exactly once per idempotency key after Redis and the process restart", async () => {
    const server = await persistentServer();
    const prefix = uniquePrefix("replay");
    const before = storeOn(server, prefix);
    await before.open();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { message } = await before.queue.enqueue({
        idempotencyKey: `k${i}`,
        sessionKey: i % 2 === 0 ? "even" : "odd",
        payload: { i },
      });
      ids.push(message.id);
    }
    // The first ten turns finished before the crash.
    for (const id of ids.slice(0, 10)) await before.queue.ack(id);
    // Redis crashes, and so does the process (its store is never used again).
    await server.kill("SIGKILL");
    await before.close();
    await server.restart();

    const after = storeOn(server, prefix);
    await after.open();
    const replayed = await after.queue.replay();
    expect(replayed.map((m) => m.idempotencyKey)).toEqual(
      Array.from({ length: 10 }, (_, i) => `k${i + 10}`),
    );
    expect(replayed.map((m) => m.id)).toEqual(ids.slice(10));
    expect(replayed.every((m) => m.deliveries === 1)).toBe(true);

    // The senders retry everything they were not sure about: all of it is a duplicate.
    for (let i = 0; i < 20; i++) {
      const again = await after.queue.enqueue({
        idempotencyKey: `k${i}`,
        sessionKey: "retry",
        payload: { retried: true },
      });
      expect(again.duplicate, `k${i}`).toBe(true);
      expect(again.message.id).toBe(ids[i]);
    }
    expect((await after.queue.pending()).map((m) => m.id)).toEqual(ids.slice(10));
    for (const m of replayed) await after.queue.ack(m.id);
    expect(await after.queue.replay()).toEqual([]);
  });

  it("keeps locks' fencing tokens increasing across a restart", async () => {
    const server = await persistentServer();
    const store = storeOn(server, uniquePrefix("fence"));
    await store.open();
    const first = (await store.locks.acquire("job", { owner: "a", ttlMs: 60_000 }))!;
    expect(await store.kv.set("guarded", 1, { fence: { lock: "job", token: first.token } })).toBe(
      true,
    );
    await server.restart();
    await waitUntil("the store to reconnect", async () => {
      return (await settleWithin(store.locks.holder("job"), 1_000)).status === "fulfilled";
    });
    // The lease survived with the data; once released, the next holder gets a higher token.
    expect(await store.locks.holder("job")).toEqual(first);
    expect(await store.locks.release(first)).toBe(true);
    const second = (await store.locks.acquire("job", { owner: "b", ttlMs: 60_000 }))!;
    expect(second.token).toBeGreaterThan(first.token);
    await expect(
      store.kv.set("guarded", 2, { fence: { lock: "job", token: first.token } }),
    ).rejects.toMatchObject({
      code: "FENCED",
    });
  });
});
