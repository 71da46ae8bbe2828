/**
 * Audit of the inbound queue: a payload larger than Redis takes in one argument (512 MiB of
 * UTF-8, its default `proto-max-bulk-len`), against the real Redis. Before the fix it was
 * sent: Redis answered with a protocol error and dropped the connection, so the enqueue
 * failed as `STORE_UNAVAILABLE` (retryable, though a retry fails the same way) and every
 * other command in flight on the store's connection failed with it.
 */
import { InvalidArgumentError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { keysUnder, storeOpener } from "./support/redis.js";

const opener = storeOpener("queue-oversized");
afterEach(() => opener.cleanup());

/** 2 bytes of UTF-8 per character: the payload's JSON is just over 512 MiB. */
const HUGE_TEXT_LENGTH = 256 * 1024 * 1024 + 1;

describe("queue.enqueue of a payload over 512 MiB of UTF-8", () => {
  it("is refused with InvalidArgumentError before it is sent, writing nothing and failing no other command", async () => {
    const { store, prefix, raw } = await opener.open();
    const huge = { text: "é".repeat(HUGE_TEXT_LENGTH) };
    // Started first, so it is on the connection when the huge one would be.
    const other = store.queue.enqueue({ idempotencyKey: "small", sessionKey: "s", payload: {} });
    const refused = store.queue.enqueue({ idempotencyKey: "huge", sessionKey: "s", payload: huge });
    await expect(refused).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(refused).rejects.toThrow(/message payload is too large to store/);
    expect((await other).duplicate).toBe(false);

    const pending = await store.queue.pending();
    expect(pending.map((m) => m.idempotencyKey)).toEqual(["small"]);
    // The refused key was never stored: it is new, not a duplicate.
    const again = await store.queue.enqueue({
      idempotencyKey: "huge",
      sessionKey: "s",
      payload: {},
    });
    expect(again.duplicate).toBe(false);
    expect((await keysUnder(raw, prefix)).filter((k) => k.includes("queue:msg:"))).toHaveLength(2);
  }, 120_000);
});
