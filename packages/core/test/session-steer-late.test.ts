/**
 * A message steered into a run after the run's last look for steered messages (its
 * model has answered, the turn is about to be saved) must still be answered, not acknowledged
 * with an answer that never saw it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AgentRuntime, createProviderChain, MemoryStore } from "../src/index.js";
import type { JsonObject, ModelMessage, ModelRequest } from "../src/providers/types.js";
import type { Process } from "../src/runtime/actor.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";
import { type Deferred, deferred, lastUserText, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A runtime whose first model call is held until `releaseModel`, and whose session can be
 * held inside a handler (a metadata write) so that requests wait in its mailbox. `next`:
 * the answer of the second model call (else it echoes, as every later call does).
 */
async function heldRuntime(next?: ScriptEntry) {
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
  if (next !== undefined) provider.push(next);
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

describe("a run that went on for a late steered message, whose later part the store refuses as bad input", () => {
  it("fails with none of its messages in the result: the earlier part's, cancelled with the rest, are not reported either", async () => {
    // The model's answer to the late steer calls a tool with arguments nested deeper than any
    // store keeps: the turn cannot be saved, and the whole run (both parts) is cancelled.
    let deep: JsonObject = { leaf: true };
    for (let i = 0; i < 600; i++) deep = { next: deep };
    const { provider, session, holdSession, modelEntered, modelGate, actor } = await heldRuntime({
      toolCalls: [{ toolName: "nothing", input: deep }],
    });
    const first = await session.send("first");
    await modelEntered.promise;
    const release = await holdSession();
    const steering = session.send("late steer", { queueMode: "steer" });
    await waitFor("the steer to wait in the mailbox", () => actor().mailboxSize === 1);
    modelGate.resolve();
    await waitFor("the run's end to wait in the mailbox", () => actor().mailboxSize === 2);
    await release();
    const steered = await steering;
    expect(steered.disposition).toBe("steered");
    const result = await steered.result;
    expect(result.status).toBe("failed");
    expect(result.error?.code).toBe("INVALID_ARGUMENT");
    // What the run saved is cancelled in the transcript: the result reports none of it.
    expect(result.messages).toEqual([]);
    expect(result.finalMessage).toBeUndefined();
    expect(await first.result).toEqual(result);
    // Both of the model's calls are counted, as for any failed run.
    expect(result.steps).toBe(2);
    // The next run's model sees nothing of the failed one.
    const next = await (await session.send("next")).result;
    expect(next.text).toBe("answer: next");
    expect(provider.requests.at(-1)!.messages.map((m) => m.role)).toEqual(["user"]);
  });
});
