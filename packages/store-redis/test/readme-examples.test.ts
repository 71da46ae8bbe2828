import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";

// The README's examples, kept runnable (against the test Redis, under a unique prefix).
const prefixes: string[] = [];
afterEach(() => deletePrefixes(prefixes.splice(0)));

describe("README examples", () => {
  it("the example stores a session, a transcript entry and a queued message, then acknowledges it", async () => {
    const prefix = uniquePrefix("readme");
    prefixes.push(prefix);
    const store = createRedisStore({ url: REDIS_URL, prefix });
    await store.open();
    await store.sessions.put({
      key: "agent:main:main",
      agentId: "main",
      createdAt: 1,
      updatedAt: 1,
    });
    await store.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
    const { message } = await store.queue.enqueue({
      idempotencyKey: "msg-1",
      sessionKey: "agent:main:main",
      payload: { text: "hi" },
    });
    expect(await store.queue.pending()).toEqual([message]);
    await store.queue.ack(message.id); // the turn is done
    expect(await store.queue.pending()).toEqual([]);
    expect(await store.transcripts.read("agent:main:main")).toEqual([
      { seq: 1, entry: { role: "user", text: "hi" } },
    ]);
    await store.close();
  });

  it("the bring-your-own-client example works and leaves the client to its owner", async () => {
    const prefix = uniquePrefix("readme");
    prefixes.push(prefix);
    const client = new Redis(REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    const store = createRedisStore({ client, prefix });
    await store.open();
    expect(await store.kv.set("k", "v")).toBe(true);
    await store.close();
    expect(await client.get(`${prefix}kv:k`)).toBe('"v"');
    await client.quit();
  });
});
