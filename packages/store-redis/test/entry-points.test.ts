/**
 * The built package as a user's app loads it, in a fresh Node.js process: nothing starts on
 * import, ioredis is loaded only when a store opens from a URL, and `close()` leaves nothing
 * that keeps the process alive.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { REDIS_URL } from "./support/redis.js";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  name: string;
};

/** Runs an ES module script in a fresh Node.js process from this package's directory. */
async function script(source: string): Promise<Record<string, unknown>> {
  // The process's own stdio streams are created first, so they count in the baseline, not
  // against whatever touches them later (ioredis' `debug` dependency looks at stderr).
  const prelude = "process.stdout; process.stderr;";
  const child = spawn(process.execPath, ["--input-type=module", "-e", prelude + source], {
    cwd: new URL("..", import.meta.url),
    env: { ...process.env, BEAMCLAW_REDIS_URL: REDIS_URL },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`script exited with ${code}: ${stderr}`);
  return JSON.parse(stdout.trim()) as Record<string, unknown>;
}

const loadedIoredis = `Object.keys((await import("node:module")).createRequire(import.meta.url).cache).some((p) => p.includes("/ioredis/"))`;

describe("the built package", () => {
  it("importing it and creating a store starts nothing and does not load ioredis", async () => {
    const result = await script(`
      const before = process.getActiveResourcesInfo().length;
      const mod = await import(${JSON.stringify(pkg.name)});
      const store = mod.createRedisStore({ url: process.env.BEAMCLAW_REDIS_URL });
      await new Promise((r) => setImmediate(r));
      const after = process.getActiveResourcesInfo();
      console.log(JSON.stringify({ exports: Object.keys(mod).sort(), extra: after.length - before, after, ioredis: ${loadedIoredis} }));
    `);
    expect(result.exports).toEqual(expect.arrayContaining(["RedisStore", "createRedisStore"]));
    expect(result.extra, `open after import: ${String(result.after)}`).toBe(0);
    expect(result.ioredis).toBe(false);
  });

  it("loads ioredis on open() from a url, and close() lets the process exit", async () => {
    const result = await script(`
      const before = process.getActiveResourcesInfo().length;
      const mod = await import(${JSON.stringify(pkg.name)});
      const store = mod.createRedisStore({ url: process.env.BEAMCLAW_REDIS_URL, prefix: "beamclaw-test:entry:" + process.pid + ":" });
      await store.open();
      const loaded = ${loadedIoredis};
      await store.kv.set("k", 1);
      await store.kv.delete("k");
      await store.close();
      await new Promise((r) => setImmediate(r));
      console.log(JSON.stringify({ loaded, open: process.getActiveResourcesInfo().length - before }));
    `);
    expect(result.loaded).toBe(true);
    expect(result.open).toBe(0);
  });
});
