/**
 * `AgentRuntime` end to end over a `MemoryStore` and a scripted model source: events, the
 * transcript and metadata, queue modes, aborts, idempotency, overload, crash recovery, the
 * durable inbound queue across restarts, hibernation, patch/reset/delete, sub-agents and
 * usage metering.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AbortedError,
  AlreadyStartedError,
  InvalidArgumentError,
  InvalidSessionKeyError,
  NoProcessError,
  OverloadedError,
  ProviderError,
  StoreError,
} from "../src/errors.js";
import type {
  JsonValue,
  ModelCallOptions,
  ModelMessage,
  ModelRequest,
  ToolResultPart,
} from "../src/providers/types.js";
import type { Process } from "../src/runtime/actor.js";
import type { PubSub } from "../src/runtime/pubsub.js";
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  type AgentTool,
  type ModelSource,
  type RunEvent,
  type RunHandle,
  usageDay,
} from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { QueuedMessage } from "../src/store/types.js";
import { activeTimeouts, type Deferred, deferred, failureOf, waitFor } from "./support.js";

// ------------------------------------------------------------------ scripted model source

type SourceEvent = { type: string; [key: string]: unknown };
type SourceOptions = ModelCallOptions & { models: string[] };
interface SourceCall {
  request: Omit<ModelRequest, "model">;
  options: SourceOptions;
  index: number;
}
type Brain = (
  call: SourceCall,
) => SourceEvent[] | AsyncGenerator<SourceEvent, void, undefined> | Promise<SourceEvent[]>;

/** A model source whose answers come from a function of the request; records every call. */
class BrainSource implements ModelSource {
  readonly calls: SourceCall[] = [];
  brain: Brain;

  constructor(brain: Brain) {
    this.brain = brain;
  }

  async *stream(
    request: Omit<ModelRequest, "model">,
    options: SourceOptions,
  ): AsyncGenerator<SourceEvent, void, undefined> {
    const call: SourceCall = { request, options, index: this.calls.length };
    this.calls.push(call);
    const out = await this.brain(call);
    if (Array.isArray(out)) {
      for (const event of out) {
        if (options.signal?.aborted) throw options.signal.reason;
        yield event;
      }
      return;
    }
    yield* out;
  }

  /** The last user text of every call, in call order. */
  asked(): string[] {
    return this.calls.map((c) => lastUser(c.request.messages) ?? "");
  }
}

const text = (t: string): SourceEvent => ({ type: "text-delta", text: t });
const toolCall = (toolCallId: string, toolName: string, input: JsonValue = {}): SourceEvent => ({
  type: "tool-call",
  toolCallId,
  toolName,
  input,
});
const USAGE = { inputTokens: 10, outputTokens: 5 };
const usage = (u: { inputTokens: number; outputTokens: number } = USAGE): SourceEvent => ({
  type: "usage",
  usage: u,
});

function textOf(message: ModelMessage | undefined): string | undefined {
  if (message === undefined || message.role === "tool") return undefined;
  return message.content.map((p) => (p.type === "text" ? p.text : "")).join("");
}
function lastUser(messages: readonly ModelMessage[]): string | undefined {
  return textOf(messages.filter((m) => m.role === "user").at(-1));
}
function firstUser(messages: readonly ModelMessage[]): string | undefined {
  return textOf(messages.find((m) => m.role === "user"));
}
function userTexts(messages: readonly ModelMessage[]): string[] {
  return messages.filter((m) => m.role === "user").map((m) => textOf(m) ?? "");
}

/** Waits for `promise`, or rejects with the signal's reason when it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal?.reason ?? new AbortedError("aborted"));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal?.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** A gate for one model call: `entered` when the call starts, held until `release`. */
interface Blocker {
  entered: Deferred<void>;
  release: Deferred<void>;
}

/**
 * The default brain: answers `answer: <last user text>` with usage. A call whose last user
 * text has a blocker waits (abortably) until it is released; each blocker is used once.
 */
function echoBrain(blockers: Map<string, Blocker>): Brain {
  return async function* ({ request, options }) {
    const asked = lastUser(request.messages) ?? "";
    const blocker = blockers.get(asked);
    if (blocker !== undefined) {
      blockers.delete(asked);
      blocker.entered.resolve();
      await untilAborted(blocker.release.promise, options.signal);
    }
    yield text(`answer: ${asked}`);
    yield usage();
  };
}

// ------------------------------------------------------------------ harness

const KEY = "agent:main:main";
const MAIN = { id: "main", model: "test/model-1" };
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function newStore(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  return store;
}

/** A started runtime; stopped (before its store is closed) after the test. */
async function startRuntime(
  options: Partial<AgentRuntimeOptions> & { models: ModelSource },
): Promise<AgentRuntime> {
  const store = options.store ?? (await newStore());
  const runtime = new AgentRuntime({ agents: [MAIN], ...options, store });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return runtime;
}

/** A runtime over the echo brain; `block(text)` holds the model call for that text. */
async function echoRuntime(options: Partial<AgentRuntimeOptions> = {}) {
  const blockers = new Map<string, Blocker>();
  const source = new BrainSource(echoBrain(blockers));
  const runtime = await startRuntime({ models: source, ...options });
  const block = (asked: string): Blocker => {
    const blocker = { entered: deferred(), release: deferred() };
    blockers.set(asked, blocker);
    return blocker;
  };
  return { runtime, source, block, session: runtime.session(KEY) };
}

async function collect(handle: RunHandle): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of handle) out.push(event);
  return out;
}

function record(pubsub: PubSub, topic: string): RunEvent[] {
  const out: RunEvent[] = [];
  pubsub.subscribe<RunEvent>(topic, (event) => out.push(event));
  return out;
}

const types = (events: RunEvent[]) => events.map((e) => e.type);

function tool(name: string, execute: AgentTool["execute"]): AgentTool {
  return { name, description: `the ${name} tool`, inputSchema: { type: "object" }, execute };
}

function sessionActor(runtime: AgentRuntime, key = KEY): Process | undefined {
  return runtime.registry.whereis(`session:${key}`);
}

/**
 * A new session's first run (message "first") held in its model call, over a store that
 * refused to write its first record (a record with no run counted).
 */
async function firstRunWithoutRecord() {
  const store = await newStore();
  const refused = { count: 0 };
  const put = store.sessions.put.bind(store.sessions);
  store.sessions.put = async (record) => {
    if (record.runs === 0) {
      refused.count++;
      throw new StoreError("STORE_UNAVAILABLE", "the disk is briefly unavailable");
    }
    return put(record);
  };
  const { runtime, session, block } = await echoRuntime({ store });
  const gate = block("first");
  const run = await session.send("first");
  await gate.entered.promise;
  await waitFor("the refused first record", () => refused.count > 0);
  expect(await runtime.store.sessions.get(KEY)).toBeUndefined();
  return { runtime, session, gate, run, refused };
}

/** Texts of the pending messages of the durable queue. */
async function pendingTexts(store: MemoryStore, sessionKey = KEY): Promise<string[]> {
  const pending = await store.queue.pending({ sessionKey });
  return pending.map((m) => String((m.payload as { input: { text: string } }).input.text));
}

/** Idempotency keys of the pending messages of the durable queue, by text. */
async function pendingKeys(store: MemoryStore, sessionKey = KEY): Promise<Map<string, string>> {
  const pending = await store.queue.pending({ sessionKey });
  return new Map(
    pending.map((m) => [
      String((m.payload as { input: { text: string } }).input.text),
      m.idempotencyKey,
    ]),
  );
}

/**
 * Whether the queue still remembers `idempotencyKey` (a new message with it is a duplicate).
 * The probe it enqueues is discarded again, so it leaves nothing behind.
 */
async function remembered(store: MemoryStore, idempotencyKey: string): Promise<boolean> {
  const { message, duplicate } = await store.queue.enqueue({
    idempotencyKey,
    sessionKey: "agent:main:probe",
    payload: {},
  });
  if (!duplicate) await store.queue.discard(message.id);
  return duplicate;
}

// ------------------------------------------------------------------ events, transcript, metadata

describe("runs: events, transcript and metadata", () => {
  it("a run's events arrive in order on the handle and on PubSub session:<key> and events:global", async () => {
    const source = new BrainSource(({ index }) =>
      index === 0
        ? [text("Adding."), toolCall("c1", "add", { a: 2, b: 3 }), usage()]
        : [text("It is "), text("5."), usage({ inputTokens: 20, outputTokens: 3 })],
    );
    const add = tool("add", (input) => (input as { a: number }).a + (input as { b: number }).b);
    const runtime = await startRuntime({
      models: source,
      agents: [{ ...MAIN, tools: ["add"] }],
      tools: [add],
    });
    const onSession = record(runtime.pubsub, `session:${KEY}`);
    const onGlobal = record(runtime.pubsub, "events:global");
    const run = await runtime.session("Agent:Main:MAIN").send("what is 2+3?");
    expect(run.sessionKey).toBe(KEY);
    expect(run.disposition).toBe("started");
    const events = await collect(run);
    expect(types(events)).toEqual([
      "run-start",
      "text-delta",
      "tool-call",
      "usage",
      "tool-result",
      "text-delta",
      "text-delta",
      "usage",
      "run-end",
    ]);
    expect(events.every((e) => e.runId === run.runId && e.sessionKey === KEY)).toBe(true);
    expect(events[0]).toMatchObject({
      type: "run-start",
      agentId: "main",
      input: [{ text: "what is 2+3?" }],
    });
    expect(events[4]).toMatchObject({ type: "tool-result", output: 5, isError: false });
    const result = await run.result;
    expect(events.at(-1)).toEqual({ runId: run.runId, sessionKey: KEY, type: "run-end", result });
    expect(result).toMatchObject({ status: "completed", text: "It is 5.", steps: 2 });
    expect(onSession).toEqual(events);
    expect(onGlobal).toEqual(events);
  });

  it("historyLimit: the model sees at most that many earlier messages, cut at a turn's start", async () => {
    // Every turn is four messages: the question, a tool call, its result, the answer.
    const source = new BrainSource(({ request }) =>
      request.messages.at(-1)?.role === "tool"
        ? [text(`answer to ${lastUser(request.messages)}`), usage()]
        : [toolCall(`call-${lastUser(request.messages)}`, "clock"), usage()],
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ ...MAIN, tools: ["clock"] }],
      tools: [tool("clock", () => "12:00")],
      historyLimit: 6,
    });
    const session = runtime.session(KEY);
    for (const question of ["q1", "q2", "q3", "q4"]) {
      expect(await (await session.send(question)).result).toMatchObject({ status: "completed" });
    }
    // The first model call of each turn: the history the session kept, then the question.
    const firsts = source.calls.filter((c) => c.request.messages.at(-1)?.role === "user");
    expect(firsts.map((c) => userTexts(c.request.messages))).toEqual([
      ["q1"],
      ["q1", "q2"],
      // 8 messages would exceed 6: the oldest go, and then the rest of q1's turn, whose
      // tool result must not be sent without its call.
      ["q2", "q3"],
      ["q3", "q4"],
    ]);
    for (const call of firsts) {
      expect(call.request.messages.length).toBeLessThanOrEqual(6 + 1);
      expect(call.request.messages[0]?.role).toBe("user");
    }
    expect(firsts[3]?.request.messages.map((m) => m.role)).toEqual([
      "user",
      "assistant",
      "tool",
      "assistant",
      "user",
    ]);
    expect(textOf(firsts[3]?.request.messages[3])).toBe("answer to q3");
  });

  it("events:global carries every session's events; session:<key> only its own", async () => {
    const { runtime } = await echoRuntime();
    const other = "agent:main:direct:bob";
    const onMain = record(runtime.pubsub, `session:${KEY}`);
    const onGlobal = record(runtime.pubsub, "events:global");
    await (await runtime.session(KEY).send("a")).result;
    await (await runtime.session(other).send("b")).result;
    expect(new Set(onMain.map((e) => e.sessionKey))).toEqual(new Set([KEY]));
    expect(new Set(onGlobal.map((e) => e.sessionKey))).toEqual(new Set([KEY, other]));
    expect(onGlobal.filter((e) => e.type === "run-end")).toHaveLength(2);
  });

  it("an iterator started late still sees every event from run-start on", async () => {
    const { session } = await echoRuntime();
    const run = await session.send("hi");
    await run.result;
    const first = await collect(run);
    const second = await collect(run);
    expect(types(first)).toEqual(["run-start", "text-delta", "usage", "run-end"]);
    expect(second).toEqual(first);
  });

  it("the transcript is persisted: history() returns every message of the run, tagged with its run", async () => {
    const source = new BrainSource(({ index }) =>
      index === 0 ? [toolCall("c1", "clock"), usage()] : [text("It is noon."), usage()],
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ ...MAIN, tools: ["*"] }],
      tools: [tool("clock", () => "12:00")],
    });
    const session = runtime.session(KEY);
    const run = await session.send({ text: "time?", sender: "bob" });
    await run.result;
    const history = await session.history();
    expect(history.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(history.every((r) => r.entry.runId === run.runId)).toBe(true);
    expect(history.map((r) => (r.entry.message as { role: string }).role)).toEqual([
      "user",
      "assistant",
      "tool",
      "assistant",
    ]);
    expect(history[0]!.entry.message).toEqual({
      role: "user",
      content: [{ type: "text", text: "time?" }],
    });
    expect(history[2]!.entry.message).toEqual({
      role: "tool",
      content: [{ type: "tool-result", toolCallId: "c1", toolName: "clock", output: "12:00" }],
    });
    expect(history[3]!.entry.message).toEqual({
      role: "assistant",
      content: [{ type: "text", text: "It is noon." }],
    });
    // Paging works on the stored transcript.
    expect((await session.history({ afterSeq: 2 })).map((r) => r.seq)).toEqual([3, 4]);
    // The result says where the final answer was saved; each answer carries its call's usage.
    const result = await run.result;
    expect(result.finalMessage).toEqual({ seq: 4, at: history[3]!.entry.at });
    expect(history[1]!.entry.usage).toMatchObject({ inputTokens: expect.any(Number) });
    expect(history[3]!.entry.usage).toMatchObject({ outputTokens: expect.any(Number) });
    expect(history[2]!.entry.usage).toBeUndefined();
  });

  it("the next run sends the earlier turns as history", async () => {
    const { session, source } = await echoRuntime();
    await (await session.send("one")).result;
    await (await session.send("two")).result;
    expect(source.calls[1]!.request.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "one" }] },
      { role: "assistant", content: [{ type: "text", text: "answer: one" }] },
      { role: "user", content: [{ type: "text", text: "two" }] },
    ]);
  });

  it("metadata counts runs, tokens and cost, and is saved to the store", async () => {
    const source = new BrainSource(() => [
      text("ok"),
      {
        type: "usage",
        usage: { inputTokens: 100, outputTokens: 20, cacheReadTokens: 7, cacheWriteTokens: 3 },
      },
    ]);
    const runtime = await startRuntime({ models: source, cost: (_ref, u) => u.inputTokens / 100 });
    const session = runtime.session(KEY);
    const before = Date.now();
    await (await session.send("a")).result;
    await (await session.send("b")).result;
    const info = await session.info();
    expect(info.metadata).toMatchObject({
      key: KEY,
      agentId: "main",
      runs: 2,
      inputTokens: 200,
      outputTokens: 40,
      cacheReadTokens: 14,
      cacheWriteTokens: 6,
    });
    expect(info.metadata.costUsd).toBeCloseTo(2, 10);
    expect(info.metadata.lastRunAt).toBeGreaterThanOrEqual(before);
    expect(info.metadata.updatedAt).toBeGreaterThanOrEqual(info.metadata.createdAt);
    expect(info.activeRunId).toBeUndefined();
    expect(info.queued).toBe(0);
    expect(info.historyLength).toBe(4);
    const stored = await runtime.store.sessions.get(KEY);
    expect(stored).toMatchObject({ runs: 2, inputTokens: 200, outputTokens: 40 });
  });

  it("a new session's record is in the store during its first run (listed, no run counted yet)", async () => {
    const { runtime, session, block } = await echoRuntime();
    const gate = block("first");
    const before = Date.now();
    const run = await session.send("first");
    await gate.entered.promise;
    // Written from the mailbox right after the first message is saved: the model is already
    // answering, so it is there by now or a moment later.
    const stored = await waitFor("the first record", () => runtime.store.sessions.get(KEY));
    expect(stored).toMatchObject({ key: KEY, agentId: "main", runs: 0, inputTokens: 0 });
    expect(stored.updatedAt).toBeGreaterThanOrEqual(before);
    expect(stored.lastRunAt).toBeUndefined();
    expect((await runtime.store.sessions.list({})).items.map((r) => r.key)).toEqual([KEY]);
    gate.release.resolve();
    await run.result;
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({ runs: 1, inputTokens: 10 });
  });

  it("the first record does not overwrite a patch made during the first run", async () => {
    const { runtime, session, block } = await echoRuntime();
    const gate = block("first");
    const run = await session.send("first");
    await gate.entered.promise;
    await session.patch({ displayName: "Named early" });
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({ displayName: "Named early" });
    gate.release.resolve();
    await run.result;
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({
      displayName: "Named early",
      runs: 1,
    });
  });

  it("a first record the store refuses leaves the run going; the record is written when it ends", async () => {
    const { runtime, gate, run, refused } = await firstRunWithoutRecord();
    gate.release.resolve();
    const result = await run.result;
    expect(result.status).toBe("completed");
    expect(result.text).toBe("answer: first");
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({ runs: 1 });
    expect(refused.count).toBe(1);
  });

  it("the first record is written once: later runs write the record only when they end", async () => {
    const store = await newStore();
    const puts: number[] = [];
    const put = store.sessions.put.bind(store.sessions);
    store.sessions.put = async (record) => {
      puts.push(Number(record.runs));
      return put(record);
    };
    const { runtime, session } = await echoRuntime({ store });
    await (await session.send("one")).result;
    await (await session.send("two")).result;
    // The first run: the first record and the run's end; the second: only its end.
    expect(puts).toEqual([0, 1, 2]);
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({ runs: 2 });
  });

  it("a message is in the durable queue before send resolves and leaves it only when its turn is done", async () => {
    const { runtime, session, block } = await echoRuntime();
    const store = runtime.store as MemoryStore;
    const gate = block("queued?");
    const run = await session.send("queued?");
    expect(await pendingTexts(store)).toEqual(["queued?"]);
    await gate.entered.promise;
    expect(await pendingTexts(store)).toEqual(["queued?"]);
    expect((await session.info()).activeRunId).toBe(run.runId);
    gate.release.resolve();
    await run.result;
    expect(await pendingTexts(store)).toEqual([]);
  });

  it("the session actor is found through the Registry under session:<key>", async () => {
    const { runtime, session } = await echoRuntime();
    expect(runtime.activeSessions()).toEqual([]);
    await (await session.send("hi")).result;
    const actor = sessionActor(runtime);
    expect(actor?.status).toBe("running");
    expect(runtime.activeSessions()).toEqual([KEY]);
  });
});

// ------------------------------------------------------------------ queue modes

describe("queue modes while a run is active", () => {
  it("steer: the message joins the active run and the model sees it at the next step", async () => {
    const { session, source, block } = await echoRuntime();
    const gate = block("first");
    const first = await session.send("first");
    await gate.entered.promise;
    const steer = await session.send("also this", { queueMode: "steer" });
    expect(steer.disposition).toBe("steered");
    expect(steer.runId).toBe(first.runId);
    gate.release.resolve();
    const result = await first.result;
    expect(await steer.result).toEqual(result);
    expect(result.steps).toBe(2);
    expect(result.text).toBe("answer: also this");
    expect(source.calls).toHaveLength(2);
    expect(userTexts(source.calls[1]!.request.messages)).toEqual(["first", "also this"]);
    const events = await collect(steer);
    expect(types(events)).toContain("steer");
    expect(events[0]).toMatchObject({ type: "run-start", runId: first.runId });
    expect(events.at(-1)?.type).toBe("run-end");
  });

  it("followup: the message runs on its own after the active run", async () => {
    const { runtime, session, source, block } = await echoRuntime();
    const onSession = record(runtime.pubsub, `session:${KEY}`);
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const two = await session.send("two", { queueMode: "followup" });
    expect(two.disposition).toBe("queued");
    expect(two.runId).not.toBe(one.runId);
    expect((await session.info()).queued).toBe(1);
    expect(source.calls).toHaveLength(1);
    gate.release.resolve();
    expect((await one.result).text).toBe("answer: one");
    expect((await two.result).text).toBe("answer: two");
    expect(source.asked()).toEqual(["one", "two"]);
    expect(userTexts(source.calls[1]!.request.messages)).toEqual(["one", "two"]);
    const boundaries = onSession
      .filter((e) => e.type === "run-start" || e.type === "run-end")
      .map((e) => `${e.type}:${e.runId === one.runId ? "one" : "two"}`);
    expect(boundaries).toEqual(["run-start:one", "run-end:one", "run-start:two", "run-end:two"]);
  });

  it("followup is the default queue mode", async () => {
    const { session, block } = await echoRuntime();
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const two = await session.send("two");
    expect(two.disposition).toBe("queued");
    gate.release.resolve();
    await one.result;
    expect((await two.result).text).toBe("answer: two");
  });

  it("collect: messages sent during a run are merged into one run after it", async () => {
    const { session, source, block } = await echoRuntime();
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const a = await session.send("two", { queueMode: "collect" });
    const b = await session.send("three", { queueMode: "collect" });
    expect([a.disposition, b.disposition]).toEqual(["queued", "queued"]);
    expect(a.runId).toBe(b.runId);
    expect(a.runId).not.toBe(one.runId);
    gate.release.resolve();
    await one.result;
    const merged = await a.result;
    expect(await b.result).toEqual(merged);
    expect(source.calls).toHaveLength(2);
    expect(userTexts(source.calls[1]!.request.messages)).toEqual(["one", "two", "three"]);
    const events = await collect(b);
    expect(events[0]).toMatchObject({
      type: "run-start",
      input: [{ text: "two" }, { text: "three" }],
    });
  });

  it("interrupt: the active run is aborted and the new message runs at once", async () => {
    const { session, source, block } = await echoRuntime();
    const gate = block("slow");
    const slow = await session.send("slow");
    await gate.entered.promise;
    const urgent = await session.send("urgent", { queueMode: "interrupt" });
    expect(urgent.disposition).toBe("interrupted");
    expect((await slow.result).status).toBe("aborted");
    expect(source.calls[0]!.options.signal?.aborted).toBe(true);
    const result = await urgent.result;
    expect(result).toMatchObject({ status: "completed", text: "answer: urgent" });
    expect(source.asked()).toEqual(["slow", "urgent"]);
  });

  it("interrupt runs before earlier follow-ups", async () => {
    const { session, source, block } = await echoRuntime();
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const later = await session.send("later");
    const now = await session.send("now", { queueMode: "interrupt" });
    await Promise.all([one.result, later.result, now.result]);
    expect(source.asked()).toEqual(["one", "now", "later"]);
  });
});

// ------------------------------------------------------------------ aborts

describe("aborts", () => {
  it("abort() of the active run cancels its provider request; the result is aborted", async () => {
    const { runtime, session, source, block } = await echoRuntime();
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    expect(await one.abort()).toBe(true);
    const result = await one.result;
    expect(result.status).toBe("aborted");
    expect(source.calls[0]!.options.signal?.aborted).toBe(true);
    expect(await one.abort()).toBe(false);
    expect((await session.info()).activeRunId).toBeUndefined();
    expect(await pendingTexts(runtime.store as MemoryStore)).toEqual([]);
  });

  it("abort(runId) of the active run cancels its running tools", async () => {
    const started = deferred();
    let toolSignal: AbortSignal | undefined;
    const source = new BrainSource(({ index }) =>
      index === 0 ? [toolCall("w", "wait")] : [text("unreachable")],
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ ...MAIN, tools: ["wait"] }],
      tools: [
        tool("wait", async (_input, ctx) => {
          toolSignal = ctx.signal;
          started.resolve();
          return await untilAborted(new Promise<JsonValue>(() => {}), ctx.signal);
        }),
      ],
    });
    const session = runtime.session(KEY);
    const run = await session.send("go");
    await started.promise;
    expect(await session.abort(run.runId)).toBe(true);
    expect((await run.result).status).toBe("aborted");
    expect(toolSignal?.aborted).toBe(true);
    expect(source.calls).toHaveLength(1);
  });

  it("abort() of a queued run ends it as aborted without it ever reaching the model", async () => {
    const { runtime, session, source, block } = await echoRuntime();
    const store = runtime.store as MemoryStore;
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const two = await session.send("two");
    expect(await pendingTexts(store)).toEqual(["one", "two"]);
    expect(await two.abort()).toBe(true);
    const result = await two.result;
    expect(result).toMatchObject({ status: "aborted", runId: two.runId, steps: 0, text: "" });
    expect(types(await collect(two))).toEqual(["run-start", "run-end"]);
    await waitFor("the aborted message to leave the queue", async () =>
      (await pendingTexts(store)).every((t) => t !== "two"),
    );
    gate.release.resolve();
    expect((await one.result).status).toBe("completed");
    expect(source.asked()).toEqual(["one"]);
    expect((await session.info()).queued).toBe(0);
  });

  it("aborting a queued run publishes its run-start and run-end on PubSub too", async () => {
    const { runtime, session, block } = await echoRuntime();
    const onSession = record(runtime.pubsub, `session:${KEY}`);
    const onGlobal = record(runtime.pubsub, "events:global");
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const two = await session.send("two");
    await two.abort();
    await two.result;
    gate.release.resolve();
    await one.result;
    for (const events of [onSession, onGlobal]) {
      expect(types(events.filter((e) => e.runId === two.runId))).toEqual(["run-start", "run-end"]);
    }
  });

  it("abort() of an unknown run resolves false", async () => {
    const { session } = await echoRuntime();
    expect(await session.abort("no-such-run")).toBe(false);
  });

  it("the signal of send() aborts the message's run", async () => {
    const { session, block } = await echoRuntime();
    const gate = block("one");
    const controller = new AbortController();
    const one = await session.send("one", { signal: controller.signal });
    await gate.entered.promise;
    controller.abort();
    expect((await one.result).status).toBe("aborted");
  });
});

// ------------------------------------------------------------------ idempotency

describe("idempotency keys", () => {
  it("a duplicate sent while the original is pending attaches to the same run", async () => {
    const { session, source, block } = await echoRuntime();
    const gate = block("pay");
    const original = await session.send("pay", { idempotencyKey: "k-1" });
    await gate.entered.promise;
    const duplicate = await session.send("pay", { idempotencyKey: "k-1" });
    expect(duplicate.disposition).toBe("duplicate");
    expect(duplicate.runId).toBe(original.runId);
    gate.release.resolve();
    const result = await original.result;
    expect(await duplicate.result).toEqual(result);
    expect(await collect(duplicate)).toEqual(await collect(original));
    expect(source.calls).toHaveLength(1);
  });

  it("a duplicate sent after the original completed is refused with code DUPLICATE and not run", async () => {
    const { runtime, session, source } = await echoRuntime();
    await (await session.send("pay", { idempotencyKey: "k-2" })).result;
    const again = await session.send("pay", { idempotencyKey: "k-2" });
    expect(again.disposition).toBe("duplicate");
    const error = await failureOf(() => again.result);
    expect(error).toMatchObject({ code: "DUPLICATE" });
    await expect(collect(again)).rejects.toMatchObject({ code: "DUPLICATE" });
    expect(source.calls).toHaveLength(1);
    expect(await pendingTexts(runtime.store as MemoryStore)).toEqual([]);
  });

  it("a message sent without a key leaves the queue without a dedupe record; one with a key keeps it", async () => {
    const { runtime, session, block } = await echoRuntime();
    const store = runtime.store as MemoryStore;
    const gate = block("first");
    const first = await session.send("first");
    await gate.entered.promise;
    const steered = await session.send("steered", { queueMode: "steer" });
    const collected = await session.send("collected", { queueMode: "collect" });
    const keyed = await session.send("keyed", { queueMode: "collect", idempotencyKey: "k-c" });
    const keys = await pendingKeys(store);
    expect(keys.get("keyed")).toBe("k-c");
    expect(keys.get("first")).toMatch(/^auto:/);
    gate.release.resolve();
    for (const run of [first, steered, collected, keyed]) {
      expect((await run.result).status).toBe("completed");
    }
    expect(await pendingTexts(store)).toEqual([]);
    // Nobody can send a made-up key again, so none is remembered; the caller's key is.
    for (const text of ["first", "steered", "collected"]) {
      expect(await remembered(store, keys.get(text)!)).toBe(false);
    }
    expect(await remembered(store, "k-c")).toBe(true);
    const again = await session.send("keyed", { idempotencyKey: "k-c" });
    await expect(again.result).rejects.toMatchObject({ code: "DUPLICATE" });
  });

  it("aborted, reset and replayed messages without a key leave no dedupe record either", async () => {
    const store = await newStore();
    const blockers = new Map<string, Blocker>();
    const gate = (asked: string) => {
      const blocker = { entered: deferred(), release: deferred() };
      blockers.set(asked, blocker);
      return blocker;
    };
    const runtime1 = new AgentRuntime({
      store,
      models: new BrainSource(echoBrain(blockers)),
      agents: [MAIN],
    });
    await runtime1.start();
    const session1 = runtime1.session(KEY);
    const aborted = gate("aborted");
    const abortedRun = await session1.send("aborted");
    await aborted.entered.promise;
    const queued = await session1.send("queued behind");
    let keys = await pendingKeys(store);
    await abortedRun.abort();
    expect((await abortedRun.result).status).toBe("aborted");
    await queued.result;
    const reset = gate("reset");
    const resetRun = await session1.send("reset");
    await reset.entered.promise;
    const unstarted = await session1.send("waiting at the reset");
    keys = new Map([...keys, ...(await pendingKeys(store))]);
    await session1.reset();
    expect((await resetRun.result).status).toBe("aborted");
    expect((await unstarted.result).status).toBe("aborted");
    const stuck = gate("replayed");
    const replayed = await session1.send("replayed");
    await stuck.entered.promise;
    keys = new Map([...keys, ...(await pendingKeys(store))]);
    await runtime1.stop();
    await failureOf(() => replayed.result);
    expect(await pendingTexts(store)).toEqual(["replayed"]);

    const runtime2 = new AgentRuntime({
      store,
      models: new BrainSource(echoBrain(new Map())),
      agents: [MAIN],
    });
    const ends = record(runtime2.pubsub, "events:global");
    cleanups.push(() => runtime2.stop());
    await runtime2.start();
    await waitFor("the replayed run to end", () => ends.find((e) => e.type === "run-end"));
    await waitFor("the replayed message to leave the queue", async () =>
      (await pendingTexts(store)).length === 0 ? true : undefined,
    );
    expect([...keys.keys()].sort()).toEqual([
      "aborted",
      "queued behind",
      "replayed",
      "reset",
      "waiting at the reset",
    ]);
    for (const key of keys.values()) expect(await remembered(store, key)).toBe(false);
  });

  it("deliver() and delete tell a made-up key from a caller's own by the queued message", async () => {
    const { runtime, block } = await echoRuntime();
    const store = runtime.store as MemoryStore;
    // Queued as a cluster node queues them: one with the key the runtime makes up, one with
    // the caller's own key (and the same payload shape).
    const auto = await store.queue.enqueue({
      idempotencyKey: "auto:run-a",
      sessionKey: KEY,
      payload: { input: { text: "made up" }, options: {}, runId: "run-a" },
    });
    const own = await store.queue.enqueue({
      idempotencyKey: "caller-key",
      sessionKey: KEY,
      payload: { input: { text: "own key" }, options: {}, runId: "run-b" },
    });
    await (await runtime.deliver(auto.message)).result;
    await (await runtime.deliver(own.message)).result;
    expect(await remembered(store, "auto:run-a")).toBe(false);
    expect(await remembered(store, "caller-key")).toBe(true);

    // A deleted session's unfinished messages go the same way.
    const other = "agent:main:doomed";
    const gate = block("doomed, no key");
    const running = await runtime.session(other).send("doomed, no key");
    await gate.entered.promise;
    await runtime.session(other).send("doomed, keyed", { idempotencyKey: "k-doomed" });
    const keys = await pendingKeys(store, other);
    expect(keys.size).toBe(2);
    await runtime.session(other).delete();
    expect((await running.result).error?.code).toBe("SESSION_DELETED");
    expect(await pendingTexts(store, other)).toEqual([]);
    expect(await remembered(store, keys.get("doomed, no key")!)).toBe(false);
    expect(await remembered(store, "k-doomed")).toBe(true);
  });

  it("a duplicate of a collected message follows the run it was collected into", async () => {
    const { session, block } = await echoRuntime();
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    await session.send("two", { queueMode: "collect" });
    const three = await session.send("three", { queueMode: "collect", idempotencyKey: "k-3" });
    const duplicate = await session.send("three", { idempotencyKey: "k-3" });
    expect(duplicate.disposition).toBe("duplicate");
    expect(duplicate.runId).toBe(three.runId);
    gate.release.resolve();
    await one.result;
    expect(await duplicate.result).toEqual(await three.result);
  });
});

// ------------------------------------------------------------------ overload

describe("overload", () => {
  it("a message beyond maxQueuedMessages is refused with OverloadedError and not kept in the queue", async () => {
    const { runtime, session, source, block } = await echoRuntime({ maxQueuedMessages: 2 });
    const store = runtime.store as MemoryStore;
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const two = await session.send("two");
    const three = await session.send("three", { queueMode: "collect" });
    const four = await session.send("four").then(
      (h) => `accepted (${h.disposition})`,
      (e: unknown) => e,
    );
    expect(four).toBeInstanceOf(OverloadedError);
    expect((four as OverloadedError).code).toBe("OVERLOADED");
    const five = await session.send("five", { queueMode: "interrupt" }).then(
      (h) => `accepted (${h.disposition})`,
      (e: unknown) => e,
    );
    expect(five).toBeInstanceOf(OverloadedError);
    expect(await pendingTexts(store)).toEqual(["one", "two", "three"]);
    gate.release.resolve();
    // The refusals did not disturb the active run or the queued ones.
    expect((await one.result).status).toBe("completed");
    await Promise.all([two.result, three.result]);
    expect(source.asked()).toEqual(["one", "two", "three"]);
    expect(await pendingTexts(store)).toEqual([]);
  });

  it("a flood of steered messages is bounded too: beyond maxQueuedMessages it is overloaded", async () => {
    const { runtime, session, block } = await echoRuntime({ maxQueuedMessages: 3 });
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => session.send(`steer ${i}`, { queueMode: "steer" })),
    );
    const refused = outcomes.filter((o) => o.status === "rejected");
    expect(refused.length).toBeGreaterThan(0);
    for (const o of refused) expect(OverloadedError.isInstance(o.reason)).toBe(true);
    expect((await pendingTexts(runtime.store as MemoryStore)).length).toBeLessThanOrEqual(1 + 3);
    gate.release.resolve();
    await one.result;
  });

  /** A runtime whose session can be held inside a handler (a metadata write) to fill its mailbox. */
  async function heldSessionRuntime(options: Partial<AgentRuntimeOptions>) {
    const store = await newStore();
    const put = store.sessions.put.bind(store.sessions);
    let hold: Blocker | undefined;
    store.sessions.put = async (record) => {
      const h = hold;
      hold = undefined;
      if (h !== undefined) {
        h.entered.resolve();
        await h.release.promise;
      }
      return put(record);
    };
    const blockers = new Map<string, Blocker>();
    const source = new BrainSource(echoBrain(blockers));
    const runtime = await startRuntime({ models: source, store, ...options });
    const session = runtime.session(KEY);
    /** Holds the model call for `asked` (see `echoBrain`). */
    const block = (asked: string): Blocker => {
      const blocker = { entered: deferred(), release: deferred() };
      blockers.set(asked, blocker);
      return blocker;
    };
    await session.info(); // the session is alive
    /** Holds the session in a handler; resolves once it is held; returns the release. */
    const holdSession = async () => {
      const held: Blocker = { entered: deferred(), release: deferred() };
      hold = held;
      const patching = session.patch({ displayName: "busy" });
      await held.entered.promise;
      return async () => {
        held.release.resolve();
        await patching;
      };
    };
    return { store, source, runtime, session, holdSession, block };
  }

  it("a full session mailbox answers OverloadedError and keeps nothing of the refused messages", async () => {
    const { store, source, session, holdSession } = await heldSessionRuntime({ mailboxLimit: 2 });
    const release = await holdSession();
    const sends = Array.from({ length: 6 }, (_, i) => session.send(`m${i}`));
    let refused = 0;
    for (const send of sends) send.catch(() => refused++);
    await waitFor("the overflow to be refused", () => refused === 4);
    for (const send of sends.slice(2)) {
      expect(await failureOf(() => send)).toBeInstanceOf(OverloadedError);
    }
    expect((await pendingTexts(store)).sort()).toEqual(["m0", "m1"]);
    await release();
    const accepted = await Promise.all(sends.slice(0, 2));
    await Promise.all(accepted.map((h) => h.result));
    expect(source.asked().sort()).toEqual(["m0", "m1"]);
    expect(await pendingTexts(store)).toEqual([]);
  });

  it("a message refused as overloaded can be retried with the same idempotency key once there is room", async () => {
    const { session, holdSession } = await heldSessionRuntime({ mailboxLimit: 1 });
    const release = await holdSession();
    const first = session.send("first");
    const refused = await session.send("retry me", { idempotencyKey: "retry-1" }).then(
      (h) => `accepted (${h.disposition})`,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(OverloadedError);
    await release();
    await (await first).result;
    const retry = await session.send("retry me", { idempotencyKey: "retry-1" });
    expect(retry.disposition).toBe("started");
    expect((await retry.result).text).toBe("answer: retry me");
  });
  it("a send that joined a message by its idempotency key fails with that message's refusal instead of never settling", async () => {
    const { session, block, holdSession } = await heldSessionRuntime({ maxQueuedMessages: 1 });
    const first = block("first");
    const running = await session.send("first");
    await first.entered.promise;
    // The session's one waiting place is taken.
    const waiting = await session.send("waiting");
    // The session is held in a handler: the next message waits in its mailbox.
    const release = await holdSession();
    const original = session.send("again", { idempotencyKey: "k" });
    const joined = await session.send("again", { idempotencyKey: "k" });
    expect(joined.disposition).toBe("duplicate");
    await release();
    // The session refuses the message: both sends say so, and the key is free for a retry.
    expect(await failureOf(() => original)).toBeInstanceOf(OverloadedError);
    expect(await failureOf(() => joined.result)).toBeInstanceOf(OverloadedError);
    first.release.resolve();
    await running.result;
    await waiting.result;
    const retry = await session.send("again", { idempotencyKey: "k" });
    expect(retry.disposition).toBe("started");
    expect((await retry.result).text).toBe("answer: again");
  });
});

// ------------------------------------------------------------------ crash recovery

describe("crash recovery", () => {
  it("a killed session is restarted by its supervisor and replays the unfinished message exactly once, losing nothing acknowledged", async () => {
    const store = await newStore();
    const replayed: string[] = [];
    const replay = store.queue.replay.bind(store.queue);
    store.queue.replay = async (options) => {
      const out: QueuedMessage[] = await replay(options);
      for (const m of out)
        replayed.push(String((m.payload as { input: { text: string } }).input.text));
      return out;
    };
    let runtime!: AgentRuntime;
    let executions = 0;
    const killed = deferred<Process>();
    const crashTool = tool("crash", async (_input, ctx) => {
      executions++;
      if (executions === 1) {
        const actor = sessionActor(runtime, ctx.sessionKey)!;
        actor.kill();
        killed.resolve(actor);
        return await untilAborted(new Promise<JsonValue>(() => {}), ctx.signal);
      }
      return "survived";
    });
    const source = new BrainSource(({ request }) => {
      const last = request.messages.at(-1)!;
      if (last.role === "tool") return [text("done"), usage()];
      const asked = lastUser(request.messages);
      if (asked === "crash please") return [toolCall(`c${request.messages.length}`, "crash")];
      return [text(`answer: ${asked}`), usage()];
    });
    runtime = await startRuntime({
      models: source,
      store,
      agents: [{ ...MAIN, tools: ["crash"] }],
      tools: [crashTool],
    });
    const onSession = record(runtime.pubsub, `session:${KEY}`);
    const session = runtime.session(KEY);
    await (await session.send("first")).result;
    const before = sessionActor(runtime)!;

    const run = await session.send("crash please");
    const old = await killed.promise;
    expect(old).toBe(before);
    const acknowledged = (await session.history()).map((r) => r.entry);
    expect(acknowledged).toHaveLength(4); // first + its answer, the message and its tool call

    const restarted = await waitFor("the supervisor to restart the session", () => {
      const actor = sessionActor(runtime);
      return actor !== undefined && actor !== old && actor.status === "running" && actor;
    });
    expect(restarted.pid).not.toBe(old.pid);
    expect(old.status).toBe("stopped");

    const result = await run.result;
    expect(result).toMatchObject({ status: "completed", text: "done", runId: run.runId });
    expect(executions).toBe(2);
    // Replayed once, and the finished message never.
    expect(replayed).toEqual(["crash please"]);
    expect(source.asked().filter((t) => t === "first")).toHaveLength(1);
    expect(await pendingTexts(store)).toEqual([]);
    // Nothing acknowledged before the crash is lost or changed.
    const history = (await session.history()).map((r) => r.entry);
    expect(history.slice(0, 4)).toEqual(acknowledged);
    expect(history.filter((e) => textOf(e.message as never) === "done")).toHaveLength(1);
    expect(onSession.filter((e) => e.type === "run-end" && e.runId === run.runId)).toHaveLength(1);
  });

  it("a killed session's unfinished run is cancelled: its tools see the abort", async () => {
    let runtime!: AgentRuntime;
    let firstSignal: AbortSignal | undefined;
    let executions = 0;
    const crashTool = tool("crash", async (_input, ctx) => {
      executions++;
      if (executions === 1) {
        firstSignal = ctx.signal;
        sessionActor(runtime, ctx.sessionKey)!.kill();
        return await untilAborted(new Promise<JsonValue>(() => {}), ctx.signal);
      }
      return "survived";
    });
    const source = new BrainSource(({ request }) =>
      request.messages.at(-1)!.role === "tool" ? [text("done")] : [toolCall("c", "crash")],
    );
    runtime = await startRuntime({
      models: source,
      agents: [{ ...MAIN, tools: ["crash"] }],
      tools: [crashTool],
    });
    const run = await runtime.session(KEY).send("go");
    expect((await run.result).status).toBe("completed");
    expect(executions).toBe(2);
    // The crashed instance's run must not go on beside the replayed one.
    expect(firstSignal?.aborted).toBe(true);
  });

  it("a killed session's unfinished run is cancelled while it streams: the model call sees the abort", async () => {
    // kill() runs no terminate, and no tool is in flight: the run, stuck in its model call,
    // must still be cancelled, or it would go on beside the restarted session's replay.
    let firstSignal: AbortSignal | undefined;
    const streaming = deferred<void>();
    const source = new BrainSource(({ options, index }) => {
      if (index > 0) return [text("again")];
      firstSignal = options.signal;
      return (async function* () {
        yield text("partial");
        streaming.resolve();
        await untilAborted(new Promise<never>(() => {}), options.signal);
      })();
    });
    const runtime = await startRuntime({ models: source });
    const run = await runtime.session(KEY).send("go");
    await streaming.promise;
    sessionActor(runtime)!.kill();
    const result = await run.result;
    expect(result.status).toBe("completed");
    expect(result.text).toBe("again");
    expect(firstSignal?.aborted).toBe(true);
  });

  it("after a crash mid-tool the model is never sent a tool call without its result", async () => {
    let runtime!: AgentRuntime;
    let executions = 0;
    const source = new BrainSource(({ request }) =>
      request.messages.at(-1)!.role === "tool" ? [text("done")] : [toolCall("c", "crash")],
    );
    runtime = await startRuntime({
      models: source,
      agents: [{ ...MAIN, tools: ["crash"] }],
      tools: [
        tool("crash", async (_input, ctx) => {
          if (executions++ === 0) {
            sessionActor(runtime, ctx.sessionKey)!.kill();
            return await untilAborted(new Promise<JsonValue>(() => {}), ctx.signal);
          }
          return "ok";
        }),
      ],
    });
    expect((await (await runtime.session(KEY).send("go")).result).text).toBe("done");
    expect(source.calls.length).toBeGreaterThanOrEqual(3);
    for (const { request } of source.calls) {
      request.messages.forEach((message, i) => {
        if (message.role !== "assistant") return;
        const calls = message.content
          .filter((p) => p.type === "tool-call")
          .map((p) => p.toolCallId);
        if (calls.length === 0) return;
        const next = request.messages[i + 1];
        const answered = next?.role === "tool" ? next.content.map((r) => r.toolCallId) : [];
        expect(answered, `tool calls ${calls.join(",")} at message ${i}`).toEqual(calls);
      });
    }
  });

  it("a crash inside a handler is reported on the handle as SESSION_CRASHED and the message runs again after the restart", async () => {
    const store = await newStore();
    const put = store.sessions.put.bind(store.sessions);
    let failNextPut = false;
    store.sessions.put = async (record) => {
      if (failNextPut) {
        failNextPut = false;
        throw new StoreError("STORE_UNAVAILABLE", "disk hiccup");
      }
      return put(record);
    };
    let armed = true;
    const source = new BrainSource(({ request }) => {
      if (armed && lastUser(request.messages) === "fragile") {
        armed = false;
        failNextPut = true; // the metadata write at the end of this run fails
      }
      return [text(`answer: ${lastUser(request.messages)}`), usage()];
    });
    const runtime = await startRuntime({ models: source, store });
    const session = runtime.session(KEY);
    await (await session.send("steady")).result;
    const old = sessionActor(runtime)!;
    const run = await session.send("fragile");
    const events = await collect(run);
    expect(types(events)).toEqual([
      "run-start",
      "text-delta",
      "usage",
      "error",
      // The replay is the same run: what the crashed attempt streamed is withdrawn, and the
      // run does not start again.
      "text-reset",
      "text-delta",
      "usage",
      "run-end",
    ]);
    expect(events[3]).toMatchObject({ type: "error", error: { code: "SESSION_CRASHED" } });
    expect((await run.result).status).toBe("completed");
    expect(sessionActor(runtime)).not.toBe(old);
    expect(source.asked()).toEqual(["steady", "fragile", "fragile"]);
    expect(await pendingTexts(store)).toEqual([]);
    const history = await session.history();
    expect(userTexts(history.slice(0, 2).map((r) => r.entry.message as never))).toEqual(["steady"]);
  });
});

// ------------------------------------------------------------------ durable queue across restarts

describe("durable inbound queue across a runtime restart", () => {
  it("an unfinished message runs once in the next runtime; finished ones never rerun", async () => {
    const store = await newStore();
    const blockers = new Map<string, Blocker>();
    const source1 = new BrainSource(echoBrain(blockers));
    const runtime1 = new AgentRuntime({ store, models: source1, agents: [MAIN] });
    await runtime1.start();
    const session1 = runtime1.session(KEY);
    await (await session1.send("done before", { idempotencyKey: "k-done" })).result;
    const gate = { entered: deferred(), release: deferred() };
    blockers.set("unfinished", gate);
    const unfinished = await session1.send("unfinished", { idempotencyKey: "k-open" });
    await gate.entered.promise;
    await runtime1.stop();
    expect(source1.calls[1]!.options.signal?.aborted).toBe(true);
    const stopped = await failureOf(() => unfinished.result);
    expect(NoProcessError.isInstance(stopped)).toBe(true);
    expect(await pendingTexts(store)).toEqual(["unfinished"]);

    const source2 = new BrainSource(echoBrain(new Map()));
    const runtime2 = new AgentRuntime({ store, models: source2, agents: [MAIN] });
    const ends = record(runtime2.pubsub, "events:global");
    cleanups.push(() => runtime2.stop());
    await runtime2.start();
    await waitFor("the replayed run to end", () => ends.find((e) => e.type === "run-end"));
    const end = ends.find((e) => e.type === "run-end") as Extract<RunEvent, { type: "run-end" }>;
    expect(end.result).toMatchObject({ status: "completed", text: "answer: unfinished" });
    expect(end.runId).toBe(unfinished.runId);
    expect(source2.asked()).toEqual(["unfinished"]);
    expect(await pendingTexts(store)).toEqual([]);
    const texts = (await runtime2.session(KEY).history({ limit: 1000 })).map((r) =>
      textOf(r.entry.message as never),
    );
    expect(texts).toContain("answer: done before");
    expect(texts).toContain("answer: unfinished");
    // The finished message's key is still remembered.
    const again = await runtime2.session(KEY).send("done before", { idempotencyKey: "k-done" });
    await expect(again.result).rejects.toMatchObject({ code: "DUPLICATE" });
    await runtime2.stop();

    // A third start has nothing left to replay.
    const source3 = new BrainSource(echoBrain(new Map()));
    const runtime3 = new AgentRuntime({ store, models: source3, agents: [MAIN] });
    cleanups.push(() => runtime3.stop());
    await runtime3.start();
    expect(runtime3.activeSessions()).toEqual([]);
    expect(source3.calls).toHaveLength(0);
  });
});

// ------------------------------------------------------------------ hibernation

describe("hibernation", () => {
  it("an idle session is saved and dropped from memory; the next message revives it with its history and metadata", async () => {
    const { runtime, session, source } = await echoRuntime({ hibernateAfterMs: 30 });
    await (await session.send("remember me")).result;
    await session.patch({ displayName: "Bob's chat", verboseLevel: "on" });
    expect(runtime.activeSessions()).toContain(KEY);
    const actor = sessionActor(runtime)!;
    await waitFor("the session to hibernate", () => !runtime.activeSessions().includes(KEY));
    expect(actor.status).toBe("stopped");
    expect(actor.exitReason).toBe("normal");
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({
      runs: 1,
      displayName: "Bob's chat",
    });

    const run = await session.send("still there?");
    expect((await run.result).text).toBe("answer: still there?");
    expect(runtime.activeSessions()).toContain(KEY);
    expect(sessionActor(runtime)).not.toBe(actor);
    expect(userTexts(source.calls[1]!.request.messages)).toEqual(["remember me", "still there?"]);
    expect(textOf(source.calls[1]!.request.messages[1])).toBe("answer: remember me");
    const info = await session.info();
    expect(info.metadata).toMatchObject({ displayName: "Bob's chat", verboseLevel: "on", runs: 2 });
  });

  it("a session only asked about (info, abort) leaves no record when it hibernates or stops", async () => {
    const { runtime, session } = await echoRuntime({ hibernateAfterMs: 20 });
    expect((await session.info()).metadata.runs).toBe(0);
    expect(await session.abort("no-such-run")).toBe(false);
    await waitFor("the session to hibernate", () => !runtime.activeSessions().includes(KEY));
    expect(await runtime.store.sessions.get(KEY)).toBeUndefined();
    const other = runtime.session("agent:main:asked");
    expect((await other.info()).queued).toBe(0);
    await runtime.stop();
    expect(await runtime.store.sessions.get("agent:main:asked")).toBeUndefined();
    expect((await runtime.store.sessions.list({})).items).toEqual([]);
  });

  it("a session with an active run does not hibernate", async () => {
    const { runtime, session, block } = await echoRuntime({ hibernateAfterMs: 20 });
    const gate = block("long");
    const run = await session.send("long");
    await gate.entered.promise;
    const actor = sessionActor(runtime)!;
    await new Promise<void>((resolve) => setTimeout(resolve, 100));
    expect(actor.status).toBe("running");
    gate.release.resolve();
    expect((await run.result).status).toBe("completed");
    await waitFor("the session to hibernate once idle", () => actor.status === "stopped");
  });
});

// ------------------------------------------------------------------ patch, reset, delete

describe("patch, reset and delete", () => {
  it("patch sets and clears metadata fields, saves them, and the run uses the model override and thinking level", async () => {
    const { runtime, session, source } = await echoRuntime();
    const patched = await session.patch({
      displayName: "Ops room",
      channel: "discord",
      thinkingLevel: "high",
      verboseLevel: "full",
      modelOverride: "other/model-9",
    });
    expect(patched).toMatchObject({
      displayName: "Ops room",
      channel: "discord",
      thinkingLevel: "high",
      verboseLevel: "full",
      modelOverride: "other/model-9",
    });
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({ displayName: "Ops room" });
    await (await session.send("hi")).result;
    expect(source.calls[0]!.options.models[0]).toBe("other/model-9");
    expect(source.calls[0]!.request.thinking).toBe("high");
    const cleared = await session.patch({ modelOverride: null, channel: null });
    expect(cleared.modelOverride).toBeUndefined();
    expect(cleared.channel).toBeUndefined();
    expect(cleared.displayName).toBe("Ops room");
    await (await session.send("again", { model: "per/run" })).result;
    expect(source.calls[1]!.options.models[0]).toBe("per/run");
    await (await session.send("default")).result;
    expect(source.calls[2]!.options.models[0]).toBe("test/model-1");
  });

  it("patch of a field that cannot be patched is refused with InvalidArgumentError and the session keeps running", async () => {
    const { runtime, session, block } = await echoRuntime();
    const gate = block("busy");
    const run = await session.send("busy");
    await gate.entered.promise;
    const actor = sessionActor(runtime)!;
    const error = await failureOf(() => session.patch({ runs: 99 } as never));
    expect(error).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(actor.status).toBe("running");
    gate.release.resolve();
    expect((await run.result).status).toBe("completed");
  });

  it("reset clears the transcript and counters", async () => {
    const { session, source } = await echoRuntime();
    await (await session.send("old")).result;
    await session.reset();
    expect(await session.history()).toEqual([]);
    const info = await session.info();
    expect(info.metadata).toMatchObject({ runs: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 });
    expect(info.historyLength).toBe(0);
    await (await session.send("new")).result;
    expect(userTexts(source.calls[1]!.request.messages)).toEqual(["new"]);
  });

  it("reset of a key with no session leaves no record; a reset session keeps one", async () => {
    const { runtime, session } = await echoRuntime();
    const unknown = runtime.session("agent:main:never-used");
    await unknown.reset();
    expect(await runtime.store.sessions.get("agent:main:never-used")).toBeUndefined();
    await (await session.send("old")).result;
    await session.reset();
    expect(await runtime.store.sessions.get(KEY)).toMatchObject({ runs: 0 });
    await runtime.stop();
    expect((await runtime.store.sessions.list({})).items.map((r) => r.key)).toEqual([KEY]);
  });

  it("reset keeps the display name, channel, levels and model override", async () => {
    const { session } = await echoRuntime();
    await session.patch({
      displayName: "Keep me",
      channel: "slack",
      thinkingLevel: "low",
      verboseLevel: "on",
      modelOverride: "x/y",
    });
    await session.reset();
    expect((await session.info()).metadata).toMatchObject({
      displayName: "Keep me",
      channel: "slack",
      thinkingLevel: "low",
      verboseLevel: "on",
      modelOverride: "x/y",
    });
  });

  it("reset aborts the active and queued runs and leaves zero counters once they end", async () => {
    const { session, block } = await echoRuntime();
    const gate = block("active");
    const active = await session.send("active");
    await gate.entered.promise;
    const queued = await session.send("queued");
    await session.reset();
    expect((await active.result).status).toBe("aborted");
    expect((await queued.result).status).toBe("aborted");
    const info = await session.info();
    expect(await session.history()).toEqual([]);
    expect(info.metadata).toMatchObject({ runs: 0, inputTokens: 0, outputTokens: 0 });
  });

  it("delete stops the session and removes its metadata and transcript", async () => {
    const { runtime, session } = await echoRuntime();
    await (await session.send("bye")).result;
    expect(await session.delete()).toEqual({ existed: true });
    expect(runtime.activeSessions()).not.toContain(KEY);
    expect(await runtime.store.sessions.get(KEY)).toBeUndefined();
    expect(await session.history()).toEqual([]);
    expect(await session.delete()).toEqual({ existed: false });
  });

  it("delete with archiveTranscript moves the transcript to <key>:deleted:<ms>, whole, and the key starts empty", async () => {
    let now = 1_700_000_000_000;
    const { runtime, session } = await echoRuntime({ now: () => now });
    for (const text of ["one", "two"]) await (await session.send(text)).result;
    const before = await session.history({ limit: 1000 });
    now += 5;
    const result = await session.delete({ archiveTranscript: true });
    expect(result).toEqual({ existed: true, archivedAs: `${KEY}:deleted:1700000000005` });
    const archived = await runtime.store.transcripts.read(result.archivedAs!, { limit: 1000 });
    expect(archived.map((r) => r.entry)).toEqual(before.map((r) => r.entry));
    expect(await session.history()).toEqual([]);
    expect(await runtime.store.sessions.get(KEY)).toBeUndefined();
    // A new session under the key starts over; the archive can be taken up as a session.
    await (await session.send("three")).result;
    expect(await session.history()).toHaveLength(2);
    const revived = runtime.session(result.archivedAs!);
    expect((await revived.info()).historyLength).toBe(before.length);
    // Nothing to archive: nothing archived.
    const empty = runtime.session("agent:main:empty");
    await empty.patch({ displayName: "Empty" });
    expect(await empty.delete({ archiveTranscript: true })).toEqual({ existed: true });
  });

  it("delete refuses bad options with a typed error and deletes nothing", async () => {
    const { runtime, session } = await echoRuntime();
    await (await session.send("keep me")).result;
    for (const options of ["yes", 1, { archiveTranscript: "yes" }]) {
      const error = await failureOf(() => session.delete(options as never));
      expect(InvalidArgumentError.isInstance(error)).toBe(true);
    }
    expect(await runtime.store.sessions.get(KEY)).toBeDefined();
    expect(await session.history()).toHaveLength(2);
  });

  it("an archive the store fails to finish is removed, and the session and its transcript stay", async () => {
    const { runtime, session } = await echoRuntime();
    await (await session.send("precious")).result;
    const transcripts = runtime.store.transcripts;
    const append = transcripts.append.bind(transcripts);
    let archiveKey: string | undefined;
    transcripts.append = async (key, entries) => {
      if (key.includes(":deleted:")) {
        archiveKey = key;
        await append(key, entries.slice(0, 1));
        throw new StoreError("STORE_UNAVAILABLE", "disk gone");
      }
      return append(key, entries);
    };
    const error = await failureOf(() => session.delete({ archiveTranscript: true }));
    transcripts.append = append;
    expect(StoreError.isInstance(error)).toBe(true);
    expect(archiveKey).toBeDefined();
    expect(await runtime.store.transcripts.read(archiveKey!)).toEqual([]);
    expect(await session.history()).toHaveLength(2);
    expect(await runtime.store.sessions.get(KEY)).toBeDefined();
    // Tried again, it goes through.
    expect((await session.delete({ archiveTranscript: true })).archivedAs).toMatch(/:deleted:/);
  });

  it("delete drops the session's queued messages, so nothing of it comes back", async () => {
    const { runtime, session, block } = await echoRuntime();
    const gate = block("one");
    await session.send("one");
    await gate.entered.promise;
    await session.send("two");
    await session.delete();
    expect(await pendingTexts(runtime.store as MemoryStore)).toEqual([]);
  });

  it("delete during a session's first run leaves no record behind", async () => {
    const { runtime, session, block } = await echoRuntime();
    const gate = block("first");
    const run = await session.send("first");
    await gate.entered.promise;
    await waitFor("the first record", () => runtime.store.sessions.get(KEY));
    expect(await session.delete()).toEqual({ existed: true });
    expect((await run.result).error?.code).toBe("SESSION_DELETED");
    expect(await runtime.store.sessions.get(KEY)).toBeUndefined();
    expect((await runtime.store.sessions.list({})).items).toEqual([]);
    expect(await session.history()).toEqual([]);
  });

  it("delete says a new session existed when its record is not written yet (its first run's messages are)", async () => {
    const { runtime, session, run } = await firstRunWithoutRecord();
    expect(await session.delete()).toEqual({ existed: true });
    expect((await run.result).error?.code).toBe("SESSION_DELETED");
    expect(await runtime.store.transcripts.lastSeq(KEY)).toBe(0);
    expect(await session.delete()).toEqual({ existed: false });
  });

  it("delete ends the active and queued runs as aborted (SESSION_DELETED), for handles and subscribers", async () => {
    const { runtime, session, block } = await echoRuntime();
    const ends: RunEvent[] = [];
    const off = await runtime.pubsub.subscribe(`session:${KEY}`, (event) => {
      if ((event as RunEvent).type === "run-end") ends.push(event as RunEvent);
    });
    const gate = block("one");
    const one = await session.send("one");
    await gate.entered.promise;
    const two = await session.send("two");
    const events = collect(one);
    await session.delete();
    const results = [await one.result, await two.result];
    expect(results.map((r) => [r.status, r.error?.code])).toEqual([
      ["aborted", "SESSION_DELETED"],
      ["aborted", "SESSION_DELETED"],
    ]);
    expect((await events).at(-1)?.type).toBe("run-end");
    expect(ends.map((e) => e.runId).sort()).toEqual([one.runId, two.runId].sort());
    await off();
  });
});

// ------------------------------------------------------------------ sub-agents

describe("sub-agents", () => {
  /** Tool results of the last tool message of a request. */
  const toolResults = (messages: readonly ModelMessage[]): ToolResultPart[] => {
    const last = [...messages].reverse().find((m) => m.role === "tool");
    return last?.role === "tool" ? last.content : [];
  };

  /**
   * A brain for a parent and its sub-agents: a session whose first user text starts with
   * "TASK" is a sub-agent; `child` answers it. The parent spawns `spawns` at its first step and
   * reports the tool results at the next.
   */
  function familyBrain(
    spawns: string[],
    child: (task: string, call: SourceCall) => SourceEvent[] | AsyncGenerator<SourceEvent>,
  ): Brain {
    return (call) => {
      const first = firstUser(call.request.messages) ?? "";
      if (first.startsWith("TASK")) return child(first, call);
      const last = call.request.messages.at(-1)!;
      if (last.role === "tool") {
        return [text(`parent got: ${JSON.stringify(toolResults(call.request.messages))}`)];
      }
      return spawns.map((task, i) => toolCall(`s${i}`, "spawn_subagent", { task }));
    };
  }

  async function subagentSessions(runtime: AgentRuntime) {
    const page = await runtime.store.sessions.list({ limit: 1000 });
    return page.items.filter((r) => r.parentKey !== undefined);
  }

  it("spawn_subagent is offered only to agents that set subagents", async () => {
    const source = new BrainSource(() => [text("ok")]);
    const runtime = await startRuntime({
      models: source,
      agents: [MAIN, { id: "boss", model: "test/boss", subagents: {} }],
    });
    await (await runtime.session(KEY).send("a")).result;
    await (await runtime.session("agent:boss:main").send("b")).result;
    expect(source.calls[0]!.request.tools).toBeUndefined();
    expect(source.calls[1]!.request.tools?.map((t) => t.name)).toEqual(["spawn_subagent"]);
  });

  it("a sub-agent runs its task in an agent:<id>:subagent:<uuid> session and its final text becomes the tool result", async () => {
    const source = new BrainSource(
      familyBrain(["TASK: count the files"], (task) => [text(`42 (for ${task})`), usage()]),
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: {} }],
    });
    const parentKey = "agent:boss:main";
    const run = await runtime.session(parentKey).send("delegate it");
    const result = await run.result;
    expect(result.status).toBe("completed");
    const results = toolResults(source.calls.at(-1)!.request.messages);
    expect(results).toEqual([
      {
        type: "tool-result",
        toolCallId: "s0",
        toolName: "spawn_subagent",
        output: "42 (for TASK: count the files)",
      },
    ]);
    const children = await subagentSessions(runtime);
    expect(children).toHaveLength(1);
    const child = children[0]!;
    expect(child.key).toMatch(/^agent:boss:subagent:[0-9a-f-]{36}$/);
    expect(child.parentKey).toBe(parentKey);
    expect(child.agentId).toBe("boss");
    const transcript = await runtime.session(child.key).history();
    expect(transcript.map((r) => textOf(r.entry.message as never))).toEqual([
      "TASK: count the files",
      "42 (for TASK: count the files)",
    ]);
    // The sub-agent (depth 1) was not offered the spawn tool.
    const childCall = source.calls.find((c) => firstUser(c.request.messages)?.startsWith("TASK"));
    expect(childCall?.request.tools).toBeUndefined();
  });

  it("a sub-agent whose agent has a structured output reports the value to its parent", async () => {
    const source = new BrainSource(
      familyBrain(["TASK: count the files"], (_task, call) => {
        // The child's request asks for the format; its answer conforms.
        expect(call.request.responseFormat?.name).toBe("count");
        return [text('{"files":42}'), usage()];
      }),
    );
    const runtime = await startRuntime({
      models: source,
      agents: [
        { id: "boss", model: "test/boss", subagents: { agentId: "counter" } },
        {
          id: "counter",
          model: "test/counter",
          output: {
            name: "count",
            schema: {
              type: "object",
              properties: { files: { type: "integer" } },
              required: ["files"],
            },
          },
        },
      ],
    });
    const result = await (await runtime.session("agent:boss:main").send("delegate it")).result;
    expect(result.status).toBe("completed");
    expect(toolResults(source.calls.at(-1)!.request.messages)).toEqual([
      { type: "tool-result", toolCallId: "s0", toolName: "spawn_subagent", output: { files: 42 } },
    ]);
  });

  it("a sub-agent cannot spawn further at depth 1, even if its model tries", async () => {
    const source = new BrainSource(
      familyBrain(["TASK: try to nest"], (_task, call) =>
        call.request.messages.at(-1)!.role === "tool"
          ? [text(`child saw: ${JSON.stringify(toolResults(call.request.messages))}`)]
          : [toolCall("n1", "spawn_subagent", { task: "TASK: grandchild" })],
      ),
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: {} }],
    });
    await (await runtime.session("agent:boss:main").send("go")).result;
    const children = await subagentSessions(runtime);
    expect(children).toHaveLength(1);
    const childAnswer = toolResults(source.calls.at(-1)!.request.messages)[0]!;
    expect(childAnswer.isError).toBeUndefined();
    expect(String(childAnswer.output)).toContain("not available");
    expect(source.calls.some((c) => firstUser(c.request.messages) === "TASK: grandchild")).toBe(
      false,
    );
  });

  it("maxDepth 2 lets a sub-agent spawn exactly one more level", async () => {
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      const last = call.request.messages.at(-1)!;
      const offered = call.request.tools?.map((t) => t.name) ?? [];
      if (first === "TASK2") return [text(`deep; offered=${offered.join(",")}`)];
      if (last.role === "tool")
        return [text(String(toolResults(call.request.messages)[0]?.output))];
      const task = first === "TASK1" ? "TASK2" : "TASK1";
      return [toolCall("s", "spawn_subagent", { task })];
    });
    const runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { maxDepth: 2 } }],
    });
    const result = await (await runtime.session("agent:boss:main").send("go")).result;
    expect(result.text).toBe("deep; offered=");
    const depths = (await subagentSessions(runtime)).map(
      (r) => r.key.split(":subagent:").length - 1,
    );
    expect(depths.sort()).toEqual([1, 2]);
  });

  it("maxChildren refuses spawns beyond the parent's total", async () => {
    const source = new BrainSource(
      familyBrain(["TASK a", "TASK b", "TASK c"], (task) => [text(`did ${task}`)]),
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { maxChildren: 2 } }],
    });
    await (await runtime.session("agent:boss:main").send("go")).result;
    const results = toolResults(source.calls.at(-1)!.request.messages);
    expect(results.map((r) => r.isError === true)).toEqual([false, false, true]);
    expect(String(results[2]!.output)).toContain("limit");
    expect(await subagentSessions(runtime)).toHaveLength(2);
  });

  it("maxChildren counts in the parent's metadata: a restart on the same store keeps it", async () => {
    const store = await newStore();
    const boss = { id: "boss", model: "test/boss", subagents: { maxChildren: 2 } };
    const first = new BrainSource(
      familyBrain(["TASK a", "TASK b"], (task) => [text(`did ${task}`)]),
    );
    const before = await startRuntime({ models: first, store, agents: [boss] });
    await (await before.session("agent:boss:main").send("go")).result;
    expect((await before.session("agent:boss:main").info()).metadata.subagentsSpawned).toBe(2);
    await before.stop();
    const second = new BrainSource(familyBrain(["TASK c"], (task) => [text(`did ${task}`)]));
    const after = await startRuntime({ models: second, store, agents: [boss] });
    await (await after.session("agent:boss:main").send("again")).result;
    const results = toolResults(second.calls.at(-1)!.request.messages);
    expect(results.map((r) => r.isError === true)).toEqual([true]);
    expect(String(results[0]!.output)).toContain("already spawned 2");
    expect(await subagentSessions(after)).toHaveLength(2);
  });

  it("a sub-agent's sub-agent runs as the agent its parent's limits name", async () => {
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      const last = call.request.messages.at(-1)!;
      if (first === "TASK2") return [text(`deep as ${call.options.models?.[0]}`)];
      if (last.role === "tool")
        return [text(String(toolResults(call.request.messages)[0]?.output))];
      const task = first === "TASK1" ? "TASK2" : "TASK1";
      return [toolCall("s", "spawn_subagent", { task })];
    });
    const runtime = await startRuntime({
      models: source,
      agents: [
        { id: "boss", model: "test/boss", subagents: { agentId: "worker" } },
        { id: "worker", model: "test/worker", subagents: { maxDepth: 2, agentId: "helper" } },
        { id: "helper", model: "test/helper" },
      ],
    });
    const result = await (await runtime.session("agent:boss:main").send("go")).result;
    const records = await subagentSessions(runtime);
    const grandchild = records.find((r) => r.key.split(":subagent:").length === 3);
    expect(grandchild?.key).toMatch(/^agent:helper:subagent:[^:]+:subagent:[^:]+$/);
    expect(grandchild?.agentId).toBe("helper");
    expect(result.text).toBe("deep as test/helper");
  });

  it("maxConcurrent refuses spawns beyond the running limit; a later spawn is accepted", async () => {
    let step = 0;
    const source = new BrainSource((call) => {
      const first = firstUser(call.request.messages) ?? "";
      if (first.startsWith("TASK")) return [text(`did ${first}`)];
      step++;
      if (step === 1) {
        return [
          toolCall("a", "spawn_subagent", { task: "TASK a" }),
          toolCall("b", "spawn_subagent", { task: "TASK b" }),
        ];
      }
      if (step === 2) return [toolCall("c", "spawn_subagent", { task: "TASK c" })];
      return [text("finished")];
    });
    const runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { maxConcurrent: 1 } }],
    });
    await (await runtime.session("agent:boss:main").send("go")).result;
    const parentCalls = source.calls.filter((c) => firstUser(c.request.messages) === "go");
    const firstResults = toolResults(parentCalls[1]!.request.messages);
    expect(firstResults.map((r) => r.isError === true)).toEqual([false, true]);
    expect(String(firstResults[1]!.output)).toContain("already running");
    const secondResults = toolResults(parentCalls[2]!.request.messages);
    expect(secondResults).toMatchObject([{ toolCallId: "c", output: "did TASK c" }]);
  });

  it("a sub-agent that does not report within timeoutMs is stopped and the parent gets an error result", async () => {
    let childSignal: AbortSignal | undefined;
    const source = new BrainSource(
      familyBrain(["TASK: forever"], (_task, call) =>
        (async function* () {
          childSignal = call.options.signal;
          await untilAborted(new Promise<void>(() => {}), call.options.signal);
          yield text("never");
        })(),
      ),
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: { timeoutMs: 40 } }],
    });
    const result = await (await runtime.session("agent:boss:main").send("go")).result;
    expect(result.status).toBe("completed");
    const [toolResult] = toolResults(source.calls.at(-1)!.request.messages);
    expect(toolResult?.isError).toBe(true);
    expect(String(toolResult?.output)).toContain("aborted");
    expect(String(toolResult?.output)).toContain("went past its time limit of 40 ms");
    expect(childSignal?.aborted).toBe(true);
  });

  it("a failing sub-agent is reported to the parent as an error result", async () => {
    const source = new BrainSource(
      familyBrain(["TASK: fail"], () =>
        // biome-ignore lint/correctness/useYield: a model call that fails at once
        (async function* () {
          throw new ProviderError("model melted", { kind: "server", provider: "test" });
        })(),
      ),
    );
    const runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: {} }],
    });
    const result = await (await runtime.session("agent:boss:main").send("go")).result;
    expect(result.status).toBe("completed");
    const [toolResult] = toolResults(source.calls.at(-1)!.request.messages);
    expect(toolResult?.isError).toBe(true);
    expect(String(toolResult?.output)).toContain("failed");
    expect(String(toolResult?.output)).toContain("model melted");
  });

  it("a sub-agent session that crashes is restarted and still reports its answer to the parent", async () => {
    let runtime!: AgentRuntime;
    let crashes = 0;
    const source = new BrainSource(
      familyBrain(["TASK: fragile"], (_task, call) =>
        call.request.messages.at(-1)!.role === "tool"
          ? [text("child recovered")]
          : [toolCall("k", "crash")],
      ),
    );
    runtime = await startRuntime({
      models: source,
      agents: [{ id: "boss", model: "test/boss", subagents: {}, tools: ["crash"] }],
      tools: [
        tool("crash", async (_input, ctx) => {
          if (crashes++ === 0) {
            sessionActor(runtime, ctx.sessionKey)!.kill();
            return await untilAborted(new Promise<JsonValue>(() => {}), ctx.signal);
          }
          return "ok";
        }),
      ],
    });
    const result = await (await runtime.session("agent:boss:main").send("go")).result;
    expect(crashes).toBe(2);
    expect(toolResults(source.calls.at(-1)!.request.messages)).toMatchObject([
      { toolName: "spawn_subagent", output: "child recovered" },
    ]);
    expect(result.status).toBe("completed");
  });
});

// ------------------------------------------------------------------ usage

describe("usage metering", () => {
  it("usage and cost are totalled per session, agent, provider and day, and persisted to kv", async () => {
    const at = Date.UTC(2025, 5, 1, 12, 0, 0);
    const day = usageDay(at);
    expect(day).toBe("2025-06-01");
    const source = new BrainSource(() => [text("ok"), usage({ inputTokens: 10, outputTokens: 5 })]);
    const runtime = await startRuntime({
      models: source,
      now: () => at,
      agents: [MAIN, { id: "ops", model: "beta/m2" }],
      cost: (ref) => (ref.startsWith("test/") ? 0.5 : 1),
    });
    await (await runtime.session(KEY).send("1")).result;
    await (await runtime.session(KEY).send("2")).result;
    await (await runtime.session("agent:main:direct:bob").send("3")).result;
    await (await runtime.session("agent:ops:main").send("4")).result;

    expect(runtime.usage.totals({ sessionKey: KEY })).toEqual({
      calls: 2,
      inputTokens: 20,
      outputTokens: 10,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      costUsd: 1,
    });
    expect(runtime.usage.totals({ agentId: "main" })).toMatchObject({
      calls: 3,
      inputTokens: 30,
      costUsd: 1.5,
    });
    expect(runtime.usage.totals({ agentId: "ops" })).toMatchObject({ calls: 1, costUsd: 1 });
    expect(runtime.usage.totals({ provider: "test" })).toMatchObject({ calls: 3 });
    expect(runtime.usage.totals({ provider: "beta", model: "m2" })).toMatchObject({ calls: 1 });
    expect(runtime.usage.totals({ day })).toMatchObject({
      calls: 4,
      inputTokens: 40,
      costUsd: 2.5,
    });
    expect(runtime.usage.totals({ day: "2025-06-02" }).calls).toBe(0);
    expect((await runtime.session(KEY).info()).metadata.costUsd).toBeCloseTo(1, 10);

    await runtime.usage.flush();
    const persisted = await runtime.usage.persisted(day);
    expect(persisted).toEqual([
      {
        key: `usage:${day}:main:test:model-1`,
        totals: {
          calls: 3,
          inputTokens: 30,
          outputTokens: 15,
          cacheReadTokens: 0,
          cacheWriteTokens: 0,
          costUsd: 1.5,
        },
      },
      {
        key: `usage:${day}:ops:beta:m2`,
        totals: {
          calls: 1,
          inputTokens: 10,
          outputTokens: 5,
          cacheReadTokens: 0,
          cacheWriteTokens: 0,
          costUsd: 1,
        },
      },
    ]);
    expect(await runtime.usage.persisted("2025-06-02")).toEqual([]);
  });
});

// ------------------------------------------------------------------ errors and lifecycle

describe("typed errors and lifecycle", () => {
  it("a malformed key is refused with InvalidSessionKeyError before anything starts", async () => {
    const { runtime } = await echoRuntime();
    for (const key of ["agent:main:../x", "agent:main", "nope:main:main", ""]) {
      const error = await failureOf(() => runtime.session(key));
      expect(error).toBeInstanceOf(InvalidSessionKeyError);
      expect((error as InvalidSessionKeyError).code).toBe("INVALID_SESSION_KEY");
    }
    expect(runtime.activeSessions()).toEqual([]);
  });

  it("an unknown agent is refused with InvalidArgumentError", async () => {
    const { runtime } = await echoRuntime();
    const error = await failureOf(() => runtime.session("agent:nobody:main"));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).code).toBe("INVALID_ARGUMENT");
  });

  it("a cron:<jobId> session belongs to the default agent", async () => {
    const source = new BrainSource(() => [text("ran")]);
    const runtime = await startRuntime({
      models: source,
      agents: [MAIN, { id: "ops", model: "ops/model" }],
      defaultAgentId: "ops",
    });
    const session = runtime.session("CRON:Nightly");
    expect(session.key).toBe("cron:nightly");
    expect(session.agentId).toBe("ops");
    const events = await collect(await session.send("run the job"));
    expect(events[0]).toMatchObject({ type: "run-start", agentId: "ops" });
    expect(source.calls[0]!.options.models[0]).toBe("ops/model");
  });

  it("a message without a text string is refused with InvalidArgumentError", async () => {
    const { session } = await echoRuntime();
    const error = await failureOf(() => session.send({ text: 42 } as never));
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
  });

  it("send before start and after stop is refused with NoProcessError", async () => {
    const store = await newStore();
    const runtime = new AgentRuntime({
      store,
      models: new BrainSource(() => [text("x")]),
      agents: [MAIN],
    });
    cleanups.push(() => runtime.stop());
    const early = await failureOf(() => runtime.session(KEY).send("too early"));
    expect(NoProcessError.isInstance(early)).toBe(true);
    await runtime.start();
    await (await runtime.session(KEY).send("ok")).result;
    await runtime.stop();
    const late = await failureOf(() => runtime.session(KEY).send("too late"));
    expect(NoProcessError.isInstance(late)).toBe(true);
    expect(NoProcessError.isInstance(await failureOf(() => runtime.session(KEY).info()))).toBe(
      true,
    );
    expect(await pendingTexts(store)).toEqual([]);
  });

  it("start twice is refused with AlreadyStartedError", async () => {
    const { runtime } = await echoRuntime();
    expect(await failureOf(() => runtime.start())).toBeInstanceOf(AlreadyStartedError);
  });

  it("a runtime needs at least one agent with a provider/model reference", () => {
    const store = new MemoryStore();
    const models = new BrainSource(() => []);
    expect(() => new AgentRuntime({ store, models, agents: [] })).toThrow(InvalidArgumentError);
    expect(
      () => new AgentRuntime({ store, models, agents: [{ id: "main", model: "no-slash" }] }),
    ).toThrow(InvalidArgumentError);
    expect(
      () => new AgentRuntime({ store, models, agents: [MAIN, { ...MAIN, id: "MAIN" }] }),
    ).toThrow(InvalidArgumentError);
    expect(
      () => new AgentRuntime({ store, models, agents: [{ id: "bad id", model: "a/b" }] }),
    ).toThrow(InvalidSessionKeyError);
  });

  it("stop() aborts active runs, fails their handles with NoProcessError and leaves no timer behind", async () => {
    const before = activeTimeouts();
    const store = await newStore();
    const blockers = new Map<string, Blocker>();
    const source = new BrainSource(echoBrain(blockers));
    const runtime = new AgentRuntime({ store, models: source, agents: [MAIN] });
    await runtime.start();
    await (await runtime.session("agent:main:direct:a").send("idle one")).result;
    const gate = { entered: deferred(), release: deferred() };
    blockers.set("busy", gate);
    const busy = await runtime.session(KEY).send("busy");
    await gate.entered.promise;
    // Idle sessions hold a hibernation timer while they live.
    expect(activeTimeouts()).toBeGreaterThan(before);
    await runtime.stop();
    expect(NoProcessError.isInstance(await failureOf(() => busy.result))).toBe(true);
    expect(source.calls.at(-1)!.options.signal?.aborted).toBe(true);
    expect(runtime.activeSessions()).toEqual([]);
    expect(activeTimeouts()).toBe(before);
    await runtime.stop(); // idempotent
  });
});
