/**
 * Benchmark: the memory of sessions, and the latency of reviving a hibernated one.
 *
 * (a) Resident memory per hibernated session: N sessions (1,000,000 in full mode) each run one
 *     turn through an `AgentRuntime` over a `MemoryStore` and hibernate (`hibernateAfterMs`
 *     1 ms; the benchmark waits until `activeSessions()` is empty). A hibernated session's
 *     data lives in the store; the `MemoryStore` keeps it in this very process, so the
 *     figure is the runtime's share only: heap with the runtime and its hibernated sessions,
 *     minus the heap of the same store (same objects, same data) once the runtime is stopped
 *     and dropped, minus the runtime's fixed overhead (a started runtime with no session).
 *     The store's own bytes per session are the baseline.
 * (b) Memory per active session with 20 messages of history (5 turns of a tool call and 20
 *     text chunks each), measured the same way (informational).
 * (c) Revive latency: `send` to a hibernated session of (a)'s store until its run starts (the
 *     `run-start` event is published), p50/p99; the baseline is the same `send` to the same
 *     session right after, while it is active.
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import v8 from "node:v8";
import { MemoryStore } from "@beamclaw/core";
import {
  chainOf,
  createInProcessProvider,
  runtimeTurn,
  sessionKey,
  startRuntime,
} from "./agent-fixtures.mjs";
import {
  formatBytes,
  formatDuration,
  formatRatio,
  fullGc,
  log,
  nextTurn,
  percentile,
  runBenchmark,
} from "./lib.mjs";

/**
 * A zero-latency provider for the short turn of (a) and (c): one text chunk, usage, stop. It
 * keeps nothing (unlike the test providers, which record every request).
 */
function createShortAnswerProvider(id = "local") {
  return {
    specificationVersion: "v1",
    id,
    async *stream(request) {
      yield { type: "response-start", model: request.model };
      yield { type: "text-delta", text: "Hello!" };
      yield { type: "usage", usage: { inputTokens: 5, outputTokens: 2 } };
      yield { type: "finish", reason: "stop" };
    },
  };
}

/** A short turn: send, await the result. */
async function shortTurn(session) {
  const run = await session.send("hi");
  const result = await run.result;
  if (result.status !== "completed") throw new Error(`turn ended with ${result.status}`);
  return run;
}

/**
 * Heap used after full GCs. The event loop turns between the collections let weakly held
 * objects (WeakRefs are kept alive until the end of the current job) and finalizers go.
 */
async function heapUsed() {
  for (let i = 0; i < 3; i++) {
    await nextTurn();
    fullGc();
  }
  return v8.getHeapStatistics().used_heap_size;
}

async function waitUntilHibernated(runtime, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  while (runtime.activeSessions().length > 0) {
    if (performance.now() > deadline) {
      throw new Error(
        `${runtime.activeSessions().length} sessions still active after ${timeoutMs} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Runs `fn(i)` for i in [0, count), `width` at a time. Each batch starts on a new turn of the
 * event loop: with a zero-latency provider and an in-memory store a turn never leaves the
 * microtask queue, so without that no timer (hibernation included) would ever fire.
 */
async function inBatches(count, width, fn) {
  for (let start = 0; start < count; start += width) {
    await nextTurn();
    const end = Math.min(count, start + width);
    const batch = [];
    for (let i = start; i < end; i++) batch.push(fn(i));
    await Promise.all(batch);
  }
}

/** (a): N sessions, one turn each, all hibernated. Returns bytes per session and the store. */
async function hibernated(count) {
  const store = new MemoryStore();
  await store.open();
  const provider = createShortAnswerProvider();
  const heapStoreEmpty = await heapUsed();
  let { runtime } = await startRuntime({ models: chainOf(provider), store, hibernateAfterMs: 1 });
  const heapRuntimeEmpty = await heapUsed();
  const rssBefore = process.memoryUsage().rss;
  const started = performance.now();
  let peakActive = 0;
  await inBatches(count, 100, (i) => {
    if (i % 1_000 === 0) peakActive = Math.max(peakActive, runtime.activeSessions().length);
    if (i > 0 && i % 100_000 === 0)
      log(`sessions-memory: ${i.toLocaleString("en-US")} sessions...`);
    return shortTurn(runtime.session(sessionKey("h", i)));
  });
  await waitUntilHibernated(runtime, 60_000);
  const elapsedMs = performance.now() - started;
  const active = runtime.activeSessions().length;
  const heapWithRuntime = await heapUsed();
  const rssDelta = process.memoryUsage().rss - rssBefore;
  const stored = await store.sessions.count();
  if (stored !== count) throw new Error(`the store holds ${stored} sessions, expected ${count}`);
  await runtime.stop();
  runtime = null;
  const heapStoreOnly = await heapUsed();
  const fixed = heapRuntimeEmpty - heapStoreEmpty;
  return {
    store,
    active,
    elapsedMs,
    peakActive,
    fixed,
    rssDelta,
    perSession: (heapWithRuntime - heapStoreOnly - fixed) / count,
    storePerSession: (heapStoreOnly - heapStoreEmpty) / count,
  };
}

/** (b): `count` active sessions with 20 messages of history each. */
async function active(count) {
  const store = new MemoryStore();
  await store.open();
  const provider = createInProcessProvider();
  const heapStoreEmpty = await heapUsed();
  let { runtime } = await startRuntime({ models: chainOf(provider), store });
  const heapRuntimeEmpty = await heapUsed();
  await inBatches(count, 100, async (i) => {
    const session = runtime.session(sessionKey("a", i));
    for (let turn = 0; turn < 5; turn++) await runtimeTurn(session);
  });
  const alive = runtime.activeSessions().length;
  if (alive !== count) throw new Error(`${alive} sessions active, expected ${count}`);
  const info = await runtime.session(sessionKey("a", count - 1)).info();
  if (info.historyLength !== 20) throw new Error(`history of ${info.historyLength} messages`);
  const heapWithRuntime = await heapUsed();
  await runtime.stop();
  runtime = null;
  const heapStoreOnly = await heapUsed();
  await store.close();
  const fixed = heapRuntimeEmpty - heapStoreEmpty;
  return {
    fixed,
    perSession: (heapWithRuntime - heapStoreOnly - fixed) / count,
    storePerSession: (heapStoreOnly - heapStoreEmpty) / count,
  };
}

/**
 * (c): revives `samples` hibernated sessions of `store` (spread over its `total` sessions),
 * each followed by the same send to the now-active session. Returns the latencies in ms.
 */
async function revive(store, total, warmup, samples) {
  const { runtime } = await startRuntime({ models: chainOf(createShortAnswerProvider()), store });
  const reviveMs = [];
  const activeMs = [];
  const reviveResolvedMs = [];
  const activeResolvedMs = [];
  try {
    const stride = Math.max(1, Math.floor(total / (warmup + samples)));
    for (let i = 0; i < warmup + samples; i++) {
      const key = sessionKey("h", (i * stride) % total);
      const session = runtime.session(key);
      let runStartAt = 0;
      const off = runtime.pubsub.subscribe(`session:${key}`, (event) => {
        if (event.type === "run-start") runStartAt = performance.now();
      });
      try {
        if (runtime.registry.whereis(`session:${key}`) !== undefined) {
          throw new Error(`session ${key} is not hibernated`);
        }
        // Revive: the session is in the store only.
        await nextTurn();
        const reviveAt = performance.now();
        const first = await session.send("hi");
        const firstResolved = performance.now();
        const firstStart = runStartAt;
        if (first.disposition !== "started" || firstStart === 0) throw new Error("no run-start");
        await first.result;
        // Baseline: the same send to the same session, now active and idle.
        runStartAt = 0;
        await nextTurn();
        const sendAt = performance.now();
        const second = await session.send("hi");
        const secondResolved = performance.now();
        if (second.disposition !== "started" || runStartAt === 0) throw new Error("no run-start");
        await second.result;
        if (i >= warmup) {
          reviveMs.push(firstStart - reviveAt);
          reviveResolvedMs.push(firstResolved - reviveAt);
          activeMs.push(runStartAt - sendAt);
          activeResolvedMs.push(secondResolved - sendAt);
        }
      } finally {
        off();
      }
    }
  } finally {
    await runtime.stop();
  }
  return { reviveMs, activeMs, reviveResolvedMs, activeResolvedMs };
}

async function main({ quick }) {
  const loadBefore = os.loadavg()[0];
  const hibernatedCount = quick ? 5_000 : 1_000_000;
  const activeCount = quick ? 200 : 10_000;
  const reviveWarmup = quick ? 100 : 2_000;
  const reviveSamples = quick ? 500 : 20_000;
  const targetBytes = 256;
  const targetP99Ms = 1;

  // Warm-up on a throwaway runtime and store: compile the code paths outside the measurements.
  {
    const warm = await hibernated(quick ? 500 : 5_000);
    await revive(warm.store, quick ? 500 : 5_000, 0, quick ? 100 : 1_000);
    await active(quick ? 50 : 500);
    await warm.store.close();
  }
  log("sessions-memory: warm-up done");

  const b = await active(activeCount);
  log(`sessions-memory: ${activeCount.toLocaleString("en-US")} active sessions measured`);
  const a = await hibernated(hibernatedCount);
  log(
    `sessions-memory: ${hibernatedCount.toLocaleString("en-US")} hibernated sessions measured (${(a.elapsedMs / 1000).toFixed(1)} s)`,
  );
  const c = await revive(a.store, hibernatedCount, reviveWarmup, reviveSamples);
  await a.store.close();
  log(`sessions-memory: ${reviveSamples.toLocaleString("en-US")} revivals measured`);

  const p = (values, q) => percentile(values, q);
  const reviveP99 = p(c.reviveMs, 99);
  const n = (count) => count.toLocaleString("en-US");
  return {
    id: "sessions-memory",
    title: "7. Session memory (hibernated, active) and revive latency",
    description:
      "(a) Sessions that each ran one short turn (a user message, a one-chunk answer) through " +
      "an `AgentRuntime` over a `MemoryStore`, then hibernated (`hibernateAfterMs: 1`; " +
      "`activeSessions()` checked empty). Their data lives in the store, which the " +
      "`MemoryStore` holds in this process, so the figure is the runtime's share: heap " +
      "(`used_heap_size` after full GCs) with the runtime and its hibernated sessions, minus " +
      "the heap of the same store once the runtime is stopped and dropped, minus the fixed " +
      "overhead of a started runtime with no session; divided by the count. Baseline: the " +
      "store's own bytes per session (the same data). (b) The same measurement for active " +
      "sessions holding 20 messages of history (5 turns of one tool call and 20 text chunks). " +
      "(c) Revive latency: `send` to a hibernated session until its `run-start` event is " +
      "published (the session actor revived from the store, its history read, the run " +
      "started); the baseline is the same `send` to the same session right after, while it is " +
      "active. Ratio = figure ÷ baseline.",
    params: `(a) ${n(hibernatedCount)} hibernated sessions, created 100 at a time; (b) ${n(activeCount)} active sessions; (c) ${n(reviveSamples)} revivals (after ${n(reviveWarmup)} warm-up ones) spread over (a)'s sessions, each on a fresh event-loop turn, alternating with the active baseline; \`node --expose-gc\``,
    rows: [
      {
        measurement: `heap per hibernated session, runtime's share (${n(hibernatedCount)} hibernated)`,
        figure: formatBytes(a.perSession),
        baseline: `${formatBytes(a.storePerSession)} (in the store)`,
        ratio: formatRatio(a.perSession / a.storePerSession),
        target: `< ${targetBytes} B`,
        met: a.perSession < targetBytes,
      },
      {
        measurement: `heap per active session with 20 messages of history, runtime's share (${n(activeCount)} active)`,
        figure: formatBytes(b.perSession),
        baseline: `${formatBytes(b.storePerSession)} (in the store)`,
        ratio: formatRatio(b.perSession / b.storePerSession),
        target: "—",
        met: null,
      },
      {
        measurement: "revive latency p50, send → run-start (MemoryStore)",
        figure: formatDuration(p(c.reviveMs, 50)),
        baseline: `${formatDuration(p(c.activeMs, 50))} (active session)`,
        ratio: formatRatio(p(c.reviveMs, 50) / p(c.activeMs, 50)),
        target: "—",
        met: null,
      },
      {
        measurement: "revive latency p99, send → run-start (MemoryStore)",
        figure: formatDuration(reviveP99),
        baseline: `${formatDuration(p(c.activeMs, 99))} (active session)`,
        ratio: formatRatio(reviveP99 / p(c.activeMs, 99)),
        target: `< ${targetP99Ms} ms`,
        met: reviveP99 < targetP99Ms,
      },
    ],
    notes: [
      `(a) ${n(hibernatedCount)} sessions ran and hibernated in ${(a.elapsedMs / 1000).toFixed(1)} s (at most ${n(a.peakActive)} active at once while they were created); ${a.active} left active. Fixed overhead of the started runtime (subtracted): ${formatBytes(a.fixed)}. The resident set size grew by ${formatBytes(a.rssDelta)} (${formatBytes(a.rssDelta / hibernatedCount)} per session, store included: the MemoryStore lives in this process).`,
      `(b) Fixed overhead of the started runtime (subtracted): ${formatBytes(b.fixed)}.`,
      `(c) revive p99.9 ${formatDuration(p(c.reviveMs, 99.9))}, max ${formatDuration(Math.max(...c.reviveMs))}; active p99.9 ${formatDuration(p(c.activeMs, 99.9))}. Until \`send\` resolves (the reply after run-start): revive p50 ${formatDuration(p(c.reviveResolvedMs, 50))} / p99 ${formatDuration(p(c.reviveResolvedMs, 99))}, active p50 ${formatDuration(p(c.activeResolvedMs, 50))} / p99 ${formatDuration(p(c.activeResolvedMs, 99))}.`,
      `Load average (1 min) at start / end of this benchmark: ${loadBefore.toFixed(2)} / ${os.loadavg()[0].toFixed(2)} on ${os.cpus().length} cores.`,
    ],
  };
}

runBenchmark(main);
