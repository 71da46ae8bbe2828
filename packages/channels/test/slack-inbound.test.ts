/**
 * How the Slack channel reads Slack's documented event payloads into inbound messages (chat
 * types, threads, mentions, files, what is ignored), Slack's text escaping, and the options
 * it refuses.
 */
import { InvalidArgumentError } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { readSlackMessage, type SlackMessage } from "../src/slack/inbound.js";
import { createSlackChannel, escapeSlackText, unescapeSlackText } from "../src/slack/index.js";
import { closeFakeSlackApi, FAKE_BOT } from "./slack/fake-slack-api.js";
import { cleanUp, startedHttp, until } from "./slack/harness.js";
import { eventCallback } from "./slack/slack-platform.js";

afterEach(cleanUp);
afterAll(() => closeFakeSlackApi());

const bot = { userId: "U0LAN0Z89", name: "riverbot" };

function read(event: Record<string, unknown>): SlackMessage {
  const message = readSlackMessage(event, bot);
  if (typeof message === "string") throw new Error(`ignored: ${message}`);
  return message;
}

describe("reading Slack message events", () => {
  it("reads the documented message event", () => {
    // https://docs.slack.dev/reference/events/message
    const message = read({
      type: "message",
      channel: "C123ABC456",
      user: "U123ABC456",
      text: "Hello world",
      ts: "1355517523.000005",
    });
    expect(message).toMatchObject({
      key: "C123ABC456:1355517523.000005",
      chatType: "group",
      text: "Hello world",
      mentionsBot: false,
      peers: [],
      attachments: [],
      timestamp: 1355517523000,
    });
    expect(message.threadId).toBeUndefined();
    expect(message.replyTo).toBeUndefined();
  });

  it("reads the documented app_mention event as a mention, without the leading markup", () => {
    // https://docs.slack.dev/reference/events/app_mention
    const message = read({
      type: "app_mention",
      user: "U061F7AUR",
      text: "<@U0LAN0Z89> is it everything a river should be?",
      ts: "1515449522.000016",
      channel: "C123ABC456",
      event_ts: "1515449522000016",
    });
    expect(message).toMatchObject({
      chatType: "group",
      mentionsBot: true,
      text: "is it everything a river should be?",
    });
  });

  it("maps im to direct and channel, group and mpim to group; app_mention by the channel's id", () => {
    const event = (extra: Record<string, unknown>) => ({
      type: "message",
      user: "U123ABC456",
      text: "hi",
      ts: "1355517523.000005",
      channel: "C123ABC456",
      ...extra,
    });
    expect(read(event({ channel: "D024BE91L", channel_type: "im" })).chatType).toBe("direct");
    expect(read(event({ channel_type: "channel" })).chatType).toBe("group");
    expect(read(event({ channel: "G024BE91L", channel_type: "group" })).chatType).toBe("group");
    expect(read(event({ channel: "G024BE91M", channel_type: "mpim" })).chatType).toBe("group");
    expect(read(event({ type: "app_mention", channel: "D024BE91L" })).chatType).toBe("direct");
    expect(read(event({ type: "app_mention", channel: "C024BE91L" })).chatType).toBe("group");
  });

  it("reads a reply in a thread: the thread, the parent it answers, a mention when the parent is the bot's", () => {
    const reply = read({
      type: "message",
      channel: "C123ABC456",
      user: "U123ABC456",
      text: "sounds good",
      ts: "1355517535.000008",
      thread_ts: "1355517523.000005",
      parent_user_id: bot.userId,
    });
    expect(reply).toMatchObject({
      threadId: "1355517523.000005",
      replyTo: { messageId: "1355517523.000005", peerId: bot.userId },
      mentionsBot: true,
    });
    // A thread's parent carries thread_ts = ts: it is not in a thread.
    const parent = read({
      type: "message",
      channel: "C123ABC456",
      user: "U123ABC456",
      text: "start",
      ts: "1355517523.000005",
      thread_ts: "1355517523.000005",
    });
    expect(parent.threadId).toBeUndefined();
  });

  it("collects mentions: the bot (named inside a text), and other users once each", () => {
    const message = read({
      type: "message",
      channel: "C123ABC456",
      user: "U123ABC456",
      text: "ask <@U024BE7LH|bob> and <@W012A3CDE>, not <@U024BE7LH> twice; thanks <@U0LAN0Z89>",
      ts: "1355517523.000005",
    });
    expect(message.peers).toEqual(["U024BE7LH", "W012A3CDE"]);
    expect(message.mentionsBot).toBe(true);
    expect(message.text).toBe(
      "ask <@U024BE7LH|bob> and <@W012A3CDE>, not <@U024BE7LH> twice; thanks @riverbot",
    );
  });

  it("gives back the text the user typed: &lt; &gt; &amp; unescaped", () => {
    const message = read({
      type: "message",
      channel: "C123ABC456",
      user: "U123ABC456",
      text: "if a &lt; b &amp;&amp; c &gt; d",
      ts: "1355517523.000005",
    });
    expect(message.text).toBe("if a < b && c > d");
  });

  it("reads a file_share message's files as attachments", () => {
    const message = read({
      type: "message",
      subtype: "file_share",
      channel: "C123ABC456",
      user: "U123ABC456",
      text: "the chart",
      ts: "1355517523.000005",
      files: [
        {
          id: "F0S43PZDF",
          name: "chart.png",
          mimetype: "image/png",
          size: 12345,
          url_private: "https://files.slack.com/files-pri/T0-F0S43PZDF/chart.png",
          url_private_download: "https://files.slack.com/files-pri/T0-F0S43PZDF/download/chart.png",
        },
        { id: "F0S43PZDG", mode: "tombstone" },
      ],
    });
    expect(message.attachments).toEqual([
      {
        kind: "image",
        mediaType: "image/png",
        name: "chart.png",
        size: 12345,
        url: "https://files.slack.com/files-pri/T0-F0S43PZDF/download/chart.png",
        privateUrl: true,
      },
    ]);
  });

  it("ignores bots, the bot itself, edits, deletions, joins and other events", () => {
    const base = {
      type: "message",
      channel: "C123ABC456",
      user: "U123ABC456",
      text: "x",
      ts: "1355517523.000005",
    };
    const ignored = [
      { ...base, bot_id: "B123ABC456" },
      { ...base, subtype: "bot_message", bot_id: "B123ABC456" },
      { ...base, user: bot.userId },
      { ...base, subtype: "message_changed", hidden: true },
      { ...base, subtype: "message_deleted", hidden: true },
      { ...base, subtype: "channel_join" },
      { ...base, user: undefined },
      { type: "reaction_added", user: "U123ABC456", reaction: "thumbsup" },
      "not an event",
    ];
    for (const event of ignored) expect(typeof readSlackMessage(event, bot)).toBe("string");
    for (const subtype of ["thread_broadcast", "me_message", "file_share"]) {
      expect(typeof readSlackMessage({ ...base, subtype }, bot)).toBe("object");
    }
  });
});

describe("Slack inbound messages as the host gets them", () => {
  it("carries the sender's name from users.info, the client_msg_id as id, and the raw event", async () => {
    const { platform, received } = await startedHttp();
    platform.workspace.users.set("U123ABC456", "Ada Lovelace");
    const ts = platform.workspace.nextTs();
    const payload = eventCallback({
      client_msg_id: "0837851c-2d34-4d4d-804c-7aed753c3421",
      type: "message",
      text: "Hello world",
      user: "U123ABC456",
      ts,
      channel: "C02NDBPP4E8",
      event_ts: ts,
      channel_type: "channel",
    });
    await platform.send(payload);
    await platform.send(eventCallback({ ...(payload.event as object), client_msg_id: undefined }));
    await until("both", () => received.length === 2);
    expect(received[0]).toMatchObject({
      peer: { id: "U123ABC456", name: "Ada Lovelace" },
      chatType: "group",
      chatId: "C02NDBPP4E8",
      messageId: "0837851c-2d34-4d4d-804c-7aed753c3421",
      raw: payload,
    });
    // The same message again, this time without client_msg_id: still the same id.
    expect(received[1]?.messageId).toBe("0837851c-2d34-4d4d-804c-7aed753c3421");
    expect(platform.workspace.callsOf("users.info")).toHaveLength(1);
  });

  it("names a message without client_msg_id <channel>:<ts>", async () => {
    const { platform, received } = await startedHttp({ resolveUserNames: false });
    await platform.send(
      eventCallback({
        type: "message",
        text: "from an integration",
        user: "U123ABC456",
        ts: "1355517523.000005",
        channel: "C123ABC456",
      }),
    );
    await until("the message", () => received.length === 1);
    expect(received[0]?.messageId).toBe("C123ABC456:1355517523.000005");
    expect(received[0]?.peer).toEqual({ id: "U123ABC456" });
    expect(platform.workspace.callsOf("users.info")).toHaveLength(0);
  });

  it("stops looking names up when the app lacks users:read, and still delivers", async () => {
    const { platform, received } = await startedHttp();
    platform.workspace.answerNext("users.info", {
      body: { ok: false, error: "missing_scope", needed: "users:read", provided: "chat:write" },
    });
    for (const user of ["U1AAAAAAA", "U2BBBBBBB"]) {
      await platform.send(
        eventCallback({
          type: "message",
          text: "hi",
          user,
          ts: platform.workspace.nextTs(),
          channel: "C123ABC456",
        }),
      );
    }
    await until("both messages", () => received.length === 2);
    expect(received.map((m) => m.peer)).toEqual([{ id: "U1AAAAAAA" }, { id: "U2BBBBBBB" }]);
    expect(platform.workspace.callsOf("users.info")).toHaveLength(1);
  });

  it("knows the bot from auth.test, or from botUserId without calling it", async () => {
    const first = await startedHttp();
    expect(first.plugin.identity).toMatchObject({ userId: FAKE_BOT.userId, botId: FAKE_BOT.botId });
    const second = await startedHttp({ botUserId: "U0GIVEN001" });
    expect(second.plugin.identity).toEqual({ userId: "U0GIVEN001" });
    expect(second.platform.workspace.callsOf("auth.test")).toHaveLength(0);
  });
});

describe("Slack text", () => {
  it("escapes control characters once and round-trips", () => {
    const text =
      "a < b && c > d; already &amp; escaped; <@U123> <#C123|general> <!here> <mailto:a@b.c|mail>";
    const escaped = escapeSlackText(text, { parse: ["users", "everyone"] });
    expect(escaped).toBe(
      "a &lt; b &amp;&amp; c &gt; d; already &amp; escaped; <@U123> <#C123|general> <!here> <mailto:a@b.c|mail>",
    );
    // By default a broadcast is escaped: shown as written, pinging nobody.
    expect(escapeSlackText(text)).toContain("<#C123|general> &lt;!here&gt; <mailto:");
    expect(unescapeSlackText("a &lt; b &amp;&amp; c &gt; d")).toBe("a < b && c > d");
  });
});

describe("Slack channel options", () => {
  it("refuses missing tokens and secrets, bad paths, URLs and limits with InvalidArgumentError", () => {
    const bad = [
      {},
      { botToken: "" },
      { botToken: "xoxb-1", mode: "socket" },
      { botToken: "xoxb-1" },
      { botToken: "xoxb-1", mode: "carrier-pigeon", signingSecret: "s" },
      { botToken: "xoxb-1", signingSecret: "s", path: "events" },
      { botToken: "xoxb-1", signingSecret: "s", slackApiUrl: "ftp://slack.com/api" },
      { botToken: "xoxb-1", signingSecret: "s", maxMessageLength: 40_000 },
      { botToken: "xoxb-1", signingSecret: "s", maxMessageLength: 4 },
    ];
    for (const options of bad) {
      expect(() => createSlackChannel(options as never), JSON.stringify(options)).toThrow(
        InvalidArgumentError,
      );
    }
  });

  it("refuses time limits, the replay window, the body limit and the port out of range, naming them", () => {
    const http = { botToken: "xoxb-1", signingSecret: "s" };
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ ...http, timeoutMs: -1 }, "timeoutMs"],
      [{ ...http, timeoutMs: Number.NaN }, "timeoutMs"],
      [{ ...http, toleranceMs: -1 }, "toleranceMs"],
      [{ ...http, maxBodyBytes: 0 }, "maxBodyBytes"],
      [{ ...http, port: 65_536 }, "port"],
      [{ botToken: "xoxb-1", appToken: "xapp-1", connectTimeoutMs: 0 }, "connectTimeoutMs"],
    ];
    for (const [options, name] of bad) {
      const error = (() => {
        try {
          createSlackChannel(options as never);
        } catch (e) {
          return e;
        }
      })();
      expect(InvalidArgumentError.isInstance(error), name).toBe(true);
      expect((error as Error).message, name).toContain(name);
    }
  });

  it("picks Socket Mode when an app token is given, the Events API otherwise, and declares Slack's capabilities", () => {
    const socket = createSlackChannel({ botToken: "xoxb-1", appToken: "xapp-1" });
    const events = createSlackChannel({ botToken: "xoxb-1", signingSecret: "s" });
    expect([socket.mode, events.mode]).toEqual(["socket", "http"]);
    expect(socket.meta.caseInsensitiveIds).toBe(true);
    expect(socket.capabilities).toEqual({
      directMessages: true,
      groups: true,
      threads: true,
      media: false,
      edits: true,
      reactions: false,
      typing: false,
      maxMessageLength: 4000,
    });
    expect("typing" in socket).toBe(false);
  });

  it("reports how it is connected through its info gateway method", async () => {
    const { plugin } = await startedHttp();
    const info = await plugin.gatewayMethods.info!.handler(undefined, { scopes: [] });
    expect(info).toEqual({
      mode: "http",
      running: true,
      botUserId: FAKE_BOT.userId,
      teamId: FAKE_BOT.teamId,
      url: plugin.url,
    });
  });
});
