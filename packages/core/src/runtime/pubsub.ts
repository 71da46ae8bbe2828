import { EventEmitter } from "eventemitter3";
import { InvalidArgumentError } from "../errors.js";
import { emitTelemetry } from "../telemetry.js";
import { optionalObject, optionalSignal } from "./validate.js";

/** Receives one published message. */
export type PubSubHandler<T = unknown> = (message: T, topic: string) => void;

/** Options of {@link PubSub.subscribe}. */
export interface SubscribeOptions {
  /** Unsubscribes when this signal aborts (pass an actor's `signal` to tie it to its life). */
  signal?: AbortSignal;
}

/**
 * Topic-based publish/subscribe (Phoenix.PubSub). The in-process {@link LocalPubSub} is the
 * default; a cluster adapter (Redis) implements the same interface so that a message
 * published on one node reaches subscribers on every node.
 *
 * Subscribing is local and synchronous; publishing may cross the network, hence the promise.
 * Delivery to a subscriber never throws into the publisher: a throwing handler (or an async one
 * that rejects) is reported on the `beamclaw:pubsub.handler-error` telemetry channel and the
 * others still receive the message. A handler unsubscribed during a publish gets no more
 * messages, not even that one.
 */
export interface PubSub {
  /** Subscribes `handler` to `topic`; returns the unsubscribe function. */
  subscribe<T = unknown>(
    topic: string,
    handler: PubSubHandler<T>,
    options?: SubscribeOptions,
  ): () => void;
  /** Delivers `message` to every subscriber of `topic` (cluster-wide for cluster adapters). */
  publish(topic: string, message: unknown): Promise<void>;
  /** Number of local subscribers of `topic`. */
  subscriberCount(topic: string): number;
  /** Releases connections and drops every subscription. */
  close(): Promise<void>;
}

/**
 * In-process {@link PubSub} on eventemitter3: messages are delivered synchronously, in
 * subscription order, before `publish` resolves.
 *
 * @example
 * ```ts
 * const pubsub = new LocalPubSub();
 * const off = pubsub.subscribe<{ text: string }>("session:agent:main:main", (m) => console.log(m.text));
 * await pubsub.publish("session:agent:main:main", { text: "hi" });
 * off();
 * ```
 */
export class LocalPubSub implements PubSub {
  readonly #emitter = new EventEmitter();
  /** Live subscriptions' unsubscribe functions, so close() also detaches their signals. */
  readonly #subscriptions = new Set<() => void>();
  /**
   * Subscribers per topic. Publishing to a topic nobody follows (the common case: every
   * event of every session goes to `session:<key>`) checks this Map: a Map caches a string's
   * hash, while the emitter's object lookup with a freshly built, never-stored topic string
   * looks the string up in V8's string table on every call.
   */
  readonly #counts = new Map<string, number>();

  subscribe<T = unknown>(
    topic: string,
    handler: PubSubHandler<T>,
    options: SubscribeOptions = {},
  ): () => void {
    if (typeof topic !== "string" || topic.length === 0) {
      throw new InvalidArgumentError("a topic must be a non-empty string");
    }
    if (typeof handler !== "function") throw new InvalidArgumentError("handler must be a function");
    // Checked before anything is subscribed: a refused call leaves no subscription behind.
    const { signal } = optionalObject<SubscribeOptions>(options, "subscribe options");
    optionalSignal(signal, "subscribe options.signal");
    if (signal?.aborted) return () => {};
    let subscribed = true;
    const listener = (message: unknown) => {
      // The emitter delivers to a snapshot of the listeners: one unsubscribed by an earlier
      // handler of the same publish is skipped here.
      if (!subscribed) return;
      try {
        const result: unknown = handler(message as T, topic);
        if (isThenable(result)) result.then(undefined, (error) => reportHandlerError(topic, error));
      } catch (error) {
        reportHandlerError(topic, error);
      }
    };
    this.#emitter.on(topic, listener);
    this.#counts.set(topic, (this.#counts.get(topic) ?? 0) + 1);
    let onAbort: (() => void) | undefined;
    const unsubscribe = () => {
      this.#subscriptions.delete(unsubscribe);
      this.#emitter.off(topic, listener);
      if (subscribed) {
        subscribed = false;
        const left = (this.#counts.get(topic) ?? 1) - 1;
        if (left > 0) this.#counts.set(topic, left);
        else this.#counts.delete(topic);
      }
      if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
      onAbort = undefined;
    };
    if (signal !== undefined) {
      onAbort = unsubscribe;
      signal.addEventListener("abort", onAbort, { once: true });
    }
    this.#subscriptions.add(unsubscribe);
    return unsubscribe;
  }

  /** Delivers synchronously; the returned promise is already settled when it is returned. */
  publish(topic: string, message: unknown): Promise<void> {
    this.publishSync(topic, message);
    return Promise.resolve();
  }

  /** Delivers to local subscribers now. Returns the number of subscribers reached. */
  publishSync(topic: string, message: unknown): number {
    const count = this.#counts.get(topic);
    if (count === undefined) return 0;
    this.#emitter.emit(topic, message);
    return count;
  }

  subscriberCount(topic: string): number {
    return this.#counts.get(topic) ?? 0;
  }

  /** Topics with at least one subscriber. */
  topics(): string[] {
    return this.#emitter.eventNames().map(String);
  }

  async close(): Promise<void> {
    for (const unsubscribe of Array.from(this.#subscriptions)) unsubscribe();
    this.#emitter.removeAllListeners();
    this.#counts.clear();
  }
}

function reportHandlerError(topic: string, error: unknown): void {
  emitTelemetry("beamclaw:pubsub.handler-error", () => ({ topic, error }));
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}
