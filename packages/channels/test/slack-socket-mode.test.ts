/**
 * The Slack channel's Socket Mode rules, against a fake Socket Mode endpoint (a `ws` server on
 * 127.0.0.1) and the fake Web API: acknowledgement only after the host took a message,
 * redelivery of what it did not take, what is ignored, routine refreshes handled in place,
 * lost connections reported, credentials refused for good — and a reconnect storm that loses
 * and duplicates nothing.
 */
import type { ReceiveResult } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createSlackChannel, SlackApiError, SlackConnectionError } from "../src/slack/index.js";
import { closeFakeSlackApi, FAKE_BOT } from "./slack/fake-slack-api.js";
import {
  cleanUp,
  cleanups,
  deferred,
  hosted,
  recordingContext,
  startedSocketMode,
  until,
} from "./slack/harness.js";
import { eventCallback, messageEvent, SlackSocketModePlatform } from "./slack/slack-platform.js";

afterEach(cleanUp);
afterAll(() => closeFakeSlackApi());

/** Slack's documented `message.channels` event, with a `client_msg_id` as clients send it. */
function channelMessage(ts: string, text: string, extra: Record<string, unknown> = {}) {
  return {
    client_msg_id: `cm-${ts}`,
    type: "message",
    channel: "C123ABC456",
    user: "U123ABC456",
    text,
    ts,
    event_ts: ts,
    channel_type: "channel",
    ...extra,
  };
}

describe("Slack Socket Mode: acknowledgements", () => {
  it("acknowledges an envelope only after the host took the message", async () => {
    const taken = deferred<ReceiveResult>();
    const { platform, received } = await startedSocketMode({}, () => taken.promise);
    const payload = eventCallback(channelMessage(platform.workspace.nextTs(), "hello"));
    platform.server.deliver(payload);
    await until("the message to reach the host", () => received.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(platform.server.isAcked(payload.event_id)).toBe(false);
    taken.resolve({ status: "accepted" });
    await until("the acknowledgement", () => platform.server.isAcked(payload.event_id));
  });

  it("leaves a message the host did not take unacknowledged, and takes Slack's redelivery", async () => {
    const { platform, received } = await startedSocketMode({}, (_input, n) => {
      if (n === 1) throw new Error("the store is down");
      return { status: "accepted" };
    });
    const payload = eventCallback(channelMessage(platform.workspace.nextTs(), "try again"));
    platform.server.deliver(payload);
    await until("the first attempt", () => received.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(platform.server.isAcked(payload.event_id)).toBe(false);
    platform.server.redeliverPending();
    await until("the redelivery to be acknowledged", () =>
      platform.server.isAcked(payload.event_id),
    );
    expect(received).toHaveLength(2);
    expect(received[1]?.messageId).toBe(received[0]?.messageId);
  });

  it("acknowledges and ignores bots' messages, its own, edits, deletions and joins", async () => {
    const { platform, received } = await startedSocketMode();
    const ts = () => platform.workspace.nextTs();
    const ignored = [
      eventCallback({ ...channelMessage(ts(), "from a bot"), bot_id: "B0OTHER01" }),
      eventCallback({ ...channelMessage(ts(), "my own"), user: FAKE_BOT.userId }),
      eventCallback({
        type: "message",
        subtype: "message_changed",
        hidden: true,
        channel: "C123ABC456",
        ts: ts(),
        message: { type: "message", user: "U123ABC456", text: "edited", ts: "1355517523.000005" },
      }),
      eventCallback({
        type: "message",
        subtype: "message_deleted",
        hidden: true,
        channel: "C123ABC456",
        ts: ts(),
        deleted_ts: "1358878749.000002",
      }),
      eventCallback({
        type: "message",
        subtype: "channel_join",
        channel: "C123ABC456",
        user: "U123ABC456",
        text: "<@U123ABC456> has joined the channel",
        ts: ts(),
      }),
      eventCallback({ type: "reaction_added", user: "U123ABC456", reaction: "thumbsup" }),
    ];
    for (const payload of ignored) platform.server.deliver(payload);
    const person = eventCallback(channelMessage(ts(), "a person"));
    platform.server.deliver(person);
    await until("every envelope to be acknowledged", () =>
      [...ignored, person].every((p) => platform.server.isAcked(p.event_id)),
    );
    expect(received.map((m) => m.text)).toEqual(["a person"]);
  });

  it("hands messages to the host in arrival order, even when a sender's name takes a while", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    platform.workspace.users.set("U0SLOWNAME", "Slow");
    platform.workspace.users.set("U0FASTNAME", "Fast");
    const plugin = createSlackChannel(platform.channelOptions());
    const { ctx, received, controller } = recordingContext(plugin);
    await plugin.start(ctx);
    cleanups.push(async () => {
      controller.abort();
      await plugin.stop();
    });
    platform.workspace.answerNext("users.info", {
      delayMs: 150,
      body: {
        ok: true,
        user: { id: "U0SLOWNAME", name: "slow", profile: { display_name: "Slow" } },
      },
    });
    platform.server.deliver(
      eventCallback(channelMessage(platform.workspace.nextTs(), "first", { user: "U0SLOWNAME" })),
    );
    platform.server.deliver(
      eventCallback(channelMessage(platform.workspace.nextTs(), "second", { user: "U0FASTNAME" })),
    );
    await until("both messages", () => received.length === 2);
    expect(received.map((m) => [m.text, m.peer.name])).toEqual([
      ["first", "Slow"],
      ["second", "Fast"],
    ]);
  });

  it("gives a message and its app_mention one message id, so the host answers it once", async () => {
    const { platform, received } = await startedSocketMode();
    const ts = platform.workspace.nextTs();
    const text = `<@${FAKE_BOT.userId}> is it everything a river should be?`;
    platform.server.deliver(eventCallback(channelMessage(ts, text)));
    // Slack's documented app_mention event carries no client_msg_id.
    platform.server.deliver(
      eventCallback({
        type: "app_mention",
        user: "U123ABC456",
        text,
        ts,
        channel: "C123ABC456",
        event_ts: ts,
      }),
    );
    await until("both events", () => received.length === 2);
    expect(received[1]?.messageId).toBe(received[0]?.messageId);
    expect(received.map((m) => m.mentions?.bot)).toEqual([true, true]);
    expect(received[0]?.text).toBe("is it everything a river should be?");
  });
});

describe("Slack Socket Mode: connections", () => {
  for (const reason of ["refresh_requested", "warning"]) {
    it(`reconnects by itself when Slack sends disconnect (${reason}), without troubling the host`, async () => {
      const { platform, received, disconnects } = await startedSocketMode();
      platform.server.requestRefresh(reason);
      await until("a second connection", () => platform.server.connections === 2);
      await platform.server.waitForConnection();
      platform.server.deliver(eventCallback(channelMessage(platform.workspace.nextTs(), "after")));
      await until("the message on the new connection", () => received.length === 1);
      expect(disconnects).toEqual([]);
    });
  }

  it("reports a dropped connection to the host with ctx.disconnected", async () => {
    const { platform, disconnects } = await startedSocketMode();
    platform.server.drop();
    const [error] = await until("the report", () => disconnects.length > 0 && disconnects);
    expect(SlackConnectionError.isInstance(error)).toBe(true);
  });

  it("reports Slack's link_disabled to the host instead of reconnecting", async () => {
    const { platform, disconnects } = await startedSocketMode();
    platform.server.requestRefresh("link_disabled");
    const [error] = await until("the report", () => disconnects.length > 0 && disconnects);
    expect(error).toMatchObject({ code: "SLACK_CONNECTION_LOST", reason: "link_disabled" });
    expect(platform.server.connections).toBe(1);
  });

  it("refuses a wrong app token at start, for good (isRetryable false), leaving nothing open", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel({ ...platform.channelOptions(), appToken: "xapp-1-wrong" });
    const { ctx } = recordingContext(plugin);
    const error = await plugin.start(ctx).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(SlackApiError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ isRetryable: false, slackError: "invalid_auth" });
    expect(platform.server.connections).toBe(0);
    await plugin.stop();
  });

  it("refuses a bot token Slack does not accept at start, for good", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel({ ...platform.channelOptions(), botToken: "xoxb-revoked" });
    await expect(plugin.start(recordingContext(plugin).ctx)).rejects.toMatchObject({
      code: "SLACK_API_ERROR",
      method: "auth.test",
      isRetryable: false,
      slackError: "invalid_auth",
    });
  });

  it("fails a start whose WebSocket cannot connect as retryable, so the host tries again", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const closed = await SlackSocketModePlatform.start();
    const unreachable = closed.server.url();
    await closed.close();
    platform.workspace.socketUrl = () => unreachable;
    const plugin = createSlackChannel(platform.channelOptions());
    const error = await plugin.start(recordingContext(plugin).ctx).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as { isRetryable?: unknown }).isRetryable).not.toBe(false);
    platform.workspace.socketUrl = () => platform.server.url();
    const again = recordingContext(plugin);
    await plugin.start(again.ctx);
    await plugin.stop();
  });

  it("turns a Slack rate limit on apps.connections.open into a retryable start error with retryAfterMs", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    platform.workspace.answerNext("apps.connections.open", {
      status: 429,
      headers: { "retry-after": "30" },
      body: { ok: false, error: "ratelimited" },
    });
    const plugin = createSlackChannel(platform.channelOptions());
    await expect(plugin.start(recordingContext(plugin).ctx)).rejects.toMatchObject({
      code: "SLACK_API_ERROR",
      isRetryable: true,
      retryAfterMs: 30_000,
    });
  });

  it("leaves a start Slack refused for another reason than credentials to the host's retries", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    platform.workspace.answerNext("apps.connections.open", {
      body: { ok: false, error: "internal_error" },
    });
    const plugin = createSlackChannel(platform.channelOptions());
    await expect(plugin.start(recordingContext(plugin).ctx)).rejects.toMatchObject({
      code: "SLACK_API_ERROR",
      slackError: "internal_error",
      isRetryable: true,
    });
    const again = recordingContext(plugin);
    await plugin.start(again.ctx);
    await plugin.stop();
  });

  it("does not hand messages to a stopped channel's context", async () => {
    const { platform, plugin, received, controller } = await startedSocketMode();
    controller.abort();
    await plugin.stop();
    platform.server.deliver(eventCallback(channelMessage(platform.workspace.nextTs(), "late")));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(received).toEqual([]);
    expect(platform.server.outstanding).toBe(1);
  });
});

describe("Slack Socket Mode: a reconnect storm", () => {
  it("loses and duplicates nothing while connections drop and refresh with envelopes outstanding", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel({ ...platform.channelOptions(), resolveUserNames: false });
    const { asked, manager } = await hosted(plugin, { queueMode: "followup" });
    const server = platform.server;
    await server.waitForConnection();

    const count = 36;
    const texts = Array.from(
      { length: count },
      (_, i) => `message ${String(i + 1).padStart(2, "0")}`,
    );
    // 6 drops, 3 refreshes, 3 immediate redeliveries; bounded, and each hits a live connection.
    const disruptions = ["drop", "refresh", "duplicate", "drop", "drop", "refresh"];
    disruptions.push("duplicate", "drop", "refresh", "drop", "duplicate", "drop");
    let next = 0;
    for (let i = 0; i < count; i++) {
      const disrupt = i % 3 === 2 && next < disruptions.length;
      // The disruption must meet a connection, while this message's envelope (and any
      // redelivered ones) are still unacknowledged.
      if (disrupt) await server.waitForConnection();
      server.deliver(
        eventCallback(
          messageEvent(
            {
              chatType: "direct",
              chatId: "D0STORM001",
              peer: { id: "U0STORMER1" },
              text: texts[i]!,
              messageId: `storm-${i}`,
            },
            platform.workspace.nextTs(),
          ),
        ),
      );
      if (disrupt) {
        const kind = disruptions[next++];
        if (kind === "drop") server.drop();
        else if (kind === "refresh") server.requestRefresh();
        else server.redeliverPending();
      }
    }

    await until("every event to be acknowledged", () => server.outstanding === 0, 10_000);
    await until(
      "every message to be answered",
      () => platform.workspace.posted.length >= count,
      10_000,
    );
    // Late duplicates would show up as extra answers: give them a moment.
    await new Promise((resolve) => setTimeout(resolve, 100));

    expect(asked()).toEqual(texts);
    expect(platform.workspace.posted.map((p) => p.text)).toEqual(texts);
    expect(server.connections).toBeGreaterThanOrEqual(1 + 9); // 6 drops and 3 refreshes
    const redeliveries = server.frames.filter(
      (f) => f.type === "events_api" && (f.retry_attempt as number) > 0,
    );
    expect(redeliveries.length).toBeGreaterThan(0);
    expect(manager.status(plugin.id).state).toBe("connected");
  }, 20_000);
});

describe("Slack Socket Mode: the host's view", () => {
  it("answers a mention in a channel thread inside that thread", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel(platform.channelOptions());
    await hosted(plugin, { requireMention: true });
    await platform.inject({
      chatType: "group",
      chatId: "C0THREADS1",
      threadId: "1700000000.000100",
      peer: { id: "U123ABC456" },
      text: "what is the status?",
      messageId: "cm-thread-1",
      mentionsBot: true,
    });
    const reply = await until("the reply", () => platform.workspace.posted[0]);
    expect(reply).toMatchObject({ channel: "C0THREADS1", threadTs: "1700000000.000100" });
    expect(reply.text).toContain("what is the status?");
  });

  it("does not answer a channel message that does not mention the bot when mentions are required", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel(platform.channelOptions());
    await hosted(plugin, { requireMention: true });
    const chatter = await platform.inject({
      chatType: "group",
      chatId: "C0CHATTER1",
      peer: { id: "U123ABC456" },
      text: "just chatting",
      messageId: "cm-chatter-1",
    });
    await platform.inject({
      chatType: "group",
      chatId: "C0CHATTER1",
      peer: { id: "U123ABC456" },
      text: "now you",
      messageId: "cm-chatter-2",
      mentionsBot: true,
    });
    await until("the reply to the mention", () => platform.workspace.posted.length === 1);
    expect(platform.workspace.posted[0]?.text).toContain("now you");
    await until("the unanswered message to be acknowledged all the same", () =>
      platform.server.isAcked(chatter.event_id),
    );
  });

  it("stops cleanly in the middle of a refresh: no connection is left open", async () => {
    const { platform, plugin, controller } = await startedSocketMode();
    platform.server.requestRefresh();
    await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await plugin.stop();
    await until("the server to see the socket close", () => !platform.server.connected);
    // And nothing connects again afterwards.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(platform.server.connected).toBe(false);
  });

  it("a second stop() while the first waits for the close handshake resolves only once the connection is closed", async () => {
    const { platform, plugin } = await startedSocketMode();
    // Slack does not answer the close frame until the test says so: the first stop waits.
    const handshake = platform.server.holdCloseHandshake();
    let firstStopped = false;
    const first = plugin.stop().then(() => {
      firstStopped = true;
    });
    // The second stop notes, as it resolves, how far the closing had come.
    const second = plugin.stop().then(() => ({
      firstStopped,
      closeFrameReceived: handshake.isReceived,
    }));
    await handshake.received;
    handshake.release();
    expect(await second).toEqual({ firstStopped: true, closeFrameReceived: true });
    await first;
    await until("the server to see the socket close", () => !platform.server.connected);
    // Stopped: one more stop has nothing to wait for, and a start connects again.
    await plugin.stop();
    await plugin.start(recordingContext(plugin).ctx);
    await platform.server.waitForConnection();
    expect(platform.server.connections).toBe(2);
  });
});
