/**
 * `send` with a signal that is aborted before the session takes the message: it rejects with
 * `AbortedError`, leaves nothing queued and makes no model call; a sub-agent spawned as its
 * parent's run is aborted is not started either.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AbortedError } from "../src/errors.js";
import { AgentRuntime, createProviderChain, MemoryStore, type RunHandle } from "../src/index.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";
import { failureOf, lastUserText, scriptedRuntime } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("send with an aborted signal", () => {
  it("rejects with AbortedError and calls no model when the signal is already aborted", async () => {
    const { session, provider, store } = await scriptedRuntime(["hello"], cleanups);
    const error = await failureOf(() =>
      session.send("hi", { signal: AbortSignal.abort("user left") }),
    );
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as AbortedError).cause).toBe("user left");
    expect(provider.requests).toHaveLength(0);
    expect(await store.queue.pending({ sessionKey: session.key })).toEqual([]);
    // The session is untouched: the next message runs as usual.
    const run = await session.send("again");
    expect((await run.result).status).toBe("completed");
    expect(provider.requests).toHaveLength(1);
  });

  it("rejects and leaves nothing queued when the signal aborts while the message is queued", async () => {
    const { session, provider, store } = await scriptedRuntime(["hello"], cleanups);
    const controller = new AbortController();
    const enqueue = store.queue.enqueue.bind(store.queue);
    store.queue.enqueue = async (message) => {
      const queued = await enqueue(message);
      controller.abort();
      return queued;
    };
    const error = await failureOf(() => session.send("hi", { signal: controller.signal }));
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(provider.requests).toHaveLength(0);
    expect(await store.queue.pending({ sessionKey: session.key })).toEqual([]);
  });
});

describe("a sub-agent spawned as its parent's run is aborted", () => {
  it("never calls the model: the parent's abort during the spawn reaches the child's send", async () => {
    const asked: string[] = [];
    const answer: ScriptEntry = (request) => {
      const last = lastUserText(request.messages);
      asked.push(last);
      if (last === "TASK") return "child done";
      if (request.messages.at(-1)?.role === "tool") return "parent done";
      return { toolCalls: [{ toolName: "spawn_subagent", input: { task: "TASK" } }] };
    };
    const provider = createScriptedProvider(Array<ScriptEntry>(5).fill(answer));
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
      agents: [{ id: "boss", model: "scripted/model-1", subagents: { maxConcurrent: 1 } }],
    });
    cleanups.push(() => runtime.stop());
    await runtime.start();
    let parent: RunHandle | undefined;
    // The parent's run is aborted while the child's session record is written.
    const put = store.sessions.put.bind(store.sessions);
    store.sessions.put = async (record) => {
      if (record.parentKey !== undefined) await parent?.abort();
      return put(record);
    };
    parent = await runtime.session("agent:boss:main").send("go");
    expect((await parent.result).status).toBe("aborted");
    expect(asked).toEqual(["go"]);
  });
});
