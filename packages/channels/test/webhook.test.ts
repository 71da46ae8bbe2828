/**
 * The webhook channel against real HTTP servers on 127.0.0.1: the channel conformance suite,
 * then the webhook's own rules — signatures and the replay window, body limits, answers per
 * outcome, signed callbacks and their retries.
 */
import {
  AbortedError,
  AgentRuntime,
  type ChannelContext,
  ChannelManager,
  ChannelSendError,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  NoProcessError,
  type ReceiveResult,
} from "@beamclaw/core";
import { channelConformanceSuite, createEchoProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import {
  createWebhookChannel,
  SIGNATURE_HEADER,
  signWebhookPayload,
  verifyWebhookSignature,
  type WebhookChannel,
  type WebhookChannelOptions,
  WebhookSignatureError,
} from "../src/index.js";
import { acceptingContext, canListen, followStart, freePort } from "./shared-harness.js";
import { SECRET, startWebhookPlatform, toWebhookEvent } from "./webhook-platform.js";

channelConformanceSuite("WebhookChannel", {
  platform: () => startWebhookPlatform(),
  create: (platform) =>
    platform.attach(
      createWebhookChannel({
        secret: SECRET,
        callbackUrl: platform.callbackUrl,
        port: 0,
        maxMessageLength: 500,
        retry: { baseDelayMs: 10, maxDelayMs: 100 },
      }),
    ),
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A started webhook channel with a context that records and answers `accepted`. */
async function started(
  options: Partial<WebhookChannelOptions> = {},
  answer?: (n: number) => ReceiveResult | Error,
) {
  const platform = await startWebhookPlatform();
  cleanups.push(() => platform.close());
  const plugin = platform.attach(
    createWebhookChannel({
      secret: SECRET,
      callbackUrl: platform.callbackUrl,
      port: 0,
      retry: { baseDelayMs: 10, maxDelayMs: 200 },
      ...options,
    }),
  );
  const received: Parameters<ChannelContext["receive"]>[0][] = [];
  const controller = new AbortController();
  await plugin.start({
    channel: plugin.id,
    config: {},
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    signal: controller.signal,
    async receive(input) {
      received.push(input);
      const result = answer?.(received.length) ?? { status: "accepted" };
      if (result instanceof Error) throw result;
      return result;
    },
    disconnected() {},
  });
  cleanups.push(async () => {
    controller.abort();
    await plugin.stop();
  });
  return { platform, plugin, received };
}

const target = { accountId: "default", chatType: "direct" as const, chatId: "dm-1" };
const event = (id = "e1") =>
  JSON.stringify(
    toWebhookEvent({
      chatType: "direct",
      chatId: "dm-1",
      peer: { id: "u1" },
      text: "hi",
      messageId: id,
    }),
  );

describe("inbound requests", () => {
  it("accepts a correctly signed event with 202 once the host took it", async () => {
    const { platform, received } = await started();
    const body = event();
    const answer = await platform.post(body, {
      [SIGNATURE_HEADER]: signWebhookPayload(SECRET, body),
    });
    expect(answer).toEqual({ status: 202, body: { status: "accepted" } });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      messageId: "e1",
      peer: { id: "u1" },
      chatType: "direct",
      text: "hi",
    });
  });

  it("refuses a missing, malformed or wrong signature with 401, and the host never sees the event", async () => {
    const { platform, received } = await started();
    const body = event();
    const cases: Array<[Record<string, string>, string]> = [
      [{}, "missing"],
      [{ [SIGNATURE_HEADER]: "sha256=abc" }, "malformed"],
      [{ [SIGNATURE_HEADER]: signWebhookPayload("another-secret-that-is-long", body) }, "mismatch"],
      [{ [SIGNATURE_HEADER]: signWebhookPayload(SECRET, `${body} `) }, "mismatch"],
    ];
    for (const [headers, problem] of cases) {
      const answer = await platform.post(body, headers);
      expect(answer.status, problem).toBe(401);
      expect(answer.body.problem).toBe(problem);
    }
    expect(received).toEqual([]);
  });

  it("refuses a signature outside the replay window with 401, in the past or the future", async () => {
    const { platform, received } = await started({ toleranceMs: 60_000 });
    const body = event();
    // Well past the window: the header carries whole seconds (up to 1 s is cut off), and the
    // request takes time to arrive, which brings a signature from the future closer.
    for (const skew of [-65_000, 65_000]) {
      const header = signWebhookPayload(SECRET, body, Date.now() + skew);
      const answer = await platform.post(body, { [SIGNATURE_HEADER]: header });
      expect(answer).toMatchObject({ status: 401, body: { problem: "expired" } });
    }
    const fresh = await platform.post(body, {
      [SIGNATURE_HEADER]: signWebhookPayload(SECRET, body, Date.now() - 30_000),
    });
    expect(fresh.status).toBe(202);
    expect(received).toHaveLength(1);
  });

  it("answers 413 to a body over the limit, 404 to another path, 405 to another method", async () => {
    const { platform, received } = await started({ maxBodyBytes: 256 });
    const big = JSON.stringify({ ...JSON.parse(event()), text: "x".repeat(400) });
    expect(
      (await platform.post(big, { [SIGNATURE_HEADER]: signWebhookPayload(SECRET, big) })).status,
    ).toBe(413);
    expect((await platform.post(event(), {}, "POST", "/elsewhere")).status).toBe(404);
    expect((await platform.post("", {}, "GET")).status).toBe(405);
    expect(received).toEqual([]);
  });

  it("answers 400 naming the problem for a signed body that is not JSON or not a message", async () => {
    const { platform } = await started();
    const sign = (body: string) => ({ [SIGNATURE_HEADER]: signWebhookPayload(SECRET, body) });
    const notJson = await platform.post("{oops", sign("{oops"));
    expect(notJson).toMatchObject({ status: 400, body: { error: "the body is not JSON" } });
    const wrongType = JSON.stringify({ type: "reaction" });
    expect((await platform.post(wrongType, sign(wrongType))).body.error).toMatch(
      /unsupported event type/,
    );
  });

  it("answers 400 to a body that is not UTF-8 or holds a lone surrogate, takes one with a BOM", async () => {
    const { platform, received } = await started();
    const post = (body: string | Buffer) =>
      platform.post(body, { [SIGNATURE_HEADER]: signWebhookPayload(SECRET, body) });
    const message = (text: string) =>
      JSON.stringify(
        toWebhookEvent({
          chatType: "direct",
          chatId: "dm-1",
          peer: { id: "u1" },
          text,
          messageId: text,
        }),
      );
    // Latin-1 `café`: not read as "caf\uFFFD".
    expect(await post(Buffer.from(message("café"), "latin1"))).toMatchObject({
      status: 400,
      body: { error: "the body is not UTF-8" },
    });
    // A `\udc00` escape: not handed to the host (it would be in every later model call).
    const lone = message("x").replace('"text":"x"', '"text":"a\\udc00"');
    expect(await post(lone)).toMatchObject({
      status: 400,
      body: { error: "text holds a lone surrogate; send well-formed Unicode" },
    });
    expect(received).toEqual([]);
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(message("héllo 😀"))]);
    expect((await post(bom)).status).toBe(202);
    expect(received.map((r) => r.text)).toEqual(["héllo 😀"]);
  });

  it("answers 400 with the field when the host refuses the message as malformed", async () => {
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: [] }),
      agents: [{ id: "main", model: "echo/m" }],
    });
    await runtime.start();
    const platform = await startWebhookPlatform();
    const plugin = platform.attach(
      createWebhookChannel({ secret: SECRET, callbackUrl: platform.callbackUrl, port: 0 }),
    );
    const manager = new ChannelManager({ runtime, channels: [{ plugin, dmPolicy: "open" }] });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
      await platform.close();
    });
    const body = JSON.stringify({
      type: "message",
      id: "e9",
      chat: { type: "group" },
      from: { id: "u1" },
      text: "hi",
    });
    const answer = await platform.post(body, {
      [SIGNATURE_HEADER]: signWebhookPayload(SECRET, body),
    });
    expect(answer).toMatchObject({ status: 400, body: { field: "chatId" } });
    const duplicate = event("e10");
    const sign = { [SIGNATURE_HEADER]: signWebhookPayload(SECRET, duplicate) };
    expect((await platform.post(duplicate, sign)).status).toBe(202);
    expect(await platform.post(duplicate, sign)).toMatchObject({
      status: 200,
      body: { status: "duplicate" },
    });
  });

  it("answers 503 (retry later) when the host cannot take the message now", async () => {
    const { platform } = await started({}, () => new NoProcessError("stopping"));
    const body = event();
    const answer = await platform.post(body, {
      [SIGNATURE_HEADER]: signWebhookPayload(SECRET, body),
    });
    expect(answer.status).toBe(503);
  });
});

describe("outbound callbacks", () => {
  it("POSTs a signed JSON callback with a delivery id, and returns the id the callback answered", async () => {
    const { platform, plugin } = await started();
    const sent = await plugin.sendText(target, "hello", {
      idempotencyKey: "out-1:0",
      replyToMessageId: "e1",
    });
    expect(sent.messageId).toBe("cb-out-1:0");
    const [callback] = platform.callbacks;
    expect(callback!.headers["x-beamclaw-delivery"]).toBe("out-1:0");
    expect(() =>
      verifyWebhookSignature(SECRET, callback!.body, callback!.headers[SIGNATURE_HEADER]),
    ).not.toThrow();
    expect(callback!.event).toEqual({
      type: "message.text",
      target,
      text: "hello",
      replyToMessageId: "e1",
      deliveryId: "out-1:0",
      channel: "webhook",
    });
  });

  it("retries 5xx, 429 and network failures with backoff under the same delivery id", async () => {
    const { platform, plugin } = await started();
    platform.answerNext({ status: 503 }, { status: 429, headers: { "retry-after": "0" } });
    const sent = await plugin.sendText(target, "eventually", { idempotencyKey: "d-7" });
    expect(sent.messageId).toBe("cb-d-7");
    expect(platform.callbacks.map((c) => c.status)).toEqual([503, 429, 200]);
    expect(new Set(platform.callbacks.map((c) => c.event.deliveryId))).toEqual(new Set(["d-7"]));
  });

  it("retries every 5xx, not only 500, 502, 503 and 504 (a proxy's 522, a 507)", async () => {
    const { platform, plugin } = await started();
    platform.answerNext({ status: 522 }, { status: 507 }, { status: 501 });
    const sent = await plugin.sendText(target, "through the proxy", { idempotencyKey: "d-5xx" });
    expect(sent.messageId).toBe("cb-d-5xx");
    expect(platform.callbacks.map((c) => c.status)).toEqual([522, 507, 501, 200]);
  });

  it("fails at once, not retryable, on a 4xx the callback will not change its mind about", async () => {
    const { platform, plugin } = await started();
    platform.answerNext({ status: 404, body: "no such chat" });
    const error = await plugin.sendText(target, "lost").catch((e: unknown) => e);
    expect(ChannelSendError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ isRetryable: false, statusCode: 404 });
    expect(platform.callbacks).toHaveLength(1);
  });

  it("gives up after maxAttempts with a retryable error the outbox retries later", async () => {
    const { platform, plugin } = await started({
      retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 20 },
    });
    platform.answerNext({ status: 500 }, { status: 500 }, { status: 500 });
    const error = await plugin.sendText(target, "later").catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "CHANNEL_SEND_FAILED",
      isRetryable: true,
      statusCode: 500,
    });
    expect(platform.callbacks).toHaveLength(2);
  });

  it("stop() ends a callback waiting out a Retry-After at once, with AbortedError, and sends nothing more", async () => {
    const { platform, plugin } = await started({
      retry: { maxAttempts: 4, baseDelayMs: 10, maxDelayMs: 5_000 },
    });
    platform.answerNext({ status: 503, headers: { "retry-after": "3" } });
    const sending = plugin.sendText(target, "after the wait", { idempotencyKey: "d-stop" });
    const outcome = sending.then(
      () => "sent",
      (error: unknown) => error,
    );
    while (platform.callbacks.length === 0) await new Promise((r) => setTimeout(r, 5));
    await plugin.stop();
    const error = await outcome;
    expect(AbortedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("stopped");
    expect(platform.callbacks.map((c) => c.status)).toEqual([503]);
  });

  it("reports an unreachable callback as a retryable error", async () => {
    const { plugin } = await started({
      callbackUrl: "http://127.0.0.1:9/unreachable",
      retry: { maxAttempts: 1 },
    });
    await expect(plugin.sendText(target, "nobody home")).rejects.toMatchObject({
      isRetryable: true,
    });
  });
});

describe("configuration and signatures", () => {
  it("refuses short secrets, bad callback URLs and paths with InvalidArgumentError", () => {
    const base = { secret: SECRET, callbackUrl: "http://127.0.0.1:1/cb" };
    expect(() => createWebhookChannel({ ...base, secret: "short" })).toThrow(InvalidArgumentError);
    expect(() => createWebhookChannel({ ...base, callbackUrl: "ftp://x/y" })).toThrow(
      InvalidArgumentError,
    );
    expect(() => createWebhookChannel({ ...base, callbackUrl: "not a url" })).toThrow(
      InvalidArgumentError,
    );
    expect(() => createWebhookChannel({ ...base, path: "webhook" })).toThrow(InvalidArgumentError);
  });

  it("refuses numeric options out of range with InvalidArgumentError naming them", () => {
    const base = { secret: SECRET, callbackUrl: "http://127.0.0.1:1/cb" };
    for (const [extra, name] of [
      [{ retry: { maxAttempts: 0 } }, "retry.maxAttempts"],
      [{ retry: { baseDelayMs: -1 } }, "retry.baseDelayMs"],
      [{ retry: { maxDelayMs: Number.NaN } }, "retry.maxDelayMs"],
      [{ timeoutMs: -5 }, "timeoutMs"],
      [{ timeoutMs: 0 }, "timeoutMs"],
      // Longer than a Node.js timer can wait: it would fire at once.
      [{ timeoutMs: 2 ** 31 }, "timeoutMs"],
      [{ toleranceMs: -1 }, "toleranceMs"],
      [{ maxBodyBytes: 0 }, "maxBodyBytes"],
      [{ port: 70_000 }, "port"],
    ] as const) {
      const error = (() => {
        try {
          createWebhookChannel({ ...base, ...extra } as WebhookChannelOptions);
        } catch (e) {
          return e;
        }
      })();
      expect(InvalidArgumentError.isInstance(error), name).toBe(true);
      expect((error as Error).message, name).toContain(name);
    }
  });

  it("verifies with any of several v1 signatures (secret rotation), and names what is wrong", () => {
    const body = "{}";
    const oldSecret = "the-old-secret-of-many-chars";
    const header = `${signWebhookPayload(oldSecret, body)},v1=${signWebhookPayload(SECRET, body).split("v1=")[1]}`;
    expect(() => verifyWebhookSignature(SECRET, body, header)).not.toThrow();
    const error = (() => {
      try {
        verifyWebhookSignature(SECRET, body, "t=1,v1=00");
      } catch (e) {
        return e;
      }
    })();
    expect(WebhookSignatureError.isInstance(error)).toBe(true);
    expect((error as WebhookSignatureError).problem).toBe("expired");
  });

  it("registers an info gateway method saying where it listens", async () => {
    const { plugin } = await started();
    const info = await (plugin as WebhookChannel).gatewayMethods.info!.handler(undefined, {
      scopes: [],
    });
    expect(info).toMatchObject({ url: plugin.url, listening: true });
  });
});

describe("start and stop overlapping", () => {
  const context = (plugin: WebhookChannel): ChannelContext => acceptingContext(plugin.id);

  async function channel(port = 0) {
    const platform = await startWebhookPlatform();
    cleanups.push(() => platform.close());
    const plugin = createWebhookChannel({
      secret: SECRET,
      callbackUrl: platform.callbackUrl,
      port,
    });
    cleanups.push(() => plugin.stop());
    return plugin;
  }

  it("a second start() while the first is still listening is refused with InvalidArgumentError", async () => {
    const plugin = await channel();
    const starting = plugin.start(context(plugin));
    const refused = await plugin.start(context(plugin)).catch((e: unknown) => e);
    await starting;
    expect(InvalidArgumentError.isInstance(refused)).toBe(true);
    expect((await fetch(plugin.url!, { method: "GET" })).status).toBe(405);
  });

  it("stop() while start() is listening ends the start with AbortedError and leaves nothing listening; a later start listens", async () => {
    const plugin = await channel();
    const starting = plugin.start(context(plugin)).catch((e: unknown) => e);
    await plugin.stop();
    expect(AbortedError.isInstance(await starting)).toBe(true);
    expect(plugin.url).toBeUndefined();
    expect(await plugin.gatewayMethods.info!.handler(undefined, { scopes: [] })).toMatchObject({
      listening: false,
    });
    await plugin.start(context(plugin));
    expect((await fetch(plugin.url!, { method: "GET" })).status).toBe(405);
  });

  it("a second stop() while the first closes the server of the start it ended resolves only once that start ended and nothing listens", async () => {
    const port = await freePort();
    const plugin = await channel(port);
    const starting = followStart(plugin.start(context(plugin)));
    // Each stop notes how the start had ended by the time it resolved.
    const [first, second] = await Promise.all([plugin.stop(), plugin.stop()].map(starting.seenBy));
    await starting.settled;
    expect(AbortedError.isInstance(first)).toBe(true);
    expect(AbortedError.isInstance(second)).toBe(true);
    expect(await canListen(port)).toBe(true);
    // Stopped: a later start listens.
    await plugin.start(context(plugin));
    expect((await fetch(plugin.url!, { method: "GET" })).status).toBe(405);
  });
});
