/**
 * Calls that wait for room in a per-minute window are served in the order they came. Without
 * a line, a request larger than the room a steady flow of small requests leaves would wait
 * for ever: each small one fits the moment it arrives, so the window never empties enough.
 */
import { describe, expect, it } from "vitest";
import { AbortedError } from "../src/index.js";
import { acquireLimits, Limiter } from "../src/providers/rate-limiter.js";

/** A clock that moves only when told, and sleeps that end when it passes their time. */
function fakeTime() {
  let clock = 0;
  const timers: Array<{ due: number; resolve: () => void }> = [];
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    now: () => clock,
    sleep: (ms: number, signal?: AbortSignal) =>
      new Promise<void>((resolve) => {
        const timer = { due: clock + ms, resolve };
        timers.push(timer);
        signal?.addEventListener("abort", () => timers.splice(timers.indexOf(timer), 1), {
          once: true,
        });
      }),
    /** Moves the clock to `to`, ending every sleep due by then, in order. */
    async advanceTo(to: number) {
      await settle();
      for (;;) {
        timers.sort((a, b) => a.due - b.due);
        const next = timers[0];
        if (next === undefined || next.due > to) break;
        timers.shift();
        clock = Math.max(clock, next.due);
        next.resolve();
        await settle();
      }
      clock = to;
      await settle();
    },
  };
}

describe("per-minute limits: calls waiting for room are served in order", () => {
  it("a large request is not starved by small ones that each fit when they come", async () => {
    const time = fakeTime();
    const limiter = new Limiter("a/m", { tpm: 1000 });
    const signal = new AbortController().signal;
    const granted = new Map<string, number>();
    const ask = (name: string, tokens: number) =>
      void acquireLimits([limiter], tokens, signal, time.now, time.sleep).then((lease) => {
        granted.set(name, time.now());
        lease.release(tokens);
      });
    // Small requests of 200 every 12 s: five a minute, the whole 1000 tokens. A request of
    // 900 comes at 30 s.
    for (let at = 0; at <= 300_000; at += 12_000) {
      await time.advanceTo(at);
      ask(`small@${at / 1000}s`, 200);
      if (at === 24_000) {
        await time.advanceTo(30_000);
        ask("large", 900);
      }
    }
    await time.advanceTo(400_000);
    const large = granted.get("large");
    expect(large).toBeDefined();
    // It runs once the smalls that came before it have left the window, a minute after the last.
    expect(large).toBe(24_000 + 60_000);
    // Nothing that came after it went first.
    for (const [name, at] of granted) {
      if (name === "large" || !name.startsWith("small@")) continue;
      const came = Number(name.slice(6, -1)) * 1000;
      if (came > 30_000) expect(at).toBeGreaterThanOrEqual(large!);
    }
    // And every small one was served in the end, in the order they came.
    const smalls = [...granted].filter(([name]) => name.startsWith("small@"));
    expect(smalls).toHaveLength(26);
    const times = smalls.map(([, at]) => at);
    expect(times).toEqual([...times].sort((a, b) => a - b));
  });

  it("a call that gives up its place lets the next one in line go", async () => {
    const time = fakeTime();
    const limiter = new Limiter("a/m", { rpm: 1 });
    const first = await acquireLimits(
      [limiter],
      1,
      new AbortController().signal,
      time.now,
      time.sleep,
    );
    first.release(1);
    // Second waits for the window (60 s); third queues behind it.
    const quitting = new AbortController();
    const second = acquireLimits([limiter], 1, quitting.signal, time.now, time.sleep);
    let third: number | undefined;
    void acquireLimits([limiter], 1, new AbortController().signal, time.now, time.sleep).then(
      (lease) => {
        third = time.now();
        lease.release(1);
      },
    );
    await time.advanceTo(10_000);
    quitting.abort();
    await expect(second).rejects.toBeInstanceOf(AbortedError);
    await time.advanceTo(61_000);
    // The third took the second's place: served when the window had room, at 60 s.
    expect(third).toBe(60_000);
  });

  it("calls that do not wait are not held: with room and nobody in line, each is counted at once", async () => {
    const time = fakeTime();
    const limiter = new Limiter("a/m", { tpm: 1000, rpm: 100 });
    const signal = new AbortController().signal;
    for (let i = 0; i < 5; i++) {
      const lease = await acquireLimits([limiter], 100, signal, time.now, time.sleep);
      lease.release(100);
    }
    expect(limiter.waitMs(500, time.now())).toBe(0);
    expect(limiter.waitMs(501, time.now())).toBe(60_000);
  });
});
