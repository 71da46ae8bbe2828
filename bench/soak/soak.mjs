/**
 * The soak: the standalone gateway (`beamclaw gateway --config`, the real CLI in its own
 * process, `@beamclaw/store-fs` under a temporary directory) in front of a scripted local
 * OpenAI-compatible server (`openai-server.mjs`, its own process), driven over WebSocket
 * (OpenClaw's protocol: `chat.send` and the `chat` events) and over the OpenAI-compatible HTTP
 * endpoint (streaming and not, kept and one-off sessions) by many clients for a bounded time.
 * A probe loaded into the gateway (`probe.mjs`, `node --import`) records its RSS, heap,
 * event-loop delay, active handles and open file descriptors; the clients record every turn's
 * latency. The run ends by itself: clients stop, in-flight turns finish, the gateway gets
 * SIGTERM and must exit 0, the store is reopened and checked, everything is deleted.
 *
 * Figures are compared with the first window after warm-up of the same run (the baseline):
 * memory should stay within ±10% of it, the p99 turn latency within ±20%. Reported, never
 * asserted. The plot goes to `bench/soak.svg` (full mode) or `bench/soak.quick.svg` (quick).
 *
 *   node soak.mjs                          full mode: 1 hour
 *   node soak.mjs --duration 5m            any duration (s, m, h, or ms without a unit)
 *   BENCH_QUICK=1 node soak.mjs            quick mode: 8 seconds (CI)
 *   SOAK_DURATION=5m SOAK_WS_CLIENTS=16 SOAK_HTTP_CLIENTS=8 SOAK_THINK_MS=50 node soak.mjs
 *   node soak.mjs --dedupe-window 86400000 (SOAK_DEDUPE_WINDOW_MS): the store's dedupe window
 *                                          (default 1 minute, shorter than the warm-up)
 *   node soak.mjs --stream-coalesce 50 (SOAK_STREAM_COALESCE_MS): the gateway's
 *                                          streamCoalesceMs (default 0)
 *   SOAK_GATEWAY_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" node soak.mjs
 *                                          extra Node.js flags for the gateway process (a CPU
 *                                          profile of the gateway under the soak's load)
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createFsStore } from "@beamclaw/store-fs";
import {
  formatBytes,
  formatDuration,
  formatRatio,
  log,
  median,
  percentile,
  runBenchmark,
} from "../src/lib.mjs";
import { GatewayWsClient, httpTurn } from "./clients.mjs";
import { soakDurationMs } from "./duration.mjs";
import { renderSoakSvg } from "./plot.mjs";

const soakDir = path.dirname(fileURLToPath(import.meta.url));
const benchDir = path.dirname(soakDir);
const require = createRequire(import.meta.url);
const TOKEN = "soak-token-0123456789abcdef";
const WINDOWS = 6;

function settings(quick) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: "boolean" },
      duration: { type: "string" },
      "ws-clients": { type: "string" },
      "http-clients": { type: "string" },
      "think-ms": { type: "string" },
      "dedupe-window": { type: "string" },
      "stream-coalesce": { type: "string" },
    },
    allowPositionals: false,
  });
  const env = process.env;
  const durationMs = soakDurationMs(quick, values.duration, env);
  const wsClients = Number(values["ws-clients"] ?? env.SOAK_WS_CLIENTS ?? (quick ? 4 : 12));
  const httpClients = Number(values["http-clients"] ?? env.SOAK_HTTP_CLIENTS ?? (quick ? 2 : 6));
  const thinkMs = Number(values["think-ms"] ?? env.SOAK_THINK_MS ?? 100);
  // The store remembers every acknowledged idempotency key for this long (store-fs
  // `dedupeWindowMs`), a few hundred bytes each: with the default 24 h the soak would measure
  // that index filling up, not a leak. One minute is shorter than any warm-up, so the windows
  // after it see the steady state a deployment reaches once its own window is full.
  const dedupeWindowMs = Number(
    values["dedupe-window"] ?? env.SOAK_DEDUPE_WINDOW_MS ?? (quick ? 2_000 : 60_000),
  );
  // The gateway's `streamCoalesceMs` (default 0: every text delta sent as it comes).
  const streamCoalesceMs = Number(values["stream-coalesce"] ?? env.SOAK_STREAM_COALESCE_MS ?? 0);
  for (const [name, v] of [
    ["stream coalesce ms", streamCoalesceMs],
    ["ws clients", wsClients],
    ["http clients", httpClients],
    ["think ms", thinkMs],
    ["dedupe window ms", dedupeWindowMs],
  ]) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a whole number >= 0`);
  }
  if (durationMs < 2_000) throw new Error("the soak needs at least 2 s");
  // Warm-up: a quarter of a short run, 5 minutes of a long one.
  const warmupMs = Math.min(300_000, Math.round(durationMs / 4));
  // About 720 samples per run, between 4 per second and one per 5 s.
  const sampleMs = Math.min(5_000, Math.max(250, Math.round(durationMs / 720)));
  // A forced full collection about 120 times a run (every 30 s of an hour), each followed by
  // a sample of the memory the gateway retains: about 20 per window.
  const gcEveryMs = Math.min(30_000, Math.max(500, Math.round(durationMs / 120)));
  // Sessions hibernate (and are revived) during the run: each client's sessions come back
  // about every 8 s, after they were idle longer than this.
  const hibernateAfterMs = quick ? 1_000 : 5_000;
  return {
    durationMs,
    warmupMs,
    sampleMs,
    gcEveryMs,
    wsClients,
    httpClients,
    thinkMs,
    hibernateAfterMs,
    dedupeWindowMs,
    streamCoalesceMs,
  };
}

/** Starts a child process and resolves with it and the first stdout line matching `pattern`. */
async function startChild(args, { env, pattern, what, timeoutMs = 30_000 }) {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => {
    err = (err + d).slice(-20_000);
  });
  const exited = once(child, "exit");
  const match = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${what} did not start within ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    const onData = (d) => {
      out += d;
      const m = pattern.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        child.stdout.off("data", onData);
        // Keep draining stdout so the child never blocks on a full pipe.
        child.stdout.on("data", (more) => {
          out = (out + more).slice(-20_000);
        });
        resolve(m);
      }
    };
    child.stdout.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${signal ?? code}) while starting: ${err}`));
    });
  });
  return { child, match, exited, output: () => out, errors: () => err };
}

/** SIGTERM, then waits for the exit; SIGKILL after `graceMs`. Resolves with how it ended. */
async function stopChild(proc, graceMs) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
    return { code: proc.child.exitCode, signal: proc.child.signalCode, killed: false };
  }
  proc.child.kill("SIGTERM");
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    proc.child.kill("SIGKILL");
  }, graceMs);
  const [code, signal] = await proc.exited;
  clearTimeout(timer);
  return { code, signal, killed };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Turn bookkeeping shared by every client. */
function createRecorder(t0) {
  return {
    turns: [], // [tEndMs, latencyMs, kind]
    errors: [], // [tMs, kind, code]
    acknowledged: 0,
    finished: 0,
    ok(kind, started) {
      const now = performance.now();
      this.turns.push([now - t0, now - started, kind]);
    },
    fail(kind, error) {
      this.errors.push([
        performance.now() - t0,
        kind,
        error?.code ?? error?.message ?? String(error),
      ]);
    },
  };
}

async function wsClientLoop({ index, url, until, thinkMs, recorder }) {
  const sessions = 32;
  const reconnectEvery = 150;
  let client = await GatewayWsClient.connect(url, TOKEN);
  const turnsOn = new Map();
  for (let turn = 0; performance.now() < until(); turn++) {
    if (turn > 0 && turn % reconnectEvery === 0) {
      // Connection churn: every client reconnects now and then.
      await client.close();
      client = await GatewayWsClient.connect(url, TOKEN);
    }
    const slot = turn % sessions;
    const key = `agent:main:soak-ws-${index}-${slot}`;
    const started = performance.now();
    try {
      const { done } = await client.send(
        key,
        `message ${turn} from ws client ${index}`,
        `ws-${index}-${turn}`,
      );
      recorder.acknowledged++;
      await done;
      recorder.finished++;
      recorder.ok("ws", started);
    } catch (error) {
      recorder.fail("ws", error);
    }
    // Transcripts stay bounded: each session is reset every 25 of its turns.
    const n = (turnsOn.get(key) ?? 0) + 1;
    turnsOn.set(key, n);
    if (n % 25 === 0) {
      try {
        await client.request("sessions.reset", { key });
      } catch (error) {
        recorder.fail("ws-reset", error);
      }
    }
    await sleep(thinkMs * (0.5 + Math.random()));
  }
  await client.close();
}

async function httpClientLoop({ index, port, until, thinkMs, recorder }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let turn = 0; performance.now() < until(); turn++) {
      // Alternate: kept sessions (per `user`, reset by deleting every 25 turns is not
      // possible over HTTP, so users rotate) and one-off sessions deleted after the turn.
      const kept = turn % 2 === 0;
      const user = kept ? `soak-http-${index}-${Math.floor(turn / 50) % 4}-${turn % 8}` : undefined;
      const stream = turn % 4 < 2;
      const started = performance.now();
      try {
        await httpTurn({
          port,
          token: TOKEN,
          agent,
          message: `message ${turn} from http client ${index}`,
          user,
          stream,
        });
        recorder.ok(stream ? "http-stream" : "http", started);
      } catch (error) {
        recorder.fail("http", error);
      }
      await sleep(thinkMs * (0.5 + Math.random()));
    }
  } finally {
    agent.destroy();
  }
}

/** The largest of `values` (a loop: spreading 400,000 turn latencies overflows the stack). */
function maxOf(values) {
  let out = Number.NEGATIVE_INFINITY;
  for (const v of values) if (v > out) out = v;
  return out;
}

/** The smallest of `values`. */
function minOf(values) {
  let out = Number.POSITIVE_INFINITY;
  for (const v of values) if (v < out) out = v;
  return out;
}

/** Splits [from, to) into `n` equal windows. */
function windows(from, to, n) {
  const width = (to - from) / n;
  return Array.from({ length: n }, (_, i) => [from + i * width, from + (i + 1) * width]);
}

function deviation(values, baseline) {
  return maxOf(values.map((v) => Math.abs(v / baseline - 1)));
}

function pct(x) {
  return `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
}

async function main({ quick }) {
  const s = settings(quick);
  const tmp = await mkdtemp(path.join(os.tmpdir(), "beamclaw-soak-"));
  const probeFile = path.join(tmp, "probe.jsonl");
  const cli = path.join(
    path.dirname(require.resolve("@beamclaw/gateway-ws/package.json")),
    "dist",
    "cli.js",
  );
  let server;
  let gateway;
  /** Set once the run's data is saved, and once the report is built. */
  let analysing = false;
  let analysed = false;
  try {
    log(
      `soak: ${formatDuration(s.durationMs)}, ${s.wsClients} WebSocket + ${s.httpClients} HTTP clients, think ${s.thinkMs} ms, samples every ${s.sampleMs} ms`,
    );
    server = await startChild([path.join(soakDir, "openai-server.mjs")], {
      pattern: /\{"port":(\d+)\}/,
      what: "the scripted OpenAI-compatible server",
    });
    const modelPort = Number(server.match[1]);
    const config = [
      "gateway:",
      "  host: 127.0.0.1",
      "  port: 0",
      "  auth: { mode: token, token: ${BEAMCLAW_GATEWAY_TOKEN} }",
      `  streamCoalesceMs: ${s.streamCoalesceMs}`,
      `store: { kind: fs, dir: ./store, dedupeWindowMs: ${s.dedupeWindowMs} }`,
      "providers:",
      `  soak: { kind: openai-compatible, baseUrl: "http://127.0.0.1:${modelPort}/v1", apiKey: none }`,
      "agents:",
      "  main: { model: soak/soak-model }",
      "sessions:",
      `  hibernateAfterMs: ${s.hibernateAfterMs}`,
      "memoryPressure: { maxHeapUsedRatio: 0.9 }",
      "",
    ].join("\n");
    const configPath = path.join(tmp, "beamclaw.yaml");
    await writeFile(configPath, config);
    gateway = await startChild(
      [
        "--expose-gc",
        ...(process.env.SOAK_GATEWAY_NODE_FLAGS ?? "").split(/\s+/).filter(Boolean),
        "--import",
        path.join(soakDir, "probe.mjs"),
        cli,
        "gateway",
        "--config",
        configPath,
      ],
      {
        env: {
          BEAMCLAW_GATEWAY_TOKEN: TOKEN,
          SOAK_PROBE_FILE: probeFile,
          SOAK_PROBE_INTERVAL_MS: String(s.sampleMs),
          SOAK_PROBE_GC_EVERY_MS: String(s.gcEveryMs),
        },
        pattern: /listening on http:\/\/127\.0\.0\.1:(\d+)/,
        what: "the gateway",
      },
    );
    const port = Number(gateway.match[1]);
    log(`soak: gateway pid ${gateway.child.pid} on port ${port}, model on ${modelPort}`);

    // The run: its clock starts with the clients.
    const t0 = performance.now();
    const epoch0 = Date.now();
    const end = t0 + s.durationMs;
    const recorder = createRecorder(t0);
    const until = () => end;
    const progress = setInterval(
      () =>
        log(
          `soak: ${((performance.now() - t0) / 1000).toFixed(0)} s, ${recorder.turns.length} turns, ${recorder.errors.length} errors`,
        ),
      Math.max(5_000, Math.min(60_000, s.durationMs / 10)),
    );
    try {
      await Promise.all([
        ...Array.from({ length: s.wsClients }, (_, index) =>
          wsClientLoop({
            index,
            url: `ws://127.0.0.1:${port}`,
            until,
            thinkMs: s.thinkMs,
            recorder,
          }),
        ),
        ...Array.from({ length: s.httpClients }, (_, index) =>
          httpClientLoop({ index, port, until, thinkMs: s.thinkMs, recorder }),
        ),
      ]);
    } finally {
      clearInterval(progress);
    }
    const runMs = performance.now() - t0;

    // A graceful stop: exit code 0, nothing left pending in the store, no repair needed.
    const stopped = await stopChild(gateway, 30_000);
    const store = createFsStore({ dir: path.join(tmp, "store") });
    await store.open();
    const pending = await store.queue.pending({ limit: 1000 });
    const recoveries = [...store.recoveries];
    await store.close();
    await stopChild(server, 10_000);

    // The raw data, kept (with the probe's file) if what follows fails: an hour is costly.
    await writeFile(
      path.join(tmp, "turns.json"),
      JSON.stringify({ epoch0, runMs, turns: recorder.turns, errors: recorder.errors }),
    );
    analysing = true;

    // The probe's samples, on the run's clock (seconds).
    const probed = (await readFile(probeFile, "utf8"))
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line))
      .map((x) => ({ ...x, t: (x.at - epoch0) / 1000 }))
      .filter((x) => x.t >= 0 && x.t <= runMs / 1000);
    // Regular samples, and those taken right after a forced full collection (retained memory).
    const samples = probed.filter((x) => x.afterGc !== true);
    const retained = probed.filter((x) => x.afterGc === true);
    const turns = recorder.turns;
    const durationS = runMs / 1000;
    const warmupS = s.warmupMs / 1000;

    // Windows after warm-up; the first is the baseline.
    const wins = windows(warmupS, durationS, WINDOWS);
    const inWin = ([a, b]) => samples.filter((x) => x.t >= a && x.t < b);
    const latIn = ([a, b]) =>
      turns.filter((x) => x[0] / 1000 >= a && x[0] / 1000 < b).map((x) => x[1]);
    const retainedIn = ([a, b]) => retained.filter((x) => x.t >= a && x.t < b);
    // Memory retained: sampled right after a forced full collection, the figure a leak moves.
    // Between collections the heap saw-tooths (and RSS with it) by tens of percent whatever
    // is retained; those figures are in the notes. Without post-GC samples (a gateway
    // started without --expose-gc), the lowest heap used and the median RSS stand in.
    const rssW = wins.map((w) =>
      retainedIn(w).length > 0
        ? median(retainedIn(w).map((x) => x.rss))
        : median(inWin(w).map((x) => x.rss)),
    );
    const heapW = wins.map((w) =>
      retainedIn(w).length > 0
        ? median(retainedIn(w).map((x) => x.heapUsed))
        : minOf(inWin(w).map((x) => x.heapUsed)),
    );
    const rssMedianW = wins.map((w) => median(inWin(w).map((x) => x.rss)));
    const heapLowW = wins.map((w) => minOf(inWin(w).map((x) => x.heapUsed)));
    const heapMedianW = wins.map((w) => median(inWin(w).map((x) => x.heapUsed)));
    const p99W = wins.map((w) => percentile(latIn(w), 99));
    const p50W = wins.map((w) => percentile(latIn(w), 50));
    // Turns per second by window. The memory retained at a full GC includes the work in
    // flight, and latency depends on the load: a window whose throughput differs from the
    // baseline's by more than 5% (the machine was busy with something else) measured a
    // different load, and its deviations say so rather than anything about a leak.
    const tpsW = wins.map(([a, b]) => latIn([a, b]).length / (b - a));
    const disturbed = tpsW
      .map((v, i) => (Math.abs(v / tpsW[0] - 1) > 0.05 ? i + 1 : 0))
      .filter((i) => i > 0);
    const eldW = wins.map((w) => median(inWin(w).map((x) => x.eldP99)));
    const handlesW = wins.map((w) => median(inWin(w).map((x) => x.handles)));
    const fdsW = wins.map((w) => median(inWin(w).map((x) => x.fds ?? 0)));
    const rssDev = deviation(rssW, rssW[0]);
    const heapDev = deviation(heapW, heapW[0]);
    const p99Dev = deviation(p99W, p99W[0]);

    // Time buckets for the plot.
    const bucketS = Math.max(1, durationS / 120);
    const buckets = [];
    for (let b = 0; b * bucketS < durationS; b++) {
      const from = b * bucketS;
      const to = Math.min(durationS, from + bucketS);
      const lat = turns.filter((x) => x[0] / 1000 >= from && x[0] / 1000 < to).map((x) => x[1]);
      const errs = recorder.errors.filter((x) => x[0] / 1000 >= from && x[0] / 1000 < to).length;
      buckets.push({
        t: (from + to) / 2,
        p50: lat.length > 0 ? percentile(lat, 50) : Number.NaN,
        p99: lat.length > 0 ? percentile(lat, 99) : Number.NaN,
        turnsPerS: lat.length / (to - from),
        errorsPerS: errs / (to - from),
      });
    }
    // Acknowledged by the gateway (chat.send answered) but never finished with a final answer.
    const lost = recorder.acknowledged - recorder.finished;
    const errorCodes = {};
    for (const [, kind, code] of recorder.errors)
      errorCodes[`${kind}:${code}`] = (errorCodes[`${kind}:${code}`] ?? 0) + 1;
    const allLat = turns.map((x) => x[1]);
    const svgName = quick ? "soak.quick.svg" : "soak.svg";
    const within = (x) => pct(x).replace("+", "±");
    const headline = `largest deviation ${within(rssDev)} (RSS after GC), ${within(heapDev)} (heap after GC), ${within(p99Dev)} (p99 latency)`;
    const svg = renderSoakSvg({
      title: `BeamClaw gateway soak${quick ? " (quick mode)" : ""}: ${formatDuration(runMs)}, ${turns.length.toLocaleString("en-US")} turns, ${recorder.errors.length} errors`,
      subtitle: [
        `${s.wsClients} WebSocket + ${s.httpClients} HTTP clients against \`beamclaw gateway\` (store-fs) and a scripted OpenAI-compatible server; Node.js ${process.version}; ${os.cpus()[0]?.model.trim() ?? "CPU"} × ${os.cpus().length}`,
        `After ${formatDuration(s.warmupMs)} of warm-up (shaded), against the first of ${WINDOWS} windows after it: ${headline}.`,
        "Target bands around that baseline: ±10% RSS and heap retained (after a forced full GC, thick lines), ±20% p99 latency.",
        `${new Date(epoch0).toISOString()} · bench/soak/soak.mjs`,
      ],
      samples,
      retained,
      buckets,
      warmupS,
      durationS,
      baseline: { rss: rssW[0], heapUsed: heapW[0], p99: p99W[0] },
    });
    await writeFile(path.join(benchDir, svgName), svg);
    log(`soak: plot written to bench/${svgName}`);

    const last = WINDOWS - 1;
    const rows = [
      {
        measurement: "gateway RSS after a full GC (median of the last window)",
        figure: formatBytes(rssW[last]),
        baseline: formatBytes(rssW[0]),
        ratio: formatRatio(rssW[last] / rssW[0]),
        target: "every window within ±10%",
        met: rssDev <= 0.1,
      },
      {
        measurement: "gateway heap retained: used after a full GC (median of the last window)",
        figure: formatBytes(heapW[last]),
        baseline: formatBytes(heapW[0]),
        ratio: formatRatio(heapW[last] / heapW[0]),
        target: "every window within ±10%",
        met: heapDev <= 0.1,
      },
      {
        measurement: "turn latency p99 (last window)",
        figure: formatDuration(p99W[last]),
        baseline: formatDuration(p99W[0]),
        ratio: formatRatio(p99W[last] / p99W[0]),
        target: "every window within ±20%",
        met: p99Dev <= 0.2,
      },
      {
        measurement: "turn latency p50 (last window)",
        figure: formatDuration(p50W[last]),
        baseline: formatDuration(p50W[0]),
        ratio: formatRatio(p50W[last] / p50W[0]),
        target: "—",
        met: null,
      },
      {
        measurement: "gateway event-loop delay p99 (median of the last window)",
        figure: formatDuration(eldW[last]),
        baseline: formatDuration(eldW[0]),
        ratio: formatRatio(eldW[last] / Math.max(1e-9, eldW[0])),
        target: "—",
        met: null,
      },
      {
        measurement: "gateway active handles / file descriptors (last window)",
        figure: `${handlesW[last]} / ${fdsW[last]}`,
        baseline: `${handlesW[0]} / ${fdsW[0]}`,
        ratio: `${formatRatio(handlesW[last] / Math.max(1, handlesW[0]))} / ${formatRatio(fdsW[last] / Math.max(1, fdsW[0]))}`,
        target: "—",
        met: null,
      },
      {
        measurement: "failed turns; acknowledged WebSocket messages never finished",
        figure: `${recorder.errors.length}; ${lost}`,
        baseline: `${turns.length.toLocaleString("en-US")} turns`,
        ratio: `${((recorder.errors.length / Math.max(1, turns.length + recorder.errors.length)) * 100).toFixed(3)}%`,
        target: "0; 0",
        met: recorder.errors.length === 0 && lost === 0,
      },
      {
        measurement:
          "graceful stop (SIGTERM): exit code; store reopened: pending messages, repairs",
        figure: `${stopped.killed ? "KILLED after 30 s" : (stopped.signal ?? stopped.code)}; ${pending.length}, ${recoveries.length}`,
        baseline: "—",
        ratio: "—",
        target: "0; 0, 0",
        met:
          !stopped.killed && stopped.code === 0 && pending.length === 0 && recoveries.length === 0,
      },
    ];
    const result = {
      id: "soak",
      title: "9. Soak: the standalone gateway under steady load",
      description:
        "`beamclaw gateway` (the real CLI process, `@beamclaw/store-fs`, load shedding on at 90% of the heap limit) in front of a " +
        "scripted OpenAI-compatible server (its own process, 12 streamed chunks 2 ms apart), " +
        "driven by WebSocket clients (OpenClaw protocol v4: `chat.send` and its `chat` events, each " +
        "client cycling over 32 sessions that hibernate and revive, resetting each every 25 turns, " +
        "reconnecting every 150 turns) and HTTP clients (`/v1/chat/completions`, streaming and not, " +
        "per-user and one-off sessions). A probe loaded into the gateway (`node --import`) samples its " +
        "RSS, heap, event-loop delay, active handles and file descriptors. After warm-up the run is " +
        `split into ${WINDOWS} windows; the first is the baseline, and the target is that every later ` +
        "window stays within ±10% (memory retained: RSS and heap used sampled right after a full " +
        `collection the probe forces every ${formatDuration(s.gcEveryMs)}, median per window) and ±20% ` +
        "(turn latency p99) of it. Plot: " +
        `\`bench/${svgName}\`.`,
      params: `${formatDuration(runMs)} (warm-up ${formatDuration(s.warmupMs)}), ${s.wsClients} WebSocket + ${s.httpClients} HTTP clients, think time ${s.thinkMs} ms ±50%, samples every ${s.sampleMs} ms, a forced full GC every ${formatDuration(s.gcEveryMs)}, sessions hibernate after ${s.hibernateAfterMs} ms idle, store dedupe window ${formatDuration(s.dedupeWindowMs)}`,
      rows,
      notes: [
        `Throughput: ${(turns.length / durationS).toFixed(1)} turns/s overall; latency over the whole run p50 ${formatDuration(percentile(allLat, 50))}, p99 ${formatDuration(percentile(allLat, 99))}, max ${formatDuration(maxOf(allLat))}.`,
        `RSS after a full GC by window (median of ${retainedIn(wins[0]).length}–${maxOf(wins.map((w) => retainedIn(w).length))} samples each): ${rssW.map((v) => formatBytes(v)).join(", ")} (largest deviation from the first ${pct(rssDev)}); RSS at any time, median: ${rssMedianW.map((v) => formatBytes(v)).join(", ")} (largest deviation ${pct(deviation(rssMedianW, rssMedianW[0]))}).`,
        `Heap used after a full GC by window (median): ${heapW.map((v) => formatBytes(v)).join(", ")} (largest deviation ${pct(heapDev)}); heap used at any time, lowest: ${heapLowW.map((v) => formatBytes(v)).join(", ")}; median: ${heapMedianW.map((v) => formatBytes(v)).join(", ")} (largest deviation ${pct(deviation(heapMedianW, heapMedianW[0]))}).`,
        `Turn latency p99 by window: ${p99W.map((v) => formatDuration(v)).join(", ")} (largest deviation ${pct(p99Dev)}); p50: ${p50W.map((v) => formatDuration(v)).join(", ")}.`,
        `Throughput by window: ${tpsW.map((v) => v.toFixed(1)).join(", ")} turns/s. ${
          disturbed.length === 0
            ? "Every window ran within 5% of the baseline's throughput."
            : `Window${disturbed.length === 1 ? "" : "s"} ${disturbed.join(", ")} ran more than 5% away from the baseline's throughput (the machine was busy with something else, or the load had not settled): the memory retained at a full GC includes the work in flight, and latency depends on the load, so their deviations measure a different load.`
        }`,
        `Errors by kind: ${Object.keys(errorCodes).length === 0 ? "none" : JSON.stringify(errorCodes)}.`,
        `Gateway samples: ${samples.length}; heap limit ${formatBytes(samples[0]?.heapLimit ?? 0)}; peak RSS ${formatBytes(maxOf(samples.map((x) => x.rss)))}; peak event-loop delay ${formatDuration(maxOf(samples.map((x) => x.eldMax)))}.`,
      ],
    };
    analysed = true;
    return result;
  } finally {
    if (
      gateway !== undefined &&
      gateway.child.exitCode === null &&
      gateway.child.signalCode === null
    ) {
      gateway.child.kill("SIGKILL");
      await gateway.exited;
    }
    if (
      server !== undefined &&
      server.child.exitCode === null &&
      server.child.signalCode === null
    ) {
      server.child.kill("SIGKILL");
      await server.exited;
    }
    if (analysing && !analysed) {
      log(`soak: the analysis failed; the raw data is kept in ${tmp} (probe.jsonl, turns.json)`);
    } else {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}

runBenchmark(main);
