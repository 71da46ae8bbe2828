/**
 * `ResourceLimiter.acquire` aborted before it got a slot (its signal aborted already, or while
 * it waited): the call made no model request, so it must not use up `requestsPerMinute`.
 */
import { describe, expect, it } from "vitest";
import { AbortedError, ResourceLimiter } from "../src/index.js";

const at = () => Date.UTC(2026, 10, 21, 12);

describe("ResourceLimiter: an aborted acquire counts no request", () => {
  it("refuses an already aborted signal without counting a request", async () => {
    const limiter = new ResourceLimiter("acme", { requestsPerMinute: 1 }, { now: at });
    const error = await limiter
      .acquire("a", { signal: AbortSignal.abort(new AbortedError("gone")) })
      .catch((e: unknown) => e);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(limiter.usage.requestsLastMinute).toBe(0);
    limiter.admit();
    (await limiter.acquire("a")).release();
  });

  it("takes back the request of a call aborted while it waited for a slot", async () => {
    const limiter = new ResourceLimiter(
      "acme",
      { requestsPerMinute: 2, maxConcurrentRuns: 1 },
      { now: at },
    );
    const held = await limiter.acquire("a");
    const controller = new AbortController();
    const waiting = limiter.acquire("a", { signal: controller.signal });
    controller.abort(new AbortedError("gave up"));
    await expect(waiting).rejects.toThrow("gave up");
    expect(limiter.usage.requestsLastMinute).toBe(1);
    held.release();
    // The second request of the minute is still there to be made.
    (await limiter.acquire("a")).release();
    expect(limiter.usage.requestsLastMinute).toBe(2);
  });
});
