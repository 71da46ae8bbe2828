/**
 * A runtime that starts over a store holding more unfinished messages than the store gives
 * at once (1,000) revives every session they belong to, not only those of the first page;
 * and a session started for a new message meanwhile runs its own earlier messages first.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AgentRuntime, createProviderChain, MemoryStore } from "../src/index.js";
import type { ModelMessage, ModelRequest } from "../src/providers/types.js";
import { createScriptedProvider, type ScriptedProvider } from "../src/testing/index.js";
import { lastUserText, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A store holding `messages` unfinished messages, as a runtime that crashed left them. */
async function storeWithBacklog(messages: Array<[key: string, text: string]>) {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  for (const [i, [sessionKey, text]] of messages.entries()) {
    await store.queue.enqueue({
      idempotencyKey: `backlog-${i}`,
      sessionKey,
      payload: { input: { text }, options: {}, runId: `run-${i}` },
    });
  }
  return store;
}

/** A provider that answers `answer: <last user text>`, or never for texts `hold` accepts. */
function echoProvider(hold: (text: string) => boolean = () => false): ScriptedProvider {
  const provider = createScriptedProvider([]);
  const reply = (request: ModelRequest) => {
    const text = lastUserText(request.messages);
    provider.push(reply);
    if (!hold(text)) return { text: `answer: ${text}` };
    return {
      events: [
        { type: "response-start" as const, model: request.model },
        { type: "delay" as const, ms: Infinity },
      ],
    };
  };
  provider.push(reply);
  return provider;
}

async function startRuntime(store: MemoryStore, provider: ScriptedProvider) {
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: "scripted/model-1" }],
    maxQueuedMessages: 2_000,
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}

async function answers(runtime: AgentRuntime, key: string): Promise<string[]> {
  const history = await runtime.session(key).history();
  return history
    .map((r) => r.entry.message as unknown as ModelMessage | undefined)
    .filter((m): m is ModelMessage => m?.role === "assistant")
    .map((m) => m.content.map((p) => (p.type === "text" ? p.text : "")).join(""));
}

describe("the runtime's start over a backlog", () => {
  it("revives the sessions behind the first 1,000 unfinished messages too", async () => {
    const backlog: Array<[string, string]> = [];
    for (let i = 0; i < 1_005; i++) backlog.push([`agent:main:direct:p${i}`, `hello ${i}`]);
    const store = await storeWithBacklog(backlog);
    const runtime = await startRuntime(store, echoProvider());
    await waitFor(
      "every unfinished message to be answered",
      async () => (await store.queue.pending({ limit: 10 })).length === 0,
      10_000,
    );
    expect(await answers(runtime, "agent:main:direct:p1004")).toEqual(["answer: hello 1004"]);
    expect(await answers(runtime, "agent:main:direct:p0")).toEqual(["answer: hello 0"]);
  });

  it("a session started for a new message runs its own earlier messages first", async () => {
    // A thousand messages of one busy session (held) fill the first page; one more session's
    // message waits behind them.
    const backlog: Array<[string, string]> = [];
    for (let i = 0; i < 1_000; i++) backlog.push(["agent:main:direct:busy", `busy ${i}`]);
    backlog.push(["agent:main:direct:late", "from before"]);
    const store = await storeWithBacklog(backlog);
    const runtime = await startRuntime(
      store,
      echoProvider((text) => text.startsWith("busy")),
    );
    const run = await runtime.session("agent:main:direct:late").send("new");
    expect((await run.result).text).toBe("answer: new");
    expect(await answers(runtime, "agent:main:direct:late")).toEqual([
      "answer: from before",
      "answer: new",
    ]);
    expect(await store.queue.pending({ sessionKey: "agent:main:direct:late" })).toEqual([]);
  });

  it("revives a session behind a page of 1,000 held messages without waiting for them", async () => {
    // The first page is one session's, held by its model: the sessions behind it are revived
    // by the next look (the store's `after` cursor), not only once that page drains.
    const backlog: Array<[string, string]> = [];
    for (let i = 0; i < 1_000; i++) backlog.push(["agent:main:direct:busy", `busy ${i}`]);
    backlog.push(["agent:main:direct:late", "from before"]);
    const store = await storeWithBacklog(backlog);
    const runtime = await startRuntime(
      store,
      echoProvider((text) => text.startsWith("busy")),
    );
    await waitFor(
      "the late session's message to be answered",
      async () =>
        (await store.queue.pending({ sessionKey: "agent:main:direct:late" })).length === 0,
      5_000,
    );
    expect(await answers(runtime, "agent:main:direct:late")).toEqual(["answer: from before"]);
    // The held session still has its messages, unanswered.
    expect(
      await store.queue.pending({ sessionKey: "agent:main:direct:busy", limit: 5 }),
    ).toHaveLength(5);
  });
});
