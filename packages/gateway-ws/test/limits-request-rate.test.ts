/**
 * `requestsPerSecond` below one: a gateway may allow 30 requests a minute (0.5 a second), and
 * a refused client learns when to come back in the rate's own unit. Out-of-range rates are a
 * typed error at construction, never a bucket that never fills.
 */
import { InvalidArgumentError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, MIN_REQUESTS_PER_SECOND } from "../src/index.js";
import {
  closeClients,
  startIdleRuntime,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeClients();
  await stopStacks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("requestsPerSecond under one", () => {
  it("30 a minute (0.5 a second): the burst is served, the next is refused with a retryAfterMs of up to two seconds", async () => {
    const stack = await startStack({ gateway: { requestsPerSecond: 0.5, requestBurst: 2 } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const results = await Promise.allSettled(
      Array.from({ length: 3 }, () => client.request("status", {})),
    );
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected"]);
    const refused = (results[2] as PromiseRejectedResult).reason;
    expect(refused).toMatchObject({
      code: "UNAVAILABLE",
      retryable: true,
      message: "rate limit: at most 30 requests per minute",
      details: { code: "RATE_LIMITED", limit: 0.5 },
    });
    // One token takes two seconds at this rate; the requests came within the same moment, so
    // more than half of that is left (a whole-number rate of 1 would leave at most one).
    expect(refused.retryAfterMs).toBeGreaterThan(1_000);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(2_000);
  });

  it("names an hourly rate in requests per hour", async () => {
    const stack = await startStack({ gateway: { requestsPerSecond: 10 / 3_600, requestBurst: 1 } });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect((await client.request("status", {})).ok).toBe(true);
    await expect(client.request("status", {})).rejects.toMatchObject({
      message: "rate limit: at most 10 requests per hour",
      details: { code: "RATE_LIMITED" },
    });
  });

  it.each([
    ["zero", 0],
    ["negative", -1],
    ["not a number", Number.NaN],
    ["infinite", Number.POSITIVE_INFINITY],
    ["under one a day", MIN_REQUESTS_PER_SECOND / 2],
    ["a string", "30/min" as unknown as number],
  ])("refuses a rate that is %s with InvalidArgumentError", async (_name, requestsPerSecond) => {
    const runtime = await startIdleRuntime(cleanups);
    const build = () =>
      createGateway({
        runtime,
        host: "127.0.0.1",
        port: 0,
        auth: { mode: "token", token: TOKEN },
        dashboardDir: false,
        requestsPerSecond,
      });
    expect(build).toThrow(InvalidArgumentError);
    expect(build).toThrow(/requestsPerSecond must be a positive number/);
  });

  it("takes one a day, the lowest rate", async () => {
    const stack = await startStack({
      gateway: { requestsPerSecond: MIN_REQUESTS_PER_SECOND, requestBurst: 1 },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    expect((await client.request("status", {})).ok).toBe(true);
    const refused = await client.request("status", {}).then(
      () => undefined,
      (error: { message: string; retryAfterMs: number }) => error,
    );
    expect(refused?.message).toBe("rate limit: at most 1 request per day");
    expect(refused?.retryAfterMs).toBeGreaterThan(86_000_000);
  });
});
