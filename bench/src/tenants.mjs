/**
 * Benchmark: tenant isolation. Quiet tenants run agent turns through a `TenantManager`; the
 * figures are their turn latency (p50, p99) and throughput while, in the same process, one more
 * tenant either floods (an open-loop stream of messages 1,000 times its request rate, to ten
 * times more sessions than it may hold) or crashes (its store fails to save a finished run, so
 * each session actor crashes, is restarted, replays its message and crashes again, until
 * restart intensity escalates and that tenant's runtime stops). The baseline is the same quiet
 * load alone, measured in the same run: phases alternate (rotating order) over several rounds,
 * and the medians are reported.
 *
 * A turn: a user message; the model (an in-process provider that waits `LATENCY_MS` before
 * answering, as a remote model would) calls one tool; the tool runs; the model streams 20
 * chunks. Every tenant has its own `MemoryStore` and runtime; quiet tenants have limits they
 * never reach.
 */
import os from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { MemoryStore, subscribeTelemetry, TenantManager } from "@beamclaw/core";
import {
  chainOf,
  createInProcessProvider,
  MODEL_REF,
  runtimeTurn,
  sessionKey,
  weatherTool,
} from "./agent-fixtures.mjs";
import {
  formatDuration,
  formatRate,
  formatRatio,
  fullGc,
  log,
  median,
  percentile,
  runBenchmark,
} from "./lib.mjs";

/** Simulated model latency per call (two calls per turn). */
const LATENCY_MS = 5;
/** Quiet tenants, sessions per quiet tenant; each session pauses `THINK_MS` between turns. */
const QUIET_TENANTS = 3;
const QUIET_SESSIONS = 4;
const THINK_MS = 100;
/** The noisy tenant's limits (flooding or crashing), and the loads they are offered. */
const NOISY_LIMITS = {
  requestsPerMinute: 60,
  maxConcurrentRuns: 2,
  maxConcurrentRunsPerAgent: 2,
  maxConcurrentSessions: 20,
  maxPendingMessages: 40,
};
const FLOOD_RATE = 1_000; // messages per second: 1,000x requestsPerMinute / 60
const FLOOD_SESSIONS = 200; // 10x maxConcurrentSessions
/** The crashing tenant: sessions it sends to, messages per second. */
const CRASH_SESSIONS = 10;
const CRASH_RATE = 100;
/** Bound on quiet tenants under flood, as a multiple of their baseline. */
const BOUND = 1.5;

/** A provider that answers after `LATENCY_MS`, like a remote model (abortable). */
function createRemoteLikeProvider() {
  const inner = createInProcessProvider("local");
  return {
    specificationVersion: "v1",
    id: "local",
    async *stream(request, options) {
      await sleep(LATENCY_MS, undefined, options?.signal ? { signal: options.signal } : {});
      yield* inner.stream(request, options);
    },
  };
}

async function openStore() {
  const store = new MemoryStore();
  await store.open();
  return store;
}

function runtimeOptions(store) {
  return {
    store,
    models: chainOf(createRemoteLikeProvider()),
    agents: [{ id: "main", model: MODEL_REF, tools: ["weather"] }],
    tools: [weatherTool],
    historyLimit: 12,
  };
}

/** A store whose `sessions.put` fails once a session has run: its sessions crash after every run. */
async function openCrashingStore() {
  const store = await openStore();
  const put = store.sessions.put.bind(store.sessions);
  store.sessions.put = async (record) => {
    if (record.runs > 0) throw new Error("the tenant's disk is on fire");
    return put(record);
  };
  return store;
}

/** Sends `rate` messages per second to `keys` (round robin) until stopped; counts outcomes. */
function startOpenLoop(tenant, keys, rate) {
  const stats = { offered: 0, completed: 0, failedRuns: 0, refused: 0, refusals: {} };
  const tickMs = 5;
  let carry = 0;
  let last = performance.now();
  let next = 0;
  const inFlight = new Set();
  const sendOne = () => {
    const key = keys[next++ % keys.length];
    stats.offered++;
    const done = (async () => {
      try {
        const run = await tenant.runtime.session(key).send("flood");
        const result = await run.result;
        if (result.status === "completed") stats.completed++;
        else stats.failedRuns++;
        const code = result.error?.code;
        if (code !== undefined) stats.refusals[code] = (stats.refusals[code] ?? 0) + 1;
      } catch (error) {
        stats.refused++;
        const code = error?.code ?? error?.name ?? "unknown";
        stats.refusals[code] = (stats.refusals[code] ?? 0) + 1;
      }
    })();
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
  };
  const timer = setInterval(() => {
    // By the time elapsed, not the ticks: a busy event loop runs fewer ticks.
    const now = performance.now();
    carry += (rate * (now - last)) / 1000;
    last = now;
    for (; carry >= 1; carry--) sendOne();
  }, tickMs);
  return {
    stats,
    /** Stops sending; resolves when every message sent so far has settled. */
    async stop() {
      clearInterval(timer);
      await Promise.allSettled([...inFlight]);
    },
  };
}

/** Runs turns back to back on every quiet session for `durationMs`; latencies and count. */
async function driveQuiet(quiet, durationMs) {
  const latencies = [];
  const startedAt = performance.now();
  const until = startedAt + durationMs;
  await Promise.all(
    quiet.flatMap((tenant) =>
      Array.from({ length: QUIET_SESSIONS }, async (_, i) => {
        const session = tenant.runtime.session(sessionKey("quiet", i));
        while (performance.now() < until) {
          const t0 = performance.now();
          await runtimeTurn(session);
          latencies.push(performance.now() - t0);
          await sleep(THINK_MS);
        }
      }),
    ),
  );
  const elapsedMs = performance.now() - startedAt;
  return { latencies, elapsedMs, turnsPerSecond: (latencies.length / elapsedMs) * 1000 };
}

/**
 * One phase: the quiet load alone (`alone`, and `control`, a second series of the same), beside
 * the flooding tenant (`flood`), or beside the tenant whose sessions crash (`crash`). The noisy
 * tenant is added just before and removed just after the quiet load runs.
 */
async function phase(tenants, quiet, scenario, durationMs) {
  fullGc();
  const crashes = { actor: 0, restarts: 0 };
  const offs = [
    subscribeTelemetry("beamclaw:actor.crash", () => crashes.actor++),
    subscribeTelemetry("beamclaw:supervisor.restart", () => crashes.restarts++),
  ];
  let noisy;
  if (scenario === "flood" || scenario === "crash") {
    const flooding = scenario === "flood";
    const store = flooding ? await openStore() : await openCrashingStore();
    const tenant = await tenants.add({
      id: scenario,
      limits: NOISY_LIMITS,
      runtime: runtimeOptions(store),
    });
    const keys = Array.from({ length: flooding ? FLOOD_SESSIONS : CRASH_SESSIONS }, (_, i) =>
      sessionKey(scenario, i),
    );
    noisy = {
      store,
      tenant,
      load: startOpenLoop(tenant, keys, flooding ? FLOOD_RATE : CRASH_RATE),
    };
  }
  const cpuBefore = process.cpuUsage();
  const measured = await driveQuiet(quiet, durationMs);
  const cpu = process.cpuUsage(cpuBefore);
  // Whether the noisy tenant's runtime gave up (its root supervisor's restart intensity).
  const noisyStatus = noisy?.tenant.runtime.status;
  if (noisy !== undefined) {
    // The tenant goes first: whatever it still holds is refused or aborted.
    const removing = tenants.remove(scenario);
    await noisy.load.stop();
    await removing;
    await noisy.store.close();
  }
  for (const off of offs) off();
  return {
    ...measured,
    cpuMsPerSecond: ((cpu.user + cpu.system) / 1000 / measured.elapsedMs) * 1000,
    noisy: noisy?.load.stats,
    noisyStatus,
    crashes,
  };
}

const SCENARIOS = ["alone", "control", "flood", "crash"];

async function main({ quick }) {
  const durationMs = quick ? 1_000 : 5_000;
  const rounds = quick ? 1 : 9;
  const warmupMs = quick ? 500 : 3_000;
  const tenants = new TenantManager();
  const stores = [];
  const quiet = [];
  for (let i = 0; i < QUIET_TENANTS; i++) {
    const store = await openStore();
    stores.push(store);
    quiet.push(
      await tenants.add({
        id: `quiet-${i}`,
        limits: { requestsPerMinute: 1_000_000, maxConcurrentRunsPerAgent: 64 },
        runtime: runtimeOptions(store),
      }),
    );
  }
  try {
    log(`warm-up ${warmupMs} ms`);
    await driveQuiet(quiet, warmupMs);
    const results = Object.fromEntries(SCENARIOS.map((scenario) => [scenario, []]));
    for (let round = 0; round < rounds; round++) {
      // Rotate the order so that no scenario always follows another.
      const order = SCENARIOS.map((_, i) => SCENARIOS[(i + round) % SCENARIOS.length]);
      for (const scenario of order) {
        const result = await phase(tenants, quiet, scenario, durationMs);
        log(
          `round ${round + 1} ${scenario}: ${result.latencies.length} turns, p50 ${formatDuration(percentile(result.latencies, 50))}, p99 ${formatDuration(percentile(result.latencies, 99))}, CPU ${result.cpuMsPerSecond.toFixed(0)} ms/s`,
        );
        results[scenario].push(result);
      }
    }
    return report({ durationMs, rounds, results });
  } finally {
    await tenants.stop();
    await Promise.all(stores.map((store) => store.close()));
  }
}

function report({ durationMs, rounds, results }) {
  const med = (list, pick) => median(list.map(pick));
  const pct = (q) => (r) => percentile(r.latencies, q);
  const baseline = results.alone;
  // Phases of one round run close together; the load from elsewhere on the machine drifts
  // between rounds. So the ratio is the median of the per-round ratios.
  const ratioOf = (scenario, pick) =>
    median(results[scenario].map((r, round) => pick(r) / pick(baseline[round])));
  const latencyRow = (scenario, label, q, targeted = true) => {
    const ratio = ratioOf(scenario, pct(q));
    return {
      measurement: `${label}: quiet tenants' turn latency, p${q}`,
      figure: formatDuration(med(results[scenario], pct(q))),
      baseline: formatDuration(med(baseline, pct(q))),
      ratio: formatRatio(ratio),
      target: targeted ? `≤ ${BOUND}x` : "—",
      met: targeted ? ratio <= BOUND : null,
    };
  };
  const throughputRow = (scenario, label) => {
    const ratio = 1 / ratioOf(scenario, (r) => r.turnsPerSecond);
    return {
      measurement: `${label}: quiet tenants' throughput`,
      figure: formatRate(
        med(results[scenario], (r) => r.turnsPerSecond),
        "turns",
      ),
      baseline: formatRate(
        med(baseline, (r) => r.turnsPerSecond),
        "turns",
      ),
      ratio: formatRatio(ratio),
      target: `≤ ${BOUND}x`,
      met: ratio <= BOUND,
    };
  };
  const cpuRow = (scenario, label) => ({
    measurement: `${label}: process CPU time`,
    figure: `${med(results[scenario], (r) => r.cpuMsPerSecond).toFixed(0)} ms/s`,
    baseline: `${med(baseline, (r) => r.cpuMsPerSecond).toFixed(0)} ms/s`,
    ratio: formatRatio(ratioOf(scenario, (r) => r.cpuMsPerSecond)),
    target: "—",
    met: null,
  });
  const perPhase = (list, pick) =>
    Math.round(list.reduce((total, r) => total + pick(r), 0) / list.length).toLocaleString("en-US");
  const codes = (list) => {
    const counts = {};
    for (const r of list) {
      for (const [code, n] of Object.entries(r.noisy.refusals))
        counts[code] = (counts[code] ?? 0) + n;
    }
    return (
      Object.entries(counts)
        .sort((a, b) => b[1] - a[1])
        .map(([code, n]) => `${code} ${Math.round(n / list.length).toLocaleString("en-US")}`)
        .join(", ") || "none"
    );
  };
  const p99s = (list) => list.map((r) => formatDuration(percentile(r.latencies, 99))).join(", ");
  const { flood, crash } = results;
  const limits = `${NOISY_LIMITS.requestsPerMinute} requests/min, ${NOISY_LIMITS.maxConcurrentRuns} concurrent runs, ${NOISY_LIMITS.maxConcurrentSessions} sessions, ${NOISY_LIMITS.maxPendingMessages} unfinished messages`;
  return {
    id: "tenants",
    title: "11. Tenant isolation: quiet tenants beside a flooding or a crashing tenant",
    description:
      `${QUIET_TENANTS} quiet tenants (own store and runtime each, limits never reached) run agent ` +
      `turns on ${QUIET_SESSIONS} sessions each, ${THINK_MS} ms apart (a turn: tool call + 20 ` +
      `chunks, model latency ${LATENCY_MS} ms per call). Baseline: that load alone. Figures: the ` +
      `same load while, in the same process, one more tenant (limits: ${limits}) either floods — ` +
      `${FLOOD_RATE.toLocaleString("en-US")} messages/s over ${FLOOD_SESSIONS} sessions — or ` +
      `crashes — ${CRASH_RATE} messages/s over ${CRASH_SESSIONS} sessions whose store fails to ` +
      "save every finished run, so each session crashes, restarts, replays and crashes again. " +
      "Phases (alone, control = alone again, flood, crash) alternate in rotating order. Figures " +
      "and baselines: medians over the rounds; ratio: the median over the rounds of figure ÷ the " +
      "same round's baseline (throughput: baseline ÷ figure), as the machine's load drifts " +
      "between rounds.",
    params: `${rounds} round(s) of ${SCENARIOS.length} phases × ${durationMs / 1000} s after a warm-up; ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(2)} at the end`,
    rows: [
      latencyRow("control", "Control (alone again)", 50, false),
      latencyRow("control", "Control (alone again)", 99, false),
      latencyRow("flood", "Flood", 50),
      latencyRow("flood", "Flood", 99),
      throughputRow("flood", "Flood"),
      cpuRow("flood", "Flood"),
      latencyRow("crash", "Crash storm", 50),
      latencyRow("crash", "Crash storm", 99),
      throughputRow("crash", "Crash storm"),
      cpuRow("crash", "Crash storm"),
    ],
    notes: [
      `Flood, per phase: ${perPhase(flood, (r) => r.noisy.offered)} messages offered, ${perPhase(flood, (r) => r.noisy.completed)} completed; refused: ${codes(flood)}.`,
      `Crash storm, per phase: ${perPhase(crash, (r) => r.crashes.actor)} actor crashes, ${perPhase(crash, (r) => r.crashes.restarts)} restarts; ${perPhase(crash, (r) => r.noisy.offered)} messages offered; refused or failed: ${codes(crash)}. A message whose session crashed 3 times while running it is quarantined (\`QUARANTINED\`), which ends its part of the storm; the crashing tenant's runtime gave up (its root supervisor's restart intensity ran out, \`status: "failed"\`, taking only that tenant down) in ${crash.filter((r) => r.noisyStatus === "failed").length} of ${crash.length} phases.`,
      `Quiet p99 per round — alone: ${p99s(results.alone)}; control: ${p99s(results.control)}; flood: ${p99s(flood)}; crash storm: ${p99s(crash)}. The control rows (the quiet load alone, a second series) show how far two identical series differ on this machine.`,
      "All tenants share one event loop: limits bound how much of it a tenant's admitted work may take, and refusals at `send` keep what it is refused cheap; nothing gives one tenant priority over another.",
    ],
  };
}

runBenchmark(main);
