/**
 * A long run (more than 200 transcript entries) sent through node B for a session node A
 * owns, two nodes on the real Redis, when none of the run's events reach B: the result B's
 * sweep rebuilds from the transcript holds the whole run, read back page by page to its
 * start, not only its newest entries.
 */
import {
  type AgentDefinition,
  ClusterNode,
  defineTool,
  type ModelSource,
  type PubSubHandler,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

/** Tool calls the long run makes before it answers: 2 entries each (call and result). */
const STEPS = 130;
const AGENTS: AgentDefinition[] = [
  { id: "main", model: "echo/test", tools: ["tick"], maxSteps: STEPS + 5 },
];

/**
 * For a user message `long`, calls `tick` (one call a step) until it has `STEPS` results,
 * then answers `ticked <n>`; any other message is answered at once with `hi`. Every call
 * reports usage of 1/1 tokens.
 */
const models: ModelSource = {
  async *stream(request) {
    yield { type: "response-start", model: "echo/test" };
    const asked = request.messages.findLast((m) => m.role === "user");
    const long = asked?.content.some((p) => p.type === "text" && p.text === "long") === true;
    const lastUser = request.messages.lastIndexOf(asked!);
    const ticks = request.messages.slice(lastUser).filter((m) => m.role === "tool").length;
    if (long && ticks < STEPS) {
      yield { type: "tool-call", toolCallId: `t${ticks}`, toolName: "tick", input: { n: ticks } };
      yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
      yield { type: "finish", reason: "tool-calls" };
      return;
    }
    yield { type: "text-delta", text: long ? `ticked ${ticks}` : "hi" };
    yield { type: "usage", usage: { inputTokens: 1, outputTokens: 1 } };
    yield { type: "finish", reason: "stop" };
  },
};

const tick = defineTool({
  name: "tick",
  description: "Counts a step",
  parameters: z.object({ n: z.number() }),
  execute: async ({ n }) => `tick ${n}`,
});

const prefixes: string[] = [];
const nodes: ClusterNode[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.stop();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function startNode(prefix: string, nodeId: string): Promise<ClusterNode> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  const node = new ClusterNode({
    backplane: createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId,
      heartbeatIntervalMs: 100,
      downAfterMs: 1_500,
    }),
    runtime: { store, models, agents: AGENTS, tools: [tick] },
    leaseTtlMs: 1_000,
    sweepIntervalMs: 100,
    requestTimeoutMs: 1_000,
  });
  nodes.push(node);
  await node.start();
  return node;
}

describe("a followed long run whose events never reach the sending node", () => {
  it("ends with a result rebuilt from the whole run, read back to its start", async () => {
    const prefix = uniquePrefix("rebuilt-long");
    prefixes.push(prefix);
    const a = await startNode(prefix, "node-a");
    const b = await startNode(prefix, "node-b");
    await waitUntil("the nodes to see each other", () =>
      [a, b].every((n) => n.members().length === 2),
    );
    const key = "agent:main:rebuilt-long";
    // An earlier run, before the long one in the transcript.
    expect(await (await a.runtime.session(key).send("hello")).result).toMatchObject({
      status: "completed",
      text: "hi",
    });
    expect(await a.ownerOf(key)).toBe("node-a");

    // Nothing published on the session's topic reaches node-b's subscribers.
    const pubsub = b.backplane.pubsub;
    const subscribeLocal = pubsub.subscribeLocal.bind(pubsub);
    let dropped = 0;
    pubsub.subscribeLocal = (<T>(topic: string, handler: PubSubHandler<T>) =>
      subscribeLocal<T>(
        topic,
        topic === `session:${key}`
          ? () => {
              dropped++;
            }
          : handler,
      )) as typeof pubsub.subscribeLocal;

    const run = await b.runtime.session(key).send("long");
    expect(run.disposition).toBe("started");
    const result = await run.result;
    expect(dropped).toBeGreaterThan(0);

    const ofRun = (await a.store.transcripts.read(key, { limit: 1000 })).filter(
      (r) => r.entry.runId === run.runId,
    );
    // The user message, a call and a result per step, and the answer.
    expect(ofRun).toHaveLength(2 * STEPS + 2);

    expect(result.status).toBe("completed");
    expect(result.runId).toBe(run.runId);
    expect(result.text).toBe(`ticked ${STEPS}`);
    expect(result.steps).toBe(STEPS + 1);
    expect(result.messages).toHaveLength(2 * STEPS + 1);
    expect(result.messages[0]).toEqual({
      role: "assistant",
      content: [{ type: "tool-call", toolCallId: "t0", toolName: "tick", input: { n: 0 } }],
    });
    expect(result.usage).toEqual({ inputTokens: STEPS + 1, outputTokens: STEPS + 1 });
  }, 30_000);
});
