/**
 * Audit of the inbound queue: a pending message id whose message hash is gone (an evicting
 * `maxmemory-policy`, which the README forbids, or a manual `DEL`), against the real Redis.
 * Before the fix `pending` and `replay` skipped such an id silently but counted it towards the
 * page: a page came back short while more messages were pending (so a caller paging until a
 * short page stopped early), and the id stayed in the pending sets for every later read.
 * Now the script removes it from the pending sets, fills the page from the ids after it, and
 * the store reports it on `REDIS_QUEUE_ORPHAN_ID_CHANNEL`.
 */
import type { QueuedMessage } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { REDIS_QUEUE_ORPHAN_ID_CHANNEL, type RedisStore } from "../src/index.js";
import { enqueueNumbered, orphanReports } from "./support/queue-orphans.js";
import { storeOpener } from "./support/redis.js";

const opener = storeOpener("queue-orphans");
/** The channel's documented name (subscribed by name, as a logger set up elsewhere would). */
const CHANNEL = "beamclaw:store-redis:queue:orphan-id";
const reported = orphanReports(CHANNEL);
afterEach(() => opener.cleanup());

/** Enqueues `count` messages `k<n>` of session `sessionKey`; returns their ids in order. */
const enqueue = (store: RedisStore, count: number, sessionKey = "s", from = 0) =>
  enqueueNumbered(
    store,
    sessionKey,
    Array.from({ length: count }, (_, i) => from + i),
  );

/** Every page of `pending` until a short one, `limit` at a time (how a caller pages). */
async function pageAll(store: RedisStore, limit: number, sessionKey?: string) {
  const all: QueuedMessage[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await store.queue.pending({
      limit,
      ...(after === undefined ? {} : { after }),
      ...(sessionKey === undefined ? {} : { sessionKey }),
    });
    all.push(...page);
    if (page.length < limit) return all;
    after = page[page.length - 1]?.id;
  }
}

describe("queue pending ids whose message hash is gone", () => {
  it("are reported on the exported channel", () => {
    expect(REDIS_QUEUE_ORPHAN_ID_CHANNEL).toBe(CHANNEL);
  });

  it("do not cut a page short: the page is filled from the ids after them", async () => {
    const { store, prefix, raw } = await opener.open();
    const ids = await enqueue(store, 6);
    await raw.del(`${prefix}queue:msg:${ids[0]}`, `${prefix}queue:msg:${ids[1]}`);

    const page = await store.queue.pending({ limit: 3 });
    expect(page.map((m) => m.id)).toEqual([ids[2], ids[3], ids[4]]);
    expect(page.map((m) => m.payload)).toEqual([{ n: 2 }, { n: 3 }, { n: 4 }]);
  });

  it("paging with `after` past a run of them longer than a page reaches every message", async () => {
    const { store, prefix, raw } = await opener.open();
    const ids = await enqueue(store, 30);
    // Ids 3..14 (twelve in a row: more than four pages of 3) and 20 lose their hashes.
    const gone = [...ids.slice(3, 15), ids[20] as string];
    await raw.del(...gone.map((id) => `${prefix}queue:msg:${id}`));
    const alive = ids.filter((id) => !gone.includes(id));

    expect((await pageAll(store, 3)).map((m) => m.id)).toEqual(alive);
    expect(reported.map((o) => o.id).sort()).toEqual([...gone].sort());
    // Listing by session pages the same way (the orphans already left both sets).
    expect((await pageAll(store, 4, "s")).map((m) => m.id)).toEqual(alive);
  });

  it("are removed from both pending sets and reported, when read by session", async () => {
    const { store, prefix, raw } = await opener.open();
    const ids = await enqueue(store, 3, "a");
    await enqueue(store, 2, "b", 3);
    const orphan = ids[1] as string;
    await raw.del(`${prefix}queue:msg:${orphan}`);

    const page = await store.queue.pending({ sessionKey: "a" });
    expect(page.map((m) => m.id)).toEqual([ids[0], ids[2]]);
    expect(await raw.zscore(`${prefix}queue:session:a`, orphan)).toBeNull();
    expect(await raw.zscore(`${prefix}queue:pending`, orphan)).toBeNull();
    expect(await raw.zcard(`${prefix}queue:pending`)).toBe(4);
    expect(reported).toEqual([
      {
        id: orphan,
        key: `${prefix}queue:msg:${orphan}`,
        removedFrom: [`${prefix}queue:session:a`, `${prefix}queue:pending`],
        reason: "its message hash is gone (evicted or deleted): the message is lost",
      },
    ]);
    // Removed once: a second read meets it no more.
    await store.queue.pending({ sessionKey: "a" });
    await store.queue.pending();
    expect(reported).toHaveLength(1);
  });

  it("replay fills its page too, and counts a delivery only of the messages it returns", async () => {
    const { store, prefix, raw } = await opener.open();
    const ids = await enqueue(store, 5);
    await raw.del(`${prefix}queue:msg:${ids[0]}`, `${prefix}queue:msg:${ids[2]}`);

    const replayed = await store.queue.replay({ limit: 3 });
    expect(replayed.map((m) => [m.id, m.deliveries])).toEqual([
      [ids[1], 1],
      [ids[3], 1],
      [ids[4], 1],
    ]);
    // No hash was made for an orphan by counting its delivery.
    expect(await raw.exists(`${prefix}queue:msg:${ids[0]}`)).toBe(0);
    expect(await raw.exists(`${prefix}queue:msg:${ids[2]}`)).toBe(0);
    expect(await raw.zrange(`${prefix}queue:pending`, "0", "-1")).toEqual([ids[1], ids[3], ids[4]]);
    expect(reported.map((o) => o.id)).toEqual([ids[0], ids[2]]);
  });

  it("are not removed when the read fails on a message key of the wrong type", async () => {
    const { store, prefix, raw } = await opener.open();
    const ids = await enqueue(store, 3);
    await raw.del(`${prefix}queue:msg:${ids[0]}`);
    await raw.del(`${prefix}queue:msg:${ids[1]}`);
    await raw.set(`${prefix}queue:msg:${ids[1]}`, "not a hash");

    await expect(store.queue.replay()).rejects.toMatchObject({ code: "STORE_CORRUPT" });
    expect(await raw.zrange(`${prefix}queue:pending`, "0", "-1")).toEqual(ids);
    expect(await raw.hget(`${prefix}queue:msg:${ids[2]}`, "d")).toBe("0");
    expect(reported).toEqual([]);
  });
});
