/**
 * The channel conformance suite, run against the in-memory platform of `@beamclaw/core/testing`
 * (every capability declared), against a narrower declaration to prove the skips follow the
 * capabilities, and with integer ids of the `ids` option (as Telegram's) to prove they are
 * what reaches the platform.
 */
import { afterAll, expect } from "vitest";
import {
  channelConformanceSuite,
  createMemoryPlatform,
  type PlatformInbound,
} from "../src/testing/index.js";

channelConformanceSuite("MemoryChannel", {
  platform: () => createMemoryPlatform(),
  create: (platform) => platform.createChannel(),
});

channelConformanceSuite("MemoryChannel (direct messages and typing only, 120 characters)", {
  platform: () =>
    createMemoryPlatform({
      capabilities: {
        groups: false,
        threads: false,
        media: false,
        edits: false,
        reactions: false,
        maxMessageLength: 120,
      },
    }),
  create: (platform) => platform.createChannel(),
});

/** Every id the suite put in an event for the integer-id platform. */
const integerIdsSeen = new Set<string>();
const INTEGER_ID = /^-?\d+(:\d+)?$/;

channelConformanceSuite("MemoryChannel (integer ids)", {
  platform: () => {
    const platform = createMemoryPlatform();
    return {
      ...platform,
      inject(message: PlatformInbound) {
        const ids = [message.peer.id, message.chatId, message.messageId, message.threadId];
        for (const id of [...ids, ...(message.mentions ?? []), message.replyTo?.messageId]) {
          if (id !== undefined) integerIdsSeen.add(id);
        }
        return platform.inject(message);
      },
    };
  },
  create: (platform) => platform.createChannel(),
  ids: {
    peer: (n) => String(100_000 + n),
    group: (n) => String(-1_001_000_000_000 - n),
    thread: (n) => String(10 + n),
    message: (n, chatId) => `${chatId}:${900_000 + n}`,
  },
});

afterAll(() => {
  expect(integerIdsSeen.size).toBeGreaterThan(10);
  expect([...integerIdsSeen].filter((id) => !INTEGER_ID.test(id))).toEqual([]);
  expect(integerIdsSeen).toContain("-1001000000001");
  expect(integerIdsSeen).toContain("11");
});
