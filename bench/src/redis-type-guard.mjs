// Paired measurement: the cost of the wrong-type guard (`refuseWrongTypes`, three TYPE calls)
// in store-redis's queue.enqueue script. Runs the store's script as it is and the same script
// with the guard's call removed, in alternating rounds on the same Redis, and reports Redis'
// own time per call (INFO commandstats, evalsha) and the client's throughput for each.
// Usage: node src/redis-type-guard.mjs  (Redis at 127.0.0.1:6379; uses keys bench:tg:*)

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const Redis = require("ioredis").default ?? require("ioredis");
const source = readFileSync(
  new URL("../../packages/store-redis/src/scripts.ts", import.meta.url),
  "utf8",
);

/** The text of the script `name` in scripts.ts, with `${REFUSE_WRONG_TYPES}` filled in. */
function script(name) {
  const guard = source.match(/const REFUSE_WRONG_TYPES = `([\s\S]*?)`;/)[1];
  const body = source.match(
    new RegExp(`export const ${name} = new LuaScript\\(\\s*"[^"]+",\\s*\`([\\s\\S]*?)\`,\\s*\\);`),
  )[1];
  return body.replace("${REFUSE_WRONG_TYPES}", guard);
}

const guarded = script("QUEUE_ENQUEUE");
const unguarded = guarded.replace(/^refuseWrongTypes\(.*\)$/m, "");
if (unguarded === guarded) throw new Error("the guard's call was not found in QUEUE_ENQUEUE");

const redis = new Redis({ host: "127.0.0.1", port: 6379, lazyConnect: true });
await redis.connect();
const sha = {
  guarded: await redis.script("LOAD", guarded),
  unguarded: await redis.script("LOAD", unguarded),
};
const OPS = Number(process.env.OPS ?? 20000);
const ROUNDS = Number(process.env.ROUNDS ?? 6);
const IN_FLIGHT = 64;
const prefix = `bench:tg:${randomUUID()}:`;

async function round(kind) {
  await redis.config("RESETSTAT");
  const start = process.hrtime.bigint();
  for (let done = 0; done < OPS; done += IN_FLIGHT) {
    const pipeline = redis.pipeline();
    for (let i = 0; i < IN_FLIGHT; i++) {
      const n = done + i;
      pipeline.evalsha(
        sha[kind],
        3,
        `${prefix}idem:${kind}:${n}`,
        `${prefix}ids`,
        `${prefix}pending`,
        `${prefix}msg:`,
        `${prefix}sess:`,
        `idem-${n}`,
        `agent:main:s${n % 100}`,
        '{"text":"hi"}',
        String(Date.now()),
      );
    }
    await pipeline.exec();
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const stats = await redis.info("commandstats");
  const usec = Number(stats.match(/cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/)[1]);
  return { rate: OPS / seconds, usec };
}

const results = { guarded: [], unguarded: [] };
await round("guarded");
await round("unguarded"); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const kind of r % 2 === 0 ? ["guarded", "unguarded"] : ["unguarded", "guarded"]) {
    results[kind].push(await round(kind));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const g = {
  rate: median(results.guarded.map((x) => x.rate)),
  usec: median(results.guarded.map((x) => x.usec)),
};
const u = {
  rate: median(results.unguarded.map((x) => x.rate)),
  usec: median(results.unguarded.map((x) => x.usec)),
};
console.log(
  `queue.enqueue script, ${OPS} calls x ${ROUNDS} rounds each, ${IN_FLIGHT} in flight, median:`,
);
console.log(
  `  with the guard:    ${g.usec.toFixed(2)} µs/call in Redis, ${(g.rate / 1000).toFixed(1)} k calls/s`,
);
console.log(
  `  without the guard: ${u.usec.toFixed(2)} µs/call in Redis, ${(u.rate / 1000).toFixed(1)} k calls/s`,
);
console.log(
  `  guard: +${(g.usec - u.usec).toFixed(2)} µs/call in Redis (${((g.usec / u.usec - 1) * 100).toFixed(1)}%), throughput ${((g.rate / u.rate) * 100).toFixed(1)}% of unguarded`,
);
// Clean up what the rounds wrote.
let cursor = "0";
do {
  const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
  cursor = next;
  if (keys.length > 0) await redis.unlink(...keys);
} while (cursor !== "0");
await redis.quit();
