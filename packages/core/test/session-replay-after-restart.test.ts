/**
 * `SendOptions.replayAfterRestart: false`: a message whose answer only its caller reads (a
 * stateless HTTP request) is not run again by a runtime that did not accept it (the next
 * start after a stop, a forced exit or a crash): it is ended unrun and leaves the durable
 * queue. A crash of just its session, its caller still following, replays it as any message;
 * messages without the option are replayed at the next start as before.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import type { Process } from "../src/runtime/actor.js";
import { subagentIndexKey } from "../src/sessions/session-actor.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { type Deferred, deferred, gatedAnswer, scriptedRuntime, waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A model whose answers to a gated text wait for its gate; `asked` lists every call's text. */
function gatedModel() {
  const gates = new Map<string, Deferred<void>>();
  const asked: string[] = [];
  const answer = gatedAnswer(gates, (_request, last) => asked.push(last));
  cleanups.push(async () => {
    for (const gate of gates.values()) gate.resolve();
  });
  return { gates, asked, script: Array<ScriptEntry>(10).fill(answer) };
}

describe("replayAfterRestart: false", () => {
  it("is not run again at the next start: ended unrun, off the queue; a kept message still replays", async () => {
    const model = gatedModel();
    model.gates.set("stateless", deferred());
    model.gates.set("kept", deferred());
    const { runtime, store, start } = await scriptedRuntime(model.script, cleanups);
    await runtime.session("agent:main:openai:1").send("stateless", { replayAfterRestart: false });
    await runtime.session("agent:main:kept").send("kept");
    await waitFor("both model calls", () => model.asked.length === 2);
    await runtime.stop();
    expect((await store.queue.pending()).map((m) => m.sessionKey).sort()).toEqual([
      "agent:main:kept",
      "agent:main:openai:1",
    ]);

    await start();
    await waitFor(
      "the kept message to run again",
      () => model.asked.filter((text) => text === "kept").length === 2,
    );
    await waitFor("the stateless message to leave the queue", async () => {
      const pending = await store.queue.pending();
      return pending.length === 1 && pending[0]!.sessionKey === "agent:main:kept";
    });
    expect(model.asked).toEqual(["stateless", "kept", "kept"]);
    model.gates.get("kept")!.resolve();
    await waitFor("the kept run to end", async () => (await store.queue.pending()).length === 0);
  });

  it("a crash of its session, its caller following, replays it into the caller's run", async () => {
    const model = gatedModel();
    const gate = deferred();
    model.gates.set("stateless", gate);
    const { runtime, session } = await scriptedRuntime(model.script, cleanups);
    const run = await session.send("stateless", { replayAfterRestart: false });
    await waitFor("the model call", () => model.asked.length === 1);
    const old = runtime.registry.whereis<Process>(`session:${session.key}`)!;
    old.kill();
    await waitFor("the restarted session to run it again", () => model.asked.length === 2);
    gate.resolve();
    expect(await run.result).toMatchObject({ status: "completed", text: "answer: stateless" });
  });

  it("with ephemeralSession, the next start deletes the session with the message: no record, no transcript", async () => {
    const model = gatedModel();
    model.gates.set("stateless", deferred());
    model.gates.set("kept stateless", deferred());
    const { runtime, store, start } = await scriptedRuntime(model.script, cleanups);
    const opts = { replayAfterRestart: false, ephemeralSession: true } as const;
    await runtime.session("agent:main:openai:1").send("stateless", opts);
    // Without ephemeralSession the session stays, its message ended unrun.
    await runtime.session("agent:main:openai:2").send("kept stateless", {
      replayAfterRestart: false,
    });
    await waitFor("both model calls", () => model.asked.length === 2);
    await runtime.stop();
    // As a forced exit leaves them: the messages queued, the records and transcripts written.
    for (const key of ["agent:main:openai:1", "agent:main:openai:2"]) {
      expect(await store.sessions.get(key)).toBeDefined();
      expect(await store.transcripts.lastSeq(key)).toBeGreaterThan(0);
    }

    await start();
    await waitFor(
      "both messages off the queue",
      async () => (await store.queue.pending()).length === 0,
    );
    await waitFor(
      "the ephemeral session deleted",
      async () => (await store.sessions.get("agent:main:openai:1")) === undefined,
    );
    expect(await store.transcripts.lastSeq("agent:main:openai:1")).toBe(0);
    expect(await store.sessions.get("agent:main:openai:2")).toBeDefined();
    expect(await store.transcripts.lastSeq("agent:main:openai:2")).toBeGreaterThan(0);
    expect(model.asked).toEqual(["stateless", "kept stateless"]);
  });

  it("with ephemeralSession, a session that also holds another message waiting is kept, and that message runs", async () => {
    const model = gatedModel();
    model.gates.set("stateless", deferred());
    const { runtime, store, start } = await scriptedRuntime(model.script, cleanups);
    const session = runtime.session("agent:main:openai:1");
    await session.send("stateless", { replayAfterRestart: false, ephemeralSession: true });
    await session.send("someone else's");
    await waitFor("the first model call", () => model.asked.length === 1);
    await runtime.stop();

    await start();
    await waitFor(
      "the other message to run",
      async () => (await store.queue.pending()).length === 0,
    );
    expect(model.asked).toEqual(["stateless", "someone else's"]);
    expect(await store.sessions.get("agent:main:openai:1")).toBeDefined();
  });

  it("ephemeralSession must be a boolean, and needs replayAfterRestart: false; nothing is queued otherwise", async () => {
    const { store, session } = await scriptedRuntime([], cleanups);
    await expect(
      session.send("hi", {
        replayAfterRestart: false,
        ephemeralSession: "yes" as unknown as boolean,
      }),
    ).rejects.toThrow(InvalidArgumentError);
    await expect(session.send("hi", { ephemeralSession: true })).rejects.toThrow(
      /needs replayAfterRestart: false/,
    );
    expect(await store.queue.pending()).toEqual([]);
  });

  it("must be a boolean; nothing is queued otherwise", async () => {
    const { store, session } = await scriptedRuntime([], cleanups);
    await expect(
      session.send("hi", { replayAfterRestart: "no" as unknown as boolean }),
    ).rejects.toThrow(InvalidArgumentError);
    expect(await store.queue.pending()).toEqual([]);
  });
});

describe("ephemeralSession and sub-agents", () => {
  it("the next start deletes the sub-agents the ephemeral session spawned, and the records of their spawns", async () => {
    const model = gatedModel();
    model.gates.set("stateless", deferred());
    const { runtime, store, start } = await scriptedRuntime(model.script, cleanups);
    const parent = "agent:main:openai:1";
    const child = "agent:main:subagent:3f0c9a4e-5d1b-4c2a-9e8f-0a1b2c3d4e5f";
    const grandchild = "agent:main:subagent:7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d";
    const run = await runtime
      .session(parent)
      .send("stateless", { replayAfterRestart: false, ephemeralSession: true });
    await waitFor("the model call", () => model.asked.length === 1);
    // What a spawn leaves in the store (see `claimSubagent`): its record in the parent's
    // spawns, the child's session and transcript; and the child's own spawn.
    await store.kv.set(subagentIndexKey(parent, `${run.runId}|0`, child), {});
    await store.kv.set(subagentIndexKey(child, "r|0", grandchild), {});
    for (const key of [child, grandchild]) {
      await store.sessions.put({
        key,
        agentId: "main",
        createdAt: 1,
        updatedAt: 1,
        parentKey: parent,
      });
      await store.transcripts.append(key, [
        { message: { role: "user", content: [{ type: "text", text: "task" }] } },
      ]);
    }
    await runtime.stop();

    await start();
    await waitFor(
      "the ephemeral session deleted",
      async () => (await store.sessions.get(parent)) === undefined,
    );
    for (const key of [child, grandchild]) {
      expect(await store.sessions.get(key)).toBeUndefined();
      expect(await store.transcripts.lastSeq(key)).toBe(0);
    }
    expect(await store.kv.keys("beamclaw:subagent:")).toEqual([]);
  });
});
