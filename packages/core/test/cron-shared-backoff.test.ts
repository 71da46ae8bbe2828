/**
 * Two plain `CronService`s of one agent on one store (two processes, or a restart that
 * overlaps the old one) share the backoff after a failed run: the retry runs once, on one of
 * them, when the backoff says (not an occurrence earlier on the other one, nor twice), and
 * the error count that picks the next backoff step and disables the job is counted across
 * both. A cluster's guarded runner keeps its own claim and writes none of this.
 */
import { describe, expect, it } from "vitest";
import {
  type CronJobRunner,
  CronRunGuard,
  type CronRunOutcome,
  CronService,
  type CronServiceOptions,
  createManualClock,
  guardCronRunner,
  type ManualClock,
  MemoryStore,
} from "../src/index.js";
import { at, MINUTE, recordingRunner } from "./cron-support.js";

/** One call of a runner: which service ran which due time, and when. */
interface Fired {
  service: "a" | "b";
  scheduledAt: number;
  at: number;
}

interface Pair {
  clock: ManualClock;
  store: MemoryStore;
  a: CronService;
  b: CronService;
  fired: Fired[];
  /** Decides the outcome of the nth call (0-based) across both services; default `ok`. */
  behave: (n: number) => CronRunOutcome | Promise<CronRunOutcome>;
  /** Moves time forward a minute at a time, letting both services handle each tick. */
  advance(ms: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Service `a` adds job `tick` (`every` 10 min, first due 10 min after the start), then `b`
 * starts on the same store and clock and loads it: both have the same first due time.
 */
async function twoServices(options: Partial<CronServiceOptions>): Promise<Pair> {
  const clock = createManualClock(at("2026-01-05T00:00:00Z"));
  const store = new MemoryStore();
  await store.open();
  const fired: Fired[] = [];
  const pair = {
    clock,
    store,
    fired,
    behave: (): CronRunOutcome => ({ status: "ok" }),
  } as unknown as Pair;
  const runner =
    (service: "a" | "b"): CronJobRunner =>
    async (_job, context) => {
      const n = fired.length;
      fired.push({ service, scheduledAt: context.scheduledAt, at: clock.now() });
      return pair.behave(n);
    };
  const make = (service: "a" | "b") =>
    new CronService({ agentId: "ops", store, clock, runJob: runner(service), ...options }).start();
  pair.a = await make("a");
  await pair.a.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
  pair.b = await make("b");
  pair.advance = async (ms: number) => {
    for (let done = 0; done < ms; done += MINUTE) {
      await clock.advance(Math.min(MINUTE, ms - done));
      // A request is answered after the tick in its mailbox (claims included) was handled.
      await pair.a.cronStatus();
      await pair.b.cronStatus();
    }
  };
  pair.stop = async () => {
    await pair.a.stop();
    await pair.b.stop();
    await store.close();
  };
  return pair;
}

/**
 * Makes the first run (call 0) go on until the returned function is called, then fail; the
 * other calls get `rest(n)`. The returned function also lets both services handle the end.
 */
function holdFirstRun(pair: Pair, rest: (n: number) => CronRunOutcome): () => Promise<void> {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  pair.behave = async (n) => {
    if (n > 0) return rest(n);
    await done;
    return { status: "error", error: "boom" };
  };
  return async () => {
    finish();
    await pair.a.cronStatus();
    await pair.b.cronStatus();
  };
}

/** Due times fired, relative to the first one, in minutes. */
function dueMinutes(fired: readonly Fired[], first: number): number[] {
  return fired.map((f) => (f.scheduledAt - first) / MINUTE);
}

describe("two plain cron services on one store, after a failed run", () => {
  it("run the retry once, when the backoff says, not the occurrences before it on the other", async () => {
    const pair = await twoServices({ backoffMs: [25 * MINUTE] });
    try {
      const first = (await pair.a.get("tick")).state.nextRunAt!;
      expect((await pair.b.get("tick")).state.nextRunAt).toBe(first);
      pair.behave = (n) => (n === 0 ? { status: "error", error: "boom" } : { status: "ok" });
      await pair.advance(50 * MINUTE);
      // As one service would: the failed run at 0, its retry 25 min later (the occurrences
      // at 10 and 20 are within the backoff), then the schedule again. Each exactly once.
      expect(dueMinutes(pair.fired, first)).toEqual([0, 25, 30, 40]);
      expect(pair.fired.map((f) => f.at - f.scheduledAt)).toEqual([0, 0, 0, 0]);
      const log = await pair.a.runs("tick");
      expect(log.map((r) => r.status).sort()).toEqual(["error", "ok", "ok", "ok"]);
    } finally {
      await pair.stop();
    }
  });

  it("run the retry once after a long failed run, not also the occurrence that came due before it", async () => {
    const pair = await twoServices({ backoffMs: [2 * MINUTE] });
    try {
      const first = (await pair.a.get("tick")).state.nextRunAt!;
      const finishFirst = holdFirstRun(pair, () => ({ status: "ok" }));
      await pair.advance(10 * MINUTE); // the first occurrence starts on one of them
      expect(pair.fired).toHaveLength(1);
      await pair.advance(9 * MINUTE);
      await finishFirst(); // fails 9 min in: the retry is due 2 min later, 1 min after the next occurrence
      await pair.advance(21 * MINUTE);
      // One service alone skips the occurrence at 10 (inside the backoff) and retries at 11.
      expect(dueMinutes(pair.fired, first)).toEqual([0, 11, 20, 30]);
    } finally {
      await pair.stop();
    }
  });

  it("run one retry after two overlapping failed runs, not one retry each", async () => {
    const pair = await twoServices({ backoffMs: [8 * MINUTE] });
    try {
      const first = (await pair.a.get("tick")).state.nextRunAt!;
      const finishFirst = holdFirstRun(pair, (n) =>
        n === 1 ? { status: "error", error: "boom" } : { status: "ok" },
      );
      // The run at 0 goes on for 25 min on one service; the other one runs the occurrence at
      // 10 meanwhile, which fails at once, and its retry (20, the next occurrence past the
      // backoff) succeeds while the first run still goes on.
      await pair.advance(35 * MINUTE);
      expect(dueMinutes(pair.fired, first)).toEqual([0, 10, 20]);
      await finishFirst(); // fails 25 min in: the retry after it already ran (at 20)
      await pair.advance(25 * MINUTE);
      // The occurrence at 30 runs when it is due: no second retry of the same failures,
      // 8 min after the slow run's end (at 33).
      expect(dueMinutes(pair.fired, first)).toEqual([0, 10, 20, 30, 40, 50]);
      const log = await pair.a.runs("tick", { limit: 10 });
      expect(log.filter((r) => r.status === "error")).toHaveLength(2);
    } finally {
      await pair.stop();
    }
  });

  it("count errors across both: the next backoff step, and disabled after the limit until enabled again", async () => {
    const pair = await twoServices({
      backoffMs: [25 * MINUTE, 45 * MINUTE],
      maxConsecutiveErrors: 3,
    });
    try {
      const first = (await pair.a.get("tick")).state.nextRunAt!;
      pair.behave = () => ({ status: "error", error: "boom" });
      await pair.advance(130 * MINUTE);
      // 0 fails (1 error, 25 min), 25 fails (2 errors, 45 min), 70 fails (3 errors): disabled.
      expect(dueMinutes(pair.fired, first)).toEqual([0, 25, 70]);
      const log = (await pair.a.runs("tick")).sort((x, y) => x.scheduledAt - y.scheduledAt);
      expect(log.map((r) => r.consecutiveErrors)).toEqual([1, 2, 3]);
      // The service that ran the third failure disabled the job; the other one fires it no more.
      const last = pair.fired[2]!.service === "a" ? pair.a : pair.b;
      expect((await last.get("tick")).enabled).toBe(false);
      // Enabled again there, it runs once per occurrence again, on one of them.
      pair.behave = () => ({ status: "ok" });
      await last.enable("tick");
      const count = pair.fired.length;
      await pair.advance(20 * MINUTE);
      const after = pair.fired.slice(count).map((f) => f.scheduledAt);
      expect(after).toHaveLength(2);
      expect(new Set(after).size).toBe(2);
    } finally {
      await pair.stop();
    }
  });

  it("leave a guarded runner's failures to the runner: no claim record written", async () => {
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = new MemoryStore();
    await store.open();
    const runner = recordingRunner(clock);
    runner.behave = () => ({ status: "error", error: "boom" });
    const guard = new CronRunGuard({ store, nodeId: "n1" });
    const runJob: CronJobRunner = guardCronRunner(runner.runJob, guard);
    const service = await new CronService({ agentId: "ops", store, clock, runJob }).start();
    try {
      await service.add({ id: "tick", schedule: { every: 10 * MINUTE }, prompt: "p" });
      await clock.advance(10 * MINUTE);
      await service.cronStatus();
      expect(runner.calls).toHaveLength(1);
      expect((await service.get("tick")).state.consecutiveErrors).toBe(1);
      expect(await store.kv.keys("cron:fired:")).toEqual([]);
    } finally {
      await service.stop();
      await store.close();
    }
  });
});
