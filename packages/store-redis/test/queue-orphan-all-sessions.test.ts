/**
 * Audit of the inbound queue, against the real Redis: a pending id whose message hash is gone
 * (an orphan), met through the all-sessions pending set. Before the fix, its session was known
 * only from the (gone) hash: the read removed it from the all-sessions set but left it in its
 * session's set, and the next read of that session met it again and reported it a second time
 * (an `ack` of such an id left it there too). Now `queue:session-of` maps each pending id to
 * its session key, and every read or ack that removes an id removes it from every set that
 * holds it, and from that index, in the same script; each orphan is reported once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { REDIS_QUEUE_ORPHAN_ID_CHANNEL } from "../src/index.js";
import { enqueueNumbered as enqueue, orphanReports } from "./support/queue-orphans.js";
import { storeOpener } from "./support/redis.js";

const opener = storeOpener("queue-orphan-all");
const reported = orphanReports(REDIS_QUEUE_ORPHAN_ID_CHANNEL);
afterEach(() => opener.cleanup());

const REASON = "its message hash is gone (evicted or deleted): the message is lost";

/** Every member of the sorted set `key`, in order. */
const members = (raw: OpenedRaw, key: string) => raw.zrange(key, "0", "-1");
type OpenedRaw = Awaited<ReturnType<typeof opener.open>>["raw"];

/**
 * Writes message 1 of session `a` as an earlier version left it, pending in both sets with no
 * `queue:session-of` entry, and with its hash gone; returns its id.
 */
async function earlierLayoutOrphan(raw: OpenedRaw, prefix: string): Promise<string> {
  const id = "0000000000000001";
  await raw.set(`${prefix}queue:seq`, "1");
  await raw.zadd(`${prefix}queue:pending`, "1", id);
  await raw.zadd(`${prefix}queue:session:a`, "1", id);
  return id;
}

describe("a queue orphan met through all sessions", () => {
  it("leaves its session's set too, and a later read of that session does not report it again", async () => {
    const { store, prefix, raw } = await opener.open();
    const a = await enqueue(store, "a", [0, 1, 2]);
    const b = await enqueue(store, "b", [3, 4]);
    const orphan = a[1] as string;
    await raw.del(`${prefix}queue:msg:${orphan}`);

    expect((await store.queue.pending()).map((m) => m.id)).toEqual([a[0], a[2], ...b]);
    expect(await raw.zscore(`${prefix}queue:pending`, orphan)).toBeNull();
    expect(await raw.zscore(`${prefix}queue:session:a`, orphan)).toBeNull();
    expect(await raw.hexists(`${prefix}queue:session-of`, orphan)).toBe(0);
    expect(await members(raw, `${prefix}queue:session:b`)).toEqual(b);
    expect(reported).toEqual([
      {
        id: orphan,
        key: `${prefix}queue:msg:${orphan}`,
        removedFrom: [`${prefix}queue:pending`, `${prefix}queue:session:a`],
        reason: REASON,
      },
    ]);

    // The session's own read, and every later read, meet it no more.
    expect((await store.queue.pending({ sessionKey: "a" })).map((m) => m.id)).toEqual([a[0], a[2]]);
    expect((await store.queue.replay({ sessionKey: "a" })).map((m) => m.id)).toEqual([a[0], a[2]]);
    await store.queue.pending();
    expect(reported.map((o) => o.id)).toEqual([orphan]);
  });

  it("paged with `after` through several sessions' orphans, leaves each one's own set and reports each once", async () => {
    const { store, prefix, raw } = await opener.open();
    const ids: Record<string, string[]> = { a: [], b: [], c: [] };
    // Interleaved: a0 b1 c2 a3 b4 c5 ... so the orphans of a page belong to different sessions.
    for (let n = 0; n < 15; n++) {
      const session = ["a", "b", "c"][n % 3] as string;
      ids[session]?.push(...(await enqueue(store, session, [n])));
    }
    const all = [...ids.a!, ...ids.b!, ...ids.c!].sort();
    const gone = [ids.a![0], ids.b![0], ids.c![0], ids.a![2], ids.b![3], ids.c![4]] as string[];
    await raw.del(...gone.map((id) => `${prefix}queue:msg:${id}`));
    const alive = all.filter((id) => !gone.includes(id));

    // Every page until a short one, two at a time (how a caller pages).
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await store.queue.pending({
        limit: 2,
        ...(after === undefined ? {} : { after }),
      });
      seen.push(...page.map((m) => m.id));
      if (page.length < 2) break;
      after = page[page.length - 1]?.id;
    }
    expect(seen).toEqual(alive);
    expect(reported.map((o) => o.id).sort()).toEqual([...gone].sort());
    for (const orphan of reported) {
      const session = Object.keys(ids).find((s) => ids[s]?.includes(orphan.id));
      expect(orphan.removedFrom).toEqual([
        `${prefix}queue:pending`,
        `${prefix}queue:session:${session}`,
      ]);
    }
    for (const session of ["a", "b", "c"]) {
      expect(await members(raw, `${prefix}queue:session:${session}`)).toEqual(
        ids[session]?.filter((id) => !gone.includes(id)),
      );
      await store.queue.pending({ sessionKey: session });
    }
    expect(reported).toHaveLength(gone.length);
    expect((await raw.hkeys(`${prefix}queue:session-of`)).sort()).toEqual(alive);
  });

  it("enqueued before the session index existed, leaves its session set on that session's read, without a second report", async () => {
    const { store, prefix, raw } = await opener.open();
    const old = await earlierLayoutOrphan(raw, prefix);
    // And a message of the new layout after it.
    const [fresh] = await enqueue(store, "a", [1]);

    expect((await store.queue.pending()).map((m) => m.id)).toEqual([fresh]);
    expect(reported).toEqual([
      {
        id: old,
        key: `${prefix}queue:msg:${old}`,
        removedFrom: [`${prefix}queue:pending`],
        reason: REASON,
      },
    ]);
    // Its session is unknown: that set still holds it, until the session is read.
    expect(await members(raw, `${prefix}queue:session:a`)).toEqual([old, fresh]);
    expect((await store.queue.pending({ sessionKey: "a" })).map((m) => m.id)).toEqual([fresh]);
    expect(await members(raw, `${prefix}queue:session:a`)).toEqual([fresh]);
    expect(reported).toHaveLength(1);
  });

  it("of the earlier layout, met first by its session, is reported once, from both sets", async () => {
    const { store, prefix, raw } = await opener.open();
    const old = await earlierLayoutOrphan(raw, prefix);

    expect(await store.queue.pending({ sessionKey: "a" })).toEqual([]);
    expect(await store.queue.pending()).toEqual([]);
    expect(reported.map((o) => [o.id, o.removedFrom])).toEqual([
      [old, [`${prefix}queue:session:a`, `${prefix}queue:pending`]],
    ]);
    expect(await raw.exists(`${prefix}queue:pending`, `${prefix}queue:session:a`)).toBe(0);
  });
});

describe("the session index (queue:session-of)", () => {
  it("holds exactly the pending ids, each with its session key, through enqueue, ack and discard", async () => {
    const { store, prefix, raw } = await opener.open();
    const a = await enqueue(store, "a", [0, 1, 2]);
    const b = await enqueue(store, "b:with:colons", [3]);
    await enqueue(store, "a", [0]); // a duplicate adds nothing
    await store.queue.ack(a[0] as string);
    await store.queue.discard(a[2] as string);
    await store.queue.ack(a[0] as string); // a second ack changes nothing

    expect(await raw.hgetall(`${prefix}queue:session-of`)).toEqual({
      [a[1] as string]: "a",
      [b[0] as string]: "b:with:colons",
    });
    await store.queue.ack(a[1] as string);
    await store.queue.discard(b[0] as string);
    expect(await raw.exists(`${prefix}queue:session-of`)).toBe(0);
  });

  it("lets an ack of an id whose hash is gone remove it from its session's set, so no read reports it", async () => {
    const { store, prefix, raw } = await opener.open();
    const [acked, discarded, kept] = await enqueue(store, "a", [0, 1, 2]);
    await raw.del(`${prefix}queue:msg:${acked}`, `${prefix}queue:msg:${discarded}`);

    await store.queue.ack(acked as string);
    await store.queue.discard(discarded as string);
    expect(await members(raw, `${prefix}queue:session:a`)).toEqual([kept]);
    expect(await members(raw, `${prefix}queue:pending`)).toEqual([kept]);
    expect(await raw.hkeys(`${prefix}queue:session-of`)).toEqual([kept]);
    expect((await store.queue.pending({ sessionKey: "a" })).map((m) => m.id)).toEqual([kept]);
    expect(reported).toEqual([]);
  });

  it("is kept by the fenced ack too", async () => {
    const { store, prefix, raw } = await opener.open();
    const [acked, orphan, kept] = await enqueue(store, "a", [0, 1, 2]);
    const lease = await store.locks.acquire("session:a", { owner: "node-a", ttlMs: 60_000 });
    const writes = store.fenced({ lock: lease!.name, token: lease!.token });
    await raw.del(`${prefix}queue:msg:${orphan}`);

    await writes.queue.ack(acked as string);
    await writes.queue.discard(orphan as string);
    expect(await raw.hkeys(`${prefix}queue:session-of`)).toEqual([kept]);
    expect(await members(raw, `${prefix}queue:session:a`)).toEqual([kept]);
    expect(reported).toEqual([]);
  });

  it("of the wrong type fails an enqueue, an ack and an orphan-meeting read with nothing changed", async () => {
    const { store, prefix, raw } = await opener.open();
    const [first, second] = await enqueue(store, "a", [0, 1]);
    await raw.del(`${prefix}queue:msg:${first}`);
    await raw.del(`${prefix}queue:session-of`);
    await raw.set(`${prefix}queue:session-of`, "not a hash");
    const snapshot = async () => ({
      pending: await members(raw, `${prefix}queue:pending`),
      session: await members(raw, `${prefix}queue:session:a`),
      seq: await raw.get(`${prefix}queue:seq`),
      second: await raw.hgetall(`${prefix}queue:msg:${second}`),
    });
    const state = await snapshot();

    await expect(
      store.queue.enqueue({ idempotencyKey: "k9", sessionKey: "a", payload: {} }),
    ).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    await expect(store.queue.ack(second as string)).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    await expect(store.queue.replay()).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    await expect(store.queue.pending({ sessionKey: "a" })).rejects.toMatchObject({
      code: "STORE_CORRUPT",
    });
    expect(await snapshot()).toEqual(state);
    expect(await raw.exists(`${prefix}queue:idem:k9`)).toBe(0);
    expect(reported).toEqual([]);
  });

  it("naming a session set of the wrong type fails the all-sessions read with nothing changed", async () => {
    const { store, prefix, raw } = await opener.open();
    const [, second] = await enqueue(store, "a", [0, 1]);
    const orphan = "0000000000000009";
    // An orphan the index puts in session `x`, whose set is not a sorted set.
    await raw.zadd(`${prefix}queue:pending`, "9", orphan);
    await raw.hset(`${prefix}queue:session-of`, orphan, "x");
    await raw.set(`${prefix}queue:session:x`, "not a sorted set");

    await expect(store.queue.replay()).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await raw.zscore(`${prefix}queue:pending`, orphan)).toBe("9");
    expect(await raw.hget(`${prefix}queue:session-of`, orphan)).toBe("x");
    expect(await raw.hget(`${prefix}queue:msg:${second}`, "d")).toBe("0");
    expect(reported).toEqual([]);
  });
});
