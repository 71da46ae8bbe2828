/**
 * Audit: input the cluster backplane cannot carry faithfully is refused with a typed
 * `InvalidArgumentError`, never a bare `TypeError`, a message silently dropped, or a value
 * that breaks Redis' scripts for every node. Against the real Redis; each node is a
 * backplane in this process.
 */
import { InvalidArgumentError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, type RedisBackplane } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const backplanes: RedisBackplane[] = [];
afterEach(async () => {
  for (const backplane of backplanes.splice(0)) await backplane.leave();
  await deletePrefixes(prefixes.splice(0));
});

async function nodes(count: number): Promise<RedisBackplane[]> {
  const prefix = uniquePrefix("audit-bad-input");
  prefixes.push(prefix);
  const out: RedisBackplane[] = [];
  for (let i = 0; i < count; i++) {
    const backplane = createRedisBackplane({
      url: REDIS_URL,
      prefix,
      nodeId: `node-${i + 1}`,
      heartbeatIntervalMs: 100,
      downAfterMs: 5_000,
    });
    backplanes.push(backplane);
    await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
    out.push(backplane);
  }
  return out;
}

/** The error `promise` rejects with (or a note that it did not). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => `resolved with ${String(value)}`,
    (error: unknown) => error,
  );
}

const cycle = (): Record<string, unknown> => {
  const value: Record<string, unknown> = {};
  value.self = value;
  return value;
};

describe("messages between nodes", () => {
  it("a message JSON cannot carry is refused with InvalidArgumentError, by send and registry.send", async () => {
    const [a, b] = await nodes(2);
    const received: unknown[] = [];
    b!.onMessage((message) => received.push(message));
    await b!.registry.register("worker", (message) => received.push(message));
    for (const bad of [cycle(), { n: 1n }, null, [1, 2]]) {
      const sent = await rejection(a!.send("node-2", bad as never));
      expect(sent, String(bad)).toBeInstanceOf(InvalidArgumentError);
      const named = await rejection(a!.registry.send("worker", bad as never));
      expect(named, String(bad)).toBeInstanceOf(InvalidArgumentError);
    }
    // A good message still goes through, and is the first thing each handler sees.
    expect(await a!.send("node-2", { ok: 1 })).toBe(true);
    expect(await a!.registry.send("worker", { ok: 2 })).toBe(true);
    await waitUntil("both messages", () => received.length === 2);
    expect(received).toEqual(expect.arrayContaining([{ ok: 1 }, { ok: 2 }]));
  });
});

describe("lone surrogates (which UTF-8 turns into U+FFFD on their way to Redis)", () => {
  it("a registration with one in its meta or localId is refused, and the registry stays readable", async () => {
    const [a, b] = await nodes(2);
    await expect(
      a!.registry.register("billing", () => undefined, { meta: { label: "x\uD800" } }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(
      a!.registry.register("billing", () => undefined, { localId: "actor\uDC00" }),
    ).rejects.toBeInstanceOf(InvalidArgumentError);
    // A name defaults to being its localId: refused too, and not written.
    await expect(a!.registry.register("n\uD800", () => undefined)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(a!.registry.localNames()).toEqual([]);
    // Before the fix the first registration was written, and Redis' JSON decoder then failed
    // every script reading the names: list() and lookups rejected on every node.
    expect(await b!.registry.list()).toEqual([]);
    // Paired surrogates (an emoji) and escaped-looking text are fine.
    await a!.registry.register("billing", () => undefined, {
      meta: { label: "\u{1F600} \\uD800 \\\\\\uDBFF" },
    });
    expect((await b!.registry.lookup("billing"))?.meta).toEqual({
      label: "\u{1F600} \\uD800 \\\\\\uDBFF",
    });
    await expect(b!.registry.lookup("b\uD800")).rejects.toBeInstanceOf(InvalidArgumentError);
    // A listing by a prefix with one never returns names that have U+FFFD in its place.
    await a!.registry.register("x\uFFFDy", () => undefined);
    expect(await b!.registry.list("x\uD800")).toEqual([]);
    expect((await b!.registry.list("x\uFFFD")).map((r) => r.name)).toEqual(["x\uFFFDy"]);
  });

  it("a topic, presence key or node id with one is refused instead of never reaching anyone", async () => {
    const [a, b] = await nodes(2);
    expect(() => b!.pubsub.subscribe("room\uD800", () => undefined)).toThrow(InvalidArgumentError);
    expect(() => b!.pubsub.subscribeLocal("room\uD800", () => undefined)).toThrow(
      InvalidArgumentError,
    );
    await expect(a!.pubsub.publish("room\uDC00", { x: 1 })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(a!.presence.track("client\uD800")).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(a!.presence.untrack("client\uD800")).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(() => createRedisBackplane({ url: REDIS_URL, nodeId: "node\uD800" })).toThrow(
      InvalidArgumentError,
    );
    // A topic with a paired surrogate reaches the other node.
    const got: unknown[] = [];
    b!.pubsub.subscribe("room-\u{1F600}", (message) => got.push(message));
    await b!.pubsub.whenSubscribed("room-\u{1F600}");
    await a!.pubsub.publish("room-\u{1F600}", { x: 2 });
    await waitUntil("the message", () => got.length === 1);
    expect(got).toEqual([{ x: 2 }]);
  });
});
