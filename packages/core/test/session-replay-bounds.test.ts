/**
 * After a crash a session replays every message it had accepted, however many: they
 * were acknowledged, so neither the in-memory cap on waiting messages nor a page size of the
 * store may lose them, crash the session again, or send them to quarantine.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AgentRuntime, createProviderChain, MemoryStore, type RunHandle } from "../src/index.js";
import type { ModelRequest } from "../src/providers/types.js";
import type { Process } from "../src/runtime/actor.js";
import { createScriptedProvider, type ScriptedProvider } from "../src/testing/index.js";
import { deferred, lastUserText, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Answers `answer: <last user text>`. */
const echo = (request: ModelRequest) => ({ text: `answer: ${lastUserText(request.messages)}` });

/** A runtime over `provider`; messages of a restarted session replay from `store`. */
async function runtimeOver(
  provider: ScriptedProvider,
  options: { maxQueuedMessages?: number } = {},
): Promise<{ runtime: AgentRuntime; store: MemoryStore }> {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: "scripted/model-1" }],
    ...options,
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { runtime, store };
}

/** A call that holds until its signal aborts (the session is killed). */
const hang = (entered: () => void) => (request: ModelRequest) => {
  entered();
  return {
    events: [
      { type: "response-start" as const, model: request.model },
      { type: "delay" as const, ms: Infinity },
    ],
  };
};

/** Kills the session's actor and waits for its supervisor's restart. */
async function killAndRestart(runtime: AgentRuntime): Promise<void> {
  const old = runtime.registry.whereis<Process>(`session:${KEY}`)!;
  old.kill();
  await waitFor("the session to be restarted", () => {
    const actor = runtime.registry.whereis<Process>(`session:${KEY}`);
    return actor !== undefined && actor !== old && actor.status === "running";
  });
}

describe("replay after a crash", () => {
  it("replays more messages than maxQueuedMessages (steered ones the run had taken) without crashing again", async () => {
    const firstEntered = deferred();
    const firstGate = deferred();
    const secondEntered = deferred();
    const provider = createScriptedProvider([
      (request: ModelRequest) => {
        firstEntered.resolve();
        return {
          events: [
            { type: "response-start", model: request.model },
            { type: "wait", until: firstGate.promise },
            { type: "text-delta", text: "first answer" },
            { type: "finish", reason: "stop" },
          ],
        };
      },
      hang(() => secondEntered.resolve()),
    ]);
    for (let i = 0; i < 10; i++) provider.push(echo);
    const { runtime, store } = await runtimeOver(provider, { maxQueuedMessages: 2 });
    const session = runtime.session(KEY);
    const handles: RunHandle[] = [await session.send("first")];
    await firstEntered.promise;
    // Taken by the run at its next step: no longer counted as waiting.
    handles.push(await session.send("steer one", { queueMode: "steer" }));
    firstGate.resolve();
    await secondEntered.promise;
    handles.push(await session.send("steer two", { queueMode: "steer" }));
    handles.push(await session.send("follow up", { queueMode: "followup" }));
    expect(await store.queue.pending({ sessionKey: KEY })).toHaveLength(4);

    await killAndRestart(runtime);
    const results = await Promise.all(handles.map((h) => h.result));
    for (const result of results) expect(result.status).toBe("completed");
    expect(await runtime.quarantined()).toEqual([]);
    expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
    const asked = provider.requests.map((r) => lastUserText(r.messages));
    for (const text of ["first", "steer one", "steer two", "follow up"]) {
      expect(asked).toContain(text);
    }
  });

  it("replays every unfinished message, more than the store's default page of 100", async () => {
    const entered = deferred();
    const provider = createScriptedProvider([hang(() => entered.resolve())]);
    for (let i = 0; i < 110; i++) provider.push(echo);
    const { runtime, store } = await runtimeOver(provider);
    const session = runtime.session(KEY);
    const handles: RunHandle[] = [await session.send("m0")];
    await entered.promise;
    // The default maxQueuedMessages (100) waiting behind the active run: 101 in all.
    for (let i = 1; i <= 100; i++) handles.push(await session.send(`m${i}`));
    expect(await store.queue.pending({ sessionKey: KEY, limit: 1000 })).toHaveLength(101);

    await killAndRestart(runtime);
    const results = await Promise.all(handles.map((h) => h.result));
    expect(results.map((r) => r.status)).toEqual(handles.map(() => "completed"));
    expect(results.at(-1)!.text).toBe("answer: m100");
    expect(await store.queue.pending({ sessionKey: KEY, limit: 1000 })).toEqual([]);
  });

  it("replays past the store's largest page (1000): the rest once the first page is done", async () => {
    const entered = deferred();
    const provider = createScriptedProvider([hang(() => entered.resolve())]);
    for (let i = 0; i < 1010; i++) provider.push(echo);
    const { runtime, store } = await runtimeOver(provider, { maxQueuedMessages: 1005 });
    const session = runtime.session(KEY);
    const handles: RunHandle[] = [await session.send("m0")];
    await entered.promise;
    for (let i = 1; i <= 1002; i++) handles.push(await session.send(`m${i}`));

    await killAndRestart(runtime);
    const results = await Promise.all(handles.map((h) => h.result));
    expect(results.filter((r) => r.status !== "completed")).toEqual([]);
    expect(results.at(-1)!.text).toBe("answer: m1002");
    expect(await store.queue.pending({ sessionKey: KEY, limit: 1000 })).toEqual([]);
  });
});
