/**
 * One cluster node for benchmark 10 (`cluster.mjs`), in its own process: a `ClusterNode` over
 * `@beamclaw/store-redis` with a zero-latency in-process echo model (4 text chunks per
 * answer), driven by the benchmark over the IPC channel. It generates its own load, so that
 * the IPC channel is not what is measured.
 *
 * Environment: BEAMCLAW_REDIS_URL, CLUSTER_PREFIX, CLUSTER_NODE_ID.
 *
 * Requests (each with an `id`, answered by `{ type: "reply", id, value }`):
 * - `{ type: "load", sessions, tag, startAt, durationMs }`: `sessions` loops, each sending turns
 *   one after another to its own session `agent:main:<tag>-<i>` from `startAt` (epoch ms) for
 *   `durationMs`; replies `{ turns, local }` (turns completed in the window; sessions owned here).
 * - `{ type: "latency", key, turns }`: sequential turns on one session; replies the turn
 *   durations in ms.
 * - `{ type: "turns", keys }`: one turn per session at once; replies `{ key: epoch ms done }`.
 * - `{ type: "info" }`: `{ owned, members }`.
 * - `{ type: "stop" }`: stops and exits.
 */
import { performance } from "node:perf_hooks";
import { ClusterNode } from "@beamclaw/core";
import { createRedisBackplane, createRedisStore } from "@beamclaw/store-redis";

const url = process.env.BEAMCLAW_REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = process.env.CLUSTER_PREFIX;
const nodeId = process.env.CLUSTER_NODE_ID;
if (!prefix || !nodeId) throw new Error("CLUSTER_PREFIX and CLUSTER_NODE_ID are required");

const models = {
  async *stream(request, options) {
    const last = request.messages.findLast((m) => m.role === "user");
    const text = `echo: ${last?.content.map((p) => p.text ?? "").join("") ?? ""}`;
    yield { type: "response-start", model: options.models[0] };
    const size = Math.ceil(text.length / 4);
    for (let i = 0; i < 4; i++)
      yield { type: "text-delta", text: text.slice(i * size, (i + 1) * size) };
    yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
    yield { type: "finish", reason: "stop" };
  },
};

const store = createRedisStore({ url, prefix });
const node = new ClusterNode({
  backplane: createRedisBackplane({ url, prefix, nodeId }),
  runtime: { store, models, agents: [{ id: "main", model: "echo/bench" }] },
});

async function turn(key, text) {
  const run = await node.runtime.session(key).send(text);
  for await (const _event of run) {
    // Every event is consumed, as a client streaming the answer would.
  }
  const result = await run.result;
  if (result.status !== "completed" || result.text !== `echo: ${text}`) {
    throw new Error(`unexpected result for ${key}: ${result.status} ${result.text}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

async function load({ sessions, tag, startAt, durationMs }) {
  await sleep(startAt - Date.now());
  const endAt = startAt + durationMs;
  let turns = 0;
  await Promise.all(
    Array.from({ length: sessions }, async (_, i) => {
      const key = `agent:main:${tag}-${i}`;
      for (let n = 0; Date.now() < endAt; n++) {
        await turn(key, `${n}`);
        if (Date.now() <= endAt) turns++;
      }
    }),
  );
  const owned = new Set(node.ownedSessions());
  let local = 0;
  for (let i = 0; i < sessions; i++) if (owned.has(`agent:main:${tag}-${i}`)) local++;
  return { turns, local };
}

async function latency({ key, turns }) {
  const durations = [];
  for (let n = 0; n < turns; n++) {
    const t0 = performance.now();
    await turn(key, `${n}`);
    durations.push(performance.now() - t0);
  }
  return durations;
}

async function turnsAt({ keys }) {
  const done = {};
  await Promise.all(
    keys.map(async (key) => {
      await turn(key, "after the failure");
      done[key] = Date.now();
    }),
  );
  return done;
}

const reply = (id, value) => process.connected && process.send({ type: "reply", id, value });
let exiting = false;
async function exit() {
  if (exiting) return;
  exiting = true;
  await node.stop().catch(() => undefined);
  await store.close().catch(() => undefined);
  if (process.connected) process.disconnect();
}

process.on("message", (message) => {
  const handlers = {
    load,
    latency,
    turns: turnsAt,
    info: async () => ({
      owned: node.ownedSessions(),
      members: node.members().map((m) => m.nodeId),
    }),
  };
  if (message?.type === "stop") {
    void exit();
    return;
  }
  const handler = handlers[message?.type];
  if (handler === undefined) return;
  handler(message).then(
    (value) => reply(message.id, value),
    (error) => reply(message.id, { error: String(error?.stack ?? error) }),
  );
});
process.on("disconnect", () => void exit());

await store.open();
await node.start();
process.send({ type: "ready" });
