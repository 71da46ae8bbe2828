/**
 * `session.fork()`: a new session with the history up to a user message, which comes back
 * to send there edited; the original is left as it is. Runs undone before the point, markers
 * and runs after it are not copied; the fork's record is written with its history; bad options,
 * taken keys and a failed write change nothing.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, type ModelMessage, StoreError } from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { scriptedRuntime, transcriptOf } from "./support.js";

const KEY = "agent:main:main";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function runtimeWith(script: ScriptEntry[]) {
  return scriptedRuntime(script, cleanups);
}

describe("session.fork", () => {
  it("branches before a user message: the fork has what came before, the original stays whole", async () => {
    const { runtime, session, provider } = await runtimeWith([
      { toolCalls: [{ toolName: "lookup", input: { word: "ciao" } }] },
      { text: "It means hello." },
      { text: "Rome." },
      { text: "Berlin, in the branch." },
    ]);
    await (await session.send("What does ciao mean?")).result;
    const second = await (await session.send("Capital of Italy?")).result;
    const fork = await session.fork({ runId: second.runId });
    expect(fork.key).toMatch(/^agent:main:fork:[0-9a-f-]{36}$/);
    expect(fork.input).toEqual({ text: "Capital of Italy?" });
    // The first exchange: the question, the tool call, its result, the answer.
    expect(fork.copiedMessages).toBe(4);
    const branch = runtime.session(fork.key);
    await (await branch.send("Capital of Germany?")).result;
    expect(transcriptOf(provider.requests.at(-1)!.messages)).toEqual([
      "user:What does ciao mean?",
      "assistant:call lookup",
      "tool:result",
      "assistant:It means hello.",
      "user:Capital of Germany?",
    ]);
    // The original is untouched.
    const original = (await session.history()).map(
      (r) => r.entry.message as unknown as ModelMessage,
    );
    expect(transcriptOf(original).at(-2)).toBe("user:Capital of Italy?");
    expect(transcriptOf(original).at(-1)).toBe("assistant:Rome.");
  });

  it("writes the fork's record with its history: listed before its first message, forkedFrom set", async () => {
    const { session, store } = await runtimeWith([{ text: "one" }, { text: "two" }]);
    await (await session.send("first")).result;
    await session.patch({ displayName: "The original", thinkingLevel: "high" });
    const second = await (await session.send("second")).result;
    const before = Date.now();
    const fork = await session.fork({ runId: second.runId });
    const record = await store.sessions.get(fork.key);
    expect(record).toMatchObject({ key: fork.key, agentId: "main", forkedFrom: KEY, runs: 0 });
    expect(record?.createdAt).toBeGreaterThanOrEqual(before);
    // Its metadata starts fresh: the original's label and settings stay with the original.
    expect(record?.displayName).toBeUndefined();
    expect(record?.thinkingLevel).toBeUndefined();
    expect((await store.sessions.list({})).items.map((r) => r.key).sort()).toEqual(
      [KEY, fork.key].sort(),
    );
    // A second fork into the same key is refused: the first one holds it.
    await expect(session.fork({ runId: second.runId, key: fork.key })).rejects.toThrow(
      /exists already/,
    );
  });

  it("a fork whose record the store refuses is removed whole: no history left without a record", async () => {
    const store = new MemoryStore();
    const put = store.sessions.put.bind(store.sessions);
    store.sessions.put = async (record) => {
      if (record.forkedFrom !== undefined) {
        throw new StoreError("STORE_UNAVAILABLE", "the disk is briefly unavailable");
      }
      return put(record);
    };
    const { session } = await scriptedRuntime([{ text: "one" }, { text: "two" }], cleanups, {
      store,
    });
    await (await session.send("first")).result;
    const second = await (await session.send("second")).result;
    await expect(session.fork({ runId: second.runId, key: "agent:main:branch" })).rejects.toThrow(
      StoreError,
    );
    expect(await store.transcripts.lastSeq("agent:main:branch")).toBe(0);
    expect(await store.sessions.get("agent:main:branch")).toBeUndefined();
  });

  it("forks into a key of the caller's choosing, hands back images, and leaves undone runs out", async () => {
    const { session, store } = await runtimeWith([
      { text: "one" },
      { text: "undone" },
      { text: "three" },
    ]);
    await (await session.send("first")).result;
    await (await session.send("to undo")).result;
    await session.rewind();
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).toString("base64");
    const third = await (
      await session.send({ text: "look", images: [{ mediaType: "image/png", data: png }] })
    ).result;
    const fork = await session.fork({ runId: third.runId, key: "agent:main:Branch-A" });
    expect(fork.key).toBe("agent:main:branch-a");
    expect(fork.input).toEqual({ text: "look", images: [{ mediaType: "image/png", data: png }] });
    const copied = await store.transcripts.read("agent:main:branch-a");
    expect(copied.map((r) => (r.entry.message as unknown as ModelMessage).role)).toEqual([
      "user",
      "assistant",
    ]);
    expect(JSON.stringify(copied)).not.toContain("to undo");
    expect(copied.some((r) => r.entry.discarded === true)).toBe(false);
  });

  it("refuses a run it does not have, a taken key and bad options, writing nothing", async () => {
    const { session, store, runtime } = await runtimeWith([{ text: "a" }, { text: "b" }]);
    const first = await (await session.send("first")).result;
    await (await runtime.session("agent:main:taken").send("hi")).result;
    const before = (await store.transcripts.read("agent:main:taken")).length;
    await expect(session.fork({ runId: "no-such-run" })).rejects.toThrow(InvalidArgumentError);
    await expect(session.fork({ runId: first.runId, key: "agent:main:taken" })).rejects.toThrow(
      /exists already/,
    );
    await expect(session.fork({ runId: first.runId, key: KEY })).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(session.fork({ runId: first.runId, key: "not a key" })).rejects.toThrow();
    await expect(session.fork({} as never)).rejects.toThrow(/needs a runId/);
    await expect(session.fork(undefined as never)).rejects.toThrow(InvalidArgumentError);
    expect((await store.transcripts.read("agent:main:taken")).length).toBe(before);
    // Forking before the very first message gives an empty branch.
    const empty = await session.fork({ runId: first.runId });
    expect(empty).toMatchObject({ input: { text: "first" }, copiedMessages: 0 });
    expect(await store.transcripts.read(empty.key)).toEqual([]);
    expect(await store.sessions.get(empty.key)).toMatchObject({ forkedFrom: KEY, runs: 0 });
  });
});
