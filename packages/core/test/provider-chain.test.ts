import { afterEach, describe, expect, it } from "vitest";
import {
  AbortedError,
  AllProvidersFailedError,
  type ChainStreamEvent,
  CircuitOpenError,
  computeCost,
  createProviderChain,
  InvalidArgumentError,
  type ModelProvider,
  type ModelRequest,
  type ProviderChainOptions,
  ProviderError,
  type ProviderErrorKind,
  subscribeTelemetry,
  type TelemetryChannel,
  type TelemetryEvents,
} from "../src/index.js";
import { createEchoProvider, createScriptedProvider } from "../src/testing/index.js";
import {
  activeTimeouts,
  closingProvider,
  type Deferred,
  deferred,
  failureOf,
  fakeClock,
  readAll,
  stuckProvider,
  tick,
  waitFor,
} from "./support.js";

const request: Omit<ModelRequest, "model"> = {
  messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
};

function providerError(
  kind: ProviderErrorKind,
  details: { provider?: string; retryAfterMs?: number } = {},
): ProviderError {
  return new ProviderError(`${kind} failure`, {
    kind,
    provider: details.provider ?? "a",
    ...(details.retryAfterMs === undefined ? {} : { retryAfterMs: details.retryAfterMs }),
  });
}

/** A chain on a fake clock with no jitter, unless the test says otherwise. */
function chainOf(options: ProviderChainOptions, clock = fakeClock()) {
  return createProviderChain({
    now: clock.now,
    sleep: clock.sleep,
    random: () => 0.5,
    ...options,
  });
}

/** Every event of a chain's stream, read with `for await`, and its error, if any. */
const drain = readAll<ChainStreamEvent>;

/** The text a consumer shows when it honours `discardOutput`. */
function visibleText(events: readonly ChainStreamEvent[]): string {
  let text = "";
  let attemptStart = 0;
  for (const event of events) {
    if (event.type === "attempt-start") attemptStart = text.length;
    if (event.type === "attempt-failed" && event.discardOutput) text = text.slice(0, attemptStart);
    if (event.type === "text-delta") text += event.text;
  }
  return text;
}

function failures(events: readonly ChainStreamEvent[]) {
  return events.filter(
    (event): event is Extract<ChainStreamEvent, { type: "attempt-failed" }> =>
      event.type === "attempt-failed",
  );
}

const subscriptions: Array<() => void> = [];
afterEach(() => {
  for (const off of subscriptions.splice(0)) off();
});

function recording<C extends TelemetryChannel>(name: C): TelemetryEvents[C][] {
  const events: TelemetryEvents[C][] = [];
  subscriptions.push(subscribeTelemetry(name, (event) => events.push(event)));
  return events;
}

describe("ProviderChain: fallback order", () => {
  it("answers from the first ref and never calls the fallbacks when it succeeds", async () => {
    const a = createScriptedProvider({ id: "a", responses: ["from a"] });
    const b = createScriptedProvider({ id: "b", responses: ["from b"] });
    const chain = chainOf({ providers: [a, b], models: ["a/m1", "b/m2"] });
    const { events, error } = await drain(chain.stream(request));
    expect(error).toBeUndefined();
    expect(visibleText(events)).toBe("from a");
    expect(b.requests).toHaveLength(0);
  });

  it("tries the refs in the order given, each with its own model id", async () => {
    const calls: string[] = [];
    const failing = (id: string) =>
      createScriptedProvider({
        id,
        responses: [
          (req) => {
            calls.push(`${id}/${req.model}`);
            return { error: providerError("auth", { provider: id }) };
          },
        ],
      });
    const last = createScriptedProvider({ id: "c", responses: ["from c"] });
    const chain = chainOf({
      providers: [failing("a"), failing("b"), last],
      models: ["b/second", "a/first", "c/third"],
    });
    const { events } = await drain(chain.stream(request));
    expect(calls).toEqual(["b/second", "a/first"]);
    expect(last.requests.map((r) => r.model)).toEqual(["third"]);
    expect(events.filter((e) => e.type === "attempt-start").map((e) => e.ref)).toEqual([
      "b/second",
      "a/first",
      "c/third",
    ]);
  });

  it("uses the per-call models instead of the chain's", async () => {
    const a = createScriptedProvider({ id: "a", responses: ["from a"] });
    const b = createScriptedProvider({ id: "b", responses: ["from b"] });
    const chain = chainOf({ providers: [a, b], models: ["a/m1"] });
    const { events } = await drain(chain.stream(request, { models: ["b/m2"] }));
    expect(visibleText(events)).toBe("from b");
    expect(a.requests).toHaveLength(0);
  });

  it("takes the provider from before the first slash, so model ids may contain slashes", async () => {
    const router = createScriptedProvider({ id: "openrouter", responses: ["ok"] });
    const chain = chainOf({ providers: [router], models: ["openrouter/meta-llama/llama-3-70b"] });
    await drain(chain.stream(request));
    expect(router.requests[0]?.model).toBe("meta-llama/llama-3-70b");
  });

  it("refers to providers given as a record by their keys", async () => {
    const primary = createScriptedProvider({ id: "openai-compatible", responses: ["primary"] });
    const backup = createScriptedProvider({ id: "openai-compatible", responses: ["backup"] });
    const chain = chainOf({ providers: { primary, backup }, models: ["backup/m"] });
    const { events } = await drain(chain.stream(request));
    expect(visibleText(events)).toBe("backup");
  });
});

describe("ProviderChain: retries", () => {
  it("retries a retryable error up to maxAttempts times on the same ref, then falls back", async () => {
    const a = createScriptedProvider({
      id: "a",
      responses: Array.from({ length: 5 }, () => ({ error: providerError("overloaded") })),
    });
    const b = createScriptedProvider({ id: "b", responses: ["from b"] });
    const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"], retry: { maxAttempts: 3 } });
    const { events } = await drain(chain.stream(request));
    expect(a.requests).toHaveLength(3);
    expect(failures(events).map((f) => [f.ref, f.attempt, f.willRetry])).toEqual([
      ["a/m", 1, true],
      ["a/m", 2, true],
      ["a/m", 3, true],
    ]);
    expect(visibleText(events)).toBe("from b");
  });

  it("grows the backoff ceiling exponentially from baseDelayMs, capped at maxDelayMs", async () => {
    const clock = fakeClock();
    const a = createScriptedProvider({
      id: "a",
      responses: Array.from({ length: 5 }, () => ({ error: providerError("server") })),
    });
    const chain = chainOf(
      {
        providers: [a],
        models: ["a/m"],
        retry: { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 350, jitter: "none" },
      },
      clock,
    );
    await drain(chain.stream(request));
    expect(clock.sleeps).toEqual([100, 200, 350, 350]);
  });

  it("draws each delay with full jitter from [0, ceiling)", async () => {
    const clock = fakeClock();
    const draws = [0, 0.5, 0.999];
    const a = createScriptedProvider({
      id: "a",
      responses: Array.from({ length: 4 }, () => ({ error: providerError("network") })),
    });
    const chain = chainOf(
      {
        providers: [a],
        models: ["a/m"],
        retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 10_000, jitter: "full" },
        random: () => draws.shift() ?? 0,
      },
      clock,
    );
    const { events } = await drain(chain.stream(request));
    // Ceilings 100, 200, 400; a zero delay retries without sleeping.
    expect(failures(events).map((f) => f.delayMs)).toEqual([0, 100, 399, 0]);
    expect(clock.sleeps).toEqual([100, 399]);
  });

  it("never waits less than the provider's retry-after", async () => {
    const clock = fakeClock();
    const a = createScriptedProvider({
      id: "a",
      responses: [{ error: providerError("rate_limit", { retryAfterMs: 1_200 }) }, "ok"],
    });
    const chain = chainOf(
      {
        providers: [a],
        models: ["a/m"],
        retry: { baseDelayMs: 100, jitter: "full" },
        random: () => 0,
      },
      clock,
    );
    const { events } = await drain(chain.stream(request));
    expect(clock.sleeps).toEqual([1_200]);
    expect(failures(events)[0]?.delayMs).toBe(1_200);
    expect(visibleText(events)).toBe("ok");
  });

  it("moves on to the next ref without waiting when retry-after exceeds maxDelayMs", async () => {
    const clock = fakeClock();
    const a = createScriptedProvider({
      id: "a",
      responses: [{ error: providerError("rate_limit", { retryAfterMs: 60_000 }) }, "late"],
    });
    const b = createScriptedProvider({ id: "b", responses: ["from b"] });
    const chain = chainOf(
      { providers: [a, b], models: ["a/m", "b/m"], retry: { maxDelayMs: 5_000 } },
      clock,
    );
    const { events } = await drain(chain.stream(request));
    expect(clock.sleeps).toEqual([]);
    expect(a.requests).toHaveLength(1);
    expect(failures(events)[0]).toMatchObject({ ref: "a/m", willRetry: true, delayMs: 0 });
    expect(visibleText(events)).toBe("from b");
  });

  it.each(["auth", "invalid_request", "malformed_stream"] as const)(
    "does not retry a non-retryable %s error: it falls back to the next ref at once",
    async (kind) => {
      const clock = fakeClock();
      const a = createScriptedProvider({
        id: "a",
        responses: [{ error: providerError(kind) }, "second try"],
      });
      const b = createScriptedProvider({ id: "b", responses: ["from b"] });
      const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"] }, clock);
      const { events } = await drain(chain.stream(request));
      expect(a.requests).toHaveLength(1);
      expect(clock.sleeps).toEqual([]);
      expect(visibleText(events)).toBe("from b");
    },
  );

  it("does not retry an error that is not a ProviderError", async () => {
    const a = createScriptedProvider({
      id: "a",
      responses: [{ error: new TypeError("adapter bug") }, "second try"],
    });
    const b = createScriptedProvider({ id: "b", responses: ["from b"] });
    const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"] });
    const { events } = await drain(chain.stream(request));
    expect(a.requests).toHaveLength(1);
    expect(failures(events)[0]?.error).toBeInstanceOf(TypeError);
  });
});

describe("ProviderChain: failover after partial output", () => {
  it("marks a failed attempt's streamed text for discarding, so it is never repeated as new", async () => {
    const a = createScriptedProvider({
      id: "a",
      responses: [{ text: ["Hel", "lo wor"], error: providerError("network") }],
    });
    const b = createScriptedProvider({ id: "b", responses: [{ text: ["Hello", " world"] }] });
    const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"], retry: { maxAttempts: 1 } });
    const { events, error } = await drain(chain.stream(request));
    expect(error).toBeUndefined();
    expect(events.map((e) => e.type)).toEqual([
      "attempt-start",
      "response-start",
      "text-delta",
      "text-delta",
      "attempt-failed",
      "attempt-start",
      "response-start",
      "text-delta",
      "text-delta",
      "finish",
    ]);
    expect(failures(events)[0]).toMatchObject({ ref: "a/m", discardOutput: true, willRetry: true });
    expect(visibleText(events)).toBe("Hello world");
  });

  it("marks partial output for discarding when retrying the same ref too", async () => {
    const a = createScriptedProvider({
      id: "a",
      responses: [{ text: ["The ans"], error: providerError("network") }, { text: "The answer" }],
    });
    const chain = chainOf({ providers: [a], models: ["a/m"] });
    const { events } = await drain(chain.stream(request));
    expect(failures(events)[0]).toMatchObject({ attempt: 1, discardOutput: true });
    expect(visibleText(events)).toBe("The answer");
  });

  it("does not ask to discard anything when the attempt failed before streaming content", async () => {
    const a = createScriptedProvider({ id: "a", responses: [{ error: providerError("server") }] });
    const b = createScriptedProvider({ id: "b", responses: ["from b"] });
    const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"], retry: { maxAttempts: 1 } });
    const { events } = await drain(chain.stream(request));
    expect(failures(events)[0]?.discardOutput).toBe(false);
  });

  it("counts streamed tool calls as output to discard", async () => {
    const a = createScriptedProvider({
      id: "a",
      responses: [
        {
          toolCalls: [{ toolName: "search", input: { q: "x" } }],
          error: providerError("network"),
        },
      ],
    });
    const b = createScriptedProvider({ id: "b", responses: ["from b"] });
    const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"], retry: { maxAttempts: 1 } });
    const { events } = await drain(chain.stream(request));
    expect(failures(events)[0]?.discardOutput).toBe(true);
  });
});

describe("ProviderChain: when everything fails", () => {
  it("throws AllProvidersFailedError naming every attempt: ref, attempt number and error", async () => {
    const first = providerError("overloaded");
    const second = providerError("server");
    const third = providerError("auth", { provider: "b" });
    const a = createScriptedProvider({ id: "a", responses: [{ error: first }, { error: second }] });
    const b = createScriptedProvider({ id: "b", responses: [{ error: third }] });
    const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"], retry: { maxAttempts: 2 } });
    const { events, error } = await drain(chain.stream(request));
    expect(AllProvidersFailedError.isInstance(error)).toBe(true);
    const failed = error as AllProvidersFailedError;
    expect(failed.attempts).toEqual([
      { ref: "a/m", attempt: 1, error: first },
      { ref: "a/m", attempt: 2, error: second },
      { ref: "b/m", attempt: 1, error: third },
    ]);
    expect(failed.message).toContain("a/m#1");
    expect(failed.message).toContain("a/m#2");
    expect(failed.message).toContain("b/m#1");
    expect(failures(events).at(-1)?.willRetry).toBe(false);
  });

  it("rejects malformed refs and unknown providers with InvalidArgumentError", () => {
    const a = createScriptedProvider({ id: "a" });
    for (const models of [["no-slash"], ["/m"], ["a/"], ["zz/m"]]) {
      expect(() => createProviderChain({ providers: [a], models })).toThrow(InvalidArgumentError);
    }
    const chain = createProviderChain({ providers: [a], models: ["a/m"] });
    expect(() => chain.stream(request, { models: ["zz/m"] })).toThrow(/not one of "a"/);
    expect(() => chain.stream(request, { models: [] })).toThrow(InvalidArgumentError);
  });

  it("needs no chain-wide models when every call names its own", async () => {
    const a = createScriptedProvider({ id: "a", responses: ["per call"] });
    const chain = chainOf({ providers: [a], models: [] });
    expect(() => chain.stream(request)).toThrow(/no models to call/);
    const { events } = await drain(chain.stream(request, { models: ["a/m"] }));
    expect(visibleText(events)).toBe("per call");
  });

  it("rejects a request without a messages array with InvalidArgumentError", () => {
    const chain = createProviderChain({ providers: [createEchoProvider()], models: ["echo/m"] });
    expect(() => chain.stream({} as Omit<ModelRequest, "model">)).toThrow(InvalidArgumentError);
  });

  it("rejects invalid options with InvalidArgumentError", () => {
    const a = createScriptedProvider({ id: "a" });
    const base = { providers: [a], models: ["a/m"] };
    const bad: Array<Partial<ProviderChainOptions>> = [
      { retry: { maxAttempts: 0 } },
      { retry: { baseDelayMs: -1 } },
      { circuitBreaker: { failureThreshold: 0 } },
      { limits: { zz: { rpm: 1 } } },
      { limits: { a: { concurrency: 0 } } },
      { providers: [a, createScriptedProvider({ id: "a" })] },
    ];
    for (const options of bad) {
      expect(() => createProviderChain({ ...base, ...options })).toThrow(InvalidArgumentError);
    }
  });
});

describe("ProviderChain: circuit breaker", () => {
  function circuitChain(aResponses: Parameters<typeof createScriptedProvider>[0]) {
    const clock = fakeClock();
    const a = createScriptedProvider(aResponses);
    const b = createEchoProvider({ id: "b" });
    const chain = chainOf(
      {
        providers: [a, b],
        models: ["a/m", "b/m"],
        retry: { maxAttempts: 1 },
        circuitBreaker: { failureThreshold: 2, windowMs: 10_000, openMs: 5_000 },
      },
      clock,
    );
    return { clock, a, chain };
  }
  const failingResponses = (n: number) =>
    Array.from({ length: n }, () => ({ error: providerError("server") }));

  it("opens a ref's circuit after failureThreshold failures within windowMs", async () => {
    const { chain, clock } = circuitChain({ id: "a", responses: failingResponses(2) });
    await drain(chain.stream(request));
    expect(chain.circuitState("a/m")).toBe("closed");
    clock.advance(9_000);
    await drain(chain.stream(request));
    expect(chain.circuitState("a/m")).toBe("open");
  });

  it("does not open on failures further apart than windowMs", async () => {
    const { chain, clock } = circuitChain({ id: "a", responses: failingResponses(2) });
    await drain(chain.stream(request));
    clock.advance(10_001);
    await drain(chain.stream(request));
    expect(chain.circuitState("a/m")).toBe("closed");
  });

  it("skips an open circuit without calling it, counting the skip as a CircuitOpenError attempt", async () => {
    const { chain, a } = circuitChain({ id: "a", responses: [...failingResponses(2), "unused"] });
    await drain(chain.stream(request));
    await drain(chain.stream(request));
    const { events, error } = await drain(chain.stream(request));
    expect(error).toBeUndefined();
    expect(a.requests).toHaveLength(2);
    const skipped = failures(events)[0]!;
    expect(skipped.ref).toBe("a/m");
    expect(CircuitOpenError.isInstance(skipped.error)).toBe(true);
    expect((skipped.error as CircuitOpenError).retryAfterMs).toBe(5_000);
    expect(events.filter((e) => e.type === "attempt-start").map((e) => e.ref)).toEqual(["b/m"]);
  });

  it("half-opens after openMs and lets exactly one trial call through", async () => {
    const gate = deferred();
    const { chain, clock, a } = circuitChain({
      id: "a",
      responses: [
        ...failingResponses(2),
        {
          events: [
            { type: "response-start", model: "m" },
            { type: "wait", until: gate.promise },
            { type: "finish", reason: "stop" },
          ],
        },
      ],
    });
    await drain(chain.stream(request));
    await drain(chain.stream(request));
    clock.advance(4_999);
    expect(chain.circuitState("a/m")).toBe("open");
    clock.advance(1);
    expect(chain.circuitState("a/m")).toBe("half-open");
    const trial = drain(chain.stream(request));
    await waitFor("the trial call", () => a.requests.length === 3);
    const second = await drain(chain.stream(request));
    expect(a.requests).toHaveLength(3);
    expect(CircuitOpenError.isInstance(failures(second.events)[0]?.error)).toBe(true);
    gate.resolve();
    expect((await trial).error).toBeUndefined();
  });

  it("closes after a successful trial call", async () => {
    const { chain, clock } = circuitChain({
      id: "a",
      responses: [...failingResponses(2), "trial ok"],
    });
    await drain(chain.stream(request));
    await drain(chain.stream(request));
    clock.advance(5_000);
    const { events } = await drain(chain.stream(request));
    expect(visibleText(events)).toBe("trial ok");
    expect(chain.circuitState("a/m")).toBe("closed");
  });

  it("re-opens for another openMs after a failed trial call", async () => {
    const { chain, clock } = circuitChain({ id: "a", responses: failingResponses(3) });
    await drain(chain.stream(request));
    await drain(chain.stream(request));
    clock.advance(5_000);
    await drain(chain.stream(request));
    expect(chain.circuitState("a/m")).toBe("open");
    clock.advance(4_999);
    expect(chain.circuitState("a/m")).toBe("open");
    clock.advance(1);
    expect(chain.circuitState("a/m")).toBe("half-open");
  });

  it("does not count invalid_request errors against the circuit", async () => {
    const { chain } = circuitChain({
      id: "a",
      responses: [
        { error: providerError("invalid_request") },
        { error: providerError("invalid_request") },
      ],
    });
    await drain(chain.stream(request));
    await drain(chain.stream(request));
    expect(chain.circuitState("a/m")).toBe("closed");
  });

  it("never skips a ref when circuit breaking is disabled", async () => {
    const a = createScriptedProvider({ id: "a", responses: [...failingResponses(6), "ok"] });
    const chain = chainOf({
      providers: [a],
      models: ["a/m"],
      retry: { maxAttempts: 7 },
      circuitBreaker: false,
    });
    const { events } = await drain(chain.stream(request));
    expect(a.requests).toHaveLength(7);
    expect(visibleText(events)).toBe("ok");
    expect(chain.circuitState("a/m")).toBe("closed");
  });

  it("publishes beamclaw:provider.circuit for every transition", async () => {
    const transitions = recording("beamclaw:provider.circuit");
    const { chain, clock } = circuitChain({ id: "a", responses: [...failingResponses(2), "ok"] });
    await drain(chain.stream(request));
    await drain(chain.stream(request));
    clock.advance(5_000);
    await drain(chain.stream(request));
    expect(transitions).toEqual([
      { ref: "a/m", from: "closed", to: "open" },
      { ref: "a/m", from: "open", to: "half-open" },
      { ref: "a/m", from: "half-open", to: "closed" },
    ]);
  });
});

describe("ProviderChain: limits", () => {
  /** A provider whose calls each hold until the test releases them. */
  function heldCalls(id: string) {
    const gates: Array<Deferred<void>> = [];
    const provider = createScriptedProvider({ id });
    const hold = () => {
      const gate = deferred();
      gates.push(gate);
      provider.push({
        events: [
          { type: "response-start", model: "m" },
          { type: "wait", until: gate.promise },
          { type: "finish", reason: "stop" },
        ],
      });
    };
    return { provider, gates, hold };
  }

  it("holds a call until a concurrency slot is free", async () => {
    const { provider, gates, hold } = heldCalls("a");
    hold();
    hold();
    const chain = chainOf({
      providers: [provider],
      models: ["a/m"],
      limits: { "a/m": { concurrency: 1 } },
    });
    const first = drain(chain.stream(request));
    const second = drain(chain.stream(request));
    await waitFor("the first call", () => provider.requests.length === 1);
    for (let i = 0; i < 5; i++) await tick();
    expect(provider.requests).toHaveLength(1);
    gates[0]?.resolve();
    await first;
    await waitFor("the second call", () => provider.requests.length === 2);
    gates[1]?.resolve();
    expect((await second).error).toBeUndefined();
  });

  it("makes the call over the RPM limit wait until the oldest leaves the 60 s window", async () => {
    const clock = fakeClock();
    const calledAt: number[] = [];
    const a = createScriptedProvider({ id: "a" });
    for (let i = 0; i < 3; i++) {
      a.push(() => {
        calledAt.push(clock.now());
        return "ok";
      });
    }
    const chain = chainOf(
      { providers: [a], models: ["a/m"], limits: { "a/m": { rpm: 2 } } },
      clock,
    );
    const start = clock.now();
    await drain(chain.stream(request));
    clock.advance(10_000);
    await drain(chain.stream(request));
    await drain(chain.stream(request));
    expect(calledAt.map((t) => t - start)).toEqual([0, 10_000, 60_000]);
    expect(clock.sleeps).toEqual([50_000]);
  });

  it("counts TPM by the request's estimate, then corrects it to the reported usage", async () => {
    const clock = fakeClock();
    const a = createScriptedProvider({ id: "a" });
    for (let i = 0; i < 3; i++)
      a.push({ text: "ok", usage: { inputTokens: 15, outputTokens: 10 } });
    const chain = chainOf(
      {
        providers: [a],
        models: ["a/m"],
        limits: { "a/m": { tpm: 100 } },
        estimateTokens: () => 60,
      },
      clock,
    );
    await drain(chain.stream(request));
    // 25 (corrected) + 60 fits in 100; without the correction, 60 + 60 would not.
    await drain(chain.stream(request));
    expect(clock.sleeps).toEqual([]);
    // 25 + 25 + 60 > 100: waits for the first call to leave the window.
    await drain(chain.stream(request));
    expect(clock.sleeps).toEqual([60_000]);
  });

  it("applies a provider-wide limit across all of that provider's models", async () => {
    const clock = fakeClock();
    const a = createScriptedProvider({ id: "a", responses: ["one", "two"] });
    const chain = chainOf({ providers: [a], models: ["a/m1"], limits: { a: { rpm: 1 } } }, clock);
    await drain(chain.stream(request));
    await drain(chain.stream(request, { models: ["a/m2"] }));
    expect(clock.sleeps).toEqual([60_000]);
  });

  it("stops waiting for a slot when the signal aborts, and gives the place in line away", async () => {
    const { provider, gates, hold } = heldCalls("a");
    hold();
    provider.push("third");
    const chain = chainOf({
      providers: [provider],
      models: ["a/m"],
      limits: { a: { concurrency: 1 } },
    });
    const first = drain(chain.stream(request));
    await waitFor("the first call", () => provider.requests.length === 1);
    const controller = new AbortController();
    const second = drain(chain.stream(request, { signal: controller.signal }));
    await tick();
    controller.abort();
    expect(AbortedError.isInstance((await second).error)).toBe(true);
    gates[0]?.resolve();
    await first;
    const third = await drain(chain.stream(request));
    expect(visibleText(third.events)).toBe("third");
  });
});

describe("ProviderChain: abort", () => {
  it("ends the stream with AbortedError at once when aborted mid-stream, aborting the provider's signal", async () => {
    const { provider, signals } = stuckProvider();
    const chain = chainOf({ providers: [provider], models: ["a/m"] });
    const controller = new AbortController();
    const iterator = chain.stream(request, { signal: controller.signal })[Symbol.asyncIterator]();
    for (let next = await iterator.next(); next.value?.type !== "text-delta"; ) {
      next = await iterator.next();
    }
    const pending = iterator.next();
    controller.abort(new Error("user pressed stop"));
    const error = await failureOf(() => pending);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as AbortedError).cause).toEqual(new Error("user pressed stop"));
    expect(signals[0]?.aborted).toBe(true);
  });

  it("cancels a backoff wait at once when aborted, even if the sleep ignores the signal", async () => {
    const slept = deferred();
    const a = createScriptedProvider({
      id: "a",
      responses: [{ error: providerError("overloaded") }, "late"],
    });
    const chain = createProviderChain({
      providers: [a],
      models: ["a/m"],
      // A fixed draw: full jitter draws 0 ms (no wait at all) once in 500 calls.
      random: () => 0.5,
      sleep: () => {
        slept.resolve();
        return new Promise<void>(() => {});
      },
    });
    const controller = new AbortController();
    const result = drain(chain.stream(request, { signal: controller.signal }));
    await slept.promise;
    controller.abort();
    expect(AbortedError.isInstance((await result).error)).toBe(true);
    expect(a.requests).toHaveLength(1);
  });

  it("leaves no timer behind when a real backoff wait is aborted", async () => {
    const before = activeTimeouts();
    const a = createScriptedProvider({
      id: "a",
      responses: [{ error: providerError("overloaded") }],
    });
    const chain = createProviderChain({
      providers: [a],
      models: ["a/m"],
      retry: { baseDelayMs: 600_000, maxDelayMs: 600_000, jitter: "none" },
    });
    const controller = new AbortController();
    const result = drain(chain.stream(request, { signal: controller.signal }));
    // The provider fails first; the chain then sleeps out its backoff on a real timer.
    await waitFor("the provider call", () => a.requests.length === 1, 10_000);
    await waitFor("the backoff timer", () => activeTimeouts() > before, 10_000);
    controller.abort();
    expect(AbortedError.isInstance((await result).error)).toBe(true);
    // (The file's open-handle check also fails if the backoff timer outlives the abort.)
    expect(activeTimeouts()).toBeLessThanOrEqual(before);
  });

  it("calls no provider when the signal is already aborted", async () => {
    const a = createScriptedProvider({ id: "a", responses: ["unused"] });
    const chain = chainOf({ providers: [a], models: ["a/m"] });
    const { error } = await drain(chain.stream(request, { signal: AbortSignal.abort() }));
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(a.requests).toHaveLength(0);
  });

  it("closes the provider's stream and frees its slot when the caller stops reading", async () => {
    const { provider, signals, isClosed } = stuckProvider();
    const chain = chainOf({
      providers: [provider],
      models: ["a/m"],
      limits: { a: { concurrency: 1 } },
    });
    for await (const event of chain.stream(request)) {
      if (event.type === "text-delta") break;
    }
    expect(isClosed()).toBe(true);
    expect(signals[0]?.aborted).toBe(true);
    // The slot is free again: a second call to the same provider starts.
    const iterator = chain.stream(request)[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ type: "attempt-start", ref: "a/m" });
    await iterator.return?.();
  });
});

describe("ProviderChain: the iterator", () => {
  it("answers next() calls made before the last one settled, in order, with nothing lost", async () => {
    const oneRefChain = () =>
      chainOf({
        providers: [createScriptedProvider({ id: "a", responses: ["one two three"] })],
        models: ["a/m"],
      });
    const { events: expected } = await drain(oneRefChain().stream(request));
    const iterator = oneRefChain().stream(request)[Symbol.asyncIterator]();
    // All at once, as a caller that does not await each step may ask.
    const results = await Promise.all(
      Array.from({ length: expected.length + 2 }, () => iterator.next()),
    );
    expect(results.slice(0, expected.length).map((r) => r.value)).toEqual(expected);
    expect(results.slice(expected.length).every((r) => r.done === true)).toBe(true);
  });

  it("fails over when a provider's iterator throws from next() instead of rejecting", async () => {
    const broken: ModelProvider = {
      specificationVersion: "v1",
      id: "a",
      stream: () => ({
        [Symbol.asyncIterator]: () => ({
          next: () => {
            throw new Error("next() threw");
          },
        }),
      }),
    };
    const chain = chainOf({
      providers: [broken, createScriptedProvider({ id: "b", responses: ["from b"] })],
      models: ["a/m", "b/m"],
    });
    const { events, error } = await drain(chain.stream(request));
    expect(error).toBeUndefined();
    expect(failures(events).map((f) => [f.ref, (f.error as Error).message])).toEqual([
      ["a/m", "next() threw"],
    ]);
    expect(visibleText(events)).toBe("from b");
  });

  it("fails over, without an unhandled rejection, when a provider's iterator gives no event", async () => {
    const broken = (result: unknown): ModelProvider => ({
      specificationVersion: "v1",
      id: "a",
      stream: () => ({
        [Symbol.asyncIterator]: () => ({ next: async () => result as IteratorResult<never> }),
      }),
    });
    for (const result of [{ done: false, value: undefined }, null]) {
      const chain = chainOf({
        providers: [broken(result), createScriptedProvider({ id: "b", responses: ["from b"] })],
        models: ["a/m", "b/m"],
      });
      const { events, error } = await drain(chain.stream(request));
      expect(error).toBeUndefined();
      expect(failures(events).map((f) => [f.ref, (f.error as Error).name])).toEqual([
        ["a/m", "TypeError"],
      ]);
      expect(visibleText(events)).toBe("from b");
    }
  });

  it("after return() mid-stream, next() says done and the provider's stream is closed", async () => {
    const { provider, isClosed } = closingProvider(["a", "b"]);
    const chain = chainOf({ providers: [provider], models: ["a/m"] });
    const iterator = chain.stream(request)[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ type: "attempt-start" });
    expect((await iterator.next()).value).toMatchObject({ type: "response-start" });
    expect(await iterator.return?.()).toEqual({ done: true, value: undefined });
    expect(isClosed()).toBe(true);
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it("return() while next() waits on a stuck provider ends both at once and cancels the provider", async () => {
    const { provider, signals, isClosed } = stuckProvider();
    const chain = chainOf({ providers: [provider], models: ["a/m"] });
    const iterator = chain.stream(request)[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ type: "attempt-start" });
    expect((await iterator.next()).value).toMatchObject({ type: "response-start" });
    expect((await iterator.next()).value).toMatchObject({ type: "text-delta" });
    const waiting = iterator.next();
    expect(await iterator.return?.()).toEqual({ done: true, value: undefined });
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(signals[0]?.aborted).toBe(true);
    // The provider's generator is suspended in an await that never settles, so its return()
    // cannot run its finally block: the aborted signal is what stops a real provider.
    expect(isClosed()).toBe(false);
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it("return() during a backoff wait ends the wait at once and leaves no timer behind", async () => {
    const before = activeTimeouts();
    const a = createScriptedProvider({
      id: "a",
      responses: [{ error: providerError("overloaded") }, "unused"],
    });
    const chain = createProviderChain({
      providers: [a],
      models: ["a/m"],
      retry: { baseDelayMs: 600_000, maxDelayMs: 600_000, jitter: "none" },
    });
    const iterator = chain.stream(request)[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toMatchObject({ type: "attempt-start" });
    expect((await iterator.next()).value).toMatchObject({
      type: "attempt-failed",
      delayMs: 600_000,
    });
    // The chain now sleeps out its backoff on a real timer.
    const waiting = iterator.next();
    await waitFor("the backoff timer", () => activeTimeouts() > before, 10_000);
    expect(await iterator.return?.()).toEqual({ done: true, value: undefined });
    expect(await waiting).toEqual({ done: true, value: undefined });
    expect(activeTimeouts()).toBeLessThanOrEqual(before);
    expect(a.requests).toHaveLength(1);
  });
});

describe("ProviderChain: telemetry", () => {
  it("publishes beamclaw:provider.call for each call with ref, attempt, duration, usage and outcome", async () => {
    const calls = recording("beamclaw:provider.call");
    const clock = fakeClock();
    const failure = providerError("overloaded");
    const a = createScriptedProvider({ id: "a" });
    a.push(() => {
      clock.advance(40);
      return { error: failure };
    });
    a.push(() => {
      clock.advance(250);
      return { text: "ok", usage: { inputTokens: 7, outputTokens: 2 } };
    });
    const chain = chainOf({ providers: [a], models: ["a/m"] }, clock);
    await drain(
      chain.stream(request, {
        telemetry: { tenant: "t1", agent: "ops", session: "agent:ops:main" },
      }),
    );
    expect(calls).toEqual([
      {
        ref: "a/m",
        provider: "a",
        model: "m",
        attempt: 1,
        durationMs: 40,
        outcome: "error",
        error: failure,
        tenant: "t1",
        agent: "ops",
        session: "agent:ops:main",
      },
      {
        ref: "a/m",
        provider: "a",
        model: "m",
        attempt: 2,
        durationMs: 250,
        outcome: "success",
        usage: { inputTokens: 7, outputTokens: 2 },
        tenant: "t1",
        agent: "ops",
        session: "agent:ops:main",
      },
    ]);
  });

  it("reports an aborted call with outcome aborted", async () => {
    const calls = recording("beamclaw:provider.call");
    const gate = deferred();
    const a = createScriptedProvider({
      id: "a",
      responses: [
        {
          events: [
            { type: "response-start", model: "m" },
            { type: "wait", until: gate.promise },
          ],
        },
      ],
    });
    const chain = chainOf({ providers: [a], models: ["a/m"] });
    const controller = new AbortController();
    const result = drain(chain.stream(request, { signal: controller.signal }));
    await waitFor("the call", () => a.requests.length === 1);
    controller.abort();
    await result;
    expect(calls.map((c) => c.outcome)).toEqual(["aborted"]);
  });
});

describe("README", () => {
  it("the Providers example fails over after partial output and shows only the new answer", async () => {
    const flaky = createScriptedProvider({
      id: "flaky",
      responses: [{ text: ["Hel"], error: new Error("cut") }],
    });
    const steady = createScriptedProvider({ id: "steady", responses: [{ text: ["Hello!"] }] });
    const chain = createProviderChain({
      providers: [flaky, steady],
      models: ["flaky/m", "steady/m"],
    });
    let text = "";
    for await (const event of chain.stream({
      messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }],
    })) {
      if (event.type === "attempt-failed" && event.discardOutput) text = "";
      if (event.type === "text-delta") text += event.text;
    }
    expect(text).toBe("Hello!");
  });
});

describe("computeCost", () => {
  it("prices uncached input, cache reads, cache writes and output per million tokens", () => {
    const cost = computeCost(
      { inputTokens: 12_000, outputTokens: 800, cacheReadTokens: 10_000, cacheWriteTokens: 1_000 },
      { inputPerMTok: 3, outputPerMTok: 15, cacheReadPerMTok: 0.3, cacheWritePerMTok: 3.75 },
    );
    // 1 000 × 3 + 10 000 × 0.3 + 1 000 × 3.75 + 800 × 15 = 21 750 micro-dollars.
    expect(cost).toBeCloseTo(0.02175, 10);
  });

  it("prices cache tokens at the input price when the model has no cache prices", () => {
    const cost = computeCost(
      { inputTokens: 2_000, outputTokens: 0, cacheReadTokens: 1_000 },
      { inputPerMTok: 2, outputPerMTok: 8 },
    );
    expect(cost).toBeCloseTo(0.004, 10);
  });

  it("prices writes to a one-hour cache at cacheWrite1hPerMTok, the five-minute write price without one", () => {
    const usage = {
      inputTokens: 4_000,
      outputTokens: 0,
      cacheWriteTokens: 3_000,
      cacheWrite1hTokens: 2_000,
    };
    const pricing = { inputPerMTok: 3, outputPerMTok: 15, cacheWritePerMTok: 3.75 };
    // 1 000 uncached × 3 + 1 000 five-minute writes × 3.75 + 2 000 one-hour writes × 6.
    expect(computeCost(usage, { ...pricing, cacheWrite1hPerMTok: 6 })).toBeCloseTo(0.01875, 10);
    expect(computeCost(usage, pricing)).toBeCloseTo(0.01425, 10);
    // A count of one-hour writes above the writes themselves is capped at them.
    expect(
      computeCost({ ...usage, cacheWrite1hTokens: 9_000 }, { ...pricing, cacheWrite1hPerMTok: 6 }),
    ).toBeCloseTo((1_000 * 3 + 3_000 * 6) / 1e6, 10);
  });

  it("rejects negative or non-finite prices with InvalidArgumentError", () => {
    expect(() =>
      computeCost({ inputTokens: 1, outputTokens: 1 }, { inputPerMTok: -1, outputPerMTok: 1 }),
    ).toThrow(InvalidArgumentError);
  });
});
