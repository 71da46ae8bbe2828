/**
 * A channel delivering text that holds a lone surrogate (half of a UTF-16 pair, from a
 * platform's `\ud83d` escape or a plugin cutting a string mid-emoji): the person's message
 * gets through with U+FFFD in its place, rather than being refused by `send` (every model API
 * refuses a request holding one) — and the sender's name and a quoted reply likewise.
 */
import { afterEach, describe, expect, it } from "vitest";
import { normalizeInbound } from "../src/index.js";
import { channelHarness } from "./channel-harness.js";
import { waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("inbound text holding a lone surrogate", () => {
  it("normalizeInbound replaces it with U+FFFD in the text, sender name, reply quote and file name", () => {
    const message = normalizeInbound("room", {
      chatType: "direct",
      peer: { id: "alice", name: "Al\udc00" },
      text: "hi 😀 cut \ud83d",
      messageId: "m1",
      replyTo: { messageId: "m0", text: "\ude00 earlier" },
      attachments: [{ kind: "file", url: "https://files.example/a", name: "a\ud800.txt" }],
    });
    expect(message.text).toBe("hi 😀 cut \ufffd");
    expect(message.peer.name).toBe("Al\ufffd");
    expect(message.replyTo?.text).toBe("\ufffd earlier");
    expect(message.attachments[0]?.name).toBe("a\ufffd.txt");
  });

  it("reaches the session and is answered, instead of being refused", async () => {
    const { platform, runtime } = await channelHarness(cleanups, {
      settings: { dmScope: "per-channel-peer" },
    });
    const result = await platform.inject({
      chatType: "direct",
      chatId: "dm-alice",
      peer: { id: "alice", name: "Alice" },
      text: "ping \ud83d",
      messageId: "m1",
    });
    expect(result).toMatchObject({ status: "accepted" });
    const reply = await waitFor("the echoed reply", () =>
      platform.outbound().find((o) => o.kind === "text" && o.text.includes("ping")),
    );
    expect(reply.kind === "text" && reply.text).toContain("ping \ufffd");
    const history = await runtime.session("agent:main:memory:direct:alice").history();
    expect(JSON.stringify(history)).not.toMatch(/\\ud[89a-f]/);
  });
});
