/**
 * The cluster-wide `PubSub` over Redis, Phoenix.PubSub style: subscribing is local (one
 * Redis channel per topic, subscribed on the node's single subscriber connection while the
 * topic has cluster-wide subscribers here), publishing delivers to the local subscribers at
 * once and `PUBLISH`es a JSON copy that every other node hands to its own.
 */
import {
  type ClusterPubSub,
  InvalidArgumentError,
  LocalPubSub,
  type LocalSubscription,
  type PubSubHandler,
  type SubscribeOptions,
} from "@beamclaw/core";

/** How long a topic's channel stays subscribed after its last cluster-wide subscriber left. */
const LINGER_MS = 2_000;

/** What the pub/sub needs from the backplane. @internal */
export interface PubSubLink {
  readonly nodeId: string;
  /** True while the backplane is joined (remote delivery on). */
  readonly joined: boolean;
  listen(topic: string, deliver: (payload: string) => void): void;
  unlisten(topic: string): void;
  whenListening(topic: string): Promise<void>;
  publish(topic: string, payload: string): Promise<unknown>;
}

/** A message on a topic channel: the publishing node and the message. */
interface Envelope {
  o: string;
  m: unknown;
}

/**
 * The Redis {@link ClusterPubSub}: get it as `backplane.pubsub` (it delivers locally before
 * the backplane joins, cluster-wide after).
 *
 * @example
 * ```ts
 * const backplane = createRedisBackplane({ url, prefix: "myapp:" });
 * await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
 * backplane.pubsub.subscribe("room:42", (message) => console.log(message));
 * await backplane.pubsub.whenSubscribed("room:42");
 * await backplane.pubsub.publish("room:42", { text: "hi" }); // here and on every other node
 * ```
 */
export class RedisClusterPubSub implements ClusterPubSub {
  readonly #local = new LocalPubSub();
  /** Cluster-wide subscribers per topic: the topic's Redis channel is listened to while > 0. */
  readonly #wide = new Map<string, number>();
  /** Topics without cluster-wide subscribers whose Redis channel is kept a while longer. */
  readonly #lingering = new Map<string, NodeJS.Timeout>();
  readonly #link: PubSubLink;

  /** @internal */
  constructor(link: PubSubLink) {
    this.#link = link;
  }

  subscribe<T = unknown>(
    topic: string,
    handler: PubSubHandler<T>,
    options: SubscribeOptions = {},
  ): () => void {
    requireTopic(topic);
    const { signal } = options;
    if (signal?.aborted) {
      // Validate as LocalPubSub does, then subscribe to nothing.
      this.#local.subscribe(topic, handler)();
      return () => {};
    }
    const subscription = this.subscribeLocal(topic, handler);
    subscription.widen();
    if (signal === undefined) return subscription.unsubscribe;
    const onAbort = () => subscription.unsubscribe();
    signal.addEventListener("abort", onAbort, { once: true });
    return () => {
      signal.removeEventListener("abort", onAbort);
      subscription.unsubscribe();
    };
  }

  subscribeLocal<T = unknown>(topic: string, handler: PubSubHandler<T>): LocalSubscription {
    requireTopic(topic);
    const off = this.#local.subscribe(topic, handler);
    let wide = false;
    let active = true;
    return {
      widen: () => {
        if (!active || wide) return;
        wide = true;
        const count = (this.#wide.get(topic) ?? 0) + 1;
        this.#wide.set(topic, count);
        if (count > 1) return;
        const lingering = this.#lingering.get(topic);
        if (lingering !== undefined) {
          // Still listened to: no new SUBSCRIBE, and no wait for one.
          clearTimeout(lingering);
          this.#lingering.delete(topic);
          return;
        }
        this.#link.listen(topic, (payload) => this.#receive(topic, payload));
      },
      unsubscribe: () => {
        if (!active) return;
        active = false;
        off();
        if (!wide) return;
        const count = (this.#wide.get(topic) ?? 1) - 1;
        if (count > 0) {
          this.#wide.set(topic, count);
          return;
        }
        this.#wide.delete(topic);
        // A topic followed once is often followed again soon (the next turn of a session):
        // keep its channel a moment instead of UNSUBSCRIBE + SUBSCRIBE for every turn.
        const timer = setTimeout(() => {
          this.#lingering.delete(topic);
          this.#link.unlisten(topic);
        }, LINGER_MS);
        timer.unref();
        this.#lingering.set(topic, timer);
      },
    };
  }

  /**
   * Delivers to this node's subscribers now, then to every other node's. Rejects (after the
   * local delivery) with `InvalidArgumentError` when `message` is not JSON, or with a
   * `StoreError` (`STORE_UNAVAILABLE`) when Redis cannot be reached.
   */
  async publish(topic: string, message: unknown): Promise<void> {
    requireTopic(topic);
    this.#local.publishSync(topic, message);
    if (!this.#link.joined) return;
    let payload: string;
    try {
      payload = JSON.stringify({ o: this.#link.nodeId, m: message } satisfies Envelope);
    } catch (error) {
      throw new InvalidArgumentError(
        `a cluster pub/sub message must be JSON: ${(error as Error).message}`,
      );
    }
    await this.#link.publish(topic, payload);
  }

  subscriberCount(topic: string): number {
    return this.#local.subscriberCount(topic);
  }

  whenSubscribed(topic: string): Promise<void> {
    if (!this.#wide.has(topic) || !this.#link.joined) return Promise.resolve();
    return this.#link.whenListening(topic);
  }

  /** Drops every local subscription (and the Redis channels they needed). */
  async close(): Promise<void> {
    for (const topic of this.#wide.keys()) this.#link.unlisten(topic);
    this.#wide.clear();
    this.#dropLingering();
    await this.#local.close();
  }

  /** Re-listens on every topic with local subscribers (after the backplane joined). @internal */
  relisten(): void {
    for (const topic of this.#wide.keys()) {
      this.#link.listen(topic, (payload) => this.#receive(topic, payload));
    }
  }

  /** Lets go of the lingering channels at once (the backplane is leaving). @internal */
  dropLingering(): void {
    this.#dropLingering();
  }

  #dropLingering(): void {
    for (const [topic, timer] of this.#lingering) {
      clearTimeout(timer);
      this.#link.unlisten(topic);
    }
    this.#lingering.clear();
  }

  #receive(topic: string, payload: string): void {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(payload) as Envelope;
    } catch {
      return;
    }
    if (typeof envelope !== "object" || envelope === null || envelope.o === this.#link.nodeId)
      return;
    this.#local.publishSync(topic, envelope.m);
  }
}

/**
 * A non-empty, well-formed topic. A topic with a lone surrogate would name its Redis channel
 * with U+FFFD instead, so the other nodes' messages on it would never find its subscribers.
 */
function requireTopic(topic: unknown): asserts topic is string {
  if (typeof topic !== "string" || topic.length === 0) {
    throw new InvalidArgumentError("a topic must be a non-empty string");
  }
  if (!topic.isWellFormed()) {
    throw new InvalidArgumentError("a topic must be well-formed Unicode (it has a lone surrogate)");
  }
}
