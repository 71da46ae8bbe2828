/**
 * Benchmark 12: what one agent turn leaves in the store, for each store. A turn sent without
 * an idempotency key (the figure) against the same turn sent with its own key (the baseline,
 * in the same run): a keyed message is acknowledged and remembered for the store's dedupe
 * window; an unkeyed one is filed under a key the runtime made up and leaves the queue
 * without a dedupe record.
 *
 * Stores: `MemoryStore` (the process's heap after full GCs, before and after the turns),
 * store-fs (the bytes of its directory on disk) and store-redis (the sum of `MEMORY USAGE`
 * over its keys, on the Redis at `BEAMCLAW_REDIS_URL`, default `redis://127.0.0.1:6379`; the
 * prefix is removed afterwards). A turn: a user message, one tool call, 20 streamed chunks
 * (the turns benchmark's), on one session; each variant gets a fresh store and runtime.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { MemoryStore } from "@beamclaw/core";
import { createFsStore } from "@beamclaw/store-fs";
import { createRedisStore } from "@beamclaw/store-redis";
import {
  chainOf,
  createInProcessProvider,
  QUESTION,
  runtimeTurn,
  sessionKey,
  startRuntime,
} from "./agent-fixtures.mjs";
import { connectRedis, formatBytes, formatRatio, fullGc, log, runBenchmark } from "./lib.mjs";

const REDIS_URL = process.env.BEAMCLAW_REDIS_URL ?? "redis://127.0.0.1:6379";

/** Runs `turns` turns on one session; `keyed` gives each message its own idempotency key. */
async function runTurns(store, turns, keyed) {
  const { runtime } = await startRuntime({ models: chainOf(createInProcessProvider()), store });
  try {
    const session = runtime.session(sessionKey(keyed ? "keyed" : "unkeyed", 0));
    for (let i = 0; i < turns; i++) {
      if (!keyed) {
        await runtimeTurn(session);
        continue;
      }
      // runtimeTurn's checks, with a key: the same turn, filed under the caller's key.
      const send = session.send.bind(session);
      await runtimeTurn({ send: (text) => send(text, { idempotencyKey: `turn-${i}` }) }, QUESTION);
    }
  } finally {
    await runtime.stop();
  }
}

/** Bytes a `MemoryStore` holds after `turns` turns: heap used after full GCs, minus before. */
async function memoryFootprint(turns, keyed) {
  const store = new MemoryStore();
  await store.open();
  fullGc();
  const before = process.memoryUsage().heapUsed;
  await runTurns(store, turns, keyed);
  fullGc();
  const bytes = process.memoryUsage().heapUsed - before;
  await store.close();
  return bytes;
}

/** Bytes store-fs leaves on disk after `turns` turns (its directory, closed). */
async function fsFootprint(turns, keyed) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "beamclaw-footprint-"));
  try {
    const store = createFsStore({ dir });
    await store.open();
    await runTurns(store, turns, keyed);
    await store.close();
    return Number(execFileSync("du", ["-sb", dir], { encoding: "utf8" }).split("\t")[0]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes and keys store-redis leaves in Redis after `turns` turns (`MEMORY USAGE` summed). */
async function redisFootprint(admin, turns, keyed) {
  const prefix = `beamclaw-bench-footprint-${process.pid}-${keyed ? "k" : "u"}:`;
  const store = createRedisStore({ url: REDIS_URL, prefix });
  await store.open();
  try {
    await runTurns(store, turns, keyed);
    const keys = await admin.keys(`${prefix}*`);
    let bytes = 0;
    for (const key of keys) bytes += Number(await admin.memory("USAGE", key));
    return { bytes, keys: keys.length };
  } finally {
    await store.close();
    const left = await admin.keys(`${prefix}*`);
    if (left.length > 0) await admin.del(...left);
  }
}

async function main({ quick }) {
  const turns = quick ? 200 : 5_000;
  // In-process turns are cheap, and a heap difference needs many to rise above the noise.
  const memoryTurns = quick ? 2_000 : turns;
  const admin = await connectRedis(REDIS_URL);
  const measured = {};
  try {
    // Untimed: the first turns of a process compile code and grow its caches, which the heap
    // measurement would count as the first side's.
    for (const keyed of [false, true]) await memoryFootprint(200, keyed);
    for (const keyed of [false, true]) {
      const side = keyed ? "keyed" : "unkeyed";
      measured[side] = {
        memory: (await memoryFootprint(memoryTurns, keyed)) / memoryTurns,
        fs: (await fsFootprint(turns, keyed)) / turns,
        redis: await redisFootprint(admin, turns, keyed),
      };
      log(`store-footprint: ${turns} ${side} turns on each store done`);
    }
  } finally {
    await admin.quit();
  }
  const { unkeyed, keyed } = measured;
  const perTurn = (bytes) => `${formatBytes(bytes)} per turn`;
  const row = (measurement, figure, baseline) => ({
    measurement,
    figure: perTurn(figure),
    baseline: perTurn(baseline),
    ratio: formatRatio(figure / baseline),
    target: "—",
    met: null,
  });
  return {
    id: "store-footprint",
    title: "12. What a turn leaves in the store, with and without an idempotency key",
    description:
      "Bytes one agent turn (user message, one tool call, 20 streamed chunks) leaves in each " +
      "store when its message is sent without an idempotency key, against the same turn sent " +
      "with its own key (the baseline, same run). A keyed message is acknowledged and its key " +
      "remembered for the store's dedupe window (24 h); an unkeyed one leaves the queue " +
      "without a dedupe record. The rest of a turn's footprint (its four transcript entries, " +
      "the session's record) is the same on both sides. Ratio = figure ÷ baseline.",
    params: `${memoryTurns.toLocaleString("en-US")} turns per side on MemoryStore, ${turns.toLocaleString("en-US")} on store-fs and store-redis, one session, a fresh store and runtime each; MemoryStore: heap used after full GCs; store-fs: \`du -sb\` of its directory; store-redis: \`MEMORY USAGE\` summed over its keys (Redis at ${REDIS_URL.replace(/\/\/[^@]*@/, "//")})`,
    rows: [
      row("MemoryStore: process heap", unkeyed.memory, keyed.memory),
      row("store-fs: bytes on disk", unkeyed.fs, keyed.fs),
      row("store-redis: Redis memory", unkeyed.redis.bytes / turns, keyed.redis.bytes / turns),
    ],
    notes: [
      `store-redis keys left: ${unkeyed.redis.keys.toLocaleString("en-US")} without idempotency keys, ${keyed.redis.keys.toLocaleString("en-US")} with them (each acknowledged message keeps its hash and its key's entry for the window).`,
      "store-fs writes every acknowledged message again, whole, to its acknowledged log (and keeps an index entry in memory for the window); a discarded one costs a line naming its id.",
    ],
  };
}

runBenchmark(main);
