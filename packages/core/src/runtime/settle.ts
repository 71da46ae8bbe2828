/**
 * Bounded waits for work under way, as a `stop()` needs them: what was started may finish,
 * but something that never settles cannot hold the stop for ever.
 */

/**
 * Waits until every promise of `promises` settled (fulfilled or rejected), or `ms` passed.
 * Resolves `true` when they all settled in time, `false` when the time ran out first; the
 * promises go on either way (the caller decides what to give up). Never rejects, and leaves
 * no timer behind. With nothing to wait for it resolves `true` at once.
 *
 * @param promises - What to wait for (any iterable, read once: a `Set` that later changes is
 *   not watched for additions).
 * @param ms - The longest wait, in milliseconds (0 or less: no wait beyond what already
 *   settled).
 *
 * @example
 * ```ts
 * import { settlesWithin } from "@beamclaw/core";
 *
 * // In a channel plugin's stop(): let the message being handed to the host finish.
 * if (!(await settlesWithin([receiving], 5_000))) giveUp.abort();
 * ```
 */
export async function settlesWithin(
  promises: Iterable<Promise<unknown>>,
  ms: number,
): Promise<boolean> {
  const pending = [...promises];
  if (pending.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.allSettled(pending).then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), Math.max(0, ms));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
