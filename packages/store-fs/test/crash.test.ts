/**
 * The crash test: a child process writes to the store continuously and is killed with
 * SIGKILL at a random moment, again and again over the same directory. After every kill the
 * store must open (repairing what the crash tore), hold every write the child saw
 * acknowledged, and hold nothing corrupt or half-applied.
 *
 * Runs: STORE_FS_CRASH_RUNS (default 100). Seed: STORE_FS_CRASH_SEED (default: random,
 * printed on failure so a failing schedule can be replayed).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFsStore, type FsStore, type FsStoreRecovery } from "../src/index.js";
import {
  fixture,
  LineProcess,
  removeDir,
  removeStoreModule,
  storeModule,
  tempDir,
} from "./support.js";

const RUNS = Number(process.env.STORE_FS_CRASH_RUNS ?? 100);
const SEED = Number(process.env.STORE_FS_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** Everything the children saw acknowledged, over all runs. */
interface Acknowledged {
  sessions: Map<string, number>;
  deleted: Set<string>;
  /** Per transcript: batches by id, with where they end and how many entries they have. */
  transcripts: Map<string, Map<string, { lastSeq: number; n: number }>>;
  /** Transcripts the current run may have written to (checked entry by entry). */
  touched: Set<string>;
  enqueued: Map<string, string>;
  ackSent: Set<string>;
  acked: Set<string>;
  kv: Map<string, number>;
  /** `<sessionKey> <pattern>` -> newest acknowledged decidedAt. */
  approvals: Map<string, number>;
  /** Job id -> acknowledged run start times. */
  runs: Map<string, number[]>;
}

function record(ack: Acknowledged, line: string): void {
  const [kind, a, b, c, d] = line.split(" ");
  switch (kind) {
    case "S":
      ack.sessions.set(a!, Math.max(ack.sessions.get(a!) ?? 0, Number(b)));
      break;
    case "D":
      ack.deleted.add(a!);
      break;
    case "t":
      ack.touched.add(a!);
      break;
    case "T": {
      let batches = ack.transcripts.get(a!);
      if (batches === undefined) {
        batches = new Map();
        ack.transcripts.set(a!, batches);
      }
      batches.set(c!, { lastSeq: Number(b), n: Number(d) });
      break;
    }
    case "Q":
      ack.enqueued.set(a!, b!);
      break;
    case "a":
      ack.ackSent.add(a!);
      break;
    case "A":
      ack.acked.add(a!);
      break;
    case "K":
      ack.kv.set(a!, Math.max(ack.kv.get(a!) ?? 0, Number(b)));
      break;
    case "P": {
      const id = `${a} ${b}`;
      ack.approvals.set(id, Math.max(ack.approvals.get(id) ?? 0, Number(c)));
      break;
    }
    case "R":
      ack.runs.set(a!, [...(ack.runs.get(a!) ?? []), Number(b)]);
      break;
    case "ready":
      break;
    default:
      throw new Error(`unexpected line from the writer: ${line}`);
  }
}

/**
 * Checks the reopened store against everything acknowledged so far; returns what is wrong.
 * (Plain checks collected into one list: thousands of `expect` calls per run would dominate
 * the test's time.)
 */
async function verify(store: FsStore, ack: Acknowledged): Promise<string[]> {
  const problems: string[] = [];
  const check = (ok: boolean, problem: () => string) => {
    if (!ok) problems.push(problem());
  };

  for (const [key, version] of ack.sessions) {
    const stored = await store.sessions.get(key);
    // A later put may have landed without its acknowledgement being printed: never older.
    check(
      stored !== undefined && (stored.version as number) >= version,
      () => `session ${key}: acknowledged version ${version}, found ${JSON.stringify(stored)}`,
    );
    if (stored === undefined) continue;
    const expected = {
      key,
      agentId: key.split(":")[1],
      createdAt: 1,
      updatedAt: stored.version,
      version: stored.version,
    };
    check(
      JSON.stringify(stored) === JSON.stringify(expected),
      () => `session ${key}: ${JSON.stringify(stored)} is not a record the writer wrote`,
    );
  }
  for (const key of ack.deleted) {
    check((await store.sessions.get(key)) === undefined, () => `deleted session ${key} is back`);
  }

  // Every session is listed once, newest first, and the count agrees.
  const listed: Array<{ key: string; updatedAt: number }> = [];
  let cursor: string | undefined;
  do {
    const page = await store.sessions.list({ limit: 1000, cursor });
    listed.push(...page.items);
    cursor = page.cursor;
  } while (cursor !== undefined);
  const count = await store.sessions.count();
  check(listed.length === count, () => `list returned ${listed.length} sessions, count ${count}`);
  check(new Set(listed.map((r) => r.key)).size === listed.length, () => "list repeats a session");
  for (let i = 1; i < listed.length; i++) {
    check(
      listed[i - 1]!.updatedAt >= listed[i]!.updatedAt,
      () => `list out of order at ${i}: ${listed[i - 1]!.key}, ${listed[i]!.key}`,
    );
  }

  // A transcript no run touched since it was last checked cannot have changed: its acknowledged
  // appends are checked again, its content only when touched.
  for (const [key, batches] of ack.transcripts) {
    const lastSeq = await store.transcripts.lastSeq(key);
    const ends = [...batches.values()].map((b) => b.lastSeq);
    check(lastSeq >= Math.max(...ends), () => `transcript ${key}: lastSeq ${lastSeq} lost appends`);
    if (!ack.touched.has(key)) continue;
    const entries: Array<{ seq: number; entry: { batch: string; part: number; of: number } }> = [];
    let after = 0;
    while (after < lastSeq) {
      const page = await store.transcripts.read(key, { afterSeq: after, limit: 1000 });
      if (page.length === 0) break;
      entries.push(...(page as unknown as typeof entries));
      after = page.at(-1)!.seq;
    }
    check(
      entries.length === lastSeq && entries.every((e, i) => e.seq === i + 1),
      () => `transcript ${key}: seqs are not 1..${lastSeq}`,
    );
    // All or nothing: every append present is present whole, its parts consecutive.
    for (let i = 0; i < entries.length; ) {
      const { batch, of } = entries[i]!.entry;
      for (let part = 0; part < of; part++) {
        const e = entries[i + part]?.entry;
        check(
          e?.batch === batch && e.part === part && e.of === of,
          () => `transcript ${key} seq ${i + part + 1}: part ${part} of append ${batch} missing`,
        );
      }
      i += Math.max(1, of);
    }
    for (const [batch, { lastSeq: end, n }] of batches) {
      for (let seq = end - n + 1; seq <= end; seq++) {
        check(
          entries[seq - 1]?.entry.batch === batch,
          () => `transcript ${key}: acknowledged append ${batch} not at seq ${seq}`,
        );
      }
    }
  }

  const pending = await store.queue.pending({ limit: 1000 });
  // pending() has no cursor: the writer acks often enough to stay far below one page.
  check(pending.length < 1000, () => "too many pending messages for one page");
  const pendingIds = new Set(pending.map((m) => m.id));
  check(pendingIds.size === pending.length, () => "a pending id is repeated");
  check(
    new Set(pending.map((m) => m.idempotencyKey)).size === pending.length,
    () => "an idempotency key is pending twice",
  );
  for (const [id, key] of ack.enqueued) {
    if (ack.acked.has(id)) check(!pendingIds.has(id), () => `acked message ${id} is pending`);
    else if (!ack.ackSent.has(id)) {
      check(pendingIds.has(id), () => `acknowledged message ${id} (${key}) is lost`);
    }
  }
  for (let i = 1; i < pending.length; i++) {
    check(pending[i - 1]!.id < pending[i]!.id, () => "pending is not in enqueue order");
  }

  for (const [key, version] of ack.kv) {
    const value = await store.kv.get<{ version: number }>(key);
    check(
      (value?.version ?? 0) >= version,
      () => `kv ${key}: acknowledged version ${version}, found ${JSON.stringify(value)}`,
    );
  }
  for (const [id, version] of ack.approvals) {
    const [key, pattern] = id.split(" ") as [string, string];
    const records = await store.approvals.list(key);
    const record = records.find((r) => r.pattern === pattern);
    check(
      record !== undefined && record.decidedAt >= version,
      () => `approval ${id}: acknowledged ${version}, found ${JSON.stringify(records)}`,
    );
  }

  for (const [jobId, starts] of ack.runs) {
    const listed = (await store.cron.listRuns(jobId)).map((r) => r.startedAt);
    check(listed.length <= 5, () => `runs of ${jobId}: ${listed.length} kept, keep is 5`);
    const oldestKept = listed.at(-1) ?? Number.POSITIVE_INFINITY;
    for (const startedAt of starts) {
      // An acknowledged run is kept unless five newer ones are.
      check(
        listed.includes(startedAt) || (listed.length === 5 && oldestKept > startedAt),
        () => `run ${jobId}@${startedAt} lost; kept ${JSON.stringify(listed)}`,
      );
    }
  }
  return problems;
}

describe("crash safety under SIGKILL", () => {
  let dir: string;
  let module: string;

  beforeAll(async () => {
    dir = await tempDir("store-fs-crash-");
    module = await storeModule();
  });

  afterAll(async () => {
    await removeDir(dir);
    await removeStoreModule();
  });

  it(`keeps every acknowledged write and nothing corrupt across ${RUNS} kills at random points`, {
    timeout: 30_000 + RUNS * 2_000,
  }, async () => {
    const ack: Acknowledged = {
      sessions: new Map(),
      deleted: new Set(),
      transcripts: new Map(),
      touched: new Set(),
      enqueued: new Map(),
      ackSent: new Set(),
      acked: new Set(),
      kv: new Map(),
      approvals: new Map(),
      runs: new Map(),
    };
    let seed = SEED;
    const next = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const recoveries: FsStoreRecovery[] = [];
    let acknowledged = 0;
    for (let run = 1; run <= RUNS; run++) {
      const writer = new LineProcess(
        fixture("crash-writer.mjs"),
        [dir, String(run), String(Math.floor(next() * 2 ** 31))],
        { STORE_FS_MODULE: module },
      );
      try {
        // One kill in ten lands while the child is still opening (and maybe repairing).
        if (next() < 0.1) {
          await new Promise((r) => setTimeout(r, next() * 80));
        } else {
          await writer.waitFor((line) => line === "ready", "the writer to open the store");
          await new Promise((r) => setTimeout(r, 5 + next() * 100));
        }
      } finally {
        await writer.kill();
      }
      expect(writer.stderr, `run ${run} (seed ${SEED})`).toBe("");
      ack.touched.clear();
      for (const line of writer.lines) record(ack, line);
      acknowledged += writer.lines.length;

      const store = createFsStore({ dir, onRecovery: (r) => recoveries.push(r) });
      await store.open();
      try {
        const problems = await verify(store, ack);
        expect(problems, `run ${run} (STORE_FS_CRASH_SEED=${SEED})`).toEqual([]);
      } finally {
        await store.close();
      }
    }
    // The schedule did what it is for: writes were acknowledged and crashes needed repairs.
    expect(acknowledged).toBeGreaterThan(RUNS);
    expect(recoveries.some((r) => r.kind === "stale-lock-broken")).toBe(true);
    for (const r of recoveries) {
      expect(["stale-lock-broken", "torn-tail-truncated", "temp-files-removed"]).toContain(r.kind);
    }
  });
});

/**
 * The random schedule above rarely lands inside a multi-line write; this one makes it likely:
 * 3 MB appends back to back, killed after 1-25 ms, 30 times.
 */
describe("a SIGKILL in the middle of one large multi-entry append", () => {
  let dir: string;
  let module: string;

  beforeAll(async () => {
    dir = await tempDir("store-fs-crash-big-");
    module = await storeModule();
  });

  afterAll(async () => {
    await removeDir(dir);
    await removeStoreModule();
  });

  it("leaves the append whole or absent, never in part", { timeout: 60_000 }, async () => {
    const key = "agent:main:big";
    for (let round = 0; round < 30; round++) {
      const writer = new LineProcess(fixture("big-appender.mjs"), [dir, key], {
        STORE_FS_MODULE: module,
      });
      try {
        await writer.waitFor((line) => line === "ready", "the writer to open the store");
        await new Promise((r) => setTimeout(r, 1 + Math.random() * 25));
      } finally {
        await writer.kill();
      }
      const acknowledged = writer.lines.filter((l) => l.startsWith("T ")).map((l) => l.split(" "));
      const store = createFsStore({ dir });
      await store.open();
      try {
        const lastSeq = await store.transcripts.lastSeq(key);
        expect(lastSeq % 3, `round ${round}: a partial append survived`).toBe(0);
        for (const [, seq, batch] of acknowledged) {
          expect(Number(seq), `round ${round}: acknowledged batch ${batch}`).toBeLessThanOrEqual(
            lastSeq,
          );
        }
        for (let after = 0; after < lastSeq; after += 3) {
          const entries = (await store.transcripts.read(key, { afterSeq: after, limit: 3 })).map(
            (r) => r.entry as { batch: number; part: number },
          );
          expect(entries.map((e) => [e.batch, e.part])).toEqual(
            [0, 1, 2].map((part) => [after / 3 + 1, part]),
          );
        }
      } finally {
        await store.close();
      }
    }
  });
});
