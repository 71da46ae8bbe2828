/**
 * A session's mailbox full of requests (a flood) must not lose the session's own
 * messages to itself: the end of a run arriving then must still end the run.
 */

import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { afterEach, describe, expect, it } from "vitest";
import { OverloadedError } from "../src/errors.js";
import { AgentRuntime, createProviderChain, MemoryStore } from "../src/index.js";
import type { ModelRequest } from "../src/providers/types.js";
import type { Process } from "../src/runtime/actor.js";
import { createScriptedProvider } from "../src/testing/index.js";
import { type Deferred, deferred, failureOf, tick, waitFor } from "./support.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a full mailbox and the session's own messages", () => {
  it("a run that ends while the mailbox is full still ends, and the session goes on", async () => {
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
    // The run's last message is saved: from then on only promise jobs are left until its end.
    const append = store.transcripts.append.bind(store.transcripts);
    const answerSaved = deferred();
    store.transcripts.append = async (key, entries) => {
      const seq = await append(key, entries);
      if (entries.some((e) => (e.message as { role?: string } | undefined)?.role === "assistant"))
        answerSaved.resolve();
      return seq;
    };
    const entered = deferred();
    const gate = deferred();
    const provider = createScriptedProvider([
      (request: ModelRequest) => {
        entered.resolve();
        return {
          events: [
            { type: "response-start", model: request.model },
            { type: "wait", until: gate.promise },
            { type: "text-delta", text: "done" },
            { type: "finish", reason: "stop" },
          ],
        };
      },
      "second answer",
    ]);
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
      agents: [{ id: "main", model: "scripted/model-1" }],
      mailboxLimit: 2,
    });
    cleanups.push(() => runtime.stop());
    await runtime.start();
    const session = runtime.session(KEY);
    const run = await session.send("first");
    await entered.promise;
    const actor = runtime.registry.whereis<Process & { mailboxSize: number }>(`session:${KEY}`)!;

    // Hold the session in a handler and fill its mailbox with requests.
    const held = { entered: deferred(), release: deferred() };
    hold = held;
    const patching = session.patch({ displayName: "busy" });
    await held.entered.promise;
    const infos = [session.info(), session.info()];
    await waitFor("the mailbox to fill", () => actor.mailboxSize === 2);
    expect(await failureOf(() => session.info())).toBeInstanceOf(OverloadedError);

    // The run ends while the mailbox is full.
    gate.resolve();
    await answerSaved.promise;
    await tick();
    held.release.resolve();
    await patching;
    await Promise.all(infos);

    const result = await run.result;
    expect(result).toMatchObject({ status: "completed", text: "done" });
    const next = await session.send("second");
    expect((await next.result).text).toBe("second answer");
    expect((await session.info()).activeRunId).toBeUndefined();
  });

  it("an idle check that finds the mailbox full is not lost: the session still hibernates", async () => {
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
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({
        providers: [createScriptedProvider(["hi"])],
        models: [],
        retry: { maxAttempts: 1 },
      }),
      agents: [{ id: "main", model: "scripted/model-1" }],
      mailboxLimit: 1,
      hibernateAfterMs: 5,
    });
    cleanups.push(() => runtime.stop());
    await runtime.start();
    const session = runtime.session(KEY);
    await (await session.send("hello")).result;
    const actor = runtime.registry.whereis<
      Process & { mailboxSize: number; whenStopped(): Promise<unknown> }
    >(`session:${KEY}`)!;
    // A timer message refused by the full mailbox is the sync point.
    const refusedInfo = deferred();
    const onOverload = (event: unknown) => {
      const { kind, actorId } = event as { kind: string; actorId: number };
      if (kind === "info" && actorId === actor.pid) refusedInfo.resolve();
    };
    subscribe("beamclaw:actor.overload", onOverload);
    cleanups.push(async () => {
      unsubscribe("beamclaw:actor.overload", onOverload);
    });
    const held = { entered: deferred(), release: deferred() };
    hold = held;
    const patching = session.patch({ displayName: "busy" });
    await held.entered.promise;
    const info = session.info();
    await waitFor("the mailbox to fill", () => actor.mailboxSize === 1);
    await refusedInfo.promise;
    held.release.resolve();
    await patching;
    await info;
    await actor.whenStopped();
    expect(actor.exitReason).toBe("normal");
    expect(runtime.activeSessions()).toEqual([]);
  });
});
