/**
 * Monotonic timers: waits of an interval (a heartbeat every 30 minutes, a presence deadline, a
 * client's next beat or retry, a heartbeat turn's time limit, the cron supervisor's resync)
 * count elapsed time, so setting the wall clock back (an NTP step, a VM resumed with an old
 * time) does not put them off by as much, and setting it forward does not fire them early.
 * Active hours stay on the wall clock. Cron due times stay on the wall clock too
 * (`cron-system-clock.test.ts`).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type Clock,
  CronSupervisor,
  createHeartbeatClient,
  createManualClock,
  type HeartbeatClient,
  HeartbeatRunner,
  type HeartbeatTurn,
  LocalPubSub,
  PresenceTracker,
  PubSubCronSync,
  systemClock,
} from "../src/index.js";
import { at, HOUR, MINUTE, openStore } from "./cron-support.js";

const SECOND = 1_000;
const DAY = 24 * HOUR;
const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  vi.useRealTimers();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("ManualClock.setMonotonicTimer", () => {
  it("fires on advance, keeps its time left across a jumpTo either way, and is cleared by clearTimer", async () => {
    const clock = createManualClock(at("2026-06-01T10:00:00Z"));
    const fired: string[] = [];
    clock.setMonotonicTimer(() => fired.push("mono"), 30 * MINUTE);
    const wall = clock.setTimer(() => fired.push("wall"), 30 * MINUTE);
    const cleared = clock.setMonotonicTimer(() => fired.push("cleared"), 10 * MINUTE);
    clock.clearTimer(cleared);
    expect(clock.activeTimers).toBe(2);
    await clock.advance(10 * MINUTE);
    // The wall clock is set back an hour: the wall timer is an hour further off, not this one.
    clock.jumpTo(clock.now() - HOUR);
    expect(clock.nextTimerAt).toBe(clock.now() + 20 * MINUTE);
    await clock.advance(20 * MINUTE - 1);
    expect(fired).toEqual([]);
    await clock.advance(1);
    expect(fired).toEqual(["mono"]);
    clock.clearTimer(wall);
    // Set forward a day: a monotonic timer does not fire for it, even on advance(0).
    clock.setMonotonicTimer(() => fired.push("after-jump"), 5 * MINUTE);
    clock.jumpTo(clock.now() + DAY);
    await clock.advance(0);
    expect(fired).toEqual(["mono"]);
    await clock.advance(5 * MINUTE);
    expect(fired).toEqual(["mono", "after-jump"]);
    expect(clock.activeTimers).toBe(0);
  });

  it("fires in time order with wall timers", async () => {
    const clock = createManualClock(0);
    const fired: string[] = [];
    clock.setTimer(() => fired.push("wall-3"), 3_000);
    clock.setMonotonicTimer(() => fired.push("mono-2"), 2_000);
    clock.setMonotonicTimer(() => fired.push("mono-4"), 4_000);
    clock.setTimer(() => fired.push("wall-1"), 1_000);
    await clock.advance(5_000);
    expect(fired).toEqual(["wall-1", "mono-2", "wall-3", "mono-4"]);
  });
});

describe("systemClock.setMonotonicTimer", () => {
  it("fires after its delay and not before; a cleared one never fires (real timers)", async () => {
    const setMonotonicTimer = systemClock.setMonotonicTimer;
    if (setMonotonicTimer === undefined) throw new Error("systemClock has no monotonic timer");
    const started = performance.now();
    let firedAfter: number | undefined;
    const cleared = vi.fn();
    const fired = new Promise<void>((resolve) => {
      setMonotonicTimer(() => {
        firedAfter = performance.now() - started;
        resolve();
      }, 40);
    });
    const handle = setMonotonicTimer(cleared, 20);
    systemClock.clearTimer(handle);
    systemClock.clearTimer(handle); // twice: ignored
    await fired;
    expect(firedAfter).toBeGreaterThanOrEqual(39);
    // Past the cleared timer's time too, by a margin.
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(cleared).not.toHaveBeenCalled();
  });

  it("is not moved by the wall clock, and waits past the 24.8-day timer limit", () => {
    vi.useFakeTimers({
      now: at("2026-11-26T12:00:00Z"),
      toFake: ["setTimeout", "clearTimeout", "Date", "performance"],
    });
    const setMonotonicTimer = systemClock.setMonotonicTimer;
    if (setMonotonicTimer === undefined) throw new Error("systemClock has no monotonic timer");
    const soon = vi.fn();
    const long = vi.fn();
    setMonotonicTimer(soon, 30 * MINUTE);
    setMonotonicTimer(long, 40 * DAY);
    // The wall clock is set back an hour: the timer fires 30 minutes on all the same.
    vi.setSystemTime(Date.now() - HOUR);
    vi.advanceTimersByTime(30 * MINUTE - 1);
    expect(soon).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(soon).toHaveBeenCalledTimes(1);
    // Set forward 50 days: a monotonic wait is not cut short by it.
    vi.setSystemTime(Date.now() + 50 * DAY);
    vi.advanceTimersByTime(40 * DAY - 30 * MINUTE - 1);
    expect(long).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(long).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("HeartbeatRunner on elapsed time", () => {
  async function runner(options: { turn?: HeartbeatTurn; turnTimeoutMs?: number } = {}) {
    const clock = createManualClock(at("2026-06-01T10:00:00Z"));
    const beats: number[] = [];
    const outcomes: string[] = [];
    const heartbeat = new HeartbeatRunner({
      agentId: "main",
      clock,
      everyMs: 30 * MINUTE,
      ...(options.turnTimeoutMs === undefined ? {} : { turnTimeoutMs: options.turnTimeoutMs }),
      runTurn:
        options.turn ??
        (async () => {
          beats.push(clock.now());
          return { status: "ok", text: "HEARTBEAT_OK" };
        }),
    });
    heartbeat.events.on("heartbeat", (outcome) => {
      if (outcome.type === "error") outcomes.push(`error:${outcome.error}`);
      else if (outcome.type === "skipped") outcomes.push(`skipped:${outcome.reason}`);
      else outcomes.push(outcome.type);
    });
    await heartbeat.start();
    cleanups.push(() => heartbeat.stop());
    return { clock, heartbeat, beats, outcomes };
  }

  it("a wall clock set back an hour does not delay the next beat", async () => {
    const { clock, heartbeat, beats } = await runner();
    await clock.advance(10 * MINUTE);
    clock.jumpTo(clock.now() - HOUR); // 09:10
    expect(heartbeat.stats().nextTickAt).toBe(at("2026-06-01T09:30:00Z"));
    await clock.advance(20 * MINUTE);
    expect(beats).toEqual([at("2026-06-01T09:30:00Z")]);
    // The rhythm goes on from there: every 30 minutes of elapsed time.
    await clock.advance(60 * MINUTE);
    expect(beats).toEqual([
      at("2026-06-01T09:30:00Z"),
      at("2026-06-01T10:00:00Z"),
      at("2026-06-01T10:30:00Z"),
    ]);
  });

  it("a wall clock set forward neither fires a beat early nor bunches the missed ones", async () => {
    const { clock, heartbeat, beats } = await runner();
    await clock.advance(10 * MINUTE);
    clock.jumpTo(clock.now() + 3 * HOUR); // 13:10
    await clock.advance(0);
    expect(beats).toEqual([]);
    expect(heartbeat.stats().nextTickAt).toBe(at("2026-06-01T13:30:00Z"));
    await clock.advance(20 * MINUTE - 1);
    expect(beats).toEqual([]);
    await clock.advance(1);
    await clock.advance(30 * MINUTE);
    expect(beats).toEqual([at("2026-06-01T13:30:00Z"), at("2026-06-01T14:00:00Z")]);
  });

  it("active hours are read on the wall clock at the beat, whichever way it was set", async () => {
    const clock = createManualClock(at("2026-06-01T07:40:00Z"));
    const outcomes: string[] = [];
    const heartbeat = new HeartbeatRunner({
      agentId: "main",
      clock,
      everyMs: 30 * MINUTE,
      activeHours: { start: "08:00", end: "22:00", timezone: "UTC" },
      runTurn: async () => ({ status: "ok", text: "HEARTBEAT_OK" }),
    });
    heartbeat.events.on("heartbeat", (outcome) =>
      outcomes.push(outcome.type === "skipped" ? outcome.reason : outcome.type),
    );
    await heartbeat.start();
    cleanups.push(() => heartbeat.stop());
    await clock.advance(10 * MINUTE); // 07:50
    clock.jumpTo(at("2026-06-01T21:30:00Z"));
    await clock.advance(20 * MINUTE); // beat at 21:50 wall, 30 minutes after the start
    expect(outcomes).toEqual(["suppressed"]);
    clock.jumpTo(at("2026-06-01T22:05:00Z"));
    await clock.advance(30 * MINUTE); // beat at 22:35 wall: outside
    expect(outcomes).toEqual(["suppressed", "outside-active-hours"]);
  });

  it("turnTimeoutMs counts elapsed time: a wall clock set back does not stretch it", async () => {
    const signals: AbortSignal[] = [];
    const { clock, outcomes } = await runner({
      turnTimeoutMs: 5 * MINUTE,
      turn: ({ signal }) => {
        signals.push(signal);
        return new Promise(() => undefined); // never answers
      },
    });
    await clock.advance(30 * MINUTE);
    expect(signals).toHaveLength(1);
    await clock.advance(MINUTE);
    clock.jumpTo(clock.now() - HOUR);
    await clock.advance(4 * MINUTE);
    expect(signals[0]!.aborted).toBe(true);
    expect(outcomes).toEqual(["error:the heartbeat turn took longer than 300000 ms"]);
  });

  it("a clock without setMonotonicTimer works as before, on its wall-clock timers", async () => {
    const manual = createManualClock(at("2026-06-01T10:00:00Z"));
    const wallOnly: Clock = {
      now: () => manual.now(),
      monotonic: () => manual.monotonic(),
      setTimer: (fn, ms) => manual.setTimer(fn, ms),
      clearTimer: (handle) => manual.clearTimer(handle),
    };
    const beats: number[] = [];
    const heartbeat = new HeartbeatRunner({
      agentId: "main",
      clock: wallOnly,
      everyMs: 30 * MINUTE,
      runTurn: async () => {
        beats.push(manual.now());
        return { status: "ok", text: "HEARTBEAT_OK" };
      },
    });
    await heartbeat.start();
    cleanups.push(() => heartbeat.stop());
    await manual.advance(65 * MINUTE);
    expect(beats).toEqual([at("2026-06-01T10:30:00Z"), at("2026-06-01T11:00:00Z")]);
    expect(heartbeat.stats().nextTickAt).toBe(at("2026-06-01T11:30:00Z"));
    await heartbeat.stop();
    expect(manual.activeTimers).toBe(0);
  });
});

describe("PresenceTracker on elapsed time", () => {
  function tracker() {
    const clock = createManualClock(at("2026-06-01T10:00:00Z"));
    const presence = new PresenceTracker({ clock, intervalMs: 30 * SECOND, graceMs: 0 }).start();
    cleanups.push(() => presence.stop());
    const missed: number[] = [];
    presence.events.on("missed", (node) => missed.push(node.missedBeats));
    return { clock, presence, missed };
  }

  it("a wall clock set back does not hide a node that stopped beating", async () => {
    const { clock, presence, missed } = tracker();
    presence.beat("laptop");
    clock.jumpTo(clock.now() - HOUR);
    await clock.advance(30 * SECOND);
    expect(missed).toEqual([1]);
    expect(presence.get("laptop")).toMatchObject({ status: "online", missedBeats: 1 });
  });

  it("a wall clock set forward does not mark a node missed or offline", async () => {
    const { clock, presence, missed } = tracker();
    presence.beat("laptop");
    await clock.advance(10 * SECOND);
    clock.jumpTo(clock.now() + HOUR);
    await clock.advance(0);
    expect(missed).toEqual([]);
    expect(presence.get("laptop")).toMatchObject({ status: "online", missedBeats: 0 });
    presence.beat("laptop");
    await clock.advance(30 * SECOND - 1);
    expect(missed).toEqual([]);
    await clock.advance(1);
    expect(missed).toEqual([1]);
  });
});

describe("createHeartbeatClient on elapsed time", () => {
  function client(failing: boolean) {
    const clock = createManualClock(at("2026-06-01T10:00:00Z"));
    const sent: number[] = [];
    const heartbeat: HeartbeatClient = createHeartbeatClient({
      clock,
      intervalMs: 30 * SECOND,
      random: () => 0.5,
      backoff: { initialMs: 4_000, maxRetries: 5 },
      send: ({ sentAt }) => {
        sent.push(sentAt);
        return failing ? Promise.reject(new Error("connection refused")) : undefined;
      },
    });
    cleanups.push(() => heartbeat.stop());
    return { clock, heartbeat, sent };
  }

  it("a wall clock set back does not delay the next beat", async () => {
    const { clock, heartbeat, sent } = client(false);
    heartbeat.start();
    await clock.advance(10 * SECOND);
    clock.jumpTo(clock.now() - HOUR);
    await clock.advance(20 * SECOND);
    const start = at("2026-06-01T10:00:00Z");
    expect(sent).toEqual([start, start + 30 * SECOND - HOUR]);
  });

  it("a wall clock set back does not delay a retry", async () => {
    const { clock, heartbeat, sent } = client(true);
    heartbeat.start();
    await clock.advance(0);
    expect(sent).toHaveLength(1);
    clock.jumpTo(clock.now() - HOUR);
    await clock.advance(2 * SECOND); // the first retry waits 0.5 * 4000 ms
    expect(sent).toEqual([at("2026-06-01T10:00:00Z"), at("2026-06-01T10:00:02Z") - HOUR]);
  });

  it("a wall clock set forward does not hasten the next beat", async () => {
    const { clock, heartbeat, sent } = client(false);
    heartbeat.start();
    await clock.advance(10 * SECOND);
    clock.jumpTo(clock.now() + HOUR);
    await clock.advance(0);
    expect(sent).toHaveLength(1);
    await clock.advance(20 * SECOND);
    expect(sent).toHaveLength(2);
  });
});

describe("CronSupervisor resync on elapsed time", () => {
  it("a wall clock set back does not put off the look for agents with jobs", async () => {
    const RESYNC_MS = 10 * MINUTE;
    const clock = createManualClock(at("2026-01-05T00:00:00Z"));
    const store = await openStore();
    const sync = new PubSubCronSync({ pubsub: new LocalPubSub(), resyncMs: RESYNC_MS });
    const supervisor = await new CronSupervisor({
      store,
      clock,
      sync,
      agents: ["billing"],
      runJob: async () => ({ status: "ok" as const }),
    }).start();
    cleanups.push(() => supervisor.stop());
    const billing = await supervisor.forAgent("billing");
    await billing.add({ id: "invoice", schedule: { every: HOUR }, prompt: "invoice" });
    // Written to the store directly (no notification): only the resync finds it.
    const job = (await store.cron.getJob("invoice"))!;
    await store.cron.putJob({ ...job, id: "payroll", agentId: "hr" });
    clock.jumpTo(clock.now() - HOUR);
    await clock.advance(RESYNC_MS);
    expect(supervisor.runningAgents().sort()).toEqual(["billing", "hr"]);
  });
});
