/**
 * `ClusterSingleton` against the real Redis, around the start of its service: a singleton
 * stopped while its service is still starting stops that service and frees the lease
 * (nothing keeps running after `stop()`), and a service that takes longer to start than the
 * lease keeps its lease meanwhile, so no other node starts a second instance.
 */
import { ClusterSingleton } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisStore, type RedisStore } from "../src/index.js";
import { deletePrefixes, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { sleep } from "./support/settle.js";

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
    const [sa, sb] = await stores(2);
    const ttlMs = 150;
    let instances = 0;
    let most = 0;
    const make = (store: RedisStore, nodeId: string, startMs: number) =>
      new ClusterSingleton({
        name: "slow",
        store,
        nodeId,
        ttlMs,
        start: async () => {
          instances++;
          most = Math.max(most, instances);
          await sleep(startMs);
          return async () => {
            instances--;
          };
        },
      });
    const a = make(sa!, "a", ttlMs * 4);
    cleanups.push(() => a.stop());
    const startingA = a.start();
    await sleep(20);
    const b = make(sb!, "b", 0);
    cleanups.push(() => b.stop());
    await b.start();
    await startingA;
    // b keeps contending for a while, past a's start.
    await sleep(ttlMs * 3);
    expect(most).toBe(1);
    expect(a.leading).toBe(true);
    expect(b.leading).toBe(false);
  });
});
