/**
 * Bad input loses nothing: a refused operation (typed error, stable code) leaves every file
 * byte for byte as it was and the store fully usable; a directory that is not a store, or a
 * store from a newer version, is refused before anything is written; an I/O failure is a
 * `STORE_UNAVAILABLE` that writes nothing, and a failed log write stops the store (fail-stop)
 * without losing anything it acknowledged.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { BeamClawError, InvalidArgumentError, StoreError } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore, FsStore as FsStoreClass } from "../src/index.js";
import { removeDir, snapshot, tempDir } from "./support.js";

let dir: string;
const opened: FsStore[] = [];

async function open(): Promise<FsStore> {
  const store = createFsStore({ dir });
  opened.push(store);
  await store.open();
  return store;
}

async function rejection(promise: Promise<unknown>): Promise<BeamClawError> {
  try {
    await promise;
  } catch (error) {
    expect(BeamClawError.isInstance(error)).toBe(true);
    return error as BeamClawError;
  }
  throw new Error("expected a rejection");
}

beforeEach(async () => {
  dir = await tempDir();
});

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  await removeDir(dir);
});

describe("bad input loses nothing", () => {
  it("every refused write leaves every file byte for byte as it was, and the store keeps working", async () => {
    let store = await open();
    await store.sessions.put({
      key: "agent:main:main",
      agentId: "main",
      createdAt: 1,
      updatedAt: 1,
    });
    await store.transcripts.append("agent:main:main", [{ n: 1 }]);
    await store.kv.set("k", "v");
    await store.queue.enqueue({ idempotencyKey: "q", sessionKey: "s", payload: {} });
    await store.cron.putJob({ id: "j", agentId: "main" });
    await store.approvals.put("agent:main:main", { pattern: "p", decision: "allow", decidedAt: 1 });
    const before = await snapshot(dir);

    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const refused: Array<Promise<unknown>> = [
      store.sessions.put({
        key: "agent:main:main",
        agentId: "main",
        createdAt: 1,
        updatedAt: 2,
        x: cyclic as never,
      }),
      store.sessions.put({
        key: "agent:main:main",
        agentId: "main",
        createdAt: 1,
        updatedAt: Number.NaN,
      }),
      store.sessions.put({ key: "", agentId: "main", createdAt: 1, updatedAt: 1 }),
      store.transcripts.append("agent:main:main", [{ n: 2 }, { n: 3, when: new Date() as never }]),
      store.transcripts.append("agent:main:main", [{ n: 2 }, null as never]),
      store.kv.set("k", 10n as never),
      store.kv.set("k", "v2", { ttlMs: 0 }),
      store.kv.set("k", "v2", { fence: { lock: "never", token: 1 } }),
      store.queue.enqueue({ idempotencyKey: "q2", sessionKey: "s", payload: [] as never }),
      store.cron.putJob({ id: "j", agentId: "main", run: () => 1 } as never),
      store.cron.appendRun({ jobId: "j", startedAt: 1 }, { keep: 0 }),
      store.approvals.put("agent:main:main", {
        pattern: "p",
        decision: "maybe" as never,
        decidedAt: 2,
      }),
      store.devices.putToken({
        tokenHash: "h",
        deviceId: "d",
        expiresAt: Number.POSITIVE_INFINITY,
      }),
      store.locks.acquire("l", { owner: "o", ttlMs: -1 }),
      store.sessions.list({ limit: 5000 }),
      store.transcripts.read("agent:main:main", { order: "sideways" as never }),
    ];
    for (const [i, attempt] of refused.entries()) {
      const error = await rejection(attempt);
      expect(["INVALID_ARGUMENT", "FENCED"], `attempt #${i}: ${error.message}`).toContain(
        error.code,
      );
    }
    expect(await snapshot(dir)).toEqual(before);

    // Still usable, and the next write lands after the last acknowledged one.
    expect(await store.transcripts.append("agent:main:main", [{ n: 2 }])).toBe(2);
    await store.close();
    store = await open();
    expect((await store.sessions.get("agent:main:main"))?.updatedAt).toBe(1);
    expect((await store.transcripts.read("agent:main:main")).map((r) => r.entry)).toEqual([
      { n: 1 },
      { n: 2 },
    ]);
    expect(await store.kv.get("k")).toBe("v");
    expect((await store.queue.pending()).map((m) => m.idempotencyKey)).toEqual(["q"]);
  });

  it("a transcript append of an array with holes is refused, not written as a line that is not JSON", async () => {
    const store = await open();
    await store.transcripts.append("agent:main:main", [{ n: 1 }]);
    const before = await snapshot(dir);
    // biome-ignore lint/suspicious/noSparseArray: the hole is the bad input under test
    const sparse = [, { n: 2 }] as never;
    const error = await rejection(store.transcripts.append("agent:main:main", sparse));
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.message).toContain("entries[0]");
    expect(await snapshot(dir)).toEqual(before);
    expect(
      await store.transcripts.append("agent:main:main", new Array(1) as never).catch((e) => e.code),
    ).toBe("INVALID_ARGUMENT");
    expect((await store.transcripts.read("agent:main:main")).map((r) => r.entry)).toEqual([
      { n: 1 },
    ]);
  });

  it("refuses bad options in the constructor with InvalidArgumentError", () => {
    for (const options of [
      undefined,
      {},
      { dir: "" },
      { dir: 7 },
      { dir: "x", fsync: "yes" },
      { dir: "x", dedupeWindowMs: -1 },
      { dir: "x", onRecovery: "log" },
    ]) {
      expect(() => new FsStoreClass(options as never), JSON.stringify(options)).toThrow(
        InvalidArgumentError,
      );
    }
  });

  it("refuses a directory that holds other files, and writes nothing into it", async () => {
    await writeFile(path.join(dir, "notes.txt"), "my notes");
    const before = await snapshot(dir);
    const store = createFsStore({ dir });
    const error = await rejection(store.open());
    expect(error.code).toBe("INVALID_ARGUMENT");
    expect(error.message).toContain("notes.txt");
    const after = await snapshot(dir);
    expect(after).toEqual(before);
  });

  it("refuses a store written by a newer format version as STORE_CORRUPT, changing nothing", async () => {
    let store = await open();
    await store.kv.set("k", 1);
    await store.close();
    const marker = path.join(dir, "beamclaw-store.json");
    const content = JSON.parse(await readFile(marker, "utf8"));
    await writeFile(marker, JSON.stringify({ ...content, version: 99 }));
    const before = await snapshot(dir);
    store = createFsStore({ dir });
    const error = await rejection(store.open());
    expect(error.code).toBe("STORE_CORRUPT");
    expect(error.message).toContain("newer");
    expect(await snapshot(dir)).toEqual(before);
  });

  it("a job file renamed by hand is STORE_CORRUPT naming the file, not a silent duplicate", async () => {
    let store = await open();
    await store.cron.putJob({ id: "nightly", agentId: "main" });
    await store.close();
    await writeFile(
      path.join(dir, "cron/jobs/copy.json"),
      await readFile(path.join(dir, "cron/jobs/nightly.json")),
    );
    store = createFsStore({ dir });
    const error = await rejection(store.open());
    expect(error.code).toBe("STORE_CORRUPT");
    expect(error.message).toContain("cron/jobs/copy.json");
  });

  it("an I/O error on a transcript append is STORE_UNAVAILABLE, writes nothing, and the store carries on", async () => {
    const store = await open();
    // A file where the agent's transcripts folder should be: creating it fails.
    await mkdir(path.join(dir, "agents", "blocked"), { recursive: true });
    await writeFile(path.join(dir, "agents", "blocked", "transcripts"), "in the way");
    const error = await rejection(store.transcripts.append("agent:blocked:s", [{ n: 1 }]));
    expect(StoreError.isInstance(error)).toBe(true);
    expect(error.code).toBe("STORE_UNAVAILABLE");
    expect(await store.transcripts.lastSeq("agent:blocked:s")).toBe(0);
    await rm(path.join(dir, "agents", "blocked", "transcripts"));
    expect(await store.transcripts.append("agent:blocked:s", [{ n: 1 }])).toBe(1);
  });

  it("a failed log write stops the store (fail-stop): later operations are refused until it is reopened, and nothing acknowledged is lost", async () => {
    let store = await open();
    await store.sessions.put({ key: "agent:main:a", agentId: "main", createdAt: 1, updatedAt: 1 });
    // A file where the new agent's folder should be: its session log cannot be created.
    await writeFile(path.join(dir, "agents", "blocked"), "in the way");
    const error = await rejection(
      store.sessions.put({
        key: "agent:blocked:b",
        agentId: "blocked",
        createdAt: 1,
        updatedAt: 2,
      }),
    );
    expect(error.code).toBe("STORE_UNAVAILABLE");
    expect(error.message).toContain("agents/blocked/sessions.jsonl");
    expect(error.message).toContain("open it again");
    const later = await rejection(store.sessions.get("agent:main:a"));
    expect(later.code).toBe("STORE_UNAVAILABLE");
    await store.close();

    await rm(path.join(dir, "agents", "blocked"));
    store = await open();
    expect((await store.sessions.list()).items.map((r) => r.key)).toEqual(["agent:main:a"]);
    await store.sessions.put({
      key: "agent:blocked:b",
      agentId: "blocked",
      createdAt: 1,
      updatedAt: 2,
    });
    expect(await store.sessions.count()).toBe(2);
  });
});
