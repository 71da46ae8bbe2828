/**
 * The failover sweep reads the shared queue page by page (`queue.pending` with `after`), so a
 * dead node's session is revived however many older unfinished messages of live sessions
 * wait before its own. The survivor runs in this process with small pages (3 messages, one
 * page per pass) so that a handful of messages stands for the 1,000s of a busy cluster; the
 * dead node is a real node process killed with SIGKILL, over the real Redis.
 */
import {
  type AgentDefinition,
  ClusterNode,
  type ModelSource,
  type ModelStreamEvent,
  type RunHandle,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { ClusterNodeProcess, stopAll } from "./support/cluster.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test" }];
const prefixes: string[] = [];
const nodes: ClusterNode[] = [];
const stores: RedisStore[] = [];
const releases: Array<() => void> = [];
afterEach(async () => {
  for (const release of releases.splice(0)) release();
  await stopAll();
  for (const node of nodes.splice(0)) await node.stop();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

/** Answers `echo: <text>`; a text starting with `hold` waits until `release()`. */
function echoModels() {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  releases.push(release);
  const models: ModelSource = {
    async *stream(request, options): AsyncGenerator<ModelStreamEvent> {
      const last = request.messages.findLast((m) => m.role === "user");
      const text = last?.content.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
      yield { type: "response-start", model: options.models[0] ?? "echo/test" };
      if (text.startsWith("hold")) {
        await new Promise<void>((resolve, reject) => {
          void released.then(resolve);
          options.signal?.addEventListener("abort", () => reject(options.signal?.reason), {
            once: true,
          });
        });
      }
      yield { type: "text-delta", text: `echo: ${text}` };
      yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
      yield { type: "finish", reason: "stop" };
    },
  };
  return { models, release };
}

async function survivor(prefix: string, sweep: { pageSize: number; pagesPerPass: number }) {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  const echo = echoModels();
  const node = new ClusterNode({
    backplane: createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId: "survivor",
      heartbeatIntervalMs: 100,
      downAfterMs: 1_500,
    }),
    runtime: { store, models: echo.models, agents: AGENTS },
    leaseTtlMs: 1_000,
    requestTimeoutMs: 1_000,
    sweepIntervalMs: 200,
    sweepPageSize: sweep.pageSize,
    sweepPagesPerPass: sweep.pagesPerPass,
  });
  nodes.push(node);
  await node.start();
  return { node, store, release: echo.release };
}

describe("the failover sweep pages through the whole queue", () => {
  it("a dead node's session behind more than a page of older unfinished messages is revived and its message runs", async () => {
    const prefix = uniquePrefix("sweep");
    prefixes.push(prefix);
    const { node, store, release } = await survivor(prefix, { pageSize: 3, pagesPerPass: 1 });

    // Older unfinished messages of a live session: its first run holds, seven wait behind it.
    const busy = "agent:main:busy";
    const busyRuns: RunHandle[] = [];
    for (let i = 0; i < 7; i++) busyRuns.push(await node.runtime.session(busy).send(`hold ${i}`));
    expect(await node.ownerOf(busy)).toBe("survivor");

    // A second node takes a new session (the least loaded), accepts a message for it, and dies
    // before the turn ends (its answers take a minute).
    const dead = await ClusterNodeProcess.start({
      redisUrl: REDIS_URL,
      prefix,
      nodeId: "dead",
      env: {
        CLUSTER_LEASE_MS: "1000",
        CLUSTER_HEARTBEAT_MS: "100",
        CLUSTER_DOWN_AFTER_MS: "1500",
        ECHO_CHUNK_DELAY_MS: "60000",
      },
    });
    await waitUntil("the survivor to see the second node", () =>
      node.members().some((m) => m.nodeId === "dead"),
    );
    const orphan = "agent:main:orphan";
    const accepted = await dead.send(orphan, "after the others");
    expect(accepted.kind).toBe("accepted");
    await waitUntil("the second node to own the session", async () => {
      return (await node.ownerOf(orphan)) === "dead";
    });
    const queued = await store.queue.pending({ limit: 1000 });
    expect(queued.map((m) => m.sessionKey)).toEqual([...Array(7).fill(busy), orphan]);
    await dead.kill("SIGKILL");

    // Only the sweep can find it: its message is the eighth, past two full pages.
    await waitUntil(
      "the survivor to revive the dead node's session",
      async () => (await node.ownerOf(orphan)) === "survivor",
      10_000,
    );
    await waitUntil(
      "the orphan's message to finish",
      async () => (await store.queue.pending({ sessionKey: orphan })).length === 0,
      10_000,
    );
    const answers = (await node.runtime.session(orphan).history())
      .map((r) => r.entry.message as { role?: string; content?: Array<{ text?: string }> })
      .filter((m) => m?.role === "assistant")
      .map((m) => m.content?.map((p) => p.text ?? "").join(""));
    expect(answers).toEqual(["echo: after the others"]);
    // The live session's messages were left to it, untouched.
    expect(await store.queue.pending({ sessionKey: busy })).toHaveLength(7);

    release();
    const results = await Promise.all(busyRuns.map((run) => run.result));
    expect(results.map((r) => r.text)).toEqual(
      Array.from({ length: 7 }, (_, i) => `echo: hold ${i}`),
    );
    await waitUntil(
      "the queue to drain",
      async () => (await store.queue.pending()).length === 0,
      10_000,
    );
  }, 40_000);

  it("refuses a sweep page size or pages per pass that is not a whole number in range with InvalidArgumentError", async () => {
    const store = createRedisStore({ url: REDIS_URL });
    const backplane = createRedisBackplane({ url: REDIS_URL });
    const runtime = { store, models: echoModels().models, agents: AGENTS };
    for (const bad of [
      { sweepPageSize: 0 },
      { sweepPageSize: 1001 },
      { sweepPageSize: 2.5 },
      { sweepPageSize: "10" },
      { sweepPagesPerPass: 0 },
      { sweepPagesPerPass: Number.NaN },
    ]) {
      expect(
        () => new ClusterNode({ backplane, runtime, ...(bad as object) }),
        JSON.stringify(bad),
      ).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
    const node = new ClusterNode({ backplane, runtime, sweepPageSize: 1, sweepPagesPerPass: 3 });
    expect([node.sweepPageSize, node.sweepPagesPerPass]).toEqual([1, 3]);
  });
});
