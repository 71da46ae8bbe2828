/**
 * A call aborted while its consumer handles an `attempt-start` event makes no provider call:
 * "calls no provider when the signal is already aborted" holds at every attempt, not only
 * the first.
 */
import { describe, expect, it } from "vitest";
import {
  AbortedError,
  type ChainStreamEvent,
  createProviderChain,
  type ModelProvider,
  type ModelRequest,
  type ModelStreamEvent,
  subscribeTelemetry,
} from "../src/index.js";
import { DRAIN_EVENTS, type DrainableStream } from "../src/providers/chain.js";
import { collected, failureOf } from "./support.js";

const request: Omit<ModelRequest, "model"> = {
  messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
};

/** A provider that counts its calls; each answers at once. */
function countingProvider() {
  let calls = 0;
  const provider: ModelProvider = {
    specificationVersion: "v1",
    id: "a",
    stream(req): AsyncIterable<ModelStreamEvent> {
      calls++;
      return (async function* () {
        yield { type: "response-start" as const, model: req.model };
        yield { type: "text-delta" as const, text: "answer" };
        yield { type: "finish" as const, reason: "stop" as const };
      })();
    },
  };
  return { provider, calls: () => calls };
}

describe("ProviderChain: aborted while the consumer handles attempt-start", () => {
  it("with next(): throws AbortedError and never calls the provider", async () => {
    const { provider, calls } = countingProvider();
    const chain = createProviderChain({ providers: [provider], models: ["a/m"] });
    const calledEvents: unknown[] = [];
    const off = subscribeTelemetry("beamclaw:provider.call", (event) => calledEvents.push(event));
    try {
      const controller = new AbortController();
      const iterator = chain.stream(request, { signal: controller.signal })[Symbol.asyncIterator]();
      const first = await iterator.next();
      expect(first.value?.type).toBe("attempt-start");
      controller.abort();
      const error = await failureOf(() => iterator.next());
      expect(AbortedError.isInstance(error)).toBe(true);
      expect(calls()).toBe(0);
      // No provider call was made, so none is reported.
      expect(calledEvents).toEqual([]);
    } finally {
      off();
    }
  });

  it("in push mode: the sink aborts at attempt-start; the drain rejects and the provider is not called", async () => {
    const { provider, calls } = countingProvider();
    const chain = createProviderChain({ providers: [provider], models: ["a/m"] });
    const controller = new AbortController();
    const stream = chain.stream(request, {
      signal: controller.signal,
    }) as unknown as DrainableStream<ChainStreamEvent>;
    const { events, error } = await collected<ChainStreamEvent>((take) =>
      stream[DRAIN_EVENTS]((event) => {
        take(event);
        if (event.type === "attempt-start") controller.abort();
      }),
    );
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(events.map((event) => event.type)).toEqual(["attempt-start"]);
    expect(calls()).toBe(0);
  });
});
