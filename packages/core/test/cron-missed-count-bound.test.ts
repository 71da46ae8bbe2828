/**
 * A `cron` job missed many times over a long downtime (a per-second expression over a day)
 * is counted up to 10,000 occurrences, not stepped through one by one to the end: croner
 * enumerates cron occurrences on the event loop.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type CronFixture, HOUR, startCron } from "./cron-support.js";

const fixtures: CronFixture[] = [];

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

describe("missed cron occurrences over a long downtime", () => {
  it("are counted up to 10,000", async () => {
    const fixture = await startCron();
    fixtures.push(fixture);
    const { service, clock } = fixture;
    const t0 = clock.now();
    await service.add({ id: "s", schedule: { cron: "* * * * * *" }, prompt: "p", catchUp: "skip" });
    await service.stop();
    clock.jumpTo(t0 + 24 * HOUR);
    const again = await fixture.restart();
    const { state } = await again.get("s");
    // The first missed occurrence plus at most 10,000 counted after it.
    expect(state.missedCount).toBe(10_001);
  });
});
