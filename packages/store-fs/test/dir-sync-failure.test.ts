/**
 * A directory fsync that fails (EIO) after the change it was to make durable is already
 * visible (a file deleted, a file created and written): the operation rejects, and the store
 * must not go on answering from memory as if the change had not happened. Either the store
 * stops (`STORE_UNAVAILABLE` for everything until reopened, as after a failed rename's
 * directory fsync), or what it answers matches the disk. The failure is injected by making
 * the `fsync` of one directory fail.
 */
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { BeamClawError } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await tempDir();
  store = createFsStore({ dir });
  await store.open();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await store.close();
  await removeDir(dir);
});

/** Makes every fsync of directory `target` fail with EIO from now on. */
function failDirSync(target: string): void {
  const open = fs.open.bind(fs) as (...args: unknown[]) => Promise<FileHandle>;
  vi.spyOn(fs, "open").mockImplementation((async (...args: unknown[]) => {
    const handle = await open(...args);
    if (args[0] === target) {
      const eio = Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
      handle.sync = () => Promise.reject(eio);
    }
    return handle;
  }) as never);
}

async function outcome<T>(promise: Promise<T>): Promise<T | string> {
  return promise.catch((error: unknown) => {
    expect(BeamClawError.isInstance(error), String(error)).toBe(true);
    return (error as BeamClawError).code;
  });
}

describe("a directory fsync fails after the change is visible", () => {
  it("devices.deleteToken: a token whose file is gone is not handed out from memory", async () => {
    await store.devices.putToken({ tokenHash: "h", deviceId: "d" });
    failDirSync(path.join(dir, "device-tokens"));
    const error = await store.devices.deleteToken("h").catch((e: unknown) => e);
    expect((error as BeamClawError).code).toBe("STORE_UNAVAILABLE");
    expect((error as Error).message).toContain(path.join("device-tokens", "h.json"));
    vi.restoreAllMocks();
    const token = await outcome(store.devices.getToken("h"));
    expect(token === undefined || token === "STORE_UNAVAILABLE", JSON.stringify(token)).toBe(true);
  });

  it("cron.deleteJob: a job whose file is gone is not listed from memory", async () => {
    await store.cron.putJob({ id: "nightly", agentId: "main" });
    failDirSync(path.join(dir, "cron", "jobs"));
    expect(await outcome(store.cron.deleteJob("nightly"))).toBe("STORE_UNAVAILABLE");
    vi.restoreAllMocks();
    const job = await outcome(store.cron.getJob("nightly"));
    expect(job === undefined || job === "STORE_UNAVAILABLE", JSON.stringify(job)).toBe(true);
  });

  it("cron.appendRun: a first run whose append rejected is not in the run log", async () => {
    await store.cron.putJob({ id: "nightly", agentId: "main" });
    await fs.mkdir(path.join(dir, "cron", "runs"), { recursive: true });
    failDirSync(path.join(dir, "cron", "runs"));
    expect(await outcome(store.cron.appendRun({ jobId: "nightly", startedAt: 1 }))).toBe(
      "STORE_UNAVAILABLE",
    );
    vi.restoreAllMocks();
    const runs = await outcome(store.cron.listRuns("nightly"));
    expect(
      runs === "STORE_UNAVAILABLE" || (Array.isArray(runs) && runs.length === 0),
      JSON.stringify(runs),
    ).toBe(true);
  });
});
