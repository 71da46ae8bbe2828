/**
 * Run time limits: `send(message, { timeoutMs })` and `AgentDefinition.timeoutMs`. A run past
 * its limit is cancelled like an abort (its model call and its tools see the abort), ends
 * `aborted` with a `RUN_TIMEOUT` error in an `error` event and in its result, and leaves the
 * durable queue; the limit counts from when the run starts, survives a restart with the
 * message, and leaves no timer behind.
 */
import { afterEach, describe, expect, it } from "vitest";
import { AbortedError, InvalidArgumentError, RunTimeoutError, StoreError } from "../src/errors.js";
import type {
  JsonObject,
  JsonValue,
  ModelCallOptions,
  ModelRequest,
} from "../src/providers/types.js";
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  type ModelSource,
  type RunEvent,
  type ToolContext,
} from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { abortOf, activeTimeouts, deferred, failureOf, waitFor } from "./support.js";

const KEY = "agent:main:main";
const MAIN = { id: "main", model: "test/model-1" };

/**
 * Answers `answer: <last user text>` at once, except for texts starting with `hang`: those
 * wait until the call's signal aborts (as a provider request would), then throw its reason.
 * Texts starting with `tool` make one call of the `wait` tool first. Records the signals.
 */
class HangingSource implements ModelSource {
  readonly signals: AbortSignal[] = [];
  readonly asked: string[] = [];

  async *stream(
    request: Omit<ModelRequest, "model">,
    options: ModelCallOptions & { models: string[] },
  ): AsyncGenerator<{ type: string; [key: string]: unknown }, void, undefined> {
    const last = request.messages.at(-1);
    const asked = [...request.messages]
      .reverse()
      .find((m) => m.role === "user")
      ?.content.map((p) => (p.type === "text" ? p.text : ""))
      .join("");
    this.asked.push(asked ?? "");
    if (options.signal !== undefined) this.signals.push(options.signal);
    if (asked?.startsWith("hang") === true) throw await abortOf(options.signal);
    if (asked?.startsWith("tool") === true && last?.role !== "tool") {
      yield { type: "tool-call", toolCallId: "t1", toolName: "wait", input: {} };
      return;
    }
    yield { type: "text-delta", text: `answer: ${asked}` };
    yield { type: "usage", usage: { inputTokens: 4, outputTokens: 2 } };
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function openStore(store = new MemoryStore()): Promise<MemoryStore> {
  await store.open();
  cleanups.push(() => store.close());
  return store;
}

async function runtimeWith(options: Partial<AgentRuntimeOptions> = {}) {
  const source = new HangingSource();
  const store = (options.store as MemoryStore | undefined) ?? (await openStore());
  const runtime = new AgentRuntime({ agents: [MAIN], models: source, ...options, store });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { runtime, source, store, session: runtime.session(KEY) };
}

async function eventsOf(run: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of run) out.push(event);
  return out;
}

async function pendingCount(store: MemoryStore): Promise<number> {
  return (await store.queue.pending({ sessionKey: KEY })).length;
}

describe("run time limits", () => {
  it("a run past its message's timeoutMs is cancelled: aborted, RUN_TIMEOUT, out of the queue", async () => {
    const { session, source, store } = await runtimeWith();
    const started = performance.now();
    const run = await session.send("hang on", { timeoutMs: 60 });
    const events = await eventsOf(run);
    const result = await run.result;
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    expect(result.status).toBe("aborted");
    expect(result.error).toEqual({
      code: "RUN_TIMEOUT",
      message: `run ${run.runId} went past its time limit of 60 ms and was cancelled`,
    });
    expect(events.map((e) => e.type)).toEqual(["run-start", "error", "run-end"]);
    expect(events[1]).toMatchObject({ type: "error", error: { code: "RUN_TIMEOUT" } });
    // The provider request saw the abort, with the typed reason.
    expect(source.signals[0]?.aborted).toBe(true);
    const reason = source.signals[0]?.reason;
    expect(RunTimeoutError.isInstance(reason)).toBe(true);
    expect((reason as RunTimeoutError).timeoutMs).toBe(60);
    await waitFor("the message to leave the queue", async () => (await pendingCount(store)) === 0);
    // The session is free: the next message runs.
    const next = await session.send("after");
    expect(await next.result).toMatchObject({ status: "completed", text: "answer: after" });
    expect((await session.info()).activeRunId).toBeUndefined();
  });

  it("the agent's timeoutMs bounds every run; a shorter message limit wins, a longer one does not extend it", async () => {
    const { session } = await runtimeWith({ agents: [{ ...MAIN, timeoutMs: 80 }] });
    const byAgent = await (await session.send("hang a")).result;
    expect(byAgent.error?.message).toContain("time limit of 80 ms");
    const shorter = await (await session.send("hang b", { timeoutMs: 30 })).result;
    expect(shorter.error?.message).toContain("time limit of 30 ms");
    const longer = await (await session.send("hang c", { timeoutMs: 600_000 })).result;
    expect(longer).toMatchObject({ status: "aborted", error: { code: "RUN_TIMEOUT" } });
    expect(longer.error?.message).toContain("time limit of 80 ms");
  });

  it("a run that ends in time completes and leaves no timer behind", async () => {
    const { session } = await runtimeWith({ agents: [{ ...MAIN, timeoutMs: 60_000 }] });
    await (await session.send("warm up")).result;
    const before = activeTimeouts();
    const run = await session.send("quick", { timeoutMs: 50_000 });
    const result = await run.result;
    expect(result).toMatchObject({ status: "completed", text: "answer: quick" });
    expect(result.error).toBeUndefined();
    expect(activeTimeouts()).toBeLessThanOrEqual(before);
  });

  it("the limit counts from when the run starts, not while its message waits in the queue", async () => {
    const { session, source } = await runtimeWith();
    const first = await session.send("hang first", { timeoutMs: 150 });
    // Queued behind a run that takes 150 ms: far longer than its own limit of 40 ms.
    const second = await session.send("second", { timeoutMs: 40 });
    expect((await first.result).error?.code).toBe("RUN_TIMEOUT");
    expect(await second.result).toMatchObject({ status: "completed", text: "answer: second" });
    expect(source.asked).toEqual(["hang first", "second"]);
  });

  it("a tool running when the limit passes is cancelled with the run", async () => {
    let toolSignal: AbortSignal | undefined;
    const entered = deferred();
    const { session, source } = await runtimeWith({
      agents: [{ ...MAIN, tools: ["wait"] }],
      tools: [
        {
          name: "wait",
          description: "waits until cancelled",
          inputSchema: { type: "object" },
          async execute(_input: JsonValue, context: ToolContext) {
            toolSignal = context.signal;
            entered.resolve();
            throw await abortOf(context.signal);
          },
        },
      ],
    });
    const run = await session.send("tool please", { timeoutMs: 50 });
    await entered.promise;
    const result = await run.result;
    expect(result).toMatchObject({ status: "aborted", error: { code: "RUN_TIMEOUT" } });
    expect(toolSignal?.aborted).toBe(true);
    // The tool layer aborts the tool's task, with the run's reason as the cause.
    const reason = toolSignal?.reason as AbortedError | undefined;
    expect(AbortedError.isInstance(reason)).toBe(true);
    expect(RunTimeoutError.isInstance(reason?.cause)).toBe(true);
    // The model was not called again after the cancelled tool.
    expect(source.asked).toEqual(["tool please"]);
  });

  it("a steered message joins the run under the run's limit", async () => {
    const { session } = await runtimeWith();
    const run = await session.send("hang steady", { timeoutMs: 60 });
    const steered = await session.send("steer in", { queueMode: "steer", timeoutMs: 600_000 });
    expect(steered.runId).toBe(run.runId);
    expect(await run.result).toMatchObject({ status: "aborted", error: { code: "RUN_TIMEOUT" } });
  });

  it("an explicit abort before the limit is a plain abort, with no RUN_TIMEOUT", async () => {
    const { session, source } = await runtimeWith();
    const run = await session.send("hang here", { timeoutMs: 60_000 });
    await waitFor("the model call", () => source.signals.length === 1);
    expect(await run.abort()).toBe(true);
    const result = await run.result;
    expect(result.status).toBe("aborted");
    expect(result.error).toBeUndefined();
    expect((await eventsOf(run)).map((e) => e.type)).toEqual(["run-start", "run-end"]);
    expect(AbortedError.isInstance(source.signals[0]?.reason)).toBe(true);
  });

  it("a run waiting to run again after a failed save ends when its limit passes", async () => {
    const store = new MemoryStore();
    const append = store.transcripts.append.bind(store.transcripts);
    let failing = true;
    store.transcripts.append = async (sessionKey: string, entries: JsonObject[]) => {
      if (failing) throw new StoreError("STORE_UNAVAILABLE", "the disk is unavailable");
      return append(sessionKey, entries);
    };
    await openStore(store);
    const { session } = await runtimeWith({ store });
    const started = performance.now();
    const run = await session.send("saved never", { timeoutMs: 250 });
    const events = await eventsOf(run);
    const result = await run.result;
    expect(result).toMatchObject({ status: "aborted", error: { code: "RUN_TIMEOUT" } });
    expect(events.filter((e) => e.type === "error").map((e) => e.error.code)).toContain(
      "SAVE_FAILED",
    );
    expect(events.at(-2)).toMatchObject({ type: "error", error: { code: "RUN_TIMEOUT" } });
    // Ended by its limit, not by its retries running out (they would go on for minutes).
    expect(performance.now() - started).toBeLessThan(5_000);
    await waitFor("the message to leave the queue", async () => (await pendingCount(store)) === 0);
    failing = false;
    expect(await (await session.send("later")).result).toMatchObject({ status: "completed" });
  });

  it("the limit is kept with the message in the durable queue: a replay after a restart runs under it", async () => {
    const store = await openStore();
    const first = await runtimeWith({ store });
    const run = await first.session.send("hang over", { timeoutMs: 100 });
    await waitFor("the model call", () => first.source.signals.length === 1);
    const [queued] = await store.queue.pending({ sessionKey: KEY });
    expect(queued).toBeDefined();
    const payload = queued!.payload as { options?: JsonObject };
    expect(payload.options).toMatchObject({ timeoutMs: 100 });
    await first.runtime.stop();
    expect(await failureOf(() => run.result)).toBeInstanceOf(Error);
    // A new runtime on the same store replays the message; it hangs again and is cut at 100 ms.
    const source = new HangingSource();
    const second = new AgentRuntime({ agents: [MAIN], models: source, store });
    cleanups.push(() => second.stop());
    const seen: RunEvent[] = [];
    second.pubsub.subscribe<RunEvent>(`session:${KEY}`, (event) => seen.push(event));
    await second.start();
    await waitFor("the replayed run to end", () => seen.some((e) => e.type === "run-end"));
    const end = seen.find((e) => e.type === "run-end");
    expect(end?.type === "run-end" && end.result).toMatchObject({
      status: "aborted",
      error: { code: "RUN_TIMEOUT" },
    });
    expect(source.asked).toEqual(["hang over"]);
    await waitFor("the message to leave the queue", async () => (await pendingCount(store)) === 0);
  });

  it("refuses a bad timeoutMs before anything is queued", async () => {
    const { session, store } = await runtimeWith();
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 31, "100", null, true]) {
      const error = await failureOf(() => session.send("x", { timeoutMs: bad as number }));
      expect(InvalidArgumentError.isInstance(error), String(bad)).toBe(true);
      expect((error as Error).message).toContain("timeoutMs must be a whole number of ms");
    }
    expect(await pendingCount(store)).toBe(0);
    for (const bad of [0, 2.5, "1s", 2 ** 31]) {
      expect(
        () =>
          new AgentRuntime({
            store,
            models: new HangingSource(),
            agents: [{ ...MAIN, timeoutMs: bad as number }],
          }),
      ).toThrow(/agent "main": timeoutMs must be a whole number of ms/);
    }
  });
});
