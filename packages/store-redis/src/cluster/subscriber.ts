/**
 * The backplane's one subscriber connection: every channel this node listens on (its own
 * message channel, membership notices, the topics it has local subscribers for) goes
 * through it. The wanted channels are kept here and subscribed again on every reconnect,
 * so a Redis restart or a dropped connection heals by itself.
 */
import type { Redis } from "ioredis";

/** The most channels one `SUBSCRIBE` names. */
const SUBSCRIBE_BATCH = 1_000;

export type ChannelHandler = (message: string, channel: string) => void;

export class Subscriber {
  readonly #client: Redis;
  readonly #handlers = new Map<string, ChannelHandler>();
  /** Channels whose SUBSCRIBE Redis confirmed on the current connection. */
  readonly #confirmed = new Set<string>();
  readonly #waiters = new Map<string, Array<() => void>>();
  #closed = false;
  readonly #onMessage = (channel: string, message: string) => {
    this.#handlers.get(channel)?.(message, channel);
  };
  readonly #onReady = () => {
    void this.#subscribe([...this.#handlers.keys()]);
  };
  readonly #onClose = () => {
    this.#confirmed.clear();
  };
  readonly #onError = () => {
    // ioredis reconnects by itself; the channels are subscribed again on "ready".
  };

  constructor(client: Redis) {
    this.#client = client;
    client.on("message", this.#onMessage);
    client.on("ready", this.#onReady);
    client.on("close", this.#onClose);
    client.on("error", this.#onError);
  }

  get client(): Redis {
    return this.#client;
  }

  /** Listens on `channel` (one handler per channel). */
  add(channel: string, handler: ChannelHandler): void {
    const known = this.#handlers.has(channel);
    this.#handlers.set(channel, handler);
    if (!known) void this.#subscribe([channel]);
  }

  remove(channel: string): void {
    if (!this.#handlers.delete(channel)) return;
    this.#confirmed.delete(channel);
    if (this.#client.status === "ready" && !this.#closed) {
      this.#client.unsubscribe(channel).catch(() => undefined);
    }
  }

  /** Resolves once Redis confirmed the subscription to `channel` (at once if it did). */
  whenSubscribed(channel: string): Promise<void> {
    if (this.#confirmed.has(channel) || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.#waiters.get(channel);
      if (list === undefined) this.#waiters.set(channel, [resolve]);
      else list.push(resolve);
    });
  }

  async #subscribe(channels: string[]): Promise<void> {
    if (channels.length === 0 || this.#closed || this.#client.status !== "ready") return;
    try {
      // In batches: spread into one call, the channels of a node following very many topics
      // (after a reconnect, all of them at once) would overflow the call stack.
      const sent: Promise<unknown>[] = [];
      for (let i = 0; i < channels.length; i += SUBSCRIBE_BATCH) {
        sent.push(this.#client.subscribe(...channels.slice(i, i + SUBSCRIBE_BATCH)));
      }
      await Promise.all(sent);
    } catch {
      // Disconnected meanwhile: "ready" subscribes everything again.
      return;
    }
    for (const channel of channels) {
      if (!this.#handlers.has(channel)) continue;
      this.#confirmed.add(channel);
      const waiters = this.#waiters.get(channel);
      this.#waiters.delete(channel);
      for (const wake of waiters ?? []) wake();
    }
  }

  /** Stops listening and releases every waiter; the caller closes the client. */
  close(): void {
    this.#closed = true;
    this.#client.off("message", this.#onMessage);
    this.#client.off("ready", this.#onReady);
    this.#client.off("close", this.#onClose);
    this.#handlers.clear();
    this.#confirmed.clear();
    for (const waiters of this.#waiters.values()) for (const wake of waiters) wake();
    this.#waiters.clear();
  }

  /** Detaches the error listener (after the client is closed). */
  detach(): void {
    this.#client.off("error", this.#onError);
  }
}
