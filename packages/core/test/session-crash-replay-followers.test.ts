/**
 * The followers of a session's runs (subscribers of `session:<key>` and `events:global`, a
 * run's handle) add up the streamed text, as a chat client or a channel's live message does.
 * A run whose session crashed while it ran is replayed by the restarted session: it is the
 * same run, so its followers get `SESSION_CRASHED`, then a `text-reset` withdrawing what the
 * crashed attempt streamed, and no second `run-start` (as after a failed save). A run aborted
 * or quarantined before its replay, and a message steered into it, do not start again either.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { AgentRuntimeOptions, RunEvent } from "../src/sessions/index.js";
import { Follower } from "./fixtures/followers.js";
import { crashSession, deferred, gatedModel, scriptedRuntime, waitFor } from "./support.js";

const KEY = "agent:main:main";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Sends `text`, whose answer waits (at `gate`) after its first part, and crashes the session
 * once that part reached the followers: subscribers of `session:<key>` and `events:global`,
 * and the run's handle.
 */
async function crashMidAnswer(text: string, options: Partial<AgentRuntimeOptions> = {}) {
  const model = gatedModel({ streamFirst: true });
  const { runtime, session } = await scriptedRuntime(model.script, cleanups, { options });
  const onSession = new Follower();
  const global = new Follower();
  runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, onSession.on);
  runtime.pubsub.subscribe<RunEvent>("events:global", global.on);
  const gate = deferred<void>();
  model.gates.set(text, gate);
  const run = await session.send(text);
  const handle = new Follower().follow(run);
  await waitFor("the first part of the answer", () => onSession.text === "answer: ");
  crashSession(runtime);
  return { model, run, gate, onSession, global, handle };
}

describe("followers of a run whose session crashed while it ran", () => {
  it("see its answer once, and the run start once", async () => {
    // The crashed attempt streamed part of its answer.
    const { model, run, gate, onSession, global, handle } = await crashMidAnswer("fragile");
    await waitFor("the replay's model call", () => model.asked.length === 2);
    gate.resolve();
    expect(await run.result).toMatchObject({ status: "completed", text: "answer: fragile" });
    for (const follower of [onSession, global, await handle]) {
      expect(follower).toMatchObject({
        text: "answer: fragile",
        starts: 1,
        resets: 1,
        ends: 1,
        crashes: 1,
      });
      // The crash is reported, then what the crashed attempt streamed is withdrawn.
      const crashed = follower.types.indexOf("error");
      expect(follower.types.slice(crashed, crashed + 2)).toEqual(["error", "text-reset"]);
    }
  });

  it("a message steered into it sees the run start once too", async () => {
    const model = gatedModel({ streamFirst: true });
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const first = deferred<void>();
    model.gates.set("A", first);
    const a = await session.send("A");
    await waitFor("A's model call", () => model.asked.includes("A"));
    const s = await session.send("S", { queueMode: "steer" });
    expect(s).toMatchObject({ disposition: "steered", runId: a.runId });
    const steered = new Follower().follow(s);
    crashSession(runtime);
    await waitFor("A's run again, with S", () => model.asked.includes("S"));
    first.resolve();
    expect(await s.result).toMatchObject({ status: "completed", runId: a.runId });
    expect(await steered).toMatchObject({ starts: 1, ends: 1, crashes: 1, text: "answer: S" });
  });

  it("aborted before its replay, it ends without starting again", async () => {
    const { run: a, gate, onSession, handle } = await crashMidAnswer("A");
    // At once: the restarted session has not taken its unfinished messages back yet.
    expect(await a.abort()).toBe(true);
    gate.resolve();
    expect(await a.result).toMatchObject({ status: "aborted", runId: a.runId });
    for (const follower of [onSession, await handle]) {
      expect(follower.types).toEqual(["run-start", "text-delta", "error", "text-reset", "run-end"]);
    }
  });

  it("quarantined on its replay, it fails without starting again", async () => {
    const { model, run, gate, onSession, handle } = await crashMidAnswer("poison", {
      quarantineAfterCrashes: 1,
    });
    const result = await run.result;
    expect(result).toMatchObject({ status: "failed", error: { code: "QUARANTINED" } });
    gate.resolve();
    for (const follower of [onSession, await handle]) {
      expect(follower.types).toEqual([
        "run-start",
        "text-delta",
        "error",
        "text-reset",
        "error",
        "run-end",
      ]);
      expect(follower).toMatchObject({ starts: 1, text: "" });
    }
    expect(model.asked).toEqual(["poison"]);
  });
});
