/**
 * An `announce` delivery has a time limit of its own (`announceTimeoutMs`, default 30 s): a
 * `deliver` callback that never settles is recorded as a failed delivery (`TIMEOUT: ...`),
 * as a throwing one is, and the run ends normally instead of hanging until it is cleared as
 * stuck two hours later. The callback's `signal` tells it that it was given up on.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  type CronDeliver,
  CronService,
  InvalidArgumentError,
  MemoryStore,
  TimeoutError,
} from "../src/index.js";
import { type CronFixture, DAY, startCron } from "./cron-support.js";

const fixtures: CronFixture[] = [];

async function cron(options: Parameters<typeof startCron>[0] = {}): Promise<CronFixture> {
  const fixture = await startCron(options);
  fixtures.push(fixture);
  return fixture;
}

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
});

const ANNOUNCE = { kind: "announce", channel: "slack", target: "#ops" } as const;

describe("announce delivery time limit", () => {
  it("a deliver callback that never settles fails the delivery after announceTimeoutMs; the run ends ok", async () => {
    const signals: AbortSignal[] = [];
    const deliver: CronDeliver = (_target, _text, context) => {
      signals.push(context.signal);
      return new Promise<void>(() => {}); // never settles
    };
    const { service } = await cron({ deliver, announceTimeoutMs: 50 });
    await service.add({ id: "news", schedule: { every: DAY }, prompt: "p", delivery: ANNOUNCE });
    const run = await service.runNow("news");
    expect(run.status).toBe("ok");
    expect(run.delivery).toEqual({
      kind: "announce",
      status: "error",
      error: "TIMEOUT: the deliver callback did not settle within 50 ms",
    });
    // The callback was told: its signal aborted with the typed error.
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(true);
    expect(TimeoutError.isInstance(signals[0]!.reason)).toBe(true);
    expect((signals[0]!.reason as TimeoutError).timeoutMs).toBe(50);
    // The run is recorded and over: the job is not running, and a delivery error is no run error.
    const job = await service.get("news");
    expect(job.state.runningAt).toBeUndefined();
    expect(job.state.lastStatus).toBe("ok");
    expect(job.state.consecutiveErrors).toBe(0);
    expect((await service.runs("news"))[0]).toMatchObject({
      runId: run.runId,
      delivery: { status: "error" },
    });
    // The next run is not held up by the hung delivery of the last one.
    expect((await service.runNow("news")).delivery).toMatchObject({ status: "error" });
  });

  it("a callback that settles within the limit is delivered, and its signal never aborts", async () => {
    const signals: AbortSignal[] = [];
    const { service } = await cron({
      announceTimeoutMs: 5_000,
      deliver: async (_target, _text, context) => {
        signals.push(context.signal);
        await new Promise((resolve) => setTimeout(resolve, 5));
      },
    });
    await service.add({ id: "news", schedule: { every: DAY }, prompt: "p", delivery: ANNOUNCE });
    expect((await service.runNow("news")).delivery).toEqual({ kind: "announce", status: "ok" });
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
  });

  it("a hung delivery is given up when the service stops, leaving no timer behind", async () => {
    let entered!: () => void;
    const delivering = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const signals: AbortSignal[] = [];
    const { service } = await cron({
      // Far longer than the test: only the stop can end the wait.
      announceTimeoutMs: 60_000,
      deliver: (_target, _text, context) => {
        signals.push(context.signal);
        entered();
        return new Promise<void>(() => {});
      },
    });
    await service.add({ id: "news", schedule: { every: DAY }, prompt: "p", delivery: ANNOUNCE });
    const run = service.runNow("news").catch((error: unknown) => error);
    await delivering;
    await service.stop();
    await run;
    expect(signals[0]!.aborted).toBe(true);
  });

  it("announceTimeoutMs must be a positive number of ms", () => {
    for (const bad of [0, -1, Number.NaN, "30000", {}]) {
      expect(
        () =>
          new CronService({
            agentId: "ops",
            store: new MemoryStore(),
            runJob: async () => ({ status: "ok" }),
            announceTimeoutMs: bad as unknown as number,
          }),
        `announceTimeoutMs ${String(bad)}`,
      ).toThrow(InvalidArgumentError);
    }
  });
});
