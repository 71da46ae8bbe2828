/**
 * The other side of the webhook channel, for tests: a real HTTP server on 127.0.0.1 that
 * receives the signed callbacks (and checks their signatures), and a client that POSTs
 * signed inbound events to the plugin. It is the channel conformance suite's driver.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type {
  ChannelPlatformDriver,
  PlatformInbound,
  PlatformOutbound,
} from "@beamclaw/core/testing";
import {
  SIGNATURE_HEADER,
  signWebhookPayload,
  verifyWebhookSignature,
  type WebhookChannel,
  type WebhookInboundEvent,
  type WebhookOutboundEvent,
} from "../src/index.js";

export const SECRET = "a-test-secret-of-32-characters!!";

/** One callback as received. */
export interface ReceivedCallback {
  headers: http.IncomingHttpHeaders;
  body: string;
  event: WebhookOutboundEvent;
  /** The status the platform answered. */
  status: number;
}

/** What a test can make the callback endpoint answer. */
export type CallbackAnswer = { status: number; headers?: Record<string, string>; body?: string };

export interface WebhookPlatform extends ChannelPlatformDriver {
  /** The callback URL to configure the plugin with. */
  readonly callbackUrl: string;
  /** Every callback request, valid or not, in order. */
  readonly callbacks: ReceivedCallback[];
  /** Tells the driver which plugin to POST inbound events to. */
  attach<P extends WebhookChannel>(plugin: P): P;
  /** Answers the next callbacks with these (then 200 again). */
  answerNext(...answers: CallbackAnswer[]): void;
  /** POSTs a raw inbound request to the plugin; resolves with the status and JSON body. */
  post(
    body: string | Buffer,
    headers?: Record<string, string>,
    method?: string,
    path?: string,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  inject(message: PlatformInbound): Promise<{ status: number; body: Record<string, unknown> }>;
}

/** Turns a conformance-suite message into the webhook's inbound JSON. */
export function toWebhookEvent(message: PlatformInbound): WebhookInboundEvent {
  const event: WebhookInboundEvent = {
    type: "message",
    id: message.messageId,
    chat: {
      type: message.chatType,
      id: message.chatId,
      ...(message.threadId === undefined ? {} : { threadId: message.threadId }),
    },
    from:
      message.peer.name === undefined
        ? { id: message.peer.id }
        : { id: message.peer.id, name: message.peer.name },
    text: message.text,
  };
  if (message.accountId !== undefined) event.accountId = message.accountId;
  if (message.mentionsBot !== undefined || message.mentions !== undefined) {
    event.mentions = {
      ...(message.mentionsBot === undefined ? {} : { bot: message.mentionsBot }),
      ...(message.mentions === undefined ? {} : { ids: message.mentions }),
    };
  }
  if (message.replyTo !== undefined) {
    event.replyTo = {
      id: message.replyTo.messageId,
      ...(message.replyTo.text === undefined ? {} : { text: message.replyTo.text }),
      ...(message.replyTo.peerId === undefined ? {} : { from: message.replyTo.peerId }),
    };
  }
  if (message.attachments !== undefined) event.attachments = message.attachments;
  return event;
}

function toOutbound(event: WebhookOutboundEvent): PlatformOutbound | undefined {
  const target = {
    chatId: event.target.chatId,
    accountId: event.target.accountId,
    chatType: event.target.chatType,
    ...(event.target.threadId === undefined ? {} : { threadId: event.target.threadId }),
  };
  switch (event.type) {
    case "message.text":
      return {
        kind: "text",
        target,
        text: event.text,
        messageId: `cb-${event.deliveryId}`,
        ...(event.replyToMessageId === undefined
          ? {}
          : { replyToMessageId: event.replyToMessageId }),
      };
    case "message.media":
      return { kind: "media", target, media: event.media, messageId: `cb-${event.deliveryId}` };
    case "message.edit":
      return { kind: "edit", target, messageId: event.messageId, text: event.text };
    case "message.reaction":
      return { kind: "reaction", target, messageId: event.messageId, emoji: event.emoji };
    case "typing":
      return { kind: "typing", target };
    default:
      return undefined;
  }
}

/** Starts the fake platform (its callback server listens on 127.0.0.1, port 0). */
export async function startWebhookPlatform(secret = SECRET): Promise<WebhookPlatform> {
  const callbacks: ReceivedCallback[] = [];
  const outbound: PlatformOutbound[] = [];
  const answers: CallbackAnswer[] = [];
  let plugin: WebhookChannel | undefined;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      let status = 200;
      let event: WebhookOutboundEvent | undefined;
      try {
        verifyWebhookSignature(secret, body, req.headers[SIGNATURE_HEADER]);
        event = JSON.parse(body) as WebhookOutboundEvent;
      } catch {
        status = 401;
      }
      const answer = status === 200 ? answers.shift() : undefined;
      if (answer !== undefined) status = answer.status;
      if (event !== undefined) callbacks.push({ headers: req.headers, body, event, status });
      if (status === 200 && event !== undefined) {
        const seen = toOutbound(event);
        if (seen !== undefined) outbound.push(seen);
      }
      const reply =
        answer?.body ??
        (status === 200 &&
        event !== undefined &&
        (event.type === "message.text" || event.type === "message.media")
          ? JSON.stringify({ messageId: `cb-${event.deliveryId}` })
          : "");
      res.writeHead(status, { "content-type": "application/json", ...answer?.headers });
      res.end(reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const post: WebhookPlatform["post"] = (body, headers = {}, method = "POST", path) => {
    const url = plugin?.url;
    if (url === undefined) return Promise.reject(new Error("the plugin is not listening"));
    const target = new URL(url);
    if (path !== undefined) target.pathname = path;
    return new Promise((resolve, reject) => {
      const req = http.request(
        target,
        { method, agent: false, headers: { "content-type": "application/json", ...headers } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: Record<string, unknown> = {};
            try {
              parsed = JSON.parse(text) as Record<string, unknown>;
            } catch {
              // not JSON
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  };

  return {
    callbackUrl: `http://127.0.0.1:${port}/callbacks`,
    callbacks,
    attach(p) {
      plugin = p;
      return p;
    },
    answerNext(...next) {
      answers.push(...next);
    },
    post,
    async inject(message) {
      const body = JSON.stringify(toWebhookEvent(message));
      const result = await post(body, { [SIGNATURE_HEADER]: signWebhookPayload(secret, body) });
      if (result.status >= 300)
        throw new Error(`the webhook answered ${result.status}: ${JSON.stringify(result.body)}`);
      return result;
    },
    outbound: () => outbound.map((o) => ({ ...o })),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
