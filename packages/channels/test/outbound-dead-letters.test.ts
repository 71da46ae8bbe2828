/**
 * What an operator finds in a channel's dead letters (`outbox.deadLetters()`) after the
 * outbox gave up on a reply: the platform's HTTP status of the last failure, and every try
 * counted, and Telegram's own error text (`platformCode`). Against the fake Bot API (msw) with
 * Telegram's documented error answers: a 403 (the user blocked the bot) is set aside after one
 * try, a 502 after `maxAttempts` tries; a 429 is waited out without using up tries, holding
 * up only its own chat.
 */
import type { ChannelManager } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { createTelegramChannel } from "../src/index.js";
import { type Cleanups, managedHost } from "./shared-harness.js";
import { FakeTelegram, quietLogger, TOKEN, useTelegramApi } from "./telegram-platform.js";

useTelegramApi();

const cleanups: Cleanups = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const dm = { accountId: "default", chatType: "direct" as const, chatId: "100001" };
const other = { accountId: "default", chatType: "direct" as const, chatId: "100002" };

/** Waits (polling the fake's log) until `done` holds. */
async function until(what: string, done: () => boolean) {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

async function managed() {
  const api = new FakeTelegram();
  cleanups.push(async () => api.close());
  const plugin = createTelegramChannel({
    token: TOKEN,
    polling: { timeoutSeconds: 2, baseDelayMs: 2, maxDelayMs: 10 },
  });
  const { manager } = await managedHost(
    plugin,
    { dmPolicy: "open" },
    {
      cleanups,
      reply: "unused",
      logger: quietLogger,
      outbox: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 },
    },
  );
  return { api, outbox: manager.outbox("telegram"), manager };
}

/** Polls until the outbox set an entry aside. */
async function deadLetterOf(outbox: ReturnType<ChannelManager["outbox"]>) {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const [dead] = await outbox.deadLetters();
    if (dead !== undefined) return dead;
    if (Date.now() > deadline) throw new Error("timed out waiting for the dead letter");
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

describe("dead letters of a channel's outbox", () => {
  it("a 403 (bot blocked by the user) is set aside after one try, with its status", async () => {
    const { api, outbox, manager } = await managed();
    api.script("sendMessage", {
      errorCode: 403,
      description: "Forbidden: bot was blocked by the user",
    });
    await manager.deliver("telegram", dm, { text: "anyone there?" });
    const dead = await deadLetterOf(outbox);
    expect(dead).toMatchObject({
      attempts: 1,
      sent: 0,
      parts: [{ kind: "text", text: "anyone there?" }],
      error: {
        code: "CHANNEL_SEND_FAILED",
        statusCode: 403,
        platformCode: "Forbidden: bot was blocked by the user",
      },
    });
    expect(dead.error.message).toContain("bot was blocked by the user");
    expect(api.calls.filter((c) => c.method === "sendMessage")).toHaveLength(1);
    expect(await outbox.list()).toEqual([]);
  });

  it("Telegram's 502s are tried maxAttempts times, and the dead letter counts them all", async () => {
    const { api, outbox, manager } = await managed();
    api.script("sendMessage", { html: 502 }, { html: 502 }, { html: 502 });
    await manager.deliver("telegram", dm, { text: "are you up?" });
    const dead = await deadLetterOf(outbox);
    expect(dead).toMatchObject({ attempts: 3, error: { statusCode: 502 } });
    expect(api.calls.filter((c) => c.method === "sendMessage").map((c) => c.answered)).toEqual([
      502, 502, 502,
    ]);
  });

  it("429s with retry_after are waited out without using up maxAttempts", async () => {
    const { api, outbox, manager } = await managed();
    const flood = {
      errorCode: 429,
      description: "Too Many Requests: retry after 0.01",
      retryAfter: 0.01,
    };
    // Four 429s and a 502: more than maxAttempts (3) answers that were not the message.
    api.script("sendMessage", flood, flood, flood, flood, { html: 502 });
    await manager.deliver("telegram", dm, { text: "patience" });
    await until("the message", () => api.actions.some((a) => a.text === "patience"));
    await outbox.idle();
    expect(await outbox.deadLetters()).toEqual([]);
    expect(api.calls.filter((c) => c.method === "sendMessage").map((c) => c.answered)).toEqual([
      429, 429, 429, 429, 502, 200,
    ]);
  });

  it("a chat told to wait (retry_after) does not hold up the bot's other chats", async () => {
    const { api, outbox, manager } = await managed();
    api.script("sendMessage", {
      errorCode: 429,
      description: "Too Many Requests: retry after 30",
      retryAfter: 30,
    });
    await manager.deliver("telegram", dm, { text: "first for alice" });
    await manager.deliver("telegram", dm, { text: "second for alice" });
    await manager.deliver("telegram", other, { text: "for bob" });
    await until("bob's message", () => api.actions.some((a) => a.text === "for bob"));
    // Alice's chat waits its 30 s, in order: her second message is not sent before her first.
    const sent = api.calls.filter((c) => c.method === "sendMessage");
    expect(sent.map((c) => [String(c.params.chat_id), c.answered])).toEqual([
      ["100001", 429],
      ["100002", 200],
    ]);
    expect((await outbox.list()).map((e) => e.parts)).toEqual([
      [{ kind: "text", text: "first for alice" }],
      [{ kind: "text", text: "second for alice" }],
    ]);
  });
});
