/**
 * A Telegram send that takes several messages — a file, then the caption that did not fit in
 * it (over 1,024 characters) as messages of its own — retried by the host's outbox after a
 * later message of it failed. Telegram has no idempotency key, so a retry that started over
 * would post the file again: the outbox keeps which messages were confirmed with the delivery
 * (in the store, across a restart too) and the retry resumes after them. Against the fake Bot
 * API (msw) with Telegram's documented error shape (`parameters.retry_after` on a 429).
 */
import {
  AgentRuntime,
  ChannelManager,
  chunkText,
  createProviderChain,
  MemoryStore,
} from "@beamclaw/core";
import { createEchoProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createTelegramChannel } from "../src/index.js";
import { FakeTelegram, quietLogger, TOKEN, until, useTelegramApi } from "./telegram-platform.js";

useTelegramApi();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const ALICE_ID = 100_001;
const dm = { accountId: "default", chatType: "direct" as const, chatId: String(ALICE_ID) };

/** A runtime over a store that outlives the managers made by `manage()` (a process restart). */
async function runtimeWithStore() {
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
  /** A new process: a new Telegram channel and manager over the same store. */
  const manage = async () => {
    const manager = new ChannelManager({
      runtime,
      channels: [
        {
          plugin: createTelegramChannel({
            token: TOKEN,
            polling: { timeoutSeconds: 2, baseDelayMs: 2, maxDelayMs: 10 },
          }),
          dmPolicy: "open",
        },
      ],
      reconnect: { baseDelayMs: 5, maxDelayMs: 20 },
      outbox: { baseDelayMs: 5, maxDelayMs: 50 },
      logger: quietLogger,
    });
    await manager.start();
    let stopped = false;
    cleanups.push(async () => {
      if (!stopped) await manager.stop();
    });
    return {
      manager,
      stop: async () => {
        stopped = true;
        await manager.stop();
      },
    };
  };
  return { manage };
}

/** Polls an async `probe` until it is true. */
async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

function fake(): FakeTelegram {
  const api = new FakeTelegram();
  cleanups.push(async () => api.close());
  return api;
}

const calls = (api: FakeTelegram, method: string) => api.calls.filter((c) => c.method === method);
const texts = (api: FakeTelegram) =>
  api.actions.flatMap((a) => (a.kind === "text" ? [a.text ?? ""] : []));

describe("a file with a long caption, retried by the outbox", () => {
  it("sends the file once and the caption once when the caption's message gets a 429 first", async () => {
    const api = fake();
    const { manage } = await runtimeWithStore();
    const { manager } = await manage();
    const png = Buffer.from("\x89PNG\r\n\x1a\n a tiny png", "latin1");
    const caption = `${"word ".repeat(300)}end`; // 1,503 characters: over the 1,024 of a caption
    api.script("sendMessage", {
      errorCode: 429,
      description: "Too Many Requests: retry after 1",
      retryAfter: 1,
    });
    await manager.deliver("telegram", dm, {
      media: {
        kind: "image",
        data: png.toString("base64"),
        mediaType: "image/png",
        name: "chart.png",
        caption,
      },
    });
    await until("the caption", () => texts(api).length >= 1, 10_000);
    await manager.outbox("telegram").idle();

    expect(calls(api, "sendPhoto")).toHaveLength(1);
    expect(calls(api, "sendMessage").map((c) => c.answered)).toEqual([429, 200]);
    // What Alice sees: the picture, then its caption, each once.
    expect(api.actions.map((a) => a.kind)).toEqual(["media", "text"]);
    expect(api.actions[0]).toMatchObject({
      chatId: String(ALICE_ID), // a multipart upload's fields are strings
      media: { method: "sendPhoto", name: "chart.png", data: png.toString("base64") },
    });
    expect(api.actions[0]!.media!.caption).toBeUndefined();
    expect(texts(api)).toEqual([caption]);
    expect(await manager.outbox("telegram").list()).toEqual([]);
    expect(await manager.outbox("telegram").deadLetters()).toEqual([]);
  });

  it("resumes after a restart past the file and the caption's messages already sent", async () => {
    const api = fake();
    const { manage } = await runtimeWithStore();
    const first = await manage();
    // Over 4,096 characters: after the file, the caption takes two messages.
    const caption = `${"lorem ipsum ".repeat(500)}end`;
    const pieces = chunkText(caption, 4096);
    expect(pieces).toHaveLength(2);
    // The first piece goes through; the second is rate limited for long enough that the
    // process stops before the retry.
    api.script("sendMessage", "pass", {
      errorCode: 429,
      description: "Too Many Requests: retry after 30",
      retryAfter: 30,
    });
    await first.manager.deliver("telegram", dm, {
      media: { kind: "file", url: "https://files.example/report.pdf", caption },
    });
    // A rate limit: recorded with the entry, though not as a failed attempt.
    await eventually("the rate limit recorded", async () => {
      const [entry] = await first.manager.outbox("telegram").list();
      return entry?.rateLimits === 1 && entry.attempts === 0;
    });
    await first.stop();
    expect(calls(api, "sendMessage").map((c) => c.answered)).toEqual([200, 429]);

    // The process starts again: the outbox picks the delivery up where it stopped.
    const second = await manage();
    await until("the rest of the caption", () => texts(api).length >= 2, 10_000);
    await second.manager.outbox("telegram").idle();

    expect(calls(api, "sendDocument")).toHaveLength(1);
    expect(calls(api, "sendMessage").map((c) => c.answered)).toEqual([200, 429, 200]);
    expect(api.actions.map((a) => a.kind)).toEqual(["media", "text", "text"]);
    expect(api.actions[0]!.media).toMatchObject({
      method: "sendDocument",
      url: "https://files.example/report.pdf",
    });
    expect(texts(api)).toEqual(pieces);
    expect(await second.manager.outbox("telegram").list()).toEqual([]);
  });

  it("a long text delivered in several messages resends none of those already sent", async () => {
    const api = fake();
    const { manage } = await runtimeWithStore();
    const { manager } = await manage();
    const text = `${"dolor sit amet ".repeat(400)}end`;
    const pieces = chunkText(text, 4096);
    expect(pieces).toHaveLength(2);
    api.script("sendMessage", "pass", { html: 502 });
    await manager.deliver("telegram", dm, { text });
    await until("both pieces", () => texts(api).length === 2, 10_000);
    await manager.outbox("telegram").idle();
    expect(calls(api, "sendMessage").map((c) => c.answered)).toEqual([200, 502, 200]);
    expect(texts(api)).toEqual(pieces);
  });
});
