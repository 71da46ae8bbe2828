/**
 * Helpers shared by the benchmarks: the quick/full switch, statistics, number formatting
 * and the protocol between a benchmark process and the runner (`run.mjs`).
 *
 * Every benchmark runs in its own Node.js process (started by `run.mjs` with
 * `--expose-gc`), so that one benchmark's heap and JIT state do not colour the next and so
 * that the runner can check that each one exits by itself (nothing left running).
 */
import { performance } from "node:perf_hooks";

/** Quick mode: `--quick` on the command line, or `BENCH_QUICK=1` in the environment. */
export function isQuick(argv = process.argv, env = process.env) {
  return argv.includes("--quick") || env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true";
}

/** Runs a full garbage collection (several passes, so weak and finalised objects go too). */
export function fullGc() {
  if (typeof globalThis.gc !== "function") {
    throw new Error("run the benchmarks with `node --expose-gc` (use `pnpm bench`)");
  }
  for (let i = 0; i < 4; i++) globalThis.gc();
}

/** Resolves on the next turn of the event loop (after pending I/O callbacks). */
export function nextTurn() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Median of a list of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Nearest-rank percentile (`p` in 0..100) of a list of numbers. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/** Milliseconds elapsed while `fn` runs (awaited). */
export async function timeMs(fn) {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** `1234567` -> `"1.23 M"`; operations per second and the like. */
export function formatRate(perSecond, unit) {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M ${unit}/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)} k ${unit}/s`;
  return `${perSecond.toFixed(0)} ${unit}/s`;
}

/** A duration given in milliseconds, printed in the most readable unit. */
export function formatDuration(ms) {
  if (ms < 1) return `${(ms * 1000).toFixed(1)} µs`;
  if (ms < 1000) return `${ms.toFixed(2)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** Nanoseconds per operation, from operations per second. */
export function formatNsPerOp(perSecond) {
  return `${(1e9 / perSecond).toFixed(0)} ns`;
}

/** A byte count. */
export function formatBytes(bytes) {
  if (Math.abs(bytes) >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (Math.abs(bytes) >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  if (Math.abs(bytes) >= 10 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes.toFixed(0)} B`;
}

/** A ratio, as `3.21x`. */
export function formatRatio(ratio) {
  return `${ratio.toFixed(ratio >= 100 ? 0 : 2)}x`;
}

/** Progress output goes to stderr; stdout carries only the result line. */
export function log(message) {
  process.stderr.write(`  ${message}\n`);
}

const RESULT_PREFIX = "@@BENCH_RESULT ";

/**
 * Runs one benchmark's `main(options)` and prints its result (a JSON line on stdout, read
 * by `run.mjs`). A throw exits non-zero. The process must then exit by itself: if it is
 * still alive after a few seconds, whatever keeps it alive is printed to stderr (the runner
 * reports that benchmark as failed).
 */
export function runBenchmark(main) {
  const quick = isQuick();
  main({ quick }).then(
    (result) => {
      process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
      setTimeout(() => {
        process.stderr.write(
          `benchmark still alive after finishing; open resources: ${process
            .getActiveResourcesInfo()
            .join(", ")}\n`,
        );
      }, 3_000).unref();
    },
    (error) => {
      process.stderr.write(`benchmark crashed: ${error?.stack ?? error}\n`);
      process.exitCode = 1;
      // The crash is what gets reported; do not also hang on whatever it left running.
      setTimeout(() => process.exit(1), 1_000).unref();
    },
  );
}

/** Picks the result out of a benchmark process's stdout, or `undefined`. */
export function parseResult(stdout) {
  for (const line of stdout.split("\n")) {
    if (line.startsWith(RESULT_PREFIX)) return JSON.parse(line.slice(RESULT_PREFIX.length));
  }
  return undefined;
}

/**
 * A connected ioredis client for the Redis at `url` (one retry per request), or an error that
 * says how to get one. The caller quits it.
 */
export async function connectRedis(url) {
  const { Redis } = await import("ioredis");
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    throw new Error(`no Redis at ${url} (${error.message}); start one or set BEAMCLAW_REDIS_URL`);
  }
  return client;
}
