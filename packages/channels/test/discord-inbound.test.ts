/**
 * How the Discord channel reads MESSAGE_CREATE (delivered by the fake gateway, with
 * Discord's documented payloads): guild channels, threads and their parents (from the
 * gateway's THREAD_CREATE / GUILD_CREATE, else a REST look-up), DMs keyed by their author,
 * mentions of the bot (as a user, through its role, by a reply), attachments.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runCleanups, startHarness, waitFor } from "./discord/harness.js";
import {
  BOT,
  BOT_ROLE_ID,
  closeDiscordMsw,
  GUILD_ID,
  preloadDiscordLibraries,
} from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(runCleanups);
afterAll(() => closeDiscordMsw());

describe("where a message belongs", () => {
  it("a guild channel message is a group message of the channel, from the author's nickname or display name", async () => {
    const h = await startHarness({ plugin: { accountId: "ops-bot" } });
    await h.platform.injectWith(
      {
        chatType: "group",
        chatId: "general",
        peer: { id: "u-1", name: "Ada" },
        text: "hi",
        messageId: "g1",
      },
      { raw: { member: { nick: "Countess", roles: [], joined_at: "2024-01-01T00:00:00.000Z" } } },
    );
    await h.platform.inject({
      chatType: "group",
      chatId: "general",
      peer: { id: "u-2", name: "Grace" },
      text: "hello",
      messageId: "g2",
    });
    await waitFor("both", () => h.calls.length === 2);
    expect(h.calls[0]).toMatchObject({
      accountId: "ops-bot",
      chatType: "group",
      chatId: "general",
      peer: { id: "u-1", name: "Countess" },
      text: "hi",
      messageId: "g1",
      mentions: { bot: false, peers: [] },
    });
    expect(h.calls[0]?.threadId).toBeUndefined();
    expect(h.calls[1]?.peer).toEqual({ id: "u-2", name: "Grace" });
    const raw = h.calls[0]?.raw as { guild_id?: string };
    expect(raw.guild_id).toBe(GUILD_ID);
    expect(h.calls[0]?.timestamp).toBe(Date.parse((raw as { timestamp: string }).timestamp));
  });

  it("a message in a thread belongs to the thread's parent channel, with the thread as threadId", async () => {
    const h = await startHarness();
    await h.platform.inject({
      chatType: "group",
      chatId: "support",
      threadId: "t-100",
      peer: { id: "u-1" },
      text: "in the thread",
      messageId: "t1",
    });
    await waitFor("the message", () => h.calls.length === 1);
    expect(h.calls[0]).toMatchObject({ chatType: "group", chatId: "support", threadId: "t-100" });
    // The gateway announced the thread (THREAD_CREATE): no REST look-up was needed.
    expect(
      h.platform.requests.filter((r) => r.method === "GET" && r.path.startsWith("/channels")),
    ).toEqual([]);
  });

  it("a thread known from GUILD_CREATE at READY needs no look-up either", async () => {
    const h = await startHarness({ platform: { threads: [{ id: "t-old", channel: "archive" }] } });
    await h.platform.inject({
      chatType: "group",
      chatId: "archive",
      threadId: "t-old",
      peer: { id: "u-1" },
      text: "old thread",
      messageId: "o1",
    });
    await waitFor("the message", () => h.calls.length === 1);
    expect(h.calls[0]).toMatchObject({ chatId: "archive", threadId: "t-old" });
    expect(
      h.platform.requests.some((r) => r.method === "GET" && r.path === "/channels/t-old"),
    ).toBe(false);
  });

  it("a thread the gateway never announced is looked up once over REST (GET /channels/{id})", async () => {
    const h = await startHarness();
    const message = {
      chatType: "group" as const,
      chatId: "support",
      threadId: "t-200",
      peer: { id: "u-1" },
      text: "quiet thread",
    };
    await h.platform.injectWith({ ...message, messageId: "q1" }, { announce: false });
    await h.platform.injectWith({ ...message, messageId: "q2" }, { announce: false });
    await waitFor("both", () => h.calls.length === 2);
    expect(h.calls.map((c) => [c.chatId, c.threadId])).toEqual([
      ["support", "t-200"],
      ["support", "t-200"],
    ]);
    expect(
      h.platform.requests.filter((r) => r.method === "GET" && r.path === "/channels/t-200"),
    ).toHaveLength(1);
  });

  it("a message whose thread cannot be looked up still arrives, as its own channel's", async () => {
    const h = await startHarness();
    const event = {
      chatType: "group" as const,
      chatId: "support",
      threadId: "t-gone",
      peer: { id: "u-1" },
      text: "still here",
      messageId: "x1",
    };
    await h.platform.injectWith(event, { announce: false, raw: {} });
    h.platform.deleteChannel("t-gone"); // GET /channels/t-gone now answers 404 Unknown Channel
    await waitFor("the message", () => h.calls.length === 1);
    expect(h.calls[0]).toMatchObject({ chatType: "group", text: "still here" });
    expect([h.calls[0]?.chatId, h.calls[0]?.threadId]).toEqual(["t-gone", undefined]);
  });

  it("a DM is a direct message keyed by its author, and a reply reuses the DM channel it came from", async () => {
    const h = await startHarness();
    await h.platform.inject({
      chatType: "direct",
      chatId: "u-7",
      peer: { id: "u-7", name: "Lin" },
      text: "psst",
      messageId: "d1",
    });
    await waitFor("the DM", () => h.calls.length === 1);
    expect(h.calls[0]).toMatchObject({
      chatType: "direct",
      chatId: "u-7",
      peer: { id: "u-7", name: "Lin" },
    });
    await h.plugin.sendText(
      { accountId: "default", chatType: "direct", chatId: "u-7" },
      "hello Lin",
    );
    const posts = h.platform.requests.filter((r) => r.method === "POST");
    expect(posts.map((r) => r.path)).toEqual(["/channels/dm-u-7/messages"]);
  });
});

describe("mentions and replies", () => {
  it("@-mentions of users read as @name; the bot is mentions.bot, other users are peers", async () => {
    const h = await startHarness();
    await h.platform.injectWith(
      {
        chatType: "group",
        chatId: "general",
        peer: { id: "u-1" },
        text: `<@${BOT.id}> ask <@!carol-3> about <#general>`,
        messageId: "mm1",
        mentionsBot: true,
      },
      {
        raw: {
          mentions: [
            { id: BOT.id, username: BOT.username, global_name: null, bot: true },
            { id: "carol-3", username: "carol", global_name: "Carol", member: { nick: "Caz" } },
          ],
        },
      },
    );
    await waitFor("the message", () => h.calls.length === 1);
    expect(h.calls[0]?.mentions).toEqual({ bot: true, peers: ["carol-3"] });
    expect(h.calls[0]?.text).toBe("@beambot ask @Caz about #chan-general");
  });

  it("an @-mention of the role Discord manages for the bot addresses the bot; @everyone does not", async () => {
    const h = await startHarness();
    const base = { chatType: "group" as const, chatId: "general", peer: { id: "u-1" } };
    await h.platform.injectWith(
      { ...base, text: `<@&${BOT_ROLE_ID}> status?`, messageId: "r1" },
      { raw: { mention_roles: [BOT_ROLE_ID] } },
    );
    await h.platform.injectWith(
      { ...base, text: "@everyone lunch", messageId: "r2" },
      { raw: { mention_everyone: true } },
    );
    await waitFor("both", () => h.calls.length === 2);
    expect(h.calls.map((c) => c.mentions?.bot)).toEqual([true, false]);
  });

  it("a reply carries the message it replies to, and a reply to the bot's own message addresses the bot", async () => {
    const h = await startHarness();
    const target = { accountId: "default", chatType: "group" as const, chatId: "general" };
    const sent = await h.plugin.sendText(target, "the build is green");
    const base = { chatType: "group" as const, chatId: "general", peer: { id: "u-1" } };
    await h.platform.inject({
      ...base,
      text: "are you sure?",
      messageId: "rp1",
      replyTo: { messageId: sent.messageId, text: "the build is green", peerId: BOT.id },
    });
    await h.platform.inject({
      ...base,
      text: "me too",
      messageId: "rp2",
      replyTo: { messageId: "someone-else-1", text: "I like it", peerId: "u-9" },
    });
    await h.platform.inject({
      ...base,
      text: "deleted",
      messageId: "rp3",
      replyTo: { messageId: "gone-1" },
    });
    await waitFor("all three", () => h.calls.length === 3);
    expect(h.calls[0]).toMatchObject({
      replyTo: { messageId: sent.messageId, text: "the build is green", peerId: BOT.id },
      mentions: { bot: true },
    });
    expect(h.calls[1]).toMatchObject({
      replyTo: { messageId: "someone-else-1", peerId: "u-9" },
      mentions: { bot: false },
    });
    expect(h.calls[2]?.replyTo).toEqual({ messageId: "gone-1" });
  });
});

describe("content", () => {
  it("attachments keep their kind, URL (private: it expires), type, name and size", async () => {
    // Downloads off: the files as Discord describes them (downloads: discord-files.test.ts).
    const h = await startHarness({
      plugin: { attachments: { inlineImageMaxBytes: 0, inlineDocumentMaxBytes: 0 } },
    });
    await h.platform.inject({
      chatType: "direct",
      chatId: "u-1",
      peer: { id: "u-1" },
      text: "",
      messageId: "a1",
      attachments: [
        {
          kind: "image",
          url: "https://cdn.discordapp.com/a/cat.png",
          mediaType: "image/png",
          name: "cat.png",
          size: 2048,
        },
        {
          kind: "file",
          url: "https://cdn.discordapp.com/a/notes.pdf",
          mediaType: "application/pdf",
          name: "notes.pdf",
          size: 10,
        },
      ],
    });
    await waitFor("the message", () => h.calls.length === 1);
    expect(h.calls[0]?.attachments).toEqual([
      {
        kind: "image",
        url: "https://cdn.discordapp.com/a/cat.png",
        privateUrl: true,
        mediaType: "image/png",
        name: "cat.png",
        size: 2048,
      },
      {
        kind: "file",
        url: "https://cdn.discordapp.com/a/notes.pdf",
        privateUrl: true,
        mediaType: "application/pdf",
        name: "notes.pdf",
        size: 10,
      },
    ]);
  });

  it("a forwarded message carries the text and files of the message it forwards (message_snapshots)", async () => {
    const h = await startHarness({
      plugin: { attachments: { inlineImageMaxBytes: 0, inlineDocumentMaxBytes: 0 } },
    });
    // A forward (message_reference.type 1): the message's own content is empty, what was
    // forwarded is in message_snapshots[0].message (no author: a subset of its fields).
    await h.platform.injectWith(
      { chatType: "direct", chatId: "u-1", peer: { id: "u-1" }, text: "", messageId: "fw1" },
      {
        raw: {
          message_reference: {
            type: 1,
            message_id: "1300000000000000001",
            channel_id: "1100000000000000009",
            guild_id: GUILD_ID,
          },
          message_snapshots: [
            {
              message: {
                type: 0,
                content: "Deploy window moved: <@u-7> ships at 17:00",
                embeds: [],
                attachments: [
                  {
                    id: "1400000000000000001",
                    filename: "plan.pdf",
                    size: 10,
                    url: "https://cdn.discordapp.com/attachments/1/2/plan.pdf",
                    proxy_url: "https://media.discordapp.net/attachments/1/2/plan.pdf",
                    content_type: "application/pdf",
                  },
                ],
                timestamp: "2025-01-01T10:00:00.000000+00:00",
                edited_timestamp: null,
                flags: 0,
                mentions: [{ id: "u-7", username: "grace", global_name: "Grace" }],
                mention_roles: [],
              },
            },
          ],
        },
      },
    );
    await waitFor("the forward", () => h.calls.length === 1);
    expect(h.calls[0]).toMatchObject({
      chatType: "direct",
      chatId: "u-1",
      text: "Deploy window moved: @Grace ships at 17:00",
      attachments: [
        {
          kind: "file",
          url: "https://cdn.discordapp.com/attachments/1/2/plan.pdf",
          privateUrl: true,
          mediaType: "application/pdf",
          name: "plan.pdf",
          size: 10,
        },
      ],
      // Whom the forwarded message mentioned is not whom this one addresses.
      mentions: { bot: false, peers: [] },
    });
    expect(h.calls[0]?.replyTo).toBeUndefined();
  });

  it("skips a malformed MESSAGE_CREATE with a warning and keeps going", async () => {
    const warnings: string[] = [];
    const h = await startHarness({
      logger: { debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} },
    });
    const base = { chatType: "group" as const, chatId: "general", peer: { id: "u-1" }, text: "x" };
    await h.platform.injectWith({ ...base, messageId: "bad" }, { raw: { author: null } });
    await h.platform.inject({ ...base, messageId: "good" });
    await waitFor("the good one", () => h.calls.length === 1);
    expect(h.calls[0]?.messageId).toBe("good");
    expect(warnings).toContain("discord message skipped");
  });
});
