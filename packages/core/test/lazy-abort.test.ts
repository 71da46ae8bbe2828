import { describe, expect, it } from "vitest";
import { LazyAbortController } from "../src/runtime/lazy-abort.js";

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
