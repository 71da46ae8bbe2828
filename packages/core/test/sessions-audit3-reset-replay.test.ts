/**
 * `reset` of a session that crashed (was killed) and has not replayed its unfinished
 * messages yet: as for a session that did not crash, its running and queued messages end
 * as aborted, unrun, and the fresh session starts empty. Before, the replay that followed
 * ran them into the reset history.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Process } from "../src/runtime/actor.js";
import { type Deferred, deferred, gatedAnswer, scriptedRuntime, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function gatedRuntime() {
  const gates = new Map<string, Deferred<void>>();
  const asked: string[] = [];
  const answer = gatedAnswer(gates, (_request, last) => asked.push(last));
  const { runtime, session, store } = await scriptedRuntime(Array(20).fill(answer), cleanups);
  return { runtime, session, store, gates, asked };
}

/** Sends A, whose model call waits for the returned gate, and has its run under way. */
async function runningA(t: Awaited<ReturnType<typeof gatedRuntime>>) {
  const gate = deferred<void>();
  t.gates.set("A", gate);
  const a = await t.session.send("A");
  await waitFor("A's model call", () => t.asked.includes("A"));
  return { a, gate };
}

/** Kills the session's actor; its supervisor restarts it, and it replays what was unfinished. */
function kill(t: Awaited<ReturnType<typeof gatedRuntime>>): void {
  t.runtime.registry.whereis<Process>(`session:${KEY}`)!.kill();
}

describe("reset between a crash and its replay", () => {
  it("ends the unfinished messages unrun; the session starts empty", async () => {
    const t = await gatedRuntime();
    const { a, gate } = await runningA(t);
    const b = await t.session.send("B");
    const c = await t.session.send("C", { queueMode: "collect" });

    kill(t);
    // At once: the restarted session has not replayed A, B and C yet.
    await t.session.reset();
    gate.resolve();

    const [ra, rb, rc] = await Promise.all([a.result, b.result, c.result]);
    expect(ra).toMatchObject({ status: "aborted", runId: a.runId });
    expect(rb).toMatchObject({ status: "aborted", runId: b.runId });
    expect(rc).toMatchObject({ status: "aborted", runId: c.runId });
    expect(t.asked).toEqual(["A"]);
    expect(await t.store.queue.pending({ sessionKey: KEY })).toEqual([]);
    expect(await t.session.history()).toEqual([]);

    // The session goes on from nothing.
    const d = await t.session.send("D");
    expect(await d.result).toMatchObject({ status: "completed", text: "answer: D" });
    expect(t.asked).toEqual(["A", "D"]);
    const users = (await t.session.history())
      .map((r) => (r.entry as { message?: { role?: string } }).message?.role)
      .filter((role) => role === "user");
    expect(users).toHaveLength(1);
  });

  it("a message sent after the reset still runs", async () => {
    const t = await gatedRuntime();
    const { a, gate } = await runningA(t);
    kill(t);
    await t.session.reset();
    const e = await t.session.send("E");
    gate.resolve();
    expect(await a.result).toMatchObject({ status: "aborted" });
    expect(await e.result).toMatchObject({ status: "completed", text: "answer: E" });
    expect(t.asked).toEqual(["A", "E"]);
  });

  it("a reset the store cannot list the unfinished messages for fails and changes nothing", async () => {
    const t = await gatedRuntime();
    const { a, gate } = await runningA(t);
    kill(t);
    const pending = t.store.queue.pending.bind(t.store.queue);
    let refuse = true;
    t.store.queue.pending = async (options) => {
      // The reset's paged read (the restarted session's own start-up read has no limit).
      if (refuse && options?.limit !== undefined) {
        refuse = false;
        throw new Error("store unavailable");
      }
      return pending(options);
    };
    // B comes after the crash: it waits behind the replay.
    const b = await t.session.send("B");
    await expect(t.session.reset()).rejects.toThrow("store unavailable");
    // Nothing was reset: the replay runs A, then B, and the history is kept.
    gate.resolve();
    expect(await a.result).toMatchObject({ status: "completed", text: "answer: A" });
    expect(await b.result).toMatchObject({ status: "completed", text: "answer: B" });
    expect(t.asked).toEqual(["A", "A", "B"]);
    expect((await t.session.history()).length).toBeGreaterThan(0);
  });
});
