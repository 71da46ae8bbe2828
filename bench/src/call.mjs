/**
 * Benchmark 1: `call` round trips per second against a bare `await` of the same async
 * function, plus `cast` throughput and calls without a deadline (`timeoutMs: Infinity`).
 *
 * Every variant runs the same number of sequential operations per round; the variants are
 * interleaved within each round (in a rotating order, so none always runs first after a
 * GC) and the median of the rounds is reported. The baseline, the limit no actor can beat,
 * is a loop of `await work(i)` with the very function the actor's `handleCall` returns.
 */
import { performance } from "node:perf_hooks";
import { Actor } from "@beamclaw/core";
import {
  formatNsPerOp,
  formatRate,
  formatRatio,
  fullGc,
  log,
  median,
  runBenchmark,
} from "./lib.mjs";

/** The work every variant does: the async function the baseline awaits directly. */
async function work(n) {
  return n + 1;
}

/** The same work, synchronous, for the sync-handler and cast variants. */
function workSync(n) {
  return n + 1;
}

/** `handleCall` returns `work(n)`, a promise, as an async handler does. */
class AsyncEcho extends Actor {
  handleCall(n) {
    return work(n);
  }
}

/** `handleCall` returns the value directly (a synchronous handler). */
class SyncEcho extends Actor {
  handleCall(n) {
    return workSync(n);
  }
}

/** Counts casts; a call returns the count. */
class CastSink extends Actor {
  count = 0;
  handleCast() {
    this.count = workSync(this.count);
  }
  handleCall() {
    return this.count;
  }
}

const NO_DEADLINE = { timeoutMs: Infinity };

/** Each variant runs `n` sequential operations and returns a checksum. */
function variants(actors) {
  const { asyncEcho, syncEcho, sink } = actors;
  return [
    {
      id: "bare",
      label: "bare `await work(n)` (baseline)",
      async run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc = await work(acc);
        return acc;
      },
    },
    {
      id: "call",
      label: "`call`, async handler, default 5 s deadline",
      async run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc = await asyncEcho.call(acc);
        return acc;
      },
    },
    {
      id: "callInf",
      label: "`call`, async handler, `timeoutMs: Infinity`",
      async run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc = await asyncEcho.call(acc, NO_DEADLINE);
        return acc;
      },
    },
    {
      id: "callSync",
      label: "`call`, sync handler, default 5 s deadline",
      async run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc = await syncEcho.call(acc);
        return acc;
      },
    },
    {
      id: "callSyncInf",
      label: "`call`, sync handler, `timeoutMs: Infinity`",
      async run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc = await syncEcho.call(acc, NO_DEADLINE);
        return acc;
      },
    },
    {
      id: "cast",
      label: "`cast`, sync handler (+ one `call` to confirm)",
      async run(n) {
        const before = await sink.call("count");
        for (let i = 0; i < n; i++) sink.cast(i);
        const after = await sink.call("count");
        if (after - before !== n) throw new Error(`cast lost messages: ${after - before}/${n}`);
        return n;
      },
    },
  ];
}

async function main({ quick }) {
  // Enough operations per round for the optimising compiler to finish: with too few, quick
  // mode would measure the interpreter rather than the runtime.
  const ops = quick ? 100_000 : 1_000_000;
  const warmupRounds = quick ? 1 : 2;
  const rounds = quick ? 3 : 9;

  const actors = {
    asyncEcho: await new AsyncEcho().start(),
    syncEcho: await new SyncEcho().start(),
    sink: await new CastSink().start(),
  };
  try {
    const list = variants(actors);
    const samples = new Map(list.map((v) => [v.id, []]));
    for (let round = -warmupRounds; round < rounds; round++) {
      const offset = ((round % list.length) + list.length) % list.length;
      for (let k = 0; k < list.length; k++) {
        const variant = list[(k + offset) % list.length];
        fullGc();
        const start = performance.now();
        const checksum = await variant.run(ops);
        const elapsedMs = performance.now() - start;
        if (checksum !== ops) throw new Error(`${variant.id}: checksum ${checksum} !== ${ops}`);
        if (round >= 0) samples.get(variant.id).push((ops / elapsedMs) * 1000);
      }
      log(round < 0 ? `call: warm-up round done` : `call: round ${round + 1}/${rounds} done`);
    }

    const rate = (id) => median(samples.get(id));
    const spread = (id) => {
      const s = samples.get(id);
      return `${formatRate(Math.min(...s), "op")} – ${formatRate(Math.max(...s), "op")}`;
    };
    const bare = rate("bare");
    const baselineText = `${formatRate(bare, "op")} (${formatNsPerOp(bare)}/op)`;
    const row = (id, unit, target) => {
      const r = rate(id);
      const slowdown = bare / r;
      return {
        measurement: list.find((v) => v.id === id).label,
        figure: `${formatRate(r, unit)} (${formatNsPerOp(r)}/op)`,
        baseline: baselineText,
        ratio: formatRatio(slowdown),
        target: target === undefined ? "—" : `≤ ${target}x`,
        met: target === undefined ? null : slowdown <= target,
      };
    };

    const deadlineNs = 1e9 / rate("call") - 1e9 / rate("callInf");
    const deadlineSyncNs = 1e9 / rate("callSync") - 1e9 / rate("callSyncInf");
    return {
      id: "call",
      title: "1. `call` round trips vs a bare `await`",
      description:
        "Sequential round trips to one idle actor whose `handleCall` returns `work(n)`, an " +
        "`async` function; the baseline awaits `work(n)` directly, the limit for any " +
        "request/reply. Ratio = baseline rate ÷ figure (how many times slower; below 1x " +
        "would be faster than the baseline).",
      params: `${ops.toLocaleString("en-US")} sequential ops per variant per round, ${warmupRounds} warm-up + ${rounds} measured rounds (variants interleaved), median reported`,
      rows: [
        row("call", "call", 5),
        row("callInf", "call"),
        row("callSync", "call"),
        row("callSyncInf", "call"),
        row("cast", "cast"),
      ],
      notes: [
        `Cost of the default deadline (default minus \`timeoutMs: Infinity\`): ${deadlineNs.toFixed(0)} ns per call with the async handler, ${deadlineSyncNs.toFixed(0)} ns with the sync handler.`,
        `\`cast\` has no reply to await: an idle actor runs the handler on the sender's stack, so it may beat the baseline (ratio below 1x).`,
        `Spread over rounds: bare ${spread("bare")}; call ${spread("call")}; call Infinity ${spread("callInf")}; cast ${spread("cast")}.`,
      ],
    };
  } finally {
    await Promise.all(Object.values(actors).map((a) => a.stop()));
  }
}

runBenchmark(main);
