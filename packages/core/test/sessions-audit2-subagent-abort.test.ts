/**
 * A sub-agent whose session crashed and is being restarted when its parent's run is aborted:
 * it is aborted too (never run again), the parent's run ends at once rather than when the
 * child would have finished, and the parent's running count is freed.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AgentRuntime, createProviderChain, MemoryStore, type Process } from "../src/index.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";
import { deferred, lastUserText, waitFor } from "./support.js";

const PARENT = "agent:boss:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a sub-agent restarting after a crash when its parent's run is aborted", () => {
  it("is aborted with it: it never runs again, and the parent's run ends without waiting for it", async () => {
    const childGate = deferred<void>();
    const asked: string[] = [];
    const answer: ScriptEntry = (request) => {
      const last = lastUserText(request.messages);
      asked.push(last);
      if (last === "TASK") {
        return {
          events: [
            { type: "wait", until: childGate.promise },
            { type: "text-delta", text: "child done" },
            { type: "finish", reason: "stop" },
          ],
        };
      }
      if (request.messages.at(-1)?.role === "tool") return "parent done";
      return { toolCalls: [{ toolName: "spawn_subagent", input: { task: "TASK" } }] };
    };
    const provider = createScriptedProvider(Array<ScriptEntry>(20).fill(answer));
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
      agents: [
        { id: "boss", model: "scripted/model-1", subagents: { maxConcurrent: 1, maxChildren: 5 } },
      ],
    });
    cleanups.push(() => runtime.stop());
    await runtime.start();

    const parent = await runtime.session(PARENT).send("go");
    await waitFor("the child's model call", () => asked.includes("TASK"));
    const childKey = runtime.activeSessions().find((key) => key.includes(":subagent:"))!;
    const child = runtime.registry.whereis<Process>(`session:${childKey}`)!;
    child.kill();
    // At once, while the child's session is restarted and has not replayed its task yet.
    expect(await parent.abort()).toBe(true);

    // The child's model call is still held: the parent's run ends without it.
    expect((await parent.result).status).toBe("aborted");
    childGate.resolve();
    // The child's task was asked once, before the crash: its replay was aborted unstarted.
    await waitFor("the child's message to leave the queue", async () =>
      (await store.queue.pending({ sessionKey: childKey })).length === 0 ? true : undefined,
    );
    expect(asked.filter((t) => t === "TASK")).toHaveLength(1);
    // Its slot is free: the parent can spawn again (maxConcurrent 1).
    const again = await runtime.session(PARENT).send("go again");
    childGate.resolve();
    expect((await again.result).status).toBe("completed");
    expect(asked.filter((t) => t === "TASK")).toHaveLength(2);
  });
});
