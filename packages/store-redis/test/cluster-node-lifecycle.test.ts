/**
 * `ClusterNode`'s own lifecycle against the real Redis: a `stop()` while `start()` is still
 * under way (joining the cluster, or starting the runtime) leaves the node stopped for good.
 * `start()` rejects with `CLUSTER_NOT_RUNNING` instead of carrying on to `running` and
 * arming its lease-renewal and sweep timers after `stop()` has returned (timers that would
 * then hold the process forever; the open-handle check of every test file sees them).
 */
import {
  type AgentDefinition,
  ClusterNode,
  isBeamClawError,
  type ModelSource,
  type Store,
} from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";

const AGENTS: AgentDefinition[] = [{ id: "main", model: "echo/test" }];
const models: ModelSource = {
  async *stream() {
    yield { type: "response-start", model: "echo/test" };
    yield { type: "text-delta", text: "ok" };
    yield { type: "finish", reason: "stop" };
  },
};

const prefixes: string[] = [];
const nodes: ClusterNode[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.stop();
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

/** A gate a test opens by hand. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/**
 * The store with its first `queue.pending` (the runtime's look for unfinished messages at
 * start) held until `release` is opened; `entered` opens when it is called.
 */
function holdingFirstPending(store: RedisStore) {
  const entered = gate();
  const release = gate();
  let first = true;
  const queue = new Proxy(store.queue, {
    get(target, property, receiver) {
      if (property === "pending") {
        return async (options?: { sessionKey?: string; limit?: number }) => {
          if (first) {
            first = false;
            entered.open();
            await release.opened;
          }
          return target.pending(options);
        };
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const held = new Proxy(store, {
    get(target, property, receiver) {
      if (property === "queue") return queue;
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as Store;
  return { store: held, entered, release };
}

async function makeNode(prefix: string, nodeId: string, wrap?: (store: RedisStore) => Store) {
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
    runtime: { store: wrap === undefined ? store : wrap(store), models, agents: AGENTS },
    leaseTtlMs: 600,
    sweepIntervalMs: 200,
  });
  nodes.push(node);
  return node;
}

function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "started",
    (error: unknown) => (isBeamClawError(error) ? error.code : String(error)),
  );
}

describe("a cluster node stopped while it starts", () => {
  it("stopped while it joins: start() rejects with CLUSTER_NOT_RUNNING and the node stays stopped", async () => {
    const prefix = uniquePrefix("lifecycle");
    prefixes.push(prefix);
    const node = await makeNode(prefix, "joining");
    const starting = codeOf(node.start());
    await node.stop();
    expect(await starting).toBe("CLUSTER_NOT_RUNNING");
    expect(node.state).toBe("stopped");
    expect(node.backplane.joined).toBe(false);
  });

  it("stopped while its runtime starts: start() rejects with CLUSTER_NOT_RUNNING, no timer is left, no member remains", async () => {
    const prefix = uniquePrefix("lifecycle");
    prefixes.push(prefix);
    const watcher = await makeNode(prefix, "watcher");
    await watcher.start();
    let held!: ReturnType<typeof holdingFirstPending>;
    const node = await makeNode(prefix, "starting", (store) => {
      held = holdingFirstPending(store);
      return held.store;
    });
    const starting = codeOf(node.start());
    await held.entered.opened; // joined; the runtime is starting
    const stopping = node.stop();
    held.release.open();
    expect(await starting).toBe("CLUSTER_NOT_RUNNING");
    await stopping;
    expect(node.state).toBe("stopped");
    expect(node.backplane.joined).toBe(false);
    await watcher.backplane.heartbeat();
    expect(watcher.members().map((m) => m.nodeId)).toEqual(["watcher"]);
  });
});
