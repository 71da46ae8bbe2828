/**
 * Two ProviderChain defects.
 *
 * 1. Unbounded state. Refs may be given per call (a session's `model` override, chosen by
 *    users), and the chain used to keep a resolved ref and a circuit for every distinct ref it
 *    ever saw: a long-lived process grew without bound. Now the ref cache is capped, a circuit
 *    is kept only while it has recent failures or is open/half-open, and under pressure the
 *    idle and then the oldest closed circuits are forgotten, never an open or half-open one.
 *
 * 2. Skipped refs never retried. A ref skipped for its open circuit, or left for a fallback
 *    instead of waiting out a long `retry-after`, was not looked at again once the fallbacks
 *    had failed too: the caller got "all providers failed" although the circuit had
 *    half-opened meanwhile or the wait was nearly over. Now such refs get one more attempt at
 *    the end, and an open circuit is reported as skipped.
 */
import { describe, expect, it } from "vitest";
import {
  AbortedError,
  AllProvidersFailedError,
  type ChainStreamEvent,
  CircuitOpenError,
  createProviderChain,
  type ModelProvider,
  type ProviderChainOptions,
  ProviderError,
  type ProviderErrorKind,
} from "../src/index.js";
import { CHAIN_STATE_SIZES } from "../src/providers/chain.js";
import { CircuitBreaker } from "../src/providers/circuit-breaker.js";
import {
  createEchoProvider,
  createScriptedProvider,
  type ScriptEntry,
} from "../src/testing/index.js";
import { activeTimeouts, fakeClock, readAll } from "./support.js";

const request = {
  messages: [{ role: "user" as const, content: [{ type: "text" as const, text: "hello" }] }],
};

function providerError(kind: ProviderErrorKind, provider: string, retryAfterMs?: number) {
  return new ProviderError(`${kind} failure`, {
    kind,
    provider,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

function chainOf(options: ProviderChainOptions, clock = fakeClock()) {
  return createProviderChain({ now: clock.now, sleep: clock.sleep, random: () => 0, ...options });
}

function failures(events: readonly ChainStreamEvent[]) {
  return events.filter(
    (event): event is Extract<ChainStreamEvent, { type: "attempt-failed" }> =>
      event.type === "attempt-failed",
  );
}

function text(events: readonly ChainStreamEvent[]): string {
  return events.map((event) => (event.type === "text-delta" ? event.text : "")).join("");
}

/** A provider whose every call fails at once with a `server` error (no script to run out). */
function failingProvider(id: string): ModelProvider & { calls: number } {
  const provider = {
    specificationVersion: "v1" as const,
    id,
    calls: 0,
    stream(): AsyncIterable<never> {
      provider.calls++;
      return {
        [Symbol.asyncIterator]: () => ({
          next: () => Promise.reject(providerError("server", id)),
        }),
      };
    },
  };
  return provider;
}

describe("ProviderChain: what it keeps per ref is bounded", () => {
  it("caches a bounded number of per-call refs, and holds no circuit for refs that never failed", async () => {
    const chain = chainOf({ providers: [createEchoProvider({ id: "echo" })] });
    for (let i = 0; i < 3_000; i++) {
      const { error } = await readAll(chain.stream(request, { models: [`echo/model-${i}`] }));
      expect(error).toBeUndefined();
    }
    const sizes = chain[CHAIN_STATE_SIZES]();
    expect(sizes.refs).toBeLessThanOrEqual(1_024);
    expect(sizes.circuits).toBe(0);
    // A ref forgotten by the cache still works when named again.
    const { events } = await readAll(chain.stream(request, { models: ["echo/model-0"] }));
    expect(events.some((event) => event.type === "finish")).toBe(true);
  });

  it("keeps a bounded number of circuits for refs that failed once each", async () => {
    const clock = fakeClock();
    const bad = failingProvider("bad");
    const chain = chainOf(
      {
        providers: [bad],
        retry: { maxAttempts: 1 },
        circuitBreaker: { failureThreshold: 2, windowMs: 60_000, openMs: 30_000 },
      },
      clock,
    );
    for (let i = 0; i < 3_000; i++) {
      const { error } = await readAll(chain.stream(request, { models: [`bad/model-${i}`] }));
      expect(AllProvidersFailedError.isInstance(error)).toBe(true);
    }
    expect(bad.calls).toBe(3_000);
    const sizes = chain[CHAIN_STATE_SIZES]();
    expect(sizes.circuits).toBeLessThanOrEqual(1_024);
    expect(sizes.refs).toBeLessThanOrEqual(1_024);
  });

  it("forgets a circuit once its failures have left the window", async () => {
    const clock = fakeClock();
    const chain = chainOf(
      {
        providers: [failingProvider("bad")],
        retry: { maxAttempts: 1 },
        circuitBreaker: { failureThreshold: 3, windowMs: 10_000, openMs: 5_000 },
      },
      clock,
    );
    await readAll(chain.stream(request, { models: ["bad/m"] }));
    expect(chain[CHAIN_STATE_SIZES]().circuits).toBe(1);
    clock.advance(10_000);
    expect(chain.circuitState("bad/m")).toBe("closed");
    expect(chain[CHAIN_STATE_SIZES]().circuits).toBe(0);
  });

  it("never forgets an open or a half-open circuit, however many other refs fail", async () => {
    const clock = fakeClock();
    const bad = failingProvider("bad");
    const chain = chainOf(
      {
        providers: [bad, createEchoProvider({ id: "echo" })],
        retry: { maxAttempts: 1 },
        circuitBreaker: { failureThreshold: 2, windowMs: 60_000, openMs: 30_000 },
      },
      clock,
    );
    const fail = (ref: string) => readAll(chain.stream(request, { models: [ref] }));
    // `bad/half` opens first; `bad/open` opens 20 s later.
    await fail("bad/half");
    await fail("bad/half");
    clock.advance(20_000);
    await fail("bad/open");
    await fail("bad/open");
    expect(chain.circuitState("bad/half")).toBe("open");
    expect(chain.circuitState("bad/open")).toBe("open");
    // A flood of other refs failing once each (within the window: none of them idle).
    for (let i = 0; i < 3_000; i++) await fail(`bad/flood-${i}`);
    expect(chain[CHAIN_STATE_SIZES]().circuits).toBeLessThanOrEqual(1_024 + 2);
    clock.advance(10_000);
    expect(chain.circuitState("bad/half")).toBe("half-open");
    expect(chain.circuitState("bad/open")).toBe("open");

    // The open circuit still refuses calls: no request reaches its provider.
    const callsBefore = bad.calls;
    const open = await readAll(chain.stream(request, { models: ["bad/open", "echo/m"] }));
    expect(open.error).toBeUndefined();
    expect(bad.calls).toBe(callsBefore);
    expect(CircuitOpenError.isInstance(failures(open.events)[0]?.error)).toBe(true);
    // The half-open one lets its single trial through, whose failure opens it again.
    const half = await readAll(chain.stream(request, { models: ["bad/half", "echo/m"] }));
    expect(half.error).toBeUndefined();
    expect(bad.calls).toBe(callsBefore + 1);
    expect(chain.circuitState("bad/half")).toBe("open");
  });
});

describe("CircuitBreaker: its bound", () => {
  const options = { failureThreshold: 3, windowMs: 1_000, openMs: 10_000 };

  it("forgets idle circuits first, then the closed ones that failed longest ago, never open ones", () => {
    let now = 0;
    const breaker = new CircuitBreaker(
      options,
      () => now,
      () => undefined,
      8,
    );
    const permit = { trial: false };
    // Two open circuits.
    for (const ref of ["p/open-1", "p/open-2"]) {
      for (let i = 0; i < 3; i++) breaker.failed(ref, permit);
    }
    // A closed circuit whose failures will have left the window (idle), then recent ones.
    breaker.failed("p/idle", permit);
    now = 2_000;
    for (let i = 0; i < 40; i++) breaker.failed(`p/recent-${i}`, permit);
    // At most the limit besides the open ones.
    expect(breaker.size).toBeLessThanOrEqual(8 + 2);
    expect(breaker.state("p/open-1")).toBe("open");
    expect(breaker.state("p/open-2")).toBe("open");
    // The newest keeps its count: two more failures open it.
    breaker.failed("p/recent-39", permit);
    breaker.failed("p/recent-39", permit);
    expect(breaker.state("p/recent-39")).toBe("open");
  });

  it("holds nothing for a ref whose trial closed its circuit", () => {
    let now = 0;
    const breaker = new CircuitBreaker(
      options,
      () => now,
      () => undefined,
    );
    for (let i = 0; i < 3; i++) breaker.failed("p/m", { trial: false });
    now = 10_000;
    const trial = breaker.acquire("p/m");
    expect(trial).toEqual({ trial: true });
    breaker.succeeded("p/m", trial as { trial: boolean });
    expect(breaker.state("p/m")).toBe("closed");
    expect(breaker.size).toBe(0);
  });
});

describe("ProviderChain: a last look at refs skipped before everything failed", () => {
  /** Scripted providers `a` and `b` behind a chain of `a/m` then `b/m` on a fake clock. */
  function abChain(
    aResponses: ScriptEntry[],
    bResponses: ScriptEntry[],
    options: Partial<ProviderChainOptions> = {},
    clock = fakeClock(),
  ) {
    const a = createScriptedProvider({ id: "a", responses: aResponses });
    const b = createScriptedProvider({ id: "b", responses: bResponses });
    const chain = chainOf({ providers: [a, b], models: ["a/m", "b/m"], ...options }, clock);
    return { a, b, chain, clock };
  }
  /** One attempt per ref, and a circuit that one failure opens for 5 s. */
  const trippy: Partial<ProviderChainOptions> = {
    retry: { maxAttempts: 1 },
    circuitBreaker: { failureThreshold: 1, windowMs: 60_000, openMs: 5_000 },
  };
  const starts = (events: readonly ChainStreamEvent[]) =>
    events.flatMap((e) => (e.type === "attempt-start" ? [`${e.ref}#${e.attempt}`] : []));

  it("tries a ref skipped for its open circuit once more when it has half-opened meanwhile", async () => {
    const clock = fakeClock();
    const { a, chain } = abChain(
      [{ error: providerError("server", "a") }, "a recovered"],
      [
        "b answers",
        // The fallback takes long enough to fail that `a`'s pause is over by then.
        () => {
          clock.advance(5_000);
          return { error: providerError("server", "b") };
        },
      ],
      trippy,
      clock,
    );
    expect(text((await readAll(chain.stream(request))).events)).toBe("b answers");
    expect(chain.circuitState("a/m")).toBe("open");

    const { events, error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(text(events)).toBe("a recovered");
    expect(a.requests).toHaveLength(2);
    expect(failures(events).map((f) => [f.ref, f.attempt, f.willRetry])).toEqual([
      ["a/m", 1, true],
      ["b/m", 1, true],
    ]);
    expect(starts(events)).toEqual(["b/m#1", "a/m#2"]);
    // Its trial succeeded: the circuit is closed.
    expect(chain.circuitState("a/m")).toBe("closed");
  });

  it("reports a circuit still open at the end as skipped in the all-failed error", async () => {
    const bError = providerError("server", "b");
    const { a, chain } = abChain(
      [{ error: providerError("server", "a") }],
      ["b answers", { error: bError }],
      trippy,
    );
    await readAll(chain.stream(request));
    const { events, error } = await readAll(chain.stream(request));
    expect(AllProvidersFailedError.isInstance(error)).toBe(true);
    const failed = error as AllProvidersFailedError;
    expect(failed.attempts).toHaveLength(2);
    expect(failed.attempts[0]).toMatchObject({ ref: "a/m", attempt: 1, skipped: true });
    expect(CircuitOpenError.isInstance(failed.attempts[0]?.error)).toBe(true);
    expect(failed.attempts[1]).toEqual({ ref: "b/m", attempt: 1, error: bError });
    expect(failed.message).toContain("a/m#1 skipped: CIRCUIT_OPEN: circuit for a/m is open");
    expect(failed.message).toContain("b/m#1: PROVIDER_ERROR: server failure");
    expect(a.requests).toHaveLength(1);
    // Nothing follows the last failure: it says so.
    expect(failures(events).at(-1)).toMatchObject({ ref: "b/m", willRetry: false, delayMs: 0 });
  });

  it("retries a ref left for its retry-after once the wait is over, when the fallback fails", async () => {
    const clock = fakeClock();
    const { chain } = abChain(
      [{ error: providerError("rate_limit", "a", 3_000) }, "a after the wait"],
      [
        () => {
          // The fallback fails a second later.
          clock.advance(1_000);
          return { error: providerError("auth", "b") };
        },
      ],
      {},
      clock,
    );
    const { events, error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(text(events)).toBe("a after the wait");
    // What is left of the retry-after, counted from a's failure.
    expect(clock.sleeps).toEqual([2_000]);
    expect(failures(events).map((f) => [f.ref, f.attempt, f.willRetry, f.delayMs])).toEqual([
      ["a/m", 1, true, 0],
      ["b/m", 1, true, 2_000],
    ]);
    expect(starts(events)).toEqual(["a/m#1", "b/m#1", "a/m#2"]);
  });

  it("tries such a ref only once more, and names every attempt when it fails again", async () => {
    const limited = { error: providerError("rate_limit", "a", 3_000) };
    const { a, chain } = abChain(
      [limited, limited, "never asked"],
      [{ error: providerError("auth", "b") }],
    );
    const { events, error } = await readAll(chain.stream(request));
    expect(AllProvidersFailedError.isInstance(error)).toBe(true);
    const attempts = (error as AllProvidersFailedError).attempts;
    expect(attempts.map((x) => `${x.ref}#${x.attempt}`)).toEqual(["a/m#1", "b/m#1", "a/m#2"]);
    expect(a.requests).toHaveLength(2);
    expect(failures(events).at(-1)).toMatchObject({ ref: "a/m", willRetry: false });
  });

  it("does not come back to a ref whose retry-after is longer than maxDelayMs", async () => {
    const { a, chain, clock } = abChain(
      [{ error: providerError("rate_limit", "a", 60_000) }, "never asked"],
      [{ error: providerError("auth", "b") }],
      { retry: { maxDelayMs: 30_000 } },
    );
    const { events, error } = await readAll(chain.stream(request));
    expect(AllProvidersFailedError.isInstance(error)).toBe(true);
    expect(a.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
    expect(failures(events).at(-1)).toMatchObject({ ref: "b/m", willRetry: false });
  });

  it("an abort ends the wait for a skipped ref at once, with no timer left", async () => {
    // Real clock and timers: the chain's own sleep.
    const { a, chain } = abChain(
      [{ error: providerError("rate_limit", "a", 25_000) }, "never asked"],
      [{ error: providerError("auth", "b") }],
      { now: () => performance.now(), sleep: undefined },
    );
    const controller = new AbortController();
    let error: unknown;
    const timersBefore = activeTimeouts();
    try {
      for await (const event of chain.stream(request, { signal: controller.signal })) {
        if (event.type === "attempt-failed" && event.ref === "b/m") {
          expect(event).toMatchObject({ willRetry: true });
          expect(event.delayMs).toBeGreaterThan(20_000);
          // Let the chain start its wait, then abort it.
          setImmediate(() => controller.abort());
        }
      }
    } catch (caught) {
      error = caught;
    }
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(a.requests).toHaveLength(1);
    expect(activeTimeouts()).toBeLessThanOrEqual(timersBefore);
  });
});
