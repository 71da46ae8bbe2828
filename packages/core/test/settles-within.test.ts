import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { settlesWithin } from "../src/index.js";

describe("settlesWithin", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("resolves true once every promise settled, rejections included, and leaves no timer", async () => {
    let fulfil!: () => void;
    let reject!: (error: Error) => void;
    const a = new Promise<void>((resolve) => {
      fulfil = resolve;
    });
    const b = new Promise<void>((_resolve, fail) => {
      reject = fail;
    });
    const result = settlesWithin([a, b], 1_000);
    fulfil();
    reject(new Error("failed, but settled"));
    await expect(result).resolves.toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("resolves false when the time runs out first, and the promises go on", async () => {
    let fulfil!: (value: string) => void;
    const slow = new Promise<string>((resolve) => {
      fulfil = resolve;
    });
    const result = settlesWithin(new Set([slow]), 1_000);
    await vi.advanceTimersByTimeAsync(999);
    let done: boolean | undefined;
    void result.then((value) => {
      done = value;
    });
    await Promise.resolve();
    expect(done).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await expect(result).resolves.toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    fulfil("later");
    await expect(slow).resolves.toBe("later");
  });

  it("resolves true at once with nothing to wait for, without a timer", async () => {
    const result = settlesWithin([], 5_000);
    expect(vi.getTimerCount()).toBe(0);
    await expect(result).resolves.toBe(true);
  });

  it("takes a wait of 0 or less as no wait beyond what already settled", async () => {
    await expect(settlesWithin([Promise.resolve(1)], 0)).resolves.toBe(true);
    const never = new Promise<void>(() => {});
    const result = settlesWithin([never], -5);
    await vi.advanceTimersByTimeAsync(0);
    await expect(result).resolves.toBe(false);
  });
});
