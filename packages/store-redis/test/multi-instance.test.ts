/**
 * Two RedisStore instances over one prefix, as two processes sharing one Redis would be:
 * every multi-key change is one atomic script, so interleaved writers never leave an index
 * out of step with its records, and locks, fencing and the queue hold across instances.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, keysUnder, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";

const prefixes: string[] = [];
const stores: RedisStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await deletePrefixes(prefixes.splice(0));
});

async function twoStores(): Promise<[RedisStore, RedisStore, string]> {
  const prefix = uniquePrefix("multi");
  prefixes.push(prefix);
  const a = createRedisStore({ url: REDIS_URL, prefix });
  const b = createRedisStore({ url: REDIS_URL, prefix });
  stores.push(a, b);
  await Promise.all([a.open(), b.open()]);
  return [a, b, prefix];
}

describe("two RedisStore instances on one prefix", () => {
  it("interleaved puts and deletes of the same sessions leave every index matching the records", async () => {
    const [a, b, prefix] = await twoStores();
    const keys = Array.from({ length: 10 }, (_, i) => `s${i}`);
    const agents = ["x", "y", "z"];
    const work: Promise<unknown>[] = [];
    for (let round = 0; round < 30; round++) {
      for (const [i, key] of keys.entries()) {
        const store = (round + i) % 2 === 0 ? a : b;
        if ((round * 7 + i) % 5 === 0) work.push(store.sessions.delete(key));
        else {
          work.push(
            store.sessions.put({
              key,
              // The agent changes between puts, so the per-agent indexes are exercised too.
              agentId: agents[(round + i) % agents.length]!,
              createdAt: 1,
              updatedAt: round * 100 + i,
            }),
          );
        }
      }
    }
    await Promise.all(work);

    const records = (await Promise.all(keys.map((key) => a.sessions.get(key)))).filter(
      (r) => r !== undefined,
    );
    const listed = (await b.sessions.list({ limit: 1000 })).items;
    expect(listed).toEqual(
      [...records].sort((x, y) => y.updatedAt - x.updatedAt || (x.key < y.key ? -1 : 1)),
    );
    for (const agent of agents) {
      const mine = records
        .filter((r) => r.agentId === agent)
        .map((r) => r.key)
        .sort();
      const listedForAgent = (await a.sessions.list({ agentId: agent, limit: 1000 })).items;
      expect(listedForAgent.map((r) => r.key).sort(), agent).toEqual(mine);
      expect(await b.sessions.count(agent), agent).toBe(mine.length);
    }
    // No index member is left without a record.
    const raw = rawClient();
    try {
      const indexed = await raw.zrange(`${prefix}sessions:all`, "0", "-1");
      expect(indexed.sort()).toEqual(records.map((r) => r.key).sort());
      for (const agent of agents) {
        const members = await raw.zrange(`${prefix}sessions:agent:${agent}`, "0", "-1");
        expect(members.sort(), agent).toEqual(
          records
            .filter((r) => r.agentId === agent)
            .map((r) => r.key)
            .sort(),
        );
      }
    } finally {
      await raw.quit();
    }
  });

  it("lock handovers through both give strictly increasing tokens, and fencing rejects every stale holder", async () => {
    const [a, b] = await twoStores();
    const tokens: number[] = [];
    for (let i = 0; i < 20; i++) {
      const store = i % 2 === 0 ? a : b;
      let lease = await store.locks.acquire("job", { owner: `o${i}`, ttlMs: 60_000 });
      while (lease === undefined) {
        // The other instance may not have released yet in a real cluster; here it has.
        lease = await store.locks.acquire("job", { owner: `o${i}`, ttlMs: 60_000 });
      }
      tokens.push(lease.token);
      expect(
        await store.kv.set("resource", i, { fence: { lock: "job", token: lease.token } }),
      ).toBe(true);
      const other = i % 2 === 0 ? b : a;
      expect(await other.locks.release(lease)).toBe(true);
    }
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
    for (const stale of tokens.slice(0, -1)) {
      await expect(
        a.kv.set("resource", -1, { fence: { lock: "job", token: stale } }),
      ).rejects.toMatchObject({
        code: "FENCED",
        currentToken: tokens.at(-1),
      });
    }
    expect(await b.kv.get("resource")).toBe(19);
  });

  it("a message enqueued through one is replayed and acknowledged through the other, once", async () => {
    const [a, b] = await twoStores();
    const { message } = await a.queue.enqueue({
      idempotencyKey: "k",
      sessionKey: "s",
      payload: { n: 1 },
    });
    const [replayed] = await b.queue.replay();
    expect(replayed).toEqual({ ...message, deliveries: 1 });
    await b.queue.ack(message.id);
    expect(await a.queue.pending()).toEqual([]);
    expect(
      (await a.queue.enqueue({ idempotencyKey: "k", sessionKey: "s", payload: {} })).duplicate,
    ).toBe(true);
  });

  it("closing one instance leaves the other working", async () => {
    const [a, b, prefix] = await twoStores();
    await a.kv.set("k", 1);
    await a.close();
    expect(await b.kv.get("k")).toBe(1);
    const raw = rawClient();
    try {
      expect(await keysUnder(raw, prefix)).toEqual([`${prefix}kv-index`, `${prefix}kv:k`]);
    } finally {
      await raw.quit();
    }
  });
});
