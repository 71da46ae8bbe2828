/**
 * Shared by the outbox tests: a real `ChannelOutbox` over a `MemoryStore` with short retry
 * waits, both closed after each test.
 */
import { afterEach } from "vitest";
import {
  ChannelOutbox,
  type ChannelOutboxOptions,
  MemoryStore,
  type OutboxSender,
} from "../src/index.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An open `MemoryStore`, closed after the test. */
export async function openStore(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  return store;
}

/** The outbox of channel `room` over `store` (retries after 1 to 5 ms), stopped after the test. */
export function outboxOver(
  store: MemoryStore,
  send: OutboxSender,
  options: Partial<ChannelOutboxOptions> = {},
): ChannelOutbox {
  const outbox = new ChannelOutbox({
    kv: store.kv,
    channel: "room",
    send,
    baseDelayMs: 1,
    maxDelayMs: 5,
    ...options,
  });
  cleanups.push(() => outbox.stop());
  return outbox;
}
