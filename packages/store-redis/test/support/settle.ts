/**
 * Helpers for bounded waits in the fault tests: how a promise settled within a deadline,
 * and polling until a condition holds. Every timer they start is cleared.
 */
import { isBeamClawError } from "@beamclaw/core";

export type Outcome<T> =
  | { status: "fulfilled"; value: T }
  | { status: "rejected"; error: unknown; code: string | undefined }
  | { status: "pending" };

/** How `promise` settled within `ms`: fulfilled, rejected (with its BeamClaw code) or still pending. */
export async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ status: "pending" }), ms);
  });
  const settled = promise.then(
    (value): Outcome<T> => ({ status: "fulfilled", value }),
    (error: unknown): Outcome<T> => ({
      status: "rejected",
      error,
      code: isBeamClawError(error) ? error.code : undefined,
    }),
  );
  try {
    return await Promise.race([settled, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The outcome's error code, or a description of why there is none (for `expect(...).toBe`). */
export function codeOf(outcome: Outcome<unknown>): string {
  if (outcome.status === "rejected")
    return outcome.code ?? `not a BeamClawError: ${String(outcome.error)}`;
  return outcome.status;
}

/** Polls `probe` until it returns true, for at most `timeoutMs`. */
export async function waitUntil(
  what: string,
  probe: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
