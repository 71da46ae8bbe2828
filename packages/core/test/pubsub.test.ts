import diagnosticsChannel from "node:diagnostics_channel";
import { getEventListeners } from "node:events";
import { describe, expect, it, vi } from "vitest";
import { InvalidArgumentError, LocalPubSub, type PubSub } from "../src/index.js";

describe("LocalPubSub", () => {
  it("delivers a message to the subscribers of its topic only, with the topic as second argument", async () => {
    const pubsub = new LocalPubSub();
    const lobby = vi.fn();
    const room = vi.fn();
    pubsub.subscribe("lobby", lobby);
    pubsub.subscribe("room:1", room);

    await pubsub.publish("lobby", { text: "hi lobby" });
    expect(lobby).toHaveBeenCalledExactlyOnceWith({ text: "hi lobby" }, "lobby");
    expect(room).not.toHaveBeenCalled();

    await pubsub.publish("room:2", "nobody listens");
    expect(lobby).toHaveBeenCalledTimes(1);
    expect(room).not.toHaveBeenCalled();
    await pubsub.close();
  });

  it("delivers synchronously, in subscription order and publish order, before publish resolves", async () => {
    const pubsub = new LocalPubSub();
    const log: string[] = [];
    for (const name of ["first", "second", "third"]) {
      pubsub.subscribe<number>("topic", (n) => log.push(`${name} got ${n}`));
    }
    const published = pubsub.publish("topic", 1);
    expect(log).toEqual(["first got 1", "second got 1", "third got 1"]);
    await published;
    await pubsub.publish("topic", 2);
    expect(log.slice(3)).toEqual(["first got 2", "second got 2", "third got 2"]);
    await pubsub.close();
  });

  it("stops delivering to a handler once it unsubscribes; unsubscribing twice is harmless", async () => {
    const pubsub = new LocalPubSub();
    const handler = vi.fn();
    const unsubscribe = pubsub.subscribe("topic", handler);
    expect(pubsub.subscriberCount("topic")).toBe(1);
    await pubsub.publish("topic", "before");
    unsubscribe();
    unsubscribe();
    expect(pubsub.subscriberCount("topic")).toBe(0);
    expect(pubsub.topics()).toEqual([]);
    await pubsub.publish("topic", "after");
    expect(handler).toHaveBeenCalledExactlyOnceWith("before", "topic");
    await pubsub.close();
  });

  it("treats each subscription separately, even of the same handler", async () => {
    const pubsub = new LocalPubSub();
    const handler = vi.fn();
    const first = pubsub.subscribe("topic", handler);
    pubsub.subscribe("topic", handler);
    await pubsub.publish("topic", "twice");
    expect(handler).toHaveBeenCalledTimes(2);
    first();
    await pubsub.publish("topic", "once");
    expect(handler).toHaveBeenCalledTimes(3);
    expect(handler).toHaveBeenLastCalledWith("once", "topic");
    await pubsub.close();
  });

  it("unsubscribes when the subscription's AbortSignal aborts", async () => {
    const pubsub = new LocalPubSub();
    const controller = new AbortController();
    const handler = vi.fn();
    pubsub.subscribe("topic", handler, { signal: controller.signal });
    await pubsub.publish("topic", "before");
    controller.abort();
    expect(pubsub.subscriberCount("topic")).toBe(0);
    await pubsub.publish("topic", "after");
    expect(handler).toHaveBeenCalledExactlyOnceWith("before", "topic");
    await pubsub.close();
  });

  it("never subscribes with an already-aborted signal", async () => {
    const pubsub = new LocalPubSub();
    const handler = vi.fn();
    const unsubscribe = pubsub.subscribe("topic", handler, { signal: AbortSignal.abort() });
    expect(pubsub.subscriberCount("topic")).toBe(0);
    await pubsub.publish("topic", "ignored");
    expect(handler).not.toHaveBeenCalled();
    expect(() => unsubscribe()).not.toThrow();
    await pubsub.close();
  });

  it("detaches from the AbortSignal when unsubscribed, so a long-lived signal does not leak listeners", async () => {
    const pubsub = new LocalPubSub();
    const controller = new AbortController();
    const offs = Array.from({ length: 5 }, () =>
      pubsub.subscribe("topic", () => {}, { signal: controller.signal }),
    );
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(5);
    for (const off of offs) off();
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    await pubsub.close();
  });

  it("keeps delivering to the other subscribers when one throws, and reports it on beamclaw:pubsub.handler-error", async () => {
    const pubsub = new LocalPubSub();
    const reports: unknown[] = [];
    const onReport = (message: unknown) => reports.push(message);
    diagnosticsChannel.subscribe("beamclaw:pubsub.handler-error", onReport);
    try {
      const failure = new Error("subscriber failed");
      const before = vi.fn();
      const after = vi.fn();
      pubsub.subscribe("topic", before);
      pubsub.subscribe("topic", () => {
        throw failure;
      });
      pubsub.subscribe("topic", after);

      await expect(pubsub.publish("topic", "hello")).resolves.toBeUndefined();
      expect(before).toHaveBeenCalledWith("hello", "topic");
      expect(after).toHaveBeenCalledWith("hello", "topic");
      expect(reports).toEqual([{ topic: "topic", error: failure }]);
    } finally {
      diagnosticsChannel.unsubscribe("beamclaw:pubsub.handler-error", onReport);
    }
    await pubsub.close();
  });

  it("never throws a subscriber's error into the publisher, even with nobody watching telemetry", async () => {
    const pubsub = new LocalPubSub();
    const after = vi.fn();
    pubsub.subscribe("topic", () => {
      throw new Error("subscriber failed");
    });
    pubsub.subscribe("topic", after);
    expect(() => pubsub.publishSync("topic", "hello")).not.toThrow();
    expect(after).toHaveBeenCalledTimes(1);
    await pubsub.close();
  });

  it("publishSync returns the number of subscribers reached; topics() lists topics with subscribers", async () => {
    const pubsub = new LocalPubSub();
    pubsub.subscribe("a", () => {});
    pubsub.subscribe("a", () => {});
    pubsub.subscribe("b", () => {});
    expect(pubsub.publishSync("a", "x")).toBe(2);
    expect(pubsub.publishSync("c", "x")).toBe(0);
    expect(pubsub.topics().sort()).toEqual(["a", "b"]);
    await pubsub.close();
  });

  it("close() drops every subscription", async () => {
    const pubsub: PubSub = new LocalPubSub();
    const handler = vi.fn();
    pubsub.subscribe("a", handler);
    pubsub.subscribe("b", handler);
    await pubsub.close();
    expect(pubsub.subscriberCount("a")).toBe(0);
    expect(pubsub.subscriberCount("b")).toBe(0);
    await pubsub.publish("a", "after close");
    expect(handler).not.toHaveBeenCalled();
  });

  it("close() lets go of the subscriptions' AbortSignals", async () => {
    const pubsub = new LocalPubSub();
    const controller = new AbortController();
    pubsub.subscribe("a", () => {}, { signal: controller.signal });
    pubsub.subscribe("b", () => {}, { signal: controller.signal });
    await pubsub.close();
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("refuses an empty topic or a handler that is not a function with InvalidArgumentError", async () => {
    const pubsub = new LocalPubSub();
    expect(() => pubsub.subscribe("", () => {})).toThrow(InvalidArgumentError);
    expect(() => pubsub.subscribe("topic", "nope" as unknown as () => void)).toThrow(
      InvalidArgumentError,
    );
    expect(pubsub.topics()).toEqual([]);
    await pubsub.close();
  });
});
