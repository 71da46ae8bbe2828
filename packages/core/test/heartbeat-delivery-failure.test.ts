/**
 * A heartbeat reply whose delivery fails is an `error` outcome that still carries the
 * reply, so that a listener can log or resend it: the text is not lost.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createManualClock, type HeartbeatOutcome, HeartbeatRunner } from "../src/index.js";
import { at, MINUTE } from "./cron-support.js";

const runners: HeartbeatRunner[] = [];

afterEach(async () => {
  for (const runner of runners.splice(0)) await runner.stop();
});

describe("a heartbeat whose delivery fails", () => {
  it("is an error outcome with the delivery's error and the undelivered reply", async () => {
    const clock = createManualClock(at("2026-06-01T10:00:00Z"));
    const outcomes: HeartbeatOutcome[] = [];
    const runner = new HeartbeatRunner({
      agentId: "main",
      clock,
      everyMs: 10 * MINUTE,
      runTurn: async () => ({ status: "ok", text: "Disk is 91% full." }),
      deliver: () => {
        throw new Error("channel down");
      },
    });
    runner.events.on("heartbeat", (outcome) => outcomes.push(outcome));
    runners.push(await runner.start());
    const now = await runner.runNow();
    expect(now).toMatchObject({ type: "error", text: "Disk is 91% full." });
    expect((now as { error: string }).error).toContain("channel down");
    await clock.advance(10 * MINUTE);
    expect(outcomes.map((o) => o.type)).toEqual(["error", "error"]);
    expect(outcomes[1]).toMatchObject({ type: "error", text: "Disk is 91% full." });
    expect(runner.stats()).toMatchObject({ errors: 2, delivered: 0 });
  });

  it("a turn that fails before there is a reply has no text", async () => {
    const clock = createManualClock(0);
    const runner = new HeartbeatRunner({
      agentId: "main",
      clock,
      runTurn: async () => ({ status: "error", error: "model unavailable" }),
      deliver: () => undefined,
    });
    runners.push(await runner.start());
    const outcome = await runner.runNow();
    expect(outcome.type).toBe("error");
    expect("text" in outcome).toBe(false);
  });
});
