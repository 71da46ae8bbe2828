/**
 * An injection asked again (as a cluster node does after the node it asked was lost before
 * answering): the same id is the same injection, saved once, whether the session still holds
 * it (waiting for the active run) or a previous owner saved it already (found in the
 * transcript after the seq the retry names). `runtime.answerRequest` is how a cluster node
 * answers a routed request.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { InjectResult } from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { deferred, scriptedRuntime } from "./support.js";

const KEY = "agent:main:main";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function held(text: string, until: Promise<void>): ScriptEntry {
  return {
    events: [
      { type: "wait", until },
      { type: "text-delta", text },
      { type: "finish", reason: "stop" },
    ],
  };
}

async function injectionsIn(store: MemoryStore, text: string): Promise<string[]> {
  const records = await store.transcripts.read(KEY, { limit: 1000 });
  return records
    .filter((r) => {
      const message = r.entry.message as { content?: Array<{ text?: string }> } | undefined;
      return message?.content?.[0]?.text === text;
    })
    .map((r) => String(r.entry.runId));
}

describe("an injection asked again with its id", () => {
  it("saved already (by a previous owner): the retry answers with the saved one and saves nothing", async () => {
    const store = new MemoryStore();
    const { runtime, session } = await scriptedRuntime([{ text: "Hello!" }], cleanups, { store });
    await (await session.send("Hi")).result;
    const before = await store.transcripts.lastSeq(KEY);
    const first = (await runtime.answerRequest(KEY, {
      type: "inject",
      text: "shipped",
      id: "order-1",
    })) as InjectResult;
    expect(first.runId).toBe("inject:order-1");
    const again = (await runtime.answerRequest(KEY, {
      type: "inject",
      text: "shipped",
      id: "order-1",
      savedAfter: before,
    })) as InjectResult;
    expect(again).toEqual(first);
    expect(await injectionsIn(store, "shipped")).toEqual(["inject:order-1"]);
    expect((await session.info()).historyLength).toBe(3);
    // A retry that names a seq after it looks no further back: it was not saved since.
    const other = (await runtime.answerRequest(KEY, {
      type: "inject",
      text: "shipped",
      id: "order-2",
      savedAfter: first.seq,
    })) as InjectResult;
    expect(other.runId).toBe("inject:order-2");
    expect(other.seq).toBe(first.seq + 1);
  });

  it("still waiting for the active run: the retry joins it, and it is saved once after the run", async () => {
    const store = new MemoryStore();
    const gate = deferred<void>();
    const { runtime, session } = await scriptedRuntime([held("Done.", gate.promise)], cleanups, {
      store,
    });
    const run = await session.send("Work");
    await expect.poll(async () => (await session.info()).activeRunId).toBeDefined();
    const before = await store.transcripts.lastSeq(KEY);
    const first = runtime.answerRequest(KEY, { type: "inject", text: "note", id: "n-1" });
    const retry = runtime.answerRequest(KEY, {
      type: "inject",
      text: "note",
      id: "n-1",
      savedAfter: before,
    });
    gate.resolve();
    expect((await run.result).status).toBe("completed");
    const [a, b] = (await Promise.all([first, retry])) as InjectResult[];
    expect(b).toEqual(a);
    expect(await injectionsIn(store, "note")).toEqual(["inject:n-1"]);
  });

  it("session.inject gives every call its own id: two calls are two injections", async () => {
    const store = new MemoryStore();
    const { session } = await scriptedRuntime([], cleanups, { store });
    const one = await session.inject("twice");
    const two = await session.inject("twice");
    expect(one.runId).not.toBe(two.runId);
    expect(await injectionsIn(store, "twice")).toEqual([one.runId, two.runId]);
  });
});
