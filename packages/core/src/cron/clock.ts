/**
 * The clock the cron and heartbeat services read and arm their timers on. It is injected so
 * that tests drive schedules, DST changes and time zones with a {@link ManualClock} instead
 * of waiting for real time.
 */
import { InvalidArgumentError } from "../errors.js";
import { type LongTimer, MAX_TIMER_DELAY_MS } from "../runtime/timers.js";

/**
 * An opaque timer handle, as returned by {@link Clock.setTimer} and
 * {@link Clock.setMonotonicTimer}.
 */
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
  /**
   * Calls `fn` once when the wall clock has moved `ms` on (any finite delay): the timer of a
   * due time, such as a cron job's 09:00. Setting the wall clock moves it (back: later,
   * forward: sooner).
   */
  setTimer(fn: () => void, ms: number): TimerHandle;
  /**
   * Calls `fn` once after `ms` of {@link Clock.monotonic} time (any finite delay): the timer
   * of an interval, such as "a heartbeat every 30 minutes". Setting the wall clock, back or
   * forward (an NTP step, a VM resumed with an old time), does not move it; time the host
   * spent suspended does not count (on Linux and macOS). Cleared with
   * {@link Clock.clearTimer}. Optional: the heartbeat runner, presence tracker, heartbeat
   * client and cron supervisor wait their intervals with it when the clock has it and
   * `monotonic()`, and with {@link Clock.setTimer} and `now()` otherwise, so that a clock
   * without it works as before.
   *
   * @example
   * ```ts
   * const handle = systemClock.setMonotonicTimer?.(() => console.log("30 s of uptime"), 30_000);
   * systemClock.clearTimer(handle);
   * ```
   */
  setMonotonicTimer?(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer of either kind; a handle that already fired or was cleared is ignored. */
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
 * A timer that fires once `read()` has moved `ms` on: it sleeps at most `stepMs` at a time and
 * reads the time again on every wake (never early).
 */
function pollingTimer(read: () => number, stepMs: number, fn: () => void, ms: number): LongTimer {
  const dueAt = read() + ms;
  let handle: NodeJS.Timeout;
  const arm = (wait: number) => {
    handle = setTimeout(check, Math.min(wait, stepMs));
  };
  const check = () => {
    const left = dueAt - read();
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
 * timers hold at most 24.8 days), nor late by the time the host slept. Its monotonic timers
 * count `performance.now()` time in `setTimeout` steps of at most 2^31-1 ms: a wall-clock
 * change does not move them.
 */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer: (fn: () => void, ms: number): TimerHandle =>
    pollingTimer(() => Date.now(), WALL_CLOCK_CHECK_MS, fn, Math.max(0, ms)),
  setMonotonicTimer: (fn: () => void, ms: number): TimerHandle =>
    pollingTimer(() => performance.now(), MAX_TIMER_DELAY_MS, fn, Math.max(0, ms)),
  clearTimer: (handle: TimerHandle): void => {
    (handle as LongTimer | undefined)?.cancel();
  },
});

/**
 * A clock's time and timers for waits of an interval: its {@link Clock.monotonic} time and
 * {@link Clock.setMonotonicTimer} when it has both, else `now()` and {@link Clock.setTimer}
 * (a clock written before monotonic timers keeps working, on wall time). Timers are cleared
 * with the clock's `clearTimer`.
 *
 * @internal
 */
export interface ElapsedTime {
  /** Milliseconds from an arbitrary origin; only differences mean something. */
  now(): number;
  setTimer(fn: () => void, ms: number): TimerHandle;
}

/** @internal See {@link ElapsedTime}. */
export function elapsedTime(clock: Clock): ElapsedTime {
  const { monotonic, setMonotonicTimer } = clock;
  if (typeof monotonic === "function" && typeof setMonotonicTimer === "function") {
    return {
      now: () => monotonic.call(clock),
      setTimer: (fn, ms) => setMonotonicTimer.call(clock, fn, ms),
    };
  }
  return { now: () => clock.now(), setTimer: (fn, ms) => clock.setTimer(fn, ms) };
}

interface ManualTimer {
  readonly id: number;
  /** The wall time it is due at, or the {@link ManualClock.monotonic} time for a monotonic one. */
  readonly dueAt: number;
  readonly monotonic: boolean;
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
    return this.#add(this.#now + Math.max(0, ms), false, fn);
  }

  /**
   * A timer of `ms` of {@link monotonic} time (see {@link Clock.setMonotonicTimer}): it fires
   * as `advance` and `advanceTo` move time on, and `jumpTo` neither fires it nor puts it off.
   */
  setMonotonicTimer(fn: () => void, ms: number): TimerHandle {
    return this.#add(this.#monotonic + Math.max(0, ms), true, fn);
  }

  #add(dueAt: number, monotonic: boolean, fn: () => void): number {
    const id = this.#nextId++;
    this.#timers.set(id, { id, dueAt, monotonic, fn });
    return id;
  }

  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** Timers armed and not yet fired or cleared. */
  get activeTimers(): number {
    return this.#timers.size;
  }

  /**
   * When the earliest armed timer is due (wall time; for a monotonic timer, the wall time it
   * fires at if time runs on from now without a jump), or `undefined` when none is armed.
   */
  get nextTimerAt(): number | undefined {
    const next = this.#earliest();
    return next === undefined ? undefined : this.#wallDue(next);
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
      if (next === undefined || this.#wallDue(next) > epochMs) break;
      this.#timers.delete(next.id);
      this.#run(Math.max(this.#now, this.#wallDue(next)));
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
   * overdue fire on the next `advance` (`advance(0)`: at once, as on waking up); monotonic
   * timers ({@link setMonotonicTimer}) keep the time they have left.
   */
  jumpTo(epochMs: number): void {
    if (!Number.isFinite(epochMs)) {
      throw new InvalidArgumentError(`jumpTo needs a finite epoch ms, got ${epochMs}`);
    }
    this.#now = epochMs;
  }

  /** The wall time a timer is due at (a monotonic one: as time runs on from now). */
  #wallDue(timer: ManualTimer): number {
    return timer.monotonic ? this.#now + (timer.dueAt - this.#monotonic) : timer.dueAt;
  }

  #earliest(): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (best === undefined || this.#wallDue(timer) < this.#wallDue(best)) best = timer;
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
