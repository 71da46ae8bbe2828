/**
 * A run's messages leave the durable queue one by one once its turn is saved. When the
 * store refuses one of those removals (a Redis blip, a full disk), the run's turn is still
 * saved and over: every handle of the run gets its end, the removals are tried again, and
 * no message of the run (a steered or collected one) runs again on its own — which would
 * repeat it in the history and leave the other handles waiting for ever.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { AgentRuntimeOptions } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/index.js";
import { type Deferred, deferred, gatedAnswer, scriptedRuntime, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A runtime whose store refuses the `failing`-th removal of a message from the queue (ack or
 * discard) `times` times, and a scripted model that answers `answer: <last user text>`,
 * waiting for a gate first where one is set.
 */
async function flakyAckRuntime(
  failing: number,
  times: number,
  options: Partial<AgentRuntimeOptions> = {},
  /** Fills the store before the runtime starts. */
  before: (store: MemoryStore) => Promise<void> = async () => {},
) {
  const store = new MemoryStore();
  await store.open();
  await before(store);
  let removals = 0;
  let refused = 0;
  const gates = new Map<string, Deferred<void>>();
  const asked: string[] = [];
  const wrap = (name: "ack" | "discard") => {
    const original = store.queue[name].bind(store.queue);
    store.queue[name] = async (id) => {
      removals += 1;
      if (removals >= failing && refused < times) {
        refused += 1;
        throw new Error(`store unavailable (${name} ${id})`);
      }
      return original(id);
    };
  };
  wrap("ack");
  wrap("discard");
  const answer = gatedAnswer(gates, (_request, last) => asked.push(last));
  const { runtime, session } = await scriptedRuntime(Array(1_100).fill(answer), cleanups, {
    store,
    options,
  });
  return { runtime, session, store, gates, asked, refused: () => refused };
}

/** The user messages of the session's saved history, in order. */
async function userTexts(session: { history(): Promise<Array<{ entry: unknown }>> }) {
  const out: string[] = [];
  for (const record of await session.history()) {
    const message = (record.entry as { message?: { role?: string; content?: unknown } }).message;
    if (message?.role !== "user") continue;
    const content = message.content;
    out.push(
      typeof content === "string"
        ? content
        : (content as Array<{ type: string; text?: string }>)
            .map((p) => (p.type === "text" ? p.text : ""))
            .join(""),
    );
  }
  return out;
}

describe("a store that refuses part of a run's acknowledgement", () => {
  it("a steered message whose removal failed does not run again on its own; both handles end", async () => {
    // The second removal (the steered message's) fails once.
    const t = await flakyAckRuntime(2, 1);
    const gate = deferred<void>();
    t.gates.set("A", gate);
    const a = await t.session.send("A");
    await waitFor("A's model call", () => t.asked.includes("A"));
    const s = await t.session.send("S", { queueMode: "steer" });
    expect(s).toMatchObject({ disposition: "steered", runId: a.runId });
    gate.resolve();

    const [ra, rs] = await Promise.all([a.result, s.result]);
    expect(ra).toMatchObject({ status: "completed", runId: a.runId, text: "answer: S" });
    expect(rs).toMatchObject({ status: "completed", runId: a.runId, text: "answer: S" });
    expect(t.refused()).toBe(1);
    await waitFor(
      "the queue to be empty",
      async () => (await t.store.queue.pending({ sessionKey: KEY })).length === 0,
    );
    // The session goes on: a next message runs, and S was never run again on its own.
    const b = await t.session.send("B");
    expect(await b.result).toMatchObject({ status: "completed", text: "answer: B" });
    expect(t.asked).toEqual(["A", "S", "B"]);
    expect(await userTexts(t.session)).toEqual(["A", "S", "B"]);
  });

  it("a run's only message whose removal keeps failing for a while is removed once the store is back", async () => {
    const t = await flakyAckRuntime(1, 3);
    const a = await t.session.send("A");
    expect(await a.result).toMatchObject({ status: "completed", text: "answer: A" });
    await waitFor(
      "the queue to be empty",
      async () => (await t.store.queue.pending({ sessionKey: KEY })).length === 0,
      15_000,
    );
    expect(t.refused()).toBe(3);
    const b = await t.session.send("B");
    expect(await b.result).toMatchObject({ status: "completed", text: "answer: B" });
    expect(t.asked).toEqual(["A", "B"]);
    expect(await userTexts(t.session)).toEqual(["A", "B"]);
  });

  it("a session does not hibernate while a finished run's message is still in the queue", async () => {
    const t = await flakyAckRuntime(1, 4, { hibernateAfterMs: 20 });
    const a = await t.session.send("A");
    expect(await a.result).toMatchObject({ status: "completed", text: "answer: A" });
    // Idle far past hibernateAfterMs while the store refuses: it stays, retrying.
    while (t.refused() < 4) {
      expect(t.runtime.activeSessions()).toEqual([KEY]);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await waitFor(
      "the queue to be empty",
      async () => (await t.store.queue.pending({ sessionKey: KEY })).length === 0,
      15_000,
    );
    // Then it hibernates as any idle session does, and nothing of A runs again.
    await waitFor("the session to hibernate", () => t.runtime.activeSessions().length === 0);
    expect(t.asked).toEqual(["A"]);
  });

  it("a stop before the next try removes a finished run's message: it does not run again at the next start", async () => {
    const t = await flakyAckRuntime(1, 1);
    const a = await t.session.send("A");
    expect(await a.result).toMatchObject({ status: "completed", text: "answer: A" });
    expect(t.refused()).toBe(1);
    // At once, before the retry's backoff (at least 50 ms) is over.
    expect(await t.store.queue.pending({ sessionKey: KEY })).toHaveLength(1);
    await t.runtime.stop();
    expect(await t.store.queue.pending({ sessionKey: KEY })).toEqual([]);
  });

  it("a delivery again of a finished run's message still in the queue is a duplicate, not a second run", async () => {
    // Every removal fails for a while: the message stays pending after its run.
    const t = await flakyAckRuntime(1, 1_000);
    const a = await t.session.send("A");
    expect(await a.result).toMatchObject({ status: "completed" });
    const [queued] = await t.store.queue.pending({ sessionKey: KEY });
    expect(queued).toBeDefined();
    // As a cluster node hands a message over (or a redelivery of it arrives).
    await expect(t.runtime.deliver(queued!)).rejects.toMatchObject({ code: "DUPLICATE" });
    expect(t.asked).toEqual(["A"]);
  });

  it("a replay in pages does not run again a message of the first page whose removal failed", async () => {
    // More unfinished messages than one replay page (1,000): the session replays the rest once
    // the first page is done, and the store still lists the first message, whose ack fails
    // until every message has run.
    const count = 1_001;
    let stuck = true;
    const t = await flakyAckRuntime(Number.POSITIVE_INFINITY, 0, {}, async (store) => {
      const ids: string[] = [];
      for (let i = 0; i < count; i++) {
        const { message } = await store.queue.enqueue({
          idempotencyKey: `k-${i}`,
          sessionKey: KEY,
          payload: { input: { text: `m${i}` }, options: {}, runId: `run-${i}` },
        });
        ids.push(message.id);
      }
      const ack = store.queue.ack.bind(store.queue);
      store.queue.ack = async (id) => {
        if (stuck && id === ids[0]) throw new Error("store unavailable");
        return ack(id);
      };
    });
    await waitFor("every message to run", () => t.asked.length >= count, 30_000);
    stuck = false;
    await waitFor(
      "the queue to be empty",
      async () => (await t.store.queue.pending({ sessionKey: KEY })).length === 0,
      30_000,
    );
    expect(t.asked).toHaveLength(count);
    expect(new Set(t.asked).size).toBe(count);
    expect(t.runtime.activeSessions()).toEqual([KEY]);
  }, 60_000);
});
