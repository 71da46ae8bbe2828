/**
 * Open and close: nothing touches the disk before `open()`; `open()` is idempotent; `close()`
 * lets operations in flight finish, releases every file descriptor and the lock, and the
 * store can be opened again.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore } from "../src/index.js";
import { removeDir, removeStoreModule, storeModule, tempDir } from "./support.js";

let root: string;

beforeEach(async () => {
  root = await tempDir();
});

afterEach(async () => {
  await removeDir(root);
});

afterAll(async () => {
  await removeStoreModule();
});

/** Open file descriptors of this process (Linux). */
const openFds = async () => (await readdir("/proc/self/fd")).length;

describe("lifecycle", () => {
  it("importing the package and creating a store start nothing: no handle, no file", async () => {
    const module = await storeModule();
    const dir = path.join(root, "never-opened");
    const script = `
      const before = process.getActiveResourcesInfo().length;
      const { createFsStore } = await import(${JSON.stringify(module)});
      createFsStore({ dir: ${JSON.stringify(dir)} });
      await new Promise((r) => setImmediate(r));
      console.log(JSON.stringify(process.getActiveResourcesInfo().slice(before)));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, [
      "--input-type=module",
      "-e",
      script,
    ]);
    expect(JSON.parse(stdout)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });

  it("creating a store touches nothing on disk; open() creates the directory", async () => {
    const dir = path.join(root, "nested", "store");
    const store = createFsStore({ dir });
    expect(existsSync(dir)).toBe(false);
    expect(store.dir).toBe(dir);
    await store.open();
    expect(existsSync(path.join(dir, "beamclaw-store.json"))).toBe(true);
    await store.close();
  });

  it("open() is idempotent, also when called twice at once", async () => {
    const store = createFsStore({ dir: root });
    await Promise.all([store.open(), store.open()]);
    await store.open();
    await store.kv.set("k", 1);
    await store.close();
  });

  it("close() lets operations in flight finish: everything it was racing is stored", async () => {
    const store = createFsStore({ dir: root });
    await store.open();
    const writes = Array.from({ length: 100 }, (_, i) =>
      store.sessions.put({ key: `agent:main:s${i}`, agentId: "main", createdAt: 1, updatedAt: i }),
    );
    const appends = Array.from({ length: 20 }, (_, i) =>
      store.transcripts.append("agent:main:s0", [{ i }]),
    );
    await store.close();
    await Promise.all([...writes, ...appends]);
    await store.open();
    expect(await store.sessions.count()).toBe(100);
    expect(await store.transcripts.lastSeq("agent:main:s0")).toBe(20);
    await store.close();
  });

  it("close() releases every file descriptor and the lock, and the store opens again", async () => {
    const before = await openFds();
    const store = createFsStore({ dir: root });
    await store.open();
    // Touch every kind of file, including more transcripts than the handle cache keeps.
    for (let i = 0; i < 40; i++) {
      await store.transcripts.append(`agent:a${i % 3}:s${i}`, [{ i }]);
      await store.sessions.put({
        key: `agent:a${i % 3}:s${i}`,
        agentId: "a",
        createdAt: 1,
        updatedAt: i,
      });
    }
    await store.queue.enqueue({ idempotencyKey: "k", sessionKey: "s", payload: {} });
    await store.kv.set("k", 1);
    await store.locks.acquire("l", { owner: "o", ttlMs: 1000 });
    await store.cron.appendRun({ jobId: "j", startedAt: 1 });
    expect(await openFds()).toBeGreaterThan(before);
    await store.close();
    expect(await openFds()).toBe(before);
    expect(existsSync(path.join(root, "store.lock"))).toBe(false);

    await store.open();
    expect(await store.transcripts.lastSeq("agent:a0:s0")).toBe(1);
    await store.close();
    expect(await openFds()).toBe(before);
  });
});
