/**
 * The system clock's timers fire when the wall clock reaches their time: a host that slept
 * (or whose clock was set forward) does not run a job due in weeks that much late, a timer
 * never fires before its time, and a wait past Node's 24.8-day timer limit is not cut short.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { systemClock } from "../src/index.js";

const DAY = 24 * 60 * 60_000;

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse("2026-11-26T12:00:00Z") });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("systemClock timers", () => {
  it("fire within a minute of their time after the host slept past it", () => {
    const fn = vi.fn();
    systemClock.setTimer(fn, 14 * DAY);
    // The host sleeps for 20 days: the wall clock moves, the timers' own time does not.
    vi.setSystemTime(Date.now() + 20 * DAY);
    vi.advanceTimersByTime(59_999);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it("never fire before their wall-clock time, even when the clock was set back", () => {
    const fn = vi.fn();
    systemClock.setTimer(fn, 10 * 60_000);
    vi.setSystemTime(Date.now() - 5 * 60_000);
    vi.advanceTimersByTime(10 * 60_000);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(5 * 60_000);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it("wait past the 24.8-day timer limit, and a cleared one never fires", () => {
    const fn = vi.fn();
    const cleared = vi.fn();
    systemClock.setTimer(fn, 40 * DAY);
    const handle = systemClock.setTimer(cleared, 10 * DAY);
    vi.advanceTimersByTime(5 * DAY);
    systemClock.clearTimer(handle);
    vi.advanceTimersByTime(35 * DAY - 1);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(cleared).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });
});
