/**
 * The outbox and rate limits: a 429 is a wait the platform asked for, not a failed attempt
 * (bounded by `maxRateLimitWaitMs` instead of `maxAttempts`); a wait holds up only its own
 * conversation unless the error's `scope` is `channel`; order within a conversation stays
 * strict; dead letters keep the platform's own error code. On the real `ChannelOutbox` over a
 * `MemoryStore`.
 */
import { describe, expect, it } from "vitest";
import {
  ChannelSendError,
  type ChannelTarget,
  InvalidArgumentError,
  type OutboxEntry,
  type OutboxSender,
} from "../src/index.js";
import { openStore, outboxOver } from "./channel-outbox-harness.js";

const alice: ChannelTarget = { accountId: "default", chatType: "direct", chatId: "alice" };
const bob: ChannelTarget = { accountId: "default", chatType: "direct", chatId: "bob" };

/** A 429 as the adapters report it. */
function rateLimit(retryAfterMs: number, scope?: "chat" | "channel") {
  return new ChannelSendError("room", `rate limited; retry in ${retryAfterMs} ms`, {
    isRetryable: true,
    retryAfterMs,
    statusCode: 429,
    platformCode: "ratelimited",
    ...(scope === undefined ? {} : { scope }),
  });
}

/**
 * A platform that logs every try as `<chat>:<text>` and answers from `script` (keyed by
 * text, one error per try, in order) before it takes a message.
 */
function platform(script: Record<string, Error[]> = {}) {
  const tries: string[] = [];
  const delivered: string[] = [];
  const waiters: Array<{ done: () => boolean; resolve: () => void }> = [];
  const send: OutboxSender = async (entry, part) => {
    const text = part.kind === "text" ? part.text : "";
    tries.push(`${entry.target.chatId}:${text}`);
    const error = script[text]?.shift();
    if (error !== undefined) throw error;
    delivered.push(`${entry.target.chatId}:${text}`);
    for (const w of waiters.splice(0)) {
      if (w.done()) w.resolve();
      else waiters.push(w);
    }
    return { messageId: `m${delivered.length}` };
  };
  /** Resolves once `done()` holds after a delivery (or now). */
  const until = (done: () => boolean) =>
    new Promise<void>((resolve) => {
      if (done()) resolve();
      else waiters.push({ done, resolve });
    });
  return { tries, delivered, send, until };
}

describe("ChannelOutbox: rate limits", () => {
  it("does not count rate limits as failed attempts: a part limited more often than maxAttempts is delivered", async () => {
    const store = await openStore();
    const room = platform({ one: [1, 2, 3, 4, 5].map(() => rateLimit(1)) });
    const outbox = outboxOver(store, room.send, { maxAttempts: 2 });
    await outbox.add({ target: alice, parts: [{ kind: "text", text: "one" }] });
    outbox.resume();
    await outbox.idle();
    expect(room.tries).toEqual(Array.from({ length: 6 }, () => "alice:one"));
    expect(room.delivered).toEqual(["alice:one"]);
    expect(await outbox.deadLetters()).toEqual([]);
    expect(await outbox.list()).toEqual([]);
  });

  it("still counts real failures between rate limits, and clears both counts once a part is confirmed", async () => {
    const store = await openStore();
    const failure = () =>
      new ChannelSendError("room", "Bad Gateway", { isRetryable: true, statusCode: 502 });
    const room = platform({
      one: [failure(), rateLimit(1), rateLimit(1), failure()],
      two: [failure()],
    });
    const seen: OutboxEntry[] = [];
    const probe: OutboxSender = async (entry, part, ...rest) => {
      seen.push(structuredClone(entry));
      return room.send(entry, part, ...rest);
    };
    const outbox = outboxOver(store, probe, { maxAttempts: 3 });
    await outbox.add({
      target: alice,
      parts: [
        { kind: "text", text: "one" },
        { kind: "text", text: "two" },
      ],
    });
    outbox.resume();
    await outbox.idle();
    expect(room.delivered).toEqual(["alice:one", "alice:two"]);
    // Before the last try of "one": two failures, two rate limits (1 ms each).
    expect(seen[4]).toMatchObject({ sent: 0, attempts: 2, rateLimits: 2, rateLimitedMs: 2 });
    // "two" starts afresh.
    expect(seen[5]).toMatchObject({ sent: 1, attempts: 0 });
    expect(seen[5]?.rateLimits).toBeUndefined();
    expect(seen[5]?.rateLimitedMs).toBeUndefined();
  });

  it("sets a part aside once its rate-limit waits would pass maxRateLimitWaitMs, with the 429 and the platform's code", async () => {
    const store = await openStore();
    const room = platform({ one: Array.from({ length: 50 }, () => rateLimit(5)) });
    const outbox = outboxOver(store, room.send, { maxAttempts: 100, maxRateLimitWaitMs: 20 });
    await outbox.add({ target: alice, parts: [{ kind: "text", text: "one" }] });
    outbox.resume();
    await outbox.idle();
    // Four waits of 5 ms fit in 20 ms; the fifth 429 would take it past: set aside.
    expect(room.tries).toHaveLength(5);
    const [dead] = await outbox.deadLetters();
    expect(dead).toMatchObject({
      attempts: 1,
      rateLimitedMs: 20,
      error: { code: "CHANNEL_SEND_FAILED", statusCode: 429, platformCode: "ratelimited" },
    });
    expect(await outbox.list()).toEqual([]);
  });

  it("keeps the platform's own error code in the dead letter of a refused message", async () => {
    const store = await openStore();
    const refused = new ChannelSendError("room", "chat.postMessage failed: channel_not_found", {
      isRetryable: false,
      platformCode: "channel_not_found",
    });
    const room = platform({ one: [refused] });
    const outbox = outboxOver(store, room.send);
    await outbox.add({ target: alice, parts: [{ kind: "text", text: "one" }] });
    outbox.resume();
    await outbox.idle();
    const [dead] = await outbox.deadLetters();
    expect(dead?.error).toEqual({
      code: "CHANNEL_SEND_FAILED",
      message: "chat.postMessage failed: channel_not_found",
      platformCode: "channel_not_found",
    });
  });
});

describe("ChannelOutbox: order per conversation", () => {
  it("a chat waiting out a long retry_after does not hold up the channel's other chats; its own order stays strict", async () => {
    const store = await openStore();
    const room = platform({ "a-1": [rateLimit(60_000)] });
    const first = outboxOver(store, room.send);
    await first.add({ target: alice, parts: [{ kind: "text", text: "a-1" }] });
    await first.add({ target: alice, parts: [{ kind: "text", text: "a-2" }] });
    await first.add({ target: bob, parts: [{ kind: "text", text: "b-1" }] });
    await first.add({
      target: { ...bob, threadId: "t-1" },
      parts: [{ kind: "text", text: "t-1" }],
    });
    first.resume();
    await room.until(() => room.delivered.length === 2);
    expect(room.delivered).toEqual(["bob:b-1", "bob:t-1"]);
    // Alice's second message waits behind her first, which waits out its minute.
    expect(room.tries).toEqual(["alice:a-1", "bob:b-1", "bob:t-1"]);
    let idle = false;
    void first.idle().then(() => {
      idle = true;
    });
    // Bob's chat keeps flowing while Alice's waits.
    await first.add({ target: bob, parts: [{ kind: "text", text: "b-2" }] });
    await room.until(() => room.delivered.length === 3);
    expect(room.delivered.at(-1)).toBe("bob:b-2");
    expect(idle).toBe(false); // Alice's messages are still to send
    await first.stop();

    // Past the wait (a new process here), Alice's messages go in order.
    const second = outboxOver(store, room.send);
    second.resume();
    await second.idle();
    expect(room.delivered.slice(3)).toEqual(["alice:a-1", "alice:a-2"]);
  });

  it("a rate limit with scope channel (a global limit) holds up every chat of the channel", async () => {
    const store = await openStore();
    const room = platform({ "a-1": [rateLimit(50, "channel")] });
    const outbox = outboxOver(store, room.send);
    await outbox.add({ target: alice, parts: [{ kind: "text", text: "a-1" }] });
    await outbox.add({ target: bob, parts: [{ kind: "text", text: "b-1" }] });
    outbox.resume();
    await outbox.idle();
    // Bob waited too: Alice's retry (first in order) went before him.
    expect(room.tries).toEqual(["alice:a-1", "alice:a-1", "bob:b-1"]);
  });

  it("a failure other than a rate limit keeps the order within the chat", async () => {
    const store = await openStore();
    const room = platform({
      "a-1": [new ChannelSendError("room", "Bad Gateway", { isRetryable: true, statusCode: 502 })],
    });
    const outbox = outboxOver(store, room.send);
    await outbox.add({ target: alice, parts: [{ kind: "text", text: "a-1" }] });
    await outbox.add({ target: alice, parts: [{ kind: "text", text: "a-2" }] });
    outbox.resume();
    await outbox.idle();
    expect(room.delivered).toEqual(["alice:a-1", "alice:a-2"]);
  });
});

describe("ChannelOutbox options", () => {
  it("refuses a maxRateLimitWaitMs that is not a finite number >= 0 with InvalidArgumentError", async () => {
    const store = await openStore();
    const room = platform();
    for (const maxRateLimitWaitMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => outboxOver(store, room.send, { maxRateLimitWaitMs })).toThrow(
        InvalidArgumentError,
      );
    }
    expect(() => outboxOver(store, room.send, { maxRateLimitWaitMs: 0 })).not.toThrow();
  });
});

describe("ChannelSendError", () => {
  it("carries the platform's code and the scope of the wait", () => {
    const error = rateLimit(1_500, "channel");
    expect(error).toMatchObject({
      platformCode: "ratelimited",
      scope: "channel",
      retryAfterMs: 1_500,
      statusCode: 429,
    });
    const plain = new ChannelSendError("room", "no", { isRetryable: false });
    expect(plain.platformCode).toBeUndefined();
    expect(plain.scope).toBeUndefined();
  });
});
