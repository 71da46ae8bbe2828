/**
 * Gaps of the cron service: `startRun` (a manual run that resolves once started, with a
 * `due` / `enabled` condition checked by the service's own clock), `staggerMs` on cron
 * schedules (a fixed per-job offset after each occurrence), and the per-fire claim that
 * lets only one of two plain services on one store fire each occurrence.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  type CronJobRunner,
  CronRunGuard,
  CronService,
  createManualClock,
  guardCronRunner,
  InvalidArgumentError,
  MemoryStore,
} from "../src/index.js";
import { at, HOUR, MINUTE, recordingRunner, useCronFixtures } from "./cron-support.js";

const startCron = useCronFixtures();

/** OpenClaw's offset, computed here independently: sha256(id), first 4 bytes BE, mod window. */
function expectedOffset(jobId: string, staggerMs: number): number {
  return createHash("sha256").update(jobId).digest().readUInt32BE(0) % staggerMs;
}

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe("CronService.startRun", () => {
  it("resolves once the run has started, with its run id, before it finishes", async () => {
    const { service, runner, store } = await startCron();
    await service.add({ id: "report", schedule: { every: HOUR }, prompt: "p" });
    const release = gate();
    runner.behave = async () => {
      await release.promise;
      return { status: "ok", output: "done" };
    };
    const start = await service.startRun("report");
    if (!start.started) throw new Error("expected the run to start");
    expect(start.jobId).toBe("report");
    // Started and recorded: the marker is in the store, the job reports the run in progress.
    expect((await service.get("report")).state.runningRunId).toBe(start.runId);
    expect(await store.kv.get("cron:running:ops:report")).toMatchObject({ runId: start.runId });
    release.open();
    const run = await start.finished;
    expect(run).toMatchObject({ runId: start.runId, status: "ok", trigger: "manual" });
    expect(runner.calls.map((c) => c.context.runId)).toEqual([start.runId]);
  });

  it("only: enabled starts nothing for a disabled job", async () => {
    const { service, runner } = await startCron();
    await service.add({ id: "off", schedule: { every: HOUR }, prompt: "p", enabled: false });
    expect(await service.startRun("off", { only: "enabled" })).toEqual({
      started: false,
      jobId: "off",
      reason: "disabled",
    });
    const forced = await service.startRun("off");
    if (!forced.started) throw new Error("expected the forced run to start");
    await forced.finished;
    expect(runner.calls).toHaveLength(1);
  });

  it("only: due is decided by the service's clock, not the wall clock", async () => {
    // The service's clock is in 2020: by it, the job's first run is an hour ahead, although
    // that instant is long past by Date.now().
    const start0 = at("2020-01-01T00:00:00Z");
    const { service, clock, runner } = await startCron({ startAt: start0 });
    await service.add({ id: "hourly", schedule: { every: HOUR }, prompt: "p" });
    expect(await service.startRun("hourly", { only: "due" })).toEqual({
      started: false,
      jobId: "hourly",
      reason: "not-due",
    });
    expect(runner.calls).toHaveLength(0);
    // The clock reaches the due time without the timer having fired yet (as on waking up).
    clock.jumpTo(start0 + HOUR);
    const start = await service.startRun("hourly", { only: "due" });
    if (!start.started) throw new Error("expected the due run to start");
    expect(start.startedAt).toBe(start0 + HOUR);
    expect((await start.finished).status).toBe("ok");
  });

  it("refuses bad options and passes core's refusals on", async () => {
    const { service } = await startCron();
    await service.add({ id: "job", schedule: { every: HOUR }, prompt: "p" });
    await expect(
      service.startRun("job", { only: "sometimes" } as unknown as { only: "due" }),
    ).rejects.toThrow(InvalidArgumentError);
    await expect(service.startRun("missing")).rejects.toMatchObject({
      code: "CRON_JOB_NOT_FOUND",
    });
  });
});

describe("staggerMs", () => {
  it("moves each job's runs by its own fixed offset within the window", async () => {
    const window = 5 * MINUTE;
    const { service, clock, runner } = await startCron({ startAt: at("2026-01-05T00:30:00Z") });
    const ids = ["alpha", "bravo", "charlie"];
    for (const id of ids) {
      await service.add({ id, schedule: { cron: "0 * * * *", staggerMs: window }, prompt: id });
    }
    await service.add({ id: "exact", schedule: { cron: "0 * * * *" }, prompt: "exact" });
    const offsets = ids.map((id) => expectedOffset(id, window));
    // The window is honoured and the jobs do not all share one offset.
    for (const offset of offsets) expect(offset).toBeGreaterThanOrEqual(0);
    for (const offset of offsets) expect(offset).toBeLessThan(window);
    expect(new Set(offsets).size).toBeGreaterThan(1);
    const hour1 = at("2026-01-05T01:00:00Z");
    for (const [i, id] of ids.entries()) {
      expect((await service.get(id)).state.nextRunAt).toBe(hour1 + offsets[i]!);
    }
    await clock.advanceTo(at("2026-01-05T03:00:00Z") - 1);
    for (const [i, id] of ids.entries()) {
      const offset = offsets[i]!;
      expect(runner.timesOf(id)).toEqual([hour1 + offset, hour1 + HOUR + offset]);
      // Every run records the staggered time as the occurrence it served.
      expect(runner.calls.filter((c) => c.jobId === id).map((c) => c.context.scheduledAt)).toEqual(
        runner.timesOf(id),
      );
    }
    expect(runner.timesOf("exact")).toEqual([hour1, hour1 + HOUR]);
  });

  it("refuses a window that is not a whole number of ms >= 0, storing nothing", async () => {
    const { service } = await startCron();
    for (const staggerMs of [-1, 1.5, Number.NaN, "5m"]) {
      await expect(
        service.add({
          id: "bad",
          schedule: { cron: "0 * * * *", staggerMs } as unknown as { cron: string },
          prompt: "p",
        }),
      ).rejects.toThrow(InvalidArgumentError);
    }
    expect(await service.list()).toEqual([]);
  });
});

describe("two plain services on one store", () => {
  it("fire each occurrence once between them", async () => {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = new MemoryStore();
    await store.open();
    const runner = recordingRunner(clock);
    const make = () =>
      new CronService({ agentId: "ops", store, clock, runJob: runner.runJob }).start();
    const a = await make();
    await a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await a.add({ id: "hourly", schedule: { cron: "0 * * * *" }, prompt: "p" });
    const b = await make();
    try {
      await clock.advance(2 * HOUR);
      const scheduled = (id: string) =>
        runner.calls.filter((c) => c.jobId === id).map((c) => c.context.scheduledAt);
      const tick = scheduled("tick");
      expect(tick).toHaveLength(12);
      expect(new Set(tick).size).toBe(12);
      expect(scheduled("hourly")).toEqual([at("2026-01-05T01:00:00Z"), at("2026-01-05T02:00:00Z")]);
      // The services' run logs hold each run once (the losing service records nothing).
      expect((await a.runs("tick", { limit: 100 })).filter((r) => r.status === "ok")).toHaveLength(
        12,
      );
    } finally {
      await a.stop();
      await b.stop();
      await store.close();
    }
  });

  it("a claim held by a service that died blocks only its own occurrence, and expires", async () => {
    let storeNow = at("2026-01-05T00:00:00Z");
    const clock = createManualClock(storeNow);
    const store = new MemoryStore({ now: () => storeNow });
    await store.open();
    const runner = recordingRunner(clock);
    const service = await new CronService({
      agentId: "ops",
      store,
      clock,
      runJob: runner.runJob,
    }).start();
    try {
      await service.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
      const first = (await service.get("tick")).state.nextRunAt!;
      // Another service claimed the first occurrence, then died before running it.
      await store.kv.set("cron:fired:ops:tick", { scheduledAt: first, by: "dead" });
      await clock.advance(30 * MINUTE);
      expect(runner.calls.map((c) => c.context.scheduledAt)).toEqual([
        first + 10 * MINUTE,
        first + 20 * MINUTE,
      ]);
      // The claim is kept for a week after it was last taken, then it is gone.
      expect(await store.kv.get("cron:fired:ops:tick")).toMatchObject({
        scheduledAt: first + 20 * MINUTE,
      });
      storeNow += 7 * 24 * HOUR + 1;
      expect(await store.kv.get("cron:fired:ops:tick")).toBeUndefined();
    } finally {
      await service.stop();
      await store.close();
    }
  });

  it("leave the claim to a guarded runner (a cluster's): no second claim of their own", async () => {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = new MemoryStore();
    await store.open();
    const runner = recordingRunner(clock);
    const guard = new CronRunGuard({ store, nodeId: "n1" });
    const runJob: CronJobRunner = guardCronRunner(runner.runJob, guard);
    const service = await new CronService({ agentId: "ops", store, clock, runJob }).start();
    try {
      await service.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
      await clock.advance(10 * MINUTE);
      expect(runner.calls).toHaveLength(1);
      expect(await store.kv.keys("cron:fired:")).toEqual([]);
      expect(await store.kv.keys("cron-run:tick:")).toHaveLength(1);
    } finally {
      await service.stop();
      await store.close();
    }
  });
});
