/**
 * Follow-ups of the running markers that name their writer and of the backoff shared by the
 * plain services of one store:
 * - a failed run that another service's later run overtook is logged, but the job's errors in
 *   a row (and so its auto-disable) follow the shared record that the later run wrote;
 * - a running marker of an older version (no writer named) is left alone while its run may
 *   still be in progress on a live writer (a rolling upgrade), and logged `interrupted` once
 *   it is older than that writer would let it go on;
 * - a crashed writer's run is looked up in the whole run log (not only its newest page)
 *   before it is logged `interrupted`.
 */
import { describe, expect, it } from "vitest";
import {
  type CronJobRunner,
  type CronRunOutcome,
  CronService,
  type CronServiceOptions,
  createManualClock,
  MemoryStore,
} from "../src/index.js";
import { at, clockedStore, MINUTE, SECOND, startCron, storedJob } from "./cron-support.js";

describe("a failed run overtaken by another service's later run", () => {
  /**
   * Services `a` and `b` of one agent on one store, job `tick` every 10 min. The first run
   * (call 0, on whichever service claims it) goes on until `finishFirst()` and then fails;
   * every other run succeeds.
   */
  async function overlapping(options: Partial<CronServiceOptions>) {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = new MemoryStore();
    await store.open();
    const fired: Array<{ service: "a" | "b"; scheduledAt: number }> = [];
    let finish!: () => void;
    const held = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const runner =
      (service: "a" | "b"): CronJobRunner =>
      async (_job, context): Promise<CronRunOutcome> => {
        const n = fired.length;
        fired.push({ service, scheduledAt: context.scheduledAt });
        if (n > 0) return { status: "ok" };
        await held;
        return { status: "error", error: "boom" };
      };
    const make = (service: "a" | "b") =>
      new CronService({
        agentId: "ops",
        store,
        clock,
        runJob: runner(service),
        ...options,
      }).start();
    const a = await make("a");
    await a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
    const b = await make("b");
    const first = (await a.get("tick")).state.nextRunAt!;
    const advance = async (ms: number) => {
      for (let done = 0; done < ms; done += MINUTE) {
        await clock.advance(Math.min(MINUTE, ms - done));
        await a.cronStatus();
        await b.cronStatus();
      }
    };
    const finishFirst = async () => {
      finish();
      await a.cronStatus();
      await b.cronStatus();
    };
    const stop = async () => {
      await a.stop();
      await b.stop();
      await store.close();
    };
    return { a, b, fired, first, advance, finishFirst, stop };
  }

  it("is logged, but does not disable the job: the shared record's errors in a row stand", async () => {
    // One error disables a job: only a failure that counts can do it.
    const pair = await overlapping({ maxConsecutiveErrors: 1, backoffMs: [8 * MINUTE] });
    try {
      await pair.advance(10 * MINUTE); // the run at 0 starts on one of them, and goes on
      expect(pair.fired).toHaveLength(1);
      const slow = pair.fired[0]!.service === "a" ? pair.a : pair.b;
      await pair.advance(21 * MINUTE); // the other one runs 10 and 20, both ok
      expect(pair.fired.map((f) => (f.scheduledAt - pair.first) / MINUTE)).toEqual([0, 10, 20]);
      await pair.finishFirst(); // the run at 0 fails 21 min in, overtaken by the run at 20

      const log = await slow.runs("tick");
      expect(log.map((run) => run.status).sort()).toEqual(["error", "ok", "ok"]);
      const job = await slow.get("tick");
      expect(job.enabled).toBe(true);
      expect(job.state.disabledReason).toBeUndefined();
      expect(job.state.consecutiveErrors).toBe(0);
      expect(job.state.lastStatus).toBe("error");
      const failed = log.find((run) => run.status === "error");
      expect(failed).toMatchObject({ scheduledAt: pair.first, error: "boom" });
      expect(failed?.consecutiveErrors).toBeUndefined(); // not counted
      // The stored job is not disabled either, and the schedule goes on, each due time once.
      expect((await slow.list()).map((j) => j.enabled)).toEqual([true]);
      await pair.advance(30 * MINUTE);
      expect(pair.fired.map((f) => (f.scheduledAt - pair.first) / MINUTE)).toEqual([
        0, 10, 20, 30, 40, 50,
      ]);
    } finally {
      await pair.stop();
    }
  });

  it("takes the shared record's count, not its own count plus one", async () => {
    const pair = await overlapping({ maxConsecutiveErrors: 5, backoffMs: [8 * MINUTE] });
    try {
      await pair.advance(10 * MINUTE);
      const slow = pair.fired[0]!.service === "a" ? pair.a : pair.b;
      await pair.advance(21 * MINUTE);
      await pair.finishFirst();
      const job = await slow.get("tick");
      expect(job.state.consecutiveErrors).toBe(0);
      // No retry of the overtaken failure: the next run is the schedule's.
      expect(job.state.retryAt).toBeUndefined();
      expect(job.state.nextRunAt).toBe(pair.first + 30 * MINUTE);
    } finally {
      await pair.stop();
    }
  });
});

describe("a running marker of an older version (no writer named)", () => {
  /** An older version's marker of job `tick`'s run started `ageMs` ago. */
  function oldMarker(startedAt: number) {
    return {
      runId: "run-old",
      startedAt,
      scheduledAt: startedAt,
      trigger: "schedule",
      sessionKey: `cron:tick.${startedAt}`,
    };
  }

  async function startWith(
    ageMs: number,
    job: { timeoutMs?: number } = {},
    options: Partial<Omit<CronServiceOptions, "store">> = {},
  ) {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await clockedStore(clock);
    const startedAt = clock.now() - ageMs;
    await store.cron.putJob(
      storedJob({
        id: "tick",
        schedule: { every: 10 * MINUTE },
        createdAt: startedAt - 10 * MINUTE,
        ...job,
        state: {
          consecutiveErrors: 0,
          runCount: 0,
          missedCount: 0,
          nextRunAt: startedAt + 10 * MINUTE,
        },
      }),
    );
    await store.kv.set("cron:running:ops:tick", oldMarker(startedAt));
    const fixture = await startCron({ clock, store, ...options });
    return { clock, store, service: fixture.service, startedAt };
  }

  it("is left alone while its run may go on (the job's time limit), then logged interrupted", async () => {
    const { clock, store, service, startedAt } = await startWith(MINUTE, { timeoutMs: 4 * MINUTE });
    try {
      // Its writer (an older version) may still be running it: not logged by a newcomer.
      expect(await service.runs("tick")).toEqual([]);
      expect(await store.kv.get("cron:running:ops:tick")).toMatchObject({ runId: "run-old" });
      await clock.advance(3 * MINUTE);
      await service.cronStatus();
      expect(await service.runs("tick")).toEqual([]);
      // 4 min of time limit and a lease (30 s) past its start, no writer ran it that long.
      await clock.advance(MINUTE);
      await service.cronStatus();
      expect(await service.runs("tick")).toMatchObject([
        { status: "interrupted", runId: "run-old", scheduledAt: startedAt },
      ]);
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      await service.stop();
      await store.close();
    }
  });

  it("whose writer ends the run meanwhile is logged once, by its writer", async () => {
    const { clock, store, service, startedAt } = await startWith(MINUTE);
    try {
      expect(await service.runs("tick")).toEqual([]);
      // The older version's service ends its run: it logs it and deletes its marker.
      await store.cron.appendRun({
        jobId: "tick",
        agentId: "ops",
        runId: "run-old",
        trigger: "schedule",
        status: "ok",
        scheduledAt: startedAt,
        startedAt,
        finishedAt: clock.now(),
        durationMs: clock.now() - startedAt,
        latenessMs: 0,
      });
      await store.kv.delete("cron:running:ops:tick");
      await clock.advance(3 * 60 * MINUTE);
      await service.cronStatus();
      expect((await service.runs("tick")).filter((run) => run.runId === "run-old")).toMatchObject([
        { status: "ok" },
      ]);
    } finally {
      await service.stop();
      await store.close();
    }
  });

  it("without a time limit is bounded by stuckRunMs, and one older than the bound is logged at once", async () => {
    const { clock, store, service } = await startWith(MINUTE, {}, { stuckRunMs: 20 * MINUTE });
    try {
      await clock.advance(15 * MINUTE);
      await service.cronStatus();
      expect((await service.runs("tick")).filter((run) => run.status === "interrupted")).toEqual(
        [],
      );
      await clock.advance(6 * MINUTE);
      await service.cronStatus();
      expect(
        (await service.runs("tick")).filter((run) => run.status === "interrupted"),
      ).toMatchObject([{ runId: "run-old" }]);
    } finally {
      await service.stop();
      await store.close();
    }
    const late = await startWith(21 * MINUTE, {}, { stuckRunMs: 20 * MINUTE });
    try {
      expect(
        (await late.service.runs("tick")).filter((run) => run.status === "interrupted"),
      ).toMatchObject([{ runId: "run-old" }]);
    } finally {
      await late.service.stop();
      await late.store.close();
    }
  });
});

describe("the run of a crashed writer whose marker this service replaced", () => {
  it("is found in the run log however many runs were logged after it, and not logged twice", async () => {
    const fixture = await startCron({ stuckRunMs: 24 * 60 * MINUTE });
    const { clock, store, runner } = fixture;
    let finish!: () => void;
    runner.behave = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok" });
      });
    const a = fixture.service;
    await a.add({ id: "tick", schedule: { every: 10 * SECOND }, prompt: "p" });
    await clock.advance(10 * SECOND);
    await a.cronStatus();
    const first = await store.kv.get<{ runId: string }>("cron:running:ops:tick");
    expect(first).toBeDefined();
    const b = await fixture.restart();
    try {
      // b runs the job 150 times while a's run goes on: b's marker takes the job's key.
      runner.behave = () => ({ status: "ok" });
      for (let i = 0; i < 150; i++) {
        await clock.advance(10 * SECOND);
        await b.cronStatus();
      }
      expect((await b.runs("tick", { limit: 1000 })).length).toBe(150);
      // a's run ends (logged by a, started before all of b's), then a stops.
      finish();
      await a.cronStatus();
      await a.stop();
      await clock.advance(40 * SECOND);
      await b.cronStatus();
      const log = await b.runs("tick", { limit: 1000 });
      expect(log.filter((run) => run.runId === first?.runId)).toMatchObject([{ status: "ok" }]);
      expect(log.filter((run) => run.status === "interrupted")).toEqual([]);
    } finally {
      await b.stop();
      await a.stop();
    }
  });
});
