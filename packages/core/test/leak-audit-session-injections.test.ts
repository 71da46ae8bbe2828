/**
 * Leak audit: notes injected into a session (`session.inject`, the gateway's `chat.inject`, a
 * channel's delivery mirror) while a run is active are held in memory until the run ends. A
 * flood of them during a long run (one waiting for an approval or a slow tool) must not grow
 * without bound: past the session's `maxQueuedMessages` one more is refused, as one more
 * message is.
 */
import { afterEach, describe, expect, it } from "vitest";
import { OverloadedError } from "../src/index.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { deferred, scriptedRuntime, tick } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A response that waits for `until` before its text. */
function held(text: string, until: Promise<void>): ScriptEntry {
  return {
    events: [
      { type: "wait", until },
      { type: "text-delta", text },
      { type: "finish", reason: "stop" },
    ],
  };
}

describe("session.inject during an active run", () => {
  it("holds at most maxQueuedMessages notes for the run's end and refuses more (OverloadedError)", async () => {
    const LIMIT = 3;
    const gate = deferred();
    const { session } = await scriptedRuntime([held("done", gate.promise)], cleanups, {
      options: { maxQueuedMessages: LIMIT },
    });
    const run = await session.send("work on it");
    await tick();
    expect((await session.info()).activeRunId).toBe(run.runId);

    const waiting = Array.from({ length: LIMIT }, (_, i) => session.inject(`note ${i}`));
    for (const note of waiting) note.catch(() => undefined);
    // More notes than that, each refused at once: nothing of them is kept.
    const outcomes: unknown[] = [];
    for (let i = 0; i < 20; i++) {
      session.inject(`flood ${i}`).then(
        () => outcomes.push("saved"),
        (error: unknown) => outcomes.push(error),
      );
    }
    // The session answers in order: once it answered this, it answered every note before it.
    await session.info();
    await tick();
    expect(outcomes).toHaveLength(20);
    for (const outcome of outcomes) {
      expect(OverloadedError.isInstance(outcome)).toBe(true);
      expect((outcome as OverloadedError).limit).toBe(LIMIT);
    }

    gate.resolve();
    await run.result;
    const saved = await Promise.all(waiting);
    expect(saved.map((note) => note.message.content)).toEqual(
      Array.from({ length: LIMIT }, (_, i) => [{ type: "text", text: `note ${i}` }]),
    );
    // Only the notes it held were saved, after the run's messages.
    const texts = (await session.history({ limit: 50 })).map(
      (r) => (r.entry.message as { content: Array<{ text?: string }> }).content[0]?.text,
    );
    expect(texts).toEqual(["work on it", "done", "note 0", "note 1", "note 2"]);
    // At rest, a note is saved at once again.
    expect((await session.inject("after the run")).seq).toBe(6);
  });
});
