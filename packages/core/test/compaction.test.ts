/**
 * Compaction: `session.compact()` has the model summarize all but the most recent turns, and
 * the summary stands for them in every later request; the transcript keeps every message and
 * a compaction entry, from which a revived or restarted session rebuilds the same history.
 * Runs and compactions never overlap: a compaction waits for the active run, and messages
 * sent during a compaction wait for it.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AbortedError,
  InvalidArgumentError,
  ProviderError,
  RunTimeoutError,
} from "../src/errors.js";
import { subscribeTelemetry, type TelemetryEvents } from "../src/index.js";
import type { ModelCallOptions, ModelMessage, ModelRequest } from "../src/providers/types.js";
import { AgentRuntime, type AgentRuntimeOptions, type ModelSource } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { abortOf, type Deferred, deferred, waitFor } from "./support.js";

const KEY = "agent:main:main";

type Request = Omit<ModelRequest, "model">;

const textOf = (message: ModelMessage | undefined): string =>
  message?.content.map((p) => ("text" in p && typeof p.text === "string" ? p.text : "")).join("") ??
  "";

const isSummaryCall = (request: Request) =>
  request.system?.startsWith("You summarize a conversation") === true;

/**
 * Answers a run with `answer: <text>`; a text starting with `tool` first calls `look`. A
 * summarizing call is answered `SUMMARY <n>` (the n-th), unless the test holds it (`hold`),
 * makes it fail (`fail`) or hang until aborted (`hang`).
 */
class Model implements ModelSource {
  readonly requests: Request[] = [];
  readonly summaryCalls: Request[] = [];
  /** Runs' model calls under way now, and the most at once. */
  running = 0;
  mostRunning = 0;
  /** Holds runs' model calls (not summaries) while set. */
  holdRuns: Deferred<void> | undefined;
  hold: Deferred<void> | undefined;
  fail: Error | undefined;
  hang = false;

  async *stream(
    request: Request,
    options: ModelCallOptions & { models: string[] },
  ): AsyncGenerator<{ type: string; [key: string]: unknown }, void, undefined> {
    if (isSummaryCall(request)) {
      this.summaryCalls.push(request);
      if (this.hold !== undefined) await this.hold.promise;
      if (this.fail !== undefined) throw this.fail;
      if (this.hang) throw await abortOf(options.signal);
      yield { type: "text-delta", text: `SUMMARY ${this.summaryCalls.length}` };
      yield { type: "usage", usage: { inputTokens: 100, outputTokens: 10 } };
      return;
    }
    this.requests.push({ ...request, messages: [...request.messages] });
    this.running++;
    this.mostRunning = Math.max(this.mostRunning, this.running);
    try {
      if (this.holdRuns !== undefined) await this.holdRuns.promise;
      yield* this.#answer(request);
    } finally {
      this.running--;
    }
  }

  async *#answer(
    request: Request,
  ): AsyncGenerator<{ type: string; [key: string]: unknown }, void, undefined> {
    const last = request.messages.at(-1);
    const asked = textOf([...request.messages].reverse().find((m) => m.role === "user"));
    if (asked.startsWith("tool") && last?.role !== "tool") {
      yield {
        type: "tool-call",
        toolCallId: `t${this.requests.length}`,
        toolName: "look",
        input: { q: asked },
      };
      return;
    }
    yield { type: "text-delta", text: `answer: ${asked}` };
    yield { type: "usage", usage: { inputTokens: 10, outputTokens: 2 } };
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(options: Partial<AgentRuntimeOptions> = {}, store?: MemoryStore) {
  const model = new Model();
  const own = store ?? new MemoryStore();
  if (store === undefined) {
    await own.open();
    cleanups.push(() => own.close());
  }
  const runtime = new AgentRuntime({
    store: own,
    models: model,
    agents: [{ id: "main", model: "test/model-1", tools: ["*"] }],
    tools: [
      {
        name: "look",
        description: "looks something up",
        inputSchema: { type: "object" },
        execute: (input: unknown) => `found ${JSON.stringify(input)}`,
      },
    ],
    ...options,
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { runtime, model, store: own, session: runtime.session(KEY) };
}

async function say(session: ReturnType<AgentRuntime["session"]>, text: string) {
  const result = await (await session.send(text)).result;
  expect(result.status).toBe("completed");
  return result;
}

describe("session.compact()", () => {
  it("replaces all but the last two turns with the model's summary; later requests start with it", async () => {
    const { session, model, store } = await start();
    for (const text of ["one", "tool two", "three", "four"]) await say(session, text);
    expect((await session.info()).historyLength).toBe(10);
    const before = await session.info();

    const result = await session.compact();
    expect(result).toMatchObject({
      status: "compacted",
      summarizedMessages: 6,
      keptMessages: 4,
      summary: "SUMMARY 1",
      usage: { inputTokens: 100, outputTokens: 10 },
    });
    // The summarizer read the summarized turns as text: tool calls and results included.
    const asked = textOf(model.summaryCalls[0]!.messages[0]);
    expect(asked).toContain("User: one");
    expect(asked).toContain("Assistant called the tool look with");
    expect(asked).toContain("Result of look: found");
    expect(asked).not.toContain("User: three");

    await say(session, "five");
    const request = model.requests.at(-1)!;
    expect(request.messages.map((m) => m.role)).toEqual([
      "user",
      "user",
      "assistant",
      "user",
      "assistant",
      "user",
    ]);
    expect(textOf(request.messages[0])).toBe("[Summary of the earlier conversation]\nSUMMARY 1");
    expect(textOf(request.messages[1])).toBe("three");
    // The summarizing call is metered with the session.
    const after = await session.info();
    expect(after.metadata.compactions).toBe(1);
    expect(after.metadata.inputTokens).toBe(before.metadata.inputTokens + 100 + 10);
    // The transcript keeps every message, and the compaction.
    const transcript = await store.transcripts.read(KEY, { limit: 1000 });
    const users = transcript.filter(
      (r) => (r.entry.message as ModelMessage | undefined)?.role === "user",
    );
    expect(users.map((r) => textOf(r.entry.message as unknown as ModelMessage))).toEqual([
      "one",
      "tool two",
      "three",
      "four",
      "five",
    ]);
    expect(transcript.filter((r) => r.entry.compaction !== undefined)).toEqual([
      expect.objectContaining({
        entry: expect.objectContaining({
          compaction: expect.objectContaining({ summary: "SUMMARY 1", kept: 4, summarized: 6 }),
        }),
      }),
    ]);
  });

  it("the compacted history is rebuilt the same after hibernation and after a restart", async () => {
    const first = await start();
    for (const text of ["one", "two", "three", "four"]) await say(first.session, text);
    await first.session.compact({ keepTurns: 1 });
    await say(first.session, "five");
    const live = first.model.requests.at(-1)!.messages.map(textOf);

    expect(first.runtime.hibernateIdleSessions()).toBe(1);
    await waitFor("hibernation", () => !first.runtime.activeSessions().includes(KEY));
    await say(first.session, "six");
    const revived = first.model.requests.at(-1)!.messages.map(textOf);
    expect(revived.slice(0, live.length)).toEqual(live);

    await first.runtime.stop();
    const second = await start({}, first.store);
    await say(second.session, "seven");
    const restarted = second.model.requests.at(-1)!.messages.map(textOf);
    expect(restarted.slice(0, revived.length)).toEqual(revived);
    expect(restarted[0]).toBe("[Summary of the earlier conversation]\nSUMMARY 1");
  });

  it("a second compaction summarizes the first summary with what followed it", async () => {
    const { session, model } = await start();
    for (const text of ["one", "two", "three"]) await say(session, text);
    await session.compact({ keepTurns: 1 });
    for (const text of ["four", "five"]) await say(session, text);
    const result = await session.compact({ keepTurns: 1 });
    expect(result).toMatchObject({ status: "compacted", summary: "SUMMARY 2", keptMessages: 2 });
    const asked = textOf(model.summaryCalls[1]!.messages[0]);
    expect(asked).toContain("[Summary of the earlier conversation]\nSUMMARY 1");
    expect(asked).toContain("User: four");
    await say(session, "six");
    const texts = model.requests.at(-1)!.messages.map(textOf);
    expect(texts[0]).toBe("[Summary of the earlier conversation]\nSUMMARY 2");
    expect(texts.filter((t) => t.includes("SUMMARY"))).toHaveLength(1);
  });

  it("skips when there is nothing old enough: no model call, nothing changes", async () => {
    const { session, model } = await start();
    expect(await session.compact()).toMatchObject({ status: "skipped", summarizedMessages: 0 });
    await say(session, "one");
    await say(session, "two");
    expect(await session.compact({ keepTurns: 2 })).toMatchObject({
      status: "skipped",
      keptMessages: 4,
    });
    await session.compact({ keepTurns: 1 });
    // Only the summary before the kept turn: nothing new to summarize.
    expect(await session.compact({ keepTurns: 1 })).toMatchObject({ status: "skipped" });
    expect(model.summaryCalls).toHaveLength(1);
  });

  it("keepTurns 0 summarizes everything; instructions reach the summarizer", async () => {
    const { session, model } = await start();
    await say(session, "one");
    await say(session, "two");
    const result = await session.compact({ keepTurns: 0, instructions: "the numbers" });
    expect(result).toMatchObject({ status: "compacted", summarizedMessages: 4, keptMessages: 0 });
    expect(textOf(model.summaryCalls[0]!.messages[0])).toContain(
      "Write the summary. Keep in particular: the numbers",
    );
    await say(session, "three");
    expect(model.requests.at(-1)!.messages.map(textOf)).toEqual([
      "[Summary of the earlier conversation]\nSUMMARY 1",
      "three",
    ]);
  });

  it("waits for the active run; messages sent while it summarizes wait for it and see the summary", async () => {
    const { session, model } = await start();
    for (const text of ["one", "two", "three"]) await say(session, text);
    model.hold = deferred();
    const compacting = session.compact({ keepTurns: 1 });
    await waitFor("the summarizing call", () => model.summaryCalls.length === 1);
    const waiting = await session.send("four");
    expect(waiting.disposition).toBe("queued");
    expect((await session.info()).activeRunId).toBeUndefined();
    const asked = model.requests.length;
    model.hold.resolve();
    expect(await compacting).toMatchObject({ status: "compacted" });
    expect((await waiting.result).status).toBe("completed");
    expect(model.requests).toHaveLength(asked + 1);
    expect(textOf(model.requests.at(-1)!.messages[0])).toContain("SUMMARY 1");

    // Asked during a run: it starts after the run, before the message that came after it.
    const slow = deferred();
    const original = model.stream.bind(model);
    let gate: Deferred<void> | undefined = slow;
    model.stream = async function* (request, options) {
      if (!isSummaryCall(request) && gate !== undefined) {
        const g = gate;
        gate = undefined;
        await g.promise;
      }
      yield* original(request, options);
    };
    const running = await session.send("five");
    const compactLater = session.compact({ keepTurns: 1 });
    const after = await session.send("six");
    expect(after.disposition).toBe("queued");
    slow.resolve();
    expect((await running.result).status).toBe("completed");
    expect(await compactLater).toMatchObject({ status: "compacted", summary: "SUMMARY 2" });
    expect((await after.result).status).toBe("completed");
    expect(textOf(model.requests.at(-1)!.messages[0])).toContain("SUMMARY 2");
  });

  it("two calls during one compaction get the same result from one summary", async () => {
    const { session, model } = await start();
    for (const text of ["one", "two", "three"]) await say(session, text);
    model.hold = deferred();
    const a = session.compact({ keepTurns: 1 });
    await waitFor("the summarizing call", () => model.summaryCalls.length === 1);
    const b = session.compact({ keepTurns: 2 });
    model.hold.resolve();
    expect(await a).toEqual(await b);
    expect(model.summaryCalls).toHaveLength(1);
  });

  it("a failed summary changes nothing and lets the waiting messages run", async () => {
    const { session, model } = await start();
    for (const text of ["one", "two", "three"]) await say(session, text);
    model.hold = deferred();
    model.fail = new ProviderError("Overloaded", {
      kind: "overloaded",
      provider: "test",
      model: "model-1",
      statusCode: 529,
    });
    const compacting = session.compact({ keepTurns: 1 });
    await waitFor("the summarizing call", () => model.summaryCalls.length === 1);
    const waiting = await session.send("four");
    model.hold.resolve();
    await expect(compacting).rejects.toMatchObject({
      message: expect.stringContaining("Overloaded"),
    });
    expect((await waiting.result).status).toBe("completed");
    expect(model.requests.at(-1)!.messages.map(textOf).slice(0, 2)).toEqual(["one", "answer: one"]);
    expect((await session.info()).metadata.compactions).toBeUndefined();
  });

  it("a summary past timeoutMs is abandoned with RUN_TIMEOUT; nothing changes", async () => {
    const { session, model } = await start();
    for (const text of ["one", "two", "three"]) await say(session, text);
    model.hang = true;
    const error = await session.compact({ keepTurns: 1, timeoutMs: 30 }).catch((e: unknown) => e);
    expect(
      RunTimeoutError.isInstance(error) || (error as { code?: string }).code === "RUN_TIMEOUT",
    ).toBe(true);
    model.hang = false;
    await say(session, "four");
    expect(textOf(model.requests.at(-1)!.messages[0])).toBe("one");
  });

  it("a reset during a compaction ends it with AbortedError", async () => {
    const { session, model } = await start();
    for (const text of ["one", "two", "three"]) await say(session, text);
    model.hold = deferred();
    const compacting = session.compact({ keepTurns: 1 });
    await waitFor("the summarizing call", () => model.summaryCalls.length === 1);
    await session.reset();
    await expect(compacting).rejects.toBeInstanceOf(AbortedError);
    model.hold.resolve();
    await say(session, "again");
    expect(model.requests.at(-1)!.messages.map(textOf)).toEqual(["again"]);
  });

  it.each([
    [{ keepTurns: -1 }, "keepTurns must be a whole number from 0 to 1000"],
    [{ keepTurns: 1.5 }, "keepTurns must be a whole number from 0 to 1000"],
    [{ timeoutMs: 0 }, "timeoutMs must be a whole number of milliseconds"],
    [{ instructions: 42 }, "instructions must be a string"],
    [{ instructions: "x".repeat(4_001) }, "instructions must be a string of at most 4000"],
  ])("refuses %j with InvalidArgumentError before anything happens", async (options, message) => {
    const { session, model } = await start();
    await say(session, "one");
    const error = await session.compact(options as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toContain(message);
    expect(model.summaryCalls).toHaveLength(0);
  });
});

describe("autoCompact", () => {
  function compactions(): TelemetryEvents["beamclaw:session.compaction"][] {
    const seen: TelemetryEvents["beamclaw:session.compaction"][] = [];
    const off = subscribeTelemetry("beamclaw:session.compaction", (event) => seen.push(event));
    cleanups.push(async () => off());
    return seen;
  }

  const long = (n: number) => `message ${n}: ${"word ".repeat(200)}`;

  it("compacts after the run that takes the history past thresholdTokens; the next message waits for it", async () => {
    const seen = compactions();
    const { session, model } = await start({
      agents: [
        { id: "main", model: "test/model-1", autoCompact: { thresholdTokens: 1000, keepTurns: 1 } },
      ],
    });
    // A turn is ~510 estimated tokens: the second takes the history past the threshold.
    await say(session, long(1));
    expect(seen).toHaveLength(0);
    await say(session, long(2));
    const next = await session.send("short");
    expect(next.disposition).toBe("queued");
    expect((await next.result).status).toBe("completed");
    expect(model.summaryCalls).toHaveLength(1);
    expect(textOf(model.requests.at(-1)!.messages[0])).toBe(
      "[Summary of the earlier conversation]\nSUMMARY 1",
    );
    expect(seen).toEqual([
      expect.objectContaining({
        session: KEY,
        agent: "main",
        trigger: "auto",
        status: "compacted",
        summarizedMessages: 2,
        keptMessages: 2,
      }),
    ]);
    expect((await session.info()).metadata.compactions).toBe(1);
  });

  it("autoCompact true compacts at three quarters of contextTokens, and not without a budget", async () => {
    const budgeted = await start({
      agents: [{ id: "main", model: "test/model-1", contextTokens: 800, autoCompact: true }],
    });
    for (let n = 1; n <= 3; n++) await say(budgeted.session, long(n));
    await waitFor(
      "the compaction",
      async () => ((await budgeted.session.info()).metadata.compactions ?? 0) >= 1,
    );

    const unbounded = await start({
      agents: [{ id: "main", model: "test/model-1", autoCompact: true }],
    });
    for (let n = 1; n <= 4; n++) await say(unbounded.session, long(n));
    expect(unbounded.model.summaryCalls).toHaveLength(0);
  });

  it("a failed automatic compaction is reported and the session goes on", async () => {
    const seen = compactions();
    const { session, model } = await start({
      agents: [{ id: "main", model: "test/model-1", autoCompact: { thresholdTokens: 300 } }],
    });
    model.fail = new Error("summarizer down");
    for (let n = 1; n <= 3; n++) await say(session, long(n));
    await say(session, "still here");
    expect(seen.some((e) => e.status === "failed" && e.error?.message === "summarizer down")).toBe(
      true,
    );
    expect((await session.info()).metadata.compactions).toBeUndefined();
    model.fail = undefined;
    await say(session, long(4));
    await waitFor(
      "a compaction that works",
      async () => (await session.info()).metadata.compactions === 1,
    );
  });

  it("a skipped automatic compaction never lets two queued runs start at once", async () => {
    const { session, model } = await start({
      // Always due, never possible: every turn is kept.
      agents: [
        { id: "main", model: "test/model-1", autoCompact: { thresholdTokens: 1, keepTurns: 1000 } },
      ],
    });
    model.holdRuns = deferred();
    const first = await session.send("a");
    const second = await session.send("b");
    const third = await session.send("c");
    expect([second.disposition, third.disposition]).toEqual(["queued", "queued"]);
    const hold = model.holdRuns;
    model.holdRuns = undefined;
    hold.resolve();
    for (const run of [first, second, third]) expect((await run.result).status).toBe("completed");
    expect(model.mostRunning).toBe(1);
    expect(model.summaryCalls).toHaveLength(0);
  });

  it.each([
    ["yes", "must be a boolean or { thresholdTokens, keepTurns }"],
    [{ thresholdTokens: 0 }, "autoCompact.thresholdTokens"],
    [{ keepTurns: 1001 }, "autoCompact.keepTurns must be at most 1000"],
    [{ threshold: 5 }, 'unknown option "threshold"'],
  ])("refuses autoCompact %j when the runtime is made", (autoCompact, message) => {
    const make = () =>
      new AgentRuntime({
        store: new MemoryStore(),
        models: new Model(),
        agents: [{ id: "main", model: "test/model-1", autoCompact: autoCompact as never }],
      });
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(message);
  });
});
