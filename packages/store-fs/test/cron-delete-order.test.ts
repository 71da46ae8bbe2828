/**
 * `cron.deleteJob` takes effect in call order with the job's other operations, its run log's
 * included: a run appended after `deleteJob` was called is kept (as in every other store),
 * one appended before it is deleted with the job, even while an earlier `putJob` of the job
 * is still being written.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore, type FsStore } from "../src/index.js";
import { removeDir, tempDir } from "./support.js";

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

const job = { id: "nightly", agentId: "main", schedule: "0 3 * * *" };

describe("cron.deleteJob racing the job's run log", () => {
  it("keeps a run appended after deleteJob was called, and deletes the ones before", async () => {
    await store.cron.putJob(job);
    await store.cron.appendRun({ jobId: "nightly", startedAt: 1 });
    // The job's queue is busy with this put when deleteJob is called; its run log is not.
    const put = store.cron.putJob({ ...job, schedule: "0 4 * * *" });
    const before = store.cron.appendRun({ jobId: "nightly", startedAt: 2 });
    const deleted = store.cron.deleteJob("nightly");
    const after = store.cron.appendRun({ jobId: "nightly", startedAt: 3 });
    await Promise.all([put, before, after]);
    expect(await deleted).toBe(true);

    expect(await store.cron.getJob("nightly")).toBeUndefined();
    expect(await store.cron.listRuns("nightly")).toEqual([{ jobId: "nightly", startedAt: 3 }]);

    // The same on disk.
    await store.close();
    await store.open();
    expect(await store.cron.getJob("nightly")).toBeUndefined();
    expect(await store.cron.listRuns("nightly")).toEqual([{ jobId: "nightly", startedAt: 3 }]);
  });

  it("a job put again after deleteJob keeps the runs appended after it", async () => {
    await store.cron.putJob(job);
    const put = store.cron.putJob({ ...job, schedule: "0 4 * * *" });
    const deleted = store.cron.deleteJob("nightly");
    const recreated = store.cron.putJob({ ...job, schedule: "0 5 * * *" });
    const run = store.cron.appendRun({ jobId: "nightly", startedAt: 10 });
    await Promise.all([put, deleted, recreated, run]);

    expect(await store.cron.getJob("nightly")).toEqual({ ...job, schedule: "0 5 * * *" });
    expect(await store.cron.listRuns("nightly")).toEqual([{ jobId: "nightly", startedAt: 10 }]);
  });
});
