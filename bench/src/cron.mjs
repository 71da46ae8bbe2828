/**
 * Benchmark: 100,000 scheduled cron jobs in one process. `CronService` (one timer per agent
 * over a heap of jobs, runs and run logs written to a `MemoryStore`) against croner driving
 * the same jobs alone, with its own timer per job.
 *
 * Three figures, each beside the same measurement for croner:
 * - heap bytes per scheduled job;
 * - time to schedule all jobs;
 * - firing lateness (when the job's code was called minus when it was due), p50 and p99,
 *   with `every` jobs whose anchors are spread evenly over one interval, so that thousands
 *   fire every second for a bounded window.
 */

import os from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import v8 from "node:v8";
import { CronService, MemoryStore } from "@beamclaw/core";
import { Cron } from "croner";
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

/** Wall-clock epoch ms with sub-millisecond resolution. */
const nowMs = () => performance.timeOrigin + performance.now();

function heapUsed() {
  fullGc();
  return v8.getHeapStatistics().used_heap_size;
}

function activeTimers() {
  return process.getActiveResourcesInfo().filter((type) => type === "Timeout").length;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function startService(runJob) {
  const store = new MemoryStore();
  await store.open();
  const service = await new CronService({ agentId: "bench", store, runJob }).start();
  return { store, service };
}

/** Adds `count` every-`everyMs` jobs, job i anchored at `anchorOf(i)`; resolves with the ms it took. */
async function addJobs(service, count, everyMs, anchorOf) {
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    await service.add({
      id: `job-${i}`,
      schedule: { every: everyMs, anchor: anchorOf(i) },
      prompt: "tick",
      // A run that comes due more than an interval late would otherwise stand in for the
      // occurrences it overtook (`run-once`, the default), which then never run and never
      // count as late: with `run-all` every occurrence runs and its lateness is measured.
      catchUp: "run-all",
      catchUpLimit: 1000,
    });
  }
  return performance.now() - start;
}

/** Heap per job and scheduling time of `CronService`, with every job due an hour from now. */
async function measureService(count, everyMs) {
  const before = heapUsed();
  const { store, service } = await startService(async () => ({ status: "ok" }));
  const base = Math.floor(Date.now()) + 3_600_000;
  const addMs = await addJobs(service, count, everyMs, (i) => base + i);
  const bytes = (heapUsed() - before) / count;
  const timers = activeTimers();
  await service.stop();
  await store.close();
  return { addMs, bytes, timers };
}

/** The same for croner: one one-shot `Cron` (and its own timer) per job. */
function measureCroner(count) {
  const jobs = new Array(count).fill(null);
  const before = heapUsed();
  const base = Math.floor(Date.now()) + 3_600_000;
  const start = performance.now();
  for (let i = 0; i < count; i++) jobs[i] = new Cron(new Date(base + i), () => {});
  const addMs = performance.now() - start;
  const bytes = (heapUsed() - before) / count;
  const timers = activeTimers();
  for (const job of jobs) job.stop();
  return { addMs, bytes, timers };
}

/**
 * Waits until `lateness` holds `expected` samples, or `graceMs` after `end`. From `start`
 * to `end` it also measures the process's CPU time and the event loop's own delay (how late
 * a 1 ms timer fires), the noise floor of every lateness figure on this machine.
 */
async function collect(lateness, expected, start, end, graceMs) {
  await sleep(Math.max(0, start - Date.now()));
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  await sleep(Math.max(0, end - Date.now()));
  const cpu = process.cpuUsage(cpuBefore);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const cpuShare = cpuMs / (performance.now() - wallBefore);
  delay.disable();
  while (lateness.length < expected && Date.now() < end + graceMs) await sleep(20);
  return {
    cpuMsPerRun: cpuMs / Math.max(1, lateness.length),
    cpuShare,
    loopDelayP99: delay.percentile(99) / 1e6,
    loopDelayMax: delay.max / 1e6,
  };
}

/**
 * Fires `count` every-`everyMs` jobs for `windowMs` through `CronService`. Anchors are spread
 * evenly over one interval starting `leadMs` from now, far enough ahead for all adds to
 * finish. Returns the lateness of every run due inside the window.
 */
async function fireService(count, everyMs, windowMs, leadMs) {
  const lateness = [];
  let end = Number.POSITIVE_INFINITY;
  const { store, service } = await startService(async (_job, { scheduledAt }) => {
    const late = nowMs() - scheduledAt;
    if (scheduledAt < end) lateness.push(late);
    return { status: "ok" };
  });
  const base = Math.ceil(Date.now() + leadMs);
  end = base + windowMs;
  const addMs = await addJobs(
    service,
    count,
    everyMs,
    (i) => base + Math.floor((i * everyMs) / count),
  );
  const addsEndedBeforeBase = Date.now() < base;
  const load = await collect(lateness, (count * windowMs) / everyMs, base, end, 30_000);
  const status = await service.cronStatus();
  await service.stop();
  await store.close();
  return { lateness, addMs, addsEndedBeforeBase, timerArmed: status.timerArmed, load };
}

/** The same jobs driven by croner alone: each occurrence is a one-shot `Cron` with its own timer. */
async function fireCroner(count, everyMs, windowMs, leadMs) {
  const lateness = [];
  const jobs = new Array(count).fill(null);
  const base = Math.ceil(Date.now() + leadMs);
  const end = base + windowMs;
  const schedule = (i, due) => {
    jobs[i] = new Cron(new Date(due), () => {
      lateness.push(nowMs() - due);
      if (due + everyMs < end) schedule(i, due + everyMs);
      else jobs[i] = null;
    });
  };
  for (let i = 0; i < count; i++) schedule(i, base + Math.floor((i * everyMs) / count));
  const load = await collect(lateness, (count * windowMs) / everyMs, base, end, 30_000);
  for (const job of jobs) job?.stop();
  return { lateness, load };
}

/**
 * {@link fireService}, again with twice the lead (at most twice more) when the adds were not
 * done before the first due time: a job added after its first due time skips that run, so the
 * run count would not mean what it should.
 */
async function fireServiceAhead(count, everyMs, windowMs, leadMs) {
  let result = await fireService(count, everyMs, windowMs, leadMs);
  for (let retry = 1; retry <= 2 && !result.addsEndedBeforeBase; retry++) {
    log(`cron: the adds ran past the first due time; again with ${2 ** retry}x the lead`);
    fullGc();
    result = await fireService(count, everyMs, windowMs, leadMs * 2 ** retry);
  }
  return result;
}

async function main({ quick }) {
  const count = quick ? 5_000 : 100_000;
  // A croner `Cron` holds ~45 KB (a 10,000-entry year table per pattern), so 100,000 of
  // them do not fit in Node's default heap: croner is measured at this count instead.
  const baselineCount = quick ? 1_000 : 10_000;
  const everyMs = quick ? 500 : 10_000;
  const windowMs = quick ? 1_000 : 10_000;
  /** Time between the last add and the first due run, beyond 1.5x the measured add time. */
  const leadMs = quick ? 300 : 1_000;
  const rate = (n) => Math.round((n * 1_000) / everyMs).toLocaleString("en-US");

  // Warm-up: compile the add, fire and record paths on a small set.
  await fireService(1_000, 250, 250, 200);
  await fireCroner(200, 250, 250, 200);
  await nextTurn();

  log(`cron: scheduling ${count.toLocaleString("en-US")} jobs (memory, time)`);
  const service = await measureService(count, everyMs);
  log(`cron: scheduling ${baselineCount.toLocaleString("en-US")} jobs with croner alone`);
  const croner = measureCroner(baselineCount);
  const serviceSmall = await measureService(baselineCount, everyMs);
  await nextTurn();

  log(
    `cron: firing ${count.toLocaleString("en-US")} jobs for ${windowMs / 1000} s through CronService`,
  );
  fullGc();
  const fired = await fireServiceAhead(count, everyMs, windowMs, service.addMs * 1.5 + leadMs);
  log(`cron: firing ${baselineCount.toLocaleString("en-US")} jobs through CronService and croner`);
  fullGc();
  const firedSmall = await fireServiceAhead(
    baselineCount,
    everyMs,
    windowMs,
    serviceSmall.addMs * 1.5 + leadMs,
  );
  fullGc();
  const baseline = await fireCroner(baselineCount, everyMs, windowMs, croner.addMs * 1.5 + leadMs);

  for (const [who, result, n] of [
    ["CronService", fired, count],
    ["CronService", firedSmall, baselineCount],
    ["croner", baseline, baselineCount],
  ]) {
    const expected = (n * windowMs) / everyMs;
    // Jobs added after their first due time skip it (reported in the notes).
    if (result.addsEndedBeforeBase === false) continue;
    if (result.lateness.length !== expected) {
      throw new Error(
        `${who} with ${n} jobs reported ${result.lateness.length} runs in the window, expected ${expected}`,
      );
    }
  }
  const max = (values) => values.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
  const stats = (values) => ({
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    max: max(values),
  });
  const big = stats(fired.lateness);
  const small = stats(firedSmall.lateness);
  const theirs = stats(baseline.lateness);
  const targetP99 = 20;
  const n = count.toLocaleString("en-US");
  const nb = baselineCount.toLocaleString("en-US");
  const row = (measurement, figure, base, ratio, target, met) => ({
    measurement,
    figure,
    baseline: base,
    ratio,
    target: target ?? "—",
    met: met ?? null,
  });
  return {
    id: "cron",
    title: "8. 100,000 cron jobs: CronService vs croner alone",
    description:
      `\`every\` jobs in one \`CronService\` (one timer over a heap; each run marks the job ` +
      "running, then records its state and a run-log entry, in a `MemoryStore`), against croner " +
      "driving the same jobs alone (a one-shot `Cron` per occurrence, each with its own timer, " +
      "which keeps croner's millisecond anchors). Heap per job: heap used after full GCs with all " +
      "jobs scheduled, minus before, over the count (for the service: the job, its heap entry and " +
      "its copy in the store). Lateness: when the job's code was called minus when it was due, " +
      "for every run due in the window. A croner `Cron` holds ~45 KB (a 10,000-entry year " +
      "table per pattern), so 100,000 of them do not fit in Node's default heap: croner is " +
      `measured with ${nb} jobs, beside the service running the same ${nb} jobs. ` +
      "Ratio = figure ÷ baseline.",
    params:
      `${n} jobs (croner: ${nb}), \`every\` ${everyMs / 1000} s with anchors spread evenly over ` +
      `one interval (${rate(count)} runs/s; ${rate(baselineCount)} runs/s with ${nb} jobs), a ` +
      `${windowMs / 1000} s firing window, a no-op job body`,
    rows: [
      row(
        "heap per scheduled job",
        `${formatBytes(service.bytes)} (${n} jobs)`,
        `${formatBytes(croner.bytes)} (${nb} jobs)`,
        formatRatio(service.bytes / croner.bytes),
      ),
      row(
        "time to schedule one job",
        formatDuration(service.addMs / count),
        formatDuration(croner.addMs / baselineCount),
        formatRatio(service.addMs / count / (croner.addMs / baselineCount)),
      ),
      row(`time to schedule all ${n} jobs`, formatDuration(service.addMs), "(does not fit)", "—"),
      row(`firing lateness, p50, ${n} jobs`, formatDuration(big.p50), "(does not fit)", "—"),
      row(
        `firing lateness, p99, ${n} jobs`,
        formatDuration(big.p99),
        "(does not fit)",
        "—",
        `< ${targetP99} ms`,
        big.p99 < targetP99,
      ),
      row(
        `firing lateness, p50, ${nb} jobs`,
        formatDuration(small.p50),
        formatDuration(theirs.p50),
        formatRatio(small.p50 / theirs.p50),
      ),
      row(
        `firing lateness, p99, ${nb} jobs`,
        formatDuration(small.p99),
        formatDuration(theirs.p99),
        formatRatio(small.p99 / theirs.p99),
      ),
      row(
        "timers armed with every job scheduled",
        `${service.timers} (${n} jobs)`,
        `${croner.timers} (${nb} jobs)`,
        "—",
      ),
    ],
    notes: [
      `The machine's own noise during each window: the event loop's delay (a 1 ms timer's lateness) had p99 ${formatDuration(fired.load.loopDelayP99)} and max ${formatDuration(fired.load.loopDelayMax)} (service, ${n} jobs), p99 ${formatDuration(firedSmall.load.loopDelayP99)} and max ${formatDuration(firedSmall.load.loopDelayMax)} (service, ${nb}), p99 ${formatDuration(baseline.load.loopDelayP99)} and max ${formatDuration(baseline.load.loopDelayMax)} (croner, ${nb}); one stall of the loop (a major GC, or the process waiting for a core) delays every run due during it, so it weighs on the lateness p99 far more than on the loop-delay p99. Load average (1 min) at the end: ${os.loadavg()[0].toFixed(2)} on ${os.cpus().length} cores. Lateness cannot be below that floor.`,
      `CPU time per run (process.cpuUsage over the window ÷ runs): ${formatDuration(fired.load.cpuMsPerRun)} (service, ${n} jobs, ${(fired.load.cpuShare * 100).toFixed(0)}% of one core), ${formatDuration(firedSmall.load.cpuMsPerRun)} (service, ${nb}), ${formatDuration(baseline.load.cpuMsPerRun)} (croner, ${nb}, which creates a \`Cron\` per run).`,
      `Worst lateness: ${formatDuration(big.max)} (service, ${n} jobs), ${formatDuration(small.max)} (service, ${nb} jobs), ${formatDuration(theirs.max)} (croner, ${nb} jobs).`,
      `Scheduling through \`CronService.add\` is a validated \`call\` to the actor that also writes the job to the store; \`new Cron(date, fn)\` parses a pattern and arms a timer. The firing phase's ${n} adds took ${formatDuration(fired.addMs)}.`,
      `croner needs one timer per job; the service one per agent whatever the number of jobs (still armed before stop: ${fired.timerArmed}).`,
      fired.addsEndedBeforeBase && firedSmall.addsEndedBeforeBase
        ? "All jobs were added before the first one was due."
        : "**Some jobs came due before all were added, in three tries with a longer lead each**: those skipped their first run, so the run counts were not checked.",
    ],
  };
}

runBenchmark(main);
