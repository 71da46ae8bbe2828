/** Checks of adapters' numeric options, shared by the channels. */
import { InvalidArgumentError } from "@beamclaw/core";

/** The longest wait a Node.js timer takes (2^31 - 1 ms); a longer one would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Checks an optional integer option (a time limit, a byte limit, a port): `undefined` is
 * fine (the default applies); anything else must be a safe integer from `min` to `max`.
 *
 * @throws InvalidArgumentError naming the option and the value given.
 * @example
 * ```ts
 * integerOption(options.timeoutMs, "timeoutMs", 1); // throws for -1, 0, 2.5 or NaN
 * ```
 */
export function integerOption(
  value: number | undefined,
  name: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new InvalidArgumentError(`${name} must be an integer ${range}, got ${String(value)}`);
  }
}
