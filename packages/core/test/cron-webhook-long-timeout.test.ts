/**
 * A webhook time limit beyond setTimeout's 2^31-1 ms: Node would fire such a timer at once
 * (after 1 ms), failing every delivery; the limit is kept instead. setTimeout is faked (as
 * Node's, it turns an overlong delay into 1 ms), so nothing waits for real time.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { type CronFixture, DAY, startCron } from "./cron-support.js";
import { deferred, tick } from "./support.js";

const fixtures: CronFixture[] = [];

afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.service.stop();
  vi.useRealTimers();
});

describe("webhookTimeoutMs beyond 2^31-1 ms", () => {
  it("a webhook that answers after a second is delivered, not aborted at once", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const answer = deferred<Response>();
    let signal: AbortSignal | undefined;
    // Like the real fetch: rejects when its signal aborts.
    const fetch = ((_url: string, init: RequestInit) => {
      signal = init.signal ?? undefined;
      signal?.addEventListener("abort", () => answer.reject(signal?.reason));
      return answer.promise;
    }) as unknown as typeof globalThis.fetch;
    const fixture = await startCron({ fetch, webhookTimeoutMs: 2 ** 31 });
    fixtures.push(fixture);
    const { service } = fixture;
    await service.add({
      id: "w",
      schedule: { every: DAY },
      prompt: "p",
      delivery: { kind: "webhook", url: "http://127.0.0.1:9/hook" },
    });
    const run = service.runNow("w");
    for (let i = 0; i < 5 && signal === undefined; i++) await tick();
    expect(signal).toBeDefined();
    vi.advanceTimersByTime(1_000);
    expect(signal?.aborted).toBe(false);
    answer.resolve(new Response("thanks", { status: 200 }));
    expect((await run).delivery).toEqual({ kind: "webhook", status: "ok", statusCode: 200 });
    expect(vi.getTimerCount()).toBe(0); // the time limit's timer is gone with the delivery
  });
});
