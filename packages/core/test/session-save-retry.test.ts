/**
 * A run whose messages cannot all be saved (the store fails while the run appends to the
 * transcript) is never acknowledged: its inbound message stays in the durable queue, the
 * session runs it again after a backoff, and it completes exactly once. Nothing that was
 * acknowledged is lost, and nothing acknowledged runs again.
 */
import { afterEach, describe, expect, it } from "vitest";
import { NoProcessError } from "../src/errors.js";
import type { JsonObject, ModelMessage } from "../src/providers/types.js";
import { AgentRuntime, type ModelSource, type RunEvent } from "../src/sessions/index.js";
import { liveEntries } from "../src/sessions/session-actor.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import type { TranscriptRecord } from "../src/store/types.js";
import { EchoSource, FlakyStore, userTexts } from "./fixtures/lost-replies.js";
import { failureOf, waitFor } from "./support.js";

const KEY = "agent:main:main";
const MAIN = { id: "main", model: "test/model-1" };

async function pendingTexts(store: MemoryStore): Promise<string[]> {
  const pending = await store.queue.pending({ sessionKey: KEY });
  return pending.map((m) => String((m.payload as { input: { text: string } }).input.text));
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(store: MemoryStore, source: ModelSource): Promise<AgentRuntime> {
  const runtime = new AgentRuntime({ store, models: source, agents: [MAIN] });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}

async function openStore(): Promise<FlakyStore> {
  const store = new FlakyStore();
  await store.open();
  cleanups.push(() => store.close());
  return store;
}

describe("a store failure while a run saves its messages", () => {
  it("leaves the message queued, runs it again after a backoff, and completes it exactly once", async () => {
    const store = await openStore();
    const source = new EchoSource();
    const runtime = await start(store, source);
    const session = runtime.session(KEY);
    await (await session.send("first")).result;

    const onSession: RunEvent[] = [];
    runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, (event) => onSession.push(event));
    let queuedWhileFailing: string[] | undefined;
    // The assistant message of "fragile" fails to save, then the first two attempts to
    // cancel what the failed attempt saved fail too: three failures in a row.
    source.onCall = (index) => {
      if (index === 1) store.failNext = 3;
    };
    runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, (event) => {
      if (event.type === "error" && queuedWhileFailing === undefined) {
        void pendingTexts(store).then((texts) => {
          queuedWhileFailing = texts;
        });
      }
    });
    const run = await session.send("fragile");
    const events: RunEvent[] = [];
    for await (const event of run) events.push(event);
    const result = await run.result;

    expect(result).toMatchObject({ status: "completed", text: "answer: fragile" });
    expect(store.appendFailures).toBe(3);
    // Until the run was saved whole, its message stayed in the durable queue.
    expect(queuedWhileFailing).toEqual(["fragile"]);
    expect(await pendingTexts(store)).toEqual([]);
    // Each failure is told on the handle; the run itself ends once, completed.
    const errors = events.filter((e) => e.type === "error");
    expect(errors.length).toBe(3);
    for (const error of errors) {
      expect(error).toMatchObject({ error: { code: "SAVE_FAILED" } });
    }
    expect(events.filter((e) => e.type === "run-end")).toHaveLength(1);
    expect(onSession.filter((e) => e.type === "run-end")).toHaveLength(1);
    expect(events.at(-1)).toMatchObject({ type: "run-end", result: { status: "completed" } });
    // The model answered the failed attempt and the one that was saved: twice, not more.
    expect(source.requests.map(userTexts)).toEqual([
      ["first"],
      ["first", "fragile"],
      ["first", "fragile"],
    ]);

    // What the failed attempt saved never reaches the model: the next turn sees one
    // "fragile" and its one answer.
    await (await session.send("after")).result;
    const next = source.requests.at(-1)!;
    expect(userTexts(next)).toEqual(["first", "fragile", "after"]);
    expect(next.filter((m) => m.role === "assistant")).toHaveLength(2);
    const info = await session.info();
    expect(info.metadata.runs).toBe(3);

    // Acknowledged means done: a restart over the same store runs nothing again.
    await runtime.stop();
    const later = new EchoSource();
    const runtime2 = await start(store, later);
    expect(runtime2.activeSessions()).toEqual([]);
    const again = await runtime2.session(KEY).send("last");
    await again.result;
    expect(later.requests).toHaveLength(1);
    expect(userTexts(later.requests[0]!)).toEqual(["first", "fragile", "after", "last"]);
  });

  it("a save whose reply was lost after it was written is not seen twice: the retry cancels it", async () => {
    const store = await openStore();
    const source = new EchoSource();
    const runtime = await start(store, source);
    const session = runtime.session(KEY);
    await (await session.send("first")).result;
    // The assistant message of "fragile" is written but its reply is lost; so is the reply
    // to the first marker that cancels the failed attempt (the retry writes another).
    source.onCall = (index) => {
      if (index === 1) store.loseNext = 2;
    };
    const run = await session.send("fragile");
    const errors: RunEvent[] = [];
    for await (const event of run) if (event.type === "error") errors.push(event);
    expect(await run.result).toMatchObject({ status: "completed", text: "answer: fragile" });
    expect(store.appendFailures).toBe(2);
    expect(errors).toHaveLength(2);
    expect(await pendingTexts(store)).toEqual([]);

    // The model's next request: one "fragile" and one answer to it.
    await (await session.send("after")).result;
    const next = source.requests.at(-1)!;
    expect(userTexts(next)).toEqual(["first", "fragile", "after"]);
    expect(next.filter((m) => m.role === "assistant")).toHaveLength(2);
    // Both copies of the turn are in the transcript (the first was written), but only the
    // one the retry saved whole is live: the failed attempt's run id has a marker after it.
    const raw = await session.history({ limit: 1000 });
    const messages = (records: TranscriptRecord[]) =>
      records.flatMap((r) =>
        r.entry.message === undefined ? [] : [r.entry.message as unknown as ModelMessage],
      );
    const live = messages(liveEntries(raw));
    expect(userTexts(live)).toEqual(["first", "fragile", "after"]);
    expect(live.filter((m) => m.role === "assistant")).toHaveLength(3);
    expect(userTexts(messages(raw))).toEqual(["first", "fragile", "fragile", "after"]);
    // And a runtime that reads the transcript afresh.
    await runtime.stop();
    const later = new EchoSource();
    const runtime2 = await start(store, later);
    await (await runtime2.session(KEY).send("last")).result;
    expect(userTexts(later.requests[0]!)).toEqual(["first", "fragile", "after", "last"]);
    expect(later.requests[0]!.filter((m) => m.role === "assistant")).toHaveLength(3);
  });

  it("a new session whose first message was saved with its reply lost has it once", async () => {
    const store = await openStore();
    const source = new EchoSource();
    const runtime = await start(store, source);
    const session = runtime.session(KEY);
    store.loseNext = 1; // the run's first write: its user message
    const run = await session.send("hello");
    expect(await run.result).toMatchObject({ status: "completed", text: "answer: hello" });
    expect(store.appendFailures).toBe(1);
    await (await session.send("again")).result;
    // The failed attempt stopped at its first write, before any model call.
    expect(source.requests.map(userTexts)).toEqual([["hello"], ["hello", "again"]]);
    expect((await store.sessions.get(KEY))?.runs).toBe(2);
    // Read afresh from the transcript: still once.
    await runtime.stop();
    const later = new EchoSource();
    const runtime2 = await start(store, later);
    await (await runtime2.session(KEY).send("last")).result;
    expect(later.requests.map(userTexts)).toEqual([["hello", "again", "last"]]);
  });

  it("a restart while the run waits to run again replays it exactly once from the durable queue", async () => {
    const store = await openStore();
    const source = new EchoSource();
    const runtime = await start(store, source);
    const session = runtime.session(KEY);
    source.onCall = (index) => {
      if (index === 0) store.failNext = 1_000_000; // the store stays down
    };
    const failed: RunEvent[] = [];
    runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, (event) => {
      if (event.type === "error") failed.push(event);
    });
    const run = await session.send("stuck");
    await waitFor("the save to fail", () => failed.length > 0);
    await runtime.stop();
    expect(NoProcessError.isInstance(await failureOf(() => run.result))).toBe(true);
    expect(await pendingTexts(store)).toEqual(["stuck"]);

    store.failNext = 0; // the store is back
    const source2 = new EchoSource();
    const runtime2 = new AgentRuntime({ store, models: source2, agents: [MAIN] });
    cleanups.push(() => runtime2.stop());
    const ends: RunEvent[] = [];
    runtime2.pubsub.subscribe<RunEvent>("events:global", (event) => {
      if (event.type === "run-end") ends.push(event);
    });
    await runtime2.start();
    await waitFor("the replayed run to end", () => ends.length > 0);
    expect(ends[0]).toMatchObject({ runId: run.runId, result: { status: "completed" } });
    expect(source2.requests.map(userTexts)).toEqual([["stuck"]]);
    expect(await pendingTexts(store)).toEqual([]);
    await runtime2.stop();
    const source3 = new EchoSource();
    const runtime3 = await start(store, source3);
    expect(runtime3.activeSessions()).toEqual([]);
    expect(source3.requests).toHaveLength(0);
  });

  it("aborting a run that waits to run again ends it as aborted at once, and it never runs again", async () => {
    const store = await openStore();
    const source = new EchoSource();
    const runtime = await start(store, source);
    const session = runtime.session(KEY);
    source.onCall = (index) => {
      if (index === 0) store.failNext = 1_000_000;
    };
    const failed: RunEvent[] = [];
    runtime.pubsub.subscribe<RunEvent>(`session:${KEY}`, (event) => {
      if (event.type === "error") failed.push(event);
    });
    const run = await session.send("doomed");
    await waitFor("the save to fail", () => failed.length > 0);
    store.failNext = 0;
    expect(await run.abort()).toBe(true);
    expect((await run.result).status).toBe("aborted");
    expect(await pendingTexts(store)).toEqual([]);
    // The session goes on with the next message; the aborted one is not run again (what
    // it did save, its user message, stays in the conversation, as for any aborted run).
    expect((await (await session.send("next")).result).status).toBe("completed");
    expect(source.requests.map(userTexts)).toEqual([["doomed"], ["doomed", "next"]]);
  });

  it("a message the store refuses as bad input is not retried: the run fails once, its saved part cancelled", async () => {
    const store = await openStore();
    // The model calls a tool with arguments nested deeper than any store keeps.
    let deep: JsonObject = { leaf: true };
    for (let i = 0; i < 600; i++) deep = { next: deep };
    let calls = 0;
    const echo = new EchoSource();
    const source: ModelSource = {
      stream(request) {
        if (!userTexts(request.messages).includes("call it")) return echo.stream(request);
        calls++;
        return (async function* () {
          yield { type: "tool-call" as const, toolCallId: "c1", toolName: "nothing", input: deep };
        })();
      },
    };
    const runtime = await start(store, source);
    const session = runtime.session(KEY);
    const run = await session.send("call it");
    const result = await run.result;
    expect(result.status).toBe("failed");
    expect(result.error?.code).toBe("INVALID_ARGUMENT");
    expect(result.error?.message).toMatch(/could not be saved/);
    expect(calls).toBe(1);
    // Acknowledged (nothing left to replay), and the saved user message is cancelled: the
    // next run's model sees none of the failed one.
    expect(await pendingTexts(store)).toEqual([]);
    const next = await session.send("and now?");
    expect((await next.result).text).toBe("answer: and now?");
    expect(userTexts(echo.requests[0]!)).toEqual(["and now?"]);
  });
});
