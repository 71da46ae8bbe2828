/**
 * Long polling against a Bot API server that answers `getUpdates` with entries the channel
 * can neither hand over nor confirm: entries without an `update_id`, or updates below the
 * offset it asked from (already confirmed). Such an answer comes back at once on every poll,
 * so the loop must back off as after a failed poll instead of asking again in a tight loop
 * (a flood of requests and a busy CPU).
 */
import type { Update } from "grammy/types";
import { describe, expect, it } from "vitest";
import { runLongPolling } from "../src/telegram/polling.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** Runs the loop on `answer` until it made its first wait (or asked `limit` times). */
async function pollsBeforeWaiting(answer: unknown[], initialOffset: number | undefined) {
  const controller = new AbortController();
  let polls = 0;
  let delivered = 0;
  const loop = runLongPolling(
    initialOffset,
    { baseDelayMs: 60_000, maxDelayMs: 60_000, disconnectAfterFailures: 100 },
    {
      getUpdates: async () => {
        polls++;
        // A tight loop is cut short here, so that the test ends either way.
        if (polls >= 50) controller.abort();
        return answer as Update[];
      },
      deliver: async (updates) => {
        delivered += updates.length;
        return { done: updates.length };
      },
      onOffset() {},
      onLost() {},
      logger: silent,
      random: () => 1,
    },
    controller.signal,
  );
  // Every step of a loop that never waits runs before this macrotask.
  await new Promise<void>((resolve) => setImmediate(resolve));
  const seen = polls;
  controller.abort();
  await loop;
  return { polls: seen, delivered };
}

describe("telegram long polling on answers it cannot use", () => {
  it("backs off when getUpdates answers only entries without an update_id", async () => {
    const { polls, delivered } = await pollsBeforeWaiting([{ message: { text: "?" } }, null], 7);
    expect(delivered).toBe(0);
    expect(polls).toBe(1);
  });

  it("backs off when getUpdates answers only updates below the offset (already confirmed)", async () => {
    const { polls, delivered } = await pollsBeforeWaiting([{ update_id: 3 }, { update_id: 4 }], 10);
    expect(delivered).toBe(0);
    expect(polls).toBe(1);
  });

  it("polls again at once after an empty answer (a long poll that timed out)", async () => {
    const { polls } = await pollsBeforeWaiting([], 10);
    expect(polls).toBeGreaterThan(1);
  });
});
