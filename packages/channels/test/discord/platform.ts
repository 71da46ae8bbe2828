/**
 * A fake Discord for tests: the gateway (a real WebSocket server on 127.0.0.1, see
 * `fake-gateway.ts`) and the REST API (msw, answering Discord's documented request and
 * response shapes, errors and rate limits included), sharing one state of guilds,
 * channels, DM channels and messages. It is the channel conformance suite's driver.
 *
 * Each platform answers at its own API host (`https://d<n>.discord.test/api`), so the one
 * msw server of a test file serves several platforms.
 */
import type {
  ChannelPlatformDriver,
  PlatformInbound,
  PlatformOutbound,
  PlatformTargetRef,
} from "@beamclaw/core/testing";
import { HttpResponse, http } from "msw";
import { type SetupServerApi, setupServer } from "msw/node";
import { FakeGateway } from "./fake-gateway.js";

export const TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAx.fake.bot-token-for-tests";
export const BOT = { id: "100000000000000001", username: "beambot" };
export const GUILD_ID = "guild-1";
/** The role Discord manages for the bot in the guild (an @-mention of it addresses the bot). */
export const BOT_ROLE_ID = "role-beambot";

/** Discord channel types used here. */
const TEXT = 0;
const DM = 1;
const PUBLIC_THREAD = 11;

export interface FakeChannel {
  id: string;
  type: number;
  guild_id?: string;
  parent_id?: string;
  name?: string;
  /** DM channels: the other user. */
  recipient?: string;
}

export interface FakeMessage {
  id: string;
  channel_id: string;
  content: string;
  nonce?: string | number;
  embeds: unknown[];
  attachments: Array<Record<string, unknown>>;
  message_reference?: { message_id: string };
}

/** One REST request as the fake received it. */
export interface RestRequest {
  method: string;
  path: string;
  headers: Headers;
  /** JSON body (or `payload_json` of a multipart one). */
  body: Record<string, unknown> | undefined;
  /** Files of a multipart body: field name -> { name, type, size, data base64 }. */
  files: Array<{ field: string; name: string; type: string; data: string }>;
  /** The query string. */
  query: URLSearchParams;
  at: number;
}

/** A scripted answer for the next matching REST request. */
export type ScriptedAnswer =
  | {
      kind: "rate-limit";
      /** Seconds, as in Discord's body (`retry_after`). */
      retryAfter: number;
      global?: boolean;
      scope?: "user" | "shared" | "global";
    }
  | { kind: "error"; status: number; body: Record<string, unknown> }
  /** Does the work, then answers with `status` (a response lost on the way back). */
  | { kind: "lost-response"; status: number }
  /** Answered as usual (lets one request through before a scripted failure). */
  | { kind: "pass" };

interface Script {
  match: (method: string, path: string) => boolean;
  answer: ScriptedAnswer;
}

export interface DiscordPlatform extends ChannelPlatformDriver {
  /** The `rest.api` base URL of this platform. */
  readonly api: string;
  readonly gateway: FakeGateway;
  readonly channels: Map<string, FakeChannel>;
  readonly messages: Map<string, FakeMessage>;
  /** Every REST request, in order. */
  readonly requests: RestRequest[];
  /** Answers the next request matching `method` and `path` (a RegExp on the path after /api/v10). */
  answerNext(method: string, path: RegExp, ...answers: ScriptedAnswer[]): void;
  /** Delivers an event as `inject` does, with options: `announce: false` sends no THREAD_CREATE/CHANNEL_CREATE first. */
  injectWith(
    message: PlatformInbound,
    options: { announce?: boolean; raw?: Record<string, unknown> },
  ): Promise<Record<string, unknown>>;
  /** Removes a channel: REST calls on it answer 404 Unknown Channel. */
  deleteChannel(id: string): void;
  /**
   * Forgets every `nonce` seen: Discord deduplicates an `enforce_nonce` message only within
   * a few minutes, so a retry after a long wait (or a restart) posts again.
   */
  expireNonces(): void;
  /**
   * A user posts a message (its `messageId` a snowflake, see `snowflake()`): it joins the
   * channel's history (`GET /channels/{id}/messages`) and is delivered to the bot when one is
   * connected — else it is only in the history, as for a bot whose session was lost.
   */
  post(message: PlatformInbound): Record<string, unknown>;
  /** A new snowflake, later than every one before. */
  snowflake(): string;
  inject(message: PlatformInbound): Promise<Record<string, unknown>>;
}

const platforms = new Map<string, (request: Request) => Promise<Response>>();
let server: SetupServerApi | undefined;
let counter = 0;

/** What the fake CDN answers for one file (see {@link serveCdnFile}). */
export type CdnAnswer =
  | {
      /** The file's bytes (a string is UTF-8). */
      body: Uint8Array | string;
      /** `Content-Type`. Default `application/octet-stream`. */
      contentType?: string;
      /** Sent as a stream, without `Content-Length` (its size known once read). */
      chunked?: boolean;
    }
  /** An error status, as Discord's CDN answers for an expired or unknown link (404, 403). */
  | { status: number }
  /** Answers as the function says (e.g. not before the test lets it). */
  | ((request: Request) => Response | Promise<Response>);

/** One request the fake CDN received. */
export interface CdnRequest {
  url: string;
  headers: Headers;
}

/** Files of the fake CDN, by URL without its query (the signature). */
const cdnFiles = new Map<string, CdnAnswer>();
/** Every request to the fake CDN (and to the suite's `files.example`), in order. */
export const cdnRequests: CdnRequest[] = [];

/**
 * Serves a file at Discord's CDN (`https://cdn.discordapp.com/attachments/<channel>/<id>/
 * <name>`) and returns its URL, signed and expiring as Discord's are (`?ex=&is=&hm=`). Any
 * other CDN URL answers 404, as Discord's does.
 */
export function serveCdnFile(name: string, answer: CdnAnswer): string {
  const path = `https://cdn.discordapp.com/attachments/1300000000000000001/${nextId()}/${name}`;
  cdnFiles.set(path, answer);
  const expires = Math.floor(Date.now() / 1000) + 86_400;
  return `${path}?ex=${expires.toString(16)}&is=${(expires - 86_400).toString(16)}&hm=${"ab12".repeat(16)}&`;
}

/** Forgets the CDN's files and requests (call from `afterEach`). */
export function clearCdn(): void {
  cdnFiles.clear();
  cdnRequests.length = 0;
}

async function answerCdn(request: Request): Promise<Response> {
  cdnRequests.push({ url: request.url, headers: request.headers });
  const url = new URL(request.url);
  const answer = cdnFiles.get(`${url.origin}${url.pathname}`);
  if (answer === undefined) {
    return new HttpResponse("This content is no longer available.", { status: 404 });
  }
  if (typeof answer === "function") return answer(request);
  if ("status" in answer) return new HttpResponse(null, { status: answer.status });
  const bytes = typeof answer.body === "string" ? Buffer.from(answer.body) : answer.body;
  const headers = { "Content-Type": answer.contentType ?? "application/octet-stream" };
  if (answer.chunked === true) {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < bytes.length; at += 1024) {
          controller.enqueue(bytes.slice(at, at + 1024));
        }
        controller.close();
      },
    });
    return new HttpResponse(stream, { headers });
  }
  return new HttpResponse(bytes, {
    headers: { ...headers, "Content-Length": String(bytes.length) },
  });
}

/** Starts msw for this test file (once). */
function msw(): SetupServerApi {
  if (server === undefined) {
    const started = setupServer(
      http.all(/^https:\/\/d\d+\.discord\.test\/api\//, async ({ request }) => {
        const handle = platforms.get(new URL(request.url).host);
        if (handle === undefined) {
          return HttpResponse.json({ message: "404: Not Found", code: 0 }, { status: 404 });
        }
        return handle(request);
      }),
      // Discord's CDN; and the conformance suite's file URLs, never fetched from the network.
      http.get(
        /^https:\/\/(cdn\.discordapp\.com|media\.discordapp\.net|files\.example)\//,
        ({ request }) => answerCdn(request),
      ),
    );
    started.listen({ onUnhandledRequest: "bypass" });
    server = started as SetupServerApi;
  }
  return server;
}

/**
 * Loads discord.js's packages (the channel loads them on its first start). Node creates the
 * process's stdout/stderr handles the first time a module touches them (`node:assert`,
 * `node:process`), once per process; a test file that counts open handles loads them first.
 */
export async function preloadDiscordLibraries(): Promise<void> {
  await Promise.all([
    import("@discordjs/rest"),
    import("@discordjs/ws"),
    import("@discordjs/core/http-only"),
  ]);
}

/** Stops msw; call from `afterAll` of a test file that started platforms. */
export function closeDiscordMsw(): void {
  server?.close();
  server = undefined;
}

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  HttpResponse.json(body as Record<string, unknown>, { status, headers });

let snowflake = 1_300_000_000_000_000_000n;
function nextId(): string {
  snowflake += 1n;
  return snowflake.toString();
}

function user(id: string, name?: string) {
  return {
    id,
    username: name?.toLowerCase().replace(/\s+/g, "") ?? id,
    discriminator: "0",
    global_name: name ?? null,
    avatar: null,
  };
}

/** Starts a fake Discord (gateway and REST). */
export async function startDiscordPlatform(
  options: {
    privilegedIntents?: boolean;
    heartbeatIntervalMs?: number;
    /** Threads that exist from the start: in a guild channel, or (for the suite) in a DM. */
    threads?: Array<{ id: string; channel?: string; dmWith?: string }>;
  } = {},
): Promise<DiscordPlatform> {
  msw();
  const host = `d${++counter}.discord.test`;
  const api = `https://${host}/api`;
  const channels = new Map<string, FakeChannel>();
  const deleted = new Set<string>();
  const messages = new Map<string, FakeMessage>();
  const nonces = new Map<string, string>();
  const requests: RestRequest[] = [];
  const outbound: PlatformOutbound[] = [];
  const scripts: Script[] = [];
  /** Users' messages per channel id, as MESSAGE_CREATE carried them. */
  const history = new Map<string, Array<Record<string, unknown>>>();
  /** The files (attachments with `data`) this platform put on the CDN: their URLs, by URL without query. */
  const served = new Map<string, string>();

  const guild = () => ({
    id: GUILD_ID,
    name: "Test Guild",
    unavailable: false,
    member_count: 3,
    roles: [
      { id: GUILD_ID, name: "@everyone", permissions: "0", position: 0, managed: false },
      {
        id: BOT_ROLE_ID,
        name: "beambot",
        permissions: "0",
        position: 1,
        managed: true,
        tags: { bot_id: BOT.id },
      },
    ],
    channels: [...channels.values()]
      .filter((c) => c.guild_id === GUILD_ID && c.type === TEXT)
      .map(toApiChannel),
    threads: [...channels.values()]
      .filter((c) => c.guild_id === GUILD_ID && c.type === PUBLIC_THREAD)
      .map(toApiChannel),
  });

  const gateway = await FakeGateway.start({
    token: TOKEN,
    user: BOT,
    guilds: () => [guild()],
    ...(options.heartbeatIntervalMs === undefined
      ? {}
      : { heartbeatIntervalMs: options.heartbeatIntervalMs }),
    ...(options.privilegedIntents === undefined
      ? {}
      : { privilegedIntents: options.privilegedIntents }),
  });

  function toApiChannel(channel: FakeChannel): Record<string, unknown> {
    return {
      id: channel.id,
      type: channel.type,
      ...(channel.guild_id === undefined ? {} : { guild_id: channel.guild_id }),
      ...(channel.parent_id === undefined ? {} : { parent_id: channel.parent_id }),
      ...(channel.name === undefined ? {} : { name: channel.name }),
      ...(channel.recipient === undefined ? {} : { recipients: [user(channel.recipient)] }),
      ...(channel.type === PUBLIC_THREAD
        ? { thread_metadata: { archived: false, auto_archive_duration: 1440, locked: false } }
        : {}),
    };
  }

  /** A guild text channel, made (and announced) on first use. */
  function guildChannel(id: string, announce: boolean): FakeChannel {
    let channel = channels.get(id);
    if (channel === undefined) {
      channel = { id, type: TEXT, guild_id: GUILD_ID, name: `chan-${id}` };
      channels.set(id, channel);
      if (announce) gateway.dispatch("CHANNEL_CREATE", toApiChannel(channel));
    }
    return channel;
  }

  function dmChannel(userId: string): FakeChannel {
    for (const channel of channels.values()) {
      if (channel.type === DM && channel.recipient === userId) return channel;
    }
    const channel: FakeChannel = { id: `dm-${userId}`, type: DM, recipient: userId };
    channels.set(channel.id, channel);
    return channel;
  }

  function thread(id: string, parent: FakeChannel, announce: boolean): FakeChannel {
    let channel = channels.get(id);
    if (channel === undefined) {
      channel = {
        id,
        type: PUBLIC_THREAD,
        parent_id: parent.id,
        name: `thread-${id}`,
        ...(parent.guild_id === undefined ? {} : { guild_id: parent.guild_id }),
      };
      channels.set(id, channel);
      if (announce) {
        gateway.dispatch("THREAD_CREATE", { ...toApiChannel(channel), newly_created: true });
      }
    }
    return channel;
  }

  for (const seed of options.threads ?? []) {
    const parent =
      seed.dmWith !== undefined
        ? dmChannel(seed.dmWith)
        : guildChannel(seed.channel ?? "general", false);
    thread(seed.id, parent, false);
  }

  /** Where a message in `channelId` lands, in the suite's terms. */
  function targetOf(channelId: string): PlatformTargetRef {
    const channel = channels.get(channelId);
    if (channel === undefined) return { chatId: channelId };
    if (channel.type === PUBLIC_THREAD && channel.parent_id !== undefined) {
      return { ...targetOf(channel.parent_id), threadId: channel.id };
    }
    if (channel.type === DM && channel.recipient !== undefined) {
      return { chatId: channel.recipient, chatType: "direct" };
    }
    return { chatId: channel.id, chatType: "group" };
  }

  function toMessageCreate(message: PlatformInbound, announce: boolean): Record<string, unknown> {
    let channel: FakeChannel;
    let guildId: string | undefined;
    if (message.chatType === "direct") {
      channel = dmChannel(message.peer.id);
    } else {
      channel = guildChannel(message.chatId, announce);
      guildId = GUILD_ID;
    }
    // A thread in a DM does not exist on Discord; the suite's thread case on a channel whose
    // first chat type is direct is answered with a thread whose parent is the DM channel.
    if (message.threadId !== undefined) channel = thread(message.threadId, channel, announce);
    const mentions = [
      ...(message.mentionsBot === true
        ? [{ ...user(BOT.id, undefined), username: BOT.username, bot: true }]
        : []),
      ...(message.mentions ?? []).map((id) => user(id)),
    ];
    const event: Record<string, unknown> = {
      id: message.messageId,
      type: message.replyTo === undefined ? 0 : 19,
      channel_id: channel.id,
      channel_type: channel.type,
      author: user(message.peer.id, message.peer.name),
      content: message.text,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions,
      mention_roles: [],
      attachments: (message.attachments ?? []).map((a) => {
        if (a.data !== undefined && a.url !== undefined) {
          // The file's content, on the CDN at the attachment's own URL.
          const at = new URL(a.url);
          cdnFiles.set(`${at.origin}${at.pathname}`, {
            body: Buffer.from(a.data, "base64"),
            contentType: a.mediaType ?? "application/octet-stream",
          });
          served.set(`${at.origin}${at.pathname}`, a.url);
        }
        return {
          id: nextId(),
          filename: a.name ?? "file",
          size: a.size ?? 0,
          url: a.url,
          proxy_url: a.url,
          ...(a.mediaType === undefined ? {} : { content_type: a.mediaType }),
        };
      }),
      embeds: [],
      pinned: false,
      flags: 0,
    };
    if (guildId !== undefined) {
      event.guild_id = guildId;
      event.member = {
        roles: [],
        joined_at: "2024-01-01T00:00:00.000Z",
        deaf: false,
        mute: false,
        flags: 0,
      };
    }
    if (message.replyTo !== undefined) {
      event.message_reference = {
        type: 0,
        message_id: message.replyTo.messageId,
        channel_id: channel.id,
        ...(guildId === undefined ? {} : { guild_id: guildId }),
      };
      if (message.replyTo.peerId !== undefined || message.replyTo.text !== undefined) {
        event.referenced_message = {
          id: message.replyTo.messageId,
          type: 0,
          channel_id: channel.id,
          author: user(message.replyTo.peerId ?? "someone"),
          content: message.replyTo.text ?? "",
          timestamp: new Date().toISOString(),
          mentions: [],
          attachments: [],
          embeds: [],
        };
      }
    }
    return event;
  }

  function remember(event: Record<string, unknown>): void {
    const channelId = String(event.channel_id);
    const list = history.get(channelId) ?? [];
    history.set(channelId, list);
    if (!list.some((m) => m.id === event.id)) list.push(event);
  }

  /**
   * `GET /channels/{id}/messages`: `after` (the oldest `limit` after it) or the newest
   * `limit`, listed newest first, without the gateway-only `guild_id` and `member`.
   */
  function listMessages(channelId: string, query: URLSearchParams): Response {
    if (deleted.has(channelId) || !channels.has(channelId)) return unknownChannel();
    const limit = Number(query.get("limit") ?? "50");
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return json({ message: "Invalid Form Body", code: 50035 }, 400);
    }
    const after = query.get("after");
    let list = [...(history.get(channelId) ?? [])].sort((a, b) =>
      BigInt(String(a.id)) < BigInt(String(b.id)) ? -1 : 1,
    );
    if (after !== null) {
      list = list.filter((m) => BigInt(String(m.id)) > BigInt(after)).slice(0, limit);
    } else {
      list = list.slice(-limit);
    }
    return json(list.reverse().map(({ guild_id: _g, member: _m, ...m }) => m));
  }

  async function deliver(
    message: PlatformInbound,
    options: { announce?: boolean; raw?: Record<string, unknown> },
  ): Promise<Record<string, unknown>> {
    const event = { ...toMessageCreate(message, options.announce ?? true), ...options.raw };
    remember(event);
    if (gateway.dispatch("MESSAGE_CREATE", event) === 0) {
      throw new Error("no gateway session to deliver to (the bot is not connected)");
    }
    return event;
  }

  // ------------------------------------------------------------------ REST

  function rateLimited(answer: Extract<ScriptedAnswer, { kind: "rate-limit" }>): Response {
    const global = answer.global === true;
    const scope = answer.scope ?? (global ? "global" : "user");
    // Retry-After is whole seconds; the body and X-RateLimit-Reset-After have decimals.
    const headers: Record<string, string> = {
      "Retry-After": String(Math.ceil(answer.retryAfter)),
      "X-RateLimit-Scope": scope,
    };
    if (global) {
      headers["X-RateLimit-Global"] = "true";
    } else {
      headers["X-RateLimit-Limit"] = "5";
      headers["X-RateLimit-Remaining"] = "0";
      headers["X-RateLimit-Reset"] = (Date.now() / 1000 + answer.retryAfter).toFixed(3);
      headers["X-RateLimit-Reset-After"] = answer.retryAfter.toFixed(3);
      headers["X-RateLimit-Bucket"] = "abcd1234";
    }
    return json(
      {
        message:
          scope === "shared"
            ? "The resource is being rate limited."
            : "You are being rate limited.",
        retry_after: answer.retryAfter,
        global,
        code: 0,
      },
      429,
      headers,
    );
  }

  const unknownChannel = () => json({ message: "Unknown Channel", code: 10003 }, 404);
  const okHeaders = {
    "X-RateLimit-Limit": "5",
    "X-RateLimit-Remaining": "4",
    "X-RateLimit-Reset-After": "5.000",
    "X-RateLimit-Bucket": "abcd1234",
  };

  async function readBody(request: Request): Promise<Pick<RestRequest, "body" | "files">> {
    const type = request.headers.get("content-type") ?? "";
    if (type.startsWith("multipart/form-data")) {
      const form = await request.formData();
      const files: RestRequest["files"] = [];
      let body: Record<string, unknown> | undefined;
      for (const [field, value] of form.entries()) {
        if (typeof value === "string") {
          if (field === "payload_json") body = JSON.parse(value) as Record<string, unknown>;
        } else {
          files.push({
            field,
            name: value.name,
            type: value.type,
            data: Buffer.from(await value.arrayBuffer()).toString("base64"),
          });
        }
      }
      return { body, files };
    }
    const text = await request.text();
    return {
      body: text.length === 0 ? undefined : (JSON.parse(text) as Record<string, unknown>),
      files: [],
    };
  }

  function createMessage(channelId: string, request: RestRequest): Response {
    const body = request.body ?? {};
    const content = typeof body.content === "string" ? body.content : "";
    if ([...content].length > 2000) {
      return json(
        {
          message: "Invalid Form Body",
          code: 50035,
          errors: {
            content: {
              _errors: [
                { code: "BASE_TYPE_MAX_LENGTH", message: "Must be 2000 or fewer in length." },
              ],
            },
          },
        },
        400,
      );
    }
    const embeds = Array.isArray(body.embeds) ? body.embeds : [];
    if (content.length === 0 && embeds.length === 0 && request.files.length === 0) {
      return json({ message: "Cannot send an empty message", code: 50006 }, 400);
    }
    const nonce = body.nonce as string | number | undefined;
    if (nonce !== undefined && body.enforce_nonce === true) {
      const existing = nonces.get(`${channelId}:${nonce}`);
      if (existing !== undefined) return json(apiMessage(messages.get(existing)!), 200, okHeaders);
    }
    const reference = body.message_reference as { message_id?: string } | undefined;
    const message: FakeMessage = {
      id: nextId(),
      channel_id: channelId,
      content,
      embeds,
      attachments: request.files.map((f) => ({
        id: nextId(),
        filename: f.name,
        content_type: f.type,
        size: Buffer.from(f.data, "base64").length,
        url: `https://cdn.discordapp.com/attachments/${channelId}/${f.name}`,
        data: f.data,
      })),
      ...(nonce === undefined ? {} : { nonce }),
      ...(reference?.message_id === undefined
        ? {}
        : { message_reference: { message_id: reference.message_id } }),
    };
    messages.set(message.id, message);
    if (nonce !== undefined) nonces.set(`${channelId}:${nonce}`, message.id);
    const target = targetOf(channelId);
    const image = (embeds[0] as { image?: { url?: string } } | undefined)?.image?.url;
    const file = message.attachments[0];
    if (image !== undefined) {
      outbound.push({
        kind: "media",
        target,
        messageId: message.id,
        media: { kind: "image", url: image, ...(content.length > 0 ? { caption: content } : {}) },
      });
    } else if (file !== undefined) {
      const type = String(file.content_type ?? "");
      outbound.push({
        kind: "media",
        target,
        messageId: message.id,
        media: {
          kind: type.startsWith("image/")
            ? "image"
            : type.startsWith("audio/")
              ? "audio"
              : type.startsWith("video/")
                ? "video"
                : "file",
          data: String(file.data),
          name: String(file.filename),
          mediaType: type,
          ...(content.length > 0 ? { caption: content } : {}),
        },
      });
    } else {
      outbound.push({
        kind: "text",
        target,
        text: content,
        messageId: message.id,
        ...(reference?.message_id === undefined ? {} : { replyToMessageId: reference.message_id }),
      });
    }
    return json(apiMessage(message), 200, okHeaders);
  }

  function apiMessage(message: FakeMessage): Record<string, unknown> {
    return {
      id: message.id,
      type: message.message_reference === undefined ? 0 : 19,
      channel_id: message.channel_id,
      author: { ...user(BOT.id), username: BOT.username, bot: true },
      content: message.content,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: message.attachments.map(({ data: _data, ...a }) => a),
      embeds: message.embeds,
      pinned: false,
      flags: 0,
      ...(message.nonce === undefined ? {} : { nonce: message.nonce }),
      ...(message.message_reference === undefined
        ? {}
        : { message_reference: message.message_reference }),
    };
  }

  /** The work of a request; an answer, or undefined for 404. */
  function route(request: RestRequest): Response | undefined {
    const { method, path } = request;
    const at = (pattern: RegExp, verb: string): string[] | undefined => {
      const match = method === verb ? pattern.exec(path) : null;
      return match === null ? undefined : match.slice(1).map((part) => decodeURIComponent(part));
    };
    if (at(/^\/gateway\/bot$/, "GET")) {
      return json({
        url: gateway.url,
        shards: 1,
        session_start_limit: {
          total: 1000,
          remaining: 999,
          reset_after: 14_400_000,
          max_concurrency: 1,
        },
      });
    }
    if (at(/^\/users\/@me\/channels$/, "POST")) {
      const recipient = request.body?.recipient_id;
      if (typeof recipient !== "string") {
        return json({ message: "Invalid Form Body", code: 50035 }, 400);
      }
      const channel = dmChannel(recipient);
      return json({ ...toApiChannel(channel), last_message_id: null, flags: 0 });
    }
    const get = at(/^\/channels\/([^/]+)$/, "GET");
    if (get !== undefined) {
      const channel = channels.get(get[0]!);
      return channel === undefined ? unknownChannel() : json(toApiChannel(channel));
    }
    const list = at(/^\/channels\/([^/]+)\/messages$/, "GET");
    if (list !== undefined) return listMessages(list[0]!, request.query);
    const post = at(/^\/channels\/([^/]+)\/messages$/, "POST");
    if (post !== undefined) {
      const id = post[0]!;
      if (deleted.has(id)) return unknownChannel();
      if (!channels.has(id)) guildChannel(id, false);
      return createMessage(id, request);
    }
    const patch = at(/^\/channels\/([^/]+)\/messages\/([^/]+)$/, "PATCH");
    if (patch !== undefined) {
      const [channelId, messageId] = patch as [string, string];
      const message = messages.get(messageId);
      if (deleted.has(channelId)) return unknownChannel();
      if (message === undefined || message.channel_id !== channelId) {
        return json({ message: "Unknown Message", code: 10008 }, 404);
      }
      if (typeof request.body?.content === "string") message.content = request.body.content;
      outbound.push({
        kind: "edit",
        target: targetOf(channelId),
        messageId: message.id,
        text: message.content,
      });
      return json(apiMessage(message));
    }
    const typing = at(/^\/channels\/([^/]+)\/typing$/, "POST");
    if (typing !== undefined) {
      const channelId = typing[0]!;
      if (deleted.has(channelId)) return unknownChannel();
      outbound.push({ kind: "typing", target: targetOf(channelId) });
      return new HttpResponse(null, { status: 204 });
    }
    const reaction = at(/^\/channels\/([^/]+)\/messages\/([^/]+)\/reactions\/([^/]+)\/@me$/, "PUT");
    if (reaction !== undefined) {
      const [channelId, messageId, emoji] = reaction as [string, string, string];
      if (!messages.has(messageId)) return json({ message: "Unknown Message", code: 10008 }, 404);
      outbound.push({ kind: "reaction", target: targetOf(channelId), messageId, emoji });
      return new HttpResponse(null, { status: 204 });
    }
    return undefined;
  }

  platforms.set(host, async (raw) => {
    const url = new URL(raw.url);
    const path = url.pathname.replace(/^\/api\/v10/, "");
    const { body, files } = await readBody(raw);
    const request: RestRequest = {
      method: raw.method,
      path,
      headers: raw.headers,
      body,
      files,
      query: url.searchParams,
      at: Date.now(),
    };
    requests.push(request);
    if (raw.headers.get("authorization") !== `Bot ${TOKEN}`) {
      return json({ message: "401: Unauthorized", code: 0 }, 401);
    }
    const index = scripts.findIndex((s) => s.match(raw.method, path));
    if (index >= 0) {
      const [script] = scripts.splice(index, 1);
      const answer = script!.answer;
      if (answer.kind === "rate-limit") return rateLimited(answer);
      if (answer.kind === "error") return json(answer.body, answer.status);
      if (answer.kind === "pass") {
        return route(request) ?? json({ message: "404: Not Found", code: 0 }, 404);
      }
      route(request);
      return json({ message: "upstream connect error", code: 0 }, answer.status);
    }
    return route(request) ?? json({ message: "404: Not Found", code: 0 }, 404);
  });

  return {
    api,
    gateway,
    channels,
    messages,
    requests,
    answerNext(method, path, ...answers) {
      for (const answer of answers) {
        scripts.push({ match: (m, p) => m === method && path.test(p), answer });
      }
    },
    injectWith: deliver,
    inject: (message) => deliver(message, {}),
    expireNonces: () => nonces.clear(),
    post(message) {
      const event = toMessageCreate(message, true);
      remember(event);
      gateway.dispatch("MESSAGE_CREATE", event);
      return event;
    },
    snowflake: nextId,
    deleteChannel(id) {
      deleted.add(id);
      channels.delete(id);
    },
    outbound: () => outbound.map((o) => ({ ...o })),
    downloads: () =>
      cdnRequests.flatMap(({ url }) => {
        const at = new URL(url);
        return served.get(`${at.origin}${at.pathname}`) ?? [];
      }),
    async disconnect() {
      gateway.drop();
    },
    async close() {
      platforms.delete(host);
      await gateway.close();
    },
  };
}
