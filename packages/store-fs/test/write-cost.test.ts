/**
 * A write costs the same however much is stored: changing one session appends one line to
 * its agent's log and never rewrites the other sessions; the log is compacted (atomically)
 * only once it is mostly dead lines, so the amortized cost per write stays constant. The same
 * holds for the queue, key/value and lock logs. (Timings are the benchmark's business:
 * `bench/src/store-fs.mjs`; these tests check the mechanism, by bytes and inodes.)
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await tempDir();
  // fsync off: these tests count bytes, not durability, and write thousands of lines.
  store = createFsStore({ dir, fsync: false });
  await store.open();
});

afterEach(async () => {
  await store.close();
  await removeDir(dir);
});

const record = (i: number, updatedAt: number) => ({
  key: `agent:main:s${i}`,
  agentId: "main",
  createdAt: 1,
  updatedAt,
});

const lines = async (file: string) =>
  (await readFile(path.join(dir, file), "utf8")).split("\n").filter((l) => l !== "").length;

describe("cost of a write", () => {
  it("changing one session among thousands appends one line and rewrites nothing else", async () => {
    const file = path.join(dir, "agents/main/sessions.jsonl");
    await Promise.all(Array.from({ length: 5_000 }, (_, i) => store.sessions.put(record(i, i))));
    const before = await stat(file);
    const changed = record(42, 10_000);
    await store.sessions.put(changed);
    const after = await stat(file);
    expect(after.ino).toBe(before.ino);
    expect(after.size - before.size).toBe(
      Buffer.byteLength(`${JSON.stringify({ op: "put", record: changed })}\n`),
    );
    expect((await store.sessions.list({ limit: 1 })).items).toEqual([changed]);
  });

  it("compacts a session log once dead lines outnumber live ones (and at least 1000), keeping every live record", async () => {
    const file = "agents/main/sessions.jsonl";
    const latest = new Map<number, number>();
    for (let i = 0; i < 200; i++) {
      await store.sessions.put(record(i, 0));
      latest.set(i, 0);
    }
    let version = 1;
    // 200 live sessions; keep updating them until the log has been rewritten.
    const { ino } = await stat(path.join(dir, file));
    while ((await stat(path.join(dir, file))).ino === ino) {
      await store.sessions.put(record(version % 200, version));
      latest.set(version % 200, version);
      version++;
      if (version > 5_000) throw new Error("the log was never compacted");
    }
    // Compaction happened after 1000 dead lines beyond the 200 live ones, not before.
    expect(version).toBeGreaterThan(1_000);
    expect(await lines(file)).toBeLessThan(400);
    expect(await store.sessions.count()).toBe(200);

    await store.close();
    store = createFsStore({ dir, fsync: false });
    await store.open();
    expect(await store.sessions.count()).toBe(200);
    for (const [i, updatedAt] of latest) {
      expect((await store.sessions.get(`agent:main:s${i}`))?.updatedAt, `s${i}`).toBe(updatedAt);
    }
  });

  it("keeps the queue log bounded: acked messages are compacted away once outside the dedupe window", async () => {
    await store.close();
    store = createFsStore({ dir, fsync: false, dedupeWindowMs: 0 });
    await store.open();
    for (let i = 0; i < 3_000; i++) {
      const { message } = await store.queue.enqueue({
        idempotencyKey: `k${i}`,
        sessionKey: "s",
        payload: { i },
      });
      await store.queue.ack(message.id);
    }
    const kept = await store.queue.enqueue({
      idempotencyKey: "last",
      sessionKey: "s",
      payload: {},
    });
    expect(await lines("queue.jsonl")).toBeLessThan(2_100);
    await store.close();
    store = createFsStore({ dir, fsync: false, dedupeWindowMs: 0 });
    await store.open();
    expect(await store.queue.pending()).toEqual([kept.message]);
    // Ids keep growing after compaction dropped every acknowledged message.
    const next = await store.queue.enqueue({
      idempotencyKey: "next",
      sessionKey: "s",
      payload: {},
    });
    expect(next.message.id > kept.message.id).toBe(true);
  });

  it("keeps the key/value and lock logs bounded, and fencing tokens growing across compactions", async () => {
    let token = 0;
    for (let i = 0; i < 3_000; i++) {
      await store.kv.set(`k${i % 10}`, i);
      const lease = (await store.locks.acquire("job", { owner: "o", ttlMs: 60_000 }))!;
      expect(lease.token).toBeGreaterThan(token);
      token = lease.token;
      await store.locks.release(lease);
    }
    expect(await lines("kv.jsonl")).toBeLessThan(1_100);
    expect(await lines("locks.jsonl")).toBeLessThan(1_100);
    await store.close();
    store = createFsStore({ dir, fsync: false });
    await store.open();
    expect(await store.kv.get("k9")).toBe(2_999);
    const lease = (await store.locks.acquire("job", { owner: "o", ttlMs: 60_000 }))!;
    expect(lease.token).toBe(token + 1);
  });
});
