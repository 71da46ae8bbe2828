/**
 * A run sent through node B for a session that node A owns, two nodes on the real Redis,
 * when none of the run's events reach B (its pub/sub delivery of the session's topic is
 * lost): B's sweep ends the handle with a result rebuilt from the transcript once the
 * message is acknowledged. The owner's first attempt of the run could not save its answer
 * (the store failed once) and was cancelled by a discard marker before the run ran again:
 * the rebuilt result has the live attempt's messages, steps and usage only.
 */
import {
  type AgentDefinition,
  ClusterNode,
  defineTool,
  type ModelMessage,
  type ModelSource,
  type PubSubHandler,
  StoreError,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test", tools: ["note"] }];

/** Attempts of the model's first call for a user message, across runs (numbers the calls). */
let attempts = 0;

/**
 * Calls the tool `note` with the attempt's number for a user's message, then answers
 * `done <n>` once it has returned. Each call reports usage: 10/1 tokens for the tool call,
 * 20/2 for the answer.
 */
const models: ModelSource = {
  async *stream(request) {
    yield { type: "response-start", model: "echo/test" };
    if (request.messages.at(-1)?.role === "user") {
      attempts++;
      yield {
        type: "tool-call",
        toolCallId: `c${attempts}`,
        toolName: "note",
        input: { attempts },
      };
      yield { type: "usage", usage: { inputTokens: 10, outputTokens: 1 } };
      yield { type: "finish", reason: "tool-calls" };
      return;
    }
    yield { type: "text-delta", text: `done ${attempts}` };
    yield { type: "usage", usage: { inputTokens: 20, outputTokens: 2 } };
    yield { type: "finish", reason: "stop" };
  },
};

const note = defineTool({
  name: "note",
  description: "Notes the attempt",
  parameters: z.object({ attempts: z.number() }),
  execute: async ({ attempts: n }) => `noted ${n}`,
});

const prefixes: string[] = [];
const nodes: ClusterNode[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.stop();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

/** Whether `entries` hold an assistant message with text (a run's answer). */
function isAnswer(entries: ReadonlyArray<Record<string, unknown>>): boolean {
  return entries.some((entry) => {
    const message = entry.message as ModelMessage | undefined;
    return message?.role === "assistant" && message.content.some((p) => p.type === "text");
  });
}

/**
 * A Redis store whose session writes (fenced, as a cluster node makes them) refuse the next
 * `failAnswers` appends of a run's answer, writing nothing.
 */
async function openStore(prefix: string): Promise<RedisStore & { failAnswers: number }> {
  const store = Object.assign(createRedisStore({ url: REDIS_URL, prefix }), { failAnswers: 0 });
  stores.push(store);
  await store.open();
  const fenced = store.fenced.bind(store);
  store.fenced = (fence) => {
    const writes = fenced(fence);
    const append = writes.transcripts.append;
    writes.transcripts.append = async (sessionKey, entries) => {
      if (store.failAnswers > 0 && isAnswer(entries)) {
        store.failAnswers--;
        throw new StoreError("STORE_UNAVAILABLE", "Redis is briefly unavailable");
      }
      return append(sessionKey, entries);
    };
    return writes;
  };
  return store;
}

async function startNode(prefix: string, nodeId: string, store: RedisStore): Promise<ClusterNode> {
  const node = new ClusterNode({
    backplane: createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId,
      heartbeatIntervalMs: 100,
      downAfterMs: 1_500,
    }),
    runtime: { store, models, agents: AGENTS, tools: [note] },
    leaseTtlMs: 1_000,
    sweepIntervalMs: 100,
    requestTimeoutMs: 1_000,
  });
  nodes.push(node);
  await node.start();
  return node;
}

describe("a followed run whose events never reach the sending node", () => {
  it("ends with a result rebuilt from the live attempt only, its usage summed", async () => {
    attempts = 0;
    const prefix = uniquePrefix("rebuilt");
    prefixes.push(prefix);
    const storeA = await openStore(prefix);
    const a = await startNode(prefix, "node-a", storeA);
    const b = await startNode(prefix, "node-b", await openStore(prefix));
    await waitUntil("the nodes to see each other", () =>
      [a, b].every((n) => n.members().length === 2),
    );
    const key = "agent:main:rebuilt";
    const first = await a.runtime.session(key).send("hello");
    expect(await first.result).toMatchObject({ status: "completed", text: "done 1" });
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

    storeA.failAnswers = 1;
    const run = await b.runtime.session(key).send("again");
    expect(run.disposition).toBe("started");
    const result = await run.result;
    expect(storeA.failAnswers).toBe(0);
    expect(dropped).toBeGreaterThan(0);
    expect(b.runtime.activeSessions()).toEqual([]);

    // The owner's transcript: the first attempt (tool call 2) cancelled, the second saved.
    const history = await storeA.transcripts.read(key);
    const ofRun = history.filter((r) => r.entry.runId === run.runId);
    expect(ofRun.some((r) => r.entry.discarded === true)).toBe(true);

    expect(result.status).toBe("completed");
    expect(result.runId).toBe(run.runId);
    expect(result.text).toBe("done 3");
    expect(result.steps).toBe(2);
    expect(result.messages).toEqual([
      {
        role: "assistant",
        content: [
          { type: "tool-call", toolCallId: "c3", toolName: "note", input: { attempts: 3 } },
        ],
      },
      expect.objectContaining({ role: "tool" }),
      { role: "assistant", content: [{ type: "text", text: "done 3" }] },
    ]);
    expect(JSON.stringify(result.messages)).not.toContain("c2");
    expect(result.usage).toEqual({ inputTokens: 30, outputTokens: 3 });
  }, 20_000);
});
