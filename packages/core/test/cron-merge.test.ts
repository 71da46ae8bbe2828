/** The three-way merge of a cron job record that clustered services write with. */
import { describe, expect, it } from "vitest";
import { mergeJob } from "../src/cron/service.js";
import type { CronJob } from "../src/index.js";

function job(fields: Record<string, unknown>, state: Record<string, unknown>): CronJob {
  return {
    id: "j",
    agentId: "ops",
    enabled: true,
    prompt: "p",
    schedule: { every: 60_000 },
    updatedAt: 1,
    ...fields,
    state: { runCount: 0, missedCount: 0, consecutiveErrors: 0, ...state },
  } as unknown as CronJob;
}

describe("mergeJob", () => {
  it("applies only what this side changed onto the stored record", () => {
    const base = job({}, { nextRunAt: 100, lastStatus: "ok" });
    const mine = job({}, { nextRunAt: 200, lastStatus: "error", lastError: "boom" });
    const theirs = job({ prompt: "edited", updatedAt: 5 }, { nextRunAt: 100, lastStatus: "ok" });
    const merged = mergeJob(base, mine, theirs);
    expect(merged.prompt).toBe("edited");
    expect(merged.updatedAt).toBe(5);
    expect(merged.state).toMatchObject({ nextRunAt: 200, lastStatus: "error", lastError: "boom" });
    // Inputs untouched.
    expect(theirs.state).toMatchObject({ nextRunAt: 100, lastStatus: "ok" });
    expect(theirs.state).not.toHaveProperty("lastError");
  });

  it("this side's change of a field wins over theirs, and a field it deleted is deleted", () => {
    const base = job({ enabled: true }, { retryAt: 50, disabledReason: "x" });
    const mine = job({ enabled: false }, { disabledReason: "x" });
    const theirs = job({ enabled: true, prompt: "theirs" }, { retryAt: 50, disabledReason: "y" });
    const merged = mergeJob(base, mine, theirs);
    expect(merged.enabled).toBe(false);
    expect(merged.prompt).toBe("theirs");
    expect(merged.state).not.toHaveProperty("retryAt");
    expect(merged.state.disabledReason).toBe("y"); // unchanged here: theirs stays
  });

  it("adds counters up: two nodes' runs from the same base both count", () => {
    const base = job({}, { runCount: 4, missedCount: 1 });
    const mine = job({}, { runCount: 5, missedCount: 3 });
    const theirs = job({}, { runCount: 5, missedCount: 1 });
    expect(mergeJob(base, mine, theirs).state).toMatchObject({ runCount: 6, missedCount: 3 });
  });
});
