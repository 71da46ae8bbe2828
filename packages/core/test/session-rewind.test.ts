/**
 * `session.rewind()`: undoing a session's last runs (regenerate an answer, edit a message).
 * The undone runs leave the history the model sees, for good (a restart reads them back out
 * too), their user messages come back as `send` takes them, and the transcript keeps them
 * behind a discard marker. Refused, with nothing changed, while the session is busy, past a
 * compaction, or for more runs than it has.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { InvalidArgumentError, SessionBusyError } from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { scriptedRuntime, transcriptOf } from "./support.js";

const KEY = "agent:main:main";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function runtimeWith(script: ScriptEntry[], store = new MemoryStore()) {
  return scriptedRuntime(script, cleanups, { store });
}

describe("session.rewind", () => {
  it("regenerates the last answer: the undone run is gone from the next request, its input handed back", async () => {
    const { session, provider } = await runtimeWith([
      { text: "Paris." },
      { text: "A bad answer." },
      { text: "A better answer." },
    ]);
    await (await session.send("Capital of France?")).result;
    const bad = await (await session.send("And of Italy?")).result;
    expect((await session.info()).historyLength).toBe(4);

    const rewound = await session.rewind();
    expect(rewound).toEqual({
      runIds: [bad.runId],
      inputs: [{ text: "And of Italy?" }],
      removedMessages: 2,
    });
    expect((await session.info()).historyLength).toBe(2);

    const again = await (await session.send(rewound.inputs[0]!)).result;
    expect(again.text).toBe("A better answer.");
    expect(transcriptOf(provider.requests[2]!.messages)).toEqual([
      "user:Capital of France?",
      "assistant:Paris.",
      "user:And of Italy?",
    ]);
  });

  it("undoes several runs with their tool calls and results; `runId` undoes from that run on", async () => {
    const { session, provider } = await runtimeWith([
      { text: "one" },
      { toolCalls: [{ toolName: "lookup", input: { word: "two" } }] },
      { text: "two, looked up" },
      { text: "three" },
      { text: "after the edit" },
    ]);
    const first = await (await session.send("first")).result;
    const second = await (await session.send("second")).result;
    const third = await (await session.send("third")).result;
    expect(second.messages).toHaveLength(4); // input, call, result, answer

    const rewound = await session.rewind({ runId: second.runId });
    expect(rewound.runIds).toEqual([second.runId, third.runId]);
    expect(rewound.inputs).toEqual([{ text: "second" }, { text: "third" }]);
    expect(rewound.removedMessages).toBe(6);

    // An edited message takes the conversation another way.
    await (await session.send("second, edited")).result;
    expect(transcriptOf(provider.requests.at(-1)!.messages)).toEqual([
      "user:first",
      "assistant:one",
      "user:second, edited",
    ]);
    // The first run is still there to undo; a second rewind of two runs takes both.
    const again = await session.rewind({ runs: 2 });
    expect(again.runIds[0]).toBe(first.runId);
    expect((await session.info()).historyLength).toBe(0);
  });

  it("hands images back with the text", async () => {
    const { session } = await runtimeWith([{ text: "A cat." }]);
    const image = { mediaType: "image/png", data: "iVBORw0KGgo=" };
    await (await session.send({ text: "What is this?", images: [image] })).result;
    expect((await session.rewind()).inputs).toEqual([{ text: "What is this?", images: [image] }]);
  });

  it("the structured-answer retry prompt is not handed back as an input", async () => {
    const { session } = await runtimeWith([{ text: "not json" }, { text: '{"ok":true}' }]);
    const result = await (
      await session.send("Answer as JSON", { output: z.object({ ok: z.boolean() }) })
    ).result;
    expect(result.output).toEqual({ ok: true });
    // The run wrote: the input, the bad answer, the loop's retry prompt, the good answer.
    expect(result.messages).toHaveLength(4);
    const rewound = await session.rewind();
    expect(rewound.inputs).toEqual([{ text: "Answer as JSON" }]);
    expect(rewound.removedMessages).toBe(4);
  });

  it("is for good: a restarted runtime reads the history back without the undone run, and the transcript keeps it behind a marker", async () => {
    const { runtime, store, session, start, provider } = await runtimeWith([
      { text: "kept" },
      { text: "undone" },
      { text: "after the restart" },
    ]);
    await (await session.send("keep me")).result;
    const undone = await (await session.send("undo me")).result;
    await session.rewind();
    await runtime.stop();

    const restarted = await start();
    const revived = restarted.session(KEY);
    expect((await revived.info()).historyLength).toBe(2);
    await (await revived.send("next")).result;
    expect(transcriptOf(provider.requests.at(-1)!.messages)).toEqual([
      "user:keep me",
      "assistant:kept",
      "user:next",
    ]);
    const records = await store.transcripts.read(KEY);
    const marker = records.find((r) => r.entry.discarded === true);
    expect(marker?.entry).toMatchObject({ runId: undone.runId, cause: "rewind" });
    // What was undone is still in the transcript, before its marker.
    const undoneMessages = records.filter((r) => r.entry.runId === undone.runId && r.entry.message);
    expect(undoneMessages).toHaveLength(2);
    expect(undoneMessages.every((r) => r.seq < marker!.seq)).toBe(true);
  });

  it("refuses while a run is active or messages wait, and changes nothing", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { session } = await runtimeWith([
      { text: "done" },
      {
        events: [
          { type: "response-start", model: "model-1" },
          { type: "wait", until: gate },
          { type: "text-delta", text: "slow" },
          { type: "finish", reason: "stop" },
        ],
      },
      { text: "queued" },
    ]);
    await (await session.send("first")).result;
    const slow = await session.send("slow one");
    const queued = await session.send("waiting", { queueMode: "followup" });
    const busy = await session.rewind().catch((e: unknown) => e);
    expect(SessionBusyError.isInstance(busy)).toBe(true);
    expect((busy as SessionBusyError).code).toBe("SESSION_BUSY");
    expect((busy as SessionBusyError).activeRunId).toBe(slow.runId);
    release();
    await slow.result;
    await queued.result;
    // At rest again: the three runs are all there, and the last one can be undone.
    expect((await session.info()).historyLength).toBe(6);
    expect((await session.rewind()).inputs).toEqual([{ text: "waiting" }]);
  });

  it("refuses more runs than the session has, an unknown run, bad options, and runs before a compaction", async () => {
    const { session } = await runtimeWith([
      { text: "one" },
      { text: "two" },
      { text: "Summary: one and two." },
      { text: "three" },
    ]);
    const first = await (await session.send("first")).result;
    await (await session.send("second")).result;

    await expect(session.rewind({ runs: 3 })).rejects.toThrow(/has 2 run\(s\) that can be rewound/);
    await expect(session.rewind({ runId: "run-that-never-was" })).rejects.toThrow(
      InvalidArgumentError,
    );
    for (const bad of [
      { runs: 0 },
      { runs: 1.5 },
      { runId: "" },
      { runs: 1, runId: "x" },
      "last",
    ]) {
      await expect(session.rewind(bad as never)).rejects.toThrow(InvalidArgumentError);
    }
    expect((await session.info()).historyLength).toBe(4);

    // After a compaction, only later runs can be undone: the summary stands for the others.
    const compacted = await session.compact({ keepTurns: 0 });
    expect(compacted.status).toBe("compacted");
    await (await session.send("third")).result;
    await expect(session.rewind({ runId: first.runId })).rejects.toThrow(InvalidArgumentError);
    await expect(session.rewind({ runs: 2 })).rejects.toThrow(/has 1 run\(s\)/);
    expect((await session.rewind()).inputs).toEqual([{ text: "third" }]);
  });

  it("a session with nothing to undo says so", async () => {
    const { session } = await runtimeWith([]);
    await expect(session.rewind()).rejects.toThrow(/has 0 run\(s\) that can be rewound/);
  });
});
