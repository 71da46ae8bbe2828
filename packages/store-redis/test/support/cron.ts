/**
 * Moving a `ManualClock` past the due times of cron services that share a Redis store.
 *
 * A service re-arms its timer only after the store calls of what it was handling (a claim,
 * a finished run's record) come back. `ManualClock.advance` fires the timers armed when it
 * gets to them, so on a loaded machine a service whose Redis calls are slower than the
 * clock's settling has no timer armed yet when the clock passes its next due time: the due
 * time is then handled one step later, as if the process had stalled (a run that "lasted" a
 * minute, an occurrence found missed). Waiting until every service is idle and armed for a
 * time still ahead makes each step see what a real clock would.
 */
import type { CronService, ManualClock } from "@beamclaw/core";
import { sleep } from "./settle.js";

/**
 * Advances `clock` by `ms`, then waits (bounded) until every service has handled what came
 * due: `running` runs in all (those the test holds open; the default 0 means every finished
 * run is recorded), and each service with none running has its timer armed for a time after
 * now (or nothing scheduled). A timer armed late for a time already reached is fired with
 * `advance(0)`, at the time it was due for.
 */
export async function advanceSettled(
  clock: ManualClock,
  services: readonly CronService[],
  ms: number,
  running = 0,
): Promise<void> {
  await clock.advance(ms);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const statuses = await Promise.all(services.map((service) => service.cronStatus()));
    const now = clock.now();
    const total = statuses.reduce((sum, status) => sum + status.running, 0);
    const armed = statuses.every(
      (status) =>
        status.running > 0 ||
        status.nextRunAt === undefined ||
        (status.nextRunAt > now && status.timerArmed),
    );
    if (total === running && armed) return;
    if (Date.now() > deadline) {
      throw new Error(
        `the cron services did not settle within 30 s at ${new Date(now).toISOString()}: ${JSON.stringify(statuses)}`,
      );
    }
    await sleep(5);
    await clock.advance(0);
  }
}
