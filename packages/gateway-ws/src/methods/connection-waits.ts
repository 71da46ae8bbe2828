/**
 * Requests that wait on a connection for something to happen (`agent.wait`,
 * `exec.approval.waitDecision`): each holds a timer or a listener until it does, which may be
 * days. A client that keeps asking about runs or approvals that never come must not pile them
 * up on a connection that stays open for months.
 */
import { ErrorCodes } from "../protocol/constants.js";
import { GatewayError } from "../protocol/errors.js";
import { MAX_WAITS_PER_CONNECTION } from "../runs.js";

/** Waits under way, per connection (by its requests' abort signal, which lives as long). */
const waitsOf = new WeakMap<AbortSignal, number>();

/**
 * Runs `wait` as one of the connection's waits: at most {@link MAX_WAITS_PER_CONNECTION} at
 * once, counting every waiting method together.
 *
 * @throws GatewayError `UNAVAILABLE` (retryable, `details.code` `TOO_MANY_WAITS`) when the
 *   connection already has that many.
 */
export async function asConnectionWait<T>(
  signal: AbortSignal,
  method: string,
  wait: () => Promise<T>,
): Promise<T> {
  const waiting = waitsOf.get(signal) ?? 0;
  if (waiting >= MAX_WAITS_PER_CONNECTION) {
    throw new GatewayError(
      ErrorCodes.UNAVAILABLE,
      `too many waits: at most ${MAX_WAITS_PER_CONNECTION} agent.wait and exec.approval.waitDecision calls may wait at once on a connection (${method} refused)`,
      { details: { code: "TOO_MANY_WAITS", limit: MAX_WAITS_PER_CONNECTION }, retryable: true },
    );
  }
  waitsOf.set(signal, waiting + 1);
  try {
    return await wait();
  } finally {
    const left = (waitsOf.get(signal) ?? 1) - 1;
    if (left > 0) waitsOf.set(signal, left);
    else waitsOf.delete(signal);
  }
}
