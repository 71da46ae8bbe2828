import { describe, expect, it, vi } from "vitest";
describe("x", () => {
  it("fake perf", async () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    const a = performance.now();
    vi.advanceTimersByTime(5000);
    const b = performance.now();
    await new Promise((r) => setTimeout(r, 5));
    vi.useRealTimers();
    console.log(a, b, performance.now());
    expect(b - a).toBe(5000);
  });
});
