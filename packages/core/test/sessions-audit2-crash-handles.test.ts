/**
 * What the handles of unfinished messages can still do after their session crashes (is
 * killed) and its supervisor restarts it: a message collected or steered into another's run
 * runs in that run again, so its handle's run id, events and abort keep meaning its run; an
 * abort that lands while the restarted session has not replayed its messages yet is not
 * lost; and the handles' crash report reaches the session's PubSub topics too.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Process } from "../src/runtime/actor.js";
import type { RunEvent } from "../src/sessions/index.js";
import { crashSession, deferred, gatedModel, scriptedRuntime, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function events(run: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of run) out.push(event);
  return out;
}

describe("handles of unfinished messages after their session crashed", () => {
  it("a collected message runs again in the run its handle names: its abort ends it, not the message it was collected with", async () => {
    const model = gatedModel();
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const first = deferred<void>();
    model.gates.set("A", first);
    const a = await session.send("A");
    await waitFor("A's model call", () => model.asked.includes("A"));
    const b = await session.send("B", { queueMode: "collect" });
    const c = await session.send("C", { queueMode: "collect" });
    expect(c.runId).toBe(b.runId);

    const old = crashSession(runtime);
    await waitFor("the restarted session to run A again", () => {
      const actor = runtime.registry.whereis<Process>(`session:${KEY}`);
      return actor !== old && model.asked.filter((t) => t === "A").length === 2;
    });
    expect(await c.abort()).toBe(true);
    first.resolve();

    const [ra, rb, rc] = await Promise.all([a.result, b.result, c.result]);
    expect(ra.status).toBe("completed");
    // B and C are one run again, as they were accepted: aborting it through C ends both.
    expect(rc).toMatchObject({ status: "aborted", runId: c.runId });
    expect(rb).toMatchObject({ status: "aborted", runId: b.runId });
    expect(model.asked).toEqual(["A", "A"]);
    // Every event C's handle sees after the crash is of the run it names.
    const seen = await events(c);
    expect(seen.filter((e) => e.type !== "error").every((e) => e.runId === c.runId)).toBe(true);
    expect(await runtime.store.queue.pending({ sessionKey: KEY })).toEqual([]);
  });

  it("a collected message's run after the crash holds both messages, as before it", async () => {
    const model = gatedModel();
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const first = deferred<void>();
    model.gates.set("A", first);
    const a = await session.send("A");
    await waitFor("A's model call", () => model.asked.includes("A"));
    const b = await session.send("B", { queueMode: "collect" });
    const c = await session.send("C", { queueMode: "collect" });

    crashSession(runtime);
    await waitFor("A again", () => model.asked.filter((t) => t === "A").length === 2);
    first.resolve();
    const [, rb, rc] = await Promise.all([a.result, b.result, c.result]);
    expect(rb).toMatchObject({ status: "completed", runId: b.runId, text: "answer: C" });
    expect(rc).toMatchObject({ status: "completed", runId: c.runId, text: "answer: C" });
    // One model call for B and C together, as a collected run is.
    expect(model.asked).toEqual(["A", "A", "C"]);
    expect(model.seen.at(-1)!.slice(-2)).toEqual(["B", "C"]);
  });

  it("a steered message goes into its run's replay: its handle's abort ends that run", async () => {
    const model = gatedModel();
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const first = deferred<void>();
    model.gates.set("A", first);
    const a = await session.send("A");
    await waitFor("A's model call", () => model.asked.includes("A"));
    const s = await session.send("S", { queueMode: "steer" });
    expect(s).toMatchObject({ disposition: "steered", runId: a.runId });

    const again = deferred<void>();
    model.gates.set("S", again);
    crashSession(runtime);
    // The replayed run takes S in before its first model call, as it would at its next step.
    await waitFor("A's run again, with S", () => model.asked.includes("S"));
    expect(model.seen.at(-1)!.slice(-2)).toEqual(["A", "S"]);
    expect(await s.abort()).toBe(true);
    first.resolve();
    again.resolve();
    const [ra, rs] = await Promise.all([a.result, s.result]);
    expect(ra).toMatchObject({ status: "aborted", runId: a.runId });
    expect(rs).toMatchObject({ status: "aborted", runId: a.runId });
    // S never ran on its own.
    expect(model.asked).toEqual(["A", "S"]);
    expect(await runtime.store.queue.pending({ sessionKey: KEY })).toEqual([]);
  });

  it("an abort that arrives before the restarted session replayed its messages ends the run; it never runs again", async () => {
    const model = gatedModel();
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const first = deferred<void>();
    model.gates.set("A", first);
    const a = await session.send("A");
    await waitFor("A's model call", () => model.asked.includes("A"));
    const b = await session.send("B");

    crashSession(runtime);
    // At once: the restarted session has not taken its unfinished messages back yet.
    expect(await a.abort()).toBe(true);
    first.resolve();
    const [ra, rb] = await Promise.all([a.result, b.result]);
    expect(ra).toMatchObject({ status: "aborted", runId: a.runId });
    expect(rb).toMatchObject({ status: "completed", text: "answer: B" });
    expect(model.asked).toEqual(["A", "B"]);
    expect(await runtime.store.queue.pending({ sessionKey: KEY })).toEqual([]);
    // Its handle and the session's subscribers see it end once.
    expect((await events(a)).filter((e) => e.type === "run-end")).toHaveLength(1);
  });

  it("an abort of a run that is not among the unfinished messages still answers false", async () => {
    const model = gatedModel();
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const first = deferred<void>();
    model.gates.set("A", first);
    const a = await session.send("A");
    await waitFor("A's model call", () => model.asked.includes("A"));
    crashSession(runtime);
    expect(await session.abort("no-such-run")).toBe(false);
    await waitFor("A again", () => model.asked.filter((t) => t === "A").length === 2);
    first.resolve();
    expect((await a.result).status).toBe("completed");
  });

  it("the crash reported on the handle is published on session:<key> and events:global too", async () => {
    const model = gatedModel();
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const onSession: RunEvent[] = [];
    const onGlobal: RunEvent[] = [];
    runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, (e) => onSession.push(e));
    runtime.pubsub.subscribe<RunEvent>("events:global", (e) => onGlobal.push(e));
    const first = deferred<void>();
    model.gates.set("A", first);
    const a = await session.send("A");
    await waitFor("A's model call", () => model.asked.includes("A"));
    crashSession(runtime);
    await waitFor("A again", () => model.asked.filter((t) => t === "A").length === 2);
    first.resolve();
    await a.result;
    const onHandle = (await events(a)).map((e) => e.type);
    // The replay is the same run: no second `run-start`; what it streamed is withdrawn.
    expect(onHandle).toEqual(["run-start", "error", "text-reset", "text-delta", "run-end"]);
    const mine = (list: RunEvent[]) => list.filter((e) => e.runId === a.runId).map((e) => e.type);
    expect(mine(onSession)).toEqual(onHandle);
    expect(mine(onGlobal)).toEqual(onHandle);
    expect(onSession.find((e) => e.type === "error")).toMatchObject({
      error: { code: "SESSION_CRASHED" },
    });
  });
});
