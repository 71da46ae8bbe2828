/**
 * A message steered into a run after the run's last look for steered messages (its
 * model has answered, the turn is about to be saved) must still be answered, not acknowledged
 * with an answer that never saw it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AgentRuntime, createProviderChain, MemoryStore } from "../src/index.js";
import type { ModelMessage, ModelRequest } from "../src/providers/types.js";
import type { Process } from "../src/runtime/actor.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { type Deferred, deferred, lastUserText, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A runtime whose first model call is held until `releaseModel`, and whose session can be
 * held inside a handler (a metadata write) so that requests wait in its mailbox.
 */
async function heldRuntime() {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const put = store.sessions.put.bind(store.sessions);
  let hold: { entered: Deferred<void>; release: Deferred<void> } | undefined;
  store.sessions.put = async (record) => {
    const h = hold;
    hold = undefined;
    if (h !== undefined) {
      h.entered.resolve();
      await h.release.promise;
    }
    return put(record);
  };
  const modelEntered = deferred();
  const modelGate = deferred();
  const provider = createScriptedProvider([
    (request: ModelRequest) => {
      modelEntered.resolve();
      return {
        events: [
          { type: "response-start", model: request.model },
          { type: "wait", until: modelGate.promise },
          { type: "text-delta", text: `answer: ${lastUserText(request.messages)}` },
          { type: "finish", reason: "stop" },
        ],
      };
    },
  ]);
  // Every later call answers its last user message.
  const echo = (request: ModelRequest) => ({ text: `answer: ${lastUserText(request.messages)}` });
  for (let i = 0; i < 10; i++) provider.push(echo);
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: "scripted/model-1" }],
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  const session = runtime.session(KEY);
  /** Holds the session inside a patch; resolves once held, with the release. */
  const holdSession = async () => {
    const held = { entered: deferred(), release: deferred() };
    hold = held;
    const patching = session.patch({ displayName: "busy" });
    await held.entered.promise;
    return async () => {
      held.release.resolve();
      await patching;
    };
  };
  const actor = () =>
    runtime.registry.whereis<Process & { mailboxSize: number }>(`session:${KEY}`)!;
  return { store, provider, runtime, session, holdSession, modelEntered, modelGate, actor };
}

describe("steer at the end of a run", () => {
  it("a steered message taken by the session after the run's model answered is still answered", async () => {
    const { provider, session, holdSession, modelEntered, modelGate, actor } = await heldRuntime();
    const first = await session.send("first");
    await modelEntered.promise;
    const release = await holdSession();
    // The steer waits in the mailbox while the session is held.
    const steering = session.send("late steer", { queueMode: "steer" });
    await waitFor("the steer to wait in the mailbox", () => actor().mailboxSize === 1);
    // The run's model answers; the loop finds nothing steered and ends: its end waits behind.
    modelGate.resolve();
    await waitFor("the run's end to wait in the mailbox", () => actor().mailboxSize === 2);
    await release();
    const steered = await steering;
    expect(steered.disposition).toBe("steered");
    const result = await steered.result;
    // The model was asked about the steered message, and its answer is the run's result.
    expect(provider.requests.map((r) => lastUserText(r.messages))).toEqual(["first", "late steer"]);
    expect(result.status).toBe("completed");
    expect(result.text).toBe("answer: late steer");
    expect((await first.result).text).toBe("answer: late steer");
    // The transcript holds the steered message and its answer.
    const saved = (await session.history()).map((r) =>
      lastUserText([r.entry.message as unknown as ModelMessage]),
    );
    expect(saved).toContain("late steer");
    // Still one run: one run-start and one run-end, the steered message announced between.
    const events: string[] = [];
    for await (const event of first) events.push(event.type);
    expect(events.filter((t) => t === "run-start")).toHaveLength(1);
    expect(events.filter((t) => t === "run-end")).toHaveLength(1);
    expect(events.indexOf("steer")).toBeGreaterThan(0);
    expect(result.steps).toBe(2);
    expect((await session.info()).metadata.runs).toBe(1);
  });
});
