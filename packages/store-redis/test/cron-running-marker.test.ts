/**
 * Two plain `CronService`s of one agent on one Redis store (two connections): one starting
 * while the other has a run of a job in progress leaves that run's marker alone, so the run
 * is recorded once, by the service that ran it (not also `interrupted` by the newcomer).
 * The marker names its writer, whose liveness key in Redis lasts while its runs do.
 */
import { type CronJobRunner, CronService, createManualClock } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { openSharedStores } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

/** Cleanups of the test, run last first: the prefix's keys go after the stores close. */
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MINUTE = 60_000;

describe("a cron service started beside another one's run, on one Redis store", () => {
  it("leaves the run to the service that runs it: recorded once, as ok", async () => {
    const [sa, sb] = await openSharedStores("cron-marker", cleanups);
    const clock = createManualClock(Date.parse("2026-01-05T00:00:00Z"));
    let finish!: () => void;
    const runJob: CronJobRunner = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok" });
      });
    const a = await new CronService({ agentId: "ops", store: sa, clock, runJob }).start();
    cleanups.push(() => a.stop());
    await a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await clock.advance(10 * MINUTE);
    await a.cronStatus();
    const marker = await sa.kv.get<{ owner?: string }>("cron:running:ops:tick");
    expect(marker?.owner).toEqual(expect.any(String));
    // The writer's liveness key is in Redis while its run goes on, with a TTL.
    expect(await sa.kv.get(`cron:alive:ops:${marker?.owner}`)).toBeDefined();

    const b = await new CronService({ agentId: "ops", store: sb, clock, runJob }).start();
    cleanups.push(() => b.stop());
    expect(await b.runs("tick")).toEqual([]);
    expect(await sb.kv.get("cron:running:ops:tick")).toEqual(marker);
    finish();
    await waitUntil("the run recorded", async () => (await b.runs("tick")).length > 0);
    await a.cronStatus();
    expect((await b.runs("tick")).map((run) => run.status)).toEqual(["ok"]);
    expect(await sb.kv.keys("cron:running:")).toEqual([]);
  });
});
