import v8 from "node:v8";
import { describe, expect, it } from "vitest";
import {
  abortReasonOf,
  CANCELLATION,
  Cancellation,
  cancellationOf,
  defineLazySignal,
  isAbortedHolder,
  LazyAbortController,
  withLazySignal,
} from "../src/runtime/lazy-abort.js";

describe("LazyAbortController", () => {
  it("makes no signal until asked, and then a live one", () => {
    const controller = new LazyAbortController();
    expect(controller.aborted).toBe(false);
    const signal = controller.signal;
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(signal.aborted).toBe(false);
    expect(controller.signal).toBe(signal);
    let fired = 0;
    signal.addEventListener("abort", () => fired++);
    controller.abort("why");
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe("why");
    expect(fired).toBe(1);
    controller.abort("again");
    expect(fired).toBe(1);
    expect(signal.reason).toBe("why");
  });

  it("remembers an abort made before the signal, with its reason", () => {
    const controller = new LazyAbortController();
    controller.abort(new Error("stopped"));
    expect(controller.aborted).toBe(true);
    const signal = controller.signal;
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe("stopped");
  });

  it("gives an AbortError reason when aborted without one, like AbortController", () => {
    const controller = new LazyAbortController();
    controller.abort();
    const reason = controller.signal.reason as DOMException;
    const native = new AbortController();
    native.abort();
    expect(reason.name).toBe("AbortError");
    expect(reason.name).toBe((native.signal.reason as DOMException).name);
  });
});

describe("Cancellation", () => {
  it("tells aborted and reason without making a signal, and the signal made later agrees", () => {
    const cancellation = new Cancellation();
    expect(cancellation.reason).toBeUndefined();
    const why = new Error("stop");
    cancellation.abort(why);
    expect(cancellation.aborted).toBe(true);
    expect(cancellation.reason).toBe(why);
    cancellation.abort(new Error("again"));
    expect(cancellation.reason).toBe(why);
    expect(cancellation.signal.aborted).toBe(true);
    expect(cancellation.signal.reason).toBe(why);
  });

  it("calls each callback once, in order, after the signal's own listeners", () => {
    const cancellation = new Cancellation();
    const calls: string[] = [];
    cancellation.signal.addEventListener("abort", () => calls.push("signal"));
    cancellation.onAbort(() => calls.push(`first ${String(cancellation.reason)}`));
    cancellation.onAbort(() => calls.push("second"));
    cancellation.abort("why");
    cancellation.abort("again");
    expect(calls).toEqual(["signal", "first why", "second"]);
  });

  it("forgets a removed callback, and never calls one added after the abort", () => {
    const cancellation = new Cancellation();
    const calls: string[] = [];
    const remove = cancellation.onAbort(() => calls.push("removed"));
    cancellation.onAbort(() => calls.push("kept"));
    remove();
    remove();
    cancellation.abort();
    const late = cancellation.onAbort(() => calls.push("late"));
    late();
    expect(calls).toEqual(["kept"]);
    expect((cancellation.reason as DOMException).name).toBe("AbortError");
  });

  it("is found on a holder and read through it without making the holder's signal", () => {
    const cancellation = new Cancellation();
    let reads = 0;
    const holder = {
      get signal() {
        reads++;
        return cancellation.signal;
      },
      [CANCELLATION]: cancellation,
    };
    expect(cancellationOf(holder)).toBe(cancellation);
    expect(isAbortedHolder(holder)).toBe(false);
    cancellation.abort("why");
    expect(isAbortedHolder(holder)).toBe(true);
    expect(abortReasonOf(holder)).toBe("why");
    expect(reads).toBe(0);
    // A holder without one is read through its signal.
    const controller = new AbortController();
    controller.abort("plain");
    expect(cancellationOf({ signal: controller.signal })).toBeUndefined();
    expect(isAbortedHolder({ signal: controller.signal })).toBe(true);
    expect(abortReasonOf({ signal: controller.signal })).toBe("plain");
    expect(isAbortedHolder({})).toBe(false);
  });

  it("does not travel into a withLazySignal copy, whose signal is another", () => {
    const cancellation = new Cancellation();
    const other = new AbortController();
    const copy = withLazySignal({ a: 1, [CANCELLATION]: cancellation }, other);
    expect(cancellationOf(copy)).toBeUndefined();
    expect(copy.signal).toBe(other.signal);
    expect((copy as { a?: number }).a).toBe(1);
  });
});

describe("withLazySignal", () => {
  it("copies the options' own enumerable properties and reads the signal only when asked", () => {
    const controller = new AbortController();
    let reads = 0;
    const tag = Symbol("tag");
    const hidden = Symbol("hidden");
    const inherited = Object.create({ inherited: true }) as Record<PropertyKey, unknown>;
    inherited.headers = { a: "1" };
    inherited[tag] = "symbol";
    Object.defineProperty(inherited, "secret", { value: 1, enumerable: false });
    Object.defineProperty(inherited, hidden, { value: 2, enumerable: false });
    const options = withLazySignal(inherited, {
      get signal() {
        reads++;
        return controller.signal;
      },
    });
    expect(reads).toBe(0);
    expect(options.headers).toBe(inherited.headers);
    expect(options[tag]).toBe("symbol");
    expect(Object.hasOwn(options, "inherited")).toBe(false);
    expect(Object.hasOwn(options, "secret")).toBe(false);
    expect(Object.hasOwn(options, hidden)).toBe(false);
    expect(Object.keys(options).sort()).toEqual(["headers", "signal"]);
    expect(reads).toBe(0);
    expect(options.signal).toBe(controller.signal);
    expect(reads).toBe(1);
    // Own and enumerable: a spread (as a provider may make) carries it, reading it once.
    const spread = { ...options };
    expect(spread.signal).toBe(controller.signal);
    expect(reads).toBe(2);
  });

  it("replaces a signal in the options, and keeps an own __proto__ as a property", () => {
    const other = new AbortController().signal;
    const mine = new AbortController().signal;
    const parsed = JSON.parse('{"__proto__": {"polluted": true}, "signal": 1, "n": 2}') as object;
    const options = withLazySignal(parsed, { signal: mine }) as Record<string, unknown>;
    expect(options.signal).toBe(mine);
    expect(options.n).toBe(2);
    expect(Object.getPrototypeOf(options)).toBe(Object.prototype);
    expect(Object.hasOwn(options, "__proto__")).toBe(true);
    expect(options.polluted).toBeUndefined();
    expect(withLazySignal({ signal: other }, { signal: mine }).signal).toBe(mine);
  });

  it("gives every call's object for the same keys one hidden class and fast properties, unlike the spread", () => {
    // V8's own checks, compiled after allowing its natives syntax in this worker.
    v8.setFlagsFromString("--allow-natives-syntax");
    const sameShape = new Function("a", "b", "return %HaveSameMap(a, b)") as (
      a: object,
      b: object,
    ) => boolean;
    const fast = new Function("a", "return %HasFastProperties(a)") as (a: object) => boolean;
    const spreadWithGetter = (options: object, signal: AbortSignal) => ({
      ...options,
      get signal() {
        return signal;
      },
    });
    const one = new AbortController().signal;
    const two = new AbortController().signal;
    // The check can fail: the spread's objects differ in shape.
    expect(sameShape(spreadWithGetter({ n: 1 }, one), spreadWithGetter({ n: 2 }, two))).toBe(false);
    expect(
      sameShape(
        withLazySignal({ n: 1 }, { signal: one }),
        withLazySignal({ n: 2 }, { signal: two }),
      ),
    ).toBe(true);
    expect(
      sameShape(withLazySignal({}, { signal: one }), withLazySignal({}, { signal: two })),
    ).toBe(true);
    // An object literal with a getter is kept in dictionary mode (a hash table per object);
    // the shared accessor keeps the copy in fast mode.
    expect(fast(spreadWithGetter({ n: 1 }, one))).toBe(false);
    expect(fast(withLazySignal({ n: 1 }, { signal: one }))).toBe(true);
    const cancellation = new Cancellation();
    const context = defineLazySignal({ runId: "r", [CANCELLATION]: cancellation }, cancellation);
    expect(fast(context)).toBe(true);
    expect(
      sameShape(
        context,
        defineLazySignal({ runId: "s", [CANCELLATION]: cancellation }, cancellation),
      ),
    ).toBe(true);
    // The signal is read through the source only when asked, and a spread carries it.
    expect(cancellation.signal.aborted).toBe(false);
    expect({ ...context }.signal).toBe(cancellation.signal);
    expect(Object.keys(context)).toEqual(["runId", "signal"]);
    expect(Object.getPrototypeOf(context)).toBe(Object.prototype);
  });
});
