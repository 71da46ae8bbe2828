/**
 * A run that ends while its tools run (aborted here) leaves tool calls without results, and
 * every model API refuses a conversation holding an unanswered call: every later turn of the
 * session would fail. The loop answers them (those that returned as they did, the others as
 * errors), and a history saved without such results (before this was done) keeps its later
 * turns when it is read back, instead of being cut at the unanswered call.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  defineTool,
  type JsonObject,
  MemoryStore,
  type ModelMessage,
  type RunEvent,
  type ToolResultPart,
} from "../src/index.js";
import type { ScriptEntry } from "../src/testing/index.js";
import { abortOf, deferred, lookupTool, scriptedRuntime, transcriptOf } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const INTERRUPTED = /^No result: the run ended before this tool call returned/;

/** The tool results of a request's messages, by call id. */
function resultsOf(messages: readonly ModelMessage[]): Map<string, ToolResultPart> {
  const out = new Map<string, ToolResultPart>();
  for (const message of messages) {
    if (message.role === "tool") for (const part of message.content) out.set(part.toolCallId, part);
  }
  return out;
}

describe("a run aborted while its tools run", () => {
  it("answers its calls, so the next turn and a restarted session send a well-formed history", async () => {
    const started = deferred();
    const slow = defineTool({
      name: "slow",
      description: "Takes its time",
      parameters: z.object({}),
      execute: async (_input, context) => {
        started.resolve();
        throw await abortOf(context.signal);
      },
    });
    const answer: ScriptEntry = (request) => {
      const last = request.messages.at(-1);
      if (last?.role === "user" && transcriptOf([last])[0] === "user:go") {
        return {
          toolCalls: [
            { toolName: "lookup", input: { word: "fast" } },
            { toolName: "slow", input: {} },
          ],
        };
      }
      return "answered";
    };
    const store = new MemoryStore();
    const { session, provider, start } = await scriptedRuntime(Array(4).fill(answer), cleanups, {
      store,
      options: {
        agents: [{ id: "main", model: "scripted/model-1", tools: ["lookup", "slow"] }],
        tools: [lookupTool, slow],
      },
    });
    const run = await session.send("go");
    const events: RunEvent[] = [];
    const reading = (async () => {
      for await (const event of run) events.push(event);
    })();
    await started.promise;
    await run.abort();
    expect((await run.result).status).toBe("aborted");
    await reading;

    // Both calls are answered in the history: the one that returned as it did.
    const history = (await session.history()).map(
      (r) => r.entry.message as unknown as ModelMessage,
    );
    const calls = history.flatMap((m) =>
      m.role === "assistant" ? m.content.filter((p) => p.type === "tool-call") : [],
    );
    expect(calls.map((c) => c.toolName)).toEqual(["lookup", "slow"]);
    const saved = resultsOf(history);
    expect(saved.get(calls[0]!.toolCallId)).toMatchObject({ output: "fast: a word" });
    expect(saved.get(calls[1]!.toolCallId)).toMatchObject({ isError: true });
    expect(String(saved.get(calls[1]!.toolCallId)?.output)).toMatch(INTERRUPTED);
    // Whoever follows the run sees the interrupted call end.
    expect(events).toContainEqual(
      expect.objectContaining({ type: "tool-result", toolName: "slow", isError: true }),
    );

    // The next turn's request answers every call.
    expect((await (await session.send("again")).result).status).toBe("completed");
    const next = provider.requests.at(-1)!.messages;
    expect([...resultsOf(next).keys()].sort()).toEqual(calls.map((c) => c.toolCallId).sort());
    expect(transcriptOf(next)).toEqual([
      "user:go",
      "assistant:call lookupcall slow",
      "tool:resultresult",
      "user:again",
    ]);

    // After a restart the session reads back every turn, the one after the abort included.
    const restarted = await start();
    expect((await (await restarted.session(session.key).send("third")).result).status).toBe(
      "completed",
    );
    expect(transcriptOf(provider.requests.at(-1)!.messages)).toEqual([
      "user:go",
      "assistant:call lookupcall slow",
      "tool:resultresult",
      "user:again",
      "assistant:answered",
      "user:third",
    ]);
  });
});

describe("a history saved with an unanswered call in an earlier turn", () => {
  it("keeps the turns after it when read back, the call answered as interrupted", async () => {
    const store = new MemoryStore();
    await store.open();
    const key = "agent:main:main";
    const message = (runId: string, at: number, m: ModelMessage) =>
      ({ runId, at, message: m }) as unknown as JsonObject;
    await store.transcripts.append(key, [
      message("r1", 1, { role: "user", content: [{ type: "text", text: "first" }] }),
      message("r1", 2, {
        role: "assistant",
        content: [{ type: "tool-call", toolCallId: "c1", toolName: "lookup", input: {} }],
      }),
      message("r2", 3, { role: "user", content: [{ type: "text", text: "second" }] }),
      message("r2", 4, { role: "assistant", content: [{ type: "text", text: "two" }] }),
    ]);
    const { session, provider } = await scriptedRuntime(["three"], cleanups, { store, key });
    expect((await (await session.send("third")).result).status).toBe("completed");
    const sent = provider.requests.at(-1)!.messages;
    expect(transcriptOf(sent)).toEqual([
      "user:first",
      "assistant:call lookup",
      "tool:result",
      "user:second",
      "assistant:two",
      "user:third",
    ]);
    expect(resultsOf(sent).get("c1")).toMatchObject({ isError: true, toolName: "lookup" });
  });

  it("still drops a last turn cut short by a crash (its replay redoes it)", async () => {
    const store = new MemoryStore();
    await store.open();
    const key = "agent:main:main";
    await store.transcripts.append(key, [
      { runId: "r1", at: 1, message: { role: "user", content: [{ type: "text", text: "one" }] } },
      {
        runId: "r1",
        at: 2,
        message: { role: "assistant", content: [{ type: "text", text: "1" }] },
      },
      { runId: "r2", at: 3, message: { role: "user", content: [{ type: "text", text: "two" }] } },
      {
        runId: "r2",
        at: 4,
        message: {
          role: "assistant",
          content: [{ type: "tool-call", toolCallId: "c2", toolName: "lookup", input: {} }],
        },
      },
    ]);
    const { session, provider } = await scriptedRuntime(["ok"], cleanups, { store, key });
    expect((await (await session.send("next")).result).status).toBe("completed");
    expect(transcriptOf(provider.requests.at(-1)!.messages)).toEqual([
      "user:one",
      "assistant:1",
      "user:two",
      "user:next",
    ]);
  });
});
