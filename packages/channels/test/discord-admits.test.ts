/**
 * Discord downloads a message's images and PDFs from its CDN before it hands the message
 * over; it asks the host first (`ctx.admits`), so that nothing is fetched for a message the
 * host turns away: a DM from a sender not paired, a group message that does not mention the
 * bot, a sender or group not allowed. Against the fake Discord (gateway over WebSockets,
 * REST and the CDN through msw), counting the requests that reach the CDN.
 *
 * Discord delivers a message's files as attachment objects whose `url` is a link to its CDN
 * (https://discord.com/developers/docs/resources/message#attachment-object); the fake CDN
 * serves them at `cdn.discordapp.com/attachments/...`, signed and expiring as Discord's are.
 */
import {
  type ChannelSettings,
  type ChannelStateStore,
  type InboundMessageInput,
  MemoryStore,
} from "@beamclaw/core";
import type { PlatformInbound } from "@beamclaw/core/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createDiscordChannel } from "../src/discord/index.js";
import { cleanups, runCleanups, startHarness, waitFor } from "./discord/harness.js";
import {
  cdnRequests,
  clearCdn,
  closeDiscordMsw,
  type DiscordPlatform,
  preloadDiscordLibraries,
  serveCdnFile,
  startDiscordPlatform,
  TOKEN,
} from "./discord/platform.js";
import { managedHost, PNG } from "./shared-harness.js";

await preloadDiscordLibraries();
afterEach(async () => {
  await runCleanups();
  clearCdn();
});
afterAll(() => closeDiscordMsw());

/** A PNG on the CDN, as a message's attachment. */
function picture(name: string) {
  const url = serveCdnFile(name, { body: PNG, contentType: "image/png" });
  return { kind: "image" as const, url, mediaType: "image/png", name, size: PNG.length };
}

/** The file names the CDN was asked for, in order. */
const fetched = () => cdnRequests.map((r) => new URL(r.url).pathname.split("/").at(-1));

function dm(platform: DiscordPlatform, from: string, messageId: string, name: string) {
  return platform.inject({
    chatType: "direct",
    chatId: from,
    peer: { id: from, name: from },
    text: "look",
    messageId,
    attachments: [picture(name)],
  });
}

type Picture = ReturnType<typeof picture>;

/** A message with files in a guild channel (`room-1` unless said), mentioning the bot unless said. */
function inRoom(
  from: string,
  messageId: string,
  attachments: Picture[],
  where: { room?: string; mention?: boolean } = {},
): PlatformInbound {
  return {
    chatType: "group",
    chatId: where.room ?? "room-1",
    peer: { id: from, name: from },
    text: "look",
    messageId,
    mentionsBot: where.mention ?? true,
    attachments,
  };
}

/** A `ChannelManager` running the Discord channel against a fresh fake Discord. */
async function managed(settings: ChannelSettings) {
  const platform = await startDiscordPlatform();
  cleanups.push(() => platform.close());
  const discord = createDiscordChannel({
    token: TOKEN,
    rest: { api: platform.api },
    identifyIntervalMs: 0,
  });
  const host = await managedHost(discord, settings, { cleanups, reply: "a picture" });
  const texts = () => platform.outbound().flatMap((o) => (o.kind === "text" ? [o.text] : []));
  return { platform, texts, ...host };
}

describe("through a ChannelManager: nothing is fetched for a message the host turns away", () => {
  it("dmPolicy pairing: an unknown sender's pictures stay on the CDN and the pairing code is sent once; once approved, the next picture is fetched once and reaches the model", async () => {
    const { platform, manager, provider, texts, statuses } = await managed({ dmPolicy: "pairing" });

    await dm(platform, "eve", "e1", "first.png");
    await dm(platform, "eve", "e2", "second.png");
    await waitFor("both answered", () => statuses.length === 2);
    expect(statuses).toEqual(["pairing", "pairing"]);
    await waitFor("the pairing code", () => texts().some((t) => t.includes("pairing code")));
    expect(fetched()).toEqual([]);

    const [request] = await manager.pairing.pending("discord");
    await manager.approvePairing("discord", request!.code, "owner");
    await dm(platform, "eve", "e3", "third.png");
    await waitFor("the model's request", () => provider.requests.length === 1, 10_000);
    expect(fetched()).toEqual(["third.png"]);
    expect(provider.requests[0]!.messages.at(-1)!.content).toContainEqual({
      type: "image",
      mediaType: "image/png",
      data: PNG.toString("base64"),
    });
    await waitFor("the reply", () => texts().includes("a picture"));
    // One pairing code for the two messages, sent by the host's receive (not by the question).
    expect(texts().filter((t) => t.includes("pairing code"))).toHaveLength(1);
  });

  it("groups: a message without a mention (requireMention), a sender off groupAllowFrom and a group off the allowlist fetch nothing; a mention from an allowed sender fetches its file once", async () => {
    const { platform, provider, statuses } = await managed({
      groupPolicy: "allowlist",
      groups: ["room-1"],
      groupAllowFrom: ["alice"],
    });
    await platform.inject(inRoom("alice", "g1", [picture("chatter.png")], { mention: false }));
    await platform.inject(inRoom("mallory", "g2", [picture("mallory.png")]));
    await platform.inject(inRoom("alice", "g3", [picture("elsewhere.png")], { room: "room-2" }));
    await waitFor("three answered", () => statuses.length === 3);
    expect(statuses).toEqual(["ignored", "blocked", "blocked"]);
    expect(fetched()).toEqual([]);

    await platform.inject(inRoom("alice", "g4", [picture("asked.png")]));
    await waitFor("the model's request", () => provider.requests.length === 1, 10_000);
    expect(statuses.at(-1)).toBe("accepted");
    expect(fetched()).toEqual(["asked.png"]);
  });
});

describe("asking before the download", () => {
  it("asks with the message described (its files not downloaded), and hands a refused one over as described", async () => {
    const asked: InboundMessageInput[] = [];
    const h = await startHarness({
      admits: (input) => {
        asked.push(input);
        return input.peer.id !== "eve";
      },
    });
    await dm(h.platform, "eve", "m1", "eve.png");
    await waitFor("eve's message", () => h.taken.includes("m1"));
    await dm(h.platform, "alice", "m2", "alice.png");
    await waitFor("alice's message", () => h.taken.includes("m2"));

    expect(fetched()).toEqual(["alice.png"]);
    // Handed over once each; the refused one described, for the host to answer itself.
    expect(h.calls.map((c) => c.messageId)).toEqual(["m1", "m2"]);
    expect(h.calls[0]!.attachments).toEqual([
      expect.objectContaining({ name: "eve.png", privateUrl: true, url: expect.any(String) }),
    ]);
    expect(h.calls[0]!.attachments![0]!.data).toBeUndefined();
    expect(h.calls[1]!.attachments![0]!.data).toBe(PNG.toString("base64"));
    const question = asked.find((a) => a.messageId === "m1")!;
    expect(question).toMatchObject({ accountId: "default", chatType: "direct", chatId: "eve" });
    expect(question.attachments?.every((a) => a.data === undefined)).toBe(true);
  });

  it("asks once per message with files (not again in its turn after asking on its arrival), admitted or not", async () => {
    const asked: string[] = [];
    const h = await startHarness({
      admits: (input) => {
        asked.push(input.messageId);
        return input.peer.id !== "eve";
      },
    });
    await dm(h.platform, "alice", "m1", "alice.png");
    await waitFor("alice's message", () => h.taken.includes("m1"));
    await dm(h.platform, "eve", "m2", "eve.png");
    await waitFor("eve's message", () => h.taken.includes("m2"));
    expect(asked).toEqual(["m1", "m2"]);
    expect(fetched()).toEqual(["alice.png"]);
    expect(h.calls.map((c) => c.attachments?.[0]?.data !== undefined)).toEqual([true, false]);
  });

  it("a message arriving behind a slow download is fetched ahead only when the host admits it", async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    cleanups.push(async () => release());
    const slow = serveCdnFile("slow.png", async () => {
      await released;
      return new Response(PNG, { headers: { "Content-Type": "image/png" } });
    });
    const h = await startHarness({ admits: (input) => input.peer.id !== "eve" });
    // All three in one channel, where each waits behind the one before (DMs of three
    // senders would be three conversations, none waiting).
    const held: Picture = {
      kind: "image",
      url: slow,
      mediaType: "image/png",
      name: "slow.png",
      size: PNG.length,
    };
    await h.platform.inject(inRoom("alice", "m1", [held]));
    await h.platform.inject(inRoom("eve", "m2", [picture("refused.png")]));
    await h.platform.inject(inRoom("bob", "m3", [picture("ahead.png")]));
    // bob's file is fetched while alice's is still on its way; eve's is not.
    await waitFor("the files fetched ahead", () => fetched().length === 2);
    expect(h.calls).toEqual([]);
    release();
    await waitFor("all three", () => h.taken.length === 3);
    expect(h.calls.map((c) => c.messageId)).toEqual(["m1", "m2", "m3"]);
    expect(h.calls.map((c) => c.attachments?.[0]?.data !== undefined)).toEqual([true, false, true]);
    expect(fetched()).toEqual(["slow.png", "ahead.png"]);
  });

  it("a backfilled message (fetched over REST after a restart) from a refused sender: its files stay on the CDN", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const key = (accountId: string, name: string) => `state:${accountId}:${name}`;
    const state: ChannelStateStore = {
      get: (accountId, name) => store.kv.get(key(accountId, name)),
      set: async (accountId, name, value) => {
        await store.kv.set(key(accountId, name), value);
      },
      delete: (accountId, name) => store.kv.delete(key(accountId, name)),
    };
    const admits = (input: InboundMessageInput) => input.peer.id !== "eve";
    const first = await startHarness({ state, admits });
    const { platform } = first;
    const say = (from: string, attachments: Picture[] = []) => {
      const messageId = platform.snowflake();
      platform.post(inRoom(from, messageId, attachments));
      return messageId;
    };
    const before = say("alice");
    await waitFor("the first message", () => first.taken.includes(before));
    await first.stop();

    // Posted while the bot is away: only in the channel's history.
    const refused = say("eve", [picture("eve.png")]);
    const admitted = say("alice", [picture("alice.png")]);
    const second = await startHarness({ on: platform, state, admits });
    await waitFor("the backfilled messages", () => second.taken.includes(admitted));
    expect(second.calls.map((c) => c.messageId)).toEqual([refused, admitted]);
    expect(second.calls[0]!.attachments![0]!.data).toBeUndefined();
    expect(second.calls[1]!.attachments![0]!.data).toBe(PNG.toString("base64"));
    expect(fetched()).toEqual(["alice.png"]);
  });

  it("a host that cannot answer the question (a passing failure) still gets the files, and receive decides", async () => {
    const warnings: string[] = [];
    const h = await startHarness({
      admits: () => {
        throw new Error("the store is down");
      },
      logger: {
        debug() {},
        info() {},
        warn: (message) => {
          warnings.push(message);
        },
        error() {},
      },
    });
    await dm(h.platform, "alice", "m1", "alice.png");
    await waitFor("the message", () => h.taken.includes("m1"));
    expect(fetched()).toEqual(["alice.png"]);
    expect(h.calls[0]!.attachments![0]!.data).toBe(PNG.toString("base64"));
    // Asked once (as the message arrived), so warned once.
    expect(warnings).toEqual([
      "the host could not say whether it takes a message; its files are fetched",
    ]);
  });
});
