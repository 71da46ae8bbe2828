/**
 * `cron.add` and `cron.update` refusals name the field they refuse in `details`
 * (`INVALID_PARAMS`), as the other methods' do, and store nothing. Over real sockets.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeClients, rpcError, startStack, stopStacks, TestClient, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const base = {
  name: "Nightly",
  schedule: { kind: "every", everyMs: 3_600_000 },
  sessionTarget: "isolated",
  wakeMode: "now",
  payload: { kind: "agentTurn", message: "run" },
};

describe("cron params refused with the field named", () => {
  it("names schedule.everyMs, schedule.expr, schedule.at, schedule and patch.enabled", async () => {
    const stack = await startStack({ cron: true });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ schedule: { kind: "every", everyMs: 0 } }, "schedule.everyMs"],
      [{ schedule: { kind: "cron", expr: "" } }, "schedule.expr"],
      [{ schedule: { kind: "at", at: 5 } }, "schedule.at"],
      [{ schedule: "daily" }, "schedule"],
      [{ payload: [] }, "payload"],
    ];
    for (const [change, field] of cases) {
      const error = await rpcError(client.request("cron.add", { ...base, ...change }));
      expect(error, field).toMatchObject({
        code: "INVALID_REQUEST",
        details: { code: "INVALID_PARAMS", field },
      });
    }
    expect((await client.request("cron.list", {})).jobs).toEqual([]);
    const added = await client.request("cron.add", base);
    const refused = await rpcError(
      client.request("cron.update", { id: added.id, patch: { enabled: "yes" } }),
    );
    expect(refused.details).toEqual({ code: "INVALID_PARAMS", field: "patch.enabled" });
  });
});
