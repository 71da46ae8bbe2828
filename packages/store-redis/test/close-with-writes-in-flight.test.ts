/**
 * `close()` called while writes are still in flight: every write made before it is applied
 * and resolves, also when Redis does not know the write's Lua script yet (a fresh or
 * restarted server, after `SCRIPT FLUSH` or a failover), where the store sends `EVAL` only
 * after the `EVALSHA` came back `NOSCRIPT`, that is after `close()` had already begun.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { uniquePrefix } from "./support/redis.js";
import { RedisServerProcess } from "./support/redis-server.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function freshServer(): Promise<RedisServerProcess> {
  // A server of its own: no script is cached on it yet.
  const server = await RedisServerProcess.start({ appendonly: false });
  cleanups.push(() => server.stop());
  return server;
}

function track(store: RedisStore): RedisStore {
  cleanups.push(() => store.close());
  return store;
}

describe("close() with writes in flight", () => {
  it("applies and resolves every write made before it, also those whose script Redis has not cached", async () => {
    const server = await freshServer();
    const prefix = uniquePrefix("close");
    const store = track(createRedisStore({ url: server.url, prefix }));
    await store.open();

    const writes = Promise.allSettled([
      store.kv.set("k", { v: 1 }),
      store.sessions.put({ key: "s", agentId: "a", createdAt: 1, updatedAt: 1 }),
      store.queue.enqueue({ idempotencyKey: "i", sessionKey: "s", payload: { n: 1 } }),
      store.cron.appendRun({ jobId: "j", startedAt: 1 }),
    ]);
    const closed = store.close();
    const outcomes = await writes;
    await closed;
    expect(outcomes.map((o) => (o.status === "rejected" ? String(o.reason) : o.status))).toEqual([
      "fulfilled",
      "fulfilled",
      "fulfilled",
      "fulfilled",
    ]);

    const again = track(createRedisStore({ url: server.url, prefix }));
    await again.open();
    expect(await again.kv.get("k")).toEqual({ v: 1 });
    expect(await again.sessions.get("s")).toEqual({
      key: "s",
      agentId: "a",
      createdAt: 1,
      updatedAt: 1,
    });
    expect((await again.queue.pending()).map((m) => m.payload)).toEqual([{ n: 1 }]);
    expect(await again.cron.listRuns("j")).toEqual([{ jobId: "j", startedAt: 1 }]);
  });
});
