/**
 * `OverloadedError.retryAfterMs`: the wait an overload suggests. The class keeps its old
 * constructor; a session whose queue is full (`maxQueuedMessages`, for `send` and `inject`)
 * suggests waiting until its active run is likely to end, estimated from its last completed
 * run, bounded by the active run's time limit and kept from 1 s to 30 s.
 *
 * The session measures runs with `performance.now()`; the tests move that clock forward
 * (on top of the real one) to make a run "take" 45 s without waiting for it.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { BeamClawError, OverloadedError } from "../src/index.js";
import { MemoryPressureError } from "../src/runtime/memory-pressure.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { type Deferred, deferred, failureOf, scriptedRuntime, tick } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.restoreAllMocks();
});

/** A response that waits for `until` before its text. */
function held(text: string, until: Deferred<void>): ScriptEntry {
  return {
    events: [
      { type: "wait", until: until.promise },
      { type: "text-delta", text },
      { type: "finish", reason: "stop" },
    ],
  };
}

/** `performance.now()` stopped at its present value and moved only by what `advance` adds. */
function manualClock() {
  // Stopped, and moved by hand only: the estimates are exact however slow the machine is.
  const start = performance.now();
  let skew = 0;
  vi.spyOn(performance, "now").mockImplementation(() => start + skew);
  return {
    advance(ms: number) {
      skew += ms;
    },
  };
}

/** The refusal of a send, which must be an `OverloadedError`. */
async function refusal(send: () => Promise<unknown>): Promise<OverloadedError> {
  const error = await failureOf(send);
  expect(OverloadedError.isInstance(error)).toBe(true);
  return error as OverloadedError;
}

describe("OverloadedError", () => {
  it("keeps its constructor: without options it has no retryAfterMs; with one it carries it", () => {
    const plain = new OverloadedError("mailbox full", 10);
    expect(plain).toMatchObject({ code: "OVERLOADED", limit: 10, isRetryable: true });
    expect(plain.retryAfterMs).toBeUndefined();
    const cause = new Error("underneath");
    const hinted = new OverloadedError("queue full", 5, { retryAfterMs: 2_500, cause });
    expect(hinted).toMatchObject({ limit: 5, retryAfterMs: 2_500, cause });
    expect(hinted).toBeInstanceOf(BeamClawError);
  });

  it("leaves out a retryAfterMs that is not a finite number of 0 or more", () => {
    for (const retryAfterMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(new OverloadedError("full", 1, { retryAfterMs }).retryAfterMs).toBeUndefined();
    }
    expect(new OverloadedError("full", 1, { retryAfterMs: 0 }).retryAfterMs).toBe(0);
  });

  it("a MemoryPressureError still carries its own wait", () => {
    const error = new MemoryPressureError("pressed", {
      limit: 1,
      exceeded: [],
      retryAfterMs: 3_000,
    });
    expect(OverloadedError.isInstance(error)).toBe(true);
    expect(error.retryAfterMs).toBe(3_000);
    expect(error.reason).toBe("memory");
  });
});

describe("a session's full queue suggests a wait", () => {
  it("1 s when the session has no completed run to go by, for send and for inject", async () => {
    const gate = deferred();
    const { session } = await scriptedRuntime([held("one", gate), "two"], cleanups, {
      options: { maxQueuedMessages: 1 },
    });
    const one = await session.send("one");
    await tick();
    const two = await session.send("two");
    const refused = await refusal(() => session.send("three"));
    expect(refused.limit).toBe(1);
    expect(refused.retryAfterMs).toBe(1_000);
    expect(refused.message).toContain("retry in 1000 ms");

    const note = session.inject("a note");
    note.catch(() => undefined);
    const refusedNote = await refusal(() => session.inject("one note too many"));
    expect(refusedNote.retryAfterMs).toBe(1_000);

    gate.resolve();
    expect((await one.result).status).toBe("completed");
    expect((await two.result).status).toBe("completed");
    await note;
  });

  /**
   * A session that queues one message at most, whose first run "took" `firstRunMs` on the
   * moved clock; then its second run (sent with `options`) is active, held until `finish`,
   * and a third message waits: the queue is full.
   */
  async function fullAfterOneRun(firstRunMs: number, options: { timeoutMs?: number } = {}) {
    const clock = manualClock();
    const first = deferred();
    const second = deferred();
    const { session } = await scriptedRuntime(
      [held("one", first), held("two", second), "three"],
      cleanups,
      { options: { maxQueuedMessages: 1 } },
    );
    const one = await session.send("one");
    await tick();
    clock.advance(firstRunMs);
    first.resolve();
    expect((await one.result).status).toBe("completed");
    const two = await session.send("two", options);
    await tick();
    const three = await session.send("three");
    return {
      session,
      clock,
      async finish() {
        second.resolve();
        expect((await two.result).status).toBe("completed");
        expect((await three.result).status).toBe("completed");
      },
    };
  }

  it("the time the last completed run took, less the active run's time so far, at most 30 s and at least 1 s", async () => {
    const { session, clock, finish } = await fullAfterOneRun(45_000);
    // The last run took 45 s and this one just began: beyond the 30 s at most.
    expect((await refusal(() => session.send("four"))).retryAfterMs).toBe(30_000);
    clock.advance(20_000);
    // 20 s into a run like one of 45 s: 25 s to go.
    const later = (await refusal(() => session.send("four"))).retryAfterMs!;
    expect(later).toBe(25_000);
    const note = session.inject("a note");
    note.catch(() => undefined);
    const noteRefused = await refusal(() => session.inject("one note too many"));
    // The same estimate for a note.
    expect(noteRefused.retryAfterMs).toBe(later);
    clock.advance(30_000);
    // Longer than the last run already: it may end any moment.
    expect((await refusal(() => session.send("four"))).retryAfterMs).toBe(1_000);
    await finish();
    await note;
  });

  it("no later than the active run's time limit", async () => {
    // Cut at 8 s at the latest, though the last run took 20 s.
    const { session, finish } = await fullAfterOneRun(20_000, { timeoutMs: 8_000 });
    expect((await refusal(() => session.send("four"))).retryAfterMs).toBe(8_000);
    await finish();
  });
});
