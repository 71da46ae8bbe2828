/**
 * Deleting a session deletes its remembered tool approvals: a session made again under the
 * same key must be asked again before its tools run (it inherited the deleted one's
 * `allow-always` decisions), and a runtime whose sessions come and go (per-user chats, forks,
 * sub-agents) must not keep their approvals in the store for ever.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AgentRuntime,
  APPROVALS_SCOPE,
  type ApprovalDecision,
  defineTool,
  type ModelSource,
  type RunHandle,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** Calls `add` on a user message, answers the sum after its result. */
const adder: ModelSource = {
  async *stream(request) {
    if (request.messages.at(-1)?.role === "user") {
      yield { type: "tool-call", toolCallId: "c1", toolName: "add", input: { a: 1, b: 2 } };
      yield { type: "finish", reason: "tool-calls" };
    } else {
      yield { type: "text-delta", text: "3" };
      yield { type: "finish", reason: "stop" };
    }
  },
};

async function start() {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: adder,
    agents: [{ id: "main", model: "p/m", tools: ["add"] }],
    tools: [
      defineTool({
        name: "add",
        description: "adds",
        parameters: z.object({ a: z.number(), b: z.number() }),
        execute: ({ a, b }) => a + b,
      }),
    ],
    approvals: { mode: "on-miss" },
  });
  await runtime.start();
  cleanups.push(async () => {
    await runtime.stop();
    await store.close();
  });
  return { runtime, store };
}

/** Runs `run` to its end, answering each approval request with `decision`; the requests seen. */
async function finish(runtime: AgentRuntime, run: RunHandle, decision: ApprovalDecision) {
  let asked = 0;
  for await (const event of run) {
    if (event.type === "tool-approval-request") {
      asked++;
      runtime.approvals!.answer(event.requestId, decision, { scopes: [APPROVALS_SCOPE] });
    }
  }
  expect((await run.result).text).toBe("3");
  return asked;
}

const KEY = "agent:main:direct:ada";

describe("session delete and remembered approvals", () => {
  it("forgets the deleted session's allow-always: the same key made again is asked again", async () => {
    const { runtime, store } = await start();
    const session = runtime.session(KEY);
    expect(await finish(runtime, await session.send("1+2?"), "allow-always")).toBe(1);
    // Remembered: the next run is not asked.
    expect(await finish(runtime, await session.send("again"), "deny")).toBe(0);
    expect(await store.approvals.list(KEY)).toHaveLength(1);

    expect(await session.delete()).toEqual({ existed: true });
    expect(await store.approvals.list(KEY)).toEqual([]);
    expect(await finish(runtime, await runtime.session(KEY).send("1+2?"), "allow-once")).toBe(1);
  });

  it("forgets them when the transcript is archived too, and leaves other sessions' alone", async () => {
    const { runtime, store } = await start();
    const other = "agent:main:direct:bob";
    await finish(runtime, await runtime.session(KEY).send("1+2?"), "allow-always");
    await finish(runtime, await runtime.session(other).send("1+2?"), "allow-always");

    const result = await runtime.session(KEY).delete({ archiveTranscript: true });
    expect(result.archivedAs).toMatch(/^agent:main:direct:ada:deleted:\d+$/);
    expect(await store.approvals.list(KEY)).toEqual([]);
    expect(await store.approvals.list(other)).toHaveLength(1);
    expect(await finish(runtime, await runtime.session(other).send("again"), "deny")).toBe(0);
  });
});
