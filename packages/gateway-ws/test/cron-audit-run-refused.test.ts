/**
 * `cron.run` answers `ran: true` only for a run that started: a one-shot `at` job that
 * already ran is refused with `CRON_JOB_COMPLETED` (core's `runNow` refuses it), not
 * reported as run while nothing happens. Over real sockets.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  waitFor,
} from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

describe("cron.run on a job core will not run", () => {
  it("a one-shot job that already ran is refused with CRON_JOB_COMPLETED, and runs no more", async () => {
    const stack = await startStack({
      cron: true,
      responses: [{ text: "once" }, { text: "twice" }],
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const added = await client.request("cron.add", {
      name: "Once",
      // In the past: it runs at once, once.
      schedule: { kind: "at", at: new Date(Date.now() - 60_000).toISOString() },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "run once" },
    });
    const service = await stack.cron!.forAgent("main");
    await waitFor("the one run to finish", async () =>
      (await service.get(added.id)).state.completedAt === undefined ? undefined : true,
    );
    const error = await rpcError(client.request("cron.run", { id: added.id, mode: "force" }));
    expect(error).toMatchObject({
      code: "INVALID_REQUEST",
      details: { code: "CRON_JOB_COMPLETED", jobId: added.id },
    });
    const { entries } = await client.request("cron.runs", { id: added.id });
    expect(entries.map((e: { status: string }) => e.status)).toEqual(["ok"]);
    expect((await service.get(added.id)).state.runCount).toBe(1);
  });

  it("a job already running is refused with CRON_JOB_RUNNING; the first run goes on", async () => {
    const hangs = {
      events: [
        { type: "response-start" as const, model: "m1" },
        { type: "wait" as const, until: new Promise<never>(() => {}) },
      ],
    };
    const stack = await startStack({ cron: true, responses: [hangs] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const added = await client.request("cron.add", {
      name: "Hourly",
      schedule: { kind: "every", everyMs: 3_600_000 },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "run" },
    });
    expect(await client.request("cron.run", { id: added.id, mode: "force" })).toEqual({
      ok: true,
      ran: true,
      jobId: added.id,
    });
    const error = await rpcError(client.request("cron.run", { id: added.id, mode: "force" }));
    expect(error.details).toEqual({ code: "CRON_JOB_RUNNING", jobId: added.id });
    const service = await stack.cron!.forAgent("main");
    expect((await service.cronStatus()).running).toBe(1);
  });
});
