/**
 * The inbound queue's dedupe window is exact: an idempotency key acknowledged less than
 * `dedupeWindowMs` ago is a duplicate, one acknowledged `dedupeWindowMs` or more ago is a
 * new message, so `dedupeWindowMs: 0` remembers nothing after `ack` (as the README and the
 * Store contract say), even within the same millisecond. The clock is frozen (`Date` only)
 * so the boundary is hit exactly, in memory and after a reopen.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
let store: FsStore | undefined;

beforeEach(async () => {
  dir = await tempDir();
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(1_700_000_000_000);
});

afterEach(async () => {
  vi.useRealTimers();
  await store?.close();
  store = undefined;
  await removeDir(dir);
});

async function open(dedupeWindowMs: number): Promise<FsStore> {
  await store?.close();
  store = createFsStore({ dir, fsync: false, dedupeWindowMs });
  await store.open();
  return store;
}

const message = { idempotencyKey: "tg:42", sessionKey: "agent:main:main", payload: { n: 1 } };

describe("the dedupe window boundary", () => {
  it("dedupeWindowMs 0: a key acknowledged in this very millisecond is not a duplicate", async () => {
    const s = await open(0);
    const first = await s.queue.enqueue(message);
    await s.queue.ack(first.message.id);
    const again = await s.queue.enqueue(message);
    expect(again.duplicate).toBe(false);
    expect(again.message.id).not.toBe(first.message.id);
    expect((await s.queue.pending()).map((m) => m.id)).toEqual([again.message.id]);
  });

  it("dedupeWindowMs 0: nothing acknowledged is remembered across a reopen", async () => {
    const s = await open(0);
    const first = await s.queue.enqueue(message);
    await s.queue.ack(first.message.id);
    const reopened = await open(0);
    const again = await reopened.queue.enqueue(message);
    expect(again.duplicate).toBe(false);
    expect(again.message.id).not.toBe(first.message.id);
  });

  it("a key is a duplicate until exactly dedupeWindowMs after its ack, then new", async () => {
    const window = 60_000;
    const s = await open(window);
    const t0 = Date.now();
    const first = await s.queue.enqueue(message);
    await s.queue.ack(first.message.id);
    vi.setSystemTime(t0 + window - 1);
    const late = await s.queue.enqueue(message);
    expect(late).toEqual({ message: first.message, duplicate: true });
    vi.setSystemTime(t0 + window);
    const after = await s.queue.enqueue(message);
    expect(after.duplicate).toBe(false);
    expect(after.message.id).not.toBe(first.message.id);
  });

  it("after a reopen, the same boundary holds", async () => {
    const window = 60_000;
    const s = await open(window);
    const t0 = Date.now();
    const first = await s.queue.enqueue(message);
    await s.queue.ack(first.message.id);
    vi.setSystemTime(t0 + window - 1);
    const reopened = await open(window);
    expect((await reopened.queue.enqueue(message)).duplicate).toBe(true);
    vi.setSystemTime(t0 + window);
    const again = await open(window);
    expect((await again.queue.enqueue(message)).duplicate).toBe(false);
  });
});
