/**
 * Values too large to store: every stored line is one JavaScript string, which cannot be longer
 * than `buffer.constants.MAX_STRING_LENGTH` (about 512 MiB of one-byte text). A write whose
 * line would not fit is bad input: `InvalidArgumentError`, nothing written, nothing changed in
 * memory either (a read does not see it, a retry is not a "duplicate" of it). It is not a
 * retryable `STORE_UNAVAILABLE`, which would have the caller try again forever.
 */
import { constants } from "node:buffer";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { BeamClawError } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, snapshot, tempDir } from "./support.js";

let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await tempDir();
  store = createFsStore({ dir, fsync: false });
  await store.open();
});

afterEach(async () => {
  await store.close();
  await removeDir(dir);
});

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(BeamClawError.isInstance(error), String(error)).toBe(true);
  return (error as BeamClawError).code;
}

/** A string such that `JSON.stringify(wrap(s))` is `room` characters short of the limit. */
function filler(wrap: (s: string) => unknown, room: number): string {
  const overhead = JSON.stringify(wrap("")).length;
  return "x".repeat(constants.MAX_STRING_LENGTH - overhead - room);
}

describe("a value too large to store", () => {
  it("kv.set: a key and a value that each fit but not together are refused, and nothing changes", async () => {
    await store.kv.set("small", 1);
    const before = await snapshot(dir);
    const key = "k".repeat(2 ** 28);
    const value = "v".repeat(2 ** 28);
    const code = await codeOf(store.kv.set(key, value));
    // (Compared as booleans: a failing assertion must not print half a gigabyte.)
    expect((await store.kv.get(key)) === undefined).toBe(true);
    expect(await store.kv.keys("k")).toEqual([]);
    expect(await snapshot(dir)).toEqual(before);
    expect(code).toBe("INVALID_ARGUMENT");
    await store.kv.set("small", 2);
    expect(await store.kv.get("small")).toBe(2);
  }, 60_000);

  it("sessions.put: a record whose JSON just fits but whose log line does not is refused, and nothing changes", async () => {
    const base = { key: "agent:a:s", agentId: "a", createdAt: 1, updatedAt: 1 };
    await store.sessions.put(base);
    const v = filler((s) => ({ ...base, updatedAt: 2, v: s }), 4);
    const code = await codeOf(store.sessions.put({ ...base, updatedAt: 2, v } as never));
    expect((await store.sessions.get("agent:a:s"))?.updatedAt).toBe(1);
    expect(await store.sessions.count()).toBe(1);
    expect(code).toBe("INVALID_ARGUMENT");
  }, 60_000);

  it("queue.enqueue: a payload too large for its line is refused, and a retry is not answered as a duplicate", async () => {
    const v = filler((s) => ({ v: s }), 8);
    const input = { idempotencyKey: "big", sessionKey: "s", payload: { v } };
    const code = await codeOf(store.queue.enqueue(input));
    const retry = await store.queue.enqueue({
      idempotencyKey: "big",
      sessionKey: "s",
      payload: { small: true },
    });
    expect(retry.duplicate).toBe(false);
    expect(retry.message.payload.small === true).toBe(true);
    expect(code).toBe("INVALID_ARGUMENT");
  }, 60_000);

  it("two large writes at once that each fit are both stored: a group commit does not join them into one string", async () => {
    const value = "v".repeat(2 ** 28);
    await Promise.all([store.kv.set("a", value), store.kv.set("b", value)]);
    expect((await store.kv.get<string>("a"))?.length).toBe(2 ** 28);
    expect((await store.kv.get<string>("b"))?.length).toBe(2 ** 28);
    await store.kv.set("c", 1);
    expect((await stat(path.join(dir, "kv.jsonl"))).size).toBeGreaterThan(2 ** 29);
  }, 120_000);

  it("compaction of a log whose live records together exceed a string's length succeeds, and the writes that set it off resolve", async () => {
    const big = "b".repeat(2 ** 27);
    for (let i = 0; i < 5; i++) {
      await store.sessions.put({
        key: `agent:a:big${i}`,
        agentId: "a",
        createdAt: 1,
        updatedAt: 1,
        big,
      } as never);
    }
    // Enough dead lines to compact (at least 1000, more than the live sessions).
    for (let i = 0; i < 1010; i++) {
      await store.sessions.put({ key: "agent:a:small", agentId: "a", createdAt: 1, updatedAt: i });
    }
    expect(await store.sessions.count()).toBe(6);
    const log = await readFile(path.join(dir, "agents", "a", "sessions.jsonl"));
    let lines = 0;
    for (let at = log.indexOf(0x0a); at !== -1; at = log.indexOf(0x0a, at + 1)) lines++;
    expect(lines).toBeLessThan(100);
  }, 120_000);
});
