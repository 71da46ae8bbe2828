/**
 * Memory pressure: `MemoryPressureMonitor` (thresholds, hysteresis, sampling on an unref'd
 * timer, listeners) and how an `AgentRuntime` sheds load with it: new messages refused with a
 * retryable `MemoryPressureError` and nothing queued, idle sessions hibernated at once, busy
 * ones left to finish, and everything accepted again once the pressure drops.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../src/config/index.js";
import { InvalidArgumentError, OverloadedError } from "../src/errors.js";
import { createProviderChain } from "../src/providers/chain.js";
import {
  MemoryPressureError,
  MemoryPressureMonitor,
  type MemorySample,
} from "../src/runtime/memory-pressure.js";
import { AgentRuntime } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/scripted-provider.js";
import { activeTimeouts, deferred, failureOf, waitFor } from "./support.js";

const MiB = 1024 * 1024;

/** A memory reading the test sets, standing in for the process's own. */
function gauge(initial: Partial<Omit<MemorySample, "at">> = {}) {
  const reading = { rssBytes: 100 * MiB, heapUsedBytes: 50 * MiB, heapLimitBytes: 1024 * MiB };
  Object.assign(reading, initial);
  return { reading, read: () => ({ ...reading }) };
}

const monitors: MemoryPressureMonitor[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const m of monitors.splice(0)) m.stop();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function monitor(options: ConstructorParameters<typeof MemoryPressureMonitor>[0]) {
  const m = new MemoryPressureMonitor(options);
  monitors.push(m);
  return m;
}

describe("MemoryPressureMonitor", () => {
  it("needs at least one threshold and rejects values out of range with InvalidArgumentError", () => {
    expect(() => new MemoryPressureMonitor({})).toThrow(InvalidArgumentError);
    expect(() => new MemoryPressureMonitor({ maxHeapUsedBytes: 0 })).toThrow(/positive/);
    expect(() => new MemoryPressureMonitor({ maxRssBytes: -1 })).toThrow(InvalidArgumentError);
    expect(() => new MemoryPressureMonitor({ maxHeapUsedRatio: 1.5 })).toThrow(/\(0, 1\]/);
    expect(() => new MemoryPressureMonitor({ maxHeapUsedRatio: Number.NaN })).toThrow(
      InvalidArgumentError,
    );
    expect(() => new MemoryPressureMonitor({ maxRssBytes: MiB, recoverRatio: 1 })).toThrow(
      /recoverRatio/,
    );
    expect(() => new MemoryPressureMonitor({ maxRssBytes: MiB, sampleIntervalMs: 0.5 })).toThrow(
      /whole number/,
    );
    // Past a timer's limit: Node would fire the sampling interval at once, again and again.
    expect(
      () => new MemoryPressureMonitor({ maxRssBytes: MiB, sampleIntervalMs: 2 ** 31 }),
    ).toThrow(/sampleIntervalMs must be a positive number up to 2147483647/);
    expect(() => new MemoryPressureMonitor({ maxHeapUsedRatio: 1 })).not.toThrow();
  });

  it("enters pressure when the heap in use crosses its threshold and leaves it only below recoverRatio of it", () => {
    const g = gauge();
    const m = monitor({ maxHeapUsedBytes: 100 * MiB, recoverRatio: 0.8, read: g.read });
    const events: string[] = [];
    m.onPressure((e) => events.push(`pressure first=${e.first} ${e.exceeded.join("+")}`));
    m.onRecovered(() => events.push("recovered"));

    m.check();
    expect(m.underPressure).toBe(false);
    g.reading.heapUsedBytes = 101 * MiB;
    m.check();
    expect(m.underPressure).toBe(true);
    // Below the threshold but above 80% of it: still under pressure (no flapping).
    g.reading.heapUsedBytes = 90 * MiB;
    m.check();
    expect(m.underPressure).toBe(true);
    g.reading.heapUsedBytes = 80 * MiB;
    m.check();
    expect(m.underPressure).toBe(false);
    m.check();
    expect(events).toEqual(["pressure first=true heap", "pressure first=false ", "recovered"]);
  });

  it("measures the resident set size on its own, and the heap against the lower of bytes and ratio of the heap limit", () => {
    const g = gauge({ rssBytes: 500 * MiB, heapUsedBytes: 300 * MiB, heapLimitBytes: 1000 * MiB });
    const rss = monitor({ maxRssBytes: 400 * MiB, read: g.read });
    expect(rss.check().rssBytes).toBe(500 * MiB);
    expect(rss.underPressure).toBe(true);

    // 25% of a 1000 MiB limit is 250 MiB: the ratio is the lower threshold here.
    const both = monitor({ maxHeapUsedBytes: 400 * MiB, maxHeapUsedRatio: 0.25, read: g.read });
    both.check();
    expect(both.underPressure).toBe(true);
    const bytesOnly = monitor({ maxHeapUsedBytes: 400 * MiB, read: g.read });
    bytesOnly.check();
    expect(bytesOnly.underPressure).toBe(false);
  });

  it("refuses with a retryable OverloadedError whose reason is memory, naming the measure and the wait", () => {
    const g = gauge({ rssBytes: 900 * MiB });
    const m = monitor({ maxRssBytes: 800 * MiB, retryAfterMs: 2_500, read: g.read });
    m.check();
    const error = (() => {
      try {
        m.assertAccepting("a message");
      } catch (e) {
        return e;
      }
      throw new Error("assertAccepting did not throw under pressure");
    })();
    expect(OverloadedError.isInstance(error)).toBe(true);
    expect(MemoryPressureError.isInstance(error)).toBe(true);
    const e = error as MemoryPressureError;
    expect(e.code).toBe("OVERLOADED");
    expect(e.isRetryable).toBe(true);
    expect(e.reason).toBe("memory");
    expect(e.exceeded).toEqual(["rss"]);
    expect(e.retryAfterMs).toBe(2_500);
    expect(e.limit).toBe(800 * MiB);
    expect(e.message).toMatch(/^a message refused: .*rss 900 MiB of 800 MiB/);
    // A plain overload is not a memory-pressure error.
    expect(MemoryPressureError.isInstance(new OverloadedError("full", 10))).toBe(false);

    g.reading.rssBytes = 100 * MiB;
    m.check();
    expect(() => m.assertAccepting()).not.toThrow();
  });

  it("samples at once and then on a timer that never keeps the process alive, until stopped", async () => {
    const g = gauge();
    let reads = 0;
    const m = monitor({
      maxHeapUsedBytes: 100 * MiB,
      sampleIntervalMs: 5,
      read: () => {
        reads++;
        return g.read();
      },
    });
    const timeoutsBefore = activeTimeouts();
    m.start();
    m.start(); // a second start does nothing
    expect(reads).toBe(1);
    expect(m.running).toBe(true);
    expect(activeTimeouts()).toBe(timeoutsBefore);
    g.reading.heapUsedBytes = 200 * MiB;
    await waitFor("a timed sample under pressure", () => m.underPressure);
    m.stop();
    expect(m.running).toBe(false);
    const after = reads;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(reads).toBe(after);
  });

  it("keeps telling the other listeners when one throws, and unsubscribes on request", () => {
    const g = gauge({ heapUsedBytes: 200 * MiB });
    const m = monitor({ maxHeapUsedBytes: 100 * MiB, read: g.read });
    const seen: number[] = [];
    m.onPressure(() => {
      throw new Error("listener bug");
    });
    const off = m.onPressure(() => seen.push(1));
    m.onPressure(() => seen.push(2));
    m.check();
    off();
    m.check();
    expect(seen).toEqual([1, 2, 2]);
  });

  it("reads the real process: a heap threshold below what is in use is pressure at the first sample", () => {
    const m = monitor({ maxHeapUsedBytes: 1024 });
    const sample = m.check();
    expect(sample.heapUsedBytes).toBeGreaterThan(1024);
    expect(sample.rssBytes).toBeGreaterThan(sample.heapUsedBytes / 2);
    expect(sample.heapLimitBytes).toBeGreaterThan(sample.heapUsedBytes);
    expect(m.underPressure).toBe(true);
    const roomy = monitor({ maxHeapUsedRatio: 1 });
    roomy.check();
    expect(roomy.underPressure).toBe(false);
  });
});

describe("AgentRuntime under memory pressure", () => {
  async function setup(
    responses: ScriptEntry[],
    shared?: { store: MemoryStore; g: ReturnType<typeof gauge>; memory: MemoryPressureMonitor },
  ) {
    const g = shared?.g ?? gauge();
    const memory =
      shared?.memory ?? monitor({ maxHeapUsedBytes: 100 * MiB, recoverRatio: 0.8, read: g.read });
    const store = shared?.store ?? new MemoryStore();
    if (shared === undefined) await store.open();
    const provider = createScriptedProvider({ id: "scripted", responses });
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({
        providers: [provider],
        retry: { maxAttempts: 1 },
        circuitBreaker: false,
      }),
      agents: [{ id: "main", model: "scripted/m" }],
      memoryPressure: memory,
    });
    await runtime.start();
    cleanups.push(async () => {
      await runtime.stop();
      if (shared === undefined) await store.close();
    });
    const press = () => {
      g.reading.heapUsedBytes = 150 * MiB;
      memory.check();
    };
    const relieve = () => {
      g.reading.heapUsedBytes = 40 * MiB;
      memory.check();
    };
    return { runtime, store, memory, press, relieve, g };
  }

  it("refuses a new message with a retryable MemoryPressureError and queues nothing; once the pressure drops the same message is accepted", async () => {
    const { runtime, store, press, relieve } = await setup(["hello again"]);
    press();
    const refused = await failureOf(() =>
      runtime.session("agent:main:a").send("hi", { idempotencyKey: "m-1" }),
    );
    expect(MemoryPressureError.isInstance(refused)).toBe(true);
    expect((refused as MemoryPressureError).isRetryable).toBe(true);
    expect((refused as MemoryPressureError).retryAfterMs).toBeGreaterThan(0);
    expect(await store.queue.pending({})).toEqual([]);
    expect(await store.transcripts.read("agent:main:a")).toEqual([]);

    relieve();
    const run = await runtime.session("agent:main:a").send("hi", { idempotencyKey: "m-1" });
    expect(run.disposition).toBe("started");
    const result = await run.result;
    expect(result.status).toBe("completed");
    expect(result.text).toBe("hello again");
  });

  it("hibernates idle sessions at once while a busy session keeps its run, which completes", async () => {
    const gate = deferred();
    const { runtime, store, press } = await setup([
      "one",
      "two",
      {
        events: [
          { type: "wait", until: gate.promise },
          { type: "text-delta", text: "busy done" },
          { type: "finish", reason: "stop" },
        ],
      },
    ]);
    await (await runtime.session("agent:main:idle-1").send("a")).result;
    await (await runtime.session("agent:main:idle-2").send("b")).result;
    const busy = await runtime.session("agent:main:busy").send("c");
    await waitFor(
      "the busy run to start",
      async () => (await runtime.session("agent:main:busy").info()).activeRunId !== undefined,
    );
    expect(new Set(runtime.activeSessions())).toEqual(
      new Set(["agent:main:idle-1", "agent:main:idle-2", "agent:main:busy"]),
    );

    press();
    await waitFor("the idle sessions to hibernate", () => runtime.activeSessions().length === 1);
    expect(runtime.activeSessions()).toEqual(["agent:main:busy"]);
    // Hibernated sessions were saved: their history is in the store.
    expect((await store.transcripts.read("agent:main:idle-1")).length).toBeGreaterThan(0);

    gate.resolve();
    const result = await busy.result;
    expect(result.status).toBe("completed");
    expect(result.text).toBe("busy done");
    expect(await store.queue.pending({})).toEqual([]);
  });

  it("still runs messages accepted before the pressure: a restarted runtime replays them while refusing new ones", async () => {
    const gate = deferred();
    const first = await setup([
      {
        events: [
          { type: "wait", until: gate.promise },
          { type: "finish", reason: "stop" },
        ],
      },
    ]);
    const accepted = await first.runtime.session("agent:main:r").send("before the pressure");
    void accepted.result.catch(() => undefined);
    await first.runtime.stop();
    gate.resolve();
    expect((await first.store.queue.pending({})).length).toBe(1);

    first.press();
    const second = await setup(["replayed answer"], first);
    await waitFor(
      "the replayed run to finish",
      async () => (await first.store.queue.pending({})).length === 0,
    );
    const transcript = await first.store.transcripts.read("agent:main:r");
    expect(JSON.stringify(transcript)).toContain("replayed answer");
    const refused = await failureOf(() => second.runtime.session("agent:main:r").send("new"));
    expect(MemoryPressureError.isInstance(refused)).toBe(true);
  });
});

describe("the memoryPressure section of the configuration", () => {
  const base = { agents: [{ id: "main", model: "p/m" }] };

  it("is off when absent, and filled with defaults when a threshold is given", () => {
    expect(parseConfig(base).memoryPressure).toBeUndefined();
    expect(
      parseConfig({ ...base, memoryPressure: { maxHeapUsedRatio: 0.8 } }).memoryPressure,
    ).toEqual({
      maxHeapUsedRatio: 0.8,
      recoverRatio: 0.85,
      sampleIntervalMs: 1_000,
    });
  });

  it("names the problem when no threshold is set or a value is out of range", () => {
    const noThreshold = failureOfSync(() => parseConfig({ ...base, memoryPressure: {} }));
    expect(ConfigError.isInstance(noThreshold)).toBe(true);
    expect((noThreshold as ConfigError).message).toMatch(
      /memoryPressure.*maxHeapUsedBytes, maxHeapUsedRatio or maxRssBytes/s,
    );
    const badRatio = failureOfSync(() =>
      parseConfig({ ...base, memoryPressure: { maxHeapUsedRatio: 2 } }),
    );
    expect((badRatio as ConfigError).message).toMatch(/memoryPressure\.maxHeapUsedRatio/);
  });
});

function failureOfSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure, but it succeeded");
}
