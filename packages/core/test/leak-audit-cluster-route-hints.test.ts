/**
 * Leak audit: a cluster node remembers, per session, which other node it routed the
 * session's messages to. A node that forwards messages for months (every session it ever
 * routed elsewhere) must not keep one such route per session for ever.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ClusterNode } from "../src/cluster/node.js";
import type {
  ClusterBackplane,
  ClusterMember,
  ClusterPubSub,
  JoinOptions,
  MembershipEvent,
  NodeMessage,
  NodeMessageHandler,
} from "../src/cluster/types.js";
import { LocalPubSub } from "../src/runtime/pubsub.js";
import type { ModelSource } from "../src/sessions/agent-loop.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { Store } from "../src/store/types.js";

/** Nodes of one in-process cluster: one pub/sub, messages handed over on the next turn. */
class Hub {
  readonly nodes = new Map<string, HubBackplane>();
  readonly pubsub = new LocalPubSub();
}

class HubBackplane implements ClusterBackplane {
  readonly heartbeatIntervalMs = 1_000;
  readonly downAfterMs = 5_000;
  readonly pubsub: ClusterPubSub;
  joined = false;
  readonly #handlers = new Set<NodeMessageHandler>();
  readonly #membership = new Set<(event: MembershipEvent) => void>();

  constructor(
    readonly hub: Hub,
    readonly nodeId: string,
    /** The sessions it reports: placement picks the smallest. */
    readonly load: number,
  ) {
    const shared = hub.pubsub;
    this.pubsub = {
      subscribe: (topic, handler, options) => shared.subscribe(topic, handler, options),
      publish: (topic, message) => shared.publish(topic, message),
      subscriberCount: (topic) => shared.subscriberCount(topic),
      close: async () => undefined,
      whenSubscribed: async () => undefined,
      subscribeLocal: (topic, handler) => {
        const off = shared.subscribe(topic, handler);
        return { widen: () => undefined, unsubscribe: off };
      },
    };
  }

  async join(_options: JoinOptions): Promise<void> {
    this.joined = true;
    this.hub.nodes.set(this.nodeId, this);
  }

  async heartbeat(): Promise<void> {}

  async leave(): Promise<void> {
    this.joined = false;
    this.hub.nodes.delete(this.nodeId);
  }

  members(): ClusterMember[] {
    return [...this.hub.nodes.values()].map((node) => ({
      nodeId: node.nodeId,
      meta: {},
      sessions: node.load,
      draining: false,
      joinedAt: 0,
      heartbeatAt: Date.now(),
    }));
  }

  onMembership(handler: (event: MembershipEvent) => void): () => void {
    this.#membership.add(handler);
    return () => this.#membership.delete(handler);
  }

  async send(nodeId: string, message: NodeMessage): Promise<boolean> {
    const to = this.hub.nodes.get(nodeId);
    if (to === undefined) return false;
    setImmediate(() => {
      for (const handler of to.#handlers) handler(message, this.nodeId);
    });
    return true;
  }

  onMessage(handler: NodeMessageHandler): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }
}

/** Answers every call with "ok". */
const okSource: ModelSource = {
  async *stream() {
    yield { type: "text-delta", text: "ok" };
  },
};

/** `store` seen by one node: shared and lockable, with its lease-holder look-ups counted. */
function nodeStore(store: MemoryStore, counts: { holder: number }): Store {
  const locks = new Proxy(store.locks, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "holder") {
        return (...args: unknown[]) => {
          counts.holder++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return value.bind(target);
    },
  });
  const capabilities = { ...store.capabilities, multiProcess: true, distributedLocks: true };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "capabilities") return capabilities;
      if (prop === "locks") return locks;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as Store;
}

describe("ClusterNode: routes to other nodes' sessions over a long-running process", () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("remembers the owners of at most maxRouteHints sessions, least recently routed forgotten first", async () => {
    const hub = new Hub();
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const runtime = { models: okSource, agents: [{ id: "main", model: "x/y" }] };
    const ownerCounts = { holder: 0 };
    const owner = new ClusterNode({
      backplane: new HubBackplane(hub, "owner", 0),
      runtime: { ...runtime, store: nodeStore(store, ownerCounts) },
    });
    const routerCounts = { holder: 0 };
    // Busy by its heartbeat: it places every new session on the owner.
    const router = new ClusterNode({
      backplane: new HubBackplane(hub, "router", 1_000_000),
      runtime: { ...runtime, store: nodeStore(store, routerCounts) },
      maxRouteHints: 3,
    });
    await owner.start();
    cleanups.push(() => owner.stop());
    await router.start();
    cleanups.push(() => router.stop());

    const send = async (key: string) => {
      const run = await router.runtime.session(key).send("hi");
      expect((await run.result).text).toBe("ok");
    };
    for (let i = 0; i < 10; i++) await send(`agent:main:s${i}`);
    expect(owner.runtime.activeSessions()).toHaveLength(10);
    expect(router.runtime.activeSessions()).toHaveLength(0);

    // A recently routed session is still routed straight to its owner...
    routerCounts.holder = 0;
    await send("agent:main:s9");
    expect(routerCounts.holder).toBe(0);
    // ...while the owner of one routed long ago was forgotten: the store is asked again.
    routerCounts.holder = 0;
    await send("agent:main:s0");
    expect(routerCounts.holder).toBeGreaterThan(0);
  });

  /** A node of a cluster of its own, never started: for its options' checks. */
  const node = (options: Record<string, number>) =>
    new ClusterNode({
      backplane: new HubBackplane(new Hub(), "n", 0),
      runtime: {
        models: okSource,
        agents: [{ id: "main", model: "x/y" }],
        store: nodeStore(new MemoryStore(), { holder: 0 }),
      },
      ...options,
    });

  it("refuses a maxRouteHints that is not a whole number >= 1", () => {
    expect(() => node({ maxRouteHints: 0 })).toThrow(/maxRouteHints/);
  });

  it("refuses durations longer than a timer holds (Node would fire them at once)", () => {
    for (const name of ["leaseTtlMs", "requestTimeoutMs", "sweepIntervalMs", "drainTimeoutMs"]) {
      expect(() => node({ [name]: 2 ** 31 }), name).toThrow(
        new RegExp(`${name} must be a number of ms from \\d+ to 2147483647`),
      );
    }
    expect(node({ sweepIntervalMs: 2 ** 31 - 1 }).sweepIntervalMs).toBe(2 ** 31 - 1);
  });
});
