/**
 * The Telegram channel in webhook mode: Telegram POSTs updates to a local endpoint on
 * 127.0.0.1 with the secret token; the Bot API is the msw fake. The conformance suite, then
 * the webhook's rules: the secret token, answering 200 only once the host has the update,
 * redeliveries answered once, registration with setWebhook.
 */
import {
  AbortedError,
  AgentRuntime,
  ChannelManager,
  createProviderChain,
  InvalidInboundError,
  MemoryStore,
  NoProcessError,
  type ReceiveResult,
  StoreError,
} from "@beamclaw/core";
import { channelConformanceSuite, createEchoProvider } from "@beamclaw/core/testing";
import type { Update } from "grammy/types";
import { afterEach, describe, expect, it } from "vitest";
import {
  createTelegramChannel,
  SECRET_TOKEN_HEADER,
  TelegramApiError,
  type TelegramChannelOptions,
} from "../src/index.js";
import { acceptingContext, canListen, followStart, freePort } from "./shared-harness.js";
import {
  FakeTelegram,
  fetchLocal,
  privateMessage,
  startChannel,
  startTelegramPlatform,
  TELEGRAM_CONFORMANCE_IDS,
  TOKEN,
  until,
  user,
  useTelegramApi,
  WEBHOOK_SECRET,
} from "./telegram-platform.js";

useTelegramApi();

channelConformanceSuite("TelegramChannel (webhook)", {
  platform: () => startTelegramPlatform("webhook"),
  ids: TELEGRAM_CONFORMANCE_IDS,
  create: (platform) =>
    platform.attach(
      createTelegramChannel({
        token: TOKEN,
        mode: "webhook",
        webhook: { secretToken: WEBHOOK_SECRET, url: "https://bot.example.com/telegram", port: 0 },
        attachments: { url: (file) => platform.fileUrl(file.fileId) },
      }),
    ),
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const ALICE = user(100_001, "Alice", "alice");

const webhook =
  (extra: Partial<TelegramChannelOptions["webhook"]> = {}) =>
  () =>
    createTelegramChannel({
      token: TOKEN,
      mode: "webhook",
      webhook: {
        secretToken: WEBHOOK_SECRET,
        url: "https://bot.example.com/telegram",
        port: 0,
        ...extra,
      },
    });

async function started(...args: Parameters<typeof startChannel>) {
  const channel = await startChannel(...args);
  cleanups.push(() => channel.stop());
  return channel;
}

let nextUpdateId = 900_000_001;
const update = (messageId: number, text: string): Update =>
  ({ update_id: nextUpdateId++, message: privateMessage(ALICE, messageId, text) }) as Update;

const post = (url: string, body: unknown, headers: Record<string, string> = {}, method = "POST") =>
  fetchLocal(
    url,
    typeof body === "string" ? body : JSON.stringify(body),
    {
      "content-type": "application/json",
      ...headers,
    },
    method,
  );

describe("the webhook endpoint", () => {
  it("refuses a missing or wrong X-Telegram-Bot-Api-Secret-Token with 401; the host never sees the update", async () => {
    const { plugin, received } = await started(webhook());
    const url = plugin.localUrl!;
    const cases: Array<Record<string, string>> = [
      {},
      { [SECRET_TOKEN_HEADER]: "" },
      { [SECRET_TOKEN_HEADER]: "another-secret-of-32-characters!!" },
      { [SECRET_TOKEN_HEADER]: `${WEBHOOK_SECRET}x` },
      { [SECRET_TOKEN_HEADER]: WEBHOOK_SECRET.slice(0, -1) },
    ];
    for (const headers of cases) {
      const answer = await post(url, update(1, "let me in"), headers);
      expect(answer.status, JSON.stringify(headers)).toBe(401);
    }
    expect(received).toEqual([]);
    const good = await post(url, update(1, "let me in"), { [SECRET_TOKEN_HEADER]: WEBHOOK_SECRET });
    expect(good.status).toBe(200);
    expect(received.map((m) => m.text)).toEqual(["let me in"]);
  });

  it("answers 200 only once the host has the update in its durable queue", async () => {
    let accept!: (result: ReceiveResult) => void;
    const { plugin, received } = await started(
      webhook(),
      () => new Promise<ReceiveResult>((resolve) => (accept = resolve)),
    );
    let answered: number | undefined;
    const request = post(plugin.localUrl!, update(1, "hold on"), {
      [SECRET_TOKEN_HEADER]: WEBHOOK_SECRET,
    }).then((a) => {
      answered = a.status;
      return a;
    });
    await until("the host to be asked", () => received.length === 1);
    // A few turns of the loop: the endpoint must still be waiting for the host.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answered).toBeUndefined();
    accept({ status: "accepted" });
    expect((await request).status).toBe(200);
  });

  it("answers 503 when the host cannot take updates and 500 when it failed, so Telegram redelivers; 200 for what redelivery cannot fix", async () => {
    const errors: unknown[] = [
      new NoProcessError("the channel manager is not running"),
      new StoreError("STORE_UNAVAILABLE", "the store is down"),
      new InvalidInboundError("telegram", "peer.id", "must be a non-empty string"),
    ];
    const { plugin } = await started(webhook(), async (_input, n) => {
      throw errors[n - 1];
    });
    const statuses = [];
    for (let i = 1; i <= 3; i++) {
      const answer = await post(plugin.localUrl!, update(i, "hi"), {
        [SECRET_TOKEN_HEADER]: WEBHOOK_SECRET,
      });
      statuses.push(answer.status);
    }
    expect(statuses).toEqual([503, 500, 200]);
  });

  it("confirms updates it does not hand over (edits, callback queries) with 200", async () => {
    const { plugin, received } = await started(webhook());
    const secret = { [SECRET_TOKEN_HEADER]: WEBHOOK_SECRET };
    const edited = {
      update_id: nextUpdateId++,
      edited_message: { ...privateMessage(ALICE, 1, "typo fixed"), edit_date: 1_735_689_700 },
    };
    const callback = {
      update_id: nextUpdateId++,
      callback_query: { id: "4382bfdwdsb323b2d9", from: ALICE, chat_instance: "42", data: "x" },
    };
    expect((await post(plugin.localUrl!, edited, secret)).status).toBe(200);
    expect((await post(plugin.localUrl!, callback, secret)).status).toBe(200);
    expect(received).toEqual([]);
  });

  it("answers 404, 405, 413 and 400 to other paths, methods, big bodies and bodies that are no Update", async () => {
    const { plugin, received } = await started(webhook({ maxBodyBytes: 512 }));
    const url = plugin.localUrl!;
    const secret = { [SECRET_TOKEN_HEADER]: WEBHOOK_SECRET };
    expect((await post(url.replace("/telegram", "/other"), update(1, "x"), secret)).status).toBe(
      404,
    );
    expect((await post(url, "", secret, "GET")).status).toBe(405);
    expect((await post(url, update(1, "x".repeat(600)), secret)).status).toBe(413);
    expect((await post(url, "{not json", secret)).status).toBe(400);
    expect((await post(url, { message: { text: "no update_id" } }, secret)).status).toBe(400);
    expect(received).toEqual([]);
  });

  it("stops listening on stop", async () => {
    const { plugin } = await started(webhook());
    const url = plugin.localUrl!;
    await plugin.stop();
    expect(plugin.localUrl).toBeUndefined();
    await expect(post(url, update(1, "anyone?"))).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe("registration", () => {
  it("sets the webhook with its secret token and the update kinds it handles", async () => {
    const { api } = await started(webhook({ maxConnections: 10 }));
    expect(api.calls.find((c) => c.method === "setWebhook")!.params).toEqual({
      url: "https://bot.example.com/telegram",
      secret_token: WEBHOOK_SECRET,
      allowed_updates: ["message", "channel_post"],
      max_connections: 10,
    });
    expect(api.webhook).toEqual({
      url: "https://bot.example.com/telegram",
      secretToken: WEBHOOK_SECRET,
    });
  });

  it("leaves the registration alone without a url (one registration for several replicas)", async () => {
    const { api } = await started(webhook({ url: undefined }));
    expect(api.calls.map((c) => c.method)).toEqual(["getMe"]);
  });

  it("fails start, not retryable, when Telegram refuses the webhook URL, and leaves nothing listening", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    api.script("setWebhook", {
      errorCode: 400,
      description: "Bad Request: bad webhook: Failed to resolve host: Name or service not known",
    });
    const plugin = webhook()();
    const error = await plugin.start(acceptingContext("telegram")).catch((e: unknown) => e);
    expect(TelegramApiError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ method: "setWebhook", errorCode: 400, isRetryable: false });
    expect(plugin.localUrl).toBeUndefined();
  });
});

describe("stop() while starting", () => {
  it("stop() landing once getMe has answered, as the endpoint starts listening: start rejects with AbortedError and nothing stays listening", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const port = await freePort();
    let stopping: Promise<void> | undefined;
    const plugin = createTelegramChannel({
      token: TOKEN,
      mode: "webhook",
      webhook: { secretToken: WEBHOOK_SECRET, port },
      // The host stops the channel the moment getMe has answered (before the endpoint listens).
      fetch: async (input, init) => {
        const response = await globalThis.fetch(input, init);
        if (!String(input).endsWith("/getMe")) return response;
        const body = await response.text();
        stopping = plugin.stop();
        return new Response(body, { status: response.status, headers: response.headers });
      },
    });
    cleanups.push(() => plugin.stop());
    const starting = followStart(plugin.start(acceptingContext("telegram")));
    const outcome = await starting.seenBy(starting.settled);
    await stopping;
    expect(AbortedError.isInstance(outcome)).toBe(true);
    expect(plugin.localUrl).toBeUndefined();
    expect(await canListen(port)).toBe(true);
  });

  it("stop() (and a second stop()) landing as the endpoint starts listening resolves only once the start ended and closed it", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const port = await freePort();
    let starting: ReturnType<typeof followStart> | undefined;
    let stops: Array<Promise<unknown>> = [];
    const plugin = createTelegramChannel({
      token: TOKEN,
      mode: "webhook",
      webhook: { secretToken: WEBHOOK_SECRET, port },
      // The host stops the channel twice the moment getMe has answered (before the endpoint
      // listens); each stop notes how the start had ended by the time it resolved.
      fetch: async (input, init) => {
        const response = await globalThis.fetch(input, init);
        if (!String(input).endsWith("/getMe")) return response;
        const body = await response.text();
        stops = [plugin.stop(), plugin.stop()].map(starting!.seenBy);
        return new Response(body, { status: response.status, headers: response.headers });
      },
    });
    cleanups.push(() => plugin.stop());
    starting = followStart(plugin.start(acceptingContext("telegram")));
    await starting.settled;
    expect(stops).toHaveLength(2);
    const [first, second] = await Promise.all(stops);
    expect(AbortedError.isInstance(first)).toBe(true);
    expect(AbortedError.isInstance(second)).toBe(true);
    expect(await canListen(port)).toBe(true);
  });
});

describe("through a ChannelManager", () => {
  it("answers an update Telegram delivered twice (same update_id) once", async () => {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const plugin = webhook()();
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: ["echo/any"] }),
      agents: [{ id: "main", model: "echo/any" }],
    });
    await runtime.start();
    const manager = new ChannelManager({ runtime, channels: [{ plugin, dmPolicy: "open" }] });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
    });
    const twice = update(1, "only one answer please");
    expect(await api.deliverWebhook(plugin.localUrl!, twice)).toBe(200);
    expect(await api.deliverWebhook(plugin.localUrl!, twice)).toBe(200);
    expect(await api.deliverWebhook(plugin.localUrl!, update(2, "next"))).toBe(200);
    const replies = () => api.actions.flatMap((a) => (a.kind === "text" ? [a.text ?? ""] : []));
    await until("the later reply", () => replies().some((t) => t.includes("next")));
    expect(replies().filter((t) => t.includes("only one answer please"))).toHaveLength(1);
  });
});
