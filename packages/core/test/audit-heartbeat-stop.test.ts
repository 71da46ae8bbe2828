/**
 * `HeartbeatRunner.stop()` while a beat is under way: whatever the beat was waiting for
 * when the runner stopped, nothing of it happens afterwards (no turn starts, no reply is
 * delivered), and the caller of `runNow` hears that the runner is gone. A turn that never
 * ends is cut by `turnTimeoutMs` instead of keeping every later beat `busy`.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  createManualClock,
  type HeartbeatOutcome,
  HeartbeatRunner,
  type HeartbeatTurnResult,
  InvalidArgumentError,
  NoProcessError,
  TimeoutError,
} from "../src/index.js";
import { at, MINUTE } from "./cron-support.js";
import { deferred, failureOf, tick } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("HeartbeatRunner stopped during a beat", () => {
  it("a reply that comes after stop() is not delivered (the turn did not heed its signal)", async () => {
    const reply = deferred<HeartbeatTurnResult>();
    const turnStarted = deferred<AbortSignal>();
    const delivered: string[] = [];
    const runner = await new HeartbeatRunner({
      agentId: "main",
      clock: createManualClock(at("2026-06-01T10:00:00Z")),
      runTurn: ({ signal }) => {
        turnStarted.resolve(signal);
        return reply.promise;
      },
      deliver: (text) => {
        delivered.push(text);
      },
    }).start();
    cleanups.push(() => runner.stop());
    const outcome = failureOf(() => runner.runNow());
    const signal = await turnStarted.promise;

    await runner.stop();
    expect(signal.aborted).toBe(true);
    expect(await outcome).toBeInstanceOf(NoProcessError);

    reply.resolve({ status: "ok", text: "disk is 97% full" });
    for (let i = 0; i < 5; i++) await tick();
    expect(delivered).toEqual([]);
  });

  it("no turn starts after stop() when it came while HEARTBEAT.md's events were being checked", async () => {
    const dir = await mkdtemp(join(tmpdir(), "beamclaw-audit-heartbeat-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const heartbeatFile = join(dir, "HEARTBEAT.md");
    // Only a heading: the beat asks hasPendingEvents whether to run at all.
    await writeFile(heartbeatFile, "# Checklist\n");
    const pending = deferred<boolean>();
    const asked = deferred();
    const turns: string[] = [];
    const runner = await new HeartbeatRunner({
      agentId: "main",
      clock: createManualClock(at("2026-06-01T10:00:00Z")),
      heartbeatFile,
      hasPendingEvents: () => {
        asked.resolve();
        return pending.promise;
      },
      runTurn: async ({ prompt }) => {
        turns.push(prompt);
        return { status: "ok", text: "a reply" };
      },
    }).start();
    cleanups.push(() => runner.stop());
    const outcome = failureOf(() => runner.runNow());
    await asked.promise;

    await runner.stop();
    expect(await outcome).toBeInstanceOf(NoProcessError);
    pending.resolve(true);
    for (let i = 0; i < 5; i++) await tick();
    expect(turns).toEqual([]);
  });
});

describe("HeartbeatRunner turnTimeoutMs", () => {
  it("a turn that never ends is reported as an error at the limit, and the next beat runs", async () => {
    const clock = createManualClock(at("2026-06-01T10:00:00Z"));
    const hung = deferred<HeartbeatTurnResult>();
    const signals: AbortSignal[] = [];
    const delivered: string[] = [];
    const outcomes: HeartbeatOutcome[] = [];
    const runner = await new HeartbeatRunner({
      agentId: "main",
      clock,
      everyMs: 30 * MINUTE,
      turnTimeoutMs: 5 * MINUTE,
      // The first turn hangs and does not heed its signal; the others answer.
      runTurn: ({ signal }) => {
        signals.push(signal);
        return signals.length === 1
          ? hung.promise
          : Promise.resolve({ status: "ok", text: "ok 2" });
      },
      deliver: (text) => {
        delivered.push(text);
      },
    }).start();
    cleanups.push(() => runner.stop());
    runner.events.on("heartbeat", (outcome) => outcomes.push(outcome));

    await clock.advance(30 * MINUTE);
    expect(signals).toHaveLength(1);
    expect(runner.stats().running).toBe(true);
    await clock.advance(5 * MINUTE);
    await tick();
    expect(signals[0]?.aborted).toBe(true);
    expect(TimeoutError.isInstance(signals[0]?.reason)).toBe(true);
    expect(outcomes).toEqual([
      {
        type: "error",
        at: at("2026-06-01T10:30:00Z"),
        durationMs: 5 * MINUTE,
        error: "the heartbeat turn took longer than 300000 ms",
      },
    ]);
    expect(runner.stats().running).toBe(false);

    // The next beat is not refused as busy, and the hung turn's late reply is dropped.
    await clock.advance(25 * MINUTE);
    await tick();
    expect(signals).toHaveLength(2);
    hung.resolve({ status: "ok", text: "late reply" });
    for (let i = 0; i < 5; i++) await tick();
    expect(delivered).toEqual(["ok 2"]);
    expect(outcomes.map((o) => o.type)).toEqual(["error", "delivered"]);
    expect(runner.stats()).toMatchObject({ errors: 1, delivered: 1, skipped: 0 });
  });

  it("a runNow caller of a turn that times out gets the error outcome", async () => {
    const clock = createManualClock(at("2026-06-01T10:00:00Z"));
    const runner = await new HeartbeatRunner({
      agentId: "main",
      clock,
      turnTimeoutMs: 1000,
      runTurn: () => new Promise<HeartbeatTurnResult>(() => undefined),
    }).start();
    cleanups.push(() => runner.stop());
    const outcome = runner.runNow();
    await tick();
    await clock.advance(1000);
    expect(await outcome).toMatchObject({
      type: "error",
      error: "the heartbeat turn took longer than 1000 ms",
    });
  });

  it("a turnTimeoutMs that is not a number of ms from 1 up is refused", () => {
    for (const turnTimeoutMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, "10"]) {
      expect(
        () =>
          new HeartbeatRunner({
            agentId: "main",
            turnTimeoutMs: turnTimeoutMs as number,
            runTurn: async () => ({ status: "ok" }),
          }),
      ).toThrow(InvalidArgumentError);
    }
  });
});
