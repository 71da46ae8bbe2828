/**
 * The cheap paths a turn takes, held to the same guarantees as the general ones: tasks that
 * finish synchronously, task and provider signals made only when read, the hand-written
 * run-event iterator, and batched usage writes.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { AbortedError, StoreError, TaskCrashedError, TimeoutError } from "../src/errors.js";
import { createProviderChain } from "../src/providers/chain.js";
import type { ModelCallOptions, ModelProvider, ModelRequest } from "../src/providers/types.js";
import { CANCELLATION, Cancellation, defineLazySignal } from "../src/runtime/lazy-abort.js";
import { TaskSupervisor } from "../src/runtime/task-supervisor.js";
import { RunEventLog } from "../src/sessions/run-handle.js";
import { AgentRuntime } from "../src/sessions/runtime.js";
import type { RunEvent } from "../src/sessions/types.js";
import { UsageMeter, usageDay } from "../src/sessions/usage.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { defineTool } from "../src/tools/define-tool.js";
import { SupervisedToolRunner, ToolRegistry } from "../src/tools/registry.js";
import { activeTimeouts, deferred, failureOf, readAll, tick, waitFor } from "./support.js";

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

async function tasks(): Promise<TaskSupervisor> {
  const supervisor = await new TaskSupervisor({ name: "tools" }).start();
  stops.push(() => supervisor.stop());
  return supervisor;
}

describe("TaskSupervisor: synchronous tasks and lazy signals", () => {
  it("a task that returns synchronously resolves with its value and arms no timer", async () => {
    const supervisor = await tasks();
    const before = activeTimeouts();
    const result = supervisor.run(() => 42, { timeoutMs: 60_000 });
    expect(activeTimeouts()).toBe(before);
    expect(await result).toBe(42);
    expect(supervisor.activeCount).toBe(0);
  });

  it("a task that throws synchronously rejects with its error, or TaskCrashedError for a non-error", async () => {
    const supervisor = await tasks();
    const boom = new Error("boom");
    expect(
      await failureOf(() =>
        supervisor.run(() => {
          throw boom;
        }),
      ),
    ).toBe(boom);
    const crashed = await failureOf(() =>
      supervisor.run(() => {
        throw "not an error";
      }),
    );
    expect(TaskCrashedError.isInstance(crashed)).toBe(true);
  });

  it("a task that reads its signal only after an await still sees its timeout abort it", async () => {
    const supervisor = await tasks();
    let seen: AbortSignal | undefined;
    const error = await failureOf(() =>
      supervisor.run(
        async (context) => {
          await tick();
          seen = context.signal;
          await new Promise((resolve) => seen!.addEventListener("abort", resolve, { once: true }));
          return "late";
        },
        { timeoutMs: 20 },
      ),
    );
    expect(TimeoutError.isInstance(error)).toBe(true);
    expect(seen?.aborted).toBe(true);
  });

  it("a running task is aborted with its caller's signal", async () => {
    const supervisor = await tasks();
    const caller = new AbortController();
    let signal: AbortSignal | undefined;
    const running = supervisor.run(
      (context) => {
        signal = context.signal;
        return new Promise((_, reject) =>
          signal!.addEventListener("abort", () => reject(signal!.reason), { once: true }),
        );
      },
      { signal: caller.signal },
    );
    caller.abort(new Error("stop"));
    expect(AbortedError.isInstance(await failureOf(() => running))).toBe(true);
    expect(signal?.aborted).toBe(true);
  });
});

describe("TaskSupervisor: a task cancelled by the run's cancellation", () => {
  it("is aborted, with its signal, when the cancellation aborts", async () => {
    const supervisor = await tasks();
    const cancellation = new Cancellation();
    const started = deferred();
    let context: { signal: AbortSignal } | undefined;
    const running = supervisor.run(
      async (task) => {
        context = task;
        started.resolve();
        // Settles on abort, as a well-behaved task does, so that the supervisor stops at once.
        await new Promise((resolve) => task.signal.addEventListener("abort", resolve));
      },
      { timeoutMs: 60_000, name: "hung", [CANCELLATION]: cancellation },
    );
    await started.promise;
    cancellation.abort(new Error("user stop"));
    const error = await failureOf(() => running);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe("hung was aborted");
    expect(((error as Error).cause as Error).message).toBe("user stop");
    expect(context?.signal.aborted).toBe(true);
  });

  it("refuses to start under a cancellation already aborted", async () => {
    const supervisor = await tasks();
    const cancellation = new Cancellation();
    cancellation.abort("earlier");
    let ran = false;
    const error = await failureOf(() =>
      supervisor.run(
        () => {
          ran = true;
        },
        { [CANCELLATION]: cancellation },
      ),
    );
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as AbortedError).cause).toBe("earlier");
    expect(ran).toBe(false);
  });
});

describe("AgentRuntime: a run's AbortSignal is made only when read", () => {
  /** Counts the distinct AbortSignals made (read from an AbortController) while it is on. */
  function countSignals(): { made: () => number; restore: () => void } {
    const descriptor = Object.getOwnPropertyDescriptor(AbortController.prototype, "signal")!;
    const seen = new Set<AbortSignal>();
    Object.defineProperty(AbortController.prototype, "signal", {
      ...descriptor,
      get(this: AbortController) {
        const signal = descriptor.get!.call(this) as AbortSignal;
        seen.add(signal);
        return signal;
      },
    });
    return {
      made: () => seen.size,
      restore: () => Object.defineProperty(AbortController.prototype, "signal", descriptor),
    };
  }

  /**
   * A provider that never reads its options' signal: asks for the `clock` tool, then streams
   * "partial" and finishes; `hang.on` makes it hang after "partial" (never settling, as a
   * stuck connection).
   */
  function quietProvider(hang: { on: boolean; entered?: () => void }): ModelProvider {
    return {
      specificationVersion: "v1",
      id: "p",
      async *stream(req: ModelRequest) {
        const last = req.messages[req.messages.length - 1];
        if (last?.role !== "tool") {
          yield {
            type: "tool-call",
            toolCallId: `c${req.messages.length}`,
            toolName: "clock",
            input: {},
          };
          yield { type: "finish", reason: "tool-calls" };
          return;
        }
        yield { type: "text-delta", text: "partial" };
        if (hang.on) {
          hang.entered?.();
          await new Promise(() => {});
        }
        yield { type: "finish", reason: "stop" };
      },
    };
  }

  async function runtimeWith(
    provider: ModelProvider,
    execute: (input: unknown, context: { signal: AbortSignal }) => unknown,
  ) {
    const store = new MemoryStore();
    await store.open();
    const clock = defineTool({
      name: "clock",
      description: "the time",
      parameters: z.object({}),
      execute: execute as () => string,
    });
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: ["p/m"] }),
      agents: [{ id: "main", model: "p/m", tools: ["clock"] }],
      tools: [clock],
    });
    await runtime.start();
    stops.push(async () => {
      await runtime.stop();
      await store.close();
    });
    return runtime.session("agent:main:main");
  }

  it("makes none for a turn whose provider and tools never read one", async () => {
    // On from before the runtime starts, so that signals made earlier (the session's own,
    // made once for its lifetime) are known when read again.
    const counter = countSignals();
    try {
      const session = await runtimeWith(quietProvider({ on: false }), () => "12:00");
      expect((await (await session.send("first")).result).status).toBe("completed");
      const before = counter.made();
      for (let i = 0; i < 3; i++) {
        const run = await session.send(`turn ${i}`);
        const result = await run.result;
        expect(result.status).toBe("completed");
        expect(result.text).toBe("partial");
      }
      expect(counter.made() - before).toBe(0);
    } finally {
      counter.restore();
    }
  });

  it("still aborts a run whose hung provider never reads its signal", async () => {
    const entered = deferred();
    const session = await runtimeWith(
      quietProvider({ on: true, entered: () => entered.resolve() }),
      () => "12:00",
    );
    const run = await session.send("hang");
    await entered.promise;
    expect(await run.abort()).toBe(true);
    const result = await run.result;
    expect(result.status).toBe("aborted");
  });

  it("still aborts a hung tool that never reads its signal, and one that reads it late sees it aborted", async () => {
    const entered = deferred();
    let late: AbortSignal | undefined;
    const session = await runtimeWith(
      quietProvider({ on: false }),
      async (_input: unknown, context: { signal: AbortSignal }) => {
        entered.resolve();
        await new Promise((resolve) => setTimeout(resolve, 5));
        late = context.signal;
        // Settles on abort, so that the tool supervisor stops at once after the test.
        await new Promise((resolve) => late!.addEventListener("abort", resolve));
      },
    );
    const run = await session.send("tool hangs");
    await entered.promise;
    await waitFor("the tool to read its signal", () => late);
    expect(late?.aborted).toBe(false);
    expect(await run.abort()).toBe(true);
    expect((await run.result).status).toBe("aborted");
    expect(late?.aborted).toBe(true);
  });
});

describe("ProviderChain: the provider's signal is made when read", () => {
  function provider(readSignalAt: "never" | "end"): {
    provider: ModelProvider;
    signals: AbortSignal[];
  } {
    const signals: AbortSignal[] = [];
    return {
      signals,
      provider: {
        specificationVersion: "v1",
        id: "p",
        async *stream(_request: ModelRequest, options?: ModelCallOptions) {
          yield { type: "text-delta", text: "a" };
          yield { type: "text-delta", text: "b" };
          if (readSignalAt === "end" && options?.signal !== undefined) signals.push(options.signal);
          yield { type: "finish", reason: "stop" };
        },
      },
    };
  }
  const request = {
    messages: [{ role: "user" as const, content: [{ type: "text" as const, text: "hi" }] }],
  };

  it("hands the provider the caller's other options, but not the chain's own or the run's cancellation", async () => {
    const seen: ModelCallOptions[] = [];
    const spy: ModelProvider = {
      specificationVersion: "v1",
      id: "p",
      async *stream(_req, options) {
        seen.push(options!);
        yield { type: "finish", reason: "stop" };
      },
    };
    const chain = createProviderChain({ providers: [spy], models: ["p/m"] });
    const tag = Symbol("tag");
    const cancellation = new Cancellation();
    const caller = new AbortController();
    const options = {
      headers: { "x-trace": "1" },
      [tag]: "kept",
      models: ["p/m"],
      telemetry: { agent: "main" },
      signal: caller.signal,
      [CANCELLATION]: cancellation,
    };
    for await (const _ of chain.stream(request, options)) {
      // drain
    }
    const given = seen[0] as Record<PropertyKey, unknown>;
    expect(given.headers).toEqual({ "x-trace": "1" });
    expect(given[tag]).toBe("kept");
    expect(Object.keys(given).sort()).toEqual(["headers", "signal"]);
    expect(Object.getOwnPropertySymbols(given)).toEqual([tag]);
    // The provider's signal is the call's own, not the caller's.
    expect(given.signal).toBeInstanceOf(AbortSignal);
    expect(given.signal).not.toBe(caller.signal);
  });

  it("cancels the provider's signal when the run's cancellation aborts, without making the run's", async () => {
    const entered = deferred();
    let providerSignal: AbortSignal | undefined;
    const hung: ModelProvider = {
      specificationVersion: "v1",
      id: "p",
      async *stream(_req, options) {
        providerSignal = options?.signal;
        yield { type: "text-delta", text: "a" };
        entered.resolve();
        await new Promise((resolve) => providerSignal!.addEventListener("abort", resolve));
      },
    };
    const chain = createProviderChain({ providers: [hung], models: ["p/m"] });
    const cancellation = new Cancellation();
    let runSignalRead = false;
    const options = defineLazySignal(
      { [CANCELLATION]: cancellation },
      {
        get signal() {
          runSignalRead = true;
          return cancellation.signal;
        },
      },
    );
    const read = readAll(chain.stream(request, options));
    await entered.promise;
    cancellation.abort(new AbortedError("stop"));
    const { error } = await read;
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(providerSignal?.aborted).toBe(true);
    expect(runSignalRead).toBe(false);
  });

  it("streams as before to a provider that never reads its signal", async () => {
    const { provider: p } = provider("never");
    const chain = createProviderChain({ providers: [p], models: ["p/m"] });
    const types: string[] = [];
    for await (const event of chain.stream(request, { signal: new AbortController().signal })) {
      types.push(event.type);
    }
    expect(types).toEqual(["attempt-start", "text-delta", "text-delta", "finish"]);
  });

  it("hands the provider a signal, spread or read, that is aborted when the caller stops reading", async () => {
    const { provider: p, signals } = provider("end");
    const chain = createProviderChain({ providers: [p], models: ["p/m"] });
    const seen: Array<ModelCallOptions | undefined> = [];
    const spy: ModelProvider = {
      ...p,
      stream(req, options) {
        seen.push(options === undefined ? undefined : { ...options });
        return p.stream(req, options);
      },
    };
    const spied = createProviderChain({ providers: [spy], models: ["p/m"] });
    for await (const event of spied.stream(request)) {
      if (event.type === "finish") break;
    }
    expect(seen[0]?.signal).toBeInstanceOf(AbortSignal);
    expect(signals[0]).toBe(seen[0]?.signal);
    expect(signals[0]?.aborted).toBe(true);
    // And through the chain without the spy: the same rules.
    for await (const _ of chain.stream(request)) {
      // drain
    }
    expect(signals[1]?.aborted).toBe(false);
  });
});

describe("RunEventLog: the hand-written iterator", () => {
  const event = (n: number): RunEvent =>
    ({ runId: "r", sessionKey: "s", type: "text-delta", text: String(n) }) as RunEvent;

  it("answers next() calls made before any event in order, then ends after run-end", async () => {
    const log = new RunEventLog();
    const iterator = log.iterate();
    const first = iterator.next();
    const second = iterator.next();
    log.push(event(1));
    log.push(event(2));
    expect((await first).value).toMatchObject({ text: "1" });
    expect((await second).value).toMatchObject({ text: "2" });
    const end = iterator.next();
    log.push({
      runId: "r",
      sessionKey: "s",
      type: "run-end",
      result: {
        runId: "r",
        sessionKey: "s",
        status: "completed",
        text: "",
        messages: [],
        steps: 0,
        usage: { inputTokens: 0, outputTokens: 0 },
        costUsd: 0,
      },
    });
    expect((await end).value).toMatchObject({ type: "run-end" });
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it("wakes every waiting reader, each with several next() calls waiting, in order", async () => {
    const log = new RunEventLog();
    const readers = [log.iterate(), log.iterate(), log.iterate()];
    const waiting = readers.map((reader) => [reader.next(), reader.next(), reader.next()]);
    log.push(event(1));
    log.push(event(2));
    log.push(event(3));
    for (const calls of waiting) {
      const texts = (await Promise.all(calls)).map((r) => (r.value as { text: string }).text);
      expect(texts).toEqual(["1", "2", "3"]);
    }
    // A reader that starts late, and one more wait after the readers caught up.
    const late = log.iterate();
    expect((await late.next()).value).toMatchObject({ text: "1" });
    const next = readers.map((reader) => reader.next());
    log.push(event(4));
    for (const result of await Promise.all(next)) expect(result.value).toMatchObject({ text: "4" });
  });

  it("return() ends a reader, answering its pending next() with done", async () => {
    const log = new RunEventLog();
    const iterator = log.iterate();
    const pending = [iterator.next(), iterator.next()];
    await iterator.return?.();
    expect(await Promise.all(pending)).toEqual([
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
    log.push(event(1));
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it("a log that fails before running makes its readers throw the failure", async () => {
    const log = new RunEventLog();
    const iterator = log.iterate();
    const pending = iterator.next();
    const failure = new Error("never ran");
    log.fail(failure);
    expect(await failureOf(() => pending)).toBe(failure);
  });
});

describe("UsageMeter: batched store writes", () => {
  const entry = (at: number, model = "m") => ({
    sessionKey: "agent:main:main",
    agentId: "main",
    provider: "p",
    model,
    usage: { inputTokens: 10, outputTokens: 4, cacheReadTokens: 1 },
    costUsd: 0.5,
    at,
  });

  async function openStore(): Promise<MemoryStore> {
    const store = new MemoryStore();
    await store.open();
    stops.push(() => store.close());
    return store;
  }

  it("sums calls recorded together into one read-modify-write per key, written without a flush", async () => {
    const store = await openStore();
    const meter = new UsageMeter(store);
    let sets = 0;
    const set = store.kv.set.bind(store.kv);
    store.kv.set = async (...args) => {
      sets++;
      return set(...args);
    };
    const at = Date.UTC(2025, 5, 1, 12);
    for (let i = 0; i < 50; i++) meter.record(entry(at));
    meter.record(entry(at, "other"));
    for (let i = 0; i < 20 && sets < 2; i++) await tick();
    expect(sets).toBe(2);
    const day = usageDay(at);
    expect(await store.kv.get(`usage:${day}:main:p:m`)).toEqual({
      calls: 50,
      inputTokens: 500,
      outputTokens: 200,
      cacheReadTokens: 50,
      cacheWriteTokens: 0,
      costUsd: 25,
    });
    expect(meter.totals({ day })).toMatchObject({ calls: 51, inputTokens: 510 });
  });

  it("keeps what the store refused and writes it with the next flush: nothing counted is lost", async () => {
    const store = await openStore();
    const meter = new UsageMeter(store);
    const set = store.kv.set.bind(store.kv);
    let refuse = true;
    store.kv.set = async (...args) => {
      if (refuse) throw new StoreError("STORE_UNAVAILABLE", "down");
      return set(...args);
    };
    const at = Date.UTC(2025, 5, 1, 23, 59);
    meter.record(entry(at));
    await meter.flush();
    meter.record(entry(at));
    refuse = false;
    await meter.flush();
    expect(await meter.persisted(usageDay(at))).toEqual([
      {
        key: `usage:${usageDay(at)}:main:p:m`,
        totals: {
          calls: 2,
          inputTokens: 20,
          outputTokens: 8,
          cacheReadTokens: 2,
          cacheWriteTokens: 0,
          costUsd: 1,
        },
      },
    ]);
  });

  it("counts each call under its own UTC day, across midnight", async () => {
    const store = await openStore();
    const meter = new UsageMeter(store);
    const before = Date.UTC(2025, 5, 1, 23, 59, 59, 999);
    meter.record(entry(before));
    meter.record(entry(before + 1));
    await meter.flush();
    expect(meter.totals({ day: "2025-06-01" }).calls).toBe(1);
    expect(meter.totals({ day: "2025-06-02" }).calls).toBe(1);
    expect((await meter.persisted("2025-06-02")).map((r) => r.totals.calls)).toEqual([1]);
  });
});

describe("SupervisedToolRunner: tool results as JSON", () => {
  async function resultOf(output: unknown) {
    const supervisor = await tasks();
    const runner = new SupervisedToolRunner({
      registry: new ToolRegistry([
        {
          name: "t",
          description: "returns its output",
          inputSchema: { type: "object" },
          execute: () => output as never,
        },
      ]),
      tasks: () => supervisor,
      resolveAgent: (id) => ({ id, model: "a/b", tools: ["*"] }),
    });
    return runner.execute(
      { type: "tool-call", toolCallId: "c", toolName: "t", input: {} },
      {
        signal: new AbortController().signal,
        sessionKey: "agent:main:main",
        agentId: "main",
        runId: "r",
        toolCallId: "c",
        emit: () => {},
      },
    );
  }

  it("copies plain data, so the tool cannot change the result afterwards", async () => {
    const output = { city: "Paris", temps: [21, -0, 3.5], nested: { ok: true, none: null } };
    const { output: result, isError } = await resultOf(output);
    expect(isError).toBe(false);
    expect(result).toEqual({
      city: "Paris",
      temps: [21, 0, 3.5],
      nested: { ok: true, none: null },
    });
    output.nested.ok = false;
    output.temps.push(99);
    expect(result).toEqual({
      city: "Paris",
      temps: [21, 0, 3.5],
      nested: { ok: true, none: null },
    });
  });

  it("gives what JSON gives for values JSON changes: dates, undefined, NaN, holes, classes", async () => {
    class Point {
      x = 1;
    }
    const holes: unknown[] = [1];
    holes[2] = 3;
    const output = {
      at: new Date(0),
      gone: undefined,
      nan: Number.NaN,
      list: [undefined, () => 1, holes],
      point: new Point(),
      custom: { toJSON: () => "custom" },
    };
    const { output: result } = await resultOf(output);
    expect(result).toEqual(JSON.parse(JSON.stringify(output)));
    // A cycle has no JSON: the model reads why, as an error result.
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const failed = await resultOf(cyclic);
    expect(failed.isError).toBe(true);
    expect(failed.output).toMatch(/^tool "t" returned a result that is not JSON: /);
  });
});
