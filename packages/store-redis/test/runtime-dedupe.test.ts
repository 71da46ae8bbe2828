/**
 * An agent runtime over store-redis (a real Redis): a message sent with an idempotency key
 * keeps its hash and its key's entry in Redis for the dedupe window once its run is done, so
 * a retry is a duplicate; one sent without a key leaves nothing of the queue behind.
 */
import { AgentRuntime, createProviderChain } from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, keysUnder, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

const KEY = "agent:main:main";
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(prefix: string): Promise<{ store: RedisStore; runtime: AgentRuntime }> {
  const store = createRedisStore({ url: REDIS_URL, prefix });
  cleanups.push(() => store.close());
  await store.open();
  const provider = createScriptedProvider({ responses: ["one", "two", "three"] });
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: ["scripted/model"] }),
    agents: [{ id: "main", model: "scripted/model" }],
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { store, runtime };
}

describe("an agent runtime's messages in store-redis's queue", () => {
  it("keeps a caller's idempotency key for the window, and nothing of an unkeyed message", async () => {
    const prefix = uniquePrefix("runtime-dedupe");
    cleanups.push(() => deletePrefixes([prefix]));
    const { store, runtime } = await start(prefix);
    const session = runtime.session(KEY);
    const unkeyed = await session.send("no key");
    const keyed = await session.send("with a key", { idempotencyKey: "chat:42" });
    expect((await unkeyed.result).status).toBe("completed");
    expect((await keyed.result).status).toBe("completed");

    const client = rawClient();
    try {
      const queueKeys = (await keysUnder(client, `${prefix}queue:`)).map((k) =>
        k.slice(prefix.length),
      );
      // The counter, and the keyed message's hash and key entry; nothing of the other.
      expect(queueKeys.filter((k) => k.startsWith("queue:msg:"))).toHaveLength(1);
      expect(queueKeys.filter((k) => k.startsWith("queue:idem:"))).toEqual(["queue:idem:chat:42"]);
      const [hashKey] = queueKeys.filter((k) => k.startsWith("queue:msg:"));
      expect(await client.hget(`${prefix}${hashKey}`, "i")).toBe("chat:42");
      expect(await client.pttl(`${prefix}${hashKey}`)).toBeGreaterThan(0);
    } finally {
      await client.quit();
    }
    const retry = await session.send("with a key", { idempotencyKey: "chat:42" });
    expect(retry.disposition).toBe("duplicate");
    await expect(retry.result).rejects.toMatchObject({ code: "DUPLICATE" });
    const probe = await store.queue.enqueue({
      idempotencyKey: `auto:${unkeyed.runId}`,
      sessionKey: "agent:main:probe",
      payload: {},
    });
    expect(probe.duplicate).toBe(false);
    await store.queue.discard(probe.message.id);
  });
});
