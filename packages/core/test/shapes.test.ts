/**
 * The hidden classes of per-run and per-call objects survive a full garbage collection that
 * runs while none of those objects is alive (see `src/runtime/shapes.ts`), so the optimized
 * code that makes them is not thrown away ("weak objects" deoptimization).
 *
 * Checked with V8's own natives: a function is optimized by TurboFan while it makes objects
 * that escape, the objects are dropped, two full GCs run, and the function must still be
 * optimized. The first test shows that the check can fail: the same steps on a class the
 * library does not anchor throw its optimized code away.
 */
import v8 from "node:v8";
import vm from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { CallCancellation } from "../src/providers/backoff.js";
import { createProviderChain } from "../src/providers/chain.js";
import { Actor } from "../src/runtime/actor.js";
import {
  Cancellation,
  defineLazySignal,
  LazyAbortController,
  withLazySignal,
} from "../src/runtime/lazy-abort.js";
import { RunEventLog, RunHandle } from "../src/sessions/run-handle.js";
import { createScriptedProvider } from "../src/testing/scripted-provider.js";

v8.setFlagsFromString("--allow-natives-syntax");
v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
type AnyFunction = (...args: never[]) => unknown;
const prepare = new Function("f", "%PrepareFunctionForOptimization(f)") as (f: AnyFunction) => void;
const optimizeNext = new Function("f", "%OptimizeFunctionOnNextCall(f)") as (
  f: AnyFunction,
) => void;
const status = new Function("f", "return %GetOptimizationStatus(f)") as (f: AnyFunction) => number;
/** V8's `OptimizationStatus::kOptimized` bit (the same on Node 20, 22 and 24). */
const OPTIMIZED = 1 << 4;
const isOptimized = (f: AnyFunction) => (status(f) & OPTIMIZED) !== 0;

/**
 * Optimizes `make` (a fresh function that makes one object and keeps it in `kept`), drops
 * the objects it made, runs two full GCs, and tells whether `make` is still optimized.
 */
function optimizedAfterIdleGc(make: (kept: unknown[]) => void): boolean {
  const kept: unknown[] = [];
  prepare(make);
  for (let i = 0; i < 16; i++) make(kept);
  optimizeNext(make);
  make(kept);
  expect(isOptimized(make)).toBe(true);
  kept.length = 0;
  gc();
  gc();
  return isOptimized(make);
}

/** A per-run class like the library's, but without an anchor. */
class Unanchored {
  readonly kind = 1;
  next: Unanchored | null = null;
  constructor(readonly value: object) {}
}

describe("keepShape", () => {
  it("without an anchor, a full GC with no instance alive throws the optimized code away", () => {
    const make = (kept: unknown[]) => {
      kept.push(new Unanchored({}));
    };
    expect(optimizedAfterIdleGc(make)).toBe(false);
  });

  it("keeps the run handle, its event log and an iterator of it", () => {
    const log = (kept: unknown[]) => {
      kept.push(new RunEventLog());
    };
    expect(optimizedAfterIdleGc(log)).toBe(true);
    const iterator = (kept: unknown[]) => {
      kept.push(new RunEventLog().iterate());
    };
    expect(optimizedAfterIdleGc(iterator)).toBe(true);
    const handle = (kept: unknown[]) => {
      const log = new RunEventLog();
      kept.push(new RunHandle("run-1", "agent:main:main", "started", log, async () => false));
    };
    expect(optimizedAfterIdleGc(handle)).toBe(true);
  });

  it("keeps the run's cancellation and a lazy controller", () => {
    const cancellation = (kept: unknown[]) => {
      kept.push(new Cancellation());
    };
    expect(optimizedAfterIdleGc(cancellation)).toBe(true);
    const controller = (kept: unknown[]) => {
      kept.push(new LazyAbortController());
    };
    expect(optimizedAfterIdleGc(controller)).toBe(true);
  });

  it("keeps an empty object given a lazy signal (a task's context, a provider call's options)", () => {
    const source = new LazyAbortController();
    const context = (kept: unknown[]) => {
      kept.push(defineLazySignal({}, source));
    };
    expect(optimizedAfterIdleGc(context)).toBe(true);
    const options = (kept: unknown[]) => {
      kept.push(withLazySignal({ models: ["a/b"] }, source, ["models", "signal"]));
    };
    expect(optimizedAfterIdleGc(options)).toBe(true);
  });

  it("keeps a chain call's cancellation", () => {
    const call = (kept: unknown[]) => {
      kept.push(new CallCancellation());
    };
    expect(optimizedAfterIdleGc(call)).toBe(true);
  });

  it("keeps a chain call's stream (ProviderChain.stream)", async () => {
    const chain = createProviderChain({
      providers: [createScriptedProvider({ id: "p" })],
      models: ["p/m"],
    });
    const request = { messages: [] };
    // The library's own method: it makes the call's cancellation and its stream.
    const stream = chain.stream as unknown as AnyFunction;
    const stopped: Array<Promise<unknown>> = [];
    const open = () => {
      // Stopped before it is read: no provider is called.
      const made = chain.stream(request)[Symbol.asyncIterator]();
      stopped.push(made.return?.() ?? Promise.reject(new Error("the stream has no return()")));
    };
    prepare(stream);
    for (let i = 0; i < 16; i++) open();
    optimizeNext(stream);
    open();
    expect(isOptimized(stream)).toBe(true);
    await Promise.all(stopped.splice(0));
    gc();
    gc();
    expect(isOptimized(stream)).toBe(true);
  });

  it("keeps an actor's call envelope (Actor.call)", async () => {
    class Echo extends Actor<number, number> {
      protected override handleCall(n: number): number {
        return n;
      }
    }
    const echo = await new Echo().start();
    try {
      const call = Actor.prototype.call as unknown as AnyFunction;
      const replies: Array<Promise<unknown>> = [];
      prepare(call);
      for (let i = 0; i < 16; i++) replies.push(echo.call(i));
      optimizeNext(call);
      replies.push(echo.call(16));
      expect(isOptimized(call)).toBe(true);
      expect(await Promise.all(replies.splice(0))).toEqual(Array.from({ length: 17 }, (_, i) => i));
      gc();
      gc();
      expect(isOptimized(call)).toBe(true);
    } finally {
      await echo.stop();
    }
  });
});

afterEach(() => {
  gc();
});
