/**
 * Benchmark 4: `@beamclaw/store-redis` operations per second against the raw ioredis client
 * pipelining the very same commands.
 *
 * For each operation (kv.get, kv.set, transcripts.append, sessions.put, queue.enqueue) the
 * store runs `ops` calls with `concurrency` of them in flight at a time. The baseline is what
 * a hand-written raw-client version must do at the least: build the same Redis command from
 * the same input (key names, `JSON.stringify` of the value, the same Lua script by SHA),
 * pipeline `concurrency` of them at a time, and `JSON.parse` a value it reads. Before
 * measuring, every baseline command is checked to be identical to the one the store sent for
 * that input (recorded from an instrumented client), so both sides make Redis do exactly the
 * same work and the ratio is the price of the store's layer: argument checks, JSON
 * validation, error mapping, fail-fast checks and promise plumbing.
 *
 * Needs a Redis server: `BEAMCLAW_REDIS_URL`, default `redis://127.0.0.1:6379` (`.ci/run`
 * starts one). Everything is written under a fresh key prefix that is deleted at the end.
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { isDeepStrictEqual } from "node:util";
import { createRedisStore } from "@beamclaw/store-redis";
import { Redis } from "ioredis";
import { connectRedis, formatNsPerOp, formatRate, log, median, runBenchmark } from "./lib.mjs";

const REDIS_URL = process.env.BEAMCLAW_REDIS_URL ?? "redis://127.0.0.1:6379";
/** The target: the store reaches at least this share of the raw client's rate. */
const TARGET_SHARE = 0.7;
/** Distinct keys/sessions the operations cycle through. */
const KEY_SPACE = 1_000;

const text = "The quick brown fox jumps over the lazy dog. ".repeat(4);

const kvValue = (i) => ({ n: i, text });
const entry = (i) => ({ role: "user", n: i, text });
const sessionKey = (i) => `agent:main:s${i % KEY_SPACE}`;
const session = (i) => ({
  key: sessionKey(i),
  agentId: "main",
  createdAt: 1,
  updatedAt: 1_700_000_000_000 + i,
  title: "bench",
});
const payload = (i) => ({ text, n: i });

/**
 * The operations measured. `store(s, i)` is the store call; `raw(p, i, sha)` the command a
 * raw client sends for the same input (`p` the key prefix, `sha` the script's SHA1 as the
 * store sent it); `parse` what the raw side does with a reply; `prepare` runs untimed before
 * each measurement; `volatile` lists argument positions that hold the current time.
 */
const OPERATIONS = [
  {
    id: "kvGet",
    label: "`kv.get` (GET)",
    async prepare(store) {
      await Promise.all(
        Array.from({ length: KEY_SPACE }, (_, i) => store.kv.set(`k${i}`, kvValue(i))),
      );
    },
    store: (s, i) => s.kv.get(`k${i % KEY_SPACE}`),
    raw: (p, i) => ["get", `${p}kv:k${i % KEY_SPACE}`],
    parse: (reply) => (reply === null ? undefined : JSON.parse(reply)),
  },
  {
    id: "kvSet",
    label: "`kv.set` with TTL (script: SET PX + indexes)",
    store: (s, i) => s.kv.set(`k${i % KEY_SPACE}`, kvValue(i), { ttlMs: 600_000 }),
    raw: (p, i, sha) => {
      const key = `k${i % KEY_SPACE}`;
      return [
        "evalsha",
        sha,
        "3",
        `${p}kv:${key}`,
        `${p}kv-index`,
        `${p}kv-expiry`,
        key,
        JSON.stringify(kvValue(i)),
        "600000",
        "",
        "",
        "",
        `${p}kv:`,
      ];
    },
  },
  {
    id: "append",
    label: "`transcripts.append`, 1 entry (RPUSH)",
    store: (s, i) => s.transcripts.append(sessionKey(i), [entry(i)]),
    raw: (p, i) => ["rpush", `${p}transcript:${sessionKey(i)}`, JSON.stringify(entry(i))],
  },
  {
    id: "sessionPut",
    label: "`sessions.put` (script: record + 2 sorted sets)",
    store: (s, i) => s.sessions.put(session(i)),
    raw: (p, i, sha) => {
      const record = session(i);
      return [
        "evalsha",
        sha,
        "3",
        `${p}session:${record.key}`,
        `${p}sessions:all`,
        `${p}sessions:agent:main`,
        JSON.stringify(record),
        String(-record.updatedAt),
        record.key,
        "main",
        `${p}sessions:agent:`,
      ];
    },
  },
  {
    id: "enqueue",
    label: "`queue.enqueue` (script: message + id + 2 sorted sets + session index)",
    store: (s, i) =>
      s.queue.enqueue({ idempotencyKey: `m${i}`, sessionKey: sessionKey(i), payload: payload(i) }),
    raw: (p, i, sha) => [
      "evalsha",
      sha,
      "4",
      `${p}queue:idem:m${i}`,
      `${p}queue:seq`,
      `${p}queue:pending`,
      `${p}queue:session-of`,
      `${p}queue:msg:`,
      `${p}queue:session:`,
      `m${i}`,
      sessionKey(i),
      JSON.stringify(payload(i)),
      String(Date.now()),
    ],
    volatile: [12],
  },
];

/** `total` calls of `call(i)`, `concurrency` in flight at a time. */
async function inWaves(total, concurrency, call) {
  const wave = new Array(concurrency);
  for (let start = 0; start < total; start += concurrency) {
    const end = Math.min(total, start + concurrency);
    for (let i = start; i < end; i++) wave[i - start] = call(i);
    wave.length = end - start;
    await Promise.all(wave);
  }
}

/** Records every command a client sends, as `[name, ...args]`. */
function recordCommands(client) {
  const recorded = [];
  const send = client.sendCommand.bind(client);
  client.sendCommand = (command, stream) => {
    recorded.push([
      command.name,
      ...command.args.map((a) => (Buffer.isBuffer(a) ? a.toString() : String(a))),
    ]);
    return send(command, stream);
  };
  return {
    recorded,
    stop() {
      delete client.sendCommand;
    },
  };
}

/** Deletes every key under `prefix` (untimed, between runs). */
async function deletePrefix(client, prefix) {
  const pattern = `${prefix.replace(/[\\*?[\]]/g, "\\$&")}*`;
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await client.unlink(...keys);
  } while (cursor !== "0");
}

/**
 * Runs one operation through the recording store for a few inputs and checks that `raw`
 * builds exactly the commands the store sent. Returns the script SHA the store used, if any.
 */
async function checkSameCommands(op, recordingStore, recordingClient, prefix) {
  await op.prepare?.(recordingStore);
  const recorder = recordCommands(recordingClient);
  const samples = [0, 1, 2, 3];
  try {
    for (const i of samples) await op.store(recordingStore, i);
  } finally {
    recorder.stop();
  }
  const sha = recorder.recorded[0]?.[0] === "evalsha" ? recorder.recorded[0][1] : undefined;
  for (const [n, i] of samples.entries()) {
    const sent = recorder.recorded[n];
    const built = op.raw(prefix, i, sha).map(String);
    for (const at of op.volatile ?? []) {
      if (sent) built[at] = sent[at];
    }
    if (recorder.recorded.length !== samples.length || !isDeepStrictEqual(sent, built)) {
      throw new Error(
        `${op.id}: the baseline would not send what the store sends; store: ${JSON.stringify(sent)}, baseline: ${JSON.stringify(built)}`,
      );
    }
  }
  return sha;
}

async function main({ quick }) {
  const ops = quick ? 2_000 : 30_000;
  const chunk = quick ? 500 : 1_000;
  const concurrency = 64;
  const warmupRounds = 1;
  const rounds = quick ? 1 : 5;
  const run = randomUUID().slice(0, 8);
  // The store and the baseline write to separate prefixes, so they can take turns in small
  // chunks (both see the same machine load) and each sees the keyspace it built itself.
  const storePrefix = `beamclaw-bench:${run}:store:`;
  const rawPrefix = `beamclaw-bench:${run}:raw:`;

  const raw = await connectRedis(REDIS_URL);
  // The store as users run it: from a URL, owning its client, with its default options.
  const store = createRedisStore({ url: REDIS_URL, prefix: storePrefix });
  // The same store over an instrumented client, to check the baseline's commands.
  const recordingClient = new Redis(REDIS_URL, {
    enableOfflineQueue: false,
    commandTimeout: 5_000,
  });
  const recordingStore = createRedisStore({ client: recordingClient, prefix: rawPrefix });
  const samples = new Map(OPERATIONS.map((op) => [op.id, { store: [], raw: [] }]));
  try {
    await Promise.all([store.open(), recordingStore.open()]);
    const shas = new Map();
    for (const op of OPERATIONS) {
      await deletePrefix(raw, rawPrefix);
      shas.set(op.id, await checkSameCommands(op, recordingStore, recordingClient, rawPrefix));
    }

    for (let round = -warmupRounds; round < rounds; round++) {
      for (const op of OPERATIONS) {
        const sha = shas.get(op.id);
        await Promise.all([deletePrefix(raw, storePrefix), deletePrefix(raw, rawPrefix)]);
        await Promise.all([op.prepare?.(store), op.prepare?.(recordingStore)]);
        const elapsed = { store: 0, raw: 0 };
        for (let from = 0; from < ops; from += chunk) {
          const to = Math.min(ops, from + chunk);
          const sides = [
            ["store", () => inWaves(to - from, concurrency, (i) => op.store(store, from + i))],
            [
              "raw",
              async () => {
                for (let at = from; at < to; at += concurrency) {
                  const pipeline = raw.pipeline();
                  for (let i = at; i < Math.min(to, at + concurrency); i++) {
                    pipeline.call(...op.raw(rawPrefix, i, sha));
                  }
                  for (const [error, reply] of await pipeline.exec()) {
                    if (error) throw error;
                    op.parse?.(reply);
                  }
                }
              },
            ],
          ];
          // Take turns going first, so neither side always follows the other.
          if ((from / chunk) % 2 === 1) sides.reverse();
          for (const [side, runSide] of sides) {
            const start = performance.now();
            await runSide();
            elapsed[side] += performance.now() - start;
          }
        }
        if (round >= 0) {
          samples.get(op.id).store.push((ops / elapsed.store) * 1000);
          samples.get(op.id).raw.push((ops / elapsed.raw) * 1000);
        }
      }
      log(
        round < 0
          ? "store-redis: warm-up round done"
          : `store-redis: round ${round + 1}/${rounds} done`,
      );
    }
  } finally {
    await deletePrefix(raw, storePrefix).catch(() => undefined);
    await deletePrefix(raw, rawPrefix).catch(() => undefined);
    await Promise.all([store.close(), recordingStore.close()]);
    await recordingClient.quit().catch(() => recordingClient.disconnect());
    await raw.quit().catch(() => raw.disconnect());
  }

  const rows = OPERATIONS.map((op) => {
    const { store: storeRates, raw: rawRates } = samples.get(op.id);
    const storeRate = median(storeRates);
    const rawRate = median(rawRates);
    const share = storeRate / rawRate;
    return {
      measurement: op.label,
      figure: `${formatRate(storeRate, "op")} (${formatNsPerOp(storeRate)}/op)`,
      baseline: `${formatRate(rawRate, "op")} raw, pipelined`,
      ratio: `${(share * 100).toFixed(0)}% of raw`,
      target: `≥ ${TARGET_SHARE * 100}%`,
      met: share >= TARGET_SHARE,
    };
  });
  const spread = OPERATIONS.map((op) => {
    const { store: s, raw: r } = samples.get(op.id);
    return `${op.id}: store ${formatRate(Math.min(...s), "op")} – ${formatRate(Math.max(...s), "op")}, raw ${formatRate(Math.min(...r), "op")} – ${formatRate(Math.max(...r), "op")}`;
  });
  return {
    id: "store-redis",
    title: "4. `@beamclaw/store-redis` throughput vs the raw ioredis client",
    description:
      "Operations per second of the Redis store (opened from a URL, as users run it), " +
      `${concurrency} calls in flight at a time, against a plain ioredis client that builds ` +
      "the same commands from the same inputs (checked identical to what the store sends) and " +
      "pipelines them in batches of the same size, on the same Redis server. Ratio = store " +
      "rate ÷ raw rate: the share of the raw client's throughput the store keeps after its " +
      "argument checks, JSON validation, error mapping and fail-fast checks.",
    params: `${ops.toLocaleString("en-US")} ops per operation per side per round, ${concurrency} in flight, the two sides taking turns every ${chunk.toLocaleString("en-US")} ops; ${warmupRounds} warm-up + ${rounds} measured rounds, median reported; Redis at ${REDIS_URL.replace(/\/\/[^@]*@/, "//")}`,
    rows,
    notes: [
      "Redis' own work (Lua scripts included) is the same on both sides; client and server share the machine's cores.",
      `Spread over rounds: ${spread.join("; ")}.`,
    ],
  };
}

runBenchmark(main);
