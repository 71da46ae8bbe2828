/**
 * Redis crashes and comes back while three real node processes serve traffic, against a
 * private redis-server with `appendonly yes`: the nodes reconnect by themselves, stay in the
 * cluster, and every session goes on; every acknowledged message runs exactly once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore } from "../src/index.js";
import { ClusterNodeProcess, infoOf, stopAll } from "./support/cluster.js";
import { uniquePrefix } from "./support/redis.js";
import { RedisServerProcess } from "./support/redis-server.js";
import { sleep, waitUntil } from "./support/settle.js";
import { queueDrained, repeated, type Sent, sessionLoop, transcriptOf } from "./support/traffic.js";

const cleanups: Array<() => Promise<void>> = [];
let stopping = false;
const loops: Promise<void>[] = [];
afterEach(async () => {
  stopping = true;
  await stopAll();
  await Promise.all(loops.splice(0));
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  stopping = false;
});

describe("a Redis restart under a running cluster", () => {
  it("the nodes reconnect and stay members, every session goes on, and every acknowledged message runs exactly once", async () => {
    const server = await RedisServerProcess.start({ appendonly: true });
    cleanups.push(() => server.stop());
    const prefix = uniquePrefix("redis-restart");
    const env = { ECHO_CHUNK_DELAY_MS: "10" };
    const nodes = await Promise.all(
      [1, 2, 3].map((i) =>
        ClusterNodeProcess.start({ redisUrl: server.url, prefix, nodeId: `node-${i}`, env }),
      ),
    );
    const store = createRedisStore({ url: server.url, prefix, commandTimeoutMs: 2_000 });
    cleanups.push(() => store.close());
    await store.open();
    await waitUntil("all nodes to see each other", async () =>
      (await Promise.all(nodes.map(infoOf))).every((info) => info.members.length === 3),
    );

    const keys = Array.from({ length: 9 }, (_, i) => `agent:main:r${i}`);
    const log: Sent[] = [];
    let phase = "before";
    for (const key of keys) {
      loops.push(
        sessionLoop({ key, nodes: () => nodes, stop: () => stopping, phase: () => phase, log }),
      );
    }
    const completed = (key: string, when: string) =>
      log.filter((s) => s.key === key && s.phase === when && s.outcome?.kind === "result").length;
    await waitUntil("3 turns per session", () =>
      keys.every((key) => completed(key, "before") >= 3),
    );

    await server.kill("SIGKILL");
    phase = "down";
    // Down for a while: turns in flight fail over to the replay, new sends are refused.
    await sleep(1_000);
    await server.restart();
    phase = "after";
    await waitUntil(
      "3 more turns per session after the restart",
      () => keys.every((key) => completed(key, "after") >= 3),
      20_000,
    );
    stopping = true;
    await Promise.all(loops.splice(0));
    await waitUntil("the store to answer", async () => {
      try {
        await store.kv.get("probe");
        return true;
      } catch {
        return false;
      }
    });
    expect(await queueDrained(store, 15_000)).toBe(0);

    for (const key of keys) {
      const sent = log.filter((s) => s.key === key);
      const acknowledged = sent.filter((s) => s.acknowledged).map((s) => s.text);
      const { users, answers } = await transcriptOf(store, key);
      expect(repeated(users), key).toEqual([]);
      expect(users, key).toEqual(acknowledged);
      expect(answers, key).toEqual(users.map((text) => `echo: ${text}`));
    }
    for (const info of await Promise.all(nodes.map(infoOf))) {
      expect(info.state).toBe("running");
      expect(info.members.sort()).toEqual(["node-1", "node-2", "node-3"]);
    }
  }, 45_000);
});
