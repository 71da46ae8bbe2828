/**
 * Session-key resolution for channels: DM scopes, groups, threads, and platform ids encoded
 * into the session-key alphabet without collisions.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeKeySegment,
  encodeKeySegment,
  InvalidArgumentError,
  InvalidSessionKeyError,
  parseSessionKey,
  resolveSessionKey,
} from "../src/index.js";

/** Ids made of the characters that matter: separators, dots, case, escapes, unicode, lone surrogates. */
const oddId = (maxLength: number) =>
  fc.string({
    minLength: 1,
    maxLength,
    unit: fc.constantFrom(
      ..."aZ09.:/\\ ~!_-+=@#%?*\n\t\u0000é✓😀👨‍👩‍👧\uD800\uDC00",
      "..",
      "thread",
      "subagent",
    ),
  });

const dm = {
  channel: "telegram",
  accountId: "default",
  peer: { id: "4711" },
  chatType: "direct" as const,
  chatId: "4711",
};
const group = { ...dm, chatType: "group" as const, chatId: "-100123" };

describe("resolveSessionKey", () => {
  it("puts every DM of an agent in its main session under dmScope main (the default)", () => {
    expect(resolveSessionKey(dm, { agentId: "ops" })).toBe("agent:ops:main");
    expect(
      resolveSessionKey({ ...dm, channel: "discord", peer: { id: "9" } }, { agentId: "ops" }),
    ).toBe("agent:ops:main");
  });

  it("gives each sender one session across channels under per-peer", () => {
    expect(resolveSessionKey(dm, { agentId: "ops", dmScope: "per-peer" })).toBe(
      "agent:ops:direct:4711",
    );
    expect(
      resolveSessionKey({ ...dm, channel: "discord" }, { agentId: "ops", dmScope: "per-peer" }),
    ).toBe("agent:ops:direct:4711");
  });

  it("gives each channel and sender its own session under per-channel-peer", () => {
    expect(resolveSessionKey(dm, { agentId: "ops", dmScope: "per-channel-peer" })).toBe(
      "agent:ops:telegram:direct:4711",
    );
  });

  it("separates the bots of one channel under per-account-channel-peer", () => {
    const key = resolveSessionKey(
      { ...dm, accountId: "support-bot" },
      { agentId: "ops", dmScope: "per-account-channel-peer" },
    );
    expect(key).toBe("agent:ops:telegram:support-bot:direct:4711");
    expect(parseSessionKey(key)).toMatchObject({ kind: "direct", peer: "4711" });
  });

  it("gives a group one session per channel and group, whatever the DM scope", () => {
    for (const dmScope of [
      "main",
      "per-peer",
      "per-channel-peer",
      "per-account-channel-peer",
    ] as const) {
      expect(resolveSessionKey(group, { agentId: "ops", dmScope })).toBe(
        "agent:ops:telegram:group:-100123",
      );
    }
    expect(parseSessionKey("agent:ops:telegram:group:-100123")).toMatchObject({
      kind: "group",
      channel: "telegram",
      groupId: "-100123",
    });
  });

  it("appends the thread to the key of its chat", () => {
    expect(resolveSessionKey({ ...group, threadId: "77" }, { agentId: "ops" })).toBe(
      "agent:ops:telegram:group:-100123:thread:77",
    );
    expect(
      resolveSessionKey({ ...dm, threadId: "t1" }, { agentId: "ops", dmScope: "per-channel-peer" }),
    ).toBe("agent:ops:telegram:direct:4711:thread:t1");
    expect(parseSessionKey("agent:ops:telegram:group:-100123:thread:77")).toMatchObject({
      kind: "group",
      threadId: "77",
    });
  });

  it("refuses an invalid agent id or DM scope", () => {
    expect(() => resolveSessionKey(dm, { agentId: "Not Valid!" })).toThrow(InvalidSessionKeyError);
    expect(() => resolveSessionKey(dm, { agentId: "ops", dmScope: "everyone" as never })).toThrow(
      InvalidArgumentError,
    );
  });

  it("produces a key parseSessionKey accepts for any ids, however odd", () => {
    const id = oddId(60);
    fc.assert(
      fc.property(id, id, id, fc.option(id, { nil: undefined }), (peer, chat, account, thread) => {
        for (const dmScope of [
          "main",
          "per-peer",
          "per-channel-peer",
          "per-account-channel-peer",
        ] as const) {
          for (const chatType of ["direct", "group"] as const) {
            const key = resolveSessionKey(
              {
                channel: "web",
                accountId: account,
                peer: { id: peer },
                chatType,
                chatId: chat,
                threadId: thread,
              },
              { agentId: "main", dmScope },
            );
            expect(parseSessionKey(key).key).toBe(key);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it("never lets two different senders share a session by spelling (Alice vs alice)", () => {
    const a = resolveSessionKey(
      { ...dm, peer: { id: "Alice" } },
      { agentId: "ops", dmScope: "per-peer" },
    );
    const b = resolveSessionKey(
      { ...dm, peer: { id: "alice" } },
      { agentId: "ops", dmScope: "per-peer" },
    );
    expect(a).not.toBe(b);
    // ...unless the channel says its ids ignore case.
    const c = resolveSessionKey(
      { ...dm, peer: { id: "U024BE7LH" } },
      { agentId: "ops", dmScope: "per-peer", caseInsensitiveIds: true },
    );
    expect(c).toBe("agent:ops:direct:u024be7lh");
  });
});

describe("encodeKeySegment", () => {
  it("keeps ordinary ids readable", () => {
    expect(encodeKeySegment("4711")).toBe("4711");
    expect(encodeKeySegment("alice.smith@example.com")).toBe("alice.smith@example.com");
    expect(encodeKeySegment("-100123")).toBe("-100123");
    expect(encodeKeySegment("U024BE7LH")).toBe("!u024!b!e7!l!h");
  });

  it("encodes separators, path characters, dots that could form .., and reserved words", () => {
    expect(encodeKeySegment("a:b")).toBe("a~3ab");
    expect(encodeKeySegment("../etc")).toBe("~2e.~2fetc");
    expect(encodeKeySegment("...")).toBe("~2e.~2e");
    expect(encodeKeySegment("a..b")).toBe("a.~2eb");
    expect(encodeKeySegment("room/42 ✓")).toBe("room~2f42~20~e2~9c~93");
    expect(encodeKeySegment("subagent")).not.toBe("subagent");
    expect(encodeKeySegment("thread")).not.toBe("thread");
  });

  it("hashes an id too long for a key, and refuses an empty one", () => {
    const long = encodeKeySegment("x".repeat(1000));
    expect(long).toMatch(/^~h[0-9a-f]{40}$/);
    expect(encodeKeySegment("x".repeat(1000))).toBe(long);
    expect(encodeKeySegment("y".repeat(1000))).not.toBe(long);
    expect(() => encodeKeySegment("")).toThrow(InvalidArgumentError);
  });

  it("property: is injective (decoding gives the id back) and always a valid segment", () => {
    fc.assert(
      fc.property(oddId(24), (id) => {
        const segment = encodeKeySegment(id);
        // Ids that encode long are hashed; the rest decode back to themselves.
        if (!segment.startsWith("~h")) expect(decodeKeySegment(segment)).toBe(id);
        expect(parseSessionKey(`agent:main:direct:${segment}`).peer).toBe(segment);
      }),
      { numRuns: 500 },
    );
  });
});
