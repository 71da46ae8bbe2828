/**
 * `cron.runs` lists whole run logs, however long the service keeps them (`runLogKeep` over
 * the default 200, or over 1000, the most a store lists at once): the gateway reads each log by
 * pages, so `total`, `hasMore` and the entries past the first 1000 (one job) or past each job's
 * newest 200 (`scope: "all"`) are those of the logs, over a real socket.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  type Stack,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const BASE = Date.parse("2026-01-01T00:00:00Z");

/** Adds a job over the wire; resolves with its id. */
async function addJob(client: TestClient, name: string): Promise<string> {
  const job = await client.request("cron.add", {
    name,
    schedule: { kind: "every", everyMs: 3_600_000 },
    sessionTarget: "isolated",
    wakeMode: "now",
    payload: { kind: "agentTurn", message: "tick" },
  });
  return job.id;
}

/**
 * Logs `count` runs of `jobId` (`<prefix>-0` the oldest), one every `stepMs` from `BASE + at`,
 * as a service with `runLogKeep: 5000` logs them.
 */
async function logRuns(
  stack: Stack,
  jobId: string,
  prefix: string,
  count: number,
  { at = 0, stepMs = 1000 }: { at?: number; stepMs?: number } = {},
): Promise<void> {
  for (let i = 0; i < count; i++) {
    const startedAt = BASE + at + i * stepMs;
    await stack.store.cron.appendRun(
      {
        jobId,
        agentId: "main",
        runId: `${prefix}-${i}`,
        trigger: "schedule",
        status: "ok",
        scheduledAt: startedAt,
        startedAt,
        finishedAt: startedAt + 10,
        durationMs: 10,
      },
      { keep: 5000 },
    );
  }
}

describe("cron.runs of run logs longer than a store's page", () => {
  it("counts and pages every run of one job, newest first", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const job = { id: await addJob(client, "often") };
    const total = 2345;
    await logRuns(stack, job.id, "run", total);
    const first = await client.request("cron.runs", { id: job.id, limit: 200 });
    expect(first).toMatchObject({ total, offset: 0, limit: 200, hasMore: true, nextOffset: 200 });
    expect(first.entries[0]).toMatchObject({ runId: `run-${total - 1}` });
    const last = await client.request("cron.runs", { id: job.id, limit: 200, offset: 2300 });
    expect(last).toMatchObject({ total, offset: 2300, hasMore: false });
    expect(last.entries.map((e: { runId: string }) => e.runId)).toEqual(
      Array.from({ length: total - 2300 }, (_, i) => `run-${total - 2301 - i}`),
    );
    const oldestFirst = await client.request("cron.runs", {
      id: job.id,
      limit: 1,
      sortDir: "asc",
    });
    expect(oldestFirst.entries).toEqual([expect.objectContaining({ runId: "run-0" })]);
  });

  it("counts and pages every run of every job with scope all", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const a = await addJob(client, "a");
    const b = await addJob(client, "b");
    // a: 1,100 runs, one a second; b: 250 runs, one every 10 s, all older than a's.
    await logRuns(stack, a, "a", 1100, { at: 10_000_000 });
    await logRuns(stack, b, "b", 250, { stepMs: 10_000 });
    const first = await client.request("cron.runs", { scope: "all", limit: 200 });
    expect(first).toMatchObject({ total: 1350, hasMore: true });
    expect(first.entries[0]).toMatchObject({ runId: "a-1099", jobName: "a" });
    const last = await client.request("cron.runs", { scope: "all", limit: 200, offset: 1300 });
    expect(last).toMatchObject({ total: 1350, hasMore: false });
    expect(last.entries.map((e: { runId: string }) => e.runId)).toEqual(
      Array.from({ length: 50 }, (_, i) => `b-${49 - i}`),
    );
  });
});
