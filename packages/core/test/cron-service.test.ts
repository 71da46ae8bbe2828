/**
 * `CronService`: scheduling with one timer over a heap, each schedule kind, main and
 * isolated sessions, enable/disable/run now, the run log, persistence, bad input.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  CronError,
  type CronJob,
  type CronRun,
  CronService,
  InvalidArgumentError,
  MemoryStore,
  subscribeTelemetry,
  type TelemetryEvents,
} from "../src/index.js";
import {
  at,
  type CronFixture,
  DAY,
  HOUR,
  MINUTE,
  SECOND,
  startCron,
  storedJob,
} from "./cron-support.js";
import { failureOf } from "./support.js";

const fixtures: CronFixture[] = [];

async function cron(options: Parameters<typeof startCron>[0] = {}): Promise<CronFixture> {
  const fixture = await startCron(options);
  fixtures.push(fixture);
  return fixture;
}

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

const iso = (ms: number) => new Date(ms).toISOString();

describe("one timer over a heap", () => {
  it("one timer is armed for the earliest due job, however many jobs there are", async () => {
    const { service, clock } = await cron();
    const start = clock.now();
    const intervals = Array.from({ length: 500 }, (_, i) => ((i * 7919) % 997) * SECOND + SECOND);
    for (const [i, every] of intervals.entries()) {
      await service.add({ id: `job-${i}`, schedule: { every }, prompt: "tick" });
    }
    expect(clock.activeTimers).toBe(1);
    expect(clock.nextTimerAt).toBe(start + Math.min(...intervals));
    await clock.advance(5 * MINUTE);
    expect(clock.activeTimers).toBe(1);
    for (const [i] of intervals.entries()) await service.remove(`job-${i}`);
    expect(clock.activeTimers).toBe(0);
  });

  it("the timer follows the earliest job as jobs are added, disabled and removed", async () => {
    const { service, clock } = await cron();
    const start = clock.now();
    await service.add({ id: "slow", schedule: { every: HOUR }, prompt: "p" });
    expect(clock.nextTimerAt).toBe(start + HOUR);
    await service.add({ id: "fast", schedule: { every: MINUTE }, prompt: "p" });
    expect(clock.nextTimerAt).toBe(start + MINUTE);
    await service.disable("fast");
    await clock.advance(MINUTE); // the early timer fires, finds nothing due, re-arms
    expect(clock.activeTimers).toBe(1);
    expect(clock.nextTimerAt).toBe(start + HOUR);
  });
});

describe("schedule kinds", () => {
  it("an at job runs once, at its time", async () => {
    const { service, clock, runner } = await cron();
    const when = clock.now() + 90 * MINUTE;
    await service.add({ id: "once", schedule: { at: iso(when) }, prompt: "p" });
    await clock.advance(DAY);
    expect(runner.timesOf("once")).toEqual([when]);
    const job = await service.get("once");
    expect(job.state.completedAt).toBe(when);
    expect(job.state.nextRunAt).toBeUndefined();
    expect(clock.activeTimers).toBe(0);
  });

  it("an at job whose time has already passed when it is added runs at once", async () => {
    const { service, clock, runner } = await cron();
    await service.add({ id: "late", schedule: { at: clock.now() - HOUR }, prompt: "p" });
    await clock.advance(0);
    expect(runner.timesOf("late")).toEqual([clock.now()]);
  });

  it("an every job runs at anchor + k * every", async () => {
    const { service, clock, runner } = await cron({ startAt: at("2026-01-05T10:07:00Z") });
    await service.add({
      id: "half-past",
      schedule: { every: HOUR, anchor: "2026-01-01T00:30:00Z" },
      prompt: "p",
    });
    await clock.advance(3 * HOUR);
    expect(runner.timesOf("half-past").map(iso)).toEqual([
      "2026-01-05T10:30:00.000Z",
      "2026-01-05T11:30:00.000Z",
      "2026-01-05T12:30:00.000Z",
    ]);
  });

  it("a cron job runs at its times in its time zone, across the spring-forward day", async () => {
    const { service, clock, runner } = await cron({ startAt: at("2026-03-06T12:00:00Z") });
    await service.add({
      id: "nightly",
      schedule: { cron: "0 2 * * *", timezone: "America/New_York" },
      prompt: "p",
    });
    await clock.advance(4 * DAY);
    expect(runner.timesOf("nightly").map(iso)).toEqual([
      "2026-03-07T07:00:00.000Z", // 02:00 EST
      "2026-03-08T07:00:00.000Z", // 03:00 EDT: 02:00 does not exist that night
      "2026-03-09T06:00:00.000Z", // 02:00 EDT
      "2026-03-10T06:00:00.000Z",
    ]);
  });

  it("a cron job runs once on the fall-back day in Europe/Berlin, and at 02:00 local time after it", async () => {
    const { service, clock, runner } = await cron({ startAt: at("2026-10-24T12:00:00Z") });
    await service.add({
      id: "berlin",
      schedule: { cron: "0 2 * * *", timezone: "Europe/Berlin" },
      prompt: "p",
    });
    await clock.advance(2 * DAY);
    expect(runner.timesOf("berlin").map(iso)).toEqual([
      "2026-10-25T00:00:00.000Z", // 02:00 CEST, the first of the two 02:00s
      "2026-10-26T01:00:00.000Z", // 02:00 CET
    ]);
  });
});

describe("main and isolated sessions", () => {
  it("a main job runs in the agent's main session", async () => {
    const { service, clock, runner } = await cron();
    await service.add({ id: "m", schedule: { every: HOUR }, session: "main", prompt: "p" });
    await clock.advance(2 * HOUR);
    expect(runner.calls.map((c) => c.context.sessionKey)).toEqual([
      "agent:ops:main",
      "agent:ops:main",
    ]);
  });

  it("an isolated job gets a fresh cron:<jobId>.<startedAt> session each run", async () => {
    const { service, clock, runner } = await cron();
    await service.add({ id: "iso", schedule: { every: HOUR }, prompt: "p" });
    await clock.advance(2 * HOUR);
    const keys = runner.calls.map((c) => c.context.sessionKey);
    expect(keys).toEqual(runner.calls.map((c) => `cron:iso.${c.at}`));
    expect(new Set(keys).size).toBe(2);
  });
});

describe("enable, disable, run now", () => {
  it("a disabled job does not run; enabling schedules it from now, without catching up", async () => {
    const { service, clock, runner } = await cron();
    await service.add({ id: "d", schedule: { every: HOUR }, prompt: "p", enabled: false });
    await clock.advance(5 * HOUR);
    expect(runner.calls).toHaveLength(0);
    const enabled = await service.enable("d");
    // The five missed hours are not caught up: the next run is the next hour from now.
    expect(enabled.state.nextRunAt).toBe(clock.now() + HOUR);
    await clock.advance(HOUR);
    expect(runner.calls).toHaveLength(1);
    const disabled = await service.disable("d");
    expect(disabled.enabled).toBe(false);
    expect(disabled.state.disabledReason).toBe("disabled by request");
    await clock.advance(5 * HOUR);
    expect(runner.calls).toHaveLength(1);
  });

  it("run now runs a job at once, even a disabled one, and resolves with its run-log entry", async () => {
    const { service, clock, runner } = await cron();
    await service.add({ id: "r", schedule: { every: DAY }, prompt: "report", enabled: false });
    const run = await service.runNow("r");
    expect(run).toMatchObject({
      jobId: "r",
      agentId: "ops",
      trigger: "manual",
      status: "ok",
      scheduledAt: clock.now(),
      startedAt: clock.now(),
      output: "done: report",
    });
    expect(runner.calls).toHaveLength(1);
    expect((await service.runs("r"))[0]).toEqual(run);
  });

  it("run now leaves the schedule as it was", async () => {
    const { service, clock } = await cron();
    const job = await service.add({ id: "r", schedule: { every: DAY }, prompt: "p" });
    await clock.advance(HOUR);
    await service.runNow("r");
    expect((await service.get("r")).state.nextRunAt).toBe(job.state.nextRunAt);
  });

  it("run now of a running job is refused with CRON_JOB_RUNNING (a job never overlaps itself)", async () => {
    const { service, runner } = await cron();
    let finish!: () => void;
    runner.behave = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok" });
      });
    await service.add({ id: "busy", schedule: { every: DAY }, prompt: "p" });
    const first = service.runNow("busy");
    await new Promise((resolve) => setImmediate(resolve));
    const error = await failureOf(() => service.runNow("busy"));
    expect(CronError.isInstance(error)).toBe(true);
    expect((error as CronError).code).toBe("CRON_JOB_RUNNING");
    finish();
    expect((await first).status).toBe("ok");
  });

  it("occurrences that come due while a job is still running are skipped and counted", async () => {
    const { service, clock, runner } = await cron();
    let finish!: () => void;
    runner.behave = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok" });
      });
    await service.add({ id: "long", schedule: { every: MINUTE }, prompt: "p" });
    await clock.advance(MINUTE); // starts
    await clock.advance(3 * MINUTE + 30 * SECOND); // three more occurrences pass
    expect(runner.calls).toHaveLength(1);
    finish();
    await clock.advance(0);
    const [run] = await service.runs("long");
    expect(run!.skippedWhileRunning).toBe(3);
    expect((await service.get("long")).state.nextRunAt).toBe(runner.calls[0]!.at + 4 * MINUTE);
  });
});

describe("the run log", () => {
  it("every run is logged with start, end, status, error and an output summary", async () => {
    const { service, clock, runner } = await cron({ outputSummaryChars: 10 });
    let n = 0;
    runner.behave = async () => {
      n++;
      return n === 1
        ? { status: "ok", output: "a long answer that is cut" }
        : { status: "error", error: "model unavailable" };
    };
    await service.add({ id: "log", schedule: { every: HOUR }, prompt: "p" });
    await clock.advance(HOUR);
    await clock.advance(HOUR);
    const [second, first] = await service.runs("log");
    expect(first).toMatchObject({
      jobId: "log",
      agentId: "ops",
      trigger: "schedule",
      status: "ok",
      output: "a long ans…",
      sessionKey: `cron:log.${first!.startedAt}`,
    });
    expect(first!.runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(first!.finishedAt).toBeGreaterThanOrEqual(first!.startedAt);
    expect(first!.durationMs).toBe(first!.finishedAt! - first!.startedAt);
    expect(first!.latenessMs).toBe(0);
    expect(second).toMatchObject({
      status: "error",
      error: "model unavailable",
      consecutiveErrors: 1,
    });
    expect(second!.output).toBeUndefined();
  });

  it("a runner that throws, or resolves to something that is not an outcome, logs an error run", async () => {
    const { service, runner } = await cron({ maxConsecutiveErrors: 10 });
    await service.add({ id: "t", schedule: { every: DAY }, prompt: "p" });
    runner.behave = () => {
      throw new InvalidArgumentError("no such model");
    };
    expect(await service.runNow("t")).toMatchObject({
      status: "error",
      error: "INVALID_ARGUMENT: no such model",
    });
    runner.behave = () => "done" as never;
    const run = await service.runNow("t");
    expect(run.status).toBe("error");
    expect(run.error).toMatch(/runJob must resolve to/);
  });

  it("every run is published on the beamclaw:cron.run telemetry channel", async () => {
    const { service, clock } = await cron();
    const events: TelemetryEvents["beamclaw:cron.run"][] = [];
    const off = subscribeTelemetry("beamclaw:cron.run", (e) => events.push(e));
    try {
      await service.add({ id: "tel", schedule: { every: HOUR }, prompt: "p" });
      await clock.advance(HOUR);
    } finally {
      off();
    }
    expect(events).toEqual([
      expect.objectContaining({
        agentId: "ops",
        jobId: "tel",
        trigger: "schedule",
        status: "ok",
        latenessMs: 0,
      }),
    ]);
  });
});

describe("persistence through the store", () => {
  it("jobs, their state and run logs are in the store: a new service over the same MemoryStore carries on", async () => {
    const fixture = await cron();
    const { service, clock, store, runner } = fixture;
    await service.add({ id: "p", schedule: { every: HOUR }, prompt: "persist me" });
    await clock.advance(HOUR);
    await service.stop();
    const stored = (await store.cron.getJob("p")) as CronJob;
    expect(stored).toMatchObject({ id: "p", agentId: "ops", prompt: "persist me" });
    expect(stored.state).toMatchObject({
      runCount: 1,
      lastStatus: "ok",
      nextRunAt: clock.now() + HOUR,
    });
    const again = await fixture.restart();
    expect((await again.list()).map((j) => j.id)).toEqual(["p"]);
    await clock.advance(HOUR);
    expect(runner.timesOf("p")).toHaveLength(2);
    expect(await again.runs("p")).toHaveLength(2);
  });

  it("an at job that ran never runs again, also after a restart", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    await service.add({ id: "once", schedule: { at: clock.now() + MINUTE }, prompt: "p" });
    await clock.advance(MINUTE);
    await service.stop();
    const again = await fixture.restart();
    await clock.advance(DAY);
    expect(runner.timesOf("once")).toHaveLength(1);
    const error = await failureOf(() => again.runNow("once"));
    expect((error as CronError).code).toBe("CRON_JOB_COMPLETED");
    expect(((await failureOf(() => again.enable("once"))) as CronError).code).toBe(
      "CRON_JOB_COMPLETED",
    );
  });

  it("an at job whose run was cut short by a crash counts as run: it is logged interrupted and never runs again", async () => {
    const fixture = await cron();
    const { service, clock, runner, store } = fixture;
    runner.behave = () => new Promise(() => {}); // never finishes: the process "dies" mid-run
    await service.add({ id: "once", schedule: { at: clock.now() + MINUTE }, prompt: "p" });
    await clock.advance(MINUTE);
    // The run in progress is marked in the store before the job's code is called.
    expect(await store.kv.get("cron:running:ops:once")).toMatchObject({
      startedAt: clock.now(),
      scheduledAt: clock.now(),
      trigger: "schedule",
    });
    service.kill(); // no terminate: the marker stays in the store, as after a crash
    runner.behave = () => ({ status: "ok" });
    const again = await fixture.restart();
    await clock.advance(DAY);
    expect(runner.timesOf("once")).toHaveLength(1);
    const [run] = await again.runs("once");
    expect(run).toMatchObject({ status: "interrupted", startedAt: clock.now() - DAY });
    expect((await again.get("once")).state.completedAt).toBeDefined();
    expect(await store.kv.keys("cron:running:")).toEqual([]);
  });

  it("a recurring run cut short by a crash is logged interrupted, and its occurrence is not caught up as missed", async () => {
    const fixture = await cron();
    const { service, clock, runner } = fixture;
    const t0 = clock.now();
    runner.behave = () => new Promise(() => {});
    await service.add({ id: "h", schedule: { every: HOUR }, prompt: "p", catchUp: "run-all" });
    await clock.advance(HOUR);
    service.kill();
    runner.behave = () => ({ status: "ok" });
    clock.jumpTo(t0 + HOUR + 10 * MINUTE);
    const again = await fixture.restart();
    await clock.advance(0);
    expect(runner.timesOf("h")).toEqual([t0 + HOUR]);
    expect((await again.runs("h")).map((r) => [r.status, r.scheduledAt])).toEqual([
      ["interrupted", t0 + HOUR],
    ]);
    const { state } = await again.get("h");
    expect(state).toMatchObject({
      nextRunAt: t0 + 2 * HOUR,
      runCount: 1,
      lastStatus: "interrupted",
    });
  });

  it("a stored job whose schedule no longer validates is kept, disabled, with the reason", async () => {
    const store = new MemoryStore();
    await store.open();
    await store.cron.putJob(storedJob({ id: "broken", schedule: { cron: "99 * * * *" } }));
    await cron({ store });
    const stored = (await store.cron.getJob("broken")) as CronJob;
    expect(stored.enabled).toBe(false);
    expect(stored.state.disabledReason).toMatch(/invalid schedule: INVALID_CRON_SCHEDULE/);
  });
});

describe("bad input loses nothing", () => {
  it("an invalid job is refused with a typed error and nothing is stored", async () => {
    const { service, store } = await cron();
    const cases: Array<[unknown, string]> = [
      [{ id: "Bad Id", schedule: { every: 1000 }, prompt: "p" }, "INVALID_ARGUMENT"],
      [{ id: "x", schedule: { every: 1000 } }, "INVALID_ARGUMENT"],
      [{ id: "x", schedule: { every: 1000 }, prompt: "p", session: "both" }, "INVALID_ARGUMENT"],
      [{ id: "x", schedule: { cron: "0 25 * * *" }, prompt: "p" }, "INVALID_CRON_SCHEDULE"],
      [{ id: "x", schedule: { at: "next tuesday" }, prompt: "p" }, "INVALID_CRON_SCHEDULE"],
      [{ id: "x", agentId: "other", schedule: { every: 1000 }, prompt: "p" }, "INVALID_ARGUMENT"],
      [
        {
          id: "x",
          schedule: { every: 1000 },
          prompt: "p",
          delivery: { kind: "webhook", url: "nope" },
        },
        "INVALID_ARGUMENT",
      ],
    ];
    for (const [input, code] of cases) {
      const error = await failureOf(() => service.add(input as never));
      expect((error as { code?: string }).code, JSON.stringify(input)).toBe(code);
    }
    expect(await store.cron.listJobs()).toEqual([]);
    expect(service.status).toBe("running");
  });

  it("an id already in use is refused with CRON_JOB_EXISTS, even by another agent's job", async () => {
    const { service, store } = await cron();
    await service.add({ id: "taken", schedule: { every: HOUR }, prompt: "p" });
    expect(
      (
        (await failureOf(() =>
          service.add({ id: "taken", schedule: { every: 1 }, prompt: "q" }),
        )) as CronError
      ).code,
    ).toBe("CRON_JOB_EXISTS");
    const other = await new CronService({
      agentId: "other",
      store,
      runJob: async () => ({ status: "ok" }),
    }).start();
    try {
      const error = await failureOf(() =>
        other.add({ id: "taken", schedule: { every: HOUR }, prompt: "q" }),
      );
      expect((error as CronError).code).toBe("CRON_JOB_EXISTS");
      expect((error as CronError).message).toContain('agent "ops"');
    } finally {
      await other.stop();
    }
  });

  it("an update with a bad field leaves the job exactly as it was", async () => {
    const { service } = await cron();
    const before = await service.add({ id: "u", schedule: { every: HOUR }, prompt: "p" });
    for (const patch of [{ schedule: { cron: "nonsense" } }, { prompt: "" }, { id: "v" }]) {
      await failureOf(() => service.update("u", patch as never));
    }
    expect(await service.get("u")).toEqual(before);
  });

  it("an unknown job id is CRON_JOB_NOT_FOUND; removing one resolves false", async () => {
    const { service } = await cron();
    for (const call of [
      () => service.get("nope"),
      () => service.runNow("nope"),
      () => service.runs("nope"),
    ]) {
      expect(((await failureOf(call)) as CronError).code).toBe("CRON_JOB_NOT_FOUND");
    }
    expect(await service.remove("nope")).toBe(false);
  });
});

describe("update and remove", () => {
  it("a new schedule is computed from now; an at job given a new time runs again", async () => {
    const { service, clock, runner } = await cron();
    await service.add({ id: "a", schedule: { at: clock.now() + MINUTE }, prompt: "p" });
    await clock.advance(MINUTE);
    const updated = await service.update("a", { schedule: { at: clock.now() + HOUR } });
    expect(updated.state.completedAt).toBeUndefined();
    expect(updated.state.nextRunAt).toBe(clock.now() + HOUR);
    await clock.advance(HOUR);
    expect(runner.timesOf("a")).toHaveLength(2);
  });

  it("an update during a run changes the job; the run in progress stays in its marker, not in the stored job", async () => {
    const { service, store, runner } = await cron();
    let finish!: () => void;
    runner.behave = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok" });
      });
    await service.add({ id: "u", schedule: { every: DAY }, prompt: "old" });
    const run = service.runNow("u");
    await new Promise((resolve) => setImmediate(resolve));
    const updated = await service.update("u", { prompt: "new" });
    expect(updated.state.runningAt).toBeDefined(); // the service knows it is running
    const stored = (await store.cron.getJob("u")) as CronJob;
    expect(stored.prompt).toBe("new");
    expect(stored.state.runningAt).toBeUndefined();
    expect(await store.kv.get("cron:running:ops:u")).toBeDefined();
    finish();
    expect((await run).status).toBe("ok");
    expect(((await store.cron.getJob("u")) as CronJob).state.runCount).toBe(1);
    expect(await store.kv.get("cron:running:ops:u")).toBeUndefined();
  });

  it("remove deletes the job and its run log, and aborts its run in progress", async () => {
    const { service, store, runner } = await cron();
    let signal: AbortSignal | undefined;
    runner.behave = (_job, context) => {
      signal = context.signal;
      return new Promise(() => {});
    };
    await service.add({ id: "gone", schedule: { every: DAY }, prompt: "p" });
    await store.cron.appendRun({ jobId: "gone", startedAt: 1 });
    void service.runNow("gone").catch(() => undefined);
    await new Promise((resolve) => setImmediate(resolve));
    expect(await service.remove("gone")).toBe(true);
    expect(signal?.aborted).toBe(true);
    expect(await store.cron.getJob("gone")).toBeUndefined();
    expect(await store.cron.listRuns("gone")).toEqual([]);
  });

  it("cronStatus reports counts, the next due job and the armed timer", async () => {
    const { service, clock } = await cron();
    await service.add({ id: "a", schedule: { every: HOUR }, prompt: "p" });
    await service.add({ id: "b", schedule: { every: MINUTE }, prompt: "p", enabled: false });
    expect(await service.cronStatus()).toEqual({
      agentId: "ops",
      jobs: 2,
      enabled: 1,
      running: 0,
      nextRunAt: clock.now() + HOUR,
      nextJobId: "a",
      timerArmed: true,
    });
  });
});

describe("stopping", () => {
  it("stop leaves no timer behind and logs a run in progress as interrupted", async () => {
    const { service, clock, runner } = await cron();
    let signal: AbortSignal | undefined;
    runner.behave = (_job, context) => {
      signal = context.signal;
      return new Promise(() => {});
    };
    await service.add({ id: "s", schedule: { every: MINUTE }, prompt: "p" });
    await clock.advance(MINUTE);
    await service.stop();
    expect(clock.activeTimers).toBe(0);
    expect(signal?.aborted).toBe(true);
    const fixture = fixtures.at(-1)!;
    const [run] = (await fixture.store.cron.listRuns("s")) as CronRun[];
    expect(run!.status).toBe("interrupted");
    expect(((await fixture.store.cron.getJob("s")) as CronJob).state.runningAt).toBeUndefined();
  });

  it("the service with the real clock starts nothing it does not stop", async () => {
    const store = new MemoryStore();
    await store.open();
    const service = await new CronService({
      agentId: "ops",
      store,
      runJob: async () => ({ status: "ok" }),
    }).start();
    await service.add({ id: "far", schedule: { every: 400 * DAY }, prompt: "p" });
    expect((await service.cronStatus()).timerArmed).toBe(true);
    await service.stop();
  });
});
