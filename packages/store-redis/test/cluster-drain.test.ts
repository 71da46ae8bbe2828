/**
 * Draining a node for a rolling deploy, with three real node processes against the real
 * Redis and traffic through the others: the node finishes every run it had, hands its
 * sessions over, leaves the cluster and exits by itself, and nothing is lost, run twice or
 * cut short.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { ClusterNodeProcess, infoOf, stopAll } from "./support/cluster.js";
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

describe("draining a node", () => {
  it("finishes its runs, hands its sessions over and exits by itself, losing and repeating nothing", async () => {
    const prefix = uniquePrefix("drain");
    prefixes.push(prefix);
    const env = { ECHO_CHUNK_DELAY_MS: "25" };
    const nodes = await Promise.all(
      [1, 2, 3].map((i) =>
        ClusterNodeProcess.start({ redisUrl: REDIS_URL, prefix, nodeId: `node-${i}`, env }),
      ),
    );
    const store = createRedisStore({ url: REDIS_URL, prefix });
    stores.push(store);
    await store.open();
    await waitUntil("all nodes to see each other", async () =>
      (await Promise.all(nodes.map(infoOf))).every((info) => info.members.length === 3),
    );

    const keys = Array.from({ length: 9 }, (_, i) => `agent:main:d${i}`);
    const log: Sent[] = [];
    let phase = "before";
    let rotation = nodes;
    for (const key of keys) {
      loops.push(
        sessionLoop({ key, nodes: () => rotation, stop: () => stopping, phase: () => phase, log }),
      );
    }
    const completed = (key: string, when: string) =>
      log.filter((s) => s.key === key && s.phase === when && s.outcome?.kind === "result").length;
    await waitUntil("3 turns per session", () =>
      keys.every((key) => completed(key, "before") >= 3),
    );

    const infos = await Promise.all(nodes.map(infoOf));
    const leaving = infos.reduce((a, b) => (b.owned.length > a.owned.length ? b : a));
    const node = nodes.find((n) => n.nodeId === leaving.nodeId)!;
    expect(leaving.owned.length).toBeGreaterThan(0);
    // The load balancer takes it out of rotation, then it drains while its runs go on.
    rotation = nodes.filter((n) => n !== node);
    phase = "draining";
    const reply = await node.request("drain");
    expect(reply).toBe("drained");
    expect(await node.exitWithin(10_000)).toBe(true);
    expect(node.exitCode).toBe(0);
    phase = "after";

    await waitUntil("3 more turns per session on the others", () =>
      keys.every((key) => completed(key, "after") >= 3),
    );
    stopping = true;
    await Promise.all(loops.splice(0));
    expect(await queueDrained(store, 10_000)).toBe(0);

    const others = rotation.map((n) => n.nodeId);
    for (const key of keys) {
      const sent = log.filter((s) => s.key === key);
      const acknowledged = sent.filter((s) => s.acknowledged).map((s) => s.text);
      const { users, answers, cutShort } = await transcriptOf(store, key);
      expect(repeated(users), key).toEqual([]);
      expect(users, key).toEqual(acknowledged);
      expect(answers, key).toEqual(users.map((text) => `echo: ${text}`));
      // A drain never cuts a run short.
      expect(cutShort, key).toBe(0);
      const owner = (await store.locks.holder(`session:${key}`))?.owner;
      if (owner !== undefined) expect(others, key).toContain(owner);
    }
    // Every acknowledged turn, the ones the drained node had taken included, ended with its
    // answer: no caller saw an error.
    for (const sent of log.filter((s) => s.acknowledged)) {
      expect(sent.outcome, sent.text).toMatchObject({ kind: "result", status: "completed" });
      expect(sent.outcome?.kind === "result" && sent.outcome.events, sent.text).not.toContain(
        "error:SESSION_CRASHED",
      );
    }
    // It left the cluster: the others see two members.
    for (const info of await Promise.all(rotation.map(infoOf))) {
      expect(info.members.sort()).toEqual([...others].sort());
    }
    for (const key of leaving.owned) expect(completed(key, "after"), key).toBeGreaterThanOrEqual(3);
  }, 45_000);
});
