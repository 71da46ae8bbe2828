/**
 * Redis restarts under a real gateway on `@beamclaw/store-redis`: a private `redis-server`
 * (append-only, fsync per write) is killed and started again, once briefly and once for
 * longer. The rules: while Redis is down, new messages are refused with a typed,
 * retryable `STORE_UNAVAILABLE` the client sees (nothing is half-accepted) and the gateway
 * stays up; when Redis is back the gateway recovers by itself, without a restart; a client
 * that retries with the same idempotency key gets its message run exactly once; every message
 * acknowledged before the restarts is still there.
 */
import { request as httpRequest } from "node:http";
import { createRedisStore } from "@beamclaw/store-redis";
import { afterEach, describe, expect, it } from "vitest";
import { closeAllClients, GatewayClient, RpcError, rpcError } from "./support/client.js";
import { type ModelServer, startModelServer } from "./support/model-server.js";
import { RedisServer } from "./support/redis-server.js";
import { startStack, stopAllStacks, TOKEN } from "./support/stack.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await closeAllClients();
  await stopAllStacks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEY = "agent:main:main";

function healthz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: "127.0.0.1", port, path: "/healthz", agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    })
      .on("error", reject)
      .end();
  });
}

/**
 * Sends a message, retrying with the same idempotency key while the gateway answers with a
 * retryable error (as a client should), for at most 10 s. Returns how many tries it took.
 */
async function sendWithRetry(client: GatewayClient, message: string, idempotencyKey: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.request("chat.send", { sessionKey: KEY, message, idempotencyKey });
      return attempt;
    } catch (error) {
      if (!(error instanceof RpcError) || error.retryable !== true || attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function historyLines(client: GatewayClient): Promise<string[]> {
  const history = await client.request("chat.history", { sessionKey: KEY });
  return history.messages.map(
    (m: { role: string; content: Array<{ text?: string }> }) =>
      `${m.role}:${m.content.map((c) => c.text ?? "").join("")}`,
  );
}

describe("Redis restarting", () => {
  it("while Redis is down, sends are refused with a typed retryable error; when it is back the gateway recovers by itself, retries run once, and nothing acknowledged is lost", async () => {
    const redis = await RedisServer.start();
    cleanups.push(() => redis.stop());
    const model: ModelServer = await startModelServer();
    cleanups.push(() => model.close());
    const store = createRedisStore({ url: redis.url, prefix: "faults:", commandTimeoutMs: 2_000 });
    const stack = await startStack({ model, store });
    const client = await GatewayClient.connect(stack.url, TOKEN);

    model.push({ kind: "text", chunks: ["one done"] });
    await client.request("chat.send", { sessionKey: KEY, message: "one", idempotencyKey: "m-1" });
    expect((await client.chatEnd("m-1")).payload.state).toBe("final");

    // A brief restart between turns: the next message goes through once Redis answers.
    await redis.down();
    await redis.up();
    model.push({ kind: "text", chunks: ["two done"] });
    await sendWithRetry(client, "two", "m-2");
    expect((await client.chatEnd("m-2")).payload.state).toBe("final");

    // A longer outage: refused at once, typed and retryable; the process stays up.
    await redis.down();
    const refused = await rpcError(
      client.request("chat.send", { sessionKey: KEY, message: "three", idempotencyKey: "m-3" }),
    );
    expect(refused.code).toBe("UNAVAILABLE");
    expect(refused.details?.code).toBe("STORE_UNAVAILABLE");
    expect(refused.retryable).toBe(true);
    expect(await healthz(stack.port)).toBe(200);

    // Back: the same key is retried until accepted, and runs exactly once.
    await redis.up();
    model.push({ kind: "text", chunks: ["three done"] });
    await sendWithRetry(client, "three", "m-3");
    expect((await client.chatEnd("m-3")).payload.state).toBe("final");
    expect(await historyLines(client)).toEqual([
      "user:one",
      "assistant:one done",
      "user:two",
      "assistant:two done",
      "user:three",
      "assistant:three done",
    ]);
    expect(model.requests).toHaveLength(3);
    expect(await stack.store.queue.pending({})).toEqual([]);
  });
});
