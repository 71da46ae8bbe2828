/**
 * While Redis cannot be reached, every operation rejects quickly with a retryable
 * `StoreError` (`STORE_UNAVAILABLE`) instead of waiting for a connection, and nothing is
 * left running. The bounds checked here are functional (an answer instead of a hang), set
 * far above the expected time so a busy machine does not fail them.
 */
import { StoreError } from "@beamclaw/core";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { uniquePrefix } from "./support/redis.js";
import { freePort, RedisServerProcess } from "./support/redis-server.js";
import { codeOf, settleWithin, waitUntil } from "./support/settle.js";

/** Far above what failing fast takes, far below what a hang would take. */
const FAIL_FAST_BOUND_MS = 1_500;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function privateServer(): Promise<RedisServerProcess> {
  const server = await RedisServerProcess.start({ appendonly: false });
  cleanups.push(() => server.stop());
  return server;
}

function track(store: RedisStore): RedisStore {
  cleanups.push(() => store.close());
  return store;
}

describe("a store whose Redis cannot be reached", () => {
  it("open() rejects with a retryable STORE_UNAVAILABLE when nothing listens on the port", async () => {
    const port = await freePort();
    const store = track(
      createRedisStore({ url: `redis://127.0.0.1:${port}`, prefix: uniquePrefix() }),
    );
    const outcome = await settleWithin(store.open(), FAIL_FAST_BOUND_MS);
    expect(codeOf(outcome)).toBe("STORE_UNAVAILABLE");
    const error = (outcome as { error: StoreError }).error;
    expect(StoreError.isInstance(error)).toBe(true);
    expect(error.isRetryable).toBe(true);
    expect(error.message).toContain(`127.0.0.1:${port}`);
    // A failed open leaves the store closed, not half open.
    expect(store.isOpen).toBe(false);
    expect(codeOf(await settleWithin(store.kv.get("k"), FAIL_FAST_BOUND_MS))).toBe("STORE_CLOSED");
  });

  it("a failed open() can be retried and succeeds once Redis answers", async () => {
    const server = await privateServer();
    await server.kill();
    const store = track(createRedisStore({ url: server.url, prefix: uniquePrefix() }));
    expect(codeOf(await settleWithin(store.open(), FAIL_FAST_BOUND_MS))).toBe("STORE_UNAVAILABLE");
    await server.restart();
    await store.open();
    expect(await store.kv.set("k", 1)).toBe(true);
    expect(await store.kv.get("k")).toBe(1);
  });
});

describe("a store whose Redis goes down while it is open", () => {
  it("rejects every kind of operation with STORE_UNAVAILABLE at once, then works again by itself when Redis is back", async () => {
    const server = await privateServer();
    const store = track(createRedisStore({ url: server.url, prefix: uniquePrefix() }));
    await store.open();
    await store.sessions.put({ key: "s", agentId: "main", createdAt: 1, updatedAt: 1 });

    await server.kill();
    const operations: Array<[string, () => Promise<unknown>]> = [
      ["sessions.get", () => store.sessions.get("s")],
      ["sessions.list", () => store.sessions.list()],
      ["transcripts.append", () => store.transcripts.append("s", [{ n: 1 }])],
      ["cron.putJob", () => store.cron.putJob({ id: "j", agentId: "main" })],
      ["devices.list", () => store.devices.list()],
      ["approvals.list", () => store.approvals.list("s")],
      [
        "queue.enqueue",
        () => store.queue.enqueue({ idempotencyKey: "k", sessionKey: "s", payload: {} }),
      ],
      ["queue.replay", () => store.queue.replay()],
      ["kv.set", () => store.kv.set("k", 1)],
      ["locks.acquire", () => store.locks.acquire("l", { owner: "o", ttlMs: 1_000 })],
    ];
    for (const [name, operation] of operations) {
      const outcome = await settleWithin(operation(), FAIL_FAST_BOUND_MS);
      expect(codeOf(outcome), name).toBe("STORE_UNAVAILABLE");
      expect((outcome as { error: StoreError }).error.isRetryable, name).toBe(true);
    }

    await server.restart();
    // No open() again: the store's client reconnects on its own.
    await waitUntil("the store to reconnect", async () => {
      const outcome = await settleWithin(store.sessions.get("s"), FAIL_FAST_BOUND_MS);
      return outcome.status === "fulfilled";
    });
    expect(await store.kv.set("after", true)).toBe(true);
    expect(store.isOpen).toBe(true);
  });

  it("rejects commands already sent when the connection drops, instead of waiting for a reconnect", async () => {
    const server = await privateServer();
    const store = track(createRedisStore({ url: server.url, prefix: uniquePrefix() }));
    await store.open();
    // Frozen, the server keeps the connection open but answers nothing: the commands are
    // written and wait for replies. Then it dies, and the connection with it.
    server.pause();
    const inFlight = [
      store.kv.set("a", 1),
      store.transcripts.append("s", [{ n: 1 }]),
      store.kv.get("a"),
    ];
    const settled = Promise.all(inFlight.map((op) => settleWithin(op, 3 * FAIL_FAST_BOUND_MS)));
    expect((await settleWithin(inFlight[0]!, 200)).status).toBe("pending");
    await server.kill();
    const outcomes = await settled;
    expect(outcomes.map(codeOf)).toEqual([
      "STORE_UNAVAILABLE",
      "STORE_UNAVAILABLE",
      "STORE_UNAVAILABLE",
    ]);
  });

  it("rejects with STORE_UNAVAILABLE after commandTimeoutMs when Redis stops answering but keeps the connection", async () => {
    const server = await privateServer();
    const store = track(
      createRedisStore({ url: server.url, prefix: uniquePrefix(), commandTimeoutMs: 300 }),
    );
    await store.open();
    server.pause();
    const outcome = await settleWithin(store.kv.set("a", 1), FAIL_FAST_BOUND_MS);
    expect(codeOf(outcome)).toBe("STORE_UNAVAILABLE");
    expect((outcome as { error: Error }).error.message).toMatch(/timed out/i);
    server.resume();
    await waitUntil("the server to answer again", async () => {
      const retry = await settleWithin(store.kv.get("b"), FAIL_FAST_BOUND_MS);
      return retry.status === "fulfilled";
    });
  });

  it("close() while Redis is down resolves and leaves nothing running", async () => {
    const server = await privateServer();
    const store = createRedisStore({ url: server.url, prefix: uniquePrefix() });
    await store.open();
    await server.kill();
    // Let the client notice and start its reconnection timer.
    await waitUntil("the store to see Redis down", async () => {
      const outcome = await settleWithin(store.kv.get("k"), FAIL_FAST_BOUND_MS);
      return outcome.status === "rejected";
    });
    expect((await settleWithin(store.close(), FAIL_FAST_BOUND_MS)).status).toBe("fulfilled");
    expect(codeOf(await settleWithin(store.kv.get("k"), FAIL_FAST_BOUND_MS))).toBe("STORE_CLOSED");
    // The open-handle check after this file fails it if a socket or timer survived.
  });
});

describe("an injected client with ioredis' default (queueing) options", () => {
  it("still fails fast while disconnected, and its in-flight commands are bounded by commandTimeoutMs", async () => {
    const server = await privateServer();
    const client = new Redis(server.url);
    // The test owns this client; its connection errors while Redis is down are expected.
    client.on("error", () => undefined);
    cleanups.push(async () => {
      // Our client, our job to close it: once Redis is back, so it closes cleanly.
      if (!server.running) await server.restart();
      await waitUntil("the injected client to reconnect", () => client.status === "ready");
      await client.quit();
    });
    const store = track(
      createRedisStore({ client, prefix: uniquePrefix(), commandTimeoutMs: 300 }),
    );
    await store.open();
    expect(await store.kv.set("k", 1)).toBe(true);

    server.pause();
    const hung = await settleWithin(store.kv.get("k"), FAIL_FAST_BOUND_MS);
    expect(codeOf(hung)).toBe("STORE_UNAVAILABLE");

    await server.kill();
    await waitUntil("the client to notice the dead server", () => client.status !== "ready");
    const down = await settleWithin(store.kv.get("k"), FAIL_FAST_BOUND_MS);
    expect(codeOf(down)).toBe("STORE_UNAVAILABLE");
  });
});
