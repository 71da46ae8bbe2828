/**
 * `cron.runs` for one job lists its whole run log, however long the service keeps it
 * (`runLogKeep` over 1000, the most a store lists at once): the gateway reads the log by pages,
 * so `total`, `hasMore` and the entries past the first 1000 are those of the log, over a real
 * socket.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
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

describe("cron.runs of a job with a run log longer than a store's page", () => {
  it("counts and pages every run, newest first", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const job = await client.request("cron.add", {
      name: "often",
      schedule: { kind: "every", everyMs: 3_600_000 },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "tick" },
    });
    // 2,345 runs logged, as a service with `runLogKeep: 5000` logs them.
    const total = 2345;
    const base = Date.parse("2026-01-01T00:00:00Z");
    for (let i = 0; i < total; i++) {
      await stack.store.cron.appendRun(
        {
          jobId: job.id,
          agentId: "main",
          runId: `run-${i}`,
          trigger: "schedule",
          status: "ok",
          scheduledAt: base + i * 1000,
          startedAt: base + i * 1000,
          finishedAt: base + i * 1000 + 10,
          durationMs: 10,
        },
        { keep: 5000 },
      );
    }
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
});
