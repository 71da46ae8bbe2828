/**
 * A malformed message on one of the backplane's own channels (another process, another
 * version, a stray `PUBLISH`) must be dropped, never thrown out of ioredis' "message"
 * listener: ioredis rethrows a listener's exception on `process.nextTick`, which is an
 * uncaught exception that ends the node. `null` is valid JSON but not an object, so it gets
 * past the `JSON.parse` guard of every handler. Each test publishes the malformed payload,
 * then a valid node message on the same subscriber connection (Redis delivers them in
 * order), and checks the node still serves; vitest fails the run on the uncaught exception.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ClusterKeys } from "../src/cluster/keys.js";
import { createRedisBackplane, type RedisBackplane } from "../src/index.js";
import { deletePrefixes, REDIS_URL, rawClient, uniquePrefix } from "./support/redis.js";
import { waitUntil } from "./support/settle.js";

const prefixes: string[] = [];
const open: RedisBackplane[] = [];
const raws: ReturnType<typeof rawClient>[] = [];
afterEach(async () => {
  for (const backplane of open.splice(0)) await backplane.leave();
  for (const raw of raws.splice(0)) await raw.quit();
  await deletePrefixes(prefixes.splice(0));
});

async function joinedNode(): Promise<{ backplane: RedisBackplane; keys: ClusterKeys }> {
  const p = uniquePrefix("crash-audit");
  prefixes.push(p);
  const backplane = createRedisBackplane({
    url: REDIS_URL,
    prefix: p,
    nodeId: "a",
    heartbeatIntervalMs: 100,
    downAfterMs: 1_500,
  });
  open.push(backplane);
  await backplane.join({ status: () => ({ sessions: 0, draining: false }) });
  return { backplane, keys: new ClusterKeys(p) };
}

/** Publishes `payload` on `channel`, then a valid message to node "a"; waits for the latter. */
async function survives(
  backplane: RedisBackplane,
  keys: ClusterKeys,
  channel: string,
  payload: string,
): Promise<void> {
  const received: unknown[] = [];
  backplane.onMessage((message) => received.push(message));
  const raw = rawClient();
  raws.push(raw);
  await raw.publish(channel, payload);
  await raw.publish(keys.nodeChannel("a"), JSON.stringify({ f: "other", m: { ping: 1 } }));
  await waitUntil("the valid message after the malformed one", () => received.length === 1);
  expect(received).toEqual([{ ping: 1 }]);
  expect(backplane.joined).toBe(true);
}

describe("malformed messages on the backplane's channels", () => {
  it("a `null` membership notice is ignored", async () => {
    const { backplane, keys } = await joinedNode();
    await survives(backplane, keys, keys.membershipChannel, "null");
  });

  it("a `null` node message is ignored", async () => {
    const { backplane, keys } = await joinedNode();
    await survives(backplane, keys, keys.nodeChannel("a"), "null");
  });

  it("a `null` presence event is ignored", async () => {
    const { backplane, keys } = await joinedNode();
    await survives(backplane, keys, keys.presenceChannel, "null");
  });
});
