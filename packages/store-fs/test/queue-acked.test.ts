/**
 * What the inbound queue keeps of acknowledged messages: their lines in `queue-acked/`, one
 * file per period of the dedupe window, deleted whole once outside it; compaction of
 * `queue.jsonl` copies only pending messages; a duplicate within the window still gets the
 * original back, read from disk; and a store written in the earlier format (acks and acked
 * messages inside `queue.jsonl`) opens, is migrated, and loses nothing.
 */
import { copyFile, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { JsonObject } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createFsStore, type FsStore, type FsStoreRecovery } from "../src/index.js";
import { ackedPeriodMs, QUEUE_ACKED_DIR } from "../src/queue.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
let store: FsStore | undefined;
let recoveries: FsStoreRecovery[];

beforeEach(async () => {
  dir = await tempDir();
  recoveries = [];
});

afterEach(async () => {
  vi.useRealTimers();
  await store?.close();
  store = undefined;
  await removeDir(dir);
});

async function open(dedupeWindowMs?: number): Promise<FsStore> {
  await store?.close();
  store = createFsStore({
    dir,
    fsync: false,
    onRecovery: (r) => recoveries.push(r),
    ...(dedupeWindowMs === undefined ? {} : { dedupeWindowMs }),
  });
  await store.open();
  return store;
}

const read = (file: string) => readFile(path.join(dir, file), "utf8");
const jsonl = async (file: string) =>
  (await read(file))
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
const ackedFiles = async () =>
  (await readdir(path.join(dir, QUEUE_ACKED_DIR)).catch(() => [] as string[])).sort();

const inbound = (key: string, payload: JsonObject = {}) => ({
  idempotencyKey: key,
  sessionKey: "agent:main:main",
  payload,
});

describe("acknowledged messages", () => {
  it("are written to an acked file, with their payload; queue.jsonl keeps only what is pending", async () => {
    const s = await open();
    const { message } = await s.queue.enqueue(inbound("k", { text: "hello" }));
    await s.queue.replay();
    await s.queue.ack(message.id);
    const files = await ackedFiles();
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^\d+\.jsonl$/);
    expect(await jsonl(`${QUEUE_ACKED_DIR}/${files[0]}`)).toEqual([
      {
        op: "acked",
        message: { ...message, deliveries: 1 },
        at: expect.any(Number),
      },
    ]);
    expect((await jsonl("queue.jsonl")).map((l) => l.op)).toEqual(["enqueue", "deliver"]);
  });

  it("compaction copies pending messages only: thousands of acks within the window are never rewritten", async () => {
    const s = await open();
    const big = "x".repeat(2_000);
    for (let i = 0; i < 3_000; i++) {
      const { message } = await s.queue.enqueue(inbound(`k${i}`, { i, big }));
      await s.queue.ack(message.id);
    }
    const kept = await s.queue.enqueue(inbound("pending", { big }));
    // The pending log was compacted: no acknowledged payload in it.
    const queueLog = await read("queue.jsonl");
    expect(queueLog.split("\n").length).toBeLessThan(2_100);
    expect(queueLog.length).toBeLessThan(2_100 * (big.length + 300));
    // The acks are each written once, in acked files never rewritten.
    let ackedLines = 0;
    for (const file of await ackedFiles()) {
      ackedLines += (await jsonl(`${QUEUE_ACKED_DIR}/${file}`)).length;
    }
    expect(ackedLines).toBe(3_000);
    // Every one of them is still a duplicate, and answers with its original payload.
    const oldest = await s.queue.enqueue(inbound("k0", { retry: true }));
    expect(oldest.duplicate).toBe(true);
    expect(oldest.message.payload).toEqual({ i: 0, big });
    expect(await s.queue.pending()).toEqual([kept.message]);

    // And after reopening.
    const again = await open();
    const retry = await again.queue.enqueue(inbound("k1234", {}));
    expect(retry).toEqual({
      duplicate: true,
      message: expect.objectContaining({ idempotencyKey: "k1234", payload: { i: 1234, big } }),
    });
    expect(await again.queue.pending()).toEqual([kept.message]);
    expect(recoveries).toEqual([]);
  });

  it("a duplicate that arrives while its ack is still being written gets the original", async () => {
    const s = await open();
    const { message } = await s.queue.enqueue(inbound("k", { n: 1 }));
    const acking = s.queue.ack(message.id);
    const [again] = await Promise.all([s.queue.enqueue(inbound("k", { n: 2 })), acking]);
    expect(again).toEqual({ duplicate: true, message });
    expect(await s.queue.pending()).toEqual([]);
  });

  it("are forgotten after the window, and their files deleted once a compaction has seen them", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.UTC(2026, 0, 1);
    vi.setSystemTime(t0);
    const window = 60_000;
    const period = ackedPeriodMs(window);
    expect(period).toBe(10_000);
    const s = await open(window);
    const first = await s.queue.enqueue(inbound("early", { n: 1 }));
    await s.queue.ack(first.message.id);
    vi.setSystemTime(t0 + period + 1);
    const second = await s.queue.enqueue(inbound("later", { n: 2 }));
    await s.queue.ack(second.message.id);
    const pending = await s.queue.enqueue(inbound("pending", { n: 3 }));
    expect(await ackedFiles()).toEqual([`${t0}.jsonl`, `${t0 + period + 1}.jsonl`]);

    // The first ack leaves the window: its key is new again, its file goes.
    vi.setSystemTime(t0 + window + 1);
    const early = await s.queue.enqueue(inbound("early", { n: 4 }));
    expect(early.duplicate).toBe(false);
    expect((await s.queue.enqueue(inbound("later", {}))).duplicate).toBe(true);
    await s.close();
    expect(await ackedFiles()).toEqual([`${t0 + period + 1}.jsonl`]);

    // Reopened after the second ack left the window too: the file goes at open.
    vi.setSystemTime(t0 + period + window + 2);
    const reopened = await open(window);
    expect(await ackedFiles()).toEqual([]);
    expect((await reopened.queue.enqueue(inbound("later", {}))).duplicate).toBe(false);
    // Nothing acknowledged came back: only the pending messages are pending.
    expect((await reopened.queue.pending()).map((m) => m.idempotencyKey)).toEqual([
      "pending",
      "early",
      "later",
    ]);
    expect((await reopened.queue.pending())[0]).toEqual(pending.message);
  });

  it("with a dedupe window of 0, acks are durable but no key is remembered", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.UTC(2026, 0, 1));
    const s = await open(0);
    const { message } = await s.queue.enqueue(inbound("k", { n: 1 }));
    await s.queue.ack(message.id);
    vi.setSystemTime(Date.UTC(2026, 0, 1) + 1);
    const again = await s.queue.enqueue(inbound("k", { n: 2 }));
    expect(again.duplicate).toBe(false);
    const reopened = await open(0);
    expect((await reopened.queue.pending()).map((m) => m.id)).toEqual([again.message.id]);
  });

  it("cuts a torn last line of an acked file: the acks before it hold, the torn one is pending again", async () => {
    const s = await open();
    const a = await s.queue.enqueue(inbound("a"));
    const b = await s.queue.enqueue(inbound("b"));
    await s.queue.ack(a.message.id);
    await s.close();
    const [file] = await ackedFiles();
    const name = `${QUEUE_ACKED_DIR}/${file}`;
    // A crash while writing b's ack: half a line.
    await writeFile(path.join(dir, name), `${await read(name)}{"op":"acked","message":{"id":"`);
    const reopened = await open();
    expect(recoveries.map((r) => [r.kind, r.file])).toEqual([["torn-tail-truncated", name]]);
    expect((await reopened.queue.pending()).map((m) => m.id)).toEqual([b.message.id]);
    expect((await reopened.queue.enqueue(inbound("a"))).duplicate).toBe(true);
  });

  it("refuses an acked file with a line that is not an ack, naming the file and byte", async () => {
    const s = await open();
    const { message } = await s.queue.enqueue(inbound("a"));
    await s.queue.ack(message.id);
    await s.close();
    const [file] = await ackedFiles();
    const name = `${QUEUE_ACKED_DIR}/${file}`;
    await writeFile(path.join(dir, name), `{"op":"nonsense"}\n${await read(name)}`);
    const broken = createFsStore({ dir, fsync: false });
    await expect(broken.open()).rejects.toMatchObject({
      code: "STORE_CORRUPT",
      message: expect.stringContaining(`${name} at byte 0`),
    });
  });
});

// ------------------------------------------------------------------ the earlier format

const HOUR = 3_600_000;

/** A `queue.jsonl` as the earlier format wrote it: acks and acked messages in the log. */
function legacyQueueLog(now: number): string {
  const msg = (n: number, key: string, deliveries = 0) => ({
    id: String(n).padStart(16, "0"),
    idempotencyKey: key,
    sessionKey: "agent:main:main",
    payload: { text: `message ${n}` },
    enqueuedAt: now - 2 * HOUR,
    deliveries,
  });
  return [
    // After a compaction: the id counter and the acks then inside the window.
    { op: "counter", nextId: 6 },
    { op: "acked", message: msg(1, "acked-long-ago"), at: now - 25 * HOUR },
    { op: "acked", message: msg(2, "acked-recently", 1), at: now - HOUR },
    // Then: two pending messages, one delivered, one of them acked since.
    { op: "enqueue", message: msg(6, "pending") },
    { op: "enqueue", message: msg(7, "acked-after") },
    { op: "deliver", ids: [msg(6, "").id, msg(7, "").id] },
    { op: "ack", id: msg(7, "").id, at: now - 1_000 },
    { op: "enqueue", message: msg(8, "discarded") },
    { op: "discard", id: msg(8, "").id },
  ]
    .map((line) => `${JSON.stringify(line)}\n`)
    .join("");
}

async function writeLegacyStore(now: number, tail = ""): Promise<string> {
  const marker = {
    format: "beamclaw-store-fs",
    version: 1,
    createdAt: new Date(now).toISOString(),
  };
  await writeFile(path.join(dir, "beamclaw-store.json"), `${JSON.stringify(marker, null, 2)}\n`);
  const log = legacyQueueLog(now) + tail;
  await writeFile(path.join(dir, "queue.jsonl"), log);
  return log;
}

describe("a store written in the earlier format", () => {
  it("opens with every pending message, every remembered key and its payload; the log is migrated", async () => {
    const now = Date.now();
    await writeLegacyStore(now, '{"op":"ack","id":"00000');
    const s = await open();
    // The torn tail of the old log is repaired as always.
    expect(recoveries.map((r) => [r.kind, r.file])).toEqual([
      ["torn-tail-truncated", "queue.jsonl"],
    ]);
    expect(await s.queue.pending()).toEqual([
      expect.objectContaining({ id: "0000000000000006", idempotencyKey: "pending", deliveries: 1 }),
    ]);
    // Acks inside the 24 h window are duplicates, with their original message.
    expect(await s.queue.enqueue(inbound("acked-recently"))).toEqual({
      duplicate: true,
      message: expect.objectContaining({
        id: "0000000000000002",
        payload: { text: "message 2" },
        deliveries: 1,
      }),
    });
    expect(await s.queue.enqueue(inbound("acked-after"))).toEqual({
      duplicate: true,
      message: expect.objectContaining({ id: "0000000000000007", deliveries: 1 }),
    });
    // Outside the window, or discarded: forgotten.
    expect((await s.queue.enqueue(inbound("acked-long-ago"))).duplicate).toBe(false);
    const retried = await s.queue.enqueue(inbound("discarded"));
    expect(retried.duplicate).toBe(false);
    // Ids continue after the old counter.
    expect(Number(retried.message.id)).toBeGreaterThan(8);

    // Migrated: the log holds no ack lines any more; the acks are in an acked file.
    const ops = (await jsonl("queue.jsonl")).map((l) => l.op);
    expect(ops).not.toContain("ack");
    expect(ops).not.toContain("acked");
    const files = await ackedFiles();
    expect(files).toEqual([`${now - HOUR}.jsonl`]);
    expect(
      (await jsonl(`${QUEUE_ACKED_DIR}/${files[0]}`)).map((l) => (l.message as { id: string }).id),
    ).toEqual(["0000000000000002", "0000000000000007"]);

    // The same after reopening.
    const again = await open();
    expect((await again.queue.pending()).map((m) => m.idempotencyKey)).toEqual([
      "pending",
      "acked-long-ago",
      "discarded",
    ]);
    expect((await again.queue.enqueue(inbound("acked-recently"))).duplicate).toBe(true);
  });

  it("a crash half-way through the migration (acked file written, old log not yet replaced) is repaired by migrating again", async () => {
    const now = Date.now();
    const log = await writeLegacyStore(now);
    const backup = path.join(dir, "..", `${path.basename(dir)}-old-queue.jsonl`);
    await writeFile(backup, log);
    try {
      await open();
      await store!.close();
      // The acked file survived, the old log is back as it was.
      expect(await ackedFiles()).toHaveLength(1);
      await copyFile(backup, path.join(dir, "queue.jsonl"));

      const s = await open();
      expect(await ackedFiles()).toHaveLength(1);
      expect((await s.queue.pending()).map((m) => m.idempotencyKey)).toEqual(["pending"]);
      expect((await s.queue.enqueue(inbound("acked-recently"))).message.payload).toEqual({
        text: "message 2",
      });
      expect((await s.queue.enqueue(inbound("acked-after"))).duplicate).toBe(true);
      expect(recoveries).toEqual([]);
    } finally {
      await removeDir(backup);
    }
  });
});
