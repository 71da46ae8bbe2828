/**
 * Plain cron services (no cluster `sync`) sharing one store, given a `resyncMs`: each reloads
 * its agent's jobs from the store every period, so a job added on one is scheduled on the
 * other, and a job removed on one is dropped there, without anyone asking for it by id or a
 * restart. A `CronSupervisor` given a `resyncMs` looks for agents whose first job was added
 * elsewhere as often and starts their services. Without it (the old behaviour, and still the
 * default), the other service never ran a job added elsewhere, and ran a removed one once more.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type CronService, CronSupervisor, createManualClock } from "../src/index.js";
import { at, MINUTE, openStore, recordingRunner, startCron } from "./cron-support.js";

const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** Lets each service's mailbox take in what its timers sent it. */
async function settle(...services: CronService[]): Promise<void> {
  for (const service of services) await service.cronStatus();
}

describe("plain cron services with resyncMs", () => {
  it("schedule a job added on another service, and drop one removed there, within the period", async () => {
    const fixture = await startCron({ resyncMs: 5 * MINUTE });
    const { clock, runner } = fixture;
    const a = fixture.service;
    stops.push(() => a.stop());
    await a.add({ id: "old", schedule: { every: 30 * MINUTE }, prompt: "p" });
    const b = await fixture.restart();
    stops.push(() => b.stop());
    const runsOf = (id: string) => runner.calls.filter((call) => call.jobId === id).length;

    // Added on a, which then stops: only b can run it, and b was never asked for it by id.
    await a.add({ id: "late", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await clock.advance(MINUTE);
    await a.remove("old");
    await a.stop();
    // b still has its copy of the removed job, and none of the added one.
    expect((await b.list()).map((job) => job.id)).toEqual(["old"]);
    await clock.advance(4 * MINUTE);
    await settle(b);
    expect((await b.list()).map((job) => job.id)).toEqual(["late"]);
    expect((await b.cronStatus()).jobs).toBe(1);
    for (let i = 0; i < 6; i++) {
      await clock.advance(10 * MINUTE);
      await settle(b);
    }
    expect(runsOf("late")).toBe(6);
    // The removed job's due time (30 min after it was added) passed on b: it did not run.
    expect(runsOf("old")).toBe(0);
  });

  it("fire each occurrence of a job added elsewhere once between them", async () => {
    const fixture = await startCron({ resyncMs: 2 * MINUTE });
    const { clock, runner } = fixture;
    const a = fixture.service;
    stops.push(() => a.stop());
    const b = await fixture.restart();
    stops.push(() => b.stop());
    await b.add({ id: "shared", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await clock.advance(2 * MINUTE);
    await settle(a, b);
    expect((await a.list()).map((job) => job.id)).toEqual(["shared"]);
    for (let i = 0; i < 5; i++) {
      await clock.advance(10 * MINUTE);
      await settle(a, b);
    }
    // Both had it scheduled; the due-time claims let one of them fire each occurrence.
    expect(runner.calls.map((call) => call.at)).toEqual(
      [1, 2, 3, 4, 5].map((n) => at("2026-01-05T00:00:00Z") + n * 10 * MINUTE),
    );
  });

  it("are not reloaded without it (the default)", async () => {
    const fixture = await startCron();
    const { clock, store } = fixture;
    const a = fixture.service;
    stops.push(() => a.stop());
    const b = await fixture.restart();
    stops.push(() => b.stop());
    const listJobs = store.cron.listJobs.bind(store.cron);
    let listings = 0;
    store.cron.listJobs = ((...args: Parameters<typeof listJobs>) => {
      listings++;
      return listJobs(...args);
    }) as typeof listJobs;
    await a.add({ id: "late", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await clock.advance(2 * 60 * MINUTE);
    await settle(a, b);
    expect(listings).toBe(0);
    expect((await b.cronStatus()).jobs).toBe(0);
  });

  it("refuse a resyncMs that is not a positive number", async () => {
    for (const resyncMs of [0, -1, Number.NaN]) {
      await expect(startCron({ resyncMs })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
  });
});

describe("plain cron supervisors with resyncMs", () => {
  it("start the service of an agent whose first job was added through another one", async () => {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await openStore();
    stops.push(() => store.close());
    const runner = recordingRunner(clock);
    const options = { store, clock, runJob: runner.runJob, resyncMs: 5 * MINUTE };
    const first = await new CronSupervisor(options).start();
    stops.push(() => first.stop());
    const second = await new CronSupervisor(options).start();
    stops.push(() => second.stop());
    const fresh = await first.forAgent("fresh");
    await fresh.add({ id: "hello", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await first.stop();
    expect(second.runningAgents()).toEqual([]);
    await clock.advance(5 * MINUTE);
    await expect.poll(() => second.runningAgents(), { timeout: 5_000 }).toEqual(["fresh"]);
    const there = await second.forAgent("fresh");
    expect((await there.list()).map((job) => job.id)).toEqual(["hello"]);
    await clock.advance(5 * MINUTE);
    await settle(there);
    expect(runner.calls.map((call) => [call.job.agentId, call.jobId])).toEqual([
      ["fresh", "hello"],
    ]);
  });

  it("do not look for new agents without it (the default)", async () => {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await openStore();
    stops.push(() => store.close());
    const runner = recordingRunner(clock);
    const options = { store, clock, runJob: runner.runJob };
    const first = await new CronSupervisor(options).start();
    stops.push(() => first.stop());
    const second = await new CronSupervisor(options).start();
    stops.push(() => second.stop());
    await (await first.forAgent("fresh")).add({
      id: "hello",
      schedule: { every: 10 * MINUTE },
      prompt: "p",
    });
    await clock.advance(60 * MINUTE);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(second.runningAgents()).toEqual([]);
  });
});
