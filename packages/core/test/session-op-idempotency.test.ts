/**
 * `inject`, `rewind` and `compact` with an `idempotencyKey`, as `send` takes one: a caller
 * that retries after its call failed (here: the store saved the write and its reply was
 * lost) gets the first call's result, and the operation is applied once: one injected note,
 * one run undone, one summary. A key given to another operation, or an empty one, is refused.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, StoreError } from "../src/errors.js";
import type { ModelMessage } from "../src/providers/types.js";
import { echoSession, userTexts } from "./fixtures/lost-replies.js";
import { failureOf } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const setup = () => echoSession(cleanups, ["one", "two", "three"]);

/** The texts of the assistant messages of a model request. */
const assistantTexts = (messages: ModelMessage[]) =>
  messages.flatMap((m) =>
    m.role === "assistant" ? m.content.flatMap((p) => (p.type === "text" ? [p.text] : [])) : [],
  );

describe("a session operation retried with its idempotency key after a lost reply", () => {
  it("inject: the note is saved once, and the retry answers with the first one", async () => {
    const { store, source, session } = await setup();
    store.loseNext = 1;
    const lost = await failureOf(() => session.inject("Shipped.", { idempotencyKey: "note-1" }));
    expect(StoreError.isInstance(lost)).toBe(true);
    expect(store.appendFailures).toBe(1);

    const retry = await session.inject("Shipped.", { idempotencyKey: "note-1" });
    const again = await session.inject("Shipped.", { idempotencyKey: "note-1" });
    expect(again).toEqual(retry);
    const saved = (await session.history({ limit: 1000 })).filter((r) =>
      assistantTexts([r.entry.message as unknown as ModelMessage]).includes("Shipped."),
    );
    expect(saved.map((r) => r.seq)).toEqual([retry.seq]);
    expect(retry.runId).toBe(saved[0]!.entry.runId);

    // The model sees it once (the session's history took the lost write back too).
    await (await session.send("four")).result;
    expect(assistantTexts(source.requests.at(-1)!).filter((t) => t === "Shipped.")).toHaveLength(1);
    // Another key is another note.
    const other = await session.inject("Shipped.", { idempotencyKey: "note-2" });
    expect(other.runId).not.toBe(retry.runId);
  });

  it("rewind: one run is undone, not two, and the retry hands back the same inputs", async () => {
    const { store, source, session } = await setup();
    store.loseNext = 1;
    const lost = await failureOf(() => session.rewind({ idempotencyKey: "undo-1" }));
    expect(StoreError.isInstance(lost)).toBe(true);

    const retry = await session.rewind({ idempotencyKey: "undo-1" });
    expect(retry.inputs).toEqual([{ text: "three" }]);
    expect(retry.removedMessages).toBe(2);
    expect(await session.rewind({ idempotencyKey: "undo-1" })).toEqual(retry);
    const markers = (await session.history({ limit: 1000 })).filter(
      (r) => r.entry.discarded === true,
    );
    expect(markers.map((r) => r.entry.runId)).toEqual(retry.runIds);

    await (await session.send("again")).result;
    expect(userTexts(source.requests.at(-1)!)).toEqual(["one", "two", "again"]);
  });

  it("compact: one summary is made and saved, and the retry answers with it", async () => {
    const { store, source, session } = await setup();
    const calls = source.requests.length;
    store.loseNext = 1;
    const lost = await failureOf(() =>
      session.compact({ keepTurns: 1, idempotencyKey: "compact-1" }),
    );
    expect(StoreError.isInstance(lost)).toBe(true);

    const retry = await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" });
    expect(retry).toMatchObject({ status: "compacted", summarizedMessages: 4, keptMessages: 2 });
    expect(await session.compact({ keepTurns: 1, idempotencyKey: "compact-1" })).toEqual(retry);
    // One model call for the summary, one compaction entry.
    expect(source.requests.length).toBe(calls + 1);
    const compactions = (await session.history({ limit: 1000 })).filter(
      (r) => r.entry.compaction !== undefined,
    );
    expect(compactions).toHaveLength(1);

    // The next run sees the summary (the history took the lost write back), then its turn.
    await (await session.send("four")).result;
    const next = source.requests.at(-1)!;
    expect(userTexts(next)).toHaveLength(3);
    expect(userTexts(next)[0]).toContain(retry.summary!);
    expect(userTexts(next).slice(1)).toEqual(["three", "four"]);
  });
});

describe("a session operation's idempotency key", () => {
  it("answers a retry after a success with the first result, applying nothing again", async () => {
    const { session } = await setup();
    const first = await session.rewind({ idempotencyKey: "undo" });
    expect(await session.rewind({ idempotencyKey: "undo" })).toEqual(first);
    expect((await session.info()).historyLength).toBe(4);
  });

  it("is refused when empty, or given to another operation of the session", async () => {
    const { session } = await setup();
    for (const call of [
      () => session.inject("x", { idempotencyKey: "" }),
      () => session.rewind({ idempotencyKey: "" }),
      () => session.compact({ idempotencyKey: "" }),
    ]) {
      expect(InvalidArgumentError.isInstance(await failureOf(call))).toBe(true);
    }
    await session.inject("Noted.", { idempotencyKey: "k" });
    const misused = await failureOf(() => session.rewind({ idempotencyKey: "k" }));
    expect(InvalidArgumentError.isInstance(misused)).toBe(true);
    expect((misused as Error).message).toMatch(/inject/);
    // Nothing was undone.
    expect((await session.info()).historyLength).toBe(7);
  });
});
