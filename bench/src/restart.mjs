/**
 * Benchmark 2: crash-to-restarted latency under a `one_for_one` Supervisor.
 *
 * One supervised child, registered through a `via` name. Each sample casts a message whose
 * handler throws; the clock starts right before the `throw` and stops when the
 * `beamclaw:supervisor.restart` telemetry event fires, at which point the registry name
 * must already resolve to a new, running process (checked on every sample). The
 * supervisor's own `latencyMs` (from the exit being observed to the replacement running)
 * is reported too.
 *
 * The baseline is the time to start a fresh actor of the same class directly
 * (`await new Worker().start()`), sampled alternately with the crashes, so the ratio is
 * the price of supervision: crash handling, exit propagation, the restart decision,
 * re-registration and re-monitoring.
 */
import { performance } from "node:perf_hooks";
import { Actor, Registry, Supervisor, subscribeTelemetry } from "@beamclaw/core";
import {
  formatDuration,
  formatRatio,
  fullGc,
  log,
  median,
  nextTurn,
  percentile,
  runBenchmark,
} from "./lib.mjs";

/** When the last crash was thrown (set by the handler just before `throw`). */
let thrownAt = 0;

class Worker extends Actor {
  handleCast() {
    const error = new Error("crash requested by the benchmark");
    thrownAt = performance.now();
    throw error;
  }
}

/** Starts a fresh actor directly; resolves with the time taken in ms (stop not timed). */
async function startOnce() {
  const start = performance.now();
  const actor = await new Worker().start();
  const elapsed = performance.now() - start;
  await actor.stop();
  return elapsed;
}

/**
 * One series: a supervisor with restart window `periodMs` (and no effective restart limit),
 * crashed `warmup + samples` times, alternating with direct starts for the baseline.
 */
async function series({ periodMs, warmup, samples }) {
  const registry = new Registry();
  /** Set by each sample; called by the telemetry listener. */
  let onRestart = null;
  const unsubscribe = subscribeTelemetry("beamclaw:supervisor.restart", (event) => {
    const at = performance.now();
    onRestart?.(at, event);
  });
  let supervisor;
  const endToEnd = [];
  const telemetry = [];
  const baseline = [];
  try {
    supervisor = await new Supervisor({
      strategy: "one_for_one",
      maxRestarts: Number.MAX_SAFE_INTEGER,
      periodMs,
      children: [{ id: "worker", start: () => new Worker().start(), via: registry.via("worker") }],
    }).start();

    /** Crashes the worker once; resolves with the two latencies in ms. */
    const crashOnce = () => {
      const old = registry.whereis("worker");
      if (old === undefined || old.status !== "running") throw new Error("worker not running");
      return new Promise((resolve, reject) => {
        onRestart = (at, event) => {
          onRestart = null;
          const current = registry.whereis("worker");
          if (current === undefined || current === old || current.status !== "running") {
            reject(
              new Error(
                "restart event fired but the via name does not resolve to a new running process",
              ),
            );
            return;
          }
          resolve({ endToEnd: at - thrownAt, latencyMs: event.latencyMs });
        };
        old.cast("crash");
      });
    };

    for (let i = -warmup; i < samples; i++) {
      // Each sample starts on a fresh turn of the event loop, as a crash caused by I/O would.
      await nextTurn();
      const started = await startOnce();
      await nextTurn();
      const { endToEnd: e2e, latencyMs } = await crashOnce();
      if (i >= 0) {
        baseline.push(started);
        endToEnd.push(e2e);
        telemetry.push(latencyMs);
      }
      if (i === -1) fullGc();
    }
    log(`restart: ${samples} crashes measured (periodMs ${periodMs})`);
  } finally {
    await supervisor?.stop();
    unsubscribe();
  }
  if (supervisor.exitReason !== "normal") {
    throw new Error(`supervisor exited abnormally: ${String(supervisor.exitReason)}`);
  }
  return { periodMs, endToEnd, telemetry, baseline };
}

async function main({ quick }) {
  const warmup = quick ? 500 : 5_000;
  const samples = quick ? 2_000 : 100_000;
  // A 1 s restart window slides during the run, so the supervisor's restart history holds
  // about one second's worth of restarts; a 10 ms window keeps it short. Same code otherwise.
  const main = await series({ periodMs: 1_000, warmup, samples });
  const short = await series({ periodMs: 10, warmup, samples });

  const targetMs = 1;
  const at = (values, p) => (p === 50 ? median(values) : percentile(values, p));
  const row = (measurement, run, values, p, target) => {
    const figure = at(values, p);
    const base = at(run.baseline, p);
    return {
      measurement,
      figure: formatDuration(figure),
      baseline: formatDuration(base),
      ratio: formatRatio(figure / base),
      target: target ? `< ${targetMs} ms` : "—",
      met: target ? figure < targetMs : null,
    };
  };
  const worst = (values) => formatDuration(Math.max(...values));
  return {
    id: "restart",
    title: "2. Crash-to-restarted latency (Supervisor, one_for_one)",
    description:
      "One child under a `one_for_one` Supervisor (`maxRestarts` effectively unlimited, " +
      "`periodMs` 1 s), registered with a `via` name. A cast whose handler throws crashes it; " +
      "the figure runs from just before the `throw` to the restart telemetry event, at which " +
      "point the via name resolves to the new, running process (checked on every sample). " +
      "The baseline is `await new Worker().start()` of the same class, sampled alternately. " +
      "Ratio = figure ÷ baseline at the same percentile. The last two rows repeat the " +
      "series with `periodMs` 10 ms, which keeps the supervisor's restart history short.",
    params: `${warmup.toLocaleString("en-US")} warm-up + ${samples.toLocaleString("en-US")} measured crashes per series, one per event-loop turn`,
    rows: [
      row("throw → replacement running, p50", main, main.endToEnd, 50, false),
      row("throw → replacement running, p99", main, main.endToEnd, 99, true),
      row("telemetry `latencyMs` (exit observed → running), p50", main, main.telemetry, 50, false),
      row("telemetry `latencyMs` (exit observed → running), p99", main, main.telemetry, 99, false),
      row("throw → replacement running, p50, `periodMs` 10 ms", short, short.endToEnd, 50, false),
      row("throw → replacement running, p99, `periodMs` 10 ms", short, short.endToEnd, 99, true),
    ],
    notes: [
      `p99.9 throw → running: ${formatDuration(percentile(main.endToEnd, 99.9))} (\`periodMs\` 1 s), ${formatDuration(percentile(short.endToEnd, 99.9))} (10 ms). Worst samples: ${worst(main.endToEnd)} and ${worst(short.endToEnd)}; fresh start ${worst(main.baseline)} and ${worst(short.baseline)}.`,
      "The target applies to the end-to-end figure (throw → running), which includes the telemetry `latencyMs` span.",
      "The two series differ in how many restart times the supervisor keeps for its intensity check (every restart within `periodMs`: tens of thousands in the 1 s series, a handful in the 10 ms one); expired times leave a queue from its front in O(1), so the bookkeeping does not grow with `maxRestarts`.",
    ],
  };
}

runBenchmark(main);
