/**
 * Memory pressure at the gateway: with a `MemoryPressureMonitor` given to the runtime and the
 * gateway, work is refused with a clear retryable error on both protocols while the process is
 * over its threshold (nothing of it is kept), `/readyz` says so and the log tells, and
 * everything is accepted again once the pressure drops.
 */
import { MemoryPressureMonitor } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  httpCall as call,
  closeClients,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const MiB = 1024 * 1024;
const KEY = "agent:main:main";

/** A monitor over a reading the test sets (the gateway sees the real monitor). */
function pressureGauge() {
  const reading = { rssBytes: 100 * MiB, heapUsedBytes: 50 * MiB, heapLimitBytes: 1024 * MiB };
  const monitor = new MemoryPressureMonitor({
    maxHeapUsedBytes: 100 * MiB,
    retryAfterMs: 3_000,
    read: () => ({ ...reading }),
  });
  return {
    monitor,
    press() {
      reading.heapUsedBytes = 150 * MiB;
      monitor.check();
    },
    relieve() {
      reading.heapUsedBytes = 40 * MiB;
      monitor.check();
    },
  };
}

describe("memory pressure at the gateway", () => {
  it("refuses chat.send with a retryable UNAVAILABLE naming memory as the reason, keeps nothing, and accepts the same message after recovery", async () => {
    const gauge = pressureGauge();
    const stack = await startStack({
      responses: ["answer after recovery"],
      runtime: { memoryPressure: gauge.monitor },
      gateway: { memoryPressure: gauge.monitor },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    gauge.press();
    const error = await rpcError(
      client.request("chat.send", { sessionKey: KEY, message: "hi", idempotencyKey: "mp-1" }),
    );
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.retryable).toBe(true);
    expect(error.retryAfterMs).toBe(3_000);
    expect(error.details).toEqual({ code: "OVERLOADED", reason: "memory" });
    expect(error.message).toMatch(/memory pressure/);
    expect(await stack.store.queue.pending({})).toEqual([]);
    expect(await stack.store.transcripts.read(KEY)).toEqual([]);

    gauge.relieve();
    const ack = await client.request("chat.send", {
      sessionKey: KEY,
      message: "hi",
      idempotencyKey: "mp-1",
    });
    expect(ack).toEqual({ runId: "mp-1", status: "started" });
    const final = await client.waitEvent("chat", (p) => p.runId === "mp-1" && p.state === "final");
    expect(final.payload.message.content[0].text).toBe("answer after recovery");
  });

  it("answers the OpenAI-compatible endpoint with 503 memory_pressure and Retry-After", async () => {
    const gauge = pressureGauge();
    const { port, store } = await startStack({
      runtime: { memoryPressure: gauge.monitor },
      gateway: { memoryPressure: gauge.monitor },
    });
    gauge.press();
    const reply = await call(port, "/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: { model: "beamclaw", messages: [{ role: "user", content: "hi" }] },
    });
    expect(reply.status).toBe(503);
    expect(reply.headers["retry-after"]).toBe("3");
    expect(reply.json.error).toMatchObject({ type: "server_error", code: "memory_pressure" });
    expect(await store.queue.pending({})).toEqual([]);
  });

  it("reports not ready on /readyz while under pressure, ready again after, and logs both", async () => {
    const gauge = pressureGauge();
    const { port, gateway } = await startStack({
      runtime: { memoryPressure: gauge.monitor },
      gateway: { memoryPressure: gauge.monitor },
    });
    gauge.press();
    expect(await call(port, "/readyz")).toMatchObject({
      status: 503,
      json: { ready: false, status: "memory-pressure" },
    });
    // Still live: the process is fine, it only sheds load.
    expect((await call(port, "/healthz")).status).toBe(200);
    gauge.relieve();
    expect(await call(port, "/readyz")).toMatchObject({ status: 200, json: { ready: true } });
    const lines = gateway.log.tail({}).lines.join("\n");
    expect(lines).toMatch(/memory pressure \(heap: heap 150 MiB.*refusing new runs/);
    expect(lines).toMatch(/memory pressure over after \d+ ms/);
  });
});
