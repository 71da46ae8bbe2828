/**
 * Three real node processes against the real Redis, traffic through all of them, and one
 * killed with SIGKILL mid-run: every session goes on on the survivors, and the transcripts
 * show every acknowledged message run exactly once, in order, each with its answer.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { ClusterNodeProcess, infoOf, type NodeInfo, stopAll } from "./support/cluster.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";
import { queueDrained, repeated, type Sent, sessionLoop, transcriptOf } from "./support/traffic.js";

const prefixes: string[] = [];
const stores: RedisStore[] = [];
let stopping = false;
const loops: Promise<void>[] = [];
afterEach(async () => {
  stopping = true;
  await stopAll();
  await Promise.all(loops.splice(0));
  stopping = false;
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function cluster(count: number, env: Record<string, string> = {}) {
  const prefix = uniquePrefix("cluster");
  prefixes.push(prefix);
  const nodes = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      ClusterNodeProcess.start({ redisUrl: REDIS_URL, prefix, nodeId: `node-${i + 1}`, env }),
    ),
  );
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  return { prefix, nodes, store };
}

describe("a node killed with SIGKILL mid-run", () => {
  it("every session continues on the survivors, and every acknowledged message runs exactly once", async () => {
    // Each answer streams 4 chunks 25 ms apart, so a kill lands in the middle of runs.
    const { nodes, store } = await cluster(3, { ECHO_CHUNK_DELAY_MS: "25" });
    await waitUntil("all nodes to see each other", async () => {
      const infos = await Promise.all(nodes.map(infoOf));
      return infos.every((info) => info.members.length === 3);
    });
    const keys = Array.from({ length: 9 }, (_, i) => `agent:main:s${i}`);
    const log: Sent[] = [];
    let phase = "before";
    for (const key of keys) {
      loops.push(
        sessionLoop({ key, nodes: () => nodes, stop: () => stopping, phase: () => phase, log }),
      );
    }
    const completed = (key: string, when: string) =>
      log.filter((s) => s.key === key && s.phase === when && s.outcome?.kind === "result").length;

    await waitUntil("3 turns per session through the cluster", () =>
      keys.every((key) => completed(key, "before") >= 3),
    );
    // The victim is the node that owns the most sessions right now.
    const infos: NodeInfo[] = await Promise.all(nodes.map(infoOf));
    const victimInfo = infos.reduce((a, b) => (b.owned.length > a.owned.length ? b : a));
    const victim = nodes.find((n) => n.nodeId === victimInfo.nodeId)!;
    const orphaned = victimInfo.owned;
    expect(orphaned.length).toBeGreaterThan(0);
    // Kill while one of its sessions has a turn in flight.
    await waitUntil("a turn in flight on the victim's sessions", () =>
      log.some((s) => orphaned.includes(s.key) && s.acknowledged && s.outcome === undefined),
    );
    await victim.kill("SIGKILL");
    phase = "after";

    await waitUntil(
      "3 more turns per session on the survivors",
      () => keys.every((key) => completed(key, "after") >= 3),
      20_000,
    );
    stopping = true;
    await Promise.all(loops.splice(0));
    expect(await queueDrained(store, 10_000)).toBe(0);

    const survivors = nodes.filter((n) => n !== victim).map((n) => n.nodeId);
    let cutShortRuns = 0;
    for (const key of keys) {
      const sent = log.filter((s) => s.key === key);
      const acknowledged = sent.filter((s) => s.acknowledged).map((s) => s.text);
      const { users, answers, cutShort } = await transcriptOf(store, key);
      cutShortRuns += cutShort;
      // Nothing ran twice, nothing acknowledged is missing, and the order is the send order.
      expect(repeated(users), key).toEqual([]);
      expect(
        users.filter((text) => acknowledged.includes(text)),
        key,
      ).toEqual(acknowledged);
      // Unacknowledged sends (refused by the dying node) ran at most once, never out of order.
      expect(users, key).toEqual(sent.map((s) => s.text).filter((text) => users.includes(text)));
      // Every run finished with its answer.
      expect(answers, key).toEqual(users.map((text) => `echo: ${text}`));
      // The session lives on a survivor now.
      const owner = (await store.locks.holder(`session:${key}`))?.owner;
      if (owner !== undefined) expect(survivors, key).toContain(owner);
    }
    // Every turn acknowledged through a survivor ended with its answer, the ones whose run
    // the dead node had taken included (their handles followed the run to its new owner).
    for (const sent of log.filter((s) => s.acknowledged && s.via !== victim.nodeId)) {
      if (sent.refusals.includes("NODE_EXITED") && sent.outcome?.kind === "failed") {
        // A retry of what the dying node had already queued and was run meanwhile.
        expect(sent.outcome.code, sent.text).toBe("DUPLICATE");
        continue;
      }
      expect(sent.outcome, sent.text).toMatchObject({ kind: "result", status: "completed" });
    }
    // The kill did land mid-run: an attempt was cut short, and replayed.
    expect(cutShortRuns).toBeGreaterThan(0);
    // The dead node's sessions were taken over and served again after the kill.
    for (const key of orphaned) expect(completed(key, "after"), key).toBeGreaterThanOrEqual(3);
  }, 45_000);
});
