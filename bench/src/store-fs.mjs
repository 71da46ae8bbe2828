/**
 * Benchmark 5: `@beamclaw/store-fs`, the embedded file store.
 *
 * Writes: session-metadata saves (`sessions.put`) and transcript appends per second, one
 * awaited after another, against the limit for any durable append: a raw
 * `FileHandle.appendFile` of the very same bytes followed by `FileHandle.sync()` (fsync), on
 * the same file system. The bytes are checked identical to what the store wrote. Ratio =
 * baseline rate ÷ store rate (how many times slower the store is than the bare append).
 *
 * Reads: `sessions.list` over 100,000 sessions (first page, a page deep into the order via its
 * cursor, one agent's page), latency per call; the baseline is the least any store must do
 * per page, parsing the page's 100 records from their JSON (reads return copies). Also
 * reported: opening a store of 100,000 sessions (reading the logs and building the index)
 * against a raw `readFile` + `JSON.parse` of every line of the same files.
 *
 * Everything is written under a fresh temp directory, removed at the end.
 */
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createFsStore } from "@beamclaw/store-fs";
import {
  formatDuration,
  formatNsPerOp,
  formatRate,
  formatRatio,
  log,
  median,
  percentile,
  runBenchmark,
} from "./lib.mjs";

/** Target: a durable save or append costs at most this many raw append+fsync's. */
const WRITE_TARGET_RATIO = 2;
/** Target: one page of `sessions.list` over 100,000 sessions, p99. */
const LIST_TARGET_MS = 50;
const AGENTS = 10;

const text = "The quick brown fox jumps over the lazy dog. ".repeat(2);
const session = (i, updatedAt) => ({
  key: `agent:a${i % AGENTS}:s${i}`,
  agentId: `a${i % AGENTS}`,
  createdAt: 1_700_000_000_000,
  updatedAt,
  title: "bench",
  model: "anthropic/claude",
});
const entry = (i) => ({ role: "user", n: i, text });

/** The line the store appends for `sessions.put(record)` (checked below). */
const putLine = (record) => `{"op":"put","record":${JSON.stringify(record)}}\n`;
/** The line the store appends for a one-entry `transcripts.append`. */
const appendLine = (seq, value) => `{"seq":${seq},"entry":${JSON.stringify(value)}}\n`;

async function lastLine(file) {
  const lines = (await readFile(file, "utf8")).split("\n");
  return `${lines.at(-2)}\n`;
}

/**
 * Runs the store side and the raw side of one write measurement for `ops` operations each,
 * taking turns every `chunk` operations (who goes first alternates), and returns the rate of
 * every chunk of each side, in operations per second. Ratios are taken chunk pair by chunk
 * pair: on a shared machine the load changes from one second to the next, and a pair of
 * neighbouring chunks sees about the same load.
 */
async function interleaved(ops, chunk, storeOp, rawOp) {
  const rates = { store: [], raw: [] };
  for (let from = 0; from < ops; from += chunk) {
    const to = Math.min(ops, from + chunk);
    const sides = [
      ["store", storeOp],
      ["raw", rawOp],
    ];
    if ((from / chunk) % 2 === 1) sides.reverse();
    for (const [side, op] of sides) {
      const start = performance.now();
      for (let i = from; i < to; i++) await op(i);
      rates[side].push(((to - from) / (performance.now() - start)) * 1000);
    }
  }
  return rates;
}

/** The 64-in-flight variant: the store's group commit against the same raw loop. */
async function concurrentPuts(store, ops, base, inFlight) {
  const start = performance.now();
  for (let from = 0; from < ops; from += inFlight) {
    const wave = [];
    for (let i = from; i < Math.min(ops, from + inFlight); i++) {
      wave.push(store.sessions.put(session(i % 1_000, base + i)));
    }
    await Promise.all(wave);
  }
  return (ops / (performance.now() - start)) * 1000;
}

async function measureWrites({ quick, dir }) {
  const ops = quick ? 300 : 4_000;
  const chunk = quick ? 50 : 100;
  const rounds = quick ? 2 : 7;
  const store = createFsStore({ dir: path.join(dir, "writes") });
  await store.open();
  const rawSessions = await open(path.join(dir, "raw-sessions.jsonl"), "a");
  const rawTranscript = await open(path.join(dir, "raw-transcript.jsonl"), "a");
  const samples = { put: { store: [], raw: [] }, append: { store: [], raw: [] }, concurrent: [] };
  let version = 0;
  let rawSeq = 0;
  try {
    // The same bytes on both sides: compare one write of each kind.
    const probe = session(0, ++version);
    await store.sessions.put(probe);
    const storeFile = path.join(dir, "writes", "agents", "a0", "sessions.jsonl");
    if ((await lastLine(storeFile)) !== putLine(probe)) {
      throw new Error("the raw baseline does not write the bytes sessions.put writes");
    }
    const seq = await store.transcripts.append("agent:a0:bench", [entry(0)]);
    const transcriptFile = path.join(
      dir,
      "writes",
      "agents",
      "a0",
      "transcripts",
      "agent+a0+bench.jsonl",
    );
    if ((await lastLine(transcriptFile)) !== appendLine(seq, entry(0))) {
      throw new Error("the raw baseline does not write the bytes transcripts.append writes");
    }

    for (let round = -1; round < rounds; round++) {
      const put = await interleaved(
        ops,
        chunk,
        (i) => store.sessions.put(session(i % 1_000, ++version)),
        async (i) => {
          await rawSessions.appendFile(putLine(session(i % 1_000, ++version)));
          await rawSessions.sync();
        },
      );
      const append = await interleaved(
        ops,
        chunk,
        (i) => store.transcripts.append("agent:a0:bench", [entry(i)]),
        async (i) => {
          await rawTranscript.appendFile(appendLine(++rawSeq, entry(i)));
          await rawTranscript.sync();
        },
      );
      const concurrent = await concurrentPuts(store, ops, version, 64);
      version += ops;
      if (round >= 0) {
        for (const side of ["store", "raw"]) {
          samples.put[side].push(...put[side]);
          samples.append[side].push(...append[side]);
        }
        samples.concurrent.push(concurrent);
      }
      log(
        round < 0
          ? "store-fs: write warm-up done"
          : `store-fs: write round ${round + 1}/${rounds} done`,
      );
    }
  } finally {
    await store.close();
    await rawSessions.close();
    await rawTranscript.close();
  }
  return { ops, chunk, rounds, samples };
}

/** Page latencies (ms) of `list(options)` over `calls` calls. */
async function timeCalls(calls, fn) {
  const times = [];
  for (let i = 0; i < calls; i++) {
    const start = performance.now();
    await fn(i);
    times.push(performance.now() - start);
  }
  return times;
}

async function measureList({ quick, dir }) {
  const count = quick ? 20_000 : 100_000;
  const calls = quick ? 50 : 500;
  const storeDir = path.join(dir, "list");
  // Filling: fsync off (the figure here is reads), 500 saves in flight at a time.
  const filler = createFsStore({ dir: storeDir, fsync: false });
  await filler.open();
  const fillStart = performance.now();
  for (let from = 0; from < count; from += 500) {
    const wave = [];
    for (let i = from; i < Math.min(count, from + 500); i++) {
      wave.push(filler.sessions.put(session(i, 1_700_000_000_000 + i)));
    }
    await Promise.all(wave);
  }
  const fillMs = performance.now() - fillStart;
  await filler.close();
  log(`store-fs: ${count.toLocaleString("en-US")} sessions written`);

  // Opening: the store's log replay and index against reading and parsing the same files.
  const logFiles = (await readdir(path.join(storeDir, "agents"))).map((agent) =>
    path.join(storeDir, "agents", agent, "sessions.jsonl"),
  );
  const openTimes = [];
  const rawOpenTimes = [];
  const store = createFsStore({ dir: storeDir });
  for (let rep = 0; rep < 3; rep++) {
    const rawStart = performance.now();
    let parsed = 0;
    for (const file of logFiles) {
      for (const line of (await readFile(file, "utf8")).split("\n")) {
        if (line !== "") {
          JSON.parse(line);
          parsed++;
        }
      }
    }
    rawOpenTimes.push(performance.now() - rawStart);
    if (parsed !== count) throw new Error(`expected ${count} lines, parsed ${parsed}`);
    const start = performance.now();
    await store.open();
    openTimes.push(performance.now() - start);
    if (rep < 2) await store.close();
  }

  try {
    if ((await store.sessions.count()) !== count) throw new Error("sessions missing after open");
    const first = await store.sessions.list();
    if (first.items[0]?.key !== `agent:a${(count - 1) % AGENTS}:s${count - 1}`) {
      throw new Error("list does not start with the newest session");
    }
    // A cursor half-way down the order, to show depth costs nothing.
    let deep = first;
    for (let page = 0; page < count / 200; page++) {
      deep = await store.sessions.list({ cursor: deep.cursor });
    }
    const deepCursor = deep.cursor;
    const middle = await store.sessions.list({ cursor: deepCursor });
    if (middle.items.length !== 100) throw new Error("a page deep in the order is short");

    const firstPage = await timeCalls(calls, () => store.sessions.list());
    const deepPage = await timeCalls(calls, () => store.sessions.list({ cursor: deepCursor }));
    const agentPage = await timeCalls(calls, (i) =>
      store.sessions.list({ agentId: `a${i % AGENTS}` }),
    );
    const countCalls = await timeCalls(calls, () => store.sessions.count());
    // The floor: a page's 100 records parsed from their JSON, as any store returning copies must.
    const pageJson = first.items.map((r) => JSON.stringify(r));
    const floor = await timeCalls(calls, async () => pageJson.map((j) => JSON.parse(j)));
    return {
      count,
      calls,
      fillMs,
      openTimes,
      rawOpenTimes,
      firstPage,
      deepPage,
      agentPage,
      countCalls,
      floor,
    };
  } finally {
    await store.close();
  }
}

async function main({ quick }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "beamclaw-bench-store-fs-"));
  try {
    const writes = await measureWrites({ quick, dir });
    const list = await measureList({ quick, dir });
    return report({ quick, dir, writes, list });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function report({ writes, list }) {
  const writeRow = (label, samples, unit) => {
    const store = median(samples.store);
    const raw = median(samples.raw);
    // The median of the chunk pairs' ratios: robust to load that changes during the run.
    const ratio = median(samples.store.map((rate, i) => samples.raw[i] / rate));
    return {
      measurement: label,
      figure: `${formatRate(store, unit)} (${formatNsPerOp(store)}/op)`,
      baseline: `${formatRate(raw, "op")} raw appendFile + fsync`,
      ratio: formatRatio(ratio),
      target: `≤ ${WRITE_TARGET_RATIO}x`,
      met: ratio <= WRITE_TARGET_RATIO,
    };
  };
  const rawPut = median(writes.samples.put.raw);
  const concurrent = median(writes.samples.concurrent);
  const floorP50 = percentile(list.floor, 50);
  const floorP99 = percentile(list.floor, 99);
  const listRow = (label, times, target) => {
    const p99 = percentile(times, 99);
    return {
      measurement: label,
      figure: `p50 ${formatDuration(percentile(times, 50))}, p99 ${formatDuration(p99)}`,
      baseline: `p50 ${formatDuration(floorP50)}, p99 ${formatDuration(floorP99)} (parse 100 records)`,
      ratio: formatRatio(percentile(times, 50) / floorP50),
      target: target ? `p99 < ${LIST_TARGET_MS} ms` : "—",
      met: target ? p99 < LIST_TARGET_MS : null,
    };
  };
  const openMs = median(list.openTimes);
  const rawOpenMs = median(list.rawOpenTimes);
  const n = list.count.toLocaleString("en-US");
  const spread = (samples, side) =>
    `${formatRate(percentile(samples[side], 10), "op")} – ${formatRate(percentile(samples[side], 90), "op")}`;
  return {
    id: "store-fs",
    title: "5. `@beamclaw/store-fs`: durable writes vs raw append + fsync, `sessions.list`",
    description:
      "Writes: `sessions.put` and one-entry `transcripts.append`, each awaited before the next " +
      "(fsync on, the default), against a raw `FileHandle.appendFile` of the same bytes " +
      "(checked identical) + `FileHandle.sync()` on the same file system, the two sides taking " +
      "turns every few hundred operations; ratio = baseline rate ÷ store rate (how many times " +
      "slower), the median of the ratios of neighbouring chunks. Saves cycle through " +
      "1,000 sessions, so log compaction runs during the measurement and is included. Reads: " +
      `\`sessions.list\` pages of 100 over ${n} sessions in ${AGENTS} agents, served from the ` +
      "in-memory index built on open; the baseline is parsing the page's 100 records from JSON, " +
      "the least any store returning copies must do; ratio = figure ÷ baseline at p50.",
    params: `writes: ${writes.ops.toLocaleString("en-US")} ops per side per round, turns every ${writes.chunk}, 1 warm-up + ${writes.rounds} measured rounds, medians over all chunks; reads: ${n} sessions, ${list.calls} calls per variant`,
    rows: [
      writeRow("`sessions.put`, one at a time", writes.samples.put, "put"),
      writeRow("`transcripts.append`, 1 entry, one at a time", writes.samples.append, "append"),
      {
        measurement: "`sessions.put`, 64 in flight (group commit)",
        figure: `${formatRate(concurrent, "put")} (${formatNsPerOp(concurrent)}/op)`,
        baseline: `${formatRate(rawPut, "op")} raw appendFile + fsync, one at a time`,
        ratio: formatRatio(rawPut / concurrent),
        target: "—",
        met: null,
      },
      listRow(`\`sessions.list\`, first page of ${n}`, list.firstPage, true),
      listRow("`sessions.list`, a page half-way down (cursor)", list.deepPage, true),
      listRow("`sessions.list({ agentId })`, first page", list.agentPage, true),
      {
        measurement: `open a store of ${n} sessions (replay logs, build index)`,
        figure: formatDuration(openMs),
        baseline: `${formatDuration(rawOpenMs)} (readFile + JSON.parse of every line)`,
        ratio: formatRatio(openMs / rawOpenMs),
        target: "—",
        met: null,
      },
    ],
    notes: [
      `\`sessions.count()\` over ${n} sessions: p50 ${formatDuration(percentile(list.countCalls, 50))}.`,
      `With 64 saves in flight, one write and one fsync carry every save queued meanwhile, so throughput can exceed the one-at-a-time raw baseline (ratio below 1x).`,
      `Filling ${n} sessions with fsync off, 500 in flight: ${formatDuration(list.fillMs)}.`,
      `Spread of the chunk rates (10th – 90th percentile): put store ${spread(writes.samples.put, "store")}, raw ${spread(writes.samples.put, "raw")}; append store ${spread(writes.samples.append, "store")}, raw ${spread(writes.samples.append, "raw")}.`,
      "fsync cost depends on the disk and, on virtual machines, the hypervisor: the ratios carry over between machines better than the rates.",
    ],
  };
}

runBenchmark(main);
