/**
 * The running marker a `CronService` writes before a run (`cron:running:<agentId>:<jobId>`)
 * names the service that wrote it. A service that starts on a store where another service
 * (another process, or another node of the same process) has a run of the job in progress
 * leaves that live marker alone: the run is recorded once, by its writer, not also as
 * `interrupted` by the newcomer. A marker whose writer is gone (a crash: a service of this
 * process that was killed, or another process whose liveness key ran out) is still reported
 * `interrupted`, at once or once the key has run out; a marker of an older version (no
 * owner) as before.
 */
import { describe, expect, it } from "vitest";
import {
  type CronRunRecord,
  type CronService,
  createManualClock,
  type ManualClock,
  type MemoryStore,
} from "../src/index.js";
import {
  at,
  type CronFixture,
  clockedStore,
  MINUTE,
  SECOND,
  startCron,
  storedJob,
} from "./cron-support.js";

/** A marker as another process's service writes it, for job `tick` due at `scheduledAt`. */
function foreignMarker(scheduledAt: number, owner: string) {
  return {
    owner,
    process: "another-process",
    runId: "run-elsewhere",
    startedAt: scheduledAt,
    scheduledAt,
    trigger: "schedule",
    sessionKey: `cron:tick.${scheduledAt}`,
    schedule: JSON.stringify({ every: 10 * MINUTE }),
  };
}

describe("a cron service started beside another service's run in progress", () => {
  /** A service whose run of job `tick` (every 10 minutes) is in progress until `finish()`. */
  async function startRunInProgress(): Promise<{ fixture: CronFixture; finish: () => void }> {
    const fixture = await startCron();
    let finish!: () => void;
    fixture.runner.behave = () =>
      new Promise((resolve) => {
        finish = () => resolve({ status: "ok" });
      });
    await fixture.service.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await fixture.clock.advance(10 * MINUTE);
    await fixture.service.cronStatus();
    return { fixture, finish };
  }

  it("leaves the live run to its writer: one run, recorded once, as ok", async () => {
    const { fixture, finish } = await startRunInProgress();
    const { store, runner } = fixture;
    const a = fixture.service;
    expect(runner.calls).toHaveLength(1);
    expect(await store.kv.get("cron:running:ops:tick")).toBeDefined();

    // A second service of the agent starts on the same store while a's run goes on.
    const b = await fixture.restart();
    try {
      expect(await b.runs("tick")).toEqual([]);
      expect(await store.kv.get("cron:running:ops:tick")).toBeDefined();
      finish();
      await a.cronStatus();
      await b.cronStatus();
      const log = await b.runs("tick");
      expect(log.map((run) => run.status)).toEqual(["ok"]);
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      await b.stop();
      await a.stop();
    }
  });

  it("still reports interrupted the run of a service of this process that was killed", async () => {
    const fixture = await startCron();
    const { clock, store, runner } = fixture;
    runner.behave = () => new Promise(() => {});
    await fixture.service.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
    await clock.advance(10 * MINUTE);
    fixture.service.kill(); // no terminate: its marker stays, its writer is gone
    const again = await fixture.restart();
    try {
      expect((await again.runs("tick")).map((run) => run.status)).toEqual(["interrupted"]);
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      await again.stop();
    }
  });

  it("runs the job itself meanwhile, and the other service's run, which ends normally, is logged once", async () => {
    const { fixture, finish } = await startRunInProgress();
    const { clock, store, runner } = fixture;
    const a = fixture.service;
    const first = await store.kv.get<{ runId: string }>("cron:running:ops:tick");
    const b = await fixture.restart();
    try {
      // b fires the next due time while a's run goes on: b's marker takes the job's key.
      runner.behave = () => ({ status: "ok" });
      await clock.advance(10 * MINUTE);
      await b.cronStatus();
      expect(runner.calls).toHaveLength(2);
      finish();
      await a.cronStatus();
      await a.stop();
      await clock.advance(40 * SECOND);
      await b.cronStatus();
      const log = await b.runs("tick");
      expect(log.map((run) => run.status)).toEqual(["ok", "ok"]);
      expect(log.filter((run) => run.runId === first?.runId)).toHaveLength(1);
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      await b.stop();
      await a.stop();
    }
  });
});

describe("a running marker of another process", () => {
  async function startWith(
    setUp: (store: MemoryStore, due: number) => Promise<void>,
  ): Promise<{ clock: ManualClock; store: MemoryStore; service: CronService; due: number }> {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await clockedStore(clock);
    const due = clock.now() - MINUTE;
    await store.cron.putJob(
      storedJob({
        id: "tick",
        schedule: { every: 10 * MINUTE },
        createdAt: due - 10 * MINUTE,
        state: { consecutiveErrors: 0, runCount: 0, missedCount: 0, nextRunAt: due + 10 * MINUTE },
      }),
    );
    await setUp(store, due);
    const fixture = await startCron({ clock, store });
    return { clock, store, service: fixture.service, due };
  }

  it("whose liveness key lasts is left alone, and reported interrupted once the key has run out", async () => {
    const { clock, store, service, due } = await startWith(async (store, due) => {
      await store.kv.set("cron:running:ops:tick", foreignMarker(due, "svc-elsewhere"));
      await store.kv.set("cron:alive:ops:svc-elsewhere", {}, { ttlMs: 20 * SECOND });
    });
    try {
      expect(await service.runs("tick")).toEqual([]);
      expect(await store.kv.get("cron:running:ops:tick")).toMatchObject({ runId: "run-elsewhere" });
      // The other process died: its key is not renewed, and runs out. Looked at again a
      // lease (30 s) after the start, its run is interrupted.
      await clock.advance(30 * SECOND);
      await service.cronStatus();
      const log = await service.runs("tick");
      expect(log).toMatchObject([
        { status: "interrupted", runId: "run-elsewhere", scheduledAt: due },
      ]);
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      await service.stop();
      await store.close();
    }
  });

  it("whose run ended meanwhile is not reported at all", async () => {
    const { clock, store, service } = await startWith(async (store, due) => {
      await store.kv.set("cron:running:ops:tick", foreignMarker(due, "svc-elsewhere"));
      await store.kv.set("cron:alive:ops:svc-elsewhere", {}, { ttlMs: 20 * SECOND });
    });
    try {
      await store.kv.delete("cron:running:ops:tick"); // its writer recorded it and cleared it
      await clock.advance(40 * SECOND);
      await service.cronStatus();
      expect(await service.runs("tick")).toEqual([]);
    } finally {
      await service.stop();
      await store.close();
    }
  });

  it("whose key still lasts when this service runs the job is reported interrupted once its key has run out", async () => {
    const { clock, store, service, due } = await startWith(async (store, due) => {
      // The crashed process's run was of the previous due time; the next one is 10 s away.
      const next = due + MINUTE + 10 * SECOND;
      await store.cron.putJob(
        storedJob({
          id: "tick",
          schedule: { every: 10 * MINUTE },
          createdAt: next - 20 * MINUTE,
          state: { consecutiveErrors: 0, runCount: 0, missedCount: 0, nextRunAt: next },
        }),
      );
      await store.kv.set("cron:running:ops:tick", foreignMarker(next - 10 * MINUTE, "svc-crashed"));
      await store.kv.set("cron:alive:ops:svc-crashed", {}, { ttlMs: 20 * SECOND });
    });
    const next = due + MINUTE + 10 * SECOND;
    try {
      expect(await service.runs("tick")).toEqual([]);
      // This service runs the next due time while the crashed process's key still lasts: its
      // marker takes the job's key, and the crashed run is still followed.
      await clock.advance(10 * SECOND);
      await service.cronStatus();
      expect((await service.runs("tick")).map((run) => run.status)).toEqual(["ok"]);
      await clock.advance(30 * SECOND);
      await service.cronStatus();
      await clock.advance(60 * SECOND);
      await service.cronStatus();
      const log = await service.runs("tick");
      expect(log.map((run) => run.status).sort()).toEqual(["interrupted", "ok"]);
      expect(log.find((run) => run.status === "interrupted")).toMatchObject({
        runId: "run-elsewhere",
        scheduledAt: next - 10 * MINUTE,
      });
      expect(log.find((run) => run.status === "ok")).toMatchObject({ scheduledAt: next });
      const [job] = await service.list();
      expect(job?.state).toMatchObject({ lastStatus: "ok", lastRunAt: next, runCount: 2 });
      expect(await store.kv.keys("cron:running:")).toEqual([]);
    } finally {
      await service.stop();
      await store.close();
    }
  });

  /**
   * Job `tick`'s run of another process (marker `run-elsewhere`, of the previous due time),
   * followed (detached) after this service runs the next due time; its writer logs it, then
   * 1,100 runs that started after it are logged (more than the largest page a store lists),
   * and its writer's liveness key runs out. Returns the whole run log then, read by pages.
   */
  async function loggedBeforeManyRuns(
    patch: (store: MemoryStore) => void = () => {},
  ): Promise<CronRunRecord[]> {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await clockedStore(clock);
    const next = clock.now() + 10 * SECOND;
    const previous = next - 10 * MINUTE;
    await store.cron.putJob(
      storedJob({
        id: "tick",
        schedule: { every: 10 * MINUTE },
        createdAt: next - 20 * MINUTE,
        state: { consecutiveErrors: 0, runCount: 0, missedCount: 0, nextRunAt: next },
      }),
    );
    await store.kv.set("cron:running:ops:tick", foreignMarker(previous, "svc-elsewhere"));
    await store.kv.set("cron:alive:ops:svc-elsewhere", {}, { ttlMs: 20 * SECOND });
    const { service } = await startCron({ clock, store, runLogKeep: 5000 });
    try {
      await clock.advance(10 * SECOND);
      await service.cronStatus();
      expect((await service.runs("tick")).map((run) => run.status)).toEqual(["ok"]);
      await store.cron.appendRun(
        { jobId: "tick", runId: "run-elsewhere", startedAt: previous, status: "ok" },
        { keep: 5000 },
      );
      for (let i = 1; i <= 1100; i++) {
        await store.cron.appendRun(
          { jobId: "tick", runId: `later-${i}`, startedAt: previous + i, status: "ok" },
          { keep: 5000 },
        );
      }
      const listRuns = store.cron.listRuns.bind(store.cron);
      patch(store);
      await clock.advance(30 * SECOND);
      await service.cronStatus();
      await clock.advance(60 * SECOND);
      await service.cronStatus();
      expect(await store.kv.keys("cron:running:")).toEqual([]);
      const log: CronRunRecord[] = [];
      for (let offset = 0; offset <= 2000; offset += 1000) {
        log.push(...(await listRuns("tick", { limit: 1000, offset })));
      }
      return log;
    } finally {
      await service.stop();
      await store.close();
    }
  }

  it("whose run its writer logged before more than 1,000 later runs is not reported again", async () => {
    const log = await loggedBeforeManyRuns();
    expect(log).toHaveLength(1102);
    expect(log.filter((run) => run.runId === "run-elsewhere")).toEqual([
      expect.objectContaining({ status: "ok" }),
    ]);
    expect(log.filter((run) => run.status === "interrupted")).toEqual([]);
  });

  it("whose run is looked up in a store that ignores offset ends the lookup (reported interrupted)", async () => {
    // A store written before `listRuns` took an offset lists its first page again and again.
    const log = await loggedBeforeManyRuns((store) => {
      const listRuns = store.cron.listRuns.bind(store.cron);
      store.cron.listRuns = (jobId, options) => listRuns(jobId, { limit: options?.limit });
    });
    expect(log).toHaveLength(1103);
    expect(log.filter((run) => run.status === "interrupted")).toEqual([
      expect.objectContaining({ runId: "run-elsewhere" }),
    ]);
  });

  it("whose liveness key is gone is reported interrupted at once", async () => {
    // (A marker of an older version, which names no writer: see cron-followups.test.ts.)
    for (const owner of ["svc-gone"]) {
      const { store, service, due } = await startWith(async (store, due) => {
        await store.kv.set("cron:running:ops:tick", foreignMarker(due, owner));
      });
      try {
        expect(await service.runs("tick")).toMatchObject([
          { status: "interrupted", scheduledAt: due },
        ]);
        expect(await store.kv.keys("cron:running:")).toEqual([]);
      } finally {
        await service.stop();
        await store.close();
      }
    }
  });
});
