/**
 * The cluster-wide `PubSub` over Redis, Phoenix.PubSub style: subscribing is local (one
 * Redis channel per topic, subscribed on the node's single subscriber connection while the
 * topic has local subscribers), publishing delivers to the local subscribers at once and
 * `PUBLISH`es a JSON copy that every other node hands to its own.
 */
import {
  type ClusterPubSub,
  InvalidArgumentError,
  LocalPubSub,
  type PubSubHandler,
  type SubscribeOptions,
} from "@beamclaw/core";

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

export class RedisClusterPubSub implements ClusterPubSub {
  readonly #local = new LocalPubSub();
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
    const { signal } = options;
    if (signal?.aborted) {
      // Validate as LocalPubSub does, then subscribe to nothing.
      this.#local.subscribe(topic, handler)();
      return () => {};
    }
    const off = this.#local.subscribe(topic, handler);
    if (this.#local.subscriberCount(topic) === 1) {
      this.#link.listen(topic, (payload) => this.#receive(topic, payload));
    }
    let active = true;
    let onAbort: (() => void) | undefined;
    const unsubscribe = () => {
      if (!active) return;
      active = false;
      off();
      if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
      if (this.#local.subscriberCount(topic) === 0) this.#link.unlisten(topic);
    };
    if (signal !== undefined) {
      onAbort = unsubscribe;
      signal.addEventListener("abort", onAbort, { once: true });
    }
    return unsubscribe;
  }

  /**
   * Delivers to this node's subscribers now, then to every other node's. Rejects (after the
   * local delivery) with `InvalidArgumentError` when `message` is not JSON, or with a
   * `StoreError` (`STORE_UNAVAILABLE`) when Redis cannot be reached.
   */
  async publish(topic: string, message: unknown): Promise<void> {
    if (typeof topic !== "string" || topic.length === 0) {
      throw new InvalidArgumentError("a topic must be a non-empty string");
    }
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
    if (this.#local.subscriberCount(topic) === 0 || !this.#link.joined) return Promise.resolve();
    return this.#link.whenListening(topic);
  }

  /** Drops every local subscription (and the Redis channels they needed). */
  async close(): Promise<void> {
    for (const topic of this.#local.topics()) this.#link.unlisten(topic);
    await this.#local.close();
  }

  /** Re-listens on every topic with local subscribers (after the backplane joined). @internal */
  relisten(): void {
    for (const topic of this.#local.topics()) {
      this.#link.listen(topic, (payload) => this.#receive(topic, payload));
    }
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
