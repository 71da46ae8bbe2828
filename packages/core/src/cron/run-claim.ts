import type { CronJob, CronRunContext } from "./types.js";

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

/**
 * Where a runner that claims its due times itself (`guardCronRunner`) puts the function that
 * claims a due time the service found missed, before the service records it `missed`: it
 * resolves `false` when another node claimed that due time (it ran it, or recorded it missed
 * itself), and the service then records nothing, so each due time has one record in the log.
 * @internal
 */
export const CLAIM_MISSED: unique symbol = Symbol.for("beamclaw.cron.claimMissed") as never;

/** The function that claims a missed due time (see `CLAIM_MISSED`). @internal */
export type ClaimMissed = (job: CronJob, scheduledAt: number) => Promise<boolean>;

/** The {@link ClaimMissed} of `runner`, if it has one. @internal */
export function claimMissedOf(runner: unknown): ClaimMissed | undefined {
  const claim = (runner as { [CLAIM_MISSED]?: unknown })[CLAIM_MISSED];
  return typeof claim === "function" ? (claim as ClaimMissed) : undefined;
}
