/**
 * The Telegram channel by long polling, against a fake Bot API behind msw that speaks
 * Telegram's documented payloads: the channel conformance suite, then Telegram's own rules —
 * offsets confirmed only after the host has an update, mapping of chats, topics and mentions,
 * outbound calls and their errors, and a reconnect storm that loses and duplicates nothing.
 */
import {
  AbortedError,
  AgentRuntime,
  ChannelManager,
  ChannelSendError,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  StoreError,
  subscribeTelemetry,
} from "@beamclaw/core";
import {
  channelConformanceSuite,
  createEchoProvider,
  createScriptedProvider,
  type ScriptedStep,
} from "@beamclaw/core/testing";
import type { Message, Update } from "grammy/types";
import { afterEach, describe, expect, it } from "vitest";
import {
  createTelegramChannel,
  TelegramApiError,
  type TelegramChannel,
  type TelegramChannelOptions,
} from "../src/index.js";
import { managedHost } from "./shared-harness.js";
import {
  BOT,
  CONFLICT,
  FakeTelegram,
  groupMessage,
  mentionEntity,
  privateMessage,
  quietLogger,
  startChannel,
  startTelegramPlatform,
  TELEGRAM_CONFORMANCE_IDS,
  TOKEN,
  until,
  user,
  useTelegramApi,
} from "./telegram-platform.js";

useTelegramApi();

channelConformanceSuite("TelegramChannel (long polling)", {
  platform: () => startTelegramPlatform("polling"),
  ids: TELEGRAM_CONFORMANCE_IDS,
  create: (platform) =>
    platform.attach(
      createTelegramChannel({
        token: TOKEN,
        polling: { timeoutSeconds: 5, baseDelayMs: 5, maxDelayMs: 50 },
        attachments: { url: (file) => platform.fileUrl(file.fileId) },
      }),
    ),
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const ALICE = user(100_001, "Alice", "alice");
const BOB = user(100_002, "Bob");
const GROUP = -1_001_234_567_890;

const polling =
  (extra: Partial<TelegramChannelOptions> = {}) =>
  (_api: FakeTelegram) =>
    createTelegramChannel({
      token: TOKEN,
      polling: { timeoutSeconds: 2, baseDelayMs: 2, maxDelayMs: 10 },
      ...extra,
    });

async function started(...args: Parameters<typeof startChannel>) {
  const channel = await startChannel(...args);
  cleanups.push(() => channel.stop());
  return channel;
}

/** A runtime answering with an echo model, and a manager running `plugin` with open policies. */
async function host(plugin: TelegramChannel, settings: Record<string, unknown> = {}) {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [createEchoProvider()], models: ["echo/any"] }),
    agents: [{ id: "main", model: "echo/any" }],
  });
  await runtime.start();
  const manager = new ChannelManager({
    runtime,
    channels: [{ plugin, dmPolicy: "open", groupPolicy: "open", ...settings }],
    reconnect: { baseDelayMs: 5, maxDelayMs: 20 },
    outbox: { baseDelayMs: 5, maxDelayMs: 50 },
  });
  await manager.start();
  cleanups.push(async () => {
    await manager.stop();
    await runtime.stop();
    await store.close();
  });
  return { manager, runtime, store };
}

const texts = (api: FakeTelegram) =>
  api.actions.flatMap((a) => (a.kind === "text" ? [a.text ?? ""] : []));

describe("long polling", () => {
  it("confirms an update only after ctx.receive resolved: one the host could not take is fetched again", async () => {
    let failOnce = true;
    const { api, received } = await started(polling(), async (input) => {
      if (input.text === "second" && failOnce) {
        failOnce = false;
        throw new StoreError("STORE_UNAVAILABLE", "the store is down");
      }
      return { status: "accepted" };
    });
    const first = api.push({ message: privateMessage(ALICE, 1, "first") });
    const second = api.push({ message: privateMessage(ALICE, 2, "second") });
    await until("the second update to be taken", () => received.length === 3);
    expect(received.map((m) => m.text)).toEqual(["first", "second", "second"]);
    await until("the second update to be confirmed", () =>
      api.calls.some((c) => c.method === "getUpdates" && c.params.offset === second.update_id + 1),
    );
    // After the failure the channel asks again from the second update: the first is
    // confirmed, the second is not, until the host has it.
    const offsets = api.calls
      .filter((c) => c.method === "getUpdates")
      .map((c) => c.params.offset ?? null)
      .filter((offset, i, all) => i === 0 || offset !== all[i - 1]);
    expect(offsets).toEqual([null, first.update_id + 1, second.update_id + 1]);
    expect(first.update_id + 1).toBe(second.update_id);
  });

  it("never fetches an acknowledged update again, across a restart of the channel", async () => {
    const { api, received, restart } = await started(polling());
    api.push({ message: privateMessage(ALICE, 1, "before") });
    await until("the first message", () => received.length === 1);
    await restart();
    const after = api.push({ message: privateMessage(ALICE, 2, "after") });
    await until("the second message", () => received.length === 2);
    expect(received.map((m) => m.text)).toEqual(["before", "after"]);
    const afterRestart = api.calls.filter((c) => c.method === "getUpdates").at(-1)!;
    expect(afterRestart.params.offset).toBeGreaterThanOrEqual(after.update_id);
  });

  it("acknowledges updates it does not hand over: edits, service messages, the bot's own", async () => {
    const { api, received } = await started(polling());
    api.push({ edited_message: { ...privateMessage(ALICE, 1, "typo"), edit_date: 1 } as never });
    api.push({
      message: {
        ...groupMessage(GROUP, ALICE, 2, ""),
        text: undefined,
        new_chat_members: [BOB],
      } as unknown as Message,
    });
    api.push({ message: { ...groupMessage(GROUP, BOT, 3, "my own"), from: BOT } as Message });
    const last = api.push({ message: privateMessage(ALICE, 4, "real") });
    await until("the real message", () => received.length === 1);
    expect(received[0]!.text).toBe("real");
    await until("everything to be confirmed", () =>
      api.calls.some((c) => c.method === "getUpdates" && c.params.offset === last.update_id + 1),
    );
  });

  it("stop aborts the waiting getUpdates; nothing keeps polling", async () => {
    const { api, plugin } = await started(polling({ polling: { timeoutSeconds: 30 } }));
    await until("a long poll to wait", () => api.waitingPolls === 1);
    await plugin.stop();
    expect(api.waitingPolls).toBe(0);
    const calls = api.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(api.calls.length).toBe(calls);
    await plugin.stop(); // idempotent
  });

  it("retries failed polls with backoff (honouring retry_after) and loses nothing", async () => {
    const { api, received, disconnects } = await started(polling());
    api.script(
      "getUpdates",
      "network",
      { html: 502 },
      { errorCode: 429, description: "Too Many Requests: retry after 0", retryAfter: 0 },
    );
    api.push({ message: privateMessage(ALICE, 1, "through the trouble") });
    await until("the message", () => received.length === 1);
    expect(disconnects).toEqual([]);
    expect(api.calls.filter((c) => c.method === "getUpdates").map((c) => c.answered)).toContain(
      429,
    );
  });

  it("reports itself disconnected after disconnectAfterFailures failed polls in a row", async () => {
    const { api, disconnects } = await started(
      polling({ polling: { baseDelayMs: 1, maxDelayMs: 2, disconnectAfterFailures: 3 } }),
    );
    api.script("getUpdates", "network", "network", "network");
    await until("the disconnect", () => disconnects.length === 1);
    expect(TelegramApiError.isInstance(disconnects[0])).toBe(true);
    expect(disconnects[0]).toMatchObject({ method: "getUpdates", isRetryable: true });
  });

  it("reports a 409 Conflict (another instance polls with the token) as a lost connection at once", async () => {
    const { api, disconnects } = await started(polling());
    await until("a long poll to wait", () => api.waitingPolls === 1);
    api.conflict();
    await until("the disconnect", () => disconnects.length === 1);
    expect(disconnects[0]).toMatchObject({ errorCode: 409 });
  });

  it("fails start with a non-retryable TelegramApiError when Telegram refuses the token", async () => {
    const plugin = createTelegramChannel({ token: `${BOT.id}:AAE-a-token-telegram-does-not-know` });
    const error = await plugin
      .start({
        channel: "telegram",
        config: {},
        logger: quietLogger,
        signal: new AbortController().signal,
        receive: async () => ({ status: "accepted" }),
        disconnected() {},
      })
      .catch((e: unknown) => e);
    expect(TelegramApiError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ method: "getMe", errorCode: 401, isRetryable: false });
    await plugin.stop();
  });

  it("deletes a webhook before polling (getUpdates refuses to run beside one)", async () => {
    const api = new FakeTelegram();
    api.webhook = { url: "https://old.example.com/hook" };
    const { received } = await started(polling(), undefined, api);
    expect(api.webhook).toBeNull();
    api.push({ message: privateMessage(ALICE, 1, "polled") });
    await until("the message", () => received.length === 1);
  });
});

describe("inbound mapping (Telegram's documented Update payloads)", () => {
  it("maps a private chat to a direct message: chat id, peer, <chat>:<message> id, timestamp", async () => {
    const { api, received } = await started(polling());
    const message = privateMessage(ALICE, 42, "hello");
    api.push({ message });
    await until("the message", () => received.length === 1);
    expect(received[0]).toMatchObject({
      chatType: "direct",
      chatId: "100001",
      peer: { id: "100001", name: "Alice" },
      text: "hello",
      messageId: "100001:42",
      timestamp: message.date * 1000,
      mentions: { bot: false, peers: [] },
    });
    expect(received[0]!.threadId).toBeUndefined();
    expect((received[0]!.raw as Update).message?.message_id).toBe(42);
  });

  it("addresses the bot by @mention, text_mention, /command@bot or a reply to its message, and nothing else", async () => {
    const { api, received } = await started(polling());
    const mention = "@beamclaw_test_bot what's up?";
    api.push({
      message: groupMessage(GROUP, ALICE, 1, mention, {
        entities: [mentionEntity(mention, "beamclaw_test_bot")],
      }),
    });
    api.push({
      message: groupMessage(GROUP, ALICE, 2, "BeamClaw, and Bob too", {
        entities: [
          { type: "text_mention", offset: 0, length: 8, user: BOT },
          { type: "text_mention", offset: 18, length: 3, user: BOB },
        ],
      }),
    });
    api.push({
      message: groupMessage(GROUP, ALICE, 3, "/status@beamclaw_test_bot", {
        entities: [{ type: "bot_command", offset: 0, length: 25 }],
      }),
    });
    const botMessage = groupMessage(GROUP, BOT, 4, "the build is green");
    api.push({
      message: groupMessage(GROUP, ALICE, 5, "thanks!", { reply_to_message: botMessage }),
    });
    const other = "@someone_else_bot hi";
    api.push({
      message: groupMessage(GROUP, ALICE, 6, other, {
        entities: [mentionEntity(other, "someone_else_bot")],
      }),
    });
    api.push({ message: groupMessage(GROUP, ALICE, 7, "just chatting about beamclaw_test_bot") });
    await until("all six", () => received.length === 6);
    expect(received.map((m) => m.mentions?.bot)).toEqual([true, true, true, true, false, false]);
    expect(received[1]!.mentions?.peers).toEqual([String(BOB.id)]);
    expect(received[3]!.replyTo).toEqual({
      messageId: `${GROUP}:4`,
      text: "the build is green",
      peerId: String(BOT.id),
    });
    expect(received.every((m) => m.chatType === "group" && m.chatId === String(GROUP))).toBe(true);
  });

  it("maps a forum topic to a thread, and does not take the topic's start for a reply", async () => {
    const { api, received } = await started(polling());
    api.push({ message: groupMessage(GROUP, ALICE, 31, "deploy now?", { topic: 30 }) });
    // A reply in a plain supergroup has a message_thread_id too, but is no topic message.
    const earlier = groupMessage(GROUP, BOB, 40, "earlier");
    api.push({
      message: groupMessage(GROUP, ALICE, 41, "replying", {
        message_thread_id: 40,
        reply_to_message: earlier,
      }),
    });
    await until("both", () => received.length === 2);
    expect(received[0]).toMatchObject({ threadId: "30", messageId: `${GROUP}:31` });
    expect(received[0]!.replyTo).toBeUndefined();
    expect(received[0]!.mentions?.bot).toBe(false);
    expect(received[1]!.threadId).toBeUndefined();
    expect(received[1]!.replyTo).toMatchObject({
      messageId: `${GROUP}:40`,
      peerId: String(BOB.id),
    });
  });

  it("maps a channel post to a group message from the channel", async () => {
    const { api, received } = await started(polling());
    const channel = { id: -1_009_876_543_210, title: "Announcements", type: "channel" as const };
    api.push({
      channel_post: {
        message_id: 7,
        sender_chat: channel,
        chat: channel,
        date: 1_735_689_600,
        text: "release 1.2 is out",
      } as Message,
    });
    await until("the post", () => received.length === 1);
    expect(received[0]).toMatchObject({
      chatType: "group",
      chatId: String(channel.id),
      peer: { id: String(channel.id), name: "Announcements" },
      messageId: `${channel.id}:7`,
    });
  });

  it("hands a photo over inline (downloaded with getFile), never with a URL that carries the token", async () => {
    const { api, received } = await started(polling());
    const jpeg = Buffer.from("\xff\xd8\xff\xe0 a tiny jpeg", "latin1");
    api.addFile("AgACAgIAAxkBAAIBq2", jpeg);
    api.push({
      message: privateMessage(ALICE, 5, "", {
        text: undefined,
        caption: "what is this?",
        photo: [
          { file_id: "AgACAgIAAxkBAAIBq1", file_unique_id: "AQADs1", width: 90, height: 67 },
          {
            file_id: "AgACAgIAAxkBAAIBq2",
            file_unique_id: "AQADs2",
            width: 320,
            height: 240,
            file_size: jpeg.length,
          },
        ],
      } as Partial<Message>),
    });
    await until("the photo", () => received.length === 1);
    expect(received[0]!.text).toBe("what is this?");
    expect(received[0]!.attachments).toEqual([
      { kind: "image", mediaType: "image/jpeg", size: jpeg.length, data: jpeg.toString("base64") },
    ]);
    expect(JSON.stringify(received[0]!.attachments)).not.toContain(TOKEN);
  });

  it("a slow download holds only its own chat: another chat's update goes ahead, each chat in order", async () => {
    const { api, received } = await started(polling());
    const jpeg = Buffer.from("\xff\xd8\xff\xe0 a tiny jpeg", "latin1");
    const size = jpeg.length;
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    cleanups.push(async () => release());
    api.addFile("slow", jpeg, "photos/slow.jpg", held);
    // One batch: Alice's photo (its download held), then Bob's text, then Alice's text.
    api.push({
      message: privateMessage(ALICE, 1, "", {
        text: undefined,
        caption: "first, a photo",
        photo: [
          { file_id: "slow", file_unique_id: "uslow", width: 320, height: 240, file_size: size },
        ],
      } as Partial<Message>),
    });
    api.push({ message: privateMessage(BOB, 1, "Bob, meanwhile") });
    api.push({ message: privateMessage(ALICE, 2, "second, after the photo") });
    await until("Bob's update", () => received.length === 1);
    expect(received.map((m) => m.text)).toEqual(["Bob, meanwhile"]);
    // Nothing is confirmed before Alice's photo is taken.
    expect(api.pendingUpdates).toHaveLength(3);
    release();
    await until("Alice's updates", () => received.length === 3);
    expect(received.map((m) => m.text)).toEqual([
      "Bob, meanwhile",
      "first, a photo",
      "second, after the photo",
    ]);
    expect(received[1]!.attachments?.[0]?.data).toBe(jpeg.toString("base64"));
    await until("all confirmed", () => api.pendingUpdates.length === 0);
  });

  it("still hands the message over when a file is too big or cannot be downloaded", async () => {
    const { api, received } = await started(
      polling({ attachments: { inlineImageMaxBytes: 1024 } }),
    );
    const photo = (id: string, size: number) => ({
      caption: "look",
      photo: [{ file_id: id, file_unique_id: `u${id}`, width: 1280, height: 960, file_size: size }],
    });
    api.push({ message: privateMessage(ALICE, 1, "", photo("big", 5_000_000) as never) });
    api.push({ message: privateMessage(ALICE, 2, "", photo("gone", 100) as never) });
    api.push({
      message: privateMessage(ALICE, 3, "", {
        document: {
          file_id: "doc",
          file_unique_id: "udoc",
          file_name: "report.pdf",
          mime_type: "application/pdf",
          file_size: 2048,
        },
      } as never),
    });
    await until("all three", () => received.length === 3);
    expect(received[0]!.attachments).toEqual([
      { kind: "image", mediaType: "image/jpeg", size: 5_000_000 },
    ]);
    expect(received[1]!.attachments).toEqual([
      { kind: "image", mediaType: "image/jpeg", size: 100 },
    ]);
    expect(received[2]!.attachments).toEqual([
      { kind: "file", mediaType: "application/pdf", name: "report.pdf", size: 2048 },
    ]);
    // The small photo and the PDF were asked for (neither could be had); the big photo not.
    expect(api.calls.filter((c) => c.method === "getFile")).toHaveLength(2);
  });

  it("hands a text document over inline (a log, a CSV), within inlineTextMaxBytes", async () => {
    const { api, received } = await started(polling({ attachments: { inlineTextMaxBytes: 64 } }));
    const log = Buffer.from("12:00 deploy ok\n12:05 error: disk full\n");
    api.addFile("BQACAgIAAxkBAAIBl1", log, "documents/file_2.log");
    const document = (id: string, size: number, name: string) => ({
      document: {
        file_id: id,
        file_unique_id: `u${id}`,
        file_name: name,
        mime_type: "text/plain",
        file_size: size,
      },
    });
    api.push({
      message: privateMessage(
        ALICE,
        1,
        "",
        document("BQACAgIAAxkBAAIBl1", log.length, "app.log") as never,
      ),
    });
    api.push({ message: privateMessage(ALICE, 2, "", document("big", 65, "big.log") as never) });
    await until("both", () => received.length === 2);
    expect(received[0]!.attachments).toEqual([
      {
        kind: "file",
        mediaType: "text/plain",
        name: "app.log",
        size: log.length,
        data: log.toString("base64"),
      },
    ]);
    expect(received[1]!.attachments).toEqual([
      { kind: "file", mediaType: "text/plain", name: "big.log", size: 65 },
    ]);
  });

  it("hands a PDF document over inline, and leaves one over inlineDocumentMaxBytes as a name", async () => {
    const { api, received } = await started(
      polling({ attachments: { inlineDocumentMaxBytes: 64 } }),
    );
    const pdf = Buffer.from("%PDF-1.7\n% a tiny invoice\n");
    api.addFile("BQACAgIAAxkBAAIBr1", pdf, "documents/file_1.pdf");
    const document = (id: string, size: number, name: string) => ({
      caption: "pay this?",
      document: {
        file_id: id,
        file_unique_id: `u${id}`,
        file_name: name,
        mime_type: "application/pdf",
        file_size: size,
      },
    });
    api.push({
      message: privateMessage(
        ALICE,
        1,
        "",
        document("BQACAgIAAxkBAAIBr1", pdf.length, "invoice.pdf") as never,
      ),
    });
    api.push({
      message: privateMessage(ALICE, 2, "", document("huge", 4_096, "scan.pdf") as never),
    });
    await until("both", () => received.length === 2);
    expect(received[0]!.attachments).toEqual([
      {
        kind: "file",
        mediaType: "application/pdf",
        name: "invoice.pdf",
        size: pdf.length,
        data: pdf.toString("base64"),
      },
    ]);
    expect(JSON.stringify(received[0]!.attachments)).not.toContain(TOKEN);
    expect(received[1]!.attachments).toEqual([
      { kind: "file", mediaType: "application/pdf", name: "scan.pdf", size: 4_096 },
    ]);
    expect(api.calls.filter((c) => c.method === "getFile")).toHaveLength(1);
  });
});

describe("through a ChannelManager", () => {
  it("has a voice note transcribed when it downloads audio (inlineAudioMaxBytes) for a manager with a transcriber", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const store = new MemoryStore();
    await store.open();
    const provider = createScriptedProvider({ id: "s", responses: [{ text: "Will do." }] });
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider] }),
      agents: [{ id: "main", model: "s/m" }],
    });
    await runtime.start();
    const heard: Array<{ bytes: Buffer; mediaType: string }> = [];
    const manager = new ChannelManager({
      runtime,
      channels: [
        {
          plugin: polling({ attachments: { inlineAudioMaxBytes: 1024 * 1024 } })(api),
          dmPolicy: "open",
        },
      ],
      transcriber: {
        id: "test-stt",
        async transcribe(input) {
          heard.push({ bytes: Buffer.from(input.data), mediaType: input.mediaType });
          return { text: "Remind me to water the plants." };
        },
      },
    });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
    });
    const ogg = Buffer.concat([Buffer.from("OggS"), Buffer.alloc(40, 3)]);
    api.addFile("AwACAgIAAxkBAAIBv1", ogg, "voice/file_3.oga");
    api.push({
      message: privateMessage(ALICE, 1, "", {
        voice: {
          file_id: "AwACAgIAAxkBAAIBv1",
          file_unique_id: "uv1",
          duration: 2,
          mime_type: "audio/ogg",
          file_size: ogg.length,
        },
      } as never),
    });
    await until("the answer", () => provider.requests.length === 1);
    expect(heard).toEqual([{ bytes: ogg, mediaType: "audio/ogg" }]);
    expect(provider.requests[0]!.messages.at(-1)).toEqual({
      role: "user",
      content: [
        { type: "text", text: "[audio: audio/ogg, transcribed]\nRemind me to water the plants." },
      ],
    });
  });

  it("hands voice notes, videos and files over the limits to the session described, not dropped", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const { provider } = await managedHost(
      polling({ attachments: { inlineImageMaxBytes: 64 } })(api),
      { dmPolicy: "open" },
      { cleanups, reply: Array.from({ length: 4 }, () => "seen") },
    );
    const jpeg = Buffer.from("\xff\xd8\xff\xe0 a tiny jpeg", "latin1");
    api.addFile("small", jpeg);
    // An HTML page where a photo should be: never handed to the model as an image.
    api.addFile("html", Buffer.from("<!DOCTYPE html><title>login</title>"));
    api.push({
      message: privateMessage(ALICE, 1, "", {
        voice: { file_id: "v1", file_unique_id: "uv1", duration: 3, mime_type: "audio/ogg" },
      } as never),
    });
    await until("the voice note's answer", () => provider.requests.length === 1);
    api.push({
      message: privateMessage(ALICE, 2, "", {
        caption: "two photos",
        photo: [{ file_id: "big", file_unique_id: "ubig", width: 9, height: 9, file_size: 65 }],
      } as never),
    });
    await until("the big photo's answer", () => provider.requests.length === 2);
    api.push({
      message: privateMessage(ALICE, 3, "", {
        photo: [{ file_id: "html", file_unique_id: "uhtml", width: 9, height: 9 }],
      } as never),
    });
    await until("the fake photo's answer", () => provider.requests.length === 3);
    api.push({
      message: privateMessage(ALICE, 4, "", {
        caption: "this one",
        photo: [{ file_id: "small", file_unique_id: "usmall", width: 9, height: 9 }],
      } as never),
    });
    await until("the small photo's answer", () => provider.requests.length === 4);
    const lastUser = (i: number) => provider.requests[i]!.messages.at(-1)!;
    expect(lastUser(0)).toMatchObject({ role: "user", content: [{ type: "text" }] });
    expect(JSON.stringify(lastUser(0).content)).toContain("[audio: audio/ogg]");
    expect(JSON.stringify(lastUser(1).content)).toContain("[image: image/jpeg]");
    expect(lastUser(1).content.some((p) => p.type === "image")).toBe(false);
    expect(lastUser(2).content.some((p) => p.type === "image")).toBe(false);
    expect(JSON.stringify(lastUser(2).content)).toContain("[image: image/jpeg]");
    expect(lastUser(3).content).toContainEqual({
      type: "image",
      mediaType: "image/jpeg",
      data: jpeg.toString("base64"),
    });
    // Every message was answered: none was confirmed and dropped as malformed.
    await until("four answers", () => api.actions.filter((a) => a.kind === "text").length === 4);
  });

  it('streams a reply by editing its message (streaming: "edit"), waiting out a 429 retry_after', async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const gates = [0, 1, 2].map(() => {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => {
        open = resolve;
      });
      return { promise, open };
    });
    const events: ScriptedStep[] = [{ type: "response-start", model: "m" }];
    for (const [i, piece] of ["Deploy", " is", " green"].entries()) {
      events.push({ type: "wait", until: gates[i]!.promise }, { type: "text-delta", text: piece });
    }
    events.push({ type: "finish", reason: "stop" });
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({
        providers: [createScriptedProvider({ id: "s", responses: [{ events }] })],
      }),
      agents: [{ id: "main", model: "s/m" }],
    });
    await runtime.start();
    const manager = new ChannelManager({
      runtime,
      channels: [
        { plugin: polling()(api), dmPolicy: "open", streaming: "edit", streamThrottleMs: 0 },
      ],
      outbox: { baseDelayMs: 5, maxDelayMs: 50 },
    });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
    });
    api.push({ message: privateMessage(ALICE, 1, "status?") });
    gates[0]!.open();
    const first = await until("the first message", () =>
      api.actions.find((a) => a.kind === "text"),
    );
    expect(first.text).toBe("Deploy");
    // Telegram asks the bot to slow down: the next edit waits at least retry_after.
    api.script("editMessageText", {
      errorCode: 429,
      description: "Too Many Requests: retry after 1",
      retryAfter: 1,
    });
    gates[1]!.open();
    await until("the refused edit", () =>
      api.calls.find((c) => c.method === "editMessageText" && c.answered === 429),
    );
    const refusedAt = api.calls.length;
    gates[2]!.open();
    await new Promise<void>((resolve) => setTimeout(resolve, 500));
    expect(api.calls.slice(refusedAt).filter((c) => c.method === "editMessageText")).toEqual([]);
    await until(
      "the final text",
      () => api.sentText(first.chatId, first.messageId!) === "Deploy is green",
      5_000,
    );
    // One message, edited to the final text.
    expect(texts(api)).toEqual(["Deploy"]);
    expect(api.actions.filter((a) => a.kind === "edit").at(-1)).toMatchObject({
      messageId: first.messageId,
      text: "Deploy is green",
    });
  });

  it("gates group messages on a mention of the bot (requireMention) and answers in the topic", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const plugin = polling()(api);
    await host(plugin, { requireMention: true });
    const mentioned = "@beamclaw_test_bot deploy status?";
    api.push({ message: groupMessage(GROUP, ALICE, 10, "nobody asked the bot", { topic: 9 }) });
    api.push({
      message: groupMessage(GROUP, ALICE, 11, mentioned, {
        topic: 9,
        entities: [mentionEntity(mentioned, "beamclaw_test_bot")],
      }),
    });
    const reply = await until("the reply", () =>
      api.actions.find((a) => a.kind === "text" && a.text?.includes("deploy status?")),
    );
    expect(reply).toMatchObject({ chatId: GROUP, threadId: 9, replyTo: { messageId: 11 } });
    expect(texts(api).some((t) => t.includes("nobody asked"))).toBe(false);
  });

  it("answers an update delivered twice (a restarted bot that lost its offset) once", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const plugin = polling()(api);
    await host(plugin);
    const message = privateMessage(ALICE, 1, "say it once");
    api.push({ message });
    api.push({ message });
    api.push({ message: privateMessage(ALICE, 2, "and this") });
    await until("the later reply", () => texts(api).some((t) => t.includes("and this")));
    expect(texts(api).filter((t) => t.includes("say it once"))).toHaveLength(1);
  });

  it("survives a reconnect storm and a restart of the process: every message once, in order", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const options = {
      polling: { timeoutSeconds: 1, baseDelayMs: 1, maxDelayMs: 5, disconnectAfterFailures: 3 },
    };
    const statuses: string[] = [];
    let connects = 0;
    const offInbound = subscribeTelemetry("beamclaw:channel.inbound", (event) => {
      statuses.push(event.status);
    });
    const offConnect = subscribeTelemetry("beamclaw:channel.connect", () => {
      connects++;
    });
    cleanups.push(async () => {
      offInbound();
      offConnect();
    });
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: ["echo/any"] }),
      agents: [{ id: "main", model: "echo/any" }],
    });
    await runtime.start();
    cleanups.push(async () => {
      await runtime.stop();
      await store.close();
    });
    const manage = async () => {
      const manager = new ChannelManager({
        runtime,
        channels: [
          { plugin: createTelegramChannel({ token: TOKEN, ...options }), dmPolicy: "open" },
        ],
        reconnect: { baseDelayMs: 2, maxDelayMs: 10 },
        outbox: { baseDelayMs: 2, maxDelayMs: 20 },
      });
      await manager.start();
      return manager;
    };
    const troubles = [
      "network",
      { html: 502 },
      "lose-answer",
      { errorCode: 429, description: "Too Many Requests: retry after 0", retryAfter: 0 },
      // Three in a row: the channel reports itself lost and the host reconnects it.
      "network",
      { html: 504 },
      "network",
      CONFLICT,
      "lose-answer",
      { html: 502 },
    ] as const;
    const words = Array.from({ length: 30 }, (_, i) => `msg${String(i + 1).padStart(2, "0")}`);
    const push = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        api.push({ message: privateMessage(ALICE, i + 1, words[i]!) });
      }
    };
    api.script("getUpdates", ...troubles);
    api.script(
      "sendMessage",
      { html: 502 },
      { errorCode: 429, description: "Too Many Requests: retry after 0", retryAfter: 0 },
      "network",
    );
    push(0, 10);
    let manager = await manage();
    push(10, 20);
    await until(
      "the first twenty",
      () => statuses.filter((s) => s === "accepted").length >= 20,
      10_000,
    );
    // The process restarts: a new channel that knows no offset fetches what was not confirmed.
    await manager.stop();
    api.script("getUpdates", ...troubles);
    manager = await manage();
    cleanups.push(() => manager.stop());
    push(20, 30);
    // ...and Telegram hands over some it had delivered before, as new updates.
    for (let i = 14; i < 20; i++) api.push({ message: privateMessage(ALICE, i + 1, words[i]!) });
    await until(
      "a reply to the last message",
      () => texts(api).some((t) => t.includes(words.at(-1)!)),
      10_000,
    );
    const history = await runtime.session("agent:main:main").history({ limit: 1000 });
    const asked = history
      .map(
        (record) =>
          (record.entry as { message?: { role?: string; content?: Array<{ text?: string }> } })
            .message,
      )
      .filter((message) => message?.role === "user")
      .flatMap((message) => (message?.content ?? []).map((part) => part.text ?? ""))
      .join("\n")
      .split(/\s+/)
      .filter((word) => /^msg\d+$/.test(word));
    expect(asked).toEqual(words);
    const answered = texts(api)
      .join("\n")
      .split(/\s+/)
      .filter((word) => /^msg\d+$/.test(word));
    expect(answered).toEqual(words);
    expect(statuses.filter((s) => s === "accepted")).toHaveLength(30);
    expect(statuses.filter((s) => s === "duplicate").length).toBeGreaterThanOrEqual(6);
    // The storm happened: every scripted trouble was met, and the host reconnected the channel.
    const polls = api.calls.filter((c) => c.method === "getUpdates").map((c) => c.answered);
    for (const answer of ["network", 502, 504, 429, 409] as const) expect(polls).toContain(answer);
    const sends = api.calls.filter((c) => c.method === "sendMessage").map((c) => c.answered);
    expect(sends.slice(0, 3)).toEqual([502, 429, "network"]);
    expect(connects).toBeGreaterThanOrEqual(4);
  });
});

describe("outbound", () => {
  const dm = { accountId: "default", chatType: "direct" as const, chatId: String(ALICE.id) };
  const topic = {
    accountId: "default",
    chatType: "group" as const,
    chatId: String(GROUP),
    threadId: "30",
  };

  it("sends into the topic, quoting the message replied to, and returns <chat>:<message>", async () => {
    const { api, plugin } = await started(polling());
    const sent = await plugin.sendText(topic, "on it", { replyToMessageId: `${GROUP}:31` });
    const call = api.calls.find((c) => c.method === "sendMessage")!;
    expect(call.params).toMatchObject({
      chat_id: GROUP,
      message_thread_id: 30,
      reply_parameters: { message_id: 31, allow_sending_without_reply: true },
    });
    expect(sent.messageId).toBe(`${GROUP}:${api.actions[0]!.messageId}`);
  });

  it("converts the agent's Markdown to MarkdownV2, and sends text Telegram cannot parse as written", async () => {
    const { api, plugin } = await started(polling());
    await plugin.sendText(dm, "**Done.** See `build.log` (line 3)!");
    expect(api.actions[0]).toMatchObject({
      parseMode: "MarkdownV2",
      text: "Done. See build.log (line 3)!",
    });
    api.script("sendMessage", {
      errorCode: 400,
      description:
        "Bad Request: can't parse entities: Can't find end of Bold entity at byte offset 0",
    });
    await plugin.sendText(dm, "*odd*");
    const fallback = api.calls.filter((c) => c.method === "sendMessage").at(-1)!;
    expect(fallback.params.parse_mode).toBeUndefined();
    expect(fallback.params.text).toBe("*odd*");
  });

  it("sends text as written with format plain, and without link previews when asked", async () => {
    const { api, plugin } = await started(polling({ format: "plain", linkPreviews: false }));
    await plugin.sendText(dm, "**not bold** (v1.2)! https://example.com");
    expect(api.actions[0]).toMatchObject({ text: "**not bold** (v1.2)! https://example.com" });
    expect(api.actions[0]!.parseMode).toBeUndefined();
    expect(api.calls.find((c) => c.method === "sendMessage")!.params.link_preview_options).toEqual({
      is_disabled: true,
    });
  });

  it("keeps link previews off in edits too (a streamed reply's links arrive by editMessageText)", async () => {
    const { api, plugin } = await started(polling({ linkPreviews: false }));
    const sent = await plugin.sendText(dm, "Looking");
    await plugin.edit(dm, sent.messageId, "Found it: https://example.com/docs");
    const edit = api.calls.find((c) => c.method === "editMessageText")!;
    expect(edit.params.link_preview_options).toEqual({ is_disabled: true });
    expect(api.actions.at(-1)).toMatchObject({
      kind: "edit",
      text: "Found it: https://example.com/docs",
    });
  });

  it("turns a 429 into a retryable ChannelSendError with retryAfterMs from retry_after, holding up its chat", async () => {
    const { api, plugin } = await started(polling());
    // {"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5",
    //  "parameters":{"retry_after":5}}
    api.script("sendMessage", {
      errorCode: 429,
      description: "Too Many Requests: retry after 5",
      retryAfter: 5,
    });
    const error = await plugin.sendText(dm, "flood").catch((e: unknown) => e);
    expect(ChannelSendError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({
      isRetryable: true,
      retryAfterMs: 5000,
      statusCode: 429,
      platformCode: "Too Many Requests: retry after 5",
      scope: "chat",
    });
    expect(api.actions).toEqual([]);
  });

  it("retries Telegram's 5xx pages and network failures, and not what Telegram refused", async () => {
    const { api, plugin } = await started(polling());
    api.script(
      "sendMessage",
      { html: 502 },
      "network",
      { errorCode: 403, description: "Forbidden: bot was blocked by the user" },
      { errorCode: 400, description: "Bad Request: chat not found" },
    );
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await plugin.sendText(dm, "x").catch((e) => e));
    expect(outcomes.map((e) => [e.isRetryable, e.statusCode])).toEqual([
      [true, 502],
      [true, undefined],
      [false, 403],
      [false, 400],
    ]);
    // Telegram's description is its error code; its trouble holds up the whole channel.
    expect(outcomes.map((e) => [e.platformCode, e.scope])).toEqual([
      ["Bad Gateway", "channel"],
      [undefined, "channel"],
      ["Forbidden: bot was blocked by the user", "chat"],
      ["Bad Request: chat not found", "chat"],
    ]);
    expect(outcomes[2].message).toContain("Forbidden: bot was blocked by the user");
    expect(String(outcomes.map((e) => e.message))).not.toContain(TOKEN);
  });

  it("a 429 reply is delivered by the host's outbox once, after retry_after", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    await host(polling()(api));
    api.script("sendMessage", {
      errorCode: 429,
      description: "Too Many Requests: retry after 1",
      retryAfter: 1,
    });
    api.push({ message: privateMessage(ALICE, 1, "are you there?") });
    await until("the reply", () => texts(api).some((t) => t.includes("are you there?")));
    const sends = api.calls.filter((c) => c.method === "sendMessage");
    expect(sends.map((c) => c.answered)).toEqual([429, 200]);
    expect(texts(api).filter((t) => t.includes("are you there?"))).toHaveLength(1);
  });

  it("follows a group that became a supergroup (migrate_to_chat_id)", async () => {
    const { api, plugin } = await started(polling());
    api.script("sendMessage", {
      errorCode: 400,
      description: "Bad Request: group chat was upgraded to a supergroup chat",
      migrateToChatId: GROUP,
    });
    const sent = await plugin.sendText({ ...dm, chatType: "group", chatId: "-4001" }, "hello");
    expect(
      api.calls.filter((c) => c.method === "sendMessage").map((c) => c.params.chat_id),
    ).toEqual([-4001, GROUP]);
    expect(sent.messageId.startsWith(`${GROUP}:`)).toBe(true);
  });

  it("after a group became a supergroup, a reply to the group's message is sent to the supergroup unquoted", async () => {
    const { api, plugin } = await started(polling());
    const group = { ...dm, chatType: "group" as const, chatId: "-4001" };
    api.upgradeGroup(-4001, GROUP);
    // The message answered is in the old group: the supergroup cannot quote it.
    const sent = await plugin.sendText(group, "hello", { replyToMessageId: "-4001:7" });
    expect(sent.messageId.startsWith(`${GROUP}:`)).toBe(true);
    expect(api.actions).toHaveLength(1);
    expect(api.actions[0]).toMatchObject({ kind: "text", chatId: GROUP, text: "hello" });
    expect(api.actions[0]!.replyTo).toBeUndefined();
    // A reply in the supergroup to a message from before the upgrade, likewise.
    await plugin.sendText({ ...group, chatId: String(GROUP) }, "again", {
      replyToMessageId: "-4001:8",
    });
    expect(api.actions.map((a) => [a.chatId, a.text, a.replyTo])).toEqual([
      [GROUP, "hello", undefined],
      [GROUP, "again", undefined],
    ]);
  });

  it("does not edit or react to a supergroup's message in place of the old group's (message ids start afresh)", async () => {
    const { api, plugin } = await started(polling());
    const group = { ...dm, chatType: "group" as const, chatId: "-4001" };
    const old = await plugin.sendText(group, "draft in the old group");
    // The supergroup's first message has the same message_id as the group's.
    const other = await plugin.sendText({ ...group, chatId: String(GROUP) }, "another answer");
    expect(old.messageId).toBe("-4001:1");
    expect(other.messageId).toBe(`${GROUP}:1`);
    api.upgradeGroup(-4001, GROUP);
    const edit = await plugin.edit(group, old.messageId, "final").catch((e: unknown) => e);
    const react = await plugin.react(group, old.messageId, "👍").catch((e: unknown) => e);
    for (const error of [edit, react]) {
      expect(ChannelSendError.isInstance(error)).toBe(true);
      expect(error).toMatchObject({
        isRetryable: false,
        statusCode: 400,
        platformCode: "Bad Request: group chat was upgraded to a supergroup chat",
      });
    }
    // The supergroup's message is left as it was.
    expect(api.actions.map((a) => a.kind)).toEqual(["text", "text"]);
    expect(
      api.calls
        .filter((c) => c.method === "editMessageText" || c.method === "setMessageReaction")
        .map((c) => c.params.chat_id),
    ).toEqual([-4001, -4001]);
  });

  it("edits, shows typing in the topic, reacts; an edit to the same text is no error", async () => {
    const { api, plugin } = await started(polling());
    const sent = await plugin.sendText(topic, "draft");
    await plugin.edit(topic, sent.messageId, "final");
    await plugin.edit(topic, sent.messageId, "final");
    await plugin.typing(topic);
    await plugin.react(topic, sent.messageId, "👍");
    expect(api.actions.map((a) => a.kind)).toEqual(["text", "edit", "typing", "reaction"]);
    expect(api.calls.find((c) => c.method === "sendChatAction")!.params).toEqual({
      chat_id: GROUP,
      action: "typing",
      message_thread_id: 30,
    });
    expect(api.calls.find((c) => c.method === "setMessageReaction")!.params).toMatchObject({
      reaction: [{ type: "emoji", emoji: "👍" }],
    });
  });

  it("uploads base64 media, and sends a caption over 1024 characters after the file", async () => {
    const { api, plugin } = await started(polling());
    const png = Buffer.from("\x89PNG\r\n\x1a\n a tiny png", "latin1");
    const caption = `${"word ".repeat(300)}end`;
    const sent = await plugin.sendMedia(dm, {
      kind: "image",
      data: png.toString("base64"),
      mediaType: "image/png",
      name: "chart.png",
      caption,
    });
    const [photo, text] = api.actions;
    expect(photo).toMatchObject({
      kind: "media",
      media: { method: "sendPhoto", name: "chart.png", data: png.toString("base64") },
    });
    expect(photo!.media!.caption).toBeUndefined();
    expect(text).toMatchObject({ kind: "text", text: caption });
    expect(sent.messageId).toBe(`${ALICE.id}:${photo!.messageId}`);
    await plugin.sendMedia(dm, { kind: "file", url: "https://files.example/r.pdf", caption: "r" });
    expect(api.actions.at(-1)!.media).toMatchObject({
      method: "sendDocument",
      url: "https://files.example/r.pdf",
      caption: "r",
    });
  });

  it("refuses targets that are not Telegram ids, and honours an aborted signal", async () => {
    const { api, plugin } = await started(polling());
    await expect(plugin.sendText({ ...dm, chatId: "alice" }, "x")).rejects.toMatchObject({
      code: "CHANNEL_SEND_FAILED",
      isRetryable: false,
    });
    await expect(plugin.sendText({ ...dm, threadId: "general" }, "x")).rejects.toMatchObject({
      isRetryable: false,
    });
    await expect(plugin.edit(dm, "not-an-id", "x")).rejects.toMatchObject({ isRetryable: false });
    const controller = new AbortController();
    controller.abort();
    const error = await plugin
      .sendText(dm, "x", { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(api.calls.filter((c) => c.method === "sendMessage")).toEqual([]);
  });
});

describe("the README's example", () => {
  it("answers a DM with a pairing code and a group message that mentions the bot", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: ["echo/any"] }),
      agents: [{ id: "main", model: "echo/any" }],
    });
    await runtime.start();
    // As in the README (the token is the fake bot's).
    const telegram = createTelegramChannel({ token: TOKEN });
    const channels = new ChannelManager({
      runtime,
      channels: [{ plugin: telegram, dmPolicy: "pairing", groupPolicy: "open" }],
    });
    await channels.start();
    cleanups.push(async () => {
      await channels.stop();
      await runtime.stop();
      await store.close();
    });
    api.push({ message: privateMessage(ALICE, 1, "hi") });
    const mention = "@beamclaw_test_bot ping";
    api.push({
      message: groupMessage(GROUP, BOB, 2, mention, {
        entities: [mentionEntity(mention, "beamclaw_test_bot")],
      }),
    });
    await until("the pairing code", () => texts(api).find((t) => /pairing code/i.test(t)));
    const answer = await until("the group answer", () =>
      api.actions.find((a) => a.kind === "text" && a.chatId === GROUP),
    );
    expect(answer.text).toContain("ping");
  });
});

describe("configuration", () => {
  it("refuses bad tokens, webhook settings and polling options with InvalidArgumentError", () => {
    const bad: Array<Partial<TelegramChannelOptions>> = [
      { token: "not-a-token" },
      { mode: "webhook" },
      { mode: "webhook", webhook: { secretToken: "short" } },
      { mode: "webhook", webhook: { secretToken: "has spaces in it, not allowed!" } },
      {
        mode: "webhook",
        webhook: { secretToken: "a-secret-of-twenty-chars", url: "http://bot.example.com/" },
      },
      { polling: { limit: 101 } },
      { polling: { timeoutSeconds: 0 } },
      { polling: { disconnectAfterFailures: 0 } },
      { apiRoot: "::" },
      { attachments: { inlineImageMaxBytes: -1 } },
      { attachments: { inlineDocumentMaxBytes: 2.5 } },
    ];
    for (const options of bad) {
      expect(
        () => createTelegramChannel({ token: TOKEN, ...options }),
        JSON.stringify(options),
      ).toThrow(InvalidArgumentError);
    }
  });

  it("refuses time limits, backoff and webhook numbers out of range, naming the option", () => {
    const secretToken = "a-secret-of-twenty-chars";
    const bad: Array<[Partial<TelegramChannelOptions>, string]> = [
      [{ requestTimeoutMs: -1 }, "requestTimeoutMs"],
      [{ requestTimeoutMs: 0 }, "requestTimeoutMs"],
      [{ requestTimeoutMs: Number.NaN }, "requestTimeoutMs"],
      [{ polling: { baseDelayMs: -10 } }, "polling.baseDelayMs"],
      [{ polling: { maxDelayMs: 1.5 } }, "polling.maxDelayMs"],
      [{ mode: "webhook", webhook: { secretToken, maxConnections: 0 } }, "webhook.maxConnections"],
      [
        { mode: "webhook", webhook: { secretToken, maxConnections: 101 } },
        "webhook.maxConnections",
      ],
      [{ mode: "webhook", webhook: { secretToken, maxBodyBytes: 0 } }, "webhook.maxBodyBytes"],
      [{ mode: "webhook", webhook: { secretToken, port: 65_536 } }, "webhook.port"],
    ];
    for (const [options, name] of bad) {
      const error = (() => {
        try {
          createTelegramChannel({ token: TOKEN, ...options });
        } catch (e) {
          return e;
        }
      })();
      expect(InvalidArgumentError.isInstance(error), name).toBe(true);
      expect((error as Error).message, name).toContain(name);
    }
  });

  it("does nothing on construction", () => {
    const api = new FakeTelegram();
    createTelegramChannel({ token: TOKEN });
    expect(api.calls).toEqual([]);
    api.close();
  });

  it("registers an info gateway method naming the bot and the mode", async () => {
    const { plugin } = await started(polling());
    const info = await plugin.gatewayMethods.info!.handler(undefined, { scopes: [] });
    expect(info).toMatchObject({
      mode: "polling",
      connected: true,
      bot: { id: BOT.id, username: "beamclaw_test_bot" },
    });
  });
});
