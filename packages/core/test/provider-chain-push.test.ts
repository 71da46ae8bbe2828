/**
 * The chain's push-mode reader (`DRAIN_EVENTS`, what the agent loop uses): the same events,
 * failover, retries, errors and aborts as reading the stream with `for await`, since both are
 * the same state machine; and what only push mode has: a sink that throws.
 */
import { describe, expect, it } from "vitest";
import {
  AbortedError,
  AllProvidersFailedError,
  type ChainStreamEvent,
  createProviderChain,
  InvalidArgumentError,
  type ModelRequest,
  type ProviderChainOptions,
  ProviderError,
} from "../src/index.js";
import { DRAIN_EVENTS, type DrainableStream } from "../src/providers/chain.js";
import { createScriptedProvider, type ScriptEntry } from "../src/testing/index.js";
import { closingProvider, collected, failureOf, readAll, stuckProvider } from "./support.js";

const request: Omit<ModelRequest, "model"> = {
  messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
};

type Read = { events: ChainStreamEvent[]; error: unknown };

function pushable(stream: AsyncIterable<ChainStreamEvent>): DrainableStream<ChainStreamEvent> {
  expect(typeof (stream as Partial<DrainableStream<ChainStreamEvent>>)[DRAIN_EVENTS]).toBe(
    "function",
  );
  return stream as unknown as DrainableStream<ChainStreamEvent>;
}

const pull = readAll<ChainStreamEvent>;

/** The two ways to read a chain's stream, for the cases that must hold for both. */
const READERS = [
  [
    "push",
    (stream: AsyncIterable<ChainStreamEvent>, take: (e: ChainStreamEvent) => void) =>
      pushable(stream)[DRAIN_EVENTS](take),
  ],
  [
    "for await",
    async (stream: AsyncIterable<ChainStreamEvent>, take: (e: ChainStreamEvent) => void) => {
      for await (const event of stream) take(event);
    },
  ],
] as const;

function push(stream: AsyncIterable<ChainStreamEvent>): Promise<Read> {
  return collected((take) => pushable(stream)[DRAIN_EVENTS](take));
}

/** Errors compared by what a caller sees of them (class, message, attempts). */
function described(error: unknown): unknown {
  if (error === undefined) return undefined;
  const base = { name: (error as Error).name, message: (error as Error).message };
  return AllProvidersFailedError.isInstance(error)
    ? { ...base, attempts: error.attempts.map((a) => [a.ref, a.attempt]) }
    : base;
}

/** Two chains built alike from `scripts` (fresh scripted providers each), one read each way. */
async function bothWays(
  scripts: Record<string, ScriptEntry[]>,
  options: Omit<ProviderChainOptions, "providers">,
): Promise<{ pulled: Read; pushed: Read }> {
  const build = () =>
    createProviderChain({
      providers: Object.entries(scripts).map(([id, responses]) =>
        createScriptedProvider({ id, responses: [...responses] }),
      ),
      sleep: async () => {},
      random: () => 0.5,
      ...options,
    });
  const pulled = await pull(build().stream(request));
  const pushed = await push(build().stream(request));
  return { pulled, pushed };
}

function networkError(provider: string): ProviderError {
  return new ProviderError("network failure", { kind: "network", provider });
}

describe("ProviderChain push mode: the same as for await", () => {
  it("streams a plain answer: the same events in the same order", async () => {
    const { pulled, pushed } = await bothWays(
      { a: [{ text: ["Hel", "lo"], toolCalls: [{ toolName: "search", input: { q: "x" } }] }] },
      { models: ["a/m"] },
    );
    expect(pulled.error).toBeUndefined();
    expect(pulled.events.map((e) => e.type)).toContain("tool-call");
    expect(pushed).toEqual(pulled);
  });

  it("fails over after partial output and marks it for discarding, as for await does", async () => {
    const { pulled, pushed } = await bothWays(
      {
        a: [{ text: ["Hel", "lo wor"], error: networkError("a") }],
        b: [{ text: ["Hello", " world"] }],
      },
      { models: ["a/m", "b/m"], retry: { maxAttempts: 1 } },
    );
    expect(pushed.error).toBeUndefined();
    expect(pushed.events.filter((e) => e.type === "attempt-failed")).toMatchObject([
      { ref: "a/m", discardOutput: true, willRetry: true },
    ]);
    expect(pushed.events.map((e) => e.type)).toEqual(pulled.events.map((e) => e.type));
    expect(pushed.events.filter((e) => e.type === "text-delta")).toEqual(
      pulled.events.filter((e) => e.type === "text-delta"),
    );
  });

  it("retries on the same ref after a backoff, then answers", async () => {
    const overloaded = new ProviderError("overloaded", { kind: "overloaded", provider: "a" });
    const { pulled, pushed } = await bothWays(
      { a: [{ error: overloaded }, { error: overloaded }, "third time"] },
      { models: ["a/m"] },
    );
    expect(pushed.events.filter((e) => e.type === "attempt-start")).toHaveLength(3);
    expect(pushed.events.map((e) => e.type)).toEqual(pulled.events.map((e) => e.type));
    expect(pushed.error).toBeUndefined();
  });

  it("rejects with AllProvidersFailedError naming every attempt when all fail", async () => {
    const { pulled, pushed } = await bothWays(
      { a: [{ error: networkError("a") }], b: [{ error: networkError("b") }] },
      { models: ["a/m", "b/m"], retry: { maxAttempts: 1 } },
    );
    expect(AllProvidersFailedError.isInstance(pushed.error)).toBe(true);
    expect(described(pushed.error)).toEqual(described(pulled.error));
    expect(pushed.events.map((e) => e.type)).toEqual(pulled.events.map((e) => e.type));
  });

  it("rejects an aborted call with AbortedError without calling the provider", async () => {
    const a = createScriptedProvider({ id: "a", responses: ["unused"] });
    const chain = createProviderChain({ providers: [a], models: ["a/m"] });
    const { error } = await push(chain.stream(request, { signal: AbortSignal.abort() }));
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(a.requests).toHaveLength(0);
  });
});

describe("ProviderChain push mode: its own cases", () => {
  it("rejects at once when aborted while the provider hangs, and cancels the provider", async () => {
    const { provider, signals } = stuckProvider();
    const chain = createProviderChain({ providers: [provider], models: ["a/m"] });
    const controller = new AbortController();
    const seen: string[] = [];
    let sawText!: () => void;
    const textSeen = new Promise<void>((resolve) => {
      sawText = resolve;
    });
    const drained = pushable(chain.stream(request, { signal: controller.signal }))[DRAIN_EVENTS](
      (event) => {
        seen.push(event.type);
        if (event.type === "text-delta") sawText();
      },
    );
    await textSeen;
    controller.abort(new Error("user pressed stop"));
    const error = await failureOf(() => drained);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as AbortedError).cause).toEqual(new Error("user pressed stop"));
    expect(signals[0]?.aborted).toBe(true);
    expect(seen).toEqual(["attempt-start", "response-start", "text-delta"]);
  });

  it("closes the provider's stream and rejects with the sink's error when the sink throws", async () => {
    const { provider, isClosed } = closingProvider(["a", "b"], true);
    const chain = createProviderChain({ providers: [provider], models: ["a/m"] });
    const seen: string[] = [];
    const failure = new Error("the reader broke");
    const stream = chain.stream(request);
    const error = await failureOf(() =>
      pushable(stream)[DRAIN_EVENTS]((event) => {
        seen.push(event.type);
        if (event.type === "text-delta") throw failure;
      }),
    );
    expect(error).toBe(failure);
    expect(seen).toEqual(["attempt-start", "response-start", "text-delta"]);
    expect(isClosed()).toBe(true);
    // The stream is over for every reader.
    expect(await stream[Symbol.asyncIterator]().next()).toEqual({ done: true, value: undefined });
  });

  it("refuses to drain while a next() call waits, and resolves at once on an ended stream", async () => {
    const a = createScriptedProvider({ id: "a", responses: ["one", "two"] });
    const chain = createProviderChain({ providers: [a], models: ["a/m"] });
    const stream = chain.stream(request);
    const iterator = stream[Symbol.asyncIterator]();
    const waiting = iterator.next();
    const refused = await failureOf(() => pushable(stream)[DRAIN_EVENTS](() => {}));
    expect(InvalidArgumentError.isInstance(refused)).toBe(true);
    expect((await waiting).value).toMatchObject({ type: "attempt-start" });
    await iterator.return?.();
    const after: ChainStreamEvent[] = [];
    await pushable(stream)[DRAIN_EVENTS]((event) => after.push(event));
    expect(after).toEqual([]);
  });

  it.each(READERS)(
    "an abort while the caller handles an event stops the stream before the next one (%s)",
    async (_mode, read) => {
      const { provider, isClosed } = closingProvider(["one", "two", "three"], true);
      const chain = createProviderChain({ providers: [provider], models: ["a/m"] });
      const controller = new AbortController();
      const texts: string[] = [];
      const error = await failureOf(() =>
        read(chain.stream(request, { signal: controller.signal }), (event) => {
          if (event.type !== "text-delta") return;
          texts.push(event.text);
          controller.abort(new Error("stop"));
        }),
      );
      expect(texts).toEqual(["one"]);
      expect(AbortedError.isInstance(error)).toBe(true);
      expect((error as AbortedError).cause).toEqual(new Error("stop"));
      expect(isClosed()).toBe(true);
    },
  );

  it.each(READERS)(
    "an abort while the caller handles attempt-start stops the stream before the provider's first event (%s)",
    async (_mode, read) => {
      const { provider, isClosed } = closingProvider(["one", "two"], true);
      const chain = createProviderChain({ providers: [provider], models: ["a/m"] });
      const controller = new AbortController();
      const seen: string[] = [];
      const error = await failureOf(() =>
        read(chain.stream(request, { signal: controller.signal }), (event) => {
          seen.push(event.type);
          if (event.type === "attempt-start") controller.abort(new Error("stop"));
        }),
      );
      expect(seen).toEqual(["attempt-start"]);
      expect(AbortedError.isInstance(error)).toBe(true);
      // The provider's stream was made but never read: nothing of it ran.
      expect(isClosed()).toBe(false);
    },
  );

  it("refuses next() and a second drain while it drains, and the drain goes on unharmed", async () => {
    const a = createScriptedProvider({ id: "a", responses: ["one two three"] });
    const chain = createProviderChain({ providers: [a], models: ["a/m"] });
    const stream = chain.stream(request);
    const pulls: Array<Promise<unknown>> = [];
    const events: ChainStreamEvent[] = [];
    const drained = pushable(stream)[DRAIN_EVENTS]((event) => {
      events.push(event);
      // A reader that tries to pull while the drain is on, from inside the sink.
      if (event.type === "text-delta" && pulls.length === 0) {
        pulls.push(failureOf(() => stream[Symbol.asyncIterator]().next()));
        pulls.push(failureOf(() => pushable(stream)[DRAIN_EVENTS](() => {})));
      }
    });
    await drained;
    expect(pulls).toHaveLength(2);
    const [refusedNext, refusedDrain] = await Promise.all(pulls);
    expect(InvalidArgumentError.isInstance(refusedNext)).toBe(true);
    expect((refusedNext as Error).message).toMatch(/next\(\) while it is being drained/);
    expect(InvalidArgumentError.isInstance(refusedDrain)).toBe(true);
    const { events: expected } = await pull(
      createProviderChain({
        providers: [createScriptedProvider({ id: "a", responses: ["one two three"] })],
        models: ["a/m"],
      }).stream(request),
    );
    expect(events).toEqual(expected);
    // Once the drain is over, the stream reports its end to next().
    expect(await stream[Symbol.asyncIterator]().next()).toEqual({ done: true, value: undefined });
  });
});
