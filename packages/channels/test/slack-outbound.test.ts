/**
 * The Slack channel's outbound calls against the fake Web API (msw): chat.postMessage into
 * threads, chat.update, Slack's text escaping, abort, and Slack's errors read into
 * `ChannelSendError` — a rate limit's `Retry-After` becoming `retryAfterMs`, which the host's
 * outbox then honours (the web client never retries by itself).
 */
import { AbortedError, ChannelSendError, type ChannelTarget } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { createSlackChannel } from "../src/slack/index.js";
import { closeFakeSlackApi } from "./slack/fake-slack-api.js";
import { cleanUp, cleanups, hosted, startedSocketMode, until } from "./slack/harness.js";
import { SlackSocketModePlatform } from "./slack/slack-platform.js";

afterEach(cleanUp);
afterAll(() => closeFakeSlackApi());

const channel: ChannelTarget = { accountId: "default", chatType: "group", chatId: "C123ABC456" };

/** The error a promise rejected with. */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a failure");
    },
    (error: unknown) => error,
  );
}

describe("Slack outbound: posting and editing", () => {
  it("posts with chat.postMessage and the bot token, and names the message <channel>:<ts>", async () => {
    const { platform, plugin } = await startedSocketMode();
    const sent = await plugin.sendText(channel, "hello");
    const [call] = platform.workspace.callsOf("chat.postMessage");
    expect(call).toMatchObject({
      token: platform.workspace.botToken,
      args: { channel: "C123ABC456", text: "hello" },
    });
    expect(call?.args.thread_ts).toBeUndefined();
    const posted = platform.workspace.posted[0]!;
    expect(sent.messageId).toBe(`C123ABC456:${posted.ts}`);
  });

  it("posts into the target's thread with thread_ts", async () => {
    const { platform, plugin } = await startedSocketMode();
    await plugin.sendText({ ...channel, threadId: "1700000000.000100" }, "in the thread");
    expect(platform.workspace.posted[0]).toMatchObject({
      channel: "C123ABC456",
      threadTs: "1700000000.000100",
    });
  });

  it("edits with chat.update, finding the channel in the message id, with chat.postMessage's parse (none)", async () => {
    const { platform, plugin } = await startedSocketMode();
    const sent = await plugin.sendText(
      { ...channel, chatType: "direct", chatId: "U0ALICE001" },
      "draft",
    );
    await plugin.edit(channel, sent.messageId, "final");
    const [call] = platform.workspace.callsOf("chat.update");
    // chat.update's own default is parse=client (Slack's docs): "@here" in an edit would ping.
    expect(call?.args).toMatchObject({ channel: "U0ALICE001", text: "final", parse: "none" });
    expect(platform.workspace.posted[0]?.edits).toEqual(["final"]);
    // A bare ts belongs to the target's chat.
    await plugin.edit(
      { ...channel, chatId: "U0ALICE001" },
      platform.workspace.posted[0]!.ts,
      "final, really",
    );
    expect(platform.workspace.posted[0]?.edits).toEqual(["final", "final, really"]);
  });

  it("escapes &, < and > as Slack requires, keeping mentions and links", async () => {
    const { platform, plugin } = await startedSocketMode();
    await plugin.sendText(
      channel,
      "if a < b && c > d, ask <@U024BE7LH> or see <https://example.com|the docs>",
    );
    expect(platform.workspace.posted[0]?.text).toBe(
      "if a &lt; b &amp;&amp; c &gt; d, ask <@U024BE7LH> or see <https://example.com|the docs>",
    );
  });

  it("answers a group message in a new thread under it with replyInThread", async () => {
    const { platform, plugin, received } = await startedSocketMode({ replyInThread: true });
    const delivered = await platform.inject({
      chatType: "group",
      chatId: "C123ABC456",
      peer: { id: "U123ABC456" },
      text: "question",
      messageId: "cm-question-1",
    });
    const { ts } = delivered.event as { ts: string };
    await until("the question", () => received.length === 1);
    await plugin.sendText(channel, "answer", { replyToMessageId: received[0]!.messageId });
    await plugin.sendText(channel, "by channel and ts", {
      replyToMessageId: `C123ABC456:${ts}`,
    });
    expect(platform.workspace.posted.map((p) => p.threadTs)).toEqual([ts, ts]);
  });

  it("answers in the channel, not in a thread, without replyInThread", async () => {
    const { platform, plugin } = await startedSocketMode();
    await plugin.sendText(channel, "answer", { replyToMessageId: "C123ABC456:1700000000.000100" });
    expect(platform.workspace.posted[0]?.threadTs).toBeUndefined();
  });

  it("aborts a send when its signal aborts", async () => {
    const { platform, plugin } = await startedSocketMode();
    platform.workspace.answerNext("chat.postMessage", { delayMs: 5_000, body: { ok: true } });
    const controller = new AbortController();
    const sending = plugin.sendText(channel, "too slow", { signal: controller.signal });
    await until("the request", () => platform.workspace.callsOf("chat.postMessage").length === 1);
    controller.abort();
    expect(AbortedError.isInstance(await failure(sending))).toBe(true);
    expect(
      AbortedError.isInstance(
        await failure(plugin.sendText(channel, "already", { signal: controller.signal })),
      ),
    ).toBe(true);
  });
});

describe("Slack outbound: errors", () => {
  it("turns a 429 with Retry-After from chat.postMessage into a retryable ChannelSendError, without retrying itself", async () => {
    const { platform, plugin } = await startedSocketMode();
    platform.workspace.answerNext("chat.postMessage", {
      status: 429,
      headers: { "retry-after": "7" },
      body: { ok: false, error: "ratelimited" },
    });
    const error = await failure(plugin.sendText(channel, "burst"));
    expect(ChannelSendError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ isRetryable: true, retryAfterMs: 7_000, statusCode: 429 });
    // Slack limits each method per workspace: the wait holds up the whole channel.
    expect(error).toMatchObject({ platformCode: "ratelimited", scope: "channel" });
    expect(platform.workspace.callsOf("chat.postMessage")).toHaveLength(1);
    expect(platform.workspace.posted).toHaveLength(0);
  });

  it("honours Retry-After on an ok:false ratelimited answer that is not a 429", async () => {
    const { platform, plugin } = await startedSocketMode();
    // Slack documents `ratelimited` as an error of its own: "Refer to the Retry-After header".
    platform.workspace.answerNext("chat.postMessage", {
      headers: { "retry-after": "12" },
      body: { ok: false, error: "ratelimited" },
    });
    const error = await failure(plugin.sendText(channel, "burst"));
    expect(ChannelSendError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({
      isRetryable: true,
      retryAfterMs: 12_000,
      platformCode: "ratelimited",
    });
    expect((error as Error).message).toContain("ratelimited");
    expect(platform.workspace.posted).toHaveLength(0);
  });

  it("reports a 429 without a usable Retry-After as a rate limit (429), taking an HTTP date as the wait", async () => {
    const { platform, plugin } = await startedSocketMode();
    platform.workspace.answerNext(
      "chat.postMessage",
      { status: 429, body: { ok: false, error: "ratelimited" } },
      {
        status: 429,
        headers: { "retry-after": new Date(Date.now() + 20_000).toUTCString() },
        body: { ok: false, error: "ratelimited" },
      },
    );
    const bare = await failure(plugin.sendText(channel, "burst"));
    expect(ChannelSendError.isInstance(bare)).toBe(true);
    expect(bare).toMatchObject({ isRetryable: true, statusCode: 429, retryAfterMs: undefined });
    expect((bare as Error).message).toContain("rate limited");
    const dated = await failure(plugin.sendText(channel, "burst"));
    expect(dated).toMatchObject({ isRetryable: true, statusCode: 429 });
    const wait = (dated as ChannelSendError).retryAfterMs ?? 0;
    // The date has whole seconds: 19 to 20 s from when it was written.
    expect(wait).toBeGreaterThanOrEqual(18_000);
    expect(wait).toBeLessThanOrEqual(21_000);
    expect(platform.workspace.posted).toHaveLength(0);
  });

  it("cancels a 429's body, which @slack/web-api never reads, instead of leaving it holding the connection", async () => {
    const { platform, plugin } = await startedSocketMode();
    // The Web API client calls the global fetch (msw's, by now): its answers are kept.
    const fetched = vi.spyOn(globalThis, "fetch");
    cleanups.push(async () => fetched.mockRestore());
    platform.workspace.answerNext("chat.postMessage", {
      status: 429,
      headers: { "retry-after": "3" },
      body: { ok: false, error: "ratelimited" },
    });
    const error = await failure(plugin.sendText(channel, "burst"));
    expect(error).toMatchObject({ isRetryable: true, retryAfterMs: 3_000, statusCode: 429 });
    const answers = await Promise.all(fetched.mock.results.map((r) => r.value as Response));
    const limited = answers.filter((r) => r.url.endsWith("/chat.postMessage"));
    expect(limited.map((r) => r.status)).toEqual([429]);
    expect(limited[0]?.bodyUsed).toBe(true);
  });

  it("refuses for good what Slack will keep refusing", async () => {
    const { platform, plugin } = await startedSocketMode();
    const errors = [
      "channel_not_found",
      "not_in_channel",
      "is_archived",
      "msg_too_long",
      "invalid_auth",
    ];
    for (const slackError of errors) {
      platform.workspace.answerNext("chat.postMessage", { body: { ok: false, error: slackError } });
    }
    for (const slackError of errors) {
      const error = await failure(plugin.sendText(channel, "no"));
      expect(error).toMatchObject({
        code: "CHANNEL_SEND_FAILED",
        isRetryable: false,
        platformCode: slackError,
      });
      expect((error as Error).message).toContain(slackError);
    }
  });

  it("lets the host retry Slack's transient failures: internal errors, 5xx, the network", async () => {
    const { platform, plugin } = await startedSocketMode();
    platform.workspace.answerNext(
      "chat.postMessage",
      { body: { ok: false, error: "internal_error" } },
      { body: { ok: false, error: "service_unavailable" } },
      { status: 503, body: { ok: false, error: "service_unavailable" } },
      { networkError: true },
    );
    const errors = [];
    for (let i = 0; i < 4; i++) errors.push(await failure(plugin.sendText(channel, "retry me")));
    for (const error of errors) expect(error).toMatchObject({ isRetryable: true });
    expect(errors[2]).toMatchObject({ statusCode: 503 });
    await plugin.sendText(channel, "through at last");
    expect(platform.workspace.posted.map((p) => p.text)).toEqual(["through at last"]);
  });

  it("a rate-limited reply is delivered once, after Retry-After, by the host's outbox", async () => {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel(platform.channelOptions());
    await hosted(plugin);
    platform.workspace.answerNext("chat.postMessage", {
      status: 429,
      headers: { "retry-after": "1" },
      body: { ok: false, error: "ratelimited" },
    });
    await platform.inject({
      chatType: "direct",
      chatId: "D0DIRECT01",
      peer: { id: "U123ABC456" },
      text: "are we rate limited?",
      messageId: "cm-limited-1",
    });
    await until("the reply", () => platform.workspace.posted.length === 1, 5_000);
    const attempts = platform.workspace.callsOf("chat.postMessage");
    expect(attempts.map((a) => a.status)).toEqual([429, 200]);
    // Retry-After: 1 is honoured (the outbox waits at least that long; a little clock slack).
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(950);
    expect(platform.workspace.posted[0]?.text).toBe("are we rate limited?");
  });
});
