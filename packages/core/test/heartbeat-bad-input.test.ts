/**
 * Bad heartbeat input is refused the same way every time and leaves no trace: an empty time
 * zone is not the host's zone (whatever was compiled before it), and a refused beat is not
 * counted.
 */
import { describe, expect, it } from "vitest";
import {
  compileActiveHours,
  createManualClock,
  InvalidArgumentError,
  PresenceTracker,
} from "../src/index.js";
import { failureOf } from "./support.js";

describe("activeHours.timezone", () => {
  it("an empty time zone is refused, also after a window in the host's zone was compiled", async () => {
    const hostWindow = compileActiveHours({ start: "08:00", end: "18:00" });
    expect(typeof hostWindow).toBe("function");
    const error = await failureOf(() =>
      compileActiveHours({ start: "08:00", end: "18:00", timezone: "" }),
    );
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toContain("activeHours.timezone");
  });
});

describe("PresenceTracker.beat with bad input", () => {
  it("a refused beat is not counted, for a new node or a known one", async () => {
    const tracker = new PresenceTracker({ clock: createManualClock(0) }).start();
    try {
      for (const options of [
        { intervalMs: -1 },
        { intervalMs: Number.NaN },
        { sentAt: Number.NaN },
      ]) {
        const error = await failureOf(() => tracker.beat("n1", options));
        expect(error, JSON.stringify(options)).toBeInstanceOf(InvalidArgumentError);
      }
      expect(tracker.stats()).toMatchObject({ beats: 0, beatsPerMinute: 0, nodes: 0 });
      expect(tracker.stats().latencyMs.samples).toBe(0);
      tracker.beat("n1");
      await failureOf(() => tracker.beat("n1", { intervalMs: 0 }));
      expect(tracker.stats()).toMatchObject({ beats: 1, beatsPerMinute: 1 });
      expect(tracker.get("n1")).toMatchObject({ beats: 1, intervalMs: 30_000 });
    } finally {
      tracker.stop();
    }
  });
});
