/**
 * The other side of the Slack channel, for tests and the channel conformance suite: a fake
 * workspace (the Web API, by msw) plus either a fake Socket Mode endpoint (a `ws` server on
 * 127.0.0.1) or an Events API sender that POSTs signed requests to the channel's HTTP
 * endpoint. Events are built the way Slack documents them
 * (https://docs.slack.dev/reference/events/message, .../app_mention, the `event_callback`
 * wrapper of https://docs.slack.dev/apis/events-api/).
 */
import http from "node:http";
import type {
  ChannelPlatformDriver,
  PlatformInbound,
  PlatformOutbound,
} from "@beamclaw/core/testing";
import {
  escapeSlackText,
  type SlackChannel,
  signSlackRequest,
  unescapeSlackText,
} from "../../src/slack/index.js";
import {
  createFakeSlackWorkspace,
  FAKE_APP_ID,
  FAKE_BOT,
  type FakeSlackWorkspace,
} from "./fake-slack-api.js";
import { type EventCallback, FakeSocketModeServer } from "./fake-socket-mode-server.js";

export const SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5";

let eventCounter = 0;

/** Slack's `event_callback` wrapper around an event. */
export function eventCallback(event: Record<string, unknown>, eventId?: string): EventCallback {
  return {
    token: "XXYYZZ",
    team_id: FAKE_BOT.teamId,
    api_app_id: FAKE_APP_ID,
    event,
    type: "event_callback",
    event_id: eventId ?? `Ev0${(++eventCounter).toString(36).toUpperCase().padStart(8, "0")}`,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [
      {
        enterprise_id: null,
        team_id: FAKE_BOT.teamId,
        user_id: FAKE_BOT.userId,
        is_bot: true,
        is_enterprise_install: false,
      },
    ],
    is_ext_shared_channel: false,
    event_context: "4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMEJFQU1URUFNIn0",
  };
}

/**
 * A user's `message` event for a conformance-suite message: mentions become `<@id>` markup,
 * a reply becomes a reply in the replied-to message's thread.
 */
export function messageEvent(message: PlatformInbound, ts: string): Record<string, unknown> {
  const mentions = [
    ...(message.mentionsBot ? [FAKE_BOT.userId] : []),
    ...(message.mentions ?? []),
  ].map((id) => `<@${id}>`);
  const text = escapeSlackText(message.text);
  const event: Record<string, unknown> = {
    client_msg_id: message.messageId,
    type: "message",
    text: mentions.length === 0 ? text : `${mentions.join(" ")} ${text}`,
    user: message.peer.id,
    ts,
    team: FAKE_BOT.teamId,
    channel: message.chatId,
    event_ts: ts,
    channel_type: message.chatType === "direct" ? "im" : "channel",
  };
  const threadTs = message.threadId ?? message.replyTo?.messageId;
  if (threadTs !== undefined) {
    event.thread_ts = threadTs;
    if (message.replyTo?.peerId !== undefined) event.parent_user_id = message.replyTo.peerId;
  }
  return event;
}

/** What the fake workspace saw the bot post and edit, as the conformance suite reads it. */
function outboundOf(workspace: FakeSlackWorkspace): PlatformOutbound[] {
  const out: PlatformOutbound[] = [];
  for (const posted of workspace.posted) {
    const target = {
      chatId: posted.channel,
      ...(posted.threadTs === undefined ? {} : { threadId: posted.threadTs }),
    };
    const messageId = `${posted.channel}:${posted.ts}`;
    out.push({ kind: "text", target, text: unescapeSlackText(posted.text), messageId });
    for (const edit of posted.edits) {
      out.push({ kind: "edit", target, messageId, text: unescapeSlackText(edit) });
    }
  }
  return out;
}

/** A fake Slack for one test. */
export interface SlackPlatform extends ChannelPlatformDriver {
  readonly workspace: FakeSlackWorkspace;
  /** The event (wrapped) that `inject` would deliver for a message. */
  eventFor(message: PlatformInbound): EventCallback;
}

abstract class BasePlatform {
  readonly workspace = createFakeSlackWorkspace();
  /** Conformance message id → its event, so that injecting a message again redelivers it. */
  readonly #events = new Map<string, EventCallback>();

  /** The suite's URL of each file shared for an attachment with `data`, by Slack file id. */
  readonly #files = new Map<string, string>();

  eventFor(message: PlatformInbound): EventCallback {
    const known = this.#events.get(message.messageId);
    if (known !== undefined) return known;
    if (message.peer.name !== undefined)
      this.workspace.users.set(message.peer.id, message.peer.name);
    const event = messageEvent(message, this.workspace.nextTs());
    // Attachments with content are shared in the workspace: a `file_share` message.
    const files = (message.attachments ?? []).flatMap((a) => {
      if (a.data === undefined) return [];
      const file = this.workspace.addFile({
        name: a.name ?? "file",
        mimetype: a.mediaType ?? "application/octet-stream",
        bytes: Buffer.from(a.data, "base64"),
      });
      if (a.url !== undefined) this.#files.set(String(file.id), a.url);
      return [file];
    });
    if (files.length > 0) Object.assign(event, { subtype: "file_share", files, upload: false });
    const payload = eventCallback(event);
    this.#events.set(message.messageId, payload);
    return payload;
  }

  /** The suite's URLs of the shared files the channel downloaded, one per request. */
  downloads(): string[] {
    return this.workspace.fileRequests.flatMap((r) => this.#files.get(r.fileId) ?? []);
  }

  outbound(): PlatformOutbound[] {
    return outboundOf(this.workspace);
  }
}

/** Slack with Socket Mode: the Web API plus a fake Socket Mode endpoint. */
export class SlackSocketModePlatform extends BasePlatform implements SlackPlatform {
  readonly server: FakeSocketModeServer;

  private constructor(server: FakeSocketModeServer) {
    super();
    this.server = server;
    this.workspace.socketUrl = () => server.url();
  }

  static async start(): Promise<SlackSocketModePlatform> {
    return new SlackSocketModePlatform(await FakeSocketModeServer.start());
  }

  /** Options for `createSlackChannel` pointing at this fake. */
  channelOptions() {
    return {
      botToken: this.workspace.botToken,
      appToken: this.workspace.appToken,
      slackApiUrl: this.workspace.apiUrl,
    };
  }

  async inject(message: PlatformInbound): Promise<EventCallback> {
    const payload = this.eventFor(message);
    if (!this.server.connected) await this.server.waitForConnection();
    this.server.deliver(payload);
    return payload;
  }

  async disconnect(): Promise<void> {
    this.server.drop();
  }

  async close(): Promise<void> {
    this.workspace.close();
    await this.server.close();
  }
}

/** The answer of the channel's Events API endpoint. */
export interface EventsApiAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** Slack with the Events API over HTTP: the Web API plus signed POSTs to the channel. */
export class SlackHttpPlatform extends BasePlatform implements SlackPlatform {
  #plugin: SlackChannel | undefined;

  /** Options for `createSlackChannel` pointing at this fake. */
  channelOptions() {
    return {
      botToken: this.workspace.botToken,
      signingSecret: SIGNING_SECRET,
      slackApiUrl: this.workspace.apiUrl,
      port: 0,
    };
  }

  /** Tells the platform which channel to POST to. */
  attach<P extends SlackChannel>(plugin: P): P {
    this.#plugin = plugin;
    return plugin;
  }

  /** POSTs a raw request to the channel's endpoint. */
  post(
    body: string,
    headers: Record<string, string> = {},
    options: { method?: string; path?: string } = {},
  ): Promise<EventsApiAnswer> {
    const url = this.#plugin?.url;
    if (url === undefined) return Promise.reject(new Error("the channel is not listening"));
    const target = new URL(url);
    if (options.path !== undefined) target.pathname = options.path;
    return new Promise((resolve, reject) => {
      const req = http.request(
        target,
        {
          method: options.method ?? "POST",
          agent: false,
          headers: { "content-type": "application/json", ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            let parsed: Record<string, unknown> = {};
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<
                string,
                unknown
              >;
            } catch {
              // not JSON
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  /** POSTs a payload as Slack does: signed now, with the retry headers of a redelivery. */
  send(payload: Record<string, unknown>, retryNum?: number): Promise<EventsApiAnswer> {
    const body = JSON.stringify(payload);
    const timestamp = Math.floor(Date.now() / 1000);
    return this.post(body, {
      "x-slack-request-timestamp": String(timestamp),
      "x-slack-signature": signSlackRequest(SIGNING_SECRET, timestamp, body),
      ...(retryNum === undefined
        ? {}
        : { "x-slack-retry-num": String(retryNum), "x-slack-retry-reason": "http_timeout" }),
    });
  }

  readonly #deliveries = new Map<string, number>();

  async inject(message: PlatformInbound): Promise<EventsApiAnswer> {
    const payload = this.eventFor(message);
    const sent = this.#deliveries.get(payload.event_id) ?? 0;
    this.#deliveries.set(payload.event_id, sent + 1);
    const answer = await this.send(payload, sent === 0 ? undefined : sent);
    if (answer.status !== 200) {
      throw new Error(
        `the Events API endpoint answered ${answer.status}: ${JSON.stringify(answer.body)}`,
      );
    }
    return answer;
  }

  async close(): Promise<void> {
    this.workspace.close();
  }
}
