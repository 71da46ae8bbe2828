/**
 * Sub-agents as a demanding user sees them: a child's huge answer is capped like any tool
 * result before it reaches its parent; a child left unfinished by a restart is not run again
 * for nobody (its parent's run replays from its start and spawns afresh).
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  type ModelMessage,
  type ModelRequest,
  type ToolResultPart,
} from "../src/index.js";
import {
  createScriptedProvider,
  type ScriptEntry,
  type ScriptedResponse,
} from "../src/testing/index.js";
import { deferred, lastUserText, scriptedRuntime, waitFor } from "./support.js";

const PARENT = "agent:boss:main";
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Tool results of the last tool message of a request. */
function toolResults(messages: readonly ModelMessage[]): ToolResultPart[] {
  const last = [...messages].reverse().find((m) => m.role === "tool");
  return last?.role === "tool" ? last.content : [];
}

/**
 * A started runtime (on a scripted provider, see `scriptedRuntime`) whose `boss` agent may
 * spawn; a session whose first user text starts with "TASK" is a child and answers with
 * `child(task)`; the parent spawns the tasks `spawns()` names and then ends.
 */
function family(
  spawns: () => string[],
  child: (task: string) => string | ScriptedResponse,
  options: Partial<AgentRuntimeOptions> = {},
) {
  const answer: ScriptEntry = (request: ModelRequest) => {
    const first = request.messages.find((m) => m.role === "user");
    const firstText = first === undefined ? "" : lastUserText([first]);
    if (firstText.startsWith("TASK")) return child(firstText);
    if (request.messages.at(-1)?.role === "tool") return "parent done";
    return { toolCalls: spawns().map((task) => ({ toolName: "spawn_subagent", input: { task } })) };
  };
  return scriptedRuntime(Array<ScriptEntry>(50).fill(answer), cleanups, {
    key: PARENT,
    options: { agents: [{ id: "boss", model: "scripted/model-1", subagents: {} }], ...options },
  });
}

describe("a sub-agent's result size", () => {
  it("a huge answer is capped at the tool result cap (64 KiB by default) with a marker", async () => {
    const { runtime, provider } = await family(
      () => ["TASK huge"],
      () => "x".repeat(200_000),
    );
    const result = await (await runtime.session(PARENT).send("go")).result;
    expect(result.status).toBe("completed");
    const [reported] = toolResults(provider.requests.at(-1)!.messages);
    const output = String(reported?.output);
    expect(Buffer.byteLength(output, "utf8")).toBeLessThanOrEqual(64 * 1024);
    expect(output).toContain("[tool output truncated:");
    expect(output).toContain("of 200000 bytes dropped]");
  });

  it("the cap follows toolMaxOutputBytes, also after a reconfigure", async () => {
    const { runtime, provider } = await family(
      () => ["TASK big"],
      () => "y".repeat(10_000),
      {
        toolMaxOutputBytes: 4_096,
      },
    );
    await (await runtime.session(PARENT).send("go")).result;
    const first = String(toolResults(provider.requests.at(-1)!.messages)[0]?.output);
    expect(Buffer.byteLength(first, "utf8")).toBeLessThanOrEqual(4_096);
    expect(first).toContain("of 10000 bytes dropped]");

    runtime.reconfigure({ toolMaxOutputBytes: Number.POSITIVE_INFINITY });
    await (await runtime.session(PARENT).send("again")).result;
    const second = String(toolResults(provider.requests.at(-1)!.messages)[0]?.output);
    expect(second).toBe("y".repeat(10_000));
  });
});

describe("a sub-agent running when its runtime stops", () => {
  it("is not run again by the next runtime: the parent's replay spawns afresh, and the old child ends unrun", async () => {
    const asked: string[] = [];
    const gate = deferred<void>();
    let spawned = 0;
    const {
      runtime: before,
      store,
      start,
    } = await family(
      () => [`TASK ${++spawned}`],
      (task) => {
        asked.push(task);
        return {
          events: [
            { type: "wait", until: gate.promise },
            { type: "text-delta", text: `did ${task}` },
            { type: "finish", reason: "stop" },
          ],
        };
      },
    );
    const first = await before.session(PARENT).send("go");
    await waitFor("the first child's model call", () => asked.length === 1);
    const [oldChild] = (await store.sessions.list({ limit: 100 })).items.filter(
      (r) => r.parentKey === PARENT,
    );
    await before.stop();
    await first.result.catch(() => undefined);

    const after = await start();
    await waitFor("the parent's replay to spawn again", () => asked.includes("TASK 2"));
    gate.resolve();
    await waitFor("every message to leave the queue", async () =>
      (await store.queue.pending({})).length === 0 ? true : undefined,
    );
    // The old child's task was asked once, before the stop: nobody waits for its answer now.
    expect(asked.filter((t) => t === "TASK 1")).toHaveLength(1);
    expect(asked.filter((t) => t === "TASK 2")).toHaveLength(1);
    // Its session is kept (its transcript can be read), with no answer in it.
    const oldHistory = await after.session(oldChild!.key).history();
    expect(
      oldHistory.some((r) => (r.entry.message as ModelMessage | undefined)?.role === "assistant"),
    ).toBe(false);
    const history = await after.session(PARENT).history();
    expect(history.at(-1)?.entry.message).toMatchObject({
      role: "assistant",
      content: [{ type: "text", text: "parent done" }],
    });
  });
});

describe("sub-agent limits given to the runtime", () => {
  const base = { store: new MemoryStore(), models: createScriptedProvider([]) };
  const withLimits =
    (subagents: unknown, others: object[] = []) =>
    () =>
      new AgentRuntime({
        store: base.store,
        models: createProviderChain({ providers: [base.models], models: [] }),
        agents: [
          { id: "boss", model: "scripted/model-1", subagents } as never,
          ...(others as never[]),
        ],
      });

  it.each([
    [{ maxDepth: 0 }, "subagents.maxDepth"],
    [{ maxDepth: 1.5 }, "subagents.maxDepth"],
    [{ maxChildren: -1 }, "subagents.maxChildren"],
    [{ maxConcurrent: 0 }, "subagents.maxConcurrent"],
    [{ maxConcurrent: "2" }, "subagents.maxConcurrent"],
    [{ timeoutMs: -5 }, "subagents.timeoutMs"],
    [{ timeoutMs: Number.NaN }, "subagents.timeoutMs"],
    [{ agentId: 7 }, "subagents.agentId"],
    [{ agentId: "nobody" }, 'subagents.agentId names no agent: "nobody"'],
    [{ maxChildern: 2 }, 'unknown option "maxChildern"'],
    ["yes", "subagents must be an object"],
  ])("%j is refused at construction with InvalidArgumentError naming %s", (limits, named) => {
    expect(withLimits(limits)).toThrow(InvalidArgumentError);
    expect(withLimits(limits)).toThrow(named);
  });

  it("accepts limits in range, and an agentId naming another agent of the runtime", () => {
    expect(
      withLimits(
        { maxDepth: 2, maxChildren: 3, maxConcurrent: 1, timeoutMs: 1_000, agentId: "w" },
        [{ id: "w", model: "scripted/model-1" }],
      ),
    ).not.toThrow();
    expect(withLimits({})).not.toThrow();
  });

  it("a reconfigure that drops the agent the limits name is refused, and changes nothing", async () => {
    const { runtime } = await family(
      () => ["TASK a"],
      (task) => `did ${task}`,
    );
    expect(() =>
      runtime.reconfigure({
        agents: [{ id: "boss", model: "scripted/model-1", subagents: { agentId: "gone" } }],
      }),
    ).toThrow(InvalidArgumentError);
    const result = await (await runtime.session(PARENT).send("go")).result;
    expect(result.text).toBe("parent done");
  });
});
