/**
 * A stored job whose schedule no longer validates (written by an older version, or its time
 * zone left the runtime's ICU data) is kept, disabled, with the reason, and stays in reach:
 * it is listed, can be read, removed, run by hand, or given a new schedule; enabling it as
 * it is is refused with a typed error; its id is not silently blocked.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  CronError,
  type CronJob,
  type CronJobConfig,
  LocalPubSub,
  PubSubCronSync,
} from "../src/index.js";
import { type CronFixture, HOUR, openStore, startCron, storedJob } from "./cron-support.js";

let fixture: CronFixture | undefined;
afterEach(async () => {
  await fixture?.service.stop();
  fixture = undefined;
});

function brokenRecord(source: "api" | "config" = "api"): CronJob {
  return storedJob({ id: "broken", schedule: { cron: "99 * * * *" }, source });
}

async function withBroken(
  source: "api" | "config" = "api",
  sync?: PubSubCronSync,
): Promise<CronFixture> {
  const store = await openStore();
  await store.cron.putJob(brokenRecord(source));
  fixture = await startCron({ store, ...(sync === undefined ? {} : { sync }) });
  return fixture;
}

describe("a stored job whose schedule no longer validates", () => {
  it("is listed and can be read, disabled with the reason", async () => {
    const { service } = await withBroken();
    expect((await service.list()).map((j) => j.id)).toEqual(["broken"]);
    const job = await service.get("broken");
    expect(job.enabled).toBe(false);
    expect(job.state.disabledReason).toMatch(/invalid schedule: INVALID_CRON_SCHEDULE/);
    expect(job.state.nextRunAt).toBeUndefined();
  });

  it("can be removed, and its id used again", async () => {
    const { service, store } = await withBroken();
    expect(await service.remove("broken")).toBe(true);
    expect(await store.cron.getJob("broken")).toBeUndefined();
    await service.add({ id: "broken", schedule: { every: HOUR }, prompt: "p" });
    expect((await service.get("broken")).enabled).toBe(true);
  });

  it("enabling it as it is is refused with INVALID_CRON_SCHEDULE; nothing changes", async () => {
    const { service, store, clock } = await withBroken();
    for (const attempt of [
      () => service.enable("broken"),
      () => service.update("broken", { enabled: true }),
    ]) {
      const error = await attempt().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CronError);
      expect((error as CronError).code).toBe("INVALID_CRON_SCHEDULE");
    }
    expect(((await store.cron.getJob("broken")) as CronJob).enabled).toBe(false);
    expect(clock.activeTimers).toBe(0);
  });

  it("a new schedule brings it back: enabled, it runs on it", async () => {
    const { service, clock, runner } = await withBroken();
    await service.update("broken", { schedule: { every: HOUR }, enabled: true });
    await clock.advance(HOUR);
    expect(runner.timesOf("broken")).toHaveLength(1);
  });

  it("can be run by hand", async () => {
    const { service } = await withBroken();
    expect((await service.runNow("broken")).status).toBe("ok");
  });

  it("a config job fixed in the file is updated, not refused as an existing id", async () => {
    const { service, clock, runner } = await withBroken("config");
    const { source, createdAt, updatedAt, state, ...config } = brokenRecord("config");
    void [source, createdAt, updatedAt, state];
    await service.syncConfig([{ ...config, schedule: { cron: "0 * * * *" } } as CronJobConfig]);
    const job = await service.get("broken");
    expect(job.schedule).toEqual({ cron: "0 * * * *" });
    expect(job.enabled).toBe(true);
    await clock.advance(HOUR);
    expect(runner.timesOf("broken")).toHaveLength(1);
  });

  it("in a cluster, stays listed across the full resync", async () => {
    const sync = new PubSubCronSync({ pubsub: new LocalPubSub(), resyncMs: HOUR });
    const { service, clock } = await withBroken("api", sync);
    await clock.advance(2 * HOUR);
    expect((await service.list()).map((j) => j.id)).toEqual(["broken"]);
    expect((await service.get("broken")).enabled).toBe(false);
    await expect(service.enable("broken")).rejects.toMatchObject({ code: "INVALID_CRON_SCHEDULE" });
  });
});
