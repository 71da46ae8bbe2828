/**
 * A `cron.add` / `cron.update` schedule the protocol's shape allows but core cannot run (an
 * unknown time zone, a cron expression with a field out of range, a date that does not
 * exist) is refused with the schedule field it is about named in `details.field`, in the
 * protocol's terms (`schedule.tz`, not core's `schedule.timezone`), and nothing is stored or
 * changed. A `tz` or `anchorMs` of the wrong type is refused too, never dropped (which would
 * run the job in UTC, or with the creation time as its anchor). Over real sockets.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeClients, rpcError, startStack, stopStacks, TestClient, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const base = {
  name: "Nightly",
  schedule: { kind: "cron", expr: "30 2 * * *", tz: "Europe/Berlin" },
  sessionTarget: "isolated",
  wakeMode: "now",
  payload: { kind: "agentTurn", message: "run" },
};

const refused: Array<[Record<string, unknown>, string, string]> = [
  [{ kind: "cron", expr: "30 2 * * *", tz: "Mars/Olympus_Mons" }, "tz", "INVALID_CRON_SCHEDULE"],
  [{ kind: "cron", expr: "61 * * * *" }, "expr", "INVALID_CRON_SCHEDULE"],
  [{ kind: "cron", expr: "0 0 31 2 *" }, "expr", "INVALID_CRON_SCHEDULE"],
  [{ kind: "at", at: "2026-02-30T09:00:00Z" }, "at", "INVALID_CRON_SCHEDULE"],
  [{ kind: "at", at: "next tuesday" }, "at", "INVALID_CRON_SCHEDULE"],
  [{ kind: "every", everyMs: 1.5 }, "everyMs", "INVALID_PARAMS"],
  [{ kind: "every", everyMs: 60_000, anchorMs: "2026-01-01" }, "anchorMs", "INVALID_PARAMS"],
  [{ kind: "every", everyMs: 60_000, anchorMs: -1 }, "anchorMs", "INVALID_PARAMS"],
  [{ kind: "cron", expr: "0 9 * * *", tz: 1 }, "tz", "INVALID_PARAMS"],
];

describe("cron schedules core refuses, over the wire", () => {
  it("cron.add names the schedule field and stores nothing", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    for (const [schedule, field, code] of refused) {
      const error = await rpcError(client.request("cron.add", { ...base, schedule }));
      expect(error, JSON.stringify(schedule)).toMatchObject({
        code: "INVALID_REQUEST",
        details: { code, field: `schedule.${field}` },
      });
    }
    expect((await client.request("cron.list", { includeDisabled: true })).jobs).toEqual([]);
    expect(await (await stack.cron!.forAgent("main")).list()).toEqual([]);
  });

  it("cron.update names patch.schedule's field and leaves the job as it was", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const added = await client.request("cron.add", base);
    for (const [schedule, field, code] of refused) {
      const error = await rpcError(
        client.request("cron.update", { id: added.id, patch: { schedule } }),
      );
      expect(error, JSON.stringify(schedule)).toMatchObject({
        code: "INVALID_REQUEST",
        details: { code, field: `patch.schedule.${field}` },
      });
    }
    const [job] = (await client.request("cron.list", {})).jobs;
    expect(job.schedule).toEqual(base.schedule);
    expect(job.state.nextRunAtMs).toBe(added.state.nextRunAtMs);
  });

  it("a valid zone and expression are still taken", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const added = await client.request("cron.add", {
      ...base,
      schedule: { kind: "every", everyMs: 60_000, anchorMs: 0 },
    });
    expect(added.schedule).toEqual({ kind: "every", everyMs: 60_000, anchorMs: 0 });
    const updated = await client.request("cron.update", {
      id: added.id,
      patch: { schedule: { kind: "cron", expr: "0 9 * * 1-5", tz: "America/New_York" } },
    });
    expect(updated.schedule).toEqual({ kind: "cron", expr: "0 9 * * 1-5", tz: "America/New_York" });
  });
});
