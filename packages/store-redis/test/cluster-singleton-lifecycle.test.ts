/**
 * `ClusterSingleton` against the real Redis, around the start of its service: a singleton
 * stopped while its service is still starting stops that service and frees the lease
 * (nothing keeps running after `stop()`), and a service that takes longer to start than the
 * lease keeps its lease meanwhile, so no other node starts a second instance.
 */
import { ClusterSingleton, type Lease } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await deletePrefixes(prefixes.splice(0));
});

async function stores(count: number): Promise<RedisStore[]> {
  const prefix = uniquePrefix("singleton");
  prefixes.push(prefix);
  const out: RedisStore[] = [];
  for (let i = 0; i < count; i++) {
    const store = createRedisStore({ url: REDIS_URL, prefix });
    cleanups.push(() => store.close());
    await store.open();
    out.push(store);
  }
  return out;
}

/** A gate a test opens by hand. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

describe("a cluster singleton around its service's start", () => {
  it("stopped while its service is starting: the service is stopped and the lease freed", async () => {
    const [store] = await stores(1);
    const starting = gate();
    const entered = gate();
    let running = 0;
    const singleton = new ClusterSingleton({
      name: "svc",
      store: store!,
      nodeId: "a",
      ttlMs: 300,
      start: async () => {
        entered.open();
        await starting.opened;
        running++;
        return async () => {
          running--;
        };
      },
    });
    cleanups.push(() => singleton.stop());
    const started = singleton.start();
    await entered.opened;
    const stopped = singleton.stop();
    starting.open();
    await started;
    await stopped;
    expect(running).toBe(0);
    expect(singleton.leading).toBe(false);
    expect(await store!.locks.holder(singleton.lock)).toBeUndefined();
  });

  it("a service slower to start than the lease keeps it: no second instance starts elsewhere", async () => {
    const [sa, sb, observer] = await stores(3);
    // Renewed every third of it: long enough that a stalled event loop on a loaded machine
    // (a few hundred ms) does not lose it, which would rightly let b start a second instance.
    const ttlMs = 1_000;
    let instances = 0;
    let most = 0;
    const make = (store: RedisStore, nodeId: string, started: Promise<void>) =>
      new ClusterSingleton({
        name: "slow",
        store,
        nodeId,
        ttlMs,
        start: async () => {
          instances++;
          most = Math.max(most, instances);
          await started;
          return async () => {
            instances--;
          };
        },
      });
    // a's service goes on starting until its lease has been renewed well past its first
    // time to live (it takes several leases to start).
    const aStarted = gate();
    const a = make(sa!, "a", aStarted.opened);
    cleanups.push(() => a.stop());
    // Run before a's stop (cleanups run last first): a stop waits for the start to end.
    cleanups.push(async () => aStarted.open());
    const startingA = a.start();
    await waitUntil("a to take the lease and start its service", () => instances === 1);
    const first = (await observer!.locks.holder(a.lock))!;
    expect(first.owner).toBe("a");
    const b = make(sb!, "b", Promise.resolve());
    cleanups.push(() => b.stop());
    await b.start();
    expect(b.leading).toBe(false);
    const renewedPast = async (lease: Lease, ms: number) => {
      const holder = await observer!.locks.holder(a.lock);
      expect(holder, "a's lease, never lost to b").toMatchObject({
        owner: "a",
        token: lease.token,
      });
      return holder!.expiresAt > lease.expiresAt + ms;
    };
    await waitUntil("a's lease renewed past two times to live", () =>
      renewedPast(first, 2 * ttlMs),
    );
    aStarted.open();
    await startingA;
    expect(a.leading).toBe(true);
    // b keeps contending after a's start too, for another time to live of renewals.
    const afterStart = (await observer!.locks.holder(a.lock))!;
    await waitUntil("a's lease renewed past another time to live", () =>
      renewedPast(afterStart, ttlMs),
    );
    expect(most).toBe(1);
    expect(a.leading).toBe(true);
    expect(b.leading).toBe(false);
  });
});
