/**
 * `session.inject()`: an assistant message added without a run. It is in the transcript and
 * the history the model sees from the next run on, waits for an active run (and goes before
 * the messages waiting), survives a restart, can be undone by `rewind`, and bad input saves
 * nothing.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AbortedError, INJECTED_MESSAGES_TOPIC, InvalidArgumentError } from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { deferred, failureOf, scriptedRuntime, tick, transcriptOf } from "./support.js";

const KEY = "agent:main:main";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function runtimeWith(script: ScriptEntry[], store = new MemoryStore()) {
  return scriptedRuntime(script, cleanups, { store });
}

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

describe("session.inject", () => {
  it("saves an assistant message the next run's request carries, without calling the model", async () => {
    const { session, provider, store } = await runtimeWith([
      { text: "Hello!" },
      { text: "Great, it shipped." },
    ]);
    await (await session.send("Hi")).result;
    const injected = await session.inject("Your order #1234 has shipped.", { label: "shop" });
    expect(injected.runId).toMatch(/^inject:[0-9a-f-]{36}$/);
    expect(injected.message).toEqual({
      role: "assistant",
      content: [{ type: "text", text: "[shop]\n\nYour order #1234 has shipped." }],
    });
    expect(provider.requests).toHaveLength(1);

    const [last] = await store.transcripts.read(KEY, { order: "desc", limit: 1 });
    expect(last).toEqual({
      seq: injected.seq,
      entry: { runId: injected.runId, at: injected.at, message: injected.message },
    });
    expect((await session.info()).historyLength).toBe(3);
    expect((await store.sessions.get(KEY))?.updatedAt).toBe(injected.at);

    await (await session.send("Any news?")).result;
    expect(transcriptOf(provider.requests[1]!.messages)).toEqual([
      "user:Hi",
      "assistant:Hello!",
      "assistant:[shop]\n\nYour order #1234 has shipped.",
      "user:Any news?",
    ]);
  });

  it("is announced on INJECTED_MESSAGES_TOPIC, not on the run topics", async () => {
    const { runtime, session } = await runtimeWith([]);
    const announced: unknown[] = [];
    const onRunTopics: unknown[] = [];
    const offs = [
      runtime.pubsub.subscribe(INJECTED_MESSAGES_TOPIC, (event) => announced.push(event)),
      runtime.pubsub.subscribe(`session:${KEY}`, (event) => onRunTopics.push(event)),
      runtime.pubsub.subscribe("events:global", (event) => onRunTopics.push(event)),
    ];
    const injected = await session.inject("a note");
    for (const off of offs) off();
    expect(announced).toEqual([{ type: "message-injected", sessionKey: KEY, ...injected }]);
    expect(onRunTopics).toEqual([]);
  });

  it("without a label the text is saved as it is; a new session is created by it", async () => {
    const { session, store } = await runtimeWith([]);
    const injected = await session.inject("Welcome! Ask me anything.");
    expect(injected.seq).toBe(1);
    expect(injected.message.content).toEqual([{ type: "text", text: "Welcome! Ask me anything." }]);
    expect(await store.sessions.get(KEY)).toMatchObject({ key: KEY, agentId: "main" });
  });

  it("waits for the active run and goes before the message waiting behind it", async () => {
    const gate = deferred();
    const { session, provider } = await runtimeWith([
      held("first answer", gate.promise),
      { text: "second answer" },
    ]);
    const first = await session.send("first");
    await tick();
    let injectedAt: number | undefined;
    const injecting = session.inject("a note").then((result) => {
      injectedAt = result.seq;
      return result;
    });
    const second = await session.send("second", { queueMode: "followup" });
    await tick();
    // Neither the note nor the second message come before the first run's end.
    expect(injectedAt).toBeUndefined();
    expect(provider.requests).toHaveLength(1);

    gate.resolve();
    await first.result;
    const injected = await injecting;
    await second.result;
    expect(transcriptOf(provider.requests[1]!.messages)).toEqual([
      "user:first",
      "assistant:first answer",
      "assistant:a note",
      "user:second",
    ]);
    // Saved after the first run's messages, before the second's.
    const seqs = (await session.history({ limit: 10 })).map((r) => r.seq);
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
    expect(injected.seq).toBe(3);
  });

  it("is kept over a restart of the runtime (the history is read back with it)", async () => {
    const { runtime, session, provider, start } = await runtimeWith([
      { text: "ok" },
      { text: "Hi Ada" },
    ]);
    await (await session.send("hello")).result;
    await session.inject("remember: the user is Ada");
    await runtime.stop();

    const again = await start();
    await (await again.session(KEY).send("who am I?")).result;
    expect(transcriptOf(provider.requests[1]!.messages)).toEqual([
      "user:hello",
      "assistant:ok",
      "assistant:remember: the user is Ada",
      "user:who am I?",
    ]);
  });

  it("can be undone by rewind, as a run without a user message", async () => {
    const { session, provider } = await runtimeWith([{ text: "ok" }, { text: "again" }]);
    await (await session.send("hello")).result;
    const injected = await session.inject("a wrong note");
    const rewound = await session.rewind();
    expect(rewound).toEqual({ runIds: [injected.runId], inputs: [], removedMessages: 1 });
    await (await session.send("next")).result;
    expect(transcriptOf(provider.requests[1]!.messages)).toEqual([
      "user:hello",
      "assistant:ok",
      "user:next",
    ]);
  });

  it("a reset while it waits answers it with AbortedError and saves nothing", async () => {
    const gate = deferred();
    const { session, store } = await runtimeWith([held("slow", gate.promise)]);
    await session.send("first");
    await tick();
    const injecting = session.inject("too late");
    await tick();
    await session.reset();
    const error = await failureOf(() => injecting);
    expect(AbortedError.isInstance(error)).toBe(true);
    gate.resolve();
    await tick();
    expect(await store.transcripts.read(KEY)).toEqual([]);
  });

  it("refuses bad text and labels with InvalidArgumentError, saving nothing", async () => {
    const { session, store } = await runtimeWith([]);
    const bad: Array<[unknown, unknown]> = [
      ["", undefined],
      ["   ", undefined],
      [42, undefined],
      [undefined, undefined],
      ["ok", { label: "" }],
      ["ok", { label: "x".repeat(101) }],
      ["ok", { label: "two\nlines" }],
      ["ok", { label: 7 }],
      ["ok", "label"],
    ];
    for (const [text, options] of bad) {
      const error = await failureOf(() =>
        session.inject(text as string, options as { label?: string }),
      );
      expect(InvalidArgumentError.isInstance(error), `${String(text)} ${String(options)}`).toBe(
        true,
      );
    }
    expect(await store.transcripts.read(KEY)).toEqual([]);
    expect(await store.sessions.get(KEY)).toBeUndefined();
  });
});
