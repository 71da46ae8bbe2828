/**
 * Sub-agents over their parent's life: deleting (or resetting) a parent deletes the sessions
 * of the sub-agents it spawned, running or not, also after a restart; what the sub-agents used
 * is the parent's `subagentUsage`, apart from its own counters (nothing counted twice); and
 * the parent's count of spawns (`maxChildren`) is kept through a crash of its session and a
 * restart of its runtime, without counting a replayed spawn twice.
 */
import { describe, expect, it } from "vitest";
import type { AgentRuntime } from "../src/sessions/index.js";
import type { MemoryStore } from "../src/store/memory-store.js";
import {
  type Brain,
  BrainSource,
  firstUser,
  hangUntilAborted,
  lastUser,
  type SourceEvent,
  text,
  tool,
  toolCall,
  toolResults,
  useRuntimes,
} from "./fixtures/subagents.js";
import { deferred, waitFor } from "./support.js";

const { newStore, startRuntime } = useRuntimes();

const usage = (inputTokens: number, outputTokens: number): SourceEvent => ({
  type: "usage",
  usage: { inputTokens, outputTokens },
});

/** Waits until the tool call's run is cancelled (its session stopped), then fails. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

const PARENT = "agent:boss:main";

/** The sub-agent sessions in the store (by their `parentKey`). */
async function childRecords(store: MemoryStore) {
  return (await store.sessions.list({ limit: 1000 })).items.filter(
    (r) => r.parentKey !== undefined,
  );
}

/** Everything the store still holds of `key`: record, transcript, queued messages. */
async function leftOf(store: MemoryStore, key: string) {
  return {
    record: await store.sessions.get(key),
    transcript: await store.transcripts.lastSeq(key),
    queued: (await store.queue.pending({ sessionKey: key })).length,
  };
}
const NOTHING = { record: undefined, transcript: 0, queued: 0 };

/**
 * The parent spawns the tasks its first user text lists after "spawn:" (comma-separated) at
 * once, then answers "parent done"; a child answers `did <task>`.
 */
const spawner: Brain = (call) => {
  const first = firstUser(call.request.messages) ?? "";
  const last = call.request.messages.at(-1)!;
  if (first.startsWith("TASK")) return [text(`did ${first}`), usage(3, 2)];
  if (last.role === "tool") return [text("parent done"), usage(1, 1)];
  const tasks = (lastUser(call.request.messages) ?? "").replace(/^spawn:/, "").split(",");
  return [
    ...tasks.map((task, i) => toolCall(`s${i}`, "spawn_subagent", { task: task.trim() })),
    usage(1, 1),
  ];
};

describe("deleting a parent session", () => {
  it("deletes its sub-agents' sessions and transcripts, also after a restart (parent hibernated)", async () => {
    const store = await newStore();
    const agents = [{ id: "boss", model: "test/boss", subagents: {} }];
    const before = await startRuntime({ store, models: new BrainSource(spawner), agents });
    const run = await before.session(PARENT).send("spawn:TASK a, TASK b");
    expect((await run.result).text).toBe("parent done");
    const children = (await childRecords(store)).map((r) => r.key);
    expect(children).toHaveLength(2);
    for (const child of children) expect(await store.transcripts.lastSeq(child)).toBeGreaterThan(0);
    await before.stop();

    // A new runtime on the same store: nothing of the family is in memory.
    const after = await startRuntime({ store, models: new BrainSource(spawner), agents });
    expect(await after.session(PARENT).delete()).toEqual({ existed: true });
    for (const child of [PARENT, ...children]) expect(await leftOf(store, child)).toEqual(NOTHING);
    expect(await childRecords(store)).toEqual([]);
    // Nothing of the spawns' records is left behind either.
    expect(await store.kv.keys("beamclaw:subagent:")).toEqual([]);
  });

  it("aborts a running sub-agent and deletes its session", async () => {
    const store = await newStore();
    const childAsked = deferred<AbortSignal | undefined>();
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      if (first === "TASK slow") {
        childAsked.resolve(call.options.signal);
        return hangUntilAborted(call.options.signal);
      }
      return spawner(call);
    });
    const runtime = await startRuntime({
      store,
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: {} }],
    });
    const parentRun = await runtime.session(PARENT).send("spawn:TASK slow");
    const childSignal = await childAsked.promise;
    const [child] = await childRecords(store);
    expect(child).toBeDefined();

    await runtime.session(PARENT).delete();
    expect((await parentRun.result).status).toBe("aborted");
    // The child's model call was cancelled, and nothing of the child is left.
    expect(childSignal?.aborted).toBe(true);
    expect(runtime.registry.whereis(`session:${child!.key}`)).toBeUndefined();
    expect(await leftOf(store, child!.key)).toEqual(NOTHING);
  });

  it("deletes sub-agents of sub-agents (maxDepth 2), archiving each transcript when asked", async () => {
    const store = await newStore();
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      const last = call.request.messages.at(-1)!;
      if (first === "TASK2") return [text("deep")];
      if (last.role === "tool")
        return [text(String(toolResults(call.request.messages)[0]?.output))];
      return [toolCall("s", "spawn_subagent", { task: first === "TASK1" ? "TASK2" : "TASK1" })];
    });
    const now = Date.UTC(2026, 0, 5, 12);
    const runtime = await startRuntime({
      store,
      now: () => now,
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { maxDepth: 2 } }],
    });
    expect((await (await runtime.session(PARENT).send("go")).result).text).toBe("deep");
    const family = (await childRecords(store)).map((r) => r.key);
    expect(family).toHaveLength(2);

    await runtime.session(PARENT).delete({ archiveTranscript: true });
    for (const key of [PARENT, ...family]) {
      expect(await leftOf(store, key)).toEqual(NOTHING);
      // Each transcript was archived, as its own delete would archive it.
      expect(await store.transcripts.lastSeq(`${key}:deleted:${now}`)).toBeGreaterThan(0);
    }
    expect(await store.kv.keys("beamclaw:subagent:")).toEqual([]);
  });

  it("a reset deletes the sub-agents it had spawned and starts their count again", async () => {
    const store = await newStore();
    const source = new BrainSource(spawner);
    const runtime = await startRuntime({
      store,
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { maxChildren: 1 } }],
    });
    await (await runtime.session(PARENT).send("spawn:TASK a")).result;
    const [child] = await childRecords(store);
    expect(child).toBeDefined();

    await runtime.session(PARENT).reset();
    expect(await leftOf(store, child!.key)).toEqual(NOTHING);
    expect((await runtime.session(PARENT).info()).metadata.subagentsSpawned).toBeUndefined();
    // The count starts again: one more spawn is allowed.
    await (await runtime.session(PARENT).send("spawn:TASK b")).result;
    expect(toolResults(source.calls.at(-1)!.request.messages)[0]?.isError).toBeUndefined();
  });
});

describe("a parent's usage and its sub-agents'", () => {
  it("subagentUsage holds what its sub-agents used, apart from its own counters and counted once", async () => {
    const store = await newStore();
    const agents = [
      { id: "boss", model: "test/boss", subagents: { agentId: "worker" } },
      { id: "worker", model: "test/worker" },
    ];
    const runtime = await startRuntime({ store, models: new BrainSource(spawner), agents });
    await (await runtime.session(PARENT).send("spawn:TASK a, TASK b")).result;
    const { metadata } = await runtime.session(PARENT).info();
    // Its own two model calls.
    expect(metadata).toMatchObject({ inputTokens: 2, outputTokens: 2 });
    // Its two sub-agents' one call each.
    expect(metadata.subagentUsage).toEqual({
      inputTokens: 6,
      outputTokens: 4,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      costUsd: 0,
      runs: 2,
    });
    // The per-agent meters count each call once, under the agent that made it.
    expect(runtime.usage.totals({ agentId: "boss" })).toMatchObject({ inputTokens: 2 });
    expect(runtime.usage.totals({ agentId: "worker" })).toMatchObject({ inputTokens: 6 });
    // Summing the sessions' own counters counts each call once too.
    const records = (await store.sessions.list({ limit: 100 })).items;
    expect(records.reduce((sum, r) => sum + Number(r.inputTokens), 0)).toBe(8);
    // Saved with the record: a restart keeps it.
    expect((await store.sessions.get(PARENT))?.subagentUsage).toEqual(metadata.subagentUsage);
  });

  it("a sub-agent's own sub-agents count for every ancestor", async () => {
    const store = await newStore();
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      const last = call.request.messages.at(-1)!;
      if (first === "TASK2") return [text("deep"), usage(100, 10)];
      if (last.role === "tool") return [text("up"), usage(first === "TASK1" ? 20 : 1, 1)];
      return [
        toolCall("s", "spawn_subagent", { task: first === "TASK1" ? "TASK2" : "TASK1" }),
        usage(first === "TASK1" ? 20 : 1, 1),
      ];
    });
    const runtime = await startRuntime({
      store,
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { maxDepth: 2 } }],
    });
    await (await runtime.session(PARENT).send("go")).result;
    const parent = (await runtime.session(PARENT).info()).metadata;
    expect(parent.inputTokens).toBe(2);
    expect(parent.subagentUsage).toMatchObject({ inputTokens: 140, outputTokens: 12, runs: 2 });
    const [child] = (await childRecords(store)).filter((r) => r.parentKey === PARENT);
    expect(child).toMatchObject({ inputTokens: 40 });
    expect(child?.subagentUsage).toMatchObject({ inputTokens: 100, outputTokens: 10, runs: 1 });
  });
});

/**
 * A parent that answers its last user text with `spawn(said)`; after spawns' results, with
 * `after(said)` when that gives events, else by telling which results were errors. A child
 * answers `did <task>`.
 */
function parentBrain(
  spawn: (said: string) => SourceEvent[],
  after: (said: string) => SourceEvent[] | undefined,
): Brain {
  return (call) => {
    const first = firstUser(call.request.messages) ?? "";
    if (first.startsWith("TASK")) return [text(`did ${first}`)];
    const said = lastUser(call.request.messages) ?? "";
    if (call.request.messages.at(-1)!.role !== "tool") return spawn(said);
    const results = toolResults(call.request.messages);
    const next = results[0]?.toolName === "spawn_subagent" ? after(said) : undefined;
    return next ?? [text(`parent: ${JSON.stringify(results.map((r) => r.isError === true))}`)];
  };
}

describe("maxChildren across a crash and a restart", () => {
  it("spawns made before the parent's session crashed still count", async () => {
    const store = await newStore();
    let runtime!: AgentRuntime;
    let crashed = false;
    const source = new BrainSource(
      parentBrain(
        // Its replay answers without spawning again.
        (said) =>
          said === "go" && crashed
            ? [text("replayed")]
            : [
                toolCall("s0", "spawn_subagent", { task: "TASK a" }),
                toolCall("s1", "spawn_subagent", { task: "TASK b" }),
              ],
        // After its two spawns, the first attempt crashes its session.
        (said) => (said === "go" && !crashed ? [toolCall("c", "crash")] : undefined),
      ),
    );
    runtime = await startRuntime({
      store,
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { maxChildren: 2 }, tools: ["crash"] }],
      tools: [
        tool("crash", async (_input, ctx) => {
          crashed = true;
          runtime.registry.whereis(`session:${ctx.sessionKey}`)!.kill();
          return untilAborted(ctx.signal);
        }),
      ],
    });
    const first = await runtime.session(PARENT).send("go");
    expect((await first.result).text).toBe("replayed");
    expect(crashed).toBe(true);
    expect(await childRecords(store)).toHaveLength(2);

    // Both spawns count: the next two are refused.
    const next = await runtime.session(PARENT).send("more");
    expect((await next.result).text).toBe("parent: [true,true]");
    expect((await runtime.session(PARENT).info()).metadata.subagentsSpawned).toBe(2);
  });

  it("a run replayed after a restart fills its first attempt's places: its spawn counts once", async () => {
    const store = await newStore();
    const agents = [{ id: "boss", model: "test/boss", subagents: { maxChildren: 2 } }];
    const childStarted = deferred();
    let restarted = false;
    const brain: Brain = (call) => {
      const first = firstUser(call.request.messages) ?? "";
      if (first === "TASK a" && !restarted) {
        childStarted.resolve();
        return hangUntilAborted(call.options.signal);
      }
      return spawner(call);
    };
    const before = await startRuntime({ store, models: new BrainSource(brain), agents });
    const cut = await before.session(PARENT).send("spawn:TASK a");
    await childStarted.promise;
    // The runtime stops while the child works: the parent's run is cut, its message stays.
    await before.stop();
    await cut.result.catch(() => undefined);

    restarted = true;
    const source = new BrainSource(brain);
    const after = await startRuntime({ store, models: source, agents });
    await waitFor(
      "the parent's run to replay",
      async () => (await store.queue.pending({ sessionKey: PARENT })).length === 0,
    );
    expect(source.callsFor("TASK a")).toHaveLength(1);
    expect((await after.session(PARENT).info()).metadata.subagentsSpawned).toBe(1);
    // One place is left of the two.
    const next = await after.session(PARENT).send("spawn:TASK b, TASK c");
    expect((await next.result).text).toBe("parent done");
    const results = toolResults(source.calls.at(-1)!.request.messages);
    expect(results.map((r) => r.isError === true)).toEqual([false, true]);
    expect((await after.session(PARENT).info()).metadata.subagentsSpawned).toBe(2);
  });

  it("a run replayed after its session crashed counts its spawns once", async () => {
    const store = await newStore();
    let crashes = 0;
    const held = deferred();
    const source = new BrainSource(
      parentBrain(
        (said) => [toolCall("s0", "spawn_subagent", { task: said === "go" ? "TASK a" : "TASK b" })],
        (said) => (said === "go" ? [toolCall("c", "hold")] : undefined),
      ),
    );
    const runtime = await startRuntime({
      store,
      models: source,
      agents: [
        {
          id: "boss",
          model: "test/boss",
          subagents: { maxChildren: 2 },
          tools: ["hold"],
        },
      ],
      tools: [
        tool("hold", async (_input, ctx) => {
          if (crashes++ > 0) return "ok";
          held.resolve();
          return untilAborted(ctx.signal);
        }),
      ],
    });
    const first = await runtime.session(PARENT).send("go");
    await held.promise;
    // The record is saved mid-run (a patch), then the session crashes.
    await runtime.session(PARENT).patch({ displayName: "boss" });
    runtime.registry.whereis(`session:${PARENT}`)!.kill();
    expect((await first.result).text).toBe("parent: [false]");
    expect(crashes).toBe(2);
    expect(source.callsFor("TASK a")).toHaveLength(2);
    expect((await runtime.session(PARENT).info()).metadata.subagentsSpawned).toBe(1);
    const next = await runtime.session(PARENT).send("more");
    expect((await next.result).text).toBe("parent: [false]");
    expect((await runtime.session(PARENT).info()).metadata.subagentsSpawned).toBe(2);
  });
});
