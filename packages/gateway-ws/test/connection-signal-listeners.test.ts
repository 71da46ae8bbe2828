/**
 * A connection's abort signal ("the caller is gone") is listened to by every wait and call in
 * flight on it: up to `MAX_WAITS_PER_CONNECTION` waits by design. Node warns of a possible
 * listener leak past 10 listeners on one signal; a client legitimately waiting on a dozen runs
 * must not fill the gateway's log with that warning.
 */
import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MAX_WAITS_PER_CONNECTION, RunTracker } from "../src/runs.js";
import { closeClients, startStack, stopStacks, TestClient, TOKEN, waitFor } from "./support.js";

afterEach(async () => {
  vi.restoreAllMocks();
  await closeClients();
  await stopStacks();
});

describe("a connection's abort signal", () => {
  it("carries many waits at once without a MaxListenersExceededWarning", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => {
      if (warning.name === "MaxListenersExceededWarning") warnings.push(warning);
    };
    process.on("warning", onWarning);
    try {
      const stack = await startStack({
        responses: [],
        gateway: { requestsPerSecond: 10_000, requestBurst: 10_000 },
      });
      const wait = vi.spyOn(RunTracker.prototype, "wait");
      const client = await TestClient.connect(stack.url, { token: TOKEN });
      const count = 50;
      expect(count).toBeLessThan(MAX_WAITS_PER_CONNECTION);
      // Waits for runs that never come: each holds a listener on the connection's signal.
      const waits = Array.from({ length: count }, (_, i) =>
        client.request("agent.wait", { runId: `never-${i}`, timeoutMs: 60_000 }),
      );
      for (const waiting of waits) waiting.catch(() => undefined);
      await waitFor("every wait to be made", () => wait.mock.calls.length === count);
      const signal = wait.mock.calls[0]![2]!;
      expect(wait.mock.calls.every((args) => args[2] === signal)).toBe(true);
      expect(getEventListeners(signal, "abort").length).toBeGreaterThanOrEqual(count);
      // Warnings are emitted on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.map((warning) => warning.message)).toEqual([]);
      await client.close();
      await Promise.allSettled(waits);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
