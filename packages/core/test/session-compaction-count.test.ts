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

    const next = new AgentRuntime({
      store,
      models: source,
      agents: [{ id: "main", model: "test/model-1" }],
    });
    cleanups.push(() => next.stop());
    await next.start();
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
    const set = store.kv.set.bind(store.kv);
    let failDoneMarks = true;
    store.kv.set = async (key, value, options) => {
      if (failDoneMarks && (value as JsonObject | null)?.done === true) {
        throw new StoreError("STORE_UNAVAILABLE", "the kv is briefly unavailable");
      }
      return set(key, value, options);
    };
    const first = await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" });
    expect(first.status).toBe("compacted");
    expect((await session.info()).metadata.compactions).toBe(1);

    failDoneMarks = false;
    expect(await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(first);
    expect(await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(first);
    expect((await session.info()).metadata.compactions).toBe(1);
    expect((await counters(store)).compactions).toBe(1);
  });
});
