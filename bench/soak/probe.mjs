/**
 * Loaded into the gateway process with `node --import ./probe.mjs ...`: every
 * `SOAK_PROBE_INTERVAL_MS` it appends one JSON line to `SOAK_PROBE_FILE` with the process's
 * resident set size, V8 heap, event-loop delay since the last sample (p50, p99, max, from
 * `perf_hooks.monitorEventLoopDelay`), the handles keeping the loop alive
 * (`process.getActiveResourcesInfo()`) and its open file descriptors (`/proc/self/fd`). The
 * gateway itself is not changed; the probe's timer is unref'd, so it never keeps the process
 * alive. Without `SOAK_PROBE_FILE` it does nothing.
 *
 * With `SOAK_PROBE_GC_EVERY_MS` and the gateway started with `--expose-gc`, it also forces a
 * full collection that often and writes a sample taken right after it (`afterGc: true`): the
 * memory the process retains, which is what a leak moves, free of the heap's saw-tooth
 * between collections.
 *
 * For leak hunting: `SOAK_PROBE_HEAP_SNAPSHOTS=180,480` (seconds after the probe starts) and
 * `SOAK_PROBE_SNAPSHOT_DIR=<dir>` write a heap snapshot (after a full collection, with
 * `--expose-gc`) at each of those times, to compare in Chrome DevTools.
 */
import { appendFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { getHeapStatistics, writeHeapSnapshot } from "node:v8";

const file = process.env.SOAK_PROBE_FILE;
const intervalMs = Number(process.env.SOAK_PROBE_INTERVAL_MS ?? 1000);
const gcEveryMs = Number(process.env.SOAK_PROBE_GC_EVERY_MS ?? 0);

function openFds() {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return null; // not Linux
  }
}

if (file !== undefined && file !== "") {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const t0 = Date.now();
  const sample = (afterGc = false) => {
    const memory = process.memoryUsage();
    const heap = getHeapStatistics();
    const resources = process.getActiveResourcesInfo();
    const byType = {};
    for (const type of resources) byType[type] = (byType[type] ?? 0) + 1;
    const line = {
      t: Date.now() - t0,
      at: Date.now(),
      rss: memory.rss,
      heapUsed: heap.used_heap_size,
      heapTotal: heap.total_heap_size,
      heapLimit: heap.heap_size_limit,
      external: memory.external,
      arrayBuffers: memory.arrayBuffers,
      eldP50: delay.count > 0 ? delay.percentile(50) / 1e6 : 0,
      eldP99: delay.count > 0 ? delay.percentile(99) / 1e6 : 0,
      eldMax: delay.count > 0 ? delay.max / 1e6 : 0,
      handles: resources.length,
      handlesByType: byType,
      fds: openFds(),
      ...(afterGc ? { afterGc: true } : {}),
    };
    if (!afterGc) delay.reset();
    try {
      appendFileSync(file, `${JSON.stringify(line)}\n`);
    } catch {
      // The harness removed the file at the end of the run: nothing left to report to.
    }
  };
  setInterval(() => sample(), intervalMs).unref();
  sample();
  const snapshotDir = process.env.SOAK_PROBE_SNAPSHOT_DIR;
  for (const at of (process.env.SOAK_PROBE_HEAP_SNAPSHOTS ?? "").split(",")) {
    const seconds = Number(at);
    if (at.trim() === "" || !Number.isFinite(seconds) || snapshotDir === undefined) continue;
    setTimeout(() => {
      globalThis.gc?.();
      writeHeapSnapshot(join(snapshotDir, `heap-${seconds}s.heapsnapshot`));
    }, seconds * 1000).unref();
  }
  if (gcEveryMs > 0 && typeof globalThis.gc === "function") {
    setInterval(() => {
      globalThis.gc();
      sample(true);
    }, gcEveryMs).unref();
  }
}
