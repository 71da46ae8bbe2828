/**
 * The clock the cron and heartbeat services read and arm their timers on. It is injected so
 * that tests drive schedules, DST changes and time zones with a {@link ManualClock} instead
 * of waiting for real time.
 */
import { InvalidArgumentError } from "../errors.js";
import type { LongTimer } from "../runtime/timers.js";

/** An opaque timer handle, as returned by {@link Clock.setTimer}. */
export type TimerHandle = unknown;

/**
 * Wall-clock time and one-shot timers.
 *
 * @example
 * ```ts
 * const clock: Clock = systemClock;
 * const handle = clock.setTimer(() => console.log("later"), 1_000);
 * clock.clearTimer(handle);
 * ```
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Calls `fn` once after `ms` (any finite delay). */
  setTimer(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a handle that already fired or was cleared is ignored. */
  clearTimer(handle: TimerHandle): void;
  /**
   * Milliseconds from an arbitrary origin that count only the time this process ran: they
   * never jump with the wall clock, and do not advance while the host is suspended (as
   * `performance.now()` on Linux and macOS). With it, the cron service measures how long a
   * run has been going by this clock, so a run under way when the host slept, or when the
   * wall clock was set forward, is not mistaken for a stuck one. Optional: without it, run
   * times are measured with `now()`.
   */
  monotonic?(): number;
}

/**
 * Longest a {@link systemClock} timer sleeps before it reads the wall clock again. A timer
 * counts time only while the host runs: after a suspend, or when the wall clock is set
 * forward, a wait of weeks would end that much late.
 */
export const WALL_CLOCK_CHECK_MS = 60_000;

/**
 * A timer due at a wall-clock instant: it sleeps at most {@link WALL_CLOCK_CHECK_MS} at a time
 * and fires once `Date.now()` has reached the instant (never early, and at most that much
 * late after a suspend or a forward clock change).
 */
function wallClockTimer(fn: () => void, ms: number): LongTimer {
  const dueAt = Date.now() + ms;
  let handle: NodeJS.Timeout;
  const arm = (wait: number) => {
    handle = setTimeout(check, Math.min(wait, WALL_CLOCK_CHECK_MS));
  };
  const check = () => {
    const left = dueAt - Date.now();
    if (left > 0) arm(left);
    else fn();
  };
  arm(ms);
  return {
    cancel() {
      clearTimeout(handle);
    },
  };
}

/**
 * The real clock: `Date.now()`, and timers that fire when the wall clock reaches their time,
 * looking at it at least once a minute: a job due in a year is not fired at once (Node's
 * timers hold at most 24.8 days), nor late by the time the host slept.
 */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer: (fn: () => void, ms: number): TimerHandle => wallClockTimer(fn, Math.max(0, ms)),
  clearTimer: (handle: TimerHandle): void => {
    (handle as LongTimer | undefined)?.cancel();
  },
});

interface ManualTimer {
  readonly id: number;
  readonly dueAt: number;
  readonly fn: () => void;
}

/**
 * A clock that only moves when told to, for tests. `advance` fires due timers in time order,
 * letting promises settle after each one (the services react to a timer asynchronously).
 *
 * @example
 * ```ts
 * const clock = createManualClock(Date.parse("2026-03-08T06:00:00Z"));
 * const cron = await new CronService({ agentId: "ops", store, clock, runJob }).start();
 * await cron.add({ id: "daily", schedule: { cron: "0 2 * * *", timezone: "America/New_York" }, prompt: "report" });
 * await clock.advance(60 * 60_000); // fires whatever became due, in order
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  /** The monotonic time: moves with `advance`, not with `jumpTo`. */
  #monotonic = 0;
  #nextId = 1;
  readonly #timers = new Map<number, ManualTimer>();

  constructor(startMs = 0) {
    if (!Number.isFinite(startMs)) {
      throw new InvalidArgumentError(`ManualClock start must be a finite epoch ms, got ${startMs}`);
    }
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  /**
   * The time this clock has run (see {@link Clock.monotonic}): it moves with `advance` and
   * `advanceTo`, not with `jumpTo` (a process that was not running, or a host that slept,
   * counts none of it).
   */
  monotonic(): number {
    return this.#monotonic;
  }

  /** Sets the wall time, moving the monotonic time by as much (never back). */
  #run(epochMs: number): void {
    this.#monotonic += Math.max(0, epochMs - this.#now);
    this.#now = epochMs;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { id, dueAt: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** Timers armed and not yet fired or cleared. */
  get activeTimers(): number {
    return this.#timers.size;
  }

  /** When the earliest armed timer is due, or `undefined` when none is armed. */
  get nextTimerAt(): number | undefined {
    return this.#earliest()?.dueAt;
  }

  /**
   * Moves time forward by `ms`, firing every timer that comes due on the way, earliest
   * first (timers armed by a firing timer fire too if they fall inside the window). Pending
   * promises settle after each timer and at the end.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0) || !Number.isFinite(ms)) {
      throw new InvalidArgumentError(`advance needs a finite ms >= 0, got ${ms}`);
    }
    await this.advanceTo(this.#now + ms);
  }

  /** Moves time forward to `epochMs` (see {@link advance}); a time in the past is refused. */
  async advanceTo(epochMs: number): Promise<void> {
    if (!(epochMs >= this.#now)) {
      throw new InvalidArgumentError(
        `advanceTo cannot go back in time (now ${this.#now}, asked ${epochMs})`,
      );
    }
    await settle();
    for (;;) {
      const next = this.#earliest();
      if (next === undefined || next.dueAt > epochMs) break;
      this.#timers.delete(next.id);
      this.#run(Math.max(this.#now, next.dueAt));
      next.fn();
      await settle();
    }
    this.#run(epochMs);
    await settle();
  }

  /**
   * Sets the time without firing anything in between, as a process that was not running
   * would experience it (for restart tests), or as a running one when the host was suspended
   * or the wall clock was set: the {@link monotonic} time does not move. Timers that are now
   * overdue fire on the next `advance` (`advance(0)`: at once, as on waking up).
   */
  jumpTo(epochMs: number): void {
    if (!Number.isFinite(epochMs)) {
      throw new InvalidArgumentError(`jumpTo needs a finite epoch ms, got ${epochMs}`);
    }
    this.#now = epochMs;
  }

  #earliest(): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (best === undefined || timer.dueAt < best.dueAt) best = timer;
    }
    return best;
  }
}

/** Creates a {@link ManualClock} starting at `startMs` (epoch ms, default 0). */
export function createManualClock(startMs?: number): ManualClock {
  return new ManualClock(startMs);
}

/**
 * Lets promise chains run to completion: several turns of the event loop, because the
 * services hop through actor mailboxes and store calls after a timer fires.
 */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
