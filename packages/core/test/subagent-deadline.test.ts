/**
 * A sub-agent's time limit (`subagents.timeoutMs`) is an absolute deadline, set when it is
 * spawned and kept with its message in the durable queue: a child session revived after a
 * crash runs only until the original deadline, and one revived past it ends at once as timed
 * out (`RUN_TIMEOUT`), reported to its parent as a normal timeout is. Without that, a child
 * that keeps crashing would get a fresh limit each time and could run for ever. (A child left
 * unfinished by a runtime stop is not run again at all: nobody waits for its answer.)
 *
 * The deadline is on the runtime's clock (`AgentRuntimeOptions.now`), which these tests move
 * forward to stand for the time a crashed child took.
 */
import { describe, expect, it } from "vitest";
import type { AgentRuntime } from "../src/sessions/index.js";
import {
  type Brain,
  BrainSource,
  firstUser,
  hangUntilAborted,
  text,
  tool,
  toolCall,
  toolResults,
  useRuntimes,
} from "./fixtures/subagents.js";
import { deferred, waitFor } from "./support.js";

const { newStore, startRuntime } = useRuntimes();

/** A clock for the runtime that the test moves forward. */
function testClock(start = Date.UTC(2026, 0, 5, 12)) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

const LIMIT_MS = 60_000;
const PARENT = "agent:boss:main";

describe("a sub-agent's deadline across a crash", () => {
  it("a child revived after a crash past its original deadline ends at once as timed out, and the parent is told", async () => {
    const clock = testClock();
    const store = await newStore();
    let runtime!: AgentRuntime;
    let crashes = 0;
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      const last = call.request.messages.at(-1)!;
      if (first === "TASK: fragile") {
        return last.role === "tool" ? [text("child recovered")] : [toolCall("k", "crash")];
      }
      if (last.role === "tool") {
        return [text(`parent got: ${JSON.stringify(toolResults(call.request.messages))}`)];
      }
      return [toolCall("s0", "spawn_subagent", { task: "TASK: fragile" })];
    });
    runtime = await startRuntime({
      store,
      now: clock.now,
      models: source,
      agents: [
        { id: "boss", model: "test/boss", subagents: { timeoutMs: LIMIT_MS }, tools: ["crash"] },
      ],
      tools: [
        tool("crash", async (_input, ctx) => {
          if (crashes++ === 0) {
            // The child worked past its whole time limit, then its session crashed.
            clock.advance(LIMIT_MS + 1_000);
            runtime.registry.whereis(`session:${ctx.sessionKey}`)!.kill();
            await new Promise<void>((_resolve, reject) => {
              ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), {
                once: true,
              });
            });
          }
          return "ok";
        }),
      ],
    });
    const result = await (await runtime.session(PARENT).send("go")).result;
    expect(result.status).toBe("completed");
    const [reported] = toolResults(source.calls.at(-1)!.request.messages);
    expect(reported).toMatchObject({ toolName: "spawn_subagent", isError: true });
    expect(String(reported?.output)).toContain("ended with status aborted");
    expect(String(reported?.output)).toContain(`went past its time limit of ${LIMIT_MS} ms`);
    // The replayed child never asked its model again: it was over before it started.
    expect(crashes).toBe(1);
    expect(source.callsFor("TASK: fragile")).toHaveLength(1);
  });

  it("a child revived before its deadline runs only for the time left, not a fresh limit", async () => {
    const clock = testClock();
    const store = await newStore();
    let runtime!: AgentRuntime;
    let crashes = 0;
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      const last = call.request.messages.at(-1)!;
      if (first === "TASK: slow") {
        // The replayed child hangs: only its deadline ends it.
        return crashes > 0 ? hangUntilAborted(call.options.signal) : [toolCall("k", "crash")];
      }
      if (last.role === "tool") return [text("parent done")];
      return [toolCall("s0", "spawn_subagent", { task: "TASK: slow" })];
    });
    runtime = await startRuntime({
      store,
      now: clock.now,
      models: source,
      agents: [
        { id: "boss", model: "test/boss", subagents: { timeoutMs: LIMIT_MS }, tools: ["crash"] },
      ],
      tools: [
        tool("crash", async (_input, ctx) => {
          crashes++;
          // 100 ms of the 60 s are left when the child crashes. With a fresh limit, its replay
          // would hang for 60 s, three times the test's timeout.
          clock.advance(LIMIT_MS - 100);
          runtime.registry.whereis(`session:${ctx.sessionKey}`)!.kill();
          await new Promise<void>((_resolve, reject) => {
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
          });
          return "unreachable";
        }),
      ],
    });
    const result = await (await runtime.session(PARENT).send("go")).result;
    expect(result.text).toBe("parent done");
    const [reported] = toolResults(source.calls.at(-1)!.request.messages);
    expect(reported?.isError).toBe(true);
    expect(String(reported?.output)).toContain(`went past its time limit of ${LIMIT_MS} ms`);
    // The replay did run (and hung) until the deadline cancelled it.
    expect(crashes).toBe(1);
    expect(source.callsFor("TASK: slow")).toHaveLength(2);
    expect(source.callsFor("TASK: slow")[1]!.options.signal?.aborted).toBe(true);
  });

  it("a child left unfinished by a runtime stop is ended unrun by the next runtime, its deadline passed", async () => {
    const clock = testClock();
    const store = await newStore();
    const agents = [{ id: "boss", model: "test/boss", subagents: { timeoutMs: LIMIT_MS } }];
    let spawned = 0;
    const childStarted = deferred();
    const brain: Brain = (call) => {
      const first = firstUser(call.request.messages) ?? "";
      const last = call.request.messages.at(-1)!;
      if (first === "TASK 1") {
        childStarted.resolve();
        return hangUntilAborted(call.options.signal);
      }
      if (first.startsWith("TASK")) return [text(`did ${first}`)];
      if (last.role === "tool") return [text("parent done")];
      spawned++;
      return [toolCall(`s${spawned}`, "spawn_subagent", { task: `TASK ${spawned}` })];
    };
    const before = new BrainSource(brain);
    const first = await startRuntime({ store, now: clock.now, models: before, agents });
    const parentRun = await first.session(PARENT).send("go");
    await childStarted.promise;
    const child = (await store.sessions.list({ limit: 100 })).items.find(
      (r) => r.parentKey === PARENT,
    )!;
    expect(child).toBeDefined();
    // The runtime stops while the child works; its message stays queued.
    await first.stop();
    await parentRun.result.catch(() => undefined);
    expect(await store.queue.pending({ sessionKey: child.key })).toHaveLength(1);

    // The next runtime starts after the child's deadline.
    clock.advance(LIMIT_MS + 1_000);
    const after = new BrainSource(brain);
    await startRuntime({ store, now: clock.now, models: after, agents });
    await waitFor(
      "the old child's message to leave the queue",
      async () => (await store.queue.pending({ sessionKey: child.key })).length === 0,
    );
    // It ended without asking its model again.
    expect(after.callsFor("TASK 1")).toEqual([]);
  });
});
