/**
 * Benchmark 10: a BeamClaw cluster of real node processes (`cluster-node.mjs`, each a
 * `ClusterNode` over `@beamclaw/store-redis`) against one Redis.
 *
 * - **Turn throughput of 1, 2 and 3 nodes.** Each node runs the same client load of its own
 *   (`sessions` sessions, turns one after another in each, every event consumed), all
 *   nodes at once for the same window; new sessions are placed by the cluster (least
 *   loaded), so part of the turns cross nodes as they would behind a load balancer. Figure:
 *   turns/s of the whole cluster; baseline: one node alone; ratio = cluster ÷ one node.
 * - **Cross-node routing.** Two nodes; from node A, sequential turns on a session A owns and
 *   on one B owns (interleaved chunks). Ratio = cross-node ÷ same-node latency per turn.
 * - **Failover.** Three nodes with default settings (lease 3 s); the node owning the most
 *   sessions is killed with SIGKILL and a survivor sends one turn to each of its sessions at
 *   once. Figure: time from the kill until those turns are answered (p50, max over
 *   sessions); target < 5 s.
 *
 * Needs a Redis server: `BEAMCLAW_REDIS_URL`, default `redis://127.0.0.1:6379`. Every key is
 * written under a fresh prefix that is deleted at the end; every process started is reaped.
 */
import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import {
  formatDuration,
  formatRate,
  formatRatio,
  log,
  median,
  percentile,
  runBenchmark,
} from "./lib.mjs";

const REDIS_URL = process.env.BEAMCLAW_REDIS_URL ?? "redis://127.0.0.1:6379";
const NODE_PROGRAM = fileURLToPath(new URL("./cluster-node.mjs", import.meta.url));
const FAILOVER_TARGET_MS = 5_000;

const prefixes = [];
const children = new Set();

function freshPrefix(tag) {
  const prefix = `beamclaw-bench:cluster-${tag}-${randomUUID().slice(0, 8)}:`;
  prefixes.push(prefix);
  return prefix;
}

/** Forks a node; resolves with a handle once it has joined. */
function startNode(prefix, nodeId) {
  const child = fork(NODE_PROGRAM, [], {
    env: {
      ...process.env,
      BEAMCLAW_REDIS_URL: REDIS_URL,
      CLUSTER_PREFIX: prefix,
      CLUSTER_NODE_ID: nodeId,
    },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  children.add(child);
  const waiting = new Map();
  let next = 1;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  void exited.then(() => {
    children.delete(child);
    for (const reject of waiting.values()) reject.reject(new Error(`node ${nodeId} exited`));
    waiting.clear();
  });
  const node = {
    nodeId,
    exited,
    request(type, body = {}) {
      const id = next++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        child.send({ type, id, ...body });
      }).then((value) => {
        if (value?.error !== undefined) throw new Error(`node ${nodeId}: ${value.error}`);
        return value;
      });
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ type: "stop" });
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  child.on("message", (message) => {
    if (message?.type !== "reply") return;
    waiting.get(message.id)?.resolve(message.value);
    waiting.delete(message.id);
  });
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message?.type !== "ready") return;
      child.off("message", onMessage);
      resolve(node);
    };
    child.on("message", onMessage);
    void exited.then(() => reject(new Error(`node ${nodeId} exited while starting`)));
  });
}

async function startCluster(tag, count) {
  const prefix = freshPrefix(tag);
  const nodes = await Promise.all(
    Array.from({ length: count }, (_, i) => startNode(prefix, `${tag}-${i + 1}`)),
  );
  for (;;) {
    const infos = await Promise.all(nodes.map((n) => n.request("info")));
    if (infos.every((info) => info.members.length === count)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return nodes;
}

async function stopCluster(nodes) {
  await Promise.all(nodes.map((n) => n.stop()));
}

/**
 * Turns/s of clusters of 1, 2 and 3 nodes. The three clusters run side by side (idle but for
 * heartbeats when it is not their turn) and take turns in short windows, rotating the order
 * each round, so that load from elsewhere on the machine affects them alike; each node runs
 * `sessions` sessions, the same ones every window (placed by the cluster in the warm-up).
 */
async function throughput({ sessions, windowMs, warmupMs, rounds }) {
  const clusters = new Map();
  try {
    for (const count of [1, 2, 3]) clusters.set(count, await startCluster(`tp${count}`, count));
    const run = async (count, ms) => {
      const nodes = clusters.get(count);
      const startAt = Date.now() + 50;
      const results = await Promise.all(
        nodes.map((n, i) => n.request("load", { sessions, tag: `n${i}`, startAt, durationMs: ms })),
      );
      const turns = results.reduce((sum, r) => sum + r.turns, 0);
      const local = results.reduce((sum, r) => sum + r.local, 0);
      return { rate: turns / (ms / 1000), localShare: local / (sessions * count) };
    };
    for (const count of [1, 2, 3]) await run(count, warmupMs);
    const rates = { 1: [], 2: [], 3: [] };
    const ratios = { 2: [], 3: [] };
    const local = { 1: [], 2: [], 3: [] };
    const orders = [
      [1, 2, 3],
      [3, 1, 2],
      [2, 3, 1],
    ];
    for (let round = 0; round < rounds; round++) {
      const measured = {};
      for (const count of orders[round % 3]) {
        const { rate, localShare } = await run(count, windowMs);
        measured[count] = rate;
        rates[count].push(rate);
        local[count].push(localShare);
      }
      ratios[2].push(measured[2] / measured[1]);
      ratios[3].push(measured[3] / measured[1]);
      log(
        `throughput round ${round + 1}: ${[1, 2, 3].map((c) => `${c} node(s) ${formatRate(measured[c], "turn")}`).join(", ")}`,
      );
    }
    return { rates, ratios, local };
  } finally {
    for (const nodes of clusters.values()) await stopCluster(nodes);
  }
}

/** Per-turn latency from node A to a session A owns and to one B owns. */
async function routing({ turns, rounds }) {
  const [a, b] = await startCluster("route", 2);
  try {
    await a.request("latency", { key: "agent:main:same", turns: 1 });
    await b.request("latency", { key: "agent:main:cross", turns: 1 });
    const owners = await Promise.all([a.request("info"), b.request("info")]);
    if (
      !owners[0].owned.includes("agent:main:same") ||
      !owners[1].owned.includes("agent:main:cross")
    ) {
      throw new Error("the sessions did not land where the benchmark put them");
    }
    const same = [];
    const cross = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ["same", "cross"] : ["cross", "same"];
      for (const which of order) {
        const durations = await a.request("latency", { key: `agent:main:${which}`, turns });
        (which === "same" ? same : cross).push(...durations);
      }
    }
    return { same, cross };
  } finally {
    await stopCluster([a, b]);
  }
}

/** Kill -> answered, for each session of the killed node. */
async function failover({ sessions }) {
  const nodes = await startCluster("fail", 3);
  try {
    const keys = Array.from({ length: sessions }, (_, i) => `agent:main:f${i}`);
    await Promise.all(keys.map((key, i) => nodes[i % 3].request("turns", { keys: [key] })));
    const infos = await Promise.all(nodes.map((n) => n.request("info")));
    let victim = 0;
    for (let i = 1; i < 3; i++) if (infos[i].owned.length > infos[victim].owned.length) victim = i;
    const orphaned = infos[victim].owned;
    const survivor = nodes[(victim + 1) % 3];
    const killedAt = Date.now();
    await nodes[victim].kill();
    const done = await survivor.request("turns", { keys: orphaned });
    return orphaned.map((key) => done[key] - killedAt);
  } finally {
    await stopCluster(nodes);
  }
}

async function deletePrefixes() {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    for (const prefix of prefixes) {
      let cursor = "0";
      do {
        const [nextCursor, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = nextCursor;
        if (keys.length > 0) await client.del(...keys);
      } while (cursor !== "0");
    }
  } finally {
    await client.quit();
  }
}

async function main({ quick }) {
  const p = quick
    ? {
        sessions: 16,
        windowMs: 1_000,
        warmupMs: 500,
        rounds: 2,
        turns: 100,
        routeRounds: 2,
        failoverRounds: 1,
        failoverSessions: 9,
      }
    : {
        sessions: 64,
        windowMs: 2_000,
        warmupMs: 2_000,
        rounds: 9,
        turns: 500,
        routeRounds: 6,
        failoverRounds: 3,
        failoverSessions: 18,
      };
  try {
    const { rates, ratios, local } = await throughput(p);
    const { same, cross } = await routing({ turns: p.turns, rounds: p.routeRounds });
    log(
      `routing: same-node ${formatDuration(median(same))}, cross-node ${formatDuration(median(cross))} per turn (median)`,
    );
    const failovers = [];
    for (let round = 0; round < p.failoverRounds; round++) {
      const times = await failover({ sessions: p.failoverSessions });
      failovers.push(...times);
      log(
        `failover round ${round + 1}: ${times.length} sessions answered after ${times.map((t) => formatDuration(t)).join(", ")}`,
      );
    }

    const one = median(rates[1]);
    const mean = (list) => list.reduce((a, b) => a + b, 0) / list.length;
    const rows = [1, 2, 3].map((count) => ({
      measurement: `Turn throughput, ${count} node${count > 1 ? "s" : ""} (${p.sessions} sessions per node)`,
      figure: formatRate(median(rates[count]), "turn"),
      baseline: `${formatRate(one, "turn")} (1 node)`,
      ratio: count === 1 ? "1.00x" : formatRatio(median(ratios[count])),
      target: "(info: bounded by the machine's cores)",
      met: null,
    }));
    const sameMean = mean(same);
    const crossMean = mean(cross);
    rows.push({
      measurement: "Cross-node routing: turn latency to a session on another node",
      figure: `${formatDuration(crossMean)} mean, ${formatDuration(median(cross))} p50, ${formatDuration(percentile(cross, 99))} p99`,
      baseline: `${formatDuration(sameMean)} mean, ${formatDuration(median(same))} p50 (same node)`,
      ratio: formatRatio(crossMean / sameMean),
      target: "(info)",
      met: null,
    });
    const worst = Math.max(...failovers);
    rows.push({
      measurement: "Failover after SIGKILL: sessions of the killed node answering again",
      figure: `${formatDuration(median(failovers))} p50, ${formatDuration(worst)} max`,
      baseline: "3.00 s (the session lease, the least a takeover must wait)",
      ratio: formatRatio(worst / 3_000),
      target: `max < ${FAILOVER_TARGET_MS / 1000} s`,
      met: worst < FAILOVER_TARGET_MS,
    });
    return {
      id: "cluster",
      title: "10. Cluster: turns/s of 1, 2 and 3 node processes, cross-node routing, failover",
      description:
        "Real node processes (`ClusterNode` over `@beamclaw/store-redis`, zero-latency echo model, 4 text chunks per answer, every event consumed) against one Redis. Throughput: every node runs the same client load for the same window; sessions are placed by the cluster (least loaded), so part of the turns cross nodes. Routing: sequential turns from one node to a session it owns vs one another node owns. Failover: the node owning the most sessions is killed with SIGKILL and a survivor sends a turn to each of them at once; the time until each is answered includes the lease expiry (3 s by default).",
      params: `throughput: ${p.sessions} sessions per node, the 3 clusters taking turns in ${p.windowMs / 1000} s windows (rotating order) after a ${p.warmupMs / 1000} s warm-up each, ${p.rounds} rounds, medians (ratio: median of the per-round ratios); routing: ${p.routeRounds} × ${p.turns} turns per side, interleaved; failover: ${p.failoverRounds} round(s) of ${p.failoverSessions} sessions on 3 nodes; Redis at ${REDIS_URL.replace(/\/\/[^@]*@/, "//")}`,
      rows,
      notes: [
        `Share of sessions owned by the node whose client used them: ${[1, 2, 3].map((c) => `${c} node(s) ${(median(local[c]) * 100).toFixed(0)}%`).join(", ")} (the rest crossed nodes on every turn).`,
        `Throughput per round: ${[1, 2, 3].map((c) => `${c}: ${rates[c].map((r) => formatRate(r, "turn")).join(", ")}`).join("; ")}.`,
        `Ratios per round: 2 nodes ${ratios[2].map((r) => formatRatio(r)).join(", ")}; 3 nodes ${ratios[3].map((r) => formatRatio(r)).join(", ")}.`,
        "All node processes, Redis and the benchmark share this machine's cores: more nodes add processes, not cores.",
        `Failover times (ms): ${failovers.map((t) => t.toFixed(0)).join(", ")}.`,
      ],
    };
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await deletePrefixes();
  }
}

runBenchmark(main);
