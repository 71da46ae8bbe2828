/**
 * `ClusterNode.stop()` with a session whose run is still finishing a tool call, two nodes
 * against the real Redis: the stopping node keeps renewing the session's lease until its
 * runtime has stopped (the tool call has returned), so the other node takes the session over
 * only then, never while the tool's side effect may still be running on the first node.
 */
import { type AgentDefinition, ClusterNode, defineTool, type ModelSource } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { sleep, waitUntil } from "./support/settle.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test", tools: ["slow"] }];
const LEASE_TTL_MS = 600;
/**
 * How long, in lease times, the tool call on the first node goes on after its node began to
 * stop: it returns only once the test has watched the lease for that long.
 */
const TOOL_LEASES = 5;

/** Calls the tool `slow` for a user's message, then answers `done` once it has returned. */
const models: ModelSource = {
  async *stream(request) {
    yield { type: "response-start", model: "echo/test" };
    if (request.messages.at(-1)?.role === "user") {
      yield { type: "tool-call", toolCallId: "c1", toolName: "slow", input: {} };
      yield { type: "finish", reason: "tool-calls" };
      return;
    }
    yield { type: "text-delta", text: "done" };
    yield { type: "finish", reason: "stop" };
  },
};

interface Call {
  node: string;
  startedAt: number;
  endedAt?: number;
}

/** A gate a test opens by hand. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/** Opened by each test once it has watched the slow tool call long enough (or in cleanup). */
let toolDone = gate();

/** The tool `slow`: on `slowOn` it returns once `toolDone` opens, and does not stop when aborted. */
function slowTool(nodeId: string, slowOn: string, calls: Call[]) {
  return defineTool({
    name: "slow",
    description: "A side effect that takes its time",
    parameters: z.object({}),
    execute: async () => {
      const call: Call = { node: nodeId, startedAt: performance.now() };
      calls.push(call);
      if (nodeId === slowOn) await toolDone.opened;
      call.endedAt = performance.now();
      return "ok";
    },
  });
}

const prefixes: string[] = [];
const nodes: ClusterNode[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  toolDone.open();
  toolDone = gate();
  for (const node of nodes.splice(0)) await node.stop();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function openStore(prefix: string): Promise<RedisStore> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(store);
  await store.open();
  return store;
}

async function startNode(prefix: string, nodeId: string, calls: Call[]): Promise<ClusterNode> {
  const store = await openStore(prefix);
  const node = new ClusterNode({
    backplane: createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId,
      heartbeatIntervalMs: 100,
      downAfterMs: 1_500,
    }),
    runtime: {
      store,
      models,
      agents: AGENTS,
      tools: [slowTool(nodeId, "node-a", calls)],
    },
    leaseTtlMs: LEASE_TTL_MS,
    sweepIntervalMs: 100,
    requestTimeoutMs: 300,
  });
  nodes.push(node);
  await node.start();
  return node;
}

describe("stopping a node while a session's tool call finishes", () => {
  it("keeps the session's lease until its runtime has stopped; the other node takes it over only then", async () => {
    const prefix = uniquePrefix("stop-lease");
    prefixes.push(prefix);
    const calls: Call[] = [];
    const observer = await openStore(prefix);
    const a = await startNode(prefix, "node-a", calls);
    const key = "agent:main:stop-lease";
    const run = await a.runtime.session(key).send("go");
    // Cut by the stop: its message stays queued and runs again on the other node.
    const cut = run.result.catch(() => undefined);
    await waitUntil("the tool call on node-a", () => calls.length === 1);
    const b = await startNode(prefix, "node-b", calls);
    await waitUntil("the nodes to see each other", () =>
      [a, b].every((n) => n.members().length === 2),
    );

    let stopped = false;
    const stopping = a.stop().then(() => {
      stopped = true;
    });
    // Who holds the lease while node-a's tool call still runs: watched for many lease times
    // (and many looks) after the stop began, then the tool call returns.
    const stopBegan = performance.now();
    const owners: Array<string | undefined> = [];
    while (calls[0]!.endedAt === undefined) {
      const holder = await observer.locks.holder(`session:${key}`);
      if (calls[0]!.endedAt === undefined) owners.push(holder?.owner);
      if (owners.length >= 10 && performance.now() - stopBegan >= TOOL_LEASES * LEASE_TTL_MS)
        toolDone.open();
      await sleep(20);
    }
    const toolEnded = calls[0]!.endedAt;
    await stopping;
    await cut;
    expect(new Set(owners)).toEqual(new Set(["node-a"]));

    // Afterwards node-b takes the session over and runs its message to the end.
    await waitUntil("node-b to run the message", async () => {
      const pending = await observer.queue.pending({ sessionKey: key, limit: 1 });
      return pending.length === 0 && calls.length === 2 && calls[1]!.endedAt !== undefined;
    });
    expect(stopped).toBe(true);
    expect(calls.map((c) => c.node)).toEqual(["node-a", "node-b"]);
    // Never side by side: node-b's call began after node-a's had ended.
    expect(calls[1]!.startedAt).toBeGreaterThanOrEqual(toolEnded);
    const history = await b.runtime.session(key).history();
    const last = history.at(-1)?.entry as { message?: { role: string; content: unknown } };
    expect(last.message).toMatchObject({
      role: "assistant",
      content: [{ type: "text", text: "done" }],
    });
  }, 20_000);
});
