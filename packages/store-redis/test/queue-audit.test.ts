/**
 * Audit of the inbound queue against a private `redis-server`: connections cut and the server
 * restarted while enqueues, acks, discards and replays are in flight, and Redis full
 * (`maxmemory`). Each operation is one script, so whatever was or was not applied, the
 * message hashes, idempotency keys and pending sets always agree; a full Redis refuses an
 * enqueue whole, and still takes the acks and discards that drain the queue.
 */
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { RedisServerProcess } from "./support/redis-server.js";

const PREFIX = "p:";
const SESSIONS = 7;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function privateRedis(
  appendonly: boolean,
): Promise<{ server: RedisServerProcess; store: RedisStore; raw: Redis }> {
  const server = await RedisServerProcess.start({ appendonly });
  cleanups.push(() => server.stop());
  const raw = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  raw.on("error", () => undefined);
  cleanups.push(async () => raw.disconnect());
  const store = createRedisStore({ url: server.url, prefix: PREFIX });
  cleanups.push(() => store.close());
  await store.open();
  return { server, store, raw };
}

/** Every pending message has its hash (no expiry) and owns its idempotency key, and back. */
async function expectConsistent(raw: Redis): Promise<number> {
  const pending = await raw.zrange(`${PREFIX}queue:pending`, "0", "-1");
  let perSession = 0;
  for (let s = 0; s < SESSIONS; s++) perSession += await raw.zcard(`${PREFIX}queue:session:s${s}`);
  expect(perSession).toBe(pending.length);
  for (const id of pending) {
    const idempotencyKey = await raw.hget(`${PREFIX}queue:msg:${id}`, "i");
    expect(idempotencyKey).not.toBeNull();
    expect(await raw.get(`${PREFIX}queue:idem:${idempotencyKey}`)).toBe(id);
    expect(await raw.pttl(`${PREFIX}queue:msg:${id}`)).toBe(-1);
  }
  for (const key of await raw.keys(`${PREFIX}queue:idem:*`)) {
    expect(await raw.exists(`${PREFIX}queue:msg:${await raw.get(key)}`)).toBe(1);
  }
  return pending.length;
}

describe("the inbound queue when the connection drops or Redis restarts mid-operation", () => {
  it("never leaves a message half-queued or half-acknowledged", async () => {
    const { server, store, raw } = await privateRedis(true);
    for (let round = 0; round < 8; round++) {
      const work: Promise<unknown>[] = [];
      for (let j = 0; j < 100; j++) {
        const i = round * 100 + j;
        const sessionKey = `s${i % SESSIONS}`;
        work.push(
          store.queue
            .enqueue({ idempotencyKey: `k${i % 300}`, sessionKey, payload: { i } })
            .then(
              ({ message }): Promise<unknown> =>
                i % 3 === 0
                  ? store.queue.ack(message.id)
                  : i % 5 === 0
                    ? store.queue.discard(message.id)
                    : store.queue.replay({ sessionKey }),
            )
            .then(
              () => undefined,
              // A cut connection rejects what was in flight: STORE_UNAVAILABLE.
              (error: { code?: string }) => expect(error.code).toBe("STORE_UNAVAILABLE"),
            ),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 5 + (round % 4) * 15));
      if (round % 4 === 3) await server.restart();
      else await raw.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
      await Promise.all(work);
      // The store reconnects by itself.
      await expect
        .poll(
          () =>
            store.queue.pending({ limit: 1 }).then(
              () => true,
              () => false,
            ),
          {
            timeout: 5000,
            interval: 50,
          },
        )
        .toBe(true);
    }
    await expectConsistent(raw);
  }, 60_000);
});

describe("the inbound queue when Redis is full (maxmemory, noeviction)", () => {
  it("refuses an enqueue whole as retryable STORE_UNAVAILABLE, and still acks and discards", async () => {
    const { store, raw } = await privateRedis(false);
    await raw.config("SET", "maxmemory", "3mb");
    let stored = 0;
    let refusal: unknown;
    while (refusal === undefined) {
      await store.queue
        .enqueue({
          idempotencyKey: `k${stored}`,
          sessionKey: `s${stored % SESSIONS}`,
          payload: { pad: "z".repeat(5000) },
        })
        .then(
          () => stored++,
          (error: unknown) => (refusal = error),
        );
    }
    expect(refusal).toMatchObject({ code: "STORE_UNAVAILABLE", isRetryable: true });
    expect(String(refusal)).toMatch(/OOM/);
    expect(await raw.get(`${PREFIX}queue:seq`)).toBe(String(stored));
    expect(await expectConsistent(raw)).toBe(stored);

    const pending = await store.queue.pending({ limit: 1000 });
    // Half the queue is drained: ~0.8 MB of a 3 MB limit, a margin far beyond what Redis'
    // own memory (client buffers, allocator slack) moves by on a loaded machine.
    const drained = Math.ceil(stored / 2);
    await store.queue.ack(pending[0]!.id);
    for (const message of pending.slice(1, drained)) await store.queue.discard(message.id);
    expect(await expectConsistent(raw)).toBe(stored - drained);
    // Discarding made room: the refused message can be sent again.
    const retried = await store.queue.enqueue({
      idempotencyKey: `k${stored}`,
      sessionKey: "s0",
      payload: { pad: "z".repeat(5000) },
    });
    expect(retried.duplicate).toBe(false);
  }, 60_000);
});
