/**
 * What the queue orphan tests share: the reports on the orphan-id diagnostics channel, and
 * enqueuing numbered messages. Not a test file: vitest only collects `*.test.ts`.
 */
import diagnosticsChannel from "node:diagnostics_channel";
import { afterAll, afterEach } from "vitest";
import type { RedisQueueOrphanId, RedisStore } from "../../src/index.js";

/**
 * Subscribes to `channel` (by name, as a logger set up elsewhere would) for the calling test
 * file: the reports collected, emptied after each test; unsubscribed after the file.
 */
export function orphanReports(channel: string): RedisQueueOrphanId[] {
  const reported: RedisQueueOrphanId[] = [];
  const listen = (message: unknown) => reported.push(message as RedisQueueOrphanId);
  diagnosticsChannel.subscribe(channel, listen);
  afterEach(() => {
    reported.length = 0;
  });
  afterAll(() => {
    diagnosticsChannel.unsubscribe(channel, listen);
  });
  return reported;
}

/** Enqueues one message `k<n>` (payload `{ n }`) of `sessionKey` per `n` in `ns`; their ids. */
export async function enqueueNumbered(
  store: RedisStore,
  sessionKey: string,
  ns: readonly number[],
): Promise<string[]> {
  const ids: string[] = [];
  for (const n of ns) {
    const { message } = await store.queue.enqueue({
      idempotencyKey: `k${n}`,
      sessionKey,
      payload: { n },
    });
    ids.push(message.id);
  }
  return ids;
}
