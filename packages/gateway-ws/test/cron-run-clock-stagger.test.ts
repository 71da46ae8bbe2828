/**
 * `cron.run` with `mode: "due"` asks core whether a run is due by the cron service's own
 * clock (not the gateway's wall clock), and a cron schedule's `staggerMs` reaches core: each
 * job runs a fixed per-job offset after the expression's time. Over real sockets, with core's
 * `CronSupervisor` on an injected `ManualClock`.
 */
import { createHash } from "node:crypto";
import {
  AgentRuntime,
  agentRuntimeJobRunner,
  CronSupervisor,
  createManualClock,
  createProviderChain,
  type ManualClock,
  MemoryStore,
} from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway } from "../src/index.js";
import { closeClients, MAIN, rpcError, TestClient, TOKEN, waitFor } from "./support.js";

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeClients();
  for (const stop of stops.splice(0).reverse()) await stop();
});

const HOUR = 3_600_000;

/** A runtime, a cron supervisor on `clock`, and a gateway over them. */
async function startClockedStack(
  clock: ManualClock,
): Promise<{ url: string; cron: CronSupervisor }> {
  const store = new MemoryStore();
  await store.open();
  const provider = createScriptedProvider({
    id: "scripted",
    responses: [{ text: "one" }, { text: "two" }, { text: "three" }],
  });
  const models = createProviderChain({
    providers: [provider],
    retry: { maxAttempts: 1 },
    circuitBreaker: false,
  });
  const runtime = new AgentRuntime({ store, models, agents: [MAIN] });
  await runtime.start();
  const cron = await new CronSupervisor({
    store,
    clock,
    runJob: agentRuntimeJobRunner(runtime),
    agents: ["main"],
  }).start();
  const gateway = createGateway({
    runtime,
    models,
    cron,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    tickIntervalMs: 60_000,
  });
  const { port } = await gateway.start();
  stops.push(async () => {
    await gateway.stop();
    await cron.stop();
    await runtime.stop();
    await store.close();
  });
  return { url: `ws://127.0.0.1:${port}`, cron };
}

describe("cron.run mode due", () => {
  it("is decided by the cron service's clock", async () => {
    // The cron clock is in 2020: by it the job's first run is an hour ahead, although that
    // instant is long past by the gateway's Date.now().
    const start = Date.parse("2020-01-01T00:00:00Z");
    const clock = createManualClock(start);
    const stack = await startClockedStack(clock);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const added = await client.request("cron.add", {
      name: "Hourly",
      schedule: { kind: "every", everyMs: HOUR },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "run" },
    });
    expect(added.state.nextRunAtMs).toBe(start + HOUR);
    expect(await client.request("cron.run", { id: added.id, mode: "due" })).toEqual({
      ok: true,
      ran: false,
      reason: "not-due",
    });
    // By the cron clock the run comes due (its timer has not fired: as on waking up).
    clock.jumpTo(start + HOUR);
    expect(await client.request("cron.run", { id: added.id, mode: "due" })).toEqual({
      ok: true,
      ran: true,
      jobId: added.id,
    });
    const { entries } = await waitFor("the run to be logged", async () => {
      const page = await client.request("cron.runs", { id: added.id });
      return page.entries.length > 0 ? page : undefined;
    });
    expect(entries.map((e: { status: string }) => e.status)).toEqual(["ok"]);
  });

  it("if-enabled on a disabled job starts nothing", async () => {
    const clock = createManualClock(Date.parse("2020-01-01T00:00:00Z"));
    const stack = await startClockedStack(clock);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const added = await client.request("cron.add", {
      name: "Off",
      enabled: false,
      schedule: { kind: "every", everyMs: HOUR },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "run" },
    });
    expect(await client.request("cron.run", { id: added.id, mode: "if-enabled" })).toEqual({
      ok: true,
      ran: false,
      reason: "disabled",
    });
    const service = await stack.cron.forAgent("main");
    expect((await service.get(added.id)).state.runCount).toBe(0);
  });
});

describe("cron schedule staggerMs", () => {
  it("moves the job's runs by its fixed offset, and is reported back", async () => {
    const clock = createManualClock(Date.parse("2026-01-05T00:30:00Z"));
    const stack = await startClockedStack(clock);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const window = 5 * 60_000;
    const added = await client.request("cron.add", {
      name: "Top of the hour",
      schedule: { kind: "cron", expr: "0 * * * *", staggerMs: window },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "run" },
    });
    const offset = createHash("sha256").update(added.id).digest().readUInt32BE(0) % window;
    expect(added.schedule).toEqual({ kind: "cron", expr: "0 * * * *", staggerMs: window });
    expect(added.state.nextRunAtMs).toBe(Date.parse("2026-01-05T01:00:00Z") + offset);
    const service = await stack.cron.forAgent("main");
    expect((await service.get(added.id)).schedule).toEqual({
      cron: "0 * * * *",
      staggerMs: window,
    });
  });

  it("a window of the wrong type is INVALID_PARAMS, one core refuses INVALID_CRON_SCHEDULE", async () => {
    const clock = createManualClock(Date.parse("2026-01-05T00:30:00Z"));
    const stack = await startClockedStack(clock);
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const cases: Array<[unknown, string]> = [
      ["5m", "INVALID_PARAMS"],
      [-1, "INVALID_CRON_SCHEDULE"],
      [1.5, "INVALID_CRON_SCHEDULE"],
      [2 ** 31, "INVALID_CRON_SCHEDULE"],
    ];
    for (const [staggerMs, code] of cases) {
      const error = await rpcError(
        client.request("cron.add", {
          name: "Bad",
          schedule: { kind: "cron", expr: "0 * * * *", staggerMs },
          sessionTarget: "isolated",
          wakeMode: "now",
          payload: { kind: "agentTurn", message: "run" },
        }),
      );
      expect(error).toMatchObject({
        code: "INVALID_REQUEST",
        details: { code, field: "schedule.staggerMs" },
      });
    }
    const service = await stack.cron.forAgent("main");
    expect(await service.list()).toEqual([]);
  });
});
