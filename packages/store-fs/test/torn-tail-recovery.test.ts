/**
 * Torn-write recovery: a crash mid-append leaves a partial last line (or the first lines of a
 * multi-entry transcript append). On open (or on a transcript's first touch) those bytes are
 * cut, reported through `onRecovery` and `store.recoveries`, and never read; everything
 * before them is intact and later writes continue cleanly. Anything else that does not parse
 * is corruption: STORE_CORRUPT naming the file, and the file left as it was.
 */
import { appendFile, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { StoreError } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore, type FsStoreRecovery } from "../src/index.js";
import { removeDir, snapshot, tempDir } from "./support.js";

let dir: string;
let recoveries: FsStoreRecovery[];
const opened: FsStore[] = [];

async function open(onRecovery?: (r: FsStoreRecovery) => void): Promise<FsStore> {
  const store = createFsStore({
    dir,
    onRecovery: onRecovery ?? ((r) => recoveries.push(r)),
  });
  opened.push(store);
  await store.open();
  return store;
}

async function reopen(store: FsStore): Promise<FsStore> {
  await store.close();
  return open();
}

const session = (key: string, updatedAt: number) => ({
  key,
  agentId: "main",
  createdAt: 1,
  updatedAt,
});

beforeEach(async () => {
  dir = await tempDir();
  recoveries = [];
});

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  await removeDir(dir);
});

describe("torn-tail recovery", () => {
  it("cuts a partial last line of a session log on open, keeps every record before it, and reports it", async () => {
    let store = await open();
    await store.sessions.put(session("agent:main:a", 1));
    await store.sessions.put(session("agent:main:b", 2));
    await store.close();
    const file = path.join(dir, "agents/main/sessions.jsonl");
    const intact = (await stat(file)).size;
    await appendFile(file, '{"op":"put","record":{"key":"agent:main:c","agentI');

    store = await open();
    expect((await store.sessions.list()).items.map((r) => r.key)).toEqual([
      "agent:main:b",
      "agent:main:a",
    ]);
    expect(recoveries).toEqual([
      {
        kind: "torn-tail-truncated",
        file: "agents/main/sessions.jsonl",
        bytes: 50,
        detail: expect.stringContaining("torn write"),
      },
    ]);
    expect(store.recoveries).toEqual(recoveries);
    expect((await stat(file)).size).toBe(intact);

    // Writes continue on a clean line boundary, and the next open needs no repair.
    await store.sessions.put(session("agent:main:c", 3));
    store = await reopen(store);
    expect(await store.sessions.count()).toBe(3);
    expect(store.recoveries).toEqual([]);
  });

  it("cuts a last line that is complete but not JSON (a power loss can leave zeros)", async () => {
    let store = await open();
    await store.kv.set("k", 1);
    await store.close();
    await appendFile(path.join(dir, "kv.jsonl"), "\0\0\0\0\0\0\n");
    store = await open();
    expect(await store.kv.get("k")).toBe(1);
    expect(recoveries).toEqual([
      expect.objectContaining({ kind: "torn-tail-truncated", file: "kv.jsonl", bytes: 7 }),
    ]);
  });

  it("repairs a transcript on its first touch: a torn line is cut and numbering continues from the last whole entry", async () => {
    let store = await open();
    await store.transcripts.append("agent:main:main", [{ n: 1 }, { n: 2 }]);
    await store.close();
    const file = path.join(dir, "agents/main/transcripts/agent+main+main.jsonl");
    await appendFile(file, '{"seq":3,"entry":{"n":');

    store = await open();
    expect(recoveries).toEqual([]); // not touched yet
    expect(await store.transcripts.lastSeq("agent:main:main")).toBe(2);
    expect(recoveries).toEqual([
      expect.objectContaining({
        kind: "torn-tail-truncated",
        file: "agents/main/transcripts/agent+main+main.jsonl",
        bytes: 22,
      }),
    ]);
    expect(await store.transcripts.append("agent:main:main", [{ n: 3 }])).toBe(3);
    store = await reopen(store);
    expect((await store.transcripts.read("agent:main:main")).map((r) => r.entry)).toEqual([
      { n: 1 },
      { n: 2 },
      { n: 3 },
    ]);
  });

  it("cuts the whole of a multi-entry transcript append that a crash cut short: appends are all or nothing", async () => {
    let store = await open();
    await store.transcripts.append("agent:main:main", [{ n: 1 }]);
    await store.close();
    const file = path.join(dir, "agents/main/transcripts/agent+main+main.jsonl");
    const before = await readFile(file, "utf8");
    // Two whole lines of a three-entry append reached the file; the third did not.
    await appendFile(
      file,
      '{"seq":2,"entry":{"n":2},"more":true}\n{"seq":3,"entry":{"n":3},"more":true}\n{"seq":4,',
    );

    store = await open();
    expect(await store.transcripts.read("agent:main:main")).toEqual([{ seq: 1, entry: { n: 1 } }]);
    expect(await readFile(file, "utf8")).toBe(before);
    expect(recoveries[0]?.detail).toContain("more:true");
    expect(await store.transcripts.append("agent:main:main", [{ n: 2 }])).toBe(2);
  });

  it("cuts a torn last line of the queue log: every message acknowledged before it is still pending", async () => {
    let store = await open();
    const a = await store.queue.enqueue({ idempotencyKey: "a", sessionKey: "s", payload: {} });
    const b = await store.queue.enqueue({ idempotencyKey: "b", sessionKey: "s", payload: {} });
    await store.close();
    await appendFile(path.join(dir, "queue.jsonl"), '{"op":"ack","id":"');
    store = await open();
    expect((await store.queue.pending()).map((m) => m.id)).toEqual([a.message.id, b.message.id]);
    expect(recoveries.map((r) => r.file)).toEqual(["queue.jsonl"]);
  });

  it("cuts torn last lines of the lock log and of a cron run log", async () => {
    let store = await open();
    const lease = (await store.locks.acquire("l", { owner: "o", ttlMs: 60_000 }))!;
    await store.cron.appendRun({ jobId: "j", startedAt: 1 });
    await store.close();
    await appendFile(path.join(dir, "locks.jsonl"), '{"op":"lease","name":"l","ow');
    await appendFile(path.join(dir, "cron/runs/j.jsonl"), '{"jobId":"j","star');
    store = await open();
    expect(await store.locks.holder("l")).toEqual(lease);
    expect(await store.cron.listRuns("j")).toEqual([{ jobId: "j", startedAt: 1 }]);
    expect(recoveries.map((r) => r.file).sort()).toEqual(["cron/runs/j.jsonl", "locks.jsonl"]);
  });

  it("removes temp files left by interrupted atomic writes, and the files they were replacing are intact", async () => {
    let store = await open();
    await store.cron.putJob({ id: "j", agentId: "main", v: 1 });
    await store.close();
    await writeFile(path.join(dir, "tmp", "123-abc-1-j.json"), '{"id":"j","agentId":"main","v":2');
    store = await open();
    expect(await store.cron.getJob("j")).toEqual({ id: "j", agentId: "main", v: 1 });
    expect(recoveries).toEqual([
      expect.objectContaining({ kind: "temp-files-removed", file: "tmp" }),
    ]);
    expect((await snapshot(path.join(dir, "tmp"))).size).toBe(0);
  });

  it("a throwing onRecovery callback does not stop the repair or the open", async () => {
    let store = await open();
    await store.kv.set("k", 1);
    await store.close();
    await appendFile(path.join(dir, "kv.jsonl"), '{"op":"se');
    store = await open(() => {
      throw new Error("callback bug");
    });
    expect(await store.kv.get("k")).toBe(1);
    expect(store.recoveries).toHaveLength(1);
  });

  it("a bad line that is not the last is corruption: STORE_CORRUPT names the file and line, and nothing is modified", async () => {
    let store = await open();
    await store.sessions.put(session("agent:main:a", 1));
    await store.sessions.put(session("agent:main:b", 2));
    await store.close();
    const file = path.join(dir, "agents/main/sessions.jsonl");
    const lines = (await readFile(file, "utf8")).split("\n");
    lines[0] = "{ this is not json";
    await writeFile(file, lines.join("\n"));
    const before = await snapshot(dir);

    store = createFsStore({ dir });
    const error = await store.open().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(StoreError.isInstance(error)).toBe(true);
    expect((error as StoreError).code).toBe("STORE_CORRUPT");
    expect((error as StoreError).message).toContain("agents/main/sessions.jsonl:1");
    const after = await snapshot(dir);
    after.delete("store.lock");
    before.delete("store.lock");
    expect(after).toEqual(before);
    // The refused open released its lock: a fixed file opens.
    lines[0] = JSON.stringify({ op: "put", record: session("agent:main:a", 1) });
    await writeFile(file, lines.join("\n"));
    store = await open();
    expect(await store.sessions.count()).toBe(2);
  });

  it("a transcript line with a wrong seq is corruption, reported when the transcript is read", async () => {
    let store = await open();
    await store.transcripts.append("agent:main:main", [{ n: 1 }, { n: 2 }]);
    await store.close();
    const file = path.join(dir, "agents/main/transcripts/agent+main+main.jsonl");
    await writeFile(file, '{"seq":1,"entry":{"n":1}}\n{"seq":7,"entry":{"n":2}}\n');
    store = await open();
    const error = await store.transcripts.read("agent:main:main").catch((e: unknown) => e);
    expect((error as StoreError).code).toBe("STORE_CORRUPT");
    expect((error as StoreError).message).toContain("agent+main+main.jsonl");
    // Other data stays available.
    expect(await store.transcripts.lastSeq("agent:main:other")).toBe(0);
  });
});
