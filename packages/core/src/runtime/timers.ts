/**
 * Node clamps a timer delay above 2^31-1 ms (about 24.8 days) to 1 ms, so a long timeout
 * would fire at once. These timers chain shorter ones instead.
 */

/** The longest delay `setTimeout` honours. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** A cancellable one-shot timer that supports any finite delay. */
export interface LongTimer {
  cancel(): void;
}

/** Runs `fn` once after `delayMs` (any finite delay, chained past the timer limit). */
export function startTimer(fn: () => void, delayMs: number): LongTimer {
  let handle: NodeJS.Timeout;
  let remaining = delayMs;
  const arm = () => {
    const step = Math.min(remaining, MAX_TIMER_DELAY_MS);
    remaining -= step;
    handle = setTimeout(remaining > 0 ? arm : fn, step);
  };
  arm();
  return {
    cancel() {
      clearTimeout(handle);
    },
  };
}
