/**
 * A session's compaction counter (`metadata.compactions`) and the usage of the summarizing
 * model call count every compaction saved, once. A keyed compaction whose write the store
 * saved while its reply was lost is counted when a retry with its key finds it saved (in this
 * runtime, or in the next one), and retries after that, or after a success, never count it
 * again.
 */
import { afterEach, describe, expect, it } from "vitest";
import { StoreError } from "../src/errors.js";
import type { JsonObject } from "../src/providers/types.js";
import { AgentRuntime, type SessionMetadata } from "../src/sessions/index.js";
import { echoSession } from "./fixtures/lost-replies.js";
import { failureOf } from "./support.js";

const KEY = "agent:main:main";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const setup = () => echoSession(cleanups, ["one", "two", "three"]);

/** The session's counters as its record in the store has them. */
async function counters(store: Awaited<ReturnType<typeof setup>>["store"]) {
  const record = (await store.sessions.get(KEY))! as unknown as SessionMetadata;
  return {
    compactions: record.compactions,
    inputTokens: record.inputTokens,
    outputTokens: record.outputTokens,
  };
}

/** Makes the store's writes marking a key done fail while `fail` is set (its kv briefly down). */
function failDoneMarks(store: Awaited<ReturnType<typeof setup>>["store"]) {
  const control = { fail: true };
  const set = store.kv.set.bind(store.kv);
  store.kv.set = async (key, value, options) => {
    if (control.fail && (value as JsonObject | null)?.done === true) {
      throw new StoreError("STORE_UNAVAILABLE", "the kv is briefly unavailable");
    }
    return set(key, value, options);
  };
  return control;
}

/** The next runtime on the store (the session revived there, its memory gone). */
async function nextRuntime(
  store: Awaited<ReturnType<typeof setup>>["store"],
  source: Awaited<ReturnType<typeof setup>>["source"],
) {
  const next = new AgentRuntime({
    store,
    models: source,
    agents: [{ id: "main", model: "test/model-1" }],
  });
  cleanups.push(() => next.stop());
  await next.start();
  return next;
}

describe("a compaction saved while the store's reply was lost", () => {
  it("is counted once when a retry with its key finds it saved", async () => {
    const { store, session } = await setup();
    const before = await counters(store);
    expect(before.compactions).toBeUndefined();
    store.loseNext = 1;
    const lost = await failureOf(() =>
      session.compact({ keepTurns: 1, idempotencyKey: "compact-1" }),
    );
    expect(StoreError.isInstance(lost)).toBe(true);

    const retry = await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" });
    expect(retry.status).toBe("compacted");
    expect(await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(retry);
    // One summary saved, counted once, its model call's usage (3 in, 2 out) too.
    const saved = (await session.history({ limit: 1000 })).filter(
      (r) => r.entry.compaction !== undefined,
    );
    expect(saved).toHaveLength(1);
    expect((await session.info()).metadata.compactions).toBe(1);
    expect(await counters(store)).toEqual({
      compactions: 1,
      inputTokens: before.inputTokens + retry.usage.inputTokens,
      outputTokens: before.outputTokens + retry.usage.outputTokens,
    });
    expect(retry.usage).toMatchObject({ inputTokens: 3, outputTokens: 2 });

    // The next compaction counts as the second.
    await (await session.send("four")).result;
    await session.compact({ keepTurns: 1, idempotencyKey: "compact-2" });
    expect((await session.info()).metadata.compactions).toBe(2);
  });

  it("is counted once when the retry comes to the next runtime on the store", async () => {
    const { store, source, runtime, session } = await setup();
    store.loseNext = 1;
    const lost = await failureOf(() =>
      session.compact({ keepTurns: 1, idempotencyKey: "compact-1" }),
    );
    expect(StoreError.isInstance(lost)).toBe(true);
    await runtime.stop();

    const next = await nextRuntime(store, source);
    const again = next.session(KEY);
    const retry = await again.compact({ keepTurns: 1, idempotencyKey: "compact-1" });
    expect(retry.status).toBe("compacted");
    await again.compact({ keepTurns: 1, idempotencyKey: "compact-1" });
    expect((await again.info()).metadata.compactions).toBe(1);
    expect((await counters(store)).compactions).toBe(1);
  });
});

describe("a compaction counted when it was saved", () => {
  it("is not counted again by a retry that finds its key not marked done", async () => {
    const { store, session } = await setup();
    // The write marking the key done fails (the store's kv is briefly down).
    const doneMarks = failDoneMarks(store);
    const first = await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" });
    expect(first.status).toBe("compacted");
    expect((await session.info()).metadata.compactions).toBe(1);

    doneMarks.fail = false;
    expect(await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(first);
    expect(await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(first);
    expect((await session.info()).metadata.compactions).toBe(1);
    expect((await counters(store)).compactions).toBe(1);
  });
});

/**
 * The compaction entries saved in the session's transcript, and what their model calls
 * used: what `metadata.compactions` and the session's usage must have counted.
 */
async function savedCompactions(session: Awaited<ReturnType<typeof setup>>["session"]) {
  const saved = (await session.history({ limit: 1000 })).filter(
    (r) => r.entry.compaction !== undefined,
  );
  const usage = saved.map((r) => r.entry.usage as { inputTokens: number; outputTokens: number });
  return {
    count: saved.length,
    inputTokens: usage.reduce((sum, u) => sum + u.inputTokens, 0),
    outputTokens: usage.reduce((sum, u) => sum + u.outputTokens, 0),
  };
}

describe("a compaction without an idempotency key saved while the store's reply was lost", () => {
  it("is counted once, by the next compaction, which finds it saved", async () => {
    const { store, session } = await setup();
    const before = await counters(store);
    store.loseNext = 1;
    const lost = await failureOf(() => session.compact({ keepTurns: 1 }));
    expect(StoreError.isInstance(lost)).toBe(true);
    // The session goes on; then the caller asks again, without a key.
    await (await session.send("four")).result;
    await (await session.send("five")).result;
    const again = await session.compact({ keepTurns: 1 });
    expect(again.status).toBe("compacted");
    const saved = await savedCompactions(session);
    expect(saved.count).toBe(2);
    // Both saved summaries are counted, each once, with their model calls.
    expect((await session.info()).metadata.compactions).toBe(2);
    expect(await counters(store)).toEqual({
      compactions: 2,
      inputTokens: before.inputTokens + 2 * 3 + saved.inputTokens,
      outputTokens: before.outputTokens + 2 * 2 + saved.outputTokens,
    });
    // The second summary was made from the first (the history was read back).
    expect(again.summarizedMessages).toBeGreaterThan(0);
    const history = (await session.info()).historyLength;
    expect(history).toBe(3);
  });
});

describe("a compaction counted when it was saved, whose key the store could not mark done", () => {
  it("is not counted again by a retry that comes after the session stopped", async () => {
    const { store, source, runtime, session } = await setup();
    const doneMarks = failDoneMarks(store);
    const first = await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" });
    expect(first.status).toBe("compacted");
    expect((await counters(store)).compactions).toBe(1);
    // The session stops (its memory of what it counted goes with it) before the retry.
    await runtime.stop();
    doneMarks.fail = false;

    const next = await nextRuntime(store, source);
    const again = next.session(KEY);
    expect(await again.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(first);
    expect(await again.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(first);
    expect((await again.info()).metadata.compactions).toBe(1);
    expect((await counters(store)).compactions).toBe(1);
    const saved = await savedCompactions(again);
    expect(saved.count).toBe(1);
  });
});
