/**
 * `createHeartbeatClient`: a beat every interval, failed beats retried with exponential
 * backoff and full jitter, given up after `maxRetries`, stop leaving nothing behind.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  createHeartbeatClient,
  createManualClock,
  type HeartbeatClient,
  type HeartbeatSendContext,
  InvalidArgumentError,
  PresenceTracker,
} from "../src/index.js";
import { failureOf } from "./support.js";

const SECOND = 1_000;
const stops: Array<() => void> = [];

afterEach(() => {
  for (const stop of stops.splice(0)) stop();
});

describe("createHeartbeatClient", () => {
  /** A client whose sends fail while `failing` is true; records when each attempt was made. */
  function client(
    options: { random?: () => number; maxRetries?: number; intervalMs?: number } = {},
  ) {
    const clock = createManualClock(0);
    const attempts: HeartbeatSendContext[] = [];
    const control = { failing: false };
    const heartbeat: HeartbeatClient = createHeartbeatClient({
      clock,
      intervalMs: options.intervalMs ?? 30 * SECOND,
      random: options.random ?? (() => 0.5),
      backoff: { initialMs: 1_000, maxMs: 8_000, maxRetries: options.maxRetries ?? 5 },
      send: (context) => {
        attempts.push(context);
        if (control.failing) return Promise.reject(new Error("connection refused"));
        return undefined;
      },
    });
    stops.push(() => heartbeat.stop());
    return { heartbeat, clock, attempts, control };
  }

  it("sends a beat at once, then one every interval", async () => {
    const { heartbeat, clock, attempts } = client();
    heartbeat.start();
    await clock.advance(95 * SECOND);
    expect(attempts.map((a) => a.sentAt)).toEqual([0, 30_000, 60_000, 90_000]);
    expect(heartbeat.stats()).toMatchObject({ sent: 4, failedAttempts: 0 });
  });

  it("a failed beat is retried with exponential backoff and full jitter: retry n waits random() * min(maxMs, initialMs * 2^(n-1))", async () => {
    const draws = [0.5, 0.25, 0.75, 0.5, 0.9];
    const { heartbeat, clock, attempts, control } = client({ random: () => draws.shift()! });
    const delays: number[] = [];
    heartbeat.events.on("retry", ({ delayMs }) => delays.push(delayMs));
    control.failing = true;
    heartbeat.start();
    await clock.advance(20 * SECOND);
    // caps 1000, 2000, 4000, 8000, 8000 (maxMs)
    expect(delays).toEqual([500, 500, 3000, 4000, 7200]);
    expect(attempts.map((a) => a.attempt)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(attempts.map((a) => a.sentAt)).toEqual([0, 500, 1000, 4000, 8000, 15_200]);
  });

  it("jitter stays within its bounds: never negative, never reaching the cap", async () => {
    for (const draw of [0, 0.999_999]) {
      const { heartbeat, clock, control } = client({ random: () => draw });
      const delays: number[] = [];
      heartbeat.events.on("retry", ({ delayMs, attempt }) => {
        delays.push(delayMs);
        expect(delayMs).toBeGreaterThanOrEqual(0);
        expect(delayMs).toBeLessThan(heartbeat.retryDelayCap(attempt));
      });
      control.failing = true;
      heartbeat.start();
      await clock.advance(60 * SECOND);
      expect(delays.length).toBeGreaterThan(0);
      if (draw === 0) expect(new Set(delays)).toEqual(new Set([0]));
      else expect(delays.slice(0, 5)).toEqual([999, 1999, 3999, 7999, 7999]);
      heartbeat.stop();
    }
  });

  it("after maxRetries the beat is given up, and the next one comes at the next interval", async () => {
    const { heartbeat, clock, attempts, control } = client({ maxRetries: 2, random: () => 0 });
    const givenUp: number[] = [];
    heartbeat.events.on("give-up", ({ attempts: n }) => givenUp.push(n));
    control.failing = true;
    heartbeat.start();
    await clock.advance(SECOND);
    expect(givenUp).toEqual([3]);
    control.failing = false;
    await clock.advance(30 * SECOND);
    expect(attempts.map((a) => [a.sentAt, a.attempt])).toEqual([
      [0, 0],
      [0, 1],
      [0, 2],
      [30_000, 0],
    ]);
    expect(heartbeat.stats()).toMatchObject({ sent: 1, givenUp: 1, consecutiveFailures: 0 });
  });

  it("stop clears the timer and aborts the attempt in flight", async () => {
    const clock = createManualClock(0);
    let signal: AbortSignal | undefined;
    const heartbeat = createHeartbeatClient({
      clock,
      send: (context) => {
        signal = context.signal;
        return new Promise(() => {});
      },
    });
    heartbeat.start();
    heartbeat.stop();
    expect(signal?.aborted).toBe(true);
    expect(clock.activeTimers).toBe(0);
  });

  it("client beats reach a PresenceTracker, which measures their latency", async () => {
    const clock = createManualClock(0);
    const presence = new PresenceTracker({ clock }).start();
    stops.push(() => presence.stop());
    const heartbeat = createHeartbeatClient({
      clock,
      intervalMs: 10 * SECOND,
      // As if the beat had spent 42 ms on the wire.
      send: ({ sentAt }) => presence.beat("client-1", { sentAt: sentAt - 42 }),
    });
    stops.push(() => heartbeat.stop());
    heartbeat.start();
    await clock.advance(60 * SECOND);
    expect(presence.get("client-1")).toMatchObject({ status: "online", lastLatencyMs: 42 });
    expect(presence.stats().missedBeats).toBe(0);
  });

  it("bad options are refused with InvalidArgumentError", async () => {
    for (const options of [
      {},
      { send: () => {}, intervalMs: 0 },
      { send: () => {}, backoff: { factor: 0.5 } },
      { send: () => {}, backoff: { maxRetries: -1 } },
    ]) {
      const error = await failureOf(() => createHeartbeatClient(options as never));
      expect(InvalidArgumentError.isInstance(error), JSON.stringify(options)).toBe(true);
    }
  });
});
