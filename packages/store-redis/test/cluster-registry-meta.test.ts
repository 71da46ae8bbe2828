/**
 * Metadata of registry names and presence entries is JSON, with the stores' nesting limit
 * (`MAX_STORED_JSON_DEPTH`). Metadata JSON cannot carry unchanged, or nested deeper, is
 * refused with `InvalidArgumentError` and nothing is registered. Before, a registration
 * nested deeper than the Lua JSON decoder of Redis takes (1000 levels) was stored, and from
 * then on every `list()` and every `lookup()` of that name failed on every node.
 */
import { InvalidArgumentError, type JsonObject, MAX_STORED_JSON_DEPTH } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createRedisBackplane, type RedisBackplane } from "../src/index.js";
import { deletePrefixes, uniquePrefix } from "./support/redis.js";

const prefixes: string[] = [];
const backplanes: RedisBackplane[] = [];
afterEach(async () => {
  for (const backplane of backplanes.splice(0)) await backplane.leave();
  await deletePrefixes(prefixes.splice(0));
});

async function nodes(count: number): Promise<RedisBackplane[]> {
  const prefix = uniquePrefix("registry-meta");
  prefixes.push(prefix);
  const out: RedisBackplane[] = [];
  for (let i = 0; i < count; i++) {
    const backplane = createRedisBackplane({
      prefix,
      nodeId: `node-${i + 1}`,
      heartbeatIntervalMs: 100,
      downAfterMs: 1_500,
    });
    backplanes.push(backplane);
    await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
    out.push(backplane);
  }
  return out;
}

/** `{ x: { x: ... {} } }`, `depth` objects deep. */
function nested(depth: number): JsonObject {
  let value: JsonObject = {};
  for (let i = 1; i < depth; i++) value = { x: value };
  return value;
}

async function rejection(operation: () => Promise<unknown>): Promise<unknown> {
  return operation().then(
    () => new Error("expected a rejection"),
    (error: unknown) => error,
  );
}

describe("registry and presence metadata", () => {
  it("metadata nested deeper than the limit is refused, and the registry keeps working on every node", async () => {
    const [a, b] = await nodes(2);
    await a!.registry.register("ok", () => undefined, { meta: nested(MAX_STORED_JSON_DEPTH) });
    const error = await rejection(() =>
      a!.registry.register("deep", () => undefined, { meta: nested(1_000) }),
    );
    expect(InvalidArgumentError.isInstance(error)).toBe(true);
    expect(a!.registry.localNames()).toEqual(["ok"]);
    for (const node of [a!, b!]) {
      expect((await node.registry.list()).map((r) => r.name)).toEqual(["ok"]);
      expect(await node.registry.lookup("deep")).toBeUndefined();
    }
    // The name is still free.
    await b!.registry.register("deep", () => undefined, { meta: { fine: true } });
    expect((await a!.registry.lookup("deep"))?.nodeId).toBe("node-2");
  });

  it("metadata JSON cannot carry unchanged is refused, not silently changed", async () => {
    const [a] = await nodes(1);
    for (const meta of [{ n: Number.NaN }, { at: new Date(0) }]) {
      const error = await rejection(() =>
        a!.registry.register("n", () => undefined, { meta: meta as unknown as JsonObject }),
      );
      expect(InvalidArgumentError.isInstance(error)).toBe(true);
      const tracked = await rejection(() => a!.presence.track("k", meta as unknown as JsonObject));
      expect(InvalidArgumentError.isInstance(tracked)).toBe(true);
    }
    expect(await a!.registry.list()).toEqual([]);
    expect(await a!.presence.list()).toEqual([]);
  });
});
