import type { CronRunContext } from "./types.js";

/**
 * Where a `CronService` puts, on the context of a scheduled or catch-up run given to a
 * runner that claims its due times itself (`guardCronRunner`), the function that runner
 * calls once it has won the claim. Until then the run may still turn out to be another
 * node's: the service writes its running marker only then, and a run it stops before that
 * (the service stopping) is not recorded as interrupted here.
 * @internal
 */
export const RUN_CLAIMED: unique symbol = Symbol.for("beamclaw.cron.runClaimed") as never;

/**
 * Tells the service that made `context` that this node claimed the run's due time; resolves
 * once the service recorded the run as in progress. Does nothing for a context without it.
 * @internal
 */
export async function reportRunClaimed(context: CronRunContext): Promise<void> {
  const claimed = (context as { [RUN_CLAIMED]?: unknown })[RUN_CLAIMED];
  if (typeof claimed === "function") await claimed();
}
