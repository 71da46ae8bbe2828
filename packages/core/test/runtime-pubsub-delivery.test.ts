import { describe, expect, it } from "vitest";
import { LocalPubSub, subscribeTelemetry } from "../src/index.js";
import { tick } from "./support.js";

describe("LocalPubSub delivery and unsubscribing", () => {
  it("does not deliver to a handler unsubscribed by an earlier handler of the same publish", async () => {
    const pubsub = new LocalPubSub();
    const got: string[] = [];
    let offB: () => void = () => {};
    pubsub.subscribe("topic", (message: string) => {
      got.push(`a:${message}`);
      offB();
    });
    offB = pubsub.subscribe("topic", (message: string) => got.push(`b:${message}`));
    await pubsub.publish("topic", "1");
    await pubsub.publish("topic", "2");
    expect(got).toEqual(["a:1", "a:2"]);
    await pubsub.close();
  });

  it("does not deliver to a handler whose signal aborted during the same publish", async () => {
    const pubsub = new LocalPubSub();
    const controller = new AbortController();
    const got: string[] = [];
    pubsub.subscribe("topic", () => controller.abort());
    pubsub.subscribe("topic", (message: string) => got.push(message), {
      signal: controller.signal,
    });
    expect(pubsub.publishSync("topic", "late")).toBe(2);
    expect(got).toEqual([]);
    expect(pubsub.subscriberCount("topic")).toBe(1);
    await pubsub.close();
  });

  it("reports an async handler's rejection on beamclaw:pubsub.handler-error instead of leaving it unhandled", async () => {
    const pubsub = new LocalPubSub();
    const reports: unknown[] = [];
    const off = subscribeTelemetry("beamclaw:pubsub.handler-error", (event) => reports.push(event));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const failure = new Error("async subscriber failed");
      const after: unknown[] = [];
      pubsub.subscribe("topic", async () => {
        await null;
        throw failure;
      });
      pubsub.subscribe("topic", (message) => after.push(message));
      await pubsub.publish("topic", "hello");
      // The rejection settles on a later microtask; unhandled rejections are reported after a
      // macrotask turn.
      await tick();
      await tick();
      expect(after).toEqual(["hello"]);
      expect(reports).toEqual([{ topic: "topic", error: failure }]);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      off();
    }
    await pubsub.close();
  });
});
