/**
 * Crash audit: the host's `onConnectionClose` runs from the socket's close event; one that
 * throws must be logged, not end the process with an uncaught exception (vitest reports one
 * as an error of the run), and the gateway goes on serving.
 */
import { afterEach, expect, it } from "vitest";
import type { ConnectionCloseInfo } from "../src/index.js";
import { closeClients, deferred, startStack, stopStacks, TestClient, TOKEN } from "./support.js";

afterEach(async () => {
  await closeClients();
  await stopStacks();
});

it("an onConnectionClose that throws is logged, and the gateway still serves", async () => {
  const lines: string[] = [];
  const called = deferred<ConnectionCloseInfo>();
  const stack = await startStack({
    gateway: {
      logSink: (line) => lines.push(line),
      onConnectionClose: (info) => {
        called.resolve(info);
        throw new Error("metrics backend unreachable");
      },
    },
  });
  const first = await TestClient.connect(stack.url, { token: TOKEN });
  await first.close();
  const info = await called.promise;
  expect(
    lines.some((l) =>
      l.includes(`onConnectionClose failed for conn=${info.connId}: metrics backend unreachable`),
    ),
  ).toBe(true);
  const second = await TestClient.connect(stack.url, { token: TOKEN });
  expect(await second.request("health")).toBeDefined();
});
