/**
 * A session's usage over a span of time, from its transcript (`session.usage()`,
 * `summarizeTranscriptUsage`): every model call is saved with the assistant message it
 * produced (and with a compaction), so usage per session per day adds up to the session's
 * totals and the runtime's meter; messages, tool calls and call durations are counted;
 * runs discarded by a rewind keep their cost but not their messages; what is not an entry a
 * session writes is skipped; bad options are refused.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  summarizeTranscriptUsage,
} from "../src/index.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";
import { failureOf, lookupTool } from "./support.js";

const KEY = "agent:main:main";
const DAY = 86_400_000;
const DAY1 = Date.UTC(2026, 10, 20);
const DAY2 = DAY1 + DAY;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A runtime whose clock is `clock.now`, pricing a token at $0.001 (cache reads at $0.0001). */
async function meteredRuntime(script: ScriptEntry[], store = new MemoryStore()) {
  const clock = { now: DAY1 + 3_600_000 };
  const provider = createScriptedProvider(script);
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: "scripted/model-1", tools: ["lookup"] }],
    tools: [lookupTool],
    now: () => clock.now,
    cost: (_ref, usage) =>
      (usage.inputTokens + usage.outputTokens) * 0.001 + (usage.cacheReadTokens ?? 0) * 0.0001,
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { runtime, store, clock, session: runtime.session(KEY) };
}

describe("session.usage (from the transcript)", () => {
  it("sums model calls per day and model, counts messages and tools, and agrees with the session's totals", async () => {
    const { runtime, session, clock } = await meteredRuntime([
      {
        toolCalls: [{ toolName: "lookup", input: { word: "alpha" } }],
        usage: { inputTokens: 100, outputTokens: 10, cacheReadTokens: 50 },
      },
      { text: "alpha is a word", usage: { inputTokens: 120, outputTokens: 20 } },
      { text: "hello again", usage: { inputTokens: 200, outputTokens: 30, cacheWriteTokens: 7 } },
    ]);
    await (await session.send("what is alpha?")).result;
    clock.now = DAY2 + 60_000;
    await (await session.send("hello")).result;

    const all = await session.usage();
    expect(all.totals).toEqual({
      calls: 3,
      inputTokens: 420,
      outputTokens: 60,
      cacheReadTokens: 50,
      cacheWriteTokens: 7,
      costUsd: expect.closeTo(0.485, 10),
    });
    // The session's own counters (metadata) and the runtime's meter say the same.
    const info = await session.info();
    expect(info.metadata.inputTokens).toBe(all.totals.inputTokens);
    expect(info.metadata.outputTokens).toBe(all.totals.outputTokens);
    expect(info.metadata.costUsd).toBeCloseTo(all.totals.costUsd, 10);
    expect(runtime.usage.totals({ sessionKey: KEY }).inputTokens).toBe(420);

    expect(all.byDay.map((d) => [d.day, d.totals.calls, d.totals.inputTokens])).toEqual([
      ["2026-11-20", 2, 220],
      ["2026-11-21", 1, 200],
    ]);
    expect(all.byModel).toEqual([
      {
        provider: "scripted",
        model: "model-1",
        totals: expect.objectContaining({ calls: 3, inputTokens: 420 }),
      },
    ]);
    expect(all.byDayModel.map((d) => [d.day, d.model, d.totals.calls])).toEqual([
      ["2026-11-20", "model-1", 2],
      ["2026-11-21", "model-1", 1],
    ]);
    expect(all.messages).toEqual({
      total: 6, // 2 user, 3 assistant, 1 tool result
      user: 2,
      assistant: 3,
      toolCalls: 1,
      toolResults: 1,
      errors: 0,
    });
    expect(all.messagesByDay.map((d) => [d.day, d.user, d.assistant])).toEqual([
      ["2026-11-20", 1, 2],
      ["2026-11-21", 1, 1],
    ]);
    expect(all.tools).toEqual([{ name: "lookup", calls: 1 }]);
    expect(all.latency).toMatchObject({ count: 3 });
    expect(all.latency!.minMs).toBeGreaterThanOrEqual(0);
    expect(all.latency!.maxMs).toBeGreaterThanOrEqual(all.latency!.p95Ms);
    expect(all.latencyByDay.map((d) => [d.day, d.count])).toEqual([
      ["2026-11-20", 2],
      ["2026-11-21", 1],
    ]);
    expect(all.firstActivity).toBe(DAY1 + 3_600_000);
    expect(all.lastActivity).toBe(DAY2 + 60_000);
    expect(all).toMatchObject({ unmetered: 0, truncated: false });

    // One day only: the second day's call and messages.
    const second = await session.usage({ from: DAY2, to: DAY2 + DAY });
    expect(second.totals).toMatchObject({ calls: 1, inputTokens: 200, cacheWriteTokens: 7 });
    expect(second.messages).toMatchObject({ user: 1, assistant: 1, toolCalls: 0 });
    expect(second.tools).toEqual([]);
    expect(second.firstActivity).toBe(DAY2 + 60_000);
    // The scan stopped at the first entry before the span: it did not read the whole transcript.
    expect(second.entriesRead).toBeLessThan(all.entriesRead);

    // A span with nothing in it.
    const none = await session.usage({ from: DAY2 + DAY, to: DAY2 + 2 * DAY });
    expect(none.totals.calls).toBe(0);
    expect(none.messages.total).toBe(0);
    expect(none.latency).toBeUndefined();
    expect(none.firstActivity).toBeUndefined();
  });

  it("keeps the cost of a rewound run but not its messages; leaves a fork's copy out; counts tool errors and compactions", async () => {
    const { session, store } = await meteredRuntime([
      { text: "first answer", usage: { inputTokens: 10, outputTokens: 1 } },
      {
        toolCalls: [{ toolName: "nope", input: {} }],
        usage: { inputTokens: 20, outputTokens: 2 },
      },
      { text: "no such tool", usage: { inputTokens: 30, outputTokens: 3 } },
      { text: "a summary of it all", usage: { inputTokens: 40, outputTokens: 4 } },
    ]);
    await (await session.send("one")).result;
    const undone = await (await session.send("two")).result;
    expect(undone.status).toBe("completed");
    const before = await session.usage();
    expect(before.messages).toMatchObject({ user: 2, assistant: 3, toolResults: 1, errors: 1 });
    expect(before.tools).toEqual([{ name: "nope", calls: 1 }]);

    // A fork's copied history is its parent's: not the fork's usage nor its messages.
    const fork = await session.fork({ runId: undone.runId, key: "agent:main:branch" });
    expect(fork.copiedMessages).toBe(2);
    const copied = await summarizeTranscriptUsage(store.transcripts, "agent:main:branch");
    expect(copied).toMatchObject({ entriesRead: 2, unmetered: 0, firstActivity: undefined });
    expect(copied.totals.calls).toBe(0);
    expect(copied.messages.total).toBe(0);

    await session.rewind();
    const after = await session.usage();
    // The rewound run's calls were paid for.
    expect(after.totals).toMatchObject({ calls: 3, inputTokens: 60 });
    expect(after.messages).toEqual({
      total: 2,
      user: 1,
      assistant: 1,
      toolCalls: 0,
      toolResults: 0,
      errors: 0,
    });
    expect(after.tools).toEqual([]);

    // A compaction's call is saved with its transcript entry.
    const compacted = await session.compact({ keepTurns: 0 });
    expect(compacted.status).toBe("compacted");
    const withCompaction = await session.usage();
    expect(withCompaction.totals).toMatchObject({ calls: 4, inputTokens: 100, outputTokens: 10 });
    expect(withCompaction.messages.total).toBe(2);
  });

  it("skips entries a session does not write and counts assistant messages without usage", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    await store.transcripts.append(KEY, [
      { runId: "r1", at: DAY1, message: { role: "user", content: [{ type: "text", text: "hi" }] } },
      // An older entry: an answer saved without its call's usage.
      { runId: "r1", at: DAY1 + 1, message: { role: "assistant", content: "not an array" } },
      { runId: "r2", at: "yesterday", message: { role: "user", content: [] } },
      { runId: "r2", at: DAY1 + 2, usage: { provider: 7, model: "x", inputTokens: 5 } },
      {
        runId: "r2",
        at: DAY1 + 3,
        usage: {
          provider: "p",
          model: "m",
          inputTokens: -4,
          outputTokens: "many",
          costUsd: Number.MAX_VALUE,
          durationMs: -1,
        },
        message: { role: "assistant", content: [null, 3, { type: "tool-call" }] },
      },
      { runId: "r3", at: DAY1 + 4, message: { role: "system", content: [] } },
      { runId: "r3", at: DAY1 + 5, message: "text" },
      { runId: "r3", at: DAY1 + 6, message: { role: "tool", content: [{ type: "text" }] } },
    ]);
    const summary = await summarizeTranscriptUsage(store.transcripts, KEY);
    expect(summary.totals).toEqual({
      calls: 1,
      inputTokens: 0,
      outputTokens: 0,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      costUsd: Number.MAX_VALUE,
    });
    expect(summary.messages).toEqual({
      total: 3,
      user: 1,
      assistant: 2,
      toolCalls: 1,
      toolResults: 0,
      errors: 0,
    });
    expect(summary.tools).toEqual([{ name: "unknown", calls: 1 }]);
    expect(summary.unmetered).toBe(1);
    expect(summary.latency).toBeUndefined();
    expect(summary.entriesRead).toBe(8);
  });

  it("reads at most maxEntries, newest first, and says so; refuses bad options", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const entries = Array.from({ length: 2500 }, (_, i) => ({
      runId: `r${i}`,
      at: DAY1 + i,
      usage: { provider: "p", model: "m", inputTokens: 1, outputTokens: 0, costUsd: 0 },
      message: { role: "assistant", content: [{ type: "text", text: "x" }] },
    }));
    await store.transcripts.append(KEY, entries.slice(0, 1000));
    await store.transcripts.append(KEY, entries.slice(1000, 2000));
    await store.transcripts.append(KEY, entries.slice(2000));

    const whole = await summarizeTranscriptUsage(store.transcripts, KEY);
    expect(whole).toMatchObject({ entriesRead: 2500, truncated: false });
    expect(whole.totals.calls).toBe(2500);

    const cut = await summarizeTranscriptUsage(store.transcripts, KEY, { maxEntries: 1200 });
    expect(cut).toMatchObject({ entriesRead: 1200, truncated: true });
    expect(cut.totals.calls).toBe(1200);
    expect(cut.firstActivity).toBe(DAY1 + 1300);
    expect(cut.lastActivity).toBe(DAY1 + 2499);

    // A span that ends before the limit is reached is not truncated.
    const recent = await summarizeTranscriptUsage(store.transcripts, KEY, {
      from: DAY1 + 2400,
      maxEntries: 1200,
    });
    expect(recent).toMatchObject({ truncated: false });
    expect(recent.totals.calls).toBe(100);

    // No transcript at all.
    const empty = await summarizeTranscriptUsage(store.transcripts, "agent:main:other");
    expect(empty).toMatchObject({ entriesRead: 0, truncated: false, firstActivity: undefined });

    for (const options of [{ from: 10, to: 5 }, { maxEntries: 0 }, { maxEntries: 1.5 }]) {
      const error = await failureOf(() =>
        summarizeTranscriptUsage(store.transcripts, KEY, options),
      );
      expect(error).toBeInstanceOf(InvalidArgumentError);
    }
  });
});
