/**
 * Provider-chain audit: window room of a request that was never made, a retry-after that a
 * healthy fallback makes pointless to wait for, TPM room freed when a call's real usage is
 * smaller than its estimate, a provider stream without an iterator, and a circuit whose
 * window is 0.
 */
import { describe, expect, it } from "vitest";
import {
  type ChainStreamEvent,
  createProviderChain,
  type ModelProvider,
  type ModelRequest,
  type ProviderChainOptions,
  ProviderError,
} from "../src/index.js";
import { acquireLimits, Limiter } from "../src/providers/rate-limiter.js";
import { createEchoProvider, createScriptedProvider } from "../src/testing/index.js";
import { readAll, tick } from "./support.js";

const request: Omit<ModelRequest, "model"> = {
  messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
};

function failures(events: readonly ChainStreamEvent[]) {
  return events.filter(
    (event): event is Extract<ChainStreamEvent, { type: "attempt-failed" }> =>
      event.type === "attempt-failed",
  );
}

describe("ProviderChain: a request that was never made takes no room in the windows", () => {
  it("a caller that stops reading at attempt-start leaves the RPM window as it was", async () => {
    const sleeps: number[] = [];
    const a = createEchoProvider({ id: "a" });
    const chain = createProviderChain({
      providers: [a],
      models: ["a/m"],
      limits: { "a/m": { rpm: 1 } },
      now: () => 1_000_000,
      // The clock stands still: a wait for room would never end, so it fails the call.
      sleep: async (ms) => {
        sleeps.push(ms);
        throw new Error(`waited ${ms} ms for room`);
      },
    });
    const stream = chain.stream(request)[Symbol.asyncIterator]();
    const first = await stream.next();
    expect(first.value).toMatchObject({ type: "attempt-start", ref: "a/m" });
    await stream.return?.();
    expect(a.requests).toHaveLength(0);
    // No request reached the provider: the next call fits the window of 1 at once.
    const { error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(a.requests).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it("a call aborted at attempt-start leaves the RPM window as it was", async () => {
    const sleeps: number[] = [];
    const a = createEchoProvider({ id: "a" });
    const chain = createProviderChain({
      providers: [a],
      models: ["a/m"],
      limits: { a: { rpm: 1 } },
      now: () => 1_000_000,
      // The clock stands still: a wait for room would never end, so it fails the call.
      sleep: async (ms) => {
        sleeps.push(ms);
        throw new Error(`waited ${ms} ms for room`);
      },
    });
    const controller = new AbortController();
    const stream = chain.stream(request, { signal: controller.signal })[Symbol.asyncIterator]();
    await stream.next();
    controller.abort();
    const { error: aborted } = await readAll({ [Symbol.asyncIterator]: () => stream });
    expect(aborted).toBeDefined();
    expect(a.requests).toHaveLength(0);
    const { error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(sleeps).toEqual([]);
  });
});

/**
 * Provider `a` fails once with a retryable error asking for `retryAfterMs`, then answers;
 * `b` (a fallback when `models` names it) echoes. Sleeps are recorded and end at once.
 */
function retryAfterChain(
  models: readonly string[],
  retryAfterMs: number,
  extra: Partial<ProviderChainOptions> = {},
) {
  const sleeps: number[] = [];
  const a = createScriptedProvider({
    id: "a",
    responses: [
      {
        error: new ProviderError("rate limited", {
          kind: "rate_limit",
          provider: "a",
          retryAfterMs,
        }),
      },
      "answer from a",
    ],
  });
  const b = createEchoProvider({ id: "b" });
  const chain = createProviderChain({
    providers: [a, b],
    models,
    now: () => 0,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...extra,
  });
  return { a, b, chain, sleeps };
}

describe("ProviderChain: a retry-after with a healthy fallback", () => {
  it("fails over at once on a 429 with retry-after 30 s instead of sleeping (default retry options)", async () => {
    const { a, b, chain, sleeps } = retryAfterChain(["a/m", "b/m"], 30_000);
    const { events, error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(sleeps).toEqual([]);
    expect(a.requests).toHaveLength(1);
    expect(b.requests).toHaveLength(1);
    expect(failures(events)[0]).toMatchObject({ ref: "a/m", willRetry: true, delayMs: 0 });
  });

  it("still waits out a retry-after within maxDelayMs on the last ref", async () => {
    const { a, chain, sleeps } = retryAfterChain(["a/m"], 30_000);
    const { error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(sleeps).toEqual([30_000]);
    expect(a.requests).toHaveLength(2);
  });

  it("retries a fallback-backed ref after a retry-after no longer than the backoff ceiling", async () => {
    const { a, b, chain, sleeps } = retryAfterChain(["a/m", "b/m"], 300, {
      retry: { baseDelayMs: 500 },
      random: () => 0,
    });
    const { error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(sleeps).toEqual([300]);
    expect(a.requests).toHaveLength(2);
    expect(b.requests).toHaveLength(0);
  });
});

describe("TPM: room freed by a usage smaller than the estimate", () => {
  it("a call waiting for room goes as soon as a finished call's real usage makes room", async () => {
    let clock = 0;
    const sleeps: Array<{ ms: number; signal: AbortSignal }> = [];
    // A sleep that never ends by itself: only an abort (or the wake-up under test) ends it.
    const sleep = (ms: number, signal: AbortSignal) =>
      new Promise<void>((_resolve, reject) => {
        sleeps.push({ ms, signal });
        signal.addEventListener("abort", () => reject(new Error("sleep aborted")), {
          once: true,
        });
      });
    const limiter = new Limiter("a/m", { tpm: 10_000 });
    const signal = new AbortController().signal;
    const first = await acquireLimits([limiter], 8_500, signal, () => clock, sleep);
    let granted = false;
    const second = acquireLimits([limiter], 8_500, signal, () => clock, sleep).then((lease) => {
      granted = true;
      return lease;
    });
    for (let i = 0; i < 5; i++) await tick();
    expect(granted).toBe(false);
    expect(sleeps.map((s) => s.ms)).toEqual([60_000]);
    clock = 1_000;
    // The first call used 1 000 tokens, not 8 500: 9 000 are free now.
    first.release(1_000);
    for (let i = 0; i < 5; i++) await tick();
    expect(granted).toBe(true);
    const lease = await second;
    // The sleep it no longer needs was cancelled (its timer cleared).
    expect(sleeps[0]?.signal.aborted).toBe(true);
    lease.release(8_500);
  });

  it("an abort still ends a call waiting for TPM room at once, its sleep cancelled", async () => {
    const sleeps: AbortSignal[] = [];
    const sleep = (_ms: number, signal: AbortSignal) =>
      new Promise<void>(() => {
        sleeps.push(signal);
      });
    const limiter = new Limiter("a/m", { tpm: 1_000 });
    const first = await acquireLimits(
      [limiter],
      1_000,
      new AbortController().signal,
      () => 0,
      sleep,
    );
    const controller = new AbortController();
    const waiting = acquireLimits([limiter], 500, controller.signal, () => 0, sleep);
    for (let i = 0; i < 5; i++) await tick();
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: "ABORTED" });
    expect(sleeps[0]?.aborted).toBe(true);
    first.release(1_000);
  });
});

describe("ProviderChain: a provider whose stream is not an async iterable", () => {
  it("fails over from a stream whose iterator is undefined instead of taking it as an empty answer", async () => {
    const broken: ModelProvider = {
      specificationVersion: "v1",
      id: "a",
      stream: () =>
        ({ [Symbol.asyncIterator]: () => undefined }) as unknown as AsyncIterable<never>,
    };
    const b = createEchoProvider({ id: "b" });
    const chain = createProviderChain({ providers: [broken, b], models: ["a/m", "b/m"] });
    const { events, error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(failures(events)[0]).toMatchObject({ ref: "a/m", willRetry: true });
    expect(failures(events)[0]?.error).toBeInstanceOf(TypeError);
    expect(b.requests).toHaveLength(1);
  });

  it("fails over from a provider whose stream() throws synchronously or returns no iterable", async () => {
    const throwing: ModelProvider = {
      specificationVersion: "v1",
      id: "a",
      stream: () => {
        throw new Error("sync boom");
      },
    };
    const nothing: ModelProvider = {
      specificationVersion: "v1",
      id: "n",
      stream: () => null as unknown as AsyncIterable<never>,
    };
    const b = createEchoProvider({ id: "b" });
    const chain = createProviderChain({
      providers: [throwing, nothing, b],
      models: ["a/m", "n/m", "b/m"],
    });
    const { events, error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(failures(events).map((f) => f.ref)).toEqual(["a/m", "n/m"]);
    expect(b.requests).toHaveLength(1);
  });
});

describe("ProviderChain: a circuit with a zero window", () => {
  it("opens on failureThreshold 1 with windowMs 0: the failure itself always counts", async () => {
    const a = createScriptedProvider({
      id: "a",
      responses: [{ error: new ProviderError("down", { kind: "server", provider: "a" }) }],
    });
    const b = createEchoProvider({ id: "b" });
    const chain = createProviderChain({
      providers: [a, b],
      models: ["a/m", "b/m"],
      retry: { maxAttempts: 1 },
      circuitBreaker: { failureThreshold: 1, windowMs: 0, openMs: 60_000 },
      now: () => 5_000,
    });
    const { error } = await readAll(chain.stream(request));
    expect(error).toBeUndefined();
    expect(chain.circuitState("a/m")).toBe("open");
  });
});
