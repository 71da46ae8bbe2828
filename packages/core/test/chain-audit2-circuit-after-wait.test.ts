/**
 * A call that waits for a limit (a concurrency slot, room in the RPM window) must not carry
 * the circuit permit it was given before the wait past a circuit that opened meanwhile: an
 * open circuit is skipped without a call, and a half-open one lets exactly one trial through.
 */
import { describe, expect, it } from "vitest";
import {
  type ChainStreamEvent,
  CircuitOpenError,
  createProviderChain,
  type ModelRequest,
  ProviderError,
} from "../src/index.js";
import { createEchoProvider, createScriptedProvider } from "../src/testing/index.js";
import { type Deferred, deferred, readAll, tick, waitFor } from "./support.js";

const request: Omit<ModelRequest, "model"> = {
  messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
};

const serverError = () => new ProviderError("server failure", { kind: "server", provider: "a" });

/** A scripted response that streams nothing until `gate` settles, then fails or finishes. */
function held(gate: Deferred<void>, error?: unknown) {
  return {
    events: [
      { type: "response-start" as const, model: "m" },
      { type: "wait" as const, until: gate.promise },
      error === undefined
        ? { type: "finish" as const, reason: "stop" as const }
        : { type: "error" as const, error },
    ],
  };
}

function attemptsOn(events: readonly ChainStreamEvent[], ref: string) {
  return events.filter(
    (event): event is Extract<ChainStreamEvent, { type: "attempt-failed" }> =>
      event.type === "attempt-failed" && event.ref === ref,
  );
}

describe("ProviderChain: a circuit that opens while a call waits for a limit", () => {
  it("skips the open circuit for a call that was queued for a concurrency slot before it opened", async () => {
    const sleeps: number[] = [];
    const gate = deferred();
    const a = createScriptedProvider({
      id: "a",
      responses: [held(gate, serverError()), "from a/x"],
    });
    const b = createEchoProvider({ id: "b" });
    const chain = createProviderChain({
      providers: [a, b],
      models: ["a/m", "b/m"],
      retry: { maxAttempts: 1 },
      circuitBreaker: { failureThreshold: 1, openMs: 60_000 },
      limits: { a: { rpm: 2 }, "a/m": { concurrency: 1 } },
      now: () => 1_000_000,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    const first = readAll(chain.stream(request));
    await waitFor("the first call", () => a.requests.length === 1);
    // Queued behind the first call while the circuit is still closed.
    const second = readAll(chain.stream(request));
    for (let i = 0; i < 5; i++) await tick();
    gate.resolve();
    await first;
    expect(chain.circuitState("a/m")).toBe("open");
    const { events, error } = await second;
    expect(error).toBeUndefined();
    // The open circuit is skipped: no call to a, the attempt fails with CircuitOpenError.
    expect(a.requests).toHaveLength(1);
    const skipped = attemptsOn(events, "a/m");
    expect(skipped).toHaveLength(1);
    expect(CircuitOpenError.isInstance(skipped[0]?.error)).toBe(true);
    expect(events.filter((e) => e.type === "attempt-start").map((e) => e.ref)).toEqual(["b/m"]);
    // The skipped call took no room in provider a's RPM window, which it never used: one
    // more call to a fits at once.
    const third = await readAll(chain.stream(request, { models: ["a/x"] }));
    expect(third.error).toBeUndefined();
    expect(a.requests).toHaveLength(2);
    expect(sleeps).toEqual([]);
  });

  it("lets exactly one trial through a half-open circuit when a call queued for RPM room reaches it", async () => {
    let time = 1_000_000;
    const firstSleep = deferred();
    let sleeps = 0;
    const gate = deferred();
    const trialGate = deferred();
    const a = createScriptedProvider({
      id: "a",
      responses: [held(gate, serverError()), held(trialGate), "a second probe"],
    });
    const b = createEchoProvider({ id: "b" });
    const chain = createProviderChain({
      providers: [a, b],
      models: ["a/m", "b/m"],
      retry: { maxAttempts: 1 },
      circuitBreaker: { failureThreshold: 1, openMs: 5_000 },
      limits: { "a/m": { rpm: 1 } },
      now: () => time,
      // The first wait (the queued call's) ends when the test says; later ones at once.
      sleep: async (ms) => {
        sleeps++;
        if (sleeps === 1) await firstSleep.promise;
        time += ms;
      },
      random: () => 0.5,
    });
    const first = readAll(chain.stream(request));
    await waitFor("the first call", () => a.requests.length === 1);
    // Waits for room in a/m's RPM window while the circuit is closed.
    const queued = readAll(chain.stream(request));
    await waitFor("the queued call's wait", () => sleeps === 1);
    gate.resolve();
    await first;
    expect(chain.circuitState("a/m")).toBe("open");
    // The window's minute passes; the circuit's pause is long over: it is half-open.
    time += 60_000;
    expect(chain.circuitState("a/m")).toBe("half-open");
    firstSleep.resolve();
    await waitFor("the queued call to reach a", () => a.requests.length === 2);
    // That call is the half-open circuit's trial: another call is refused at once.
    const other = await readAll(chain.stream(request));
    expect(other.error).toBeUndefined();
    expect(a.requests).toHaveLength(2);
    expect(CircuitOpenError.isInstance(attemptsOn(other.events, "a/m")[0]?.error)).toBe(true);
    trialGate.resolve();
    expect((await queued).error).toBeUndefined();
    // Its success closes the circuit, as a trial's does.
    expect(chain.circuitState("a/m")).toBe("closed");
  });
});
