import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import {
  compareCodePoints,
  createMemoryStore,
  MAX_STORED_JSON_DEPTH,
  MemoryStore,
  type Store,
} from "../src/store/index.js";
import { storeConformanceSuite } from "../src/testing/index.js";
import { activeTimeouts, failureOf } from "./support.js";

// A MemoryStore keeps its data across close() and open(), so handing back the same instance
// for a namespace makes it a store that "persists across instances", and the suite's
// re-creation tests run against it too.
const byNamespace = new Map<string, MemoryStore>();
storeConformanceSuite("MemoryStore", {
  create: (namespace) => {
    const store = byNamespace.get(namespace) ?? new MemoryStore();
    byNamespace.set(namespace, store);
    return store;
  },
  cleanup: (namespaces) => {
    for (const namespace of namespaces) byNamespace.delete(namespace);
  },
  persistsAcrossInstances: true,
});

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

async function openStore(options?: ConstructorParameters<typeof MemoryStore>[0]): Promise<Store> {
  const store = createMemoryStore(options);
  await store.open();
  return store;
}

describe("MemoryStore", () => {
  it("declares in-memory, single-process capabilities with TTLs and no distributed locks", () => {
    const store = new MemoryStore();
    expect(store.kind).toBe("memory");
    expect(store.capabilities).toEqual({
      durable: "memory",
      multiProcess: false,
      ttl: true,
      distributedLocks: false,
    });
    expect(Object.isFrozen(store.capabilities)).toBe(true);
  });

  it("createMemoryStore returns a MemoryStore with the given options", () => {
    const store = createMemoryStore({ dedupeWindowMs: 5_000 });
    expect(store).toBeInstanceOf(MemoryStore);
    expect(store.queue.dedupeWindowMs).toBe(5_000);
    expect(new MemoryStore().queue.dedupeWindowMs).toBe(24 * 60 * 60 * 1000);
  });

  it("refuses bad options with InvalidArgumentError", () => {
    for (const options of [
      { dedupeWindowMs: -1 },
      { dedupeWindowMs: Number.NaN },
      { dedupeWindowMs: Number.POSITIVE_INFINITY },
      { dedupeWindowMs: "1000" },
      { now: 5 },
      null,
    ]) {
      expect(() => new MemoryStore(options as never), JSON.stringify(options)).toThrow(
        InvalidArgumentError,
      );
    }
  });

  it("keeps its data across close() and open(), and opening twice is harmless", async () => {
    const store = await openStore();
    await store.kv.set("k", "v");
    await store.close();
    await store.open();
    await store.open();
    expect(await store.kv.get("k")).toBe("v");
    await store.close();
  });

  it("starts no timer, not even for TTLs, leases and token expiry", async () => {
    const before = activeTimeouts();
    const store = await openStore();
    await store.kv.set("k", 1, { ttlMs: 60_000 });
    await store.locks.acquire("l", { owner: "o", ttlMs: 60_000 });
    await store.devices.putToken({ tokenHash: "h", deviceId: "d", expiresAt: Date.now() + 60_000 });
    const { message } = await store.queue.enqueue({
      idempotencyKey: "i",
      sessionKey: "s",
      payload: {},
    });
    await store.queue.ack(message.id);
    expect(activeTimeouts()).toBe(before);
    expect(process.getActiveResourcesInfo().filter((type) => type.includes("Timer"))).toEqual([]);
    await store.close();
  });

  it("hands out a new copy on every read", async () => {
    const store = await openStore();
    await store.sessions.put({
      key: "s",
      agentId: "a",
      createdAt: 1,
      updatedAt: 1,
      meta: { x: 1 },
    });
    const first = await store.sessions.get("s");
    const second = await store.sessions.get("s");
    expect(first).toEqual(second);
    expect(first).not.toBe(second);
    expect(first!.meta).not.toBe(second!.meta);
    await store.close();
  });

  it("keeps a '__proto__' key as an ordinary property, as JSON.parse does", async () => {
    const store = await openStore();
    const value = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as Record<
      string,
      unknown
    >;
    await store.kv.set("k", value as never);
    const read = (await store.kv.get("k")) as Record<string, unknown>;
    expect(Object.hasOwn(read, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await store.close();
  });

  it("refuses a value nested deeper than MAX_STORED_JSON_DEPTH (512) with an InvalidArgumentError naming the path and the limit", async () => {
    expect(MAX_STORED_JSON_DEPTH).toBe(512);
    const store = await openStore();
    let deep: unknown = 1;
    for (let i = 0; i < MAX_STORED_JSON_DEPTH; i++) deep = [deep];
    const error = await failureOf(() => store.kv.set("k", { list: deep } as never));
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe(
      `kv.set: value.list${"[0]".repeat(MAX_STORED_JSON_DEPTH - 1)} is nested deeper than 512 levels of arrays and objects (MAX_STORED_JSON_DEPTH)`,
    );
    expect(await store.kv.keys("")).toEqual([]);
    await store.close();
  });

  describe("with an injected clock", () => {
    it("expires a kv key exactly ttlMs after it was set", async () => {
      const clock = manualClock();
      const store = await openStore({ now: clock.now });
      await store.kv.set("k", "v", { ttlMs: 1_000 });
      clock.advance(999);
      expect(await store.kv.get("k")).toBe("v");
      expect(await store.kv.set("k", "other", { ifAbsent: true })).toBe(false);
      clock.advance(1);
      expect(await store.kv.get("k")).toBeUndefined();
      expect(await store.kv.keys("")).toEqual([]);
      expect(await store.kv.set("k", "again", { ifAbsent: true })).toBe(true);
      await store.close();
    });

    it("stops returning a device token once its expiresAt is reached", async () => {
      const clock = manualClock();
      const store = await openStore({ now: clock.now });
      await store.devices.putToken({ tokenHash: "h", deviceId: "d", expiresAt: clock.now() + 500 });
      clock.advance(499);
      expect(await store.devices.getToken("h")).toBeDefined();
      clock.advance(1);
      expect(await store.devices.getToken("h")).toBeUndefined();
      expect(await store.devices.listTokens("d")).toEqual([]);
      await store.close();
    });

    it("ends a lease at expiresAt: then another owner acquires with a higher token and the old one cannot renew", async () => {
      const clock = manualClock();
      const store = await openStore({ now: clock.now });
      const first = (await store.locks.acquire("job", { owner: "a", ttlMs: 1_000 }))!;
      expect(first.expiresAt).toBe(clock.now() + 1_000);
      clock.advance(600);
      const renewed = (await store.locks.renew(first, 1_000))!;
      expect(renewed.expiresAt).toBe(clock.now() + 1_000);
      clock.advance(999);
      expect(await store.locks.acquire("job", { owner: "b", ttlMs: 1_000 })).toBeUndefined();
      clock.advance(1);
      expect(await store.locks.holder("job")).toBeUndefined();
      const second = (await store.locks.acquire("job", { owner: "b", ttlMs: 1_000 }))!;
      expect(second.token).toBe(first.token + 1);
      expect(await store.locks.renew(first, 1_000)).toBeUndefined();
      await store.close();
    });

    it("forgets an acknowledged idempotency key once the dedupe window has passed", async () => {
      const clock = manualClock();
      const store = await openStore({ now: clock.now, dedupeWindowMs: 10_000 });
      const message = { idempotencyKey: "k", sessionKey: "s", payload: { n: 1 } };
      const first = await store.queue.enqueue(message);
      clock.advance(5_000);
      await store.queue.ack(first.message.id);
      clock.advance(9_999);
      expect((await store.queue.enqueue(message)).duplicate).toBe(true);
      clock.advance(1);
      const second = await store.queue.enqueue(message);
      expect(second.duplicate).toBe(false);
      expect(second.message.id).not.toBe(first.message.id);
      expect(second.message.enqueuedAt).toBe(clock.now());
      await store.close();
    });

    it("keeps a pending message's key a duplicate however long it waits", async () => {
      const clock = manualClock();
      const store = await openStore({ now: clock.now, dedupeWindowMs: 10_000 });
      const message = { idempotencyKey: "k", sessionKey: "s", payload: {} };
      const first = await store.queue.enqueue(message);
      clock.advance(1_000_000);
      expect(await store.queue.enqueue(message)).toEqual({
        duplicate: true,
        message: first.message,
      });
      await store.close();
    });

    it("with a dedupe window of 0, an acknowledged key can be enqueued again at once", async () => {
      const store = await openStore({ dedupeWindowMs: 0 });
      const message = { idempotencyKey: "k", sessionKey: "s", payload: {} };
      const first = await store.queue.enqueue(message);
      await store.queue.ack(first.message.id);
      expect((await store.queue.enqueue(message)).duplicate).toBe(false);
      await store.close();
    });

    it("purging expired data on later writes changes nothing a read can see", async () => {
      const clock = manualClock();
      const store = await openStore({ now: clock.now, dedupeWindowMs: 1_000 });
      await store.kv.set("gone", 1, { ttlMs: 10 });
      await store.kv.set("kept", 1);
      await store.devices.putToken({
        tokenHash: "old",
        deviceId: "d",
        expiresAt: clock.now() + 10,
      });
      const lease = (await store.locks.acquire("l", { owner: "o", ttlMs: 10 }))!;
      const { message } = await store.queue.enqueue({
        idempotencyKey: "k",
        sessionKey: "s",
        payload: {},
      });
      await store.queue.ack(message.id);
      clock.advance(60_000);
      await store.kv.set("trigger", 1); // a write long after the last purge runs one
      expect(await store.kv.keys("")).toEqual(["kept", "trigger"]);
      expect(await store.devices.getToken("old")).toBeUndefined();
      const next = (await store.locks.acquire("l", { owner: "p", ttlMs: 10 }))!;
      expect(next.token).toBe(lease.token + 1);
      expect(
        (await store.queue.enqueue({ idempotencyKey: "k", sessionKey: "s", payload: {} }))
          .duplicate,
      ).toBe(false);
      await store.close();
    });
  });
});

describe("compareCodePoints", () => {
  it("orders strings as their UTF-8 bytes do (code point order)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.string({ unit: "binary" }), (a, b) => {
        const expected = Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
        expect(Math.sign(compareCodePoints(a, b))).toBe(expected);
      }),
    );
  });

  it("puts U+FF5A before U+1F600, unlike a default sort", () => {
    expect(["\u{1F600}", "\uFF5A"].sort(compareCodePoints)).toEqual(["\uFF5A", "\u{1F600}"]);
    expect(["\u{1F600}", "\uFF5A"].sort()).toEqual(["\u{1F600}", "\uFF5A"]);
  });
});

describe("the Stores section of the README", () => {
  it("runs: a session, a transcript entry, and an inbound message whose redelivery is a duplicate", async () => {
    const store = createMemoryStore();
    await store.open();
    await store.sessions.put({
      key: "agent:main:main",
      agentId: "main",
      createdAt: 1,
      updatedAt: 1,
    });
    const seq = await store.transcripts.append("agent:main:main", [{ role: "user", text: "hi" }]);
    const msg = {
      idempotencyKey: "telegram:42",
      sessionKey: "agent:main:main",
      payload: { text: "hi" },
    };
    const { message } = await store.queue.enqueue(msg);
    const duplicate = (await store.queue.enqueue(msg)).duplicate;
    await store.queue.ack(message.id);
    expect(await store.queue.pending()).toEqual([]);
    await store.close();
    expect(seq).toBe(1);
    expect(duplicate).toBe(true);
  });
});
