/**
 * The Discord channel's outbound calls against Discord's REST API (msw, with Discord's
 * documented request and response shapes): messages with `nonce` + `enforce_nonce`,
 * replies, DM channels, threads, edits, typing, reactions, files; rate limits handled by
 * @discordjs/rest (waited out, or surfaced with `retryAfterMs`), and refusals.
 */
import { createHook } from "node:async_hooks";
import { Readable } from "node:stream";
import { arrayBuffer, text } from "node:stream/consumers";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { AbortedError, ChannelSendError } from "@beamclaw/core";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import {
  createDiscordChannel,
  type DiscordChannelOptions,
  discordNonceFor,
} from "../src/discord/index.js";
import { cleanups, runCleanups, startHarness } from "./discord/harness.js";
import {
  closeDiscordMsw,
  preloadDiscordLibraries,
  startDiscordPlatform,
} from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(runCleanups);
afterAll(() => closeDiscordMsw());

const room = { accountId: "default", chatType: "group" as const, chatId: "room-1" };

/**
 * Runs `call` and returns how many timers it armed that still hold the event loop once it
 * settled (followed one by one with an async hook, not counted by type).
 */
async function timersLeftBy(call: () => Promise<unknown>): Promise<number> {
  const alive = new Map<number, { hasRef(): boolean }>();
  const hook = createHook({
    init(id, type, _trigger, resource) {
      if (type === "Timeout") alive.set(id, resource as { hasRef(): boolean });
    },
    destroy(id) {
      alive.delete(id);
    },
  }).enable();
  try {
    await call().catch(() => undefined);
    await new Promise<void>((resolve) => setImmediate(resolve));
    return [...alive.values()].filter((t) => t.hasRef()).length;
  } finally {
    hook.disable();
  }
}
const posts = (h: Awaited<ReturnType<typeof startHarness>>) =>
  h.platform.requests.filter((r) => r.method === "POST" && r.path.endsWith("/messages"));

describe("messages", () => {
  it("posts the text with a nonce from the idempotency key, enforce_nonce, and mentions limited to users", async () => {
    const h = await startHarness();
    const sent = await h.plugin.sendText(room, "hello <@u-1> and @everyone", {
      idempotencyKey: "000001735689600000-000000001-a1b2c3:0",
    });
    const [post] = posts(h);
    expect(post?.path).toBe("/channels/room-1/messages");
    expect(post?.body).toEqual({
      content: "hello <@u-1> and @everyone",
      nonce: discordNonceFor("000001735689600000-000000001-a1b2c3:0"),
      enforce_nonce: true,
      allowed_mentions: { parse: ["users"], replied_user: true },
    });
    expect(String(post?.body?.nonce).length).toBeLessThanOrEqual(25);
    expect(h.platform.messages.get(sent.messageId)?.content).toBe("hello <@u-1> and @everyone");
  });

  it("a send retried with the same idempotency key makes one message: Discord answers the first one again", async () => {
    const h = await startHarness();
    // The first answer is lost on the way back (Discord made the message, then a 502).
    h.platform.answerNext("POST", /^\/channels\/room-1\/messages$/, {
      kind: "lost-response",
      status: 502,
    });
    const options = { idempotencyKey: "outbox-entry-7:0" };
    const first = await h.plugin.sendText(room, "exactly once", options);
    const again = await h.plugin.sendText(room, "exactly once", options);
    expect(posts(h).length).toBe(3); // 502, @discordjs/rest's retry, the outbox's retry
    expect(again.messageId).toBe(first.messageId);
    expect(
      [...h.platform.messages.values()].filter((m) => m.content === "exactly once"),
    ).toHaveLength(1);
  });

  it("a reply references the message, and still goes out if that message is gone", async () => {
    const h = await startHarness();
    await h.plugin.sendText(room, "answer", { replyToMessageId: "m-42" });
    expect(posts(h)[0]?.body?.message_reference).toEqual({
      message_id: "m-42",
      fail_if_not_exists: false,
    });
    expect(h.platform.outbound()[0]).toMatchObject({ kind: "text", replyToMessageId: "m-42" });
  });

  it("a direct target opens the DM channel once (POST /users/@me/channels) and reuses it", async () => {
    const h = await startHarness();
    const dm = { accountId: "default", chatType: "direct" as const, chatId: "u-5" };
    await Promise.all([h.plugin.sendText(dm, "one"), h.plugin.typing(dm)]);
    await h.plugin.sendText(dm, "two");
    const opened = h.platform.requests.filter((r) => r.path === "/users/@me/channels");
    expect(opened).toHaveLength(1);
    expect(opened[0]?.body).toEqual({ recipient_id: "u-5" });
    expect(posts(h).map((r) => r.path)).toEqual([
      "/channels/dm-u-5/messages",
      "/channels/dm-u-5/messages",
    ]);
  });

  it("a target with a thread posts in the thread's channel", async () => {
    const h = await startHarness({ platform: { threads: [{ id: "t-9", channel: "room-1" }] } });
    await h.plugin.sendText({ ...room, threadId: "t-9" }, "in the thread");
    expect(posts(h)[0]?.path).toBe("/channels/t-9/messages");
    expect(h.platform.outbound()[0]?.target).toEqual({
      chatType: "group",
      chatId: "room-1",
      threadId: "t-9",
    });
  });

  it("edits with PATCH, shows typing with POST /typing, reacts with PUT (unicode and custom emoji)", async () => {
    const h = await startHarness();
    const sent = await h.plugin.sendText(room, "draft");
    await h.plugin.edit(room, sent.messageId, "final");
    await h.plugin.typing(room);
    await h.plugin.react(room, sent.messageId, "👍");
    await h.plugin.react(room, sent.messageId, "<:party:123456789>");
    const calls = h.platform.requests.map((r) => `${r.method} ${r.path}`);
    expect(calls).toEqual(
      expect.arrayContaining([
        `PATCH /channels/room-1/messages/${sent.messageId}`,
        "POST /channels/room-1/typing",
        `PUT /channels/room-1/messages/${sent.messageId}/reactions/${encodeURIComponent("👍")}/@me`,
        `PUT /channels/room-1/messages/${sent.messageId}/reactions/${encodeURIComponent("party:123456789")}/@me`,
      ]),
    );
    expect(h.platform.messages.get(sent.messageId)?.content).toBe("final");
  });

  it("works before start: the REST client does not need the gateway", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({
      token: "MTAwMDAwMDAwMDAwMDAwMDAx.fake.bot-token-for-tests",
      rest: { api: platform.api },
    });
    const sent = await plugin.sendText(room, "announcement");
    expect(platform.messages.get(sent.messageId)?.content).toBe("announcement");
    expect(platform.gateway.connections).toBe(0);
  });
});

describe("files", () => {
  it("uploads base64 data as a multipart attachment with the caption as content", async () => {
    const h = await startHarness();
    const png = Buffer.from("89504e470d0a1a0a", "hex").toString("base64");
    await h.plugin.sendMedia(
      room,
      { kind: "image", data: png, mediaType: "image/png", name: "chart.png", caption: "the chart" },
      { idempotencyKey: "k1" },
    );
    const [post] = posts(h);
    expect(post?.headers.get("content-type")).toMatch(/^multipart\/form-data/);
    expect(post?.files).toEqual([
      { field: "files[0]", name: "chart.png", type: "image/png", data: png },
    ]);
    expect(post?.body).toMatchObject({ content: "the chart", nonce: "k1", enforce_nonce: true });
  });

  it("shows an image URL as an embed, and posts other URLs as links", async () => {
    const h = await startHarness();
    await h.plugin.sendMedia(room, { kind: "image", url: "https://files.example/cat.png" });
    await h.plugin.sendMedia(room, {
      kind: "file",
      url: "https://files.example/report.pdf",
      caption: "the report",
    });
    const [image, file] = posts(h);
    expect(image?.body).toMatchObject({
      embeds: [{ image: { url: "https://files.example/cat.png" } }],
    });
    expect(file?.body).toMatchObject({ content: "the report\nhttps://files.example/report.pdf" });
  });
});

describe("rate limits", () => {
  it("a 429 with retry_after is waited out by @discordjs/rest and the message sent once", async () => {
    const h = await startHarness();
    h.platform.answerNext("POST", /\/messages$/, { kind: "rate-limit", retryAfter: 0.3 });
    const sent = await h.plugin.sendText(room, "after the limit");
    const [limited, retried] = posts(h);
    expect(retried!.at - limited!.at).toBeGreaterThanOrEqual(250);
    expect(h.platform.messages.get(sent.messageId)?.content).toBe("after the limit");
    expect(posts(h)).toHaveLength(2);
  });

  it("a global limit longer than maxRateLimitWaitMs fails the send at once, retryable with retryAfterMs, and holds back later calls", async () => {
    const h = await startHarness({ plugin: { maxRateLimitWaitMs: 2_000 } });
    // Discord's documented example: Retry-After: 65, retry_after: 64.57, global.
    h.platform.answerNext("POST", /\/messages$/, {
      kind: "rate-limit",
      retryAfter: 64.57,
      global: true,
    });
    const error = await h.plugin.sendText(room, "too soon").catch((e: unknown) => e);
    expect(ChannelSendError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ isRetryable: true, statusCode: 429 });
    expect((error as ChannelSendError).retryAfterMs).toBeGreaterThanOrEqual(64_000);
    expect((error as Error).message).toMatch(/global/);
    // Discord's global limit holds up every chat of the channel in the outbox.
    expect((error as ChannelSendError).scope).toBe("channel");
    const before = h.platform.requests.length;
    let typing: unknown;
    // Refused without a timer: @discordjs/rest alone would leave one of the whole minute.
    expect(
      await timersLeftBy(async () => {
        typing = await h.plugin.typing(room).catch((e: unknown) => e);
      }),
    ).toBe(0);
    expect(typing).toMatchObject({ isRetryable: true, statusCode: 429 });
    expect((typing as ChannelSendError).retryAfterMs).toBeGreaterThanOrEqual(60_000);
    expect((typing as Error).message).toMatch(/global/);
    expect(h.platform.requests.length).toBe(before); // not sent: the global limit holds
  });

  it("a route's exhausted bucket refuses later calls at once, retryable, and leaves no timer", async () => {
    const h = await startHarness({ plugin: { maxRateLimitWaitMs: 2_000 } });
    // The first 429 tells @discordjs/rest the route's bucket; the second exhausts it.
    h.platform.answerNext(
      "POST",
      /\/messages$/,
      { kind: "rate-limit", retryAfter: 30 },
      { kind: "rate-limit", retryAfter: 30 },
    );
    for (const text of ["one", "two"]) {
      const refused = await h.plugin.sendText(room, text).catch((e: unknown) => e);
      expect(refused).toMatchObject({ isRetryable: true, statusCode: 429 });
    }
    const before = h.platform.requests.length;
    let third: unknown;
    // Refused without a timer: @discordjs/rest alone would leave one of the whole 30 s.
    expect(
      await timersLeftBy(async () => {
        third = await h.plugin.sendText(room, "three").catch((e: unknown) => e);
      }),
    ).toBe(0);
    expect(ChannelSendError.isInstance(third)).toBe(true);
    // A route's bucket holds up only its chat in the outbox.
    expect(third).toMatchObject({ isRetryable: true, statusCode: 429, scope: "chat" });
    expect((third as ChannelSendError).retryAfterMs).toBeGreaterThan(25_000);
    expect(h.platform.requests.length).toBe(before); // not sent
    // Another channel's bucket is not held back.
    const other = await h.plugin.sendText({ ...room, chatId: "room-2" }, "elsewhere");
    expect(h.platform.messages.get(other.messageId)?.content).toBe("elsewhere");
  });

  it("the wait after a 429 is sat out with a timer an abort clears", async () => {
    // `@discordjs/rest` logs a 429 through the plugin ("discord rate limit") once it has read
    // the answer: only then is the send sitting out its wait (not still awaiting the answer,
    // whose request timer an abort ends a moment later, as on a loaded machine).
    let limited = false;
    const onLog = (message: string) => {
      if (message === "discord rate limit") limited = true;
    };
    const logger = { debug: onLog, info: onLog, warn: onLog, error: onLog };
    const h = await startHarness({ plugin: { maxRateLimitWaitMs: 5_000 }, logger });
    h.platform.answerNext("POST", /\/messages$/, { kind: "rate-limit", retryAfter: 3 });
    const controller = new AbortController();
    let sending: Promise<unknown> = Promise.resolve();
    const left = await timersLeftBy(async () => {
      sending = h.plugin
        .sendText(room, "patience", { signal: controller.signal })
        .catch((e: unknown) => e);
      // The 429 came back: the send now sits out its bucket's reset (3 s).
      for (let i = 0; !limited; i++) {
        if (i > 1_000) throw new Error("the send never met its 429");
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      // Aborted: no timer of that wait is left running (counted before the send settles).
      controller.abort();
    });
    expect(left).toBe(0);
    expect(AbortedError.isInstance(await sending)).toBe(true);
    expect(posts(h)).toHaveLength(1); // the limited attempt only
  });

  it("a global limit within maxRateLimitWaitMs is waited out", async () => {
    const h = await startHarness();
    h.platform.answerNext("POST", /\/messages$/, {
      kind: "rate-limit",
      retryAfter: 0.4,
      global: true,
    });
    const sent = await h.plugin.sendText(room, "patience");
    const [limited, retried] = posts(h);
    expect(retried!.at - limited!.at).toBeGreaterThanOrEqual(350);
    expect(h.platform.messages.get(sent.messageId)?.content).toBe("patience");
  });
});

describe("answers whose body @discordjs/rest never reads", () => {
  it("a 429 waited out and 5xx retried have their body cancelled, not left holding the connection", async () => {
    const h = await startHarness();
    // The channel's REST client calls the global fetch (msw's, by now): its answers are kept.
    const fetched = vi.spyOn(globalThis, "fetch");
    cleanups.push(async () => fetched.mockRestore());
    const failure = {
      kind: "error" as const,
      status: 503,
      body: { message: "upstream connect error", code: 0 },
    };
    h.platform.answerNext("POST", /\/messages$/, { kind: "rate-limit", retryAfter: 0.1 }, failure);
    const sent = await h.plugin.sendText(room, "through");
    expect(h.platform.messages.get(sent.messageId)?.content).toBe("through");
    const answers = await Promise.all(fetched.mock.results.map((r) => r.value as Response));
    const posted = answers.filter((r) => new URL(r.url).pathname.endsWith("/messages"));
    expect(posted.map((r) => r.status)).toEqual([429, 503, 200]);
    // Read (the message) or cancelled (the 429 and the 503): none left open.
    expect(posted.map((r) => r.bodyUsed)).toEqual([true, true, true]);
  });

  it("a makeRequest of one's own is followed too: a 429's Node stream body is destroyed", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    // As with undici's `request`: the answer's body is a Node stream.
    const bodies: Array<{ status: number; body: Readable }> = [];
    const makeRequest = async (url: string, init: RequestInit) => {
      const response = await fetch(url, init);
      const body = Readable.fromWeb(response.body as NodeReadableStream);
      bodies.push({ status: response.status, body });
      return {
        status: response.status,
        statusText: response.statusText,
        ok: response.ok,
        headers: response.headers,
        body,
        bodyUsed: false,
        arrayBuffer: () => arrayBuffer(body),
        json: async () => JSON.parse(await text(body)),
        text: () => text(body),
      };
    };
    const h = await startHarness({
      on: platform,
      plugin: { rest: { api: platform.api, makeRequest } as DiscordChannelOptions["rest"] },
    });
    h.platform.answerNext("POST", /\/messages$/, { kind: "rate-limit", retryAfter: 0.1 });
    const sent = await h.plugin.sendText(room, "through");
    expect(h.platform.messages.get(sent.messageId)?.content).toBe("through");
    const limited = bodies.filter((b) => b.status === 429);
    expect(limited).toHaveLength(1);
    expect(limited[0]?.body.destroyed).toBe(true);
  });

  it("a 5xx that outlasts the retries fails the send, every answer's body cancelled", async () => {
    const h = await startHarness();
    const fetched = vi.spyOn(globalThis, "fetch");
    cleanups.push(async () => fetched.mockRestore());
    const failure = {
      kind: "error" as const,
      status: 502,
      body: { message: "502: Bad Gateway", code: 0 },
    };
    h.platform.answerNext("POST", /\/messages$/, failure, failure, failure, failure);
    const error = await h.plugin.sendText(room, "x").catch((e: unknown) => e);
    expect(error).toMatchObject({ isRetryable: true, statusCode: 502 });
    const answers = await Promise.all(fetched.mock.results.map((r) => r.value as Response));
    const posted = answers.filter((r) => new URL(r.url).pathname.endsWith("/messages"));
    expect(posted.map((r) => r.status)).toEqual([502, 502, 502, 502]);
    expect(posted.every((r) => r.bodyUsed)).toBe(true);
  });
});

describe("refusals", () => {
  it("fails without retry when Discord refuses: 403 Missing Permissions, 404 Unknown Channel", async () => {
    const h = await startHarness();
    h.platform.answerNext("POST", /\/messages$/, {
      kind: "error",
      status: 403,
      body: { message: "Missing Permissions", code: 50013 },
    });
    const forbidden = await h.plugin.sendText(room, "x").catch((e: unknown) => e);
    expect(forbidden).toMatchObject({
      code: "CHANNEL_SEND_FAILED",
      isRetryable: false,
      statusCode: 403,
      platformCode: "50013",
    });
    expect((forbidden as Error).message).toMatch(/Missing Permissions/);
    h.platform.deleteChannel("room-1");
    const gone = await h.plugin.sendText(room, "x").catch((e: unknown) => e);
    expect(gone).toMatchObject({ isRetryable: false, statusCode: 404, platformCode: "10003" });
    expect((gone as Error).message).toMatch(/Unknown Channel/);
  });

  it("a 5xx that outlasts @discordjs/rest's retries is retryable", async () => {
    const h = await startHarness();
    const failure = {
      kind: "error" as const,
      status: 500,
      body: { message: "500: Internal Server Error", code: 0 },
    };
    h.platform.answerNext("POST", /\/messages$/, failure, failure, failure, failure);
    const error = await h.plugin.sendText(room, "x").catch((e: unknown) => e);
    expect(error).toMatchObject({ isRetryable: true, statusCode: 500 });
    expect(posts(h)).toHaveLength(4);
  });

  it("refuses text over 2000 characters (and empty text) before any request", async () => {
    const h = await startHarness();
    const before = h.platform.requests.length;
    await expect(h.plugin.sendText(room, "x".repeat(2001))).rejects.toMatchObject({
      isRetryable: false,
    });
    await expect(h.plugin.sendText(room, "")).rejects.toMatchObject({ isRetryable: false });
    expect(h.platform.requests.length).toBe(before);
    await h.plugin.sendText(room, "y".repeat(2000));
  });

  it("a rejected token fails sends with a non-retryable 401", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({ token: "wrong", rest: { api: platform.api } });
    await expect(plugin.sendText(room, "x")).rejects.toMatchObject({
      isRetryable: false,
      statusCode: 401,
    });
  });

  it("an aborted signal ends the send with AbortedError", async () => {
    const h = await startHarness();
    const controller = new AbortController();
    controller.abort();
    const error = await h.plugin
      .sendText(room, "x", { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(AbortedError.isInstance(error)).toBe(true);
    expect(posts(h)).toHaveLength(0);
  });
});
