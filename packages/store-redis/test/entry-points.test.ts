/**
 * The built package as a user's app loads it, in a fresh Node.js process: nothing starts on
 * import (the shared entry-point specification), ioredis is loaded only when a store opens
 * from a URL, and `close()` leaves nothing that keeps the process alive.
 */
import { describe, expect, it } from "vitest";
import { describeEntryPoints, runInFreshProcess } from "../../../test/entry-points.js";
import { REDIS_URL } from "./support/redis.js";

const packageDir = new URL("..", import.meta.url);

describeEntryPoints(packageDir, {
  "@beamclaw/store-redis": ["RedisStore", "createRedisStore", "createRedisBackplane"],
});

const loadedIoredis = `Object.keys((await import("node:module")).createRequire(import.meta.url).cache).some((p) => p.includes("/ioredis/"))`;

describe("ioredis loading", () => {
  it("creating a store from a url starts nothing and does not load ioredis", async () => {
    const result = await runInFreshProcess<{ opened: number; ioredis: boolean }>(
      packageDir,
      `
      const before = process.getActiveResourcesInfo().length;
      const { createRedisStore } = await import("@beamclaw/store-redis");
      createRedisStore({ url: process.env.BEAMCLAW_REDIS_URL });
      await new Promise((r) => setImmediate(r));
      console.log(JSON.stringify({ opened: process.getActiveResourcesInfo().length - before, ioredis: ${loadedIoredis} }));
    `,
      { BEAMCLAW_REDIS_URL: REDIS_URL },
    );
    expect(result).toEqual({ opened: 0, ioredis: false });
  });

  it("loads ioredis on open() from a url, and close() lets the process exit", async () => {
    const result = await runInFreshProcess<{ loaded: boolean; opened: number }>(
      packageDir,
      `
      const before = process.getActiveResourcesInfo().length;
      const { createRedisStore } = await import("@beamclaw/store-redis");
      const store = createRedisStore({ url: process.env.BEAMCLAW_REDIS_URL, prefix: "beamclaw-test:entry:" + process.pid + ":" });
      await store.open();
      const loaded = ${loadedIoredis};
      await store.kv.set("k", 1);
      await store.kv.delete("k");
      await store.close();
      await new Promise((r) => setImmediate(r));
      console.log(JSON.stringify({ loaded, opened: process.getActiveResourcesInfo().length - before }));
    `,
      { BEAMCLAW_REDIS_URL: REDIS_URL },
    );
    expect(result).toEqual({ loaded: true, opened: 0 });
  });
});
