/**
 * A fake Telegram for tests: the Bot API at `https://api.telegram.org/bot<token>/<method>`
 * behind msw, speaking Telegram's documented request and response shapes and its errors
 * (`{ ok: false, error_code, description, parameters: { retry_after } }`, HTML 502s from the
 * front end), with long-polling `getUpdates` (offsets confirm, a second poller gets 409),
 * webhook delivery with the secret token, MarkdownV2 parsed as strictly as Telegram does,
 * and scripted failures. `startTelegramPlatform` wraps it as the channel conformance suite's
 * driver.
 */
import type {
  ChannelContext,
  ChannelLogger,
  InboundMessageInput,
  ReceiveResult,
} from "@beamclaw/core";
import type {
  ChannelPlatformDriver,
  ConformanceIds,
  PlatformInbound,
  PlatformOutbound,
  PlatformTargetRef,
} from "@beamclaw/core/testing";
import type { Message, MessageEntity, Update, User } from "grammy/types";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll } from "vitest";
import { SECRET_TOKEN_HEADER, type TelegramChannel } from "../src/index.js";
import { MarkdownV2Error, parseMarkdownV2 } from "./telegram-markdown-v2.js";

export const BOT: User = {
  id: 7_000_000_001,
  is_bot: true,
  first_name: "BeamClaw",
  username: "beamclaw_test_bot",
};
export const TOKEN = `${BOT.id}:AAE-fake-token-for-tests_0123456789`;
export const WEBHOOK_SECRET = "a-webhook-secret-of-32-characters";

/** An update as a test writes it: Telegram's JSON, loosely typed. */
export type UpdateJson = { update_id?: number; [kind: string]: unknown };

/** One Bot API call as the fake saw it. */
export interface ApiCall {
  method: string;
  params: Record<string, unknown>;
  /** What the fake answered: the HTTP status, or `network` for a dropped connection. */
  answered: number | "network";
}

/** What a call to the fake answers instead of its normal answer. */
export type ScriptedAnswer =
  /** The Bot API's error answer (429 carries `retry_after`). */
  | { errorCode: number; description: string; retryAfter?: number; migrateToChatId?: number }
  /** Telegram's front end: an HTML page with this status (a 502 Bad Gateway). */
  | { html: number }
  /** The connection drops before an answer. */
  | "network"
  /** The call is carried out, but its answer is lost on the way back. */
  | "lose-answer"
  /** `{ ok: true, result }` with this result as it is (a malformed one, for tests). */
  | { result: unknown }
  /** The normal answer (to script a failure of a later call). */
  | "pass";

/** A message the bot sent (or a file, an edit, a reaction, typing), as the platform saw it. */
export interface BotAction {
  kind: "text" | "media" | "edit" | "typing" | "reaction";
  chatId: number | string;
  threadId?: number;
  /** The message's id in its chat. */
  messageId?: number;
  /** What Telegram shows: MarkdownV2 parsed. */
  text?: string;
  parseMode?: string;
  replyTo?: { messageId: number; chatId?: number | string };
  media?: {
    method: string;
    url?: string;
    data?: string;
    name?: string;
    caption?: string;
  };
  emoji?: string;
}

interface StoredFile {
  fileId: string;
  path: string;
  bytes: Buffer;
  size: number;
  /** The download answers once this settles. */
  held?: Promise<void>;
}

const servers = new Set<FakeTelegram>();

/** Telegram's answer to a poller when another one takes over. */
export const CONFLICT = {
  errorCode: 409,
  description:
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
} as const;
/** Telegram's answer to a token it does not know (or one revoked). */
const UNAUTHORIZED = { ok: false, error_code: 401, description: "Unauthorized" } as const;
let msw: ReturnType<typeof setupServer> | undefined;

/** What a test registers to undo after it: run newest first after each test (see {@link useTelegramApi}). */
export const cleanups: Array<() => Promise<void>> = [];

/**
 * Installs the msw server the fake Bot APIs live behind, for the calling test file (and
 * closes it after), and runs {@link cleanups} after each test. Unknown tokens get
 * Telegram's 401; other hosts are refused.
 */
export function useTelegramApi(): void {
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  beforeAll(() => {
    const server = setupServer(
      http.post("https://api.telegram.org/:bot/:method", async ({ request, params }) => {
        const fake = [...servers].find((s) => `bot${s.token}` === params.bot);
        if (fake === undefined) return HttpResponse.json(UNAUTHORIZED, { status: 401 });
        return fake.handle(String(params.method), request);
      }),
      http.get("https://api.telegram.org/file/:bot/*", async ({ request, params }) => {
        const fake = [...servers].find((s) => `bot${s.token}` === params.bot);
        const path = new URL(request.url).pathname.split("/").slice(3).join("/");
        const file = fake?.fileAt(path);
        if (file === undefined) return new HttpResponse("Not Found", { status: 404 });
        fake!.downloads.push(file.fileId);
        await file.held;
        return new HttpResponse(file.bytes, {
          headers: { "content-length": String(file.bytes.length) },
        });
      }),
    );
    server.listen({ onUnhandledRequest: "error" });
    msw = server;
  });
  afterAll(() => {
    msw?.close();
    msw = undefined;
  });
}

const ok = (result: unknown) => HttpResponse.json({ ok: true, result });
const refuse = (errorCode: number, description: string, parameters?: Record<string, unknown>) =>
  HttpResponse.json(
    { ok: false, error_code: errorCode, description, ...(parameters ? { parameters } : {}) },
    { status: errorCode },
  );

/** grammY sends files as multipart/form-data; the rest as JSON. */
async function paramsOf(request: Request): Promise<Record<string, unknown>> {
  const type = request.headers.get("content-type") ?? "";
  if (!type.startsWith("multipart/form-data")) {
    const text = await request.text();
    return text.length === 0 ? {} : (JSON.parse(text) as Record<string, unknown>);
  }
  const boundary = /boundary=(.+)$/.exec(type)![1]!;
  const body = Buffer.from(await request.arrayBuffer());
  const params: Record<string, unknown> = {};
  const files: Record<string, { name: string; data: Buffer }> = {};
  const delimiter = Buffer.from(`--${boundary}`);
  let at = body.indexOf(delimiter);
  while (at !== -1) {
    const next = body.indexOf(delimiter, at + delimiter.length);
    if (next === -1) break;
    const part = body.subarray(at + delimiter.length + 2, next - 2);
    const split = part.indexOf("\r\n\r\n");
    const headers = part.subarray(0, split).toString("utf8");
    const content = part.subarray(split + 4);
    const name = /name="([^"]+)"/.exec(headers)?.[1];
    const filename = /filename="?([^";\r\n]+)"?/.exec(headers)?.[1];
    if (name !== undefined) {
      if (filename !== undefined) files[name] = { name: filename, data: Buffer.from(content) };
      else params[name] = content.toString("utf8");
    }
    at = next;
  }
  for (const [key, value] of Object.entries(params)) {
    const attached = typeof value === "string" && /^attach:\/\/(.+)$/.exec(value)?.[1];
    if (attached && files[attached] !== undefined) params[key] = files[attached];
  }
  return params;
}

/** One fake bot's Bot API. */
export class FakeTelegram {
  readonly token: string;
  readonly bot: User;
  /** Every call, in order. */
  readonly calls: ApiCall[] = [];
  /** What the bot did, in order (only calls Telegram carried out). */
  readonly actions: BotAction[] = [];
  /** The ids of the files whose content was fetched (`/file/bot<token>/<path>`), in order. */
  readonly downloads: string[] = [];
  webhook: { url: string; secretToken?: string } | null = null;
  #updates: Update[] = [];
  #nextUpdateId = 500_000_001;
  #lastMessageId = new Map<number | string, number>();
  #sentTexts = new Map<string, string>();
  #script = new Map<string, ScriptedAnswer[]>();
  #polls = new Set<{ answer: (conflict: boolean) => void }>();
  #files = new Map<string, StoredFile>();
  /** Basic groups that became supergroups: old id -> new id. */
  #upgraded = new Map<number, number>();
  #closed = false;
  #revoked = false;

  constructor(token = TOKEN, bot = BOT) {
    this.token = token;
    this.bot = bot;
    servers.add(this);
  }

  /** `getUpdates` calls waiting for updates now. */
  get waitingPolls(): number {
    return this.#polls.size;
  }

  /** Updates not yet confirmed. */
  get pendingUpdates(): readonly Update[] {
    return this.#updates;
  }

  /** The next message id in `chatId` (Telegram numbers messages per chat). */
  nextMessageId(chatId: number | string): number {
    const id = (this.#lastMessageId.get(chatId) ?? 0) + 1;
    this.#lastMessageId.set(chatId, id);
    return id;
  }

  /** `update` with the next `update_id`, as Telegram numbers them. */
  stamp(update: UpdateJson): Update {
    return { ...update, update_id: this.#nextUpdateId++ } as Update;
  }

  /** Queues an update for getUpdates (stamped unless it has an id) and wakes a waiting poll. */
  push(update: UpdateJson): Update {
    const full = update.update_id === undefined ? this.stamp(update) : (update as Update);
    this.#updates.push(full);
    this.#releasePolls(false);
    return full;
  }

  /** The next answers of `method`, before it answers normally again. */
  script(method: string, ...answers: ScriptedAnswer[]): void {
    this.#script.set(method, [...(this.#script.get(method) ?? []), ...answers]);
  }

  /**
   * A file the bot can `getFile` and download; with `held`, its download answers only once
   * that settles.
   */
  addFile(
    fileId: string,
    bytes: Buffer,
    path = `photos/${fileId}.jpg`,
    held?: Promise<void>,
  ): void {
    this.#files.set(fileId, {
      fileId,
      path,
      bytes,
      size: bytes.length,
      ...(held === undefined ? {} : { held }),
    });
  }

  fileAt(path: string): StoredFile | undefined {
    return [...this.#files.values()].find((f) => f.path === path);
  }

  /**
   * The bot's token is revoked (@BotFather's /revoke): every call from now on answers 401
   * Unauthorized, as Telegram answers an unknown token.
   */
  revokeToken(): void {
    this.#revoked = true;
  }

  /**
   * Another instance starts polling: the waiting `getUpdates` (or, when none waits, the
   * next one) answers 409 Conflict.
   */
  conflict(): void {
    if (this.#polls.size > 0) this.#releasePolls(true);
    else this.script("getUpdates", CONFLICT);
  }

  #releasePolls(conflict: boolean): void {
    for (const poll of this.#polls) poll.answer(conflict);
  }

  /** The text of a message the bot sent, as Telegram shows it. */
  sentText(chatId: number | string, messageId: number): string | undefined {
    return this.#sentTexts.get(`${chatId}:${messageId}`);
  }

  /**
   * POSTs `update` to the webhook as Telegram does (with the secret token), to `url` (the
   * channel's local endpoint). Resolves with the status.
   */
  async deliverWebhook(
    url: string,
    update: Update,
    secret: string | undefined = this.webhook?.secretToken,
  ): Promise<number> {
    const response = await fetchLocal(url, JSON.stringify(update), {
      "content-type": "application/json",
      ...(secret === undefined ? {} : { [SECRET_TOKEN_HEADER]: secret }),
    });
    return response.status;
  }

  close(): void {
    this.#closed = true;
    this.#releasePolls(false);
    servers.delete(this);
  }

  async handle(method: string, request: Request): Promise<Response> {
    const params = await paramsOf(request);
    const call: ApiCall = { method, params, answered: 200 };
    this.calls.push(call);
    if (this.#revoked) {
      call.answered = UNAUTHORIZED.error_code;
      return refuse(UNAUTHORIZED.error_code, UNAUTHORIZED.description);
    }
    const upgraded = this.#upgradedChatOf(params);
    if (upgraded !== undefined) {
      call.answered = 400;
      return refuse(400, "Bad Request: group chat was upgraded to a supergroup chat", {
        migrate_to_chat_id: upgraded,
      });
    }
    const scripted = this.#script.get(method)?.shift();
    if (scripted !== undefined && scripted !== "lose-answer" && scripted !== "pass") {
      if (scripted === "network") {
        call.answered = "network";
        return HttpResponse.error();
      }
      if ("result" in scripted) {
        return HttpResponse.json({ ok: true, result: scripted.result } as Record<string, unknown>);
      }
      if ("html" in scripted) {
        call.answered = scripted.html;
        return new HttpResponse(
          `<html><head><title>${scripted.html} Bad Gateway</title></head><body><center><h1>${scripted.html} Bad Gateway</h1></center><hr><center>nginx/1.18.0</center></body></html>`,
          { status: scripted.html, headers: { "content-type": "text/html" } },
        );
      }
      call.answered = scripted.errorCode;
      return refuse(scripted.errorCode, scripted.description, {
        ...(scripted.retryAfter === undefined ? {} : { retry_after: scripted.retryAfter }),
        ...(scripted.migrateToChatId === undefined
          ? {}
          : { migrate_to_chat_id: scripted.migrateToChatId }),
      });
    }
    const response = await this.#answer(method, params, request.signal);
    call.answered = response.status;
    if (scripted === "lose-answer") {
      call.answered = "network";
      return HttpResponse.error();
    }
    return response;
  }

  async #answer(
    method: string,
    params: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<Response> {
    switch (method) {
      case "getMe":
        return ok(this.bot);
      case "deleteWebhook":
        this.webhook = null;
        if (params.drop_pending_updates === true) this.#updates = [];
        return ok(true);
      case "setWebhook": {
        const url = String(params.url ?? "");
        if (!url.startsWith("https://")) {
          return refuse(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook");
        }
        this.webhook = {
          url,
          ...(typeof params.secret_token === "string" ? { secretToken: params.secret_token } : {}),
        };
        return ok(true);
      }
      case "getWebhookInfo":
        return ok({
          url: this.webhook?.url ?? "",
          has_custom_certificate: false,
          pending_update_count: this.#updates.length,
        });
      case "getUpdates":
        return this.#getUpdates(params, signal);
      case "getFile": {
        const file = this.#files.get(String(params.file_id));
        if (file === undefined) return refuse(400, "Bad Request: invalid file_id");
        return ok({
          file_id: file.fileId,
          file_unique_id: `u-${file.fileId}`,
          file_size: file.size,
          file_path: file.path,
        });
      }
      case "sendMessage":
        return this.#send(params, "text");
      case "sendPhoto":
      case "sendDocument":
      case "sendVideo":
      case "sendAudio":
        return this.#send(params, "media", method);
      case "editMessageText":
        return this.#edit(params);
      case "sendChatAction":
        this.actions.push({ kind: "typing", ...this.#where(params) });
        return ok(true);
      case "setMessageReaction": {
        const reaction = (params.reaction as Array<{ emoji?: string }> | undefined)?.[0];
        this.actions.push({
          kind: "reaction",
          ...this.#where(params),
          messageId: Number(params.message_id),
          ...(reaction?.emoji === undefined ? {} : { emoji: reaction.emoji }),
        });
        return ok(true);
      }
      default:
        return refuse(404, "Not Found");
    }
  }

  async #getUpdates(params: Record<string, unknown>, signal: AbortSignal): Promise<Response> {
    if (this.webhook !== null) {
      return refuse(
        409,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
      );
    }
    // Only one poller at a time: the one waiting is told another took over.
    this.#releasePolls(true);
    const offset = typeof params.offset === "number" ? params.offset : undefined;
    // An update is confirmed once getUpdates is called with an offset higher than its id.
    if (offset !== undefined) this.#updates = this.#updates.filter((u) => u.update_id >= offset);
    const limit = typeof params.limit === "number" ? params.limit : 100;
    const timeout = typeof params.timeout === "number" ? params.timeout : 0;
    const due = () => this.#updates.slice(0, limit);
    if (due().length > 0 || timeout === 0) return ok(due());
    const conflicted = await new Promise<boolean>((resolve) => {
      const poll = {
        answer: (conflict: boolean) => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          this.#polls.delete(poll);
          resolve(conflict);
        },
      };
      const onAbort = () => poll.answer(false);
      const timer = setTimeout(() => poll.answer(false), timeout * 1000);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#polls.add(poll);
      if (this.#closed) poll.answer(false);
    });
    if (conflicted) return refuse(CONFLICT.errorCode, CONFLICT.description);
    return ok(due());
  }

  /**
   * The basic group `from` became the supergroup `to`: from now on every call naming `from`
   * (as `chat_id`, or the chat of `reply_parameters`) is refused with `migrate_to_chat_id`.
   * The supergroup numbers its messages afresh; the group's stay in the group.
   */
  upgradeGroup(from: number, to: number): void {
    this.#upgraded.set(from, to);
  }

  /** The supergroup a call's chat (or the chat of the message it replies to) became, if any. */
  #upgradedChatOf(params: Record<string, unknown>): number | undefined {
    const reply = params.reply_parameters as { chat_id?: unknown } | undefined;
    for (const chat of [params.chat_id, reply?.chat_id]) {
      const to = typeof chat === "number" ? this.#upgraded.get(chat) : undefined;
      if (to !== undefined) return to;
    }
    return undefined;
  }

  #where(params: Record<string, unknown>): { chatId: number | string; threadId?: number } {
    return {
      chatId: params.chat_id as number | string,
      ...(typeof params.message_thread_id === "number"
        ? { threadId: params.message_thread_id }
        : {}),
    };
  }

  #visible(text: string, parseMode: unknown): string {
    return parseMode === "MarkdownV2" ? parseMarkdownV2(text) : text;
  }

  #send(params: Record<string, unknown>, kind: "text" | "media", method = "sendMessage") {
    const where = this.#where(params);
    const raw = String((kind === "text" ? params.text : params.caption) ?? "");
    let text: string;
    try {
      text = this.#visible(raw, params.parse_mode);
    } catch (error) {
      if (error instanceof MarkdownV2Error) return refuse(400, `Bad Request: ${error.message}`);
      throw error;
    }
    if (kind === "text" && text.trim().length === 0) {
      return refuse(400, "Bad Request: message text is empty");
    }
    if (kind === "text" && text.length > 4096)
      return refuse(400, "Bad Request: message is too long");
    if (kind === "media" && text.length > 1024) {
      return refuse(400, "Bad Request: message caption is too long");
    }
    const reply = params.reply_parameters as
      | { message_id: number; chat_id?: number | string }
      | undefined;
    const messageId = this.nextMessageId(where.chatId);
    const action: BotAction = {
      kind,
      ...where,
      messageId,
      text,
      ...(typeof params.parse_mode === "string" ? { parseMode: params.parse_mode } : {}),
      ...(reply === undefined
        ? {}
        : {
            replyTo: {
              messageId: reply.message_id,
              ...(reply.chat_id === undefined ? {} : { chatId: reply.chat_id }),
            },
          }),
    };
    if (kind === "media") {
      const file = params[MEDIA_FIELD[method]!] as string | { name: string; data: Buffer };
      action.media = {
        method,
        ...(typeof file === "string"
          ? { url: file }
          : { data: file.data.toString("base64"), name: file.name }),
        ...(text.length > 0 ? { caption: text } : {}),
      };
    }
    this.actions.push(action);
    this.#sentTexts.set(`${where.chatId}:${messageId}`, text);
    const chat =
      typeof where.chatId === "number" && where.chatId > 0
        ? { id: where.chatId, type: "private", first_name: "someone" }
        : { id: where.chatId, type: "supergroup", title: "a group" };
    return ok({
      message_id: messageId,
      date: Math.floor(Date.now() / 1000),
      chat,
      from: this.bot,
      ...(where.threadId === undefined
        ? {}
        : { message_thread_id: where.threadId, is_topic_message: true }),
      ...(kind === "text" ? { text } : { photo: [] }),
    });
  }

  #edit(params: Record<string, unknown>): Response {
    const chatId = params.chat_id as number | string;
    const messageId = Number(params.message_id);
    const before = this.#sentTexts.get(`${chatId}:${messageId}`);
    if (before === undefined) return refuse(400, "Bad Request: message to edit not found");
    let text: string;
    try {
      text = this.#visible(String(params.text ?? ""), params.parse_mode);
    } catch (error) {
      if (error instanceof MarkdownV2Error) return refuse(400, `Bad Request: ${error.message}`);
      throw error;
    }
    if (text === before) {
      return refuse(
        400,
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
      );
    }
    this.#sentTexts.set(`${chatId}:${messageId}`, text);
    this.actions.push({ kind: "edit", chatId, messageId, text });
    return ok({
      message_id: messageId,
      date: Math.floor(Date.now() / 1000),
      edit_date: Math.floor(Date.now() / 1000),
      chat: { id: chatId, type: "private", first_name: "someone" },
      text,
    });
  }
}

const MEDIA_FIELD: Record<string, string> = {
  sendPhoto: "photo",
  sendDocument: "document",
  sendVideo: "video",
  sendAudio: "audio",
};

/** A POST to the channel's own endpoint on 127.0.0.1 (msw lets local requests through). */
export async function fetchLocal(
  url: string,
  body: string,
  headers: Record<string, string>,
  method = "POST",
): Promise<{ status: number; body: string }> {
  const { request } = await import("node:http");
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(method === "GET" ? undefined : body);
  });
}

// ---------------------------------------------------------------- documented payloads

let clock = 1_735_689_600;

/** A user, as Telegram describes one. */
export function user(id: number, firstName: string, username?: string): User {
  return {
    id,
    is_bot: false,
    first_name: firstName,
    ...(username === undefined ? {} : { username }),
    language_code: "en",
  };
}

/** A private chat's message from `from` (Telegram's `Message` in a `private` chat). */
export function privateMessage(
  from: User,
  messageId: number,
  text: string,
  extra: Record<string, unknown> = {},
): Message {
  return {
    message_id: messageId,
    from,
    chat: {
      id: from.id,
      type: "private",
      first_name: from.first_name,
      ...(from.username === undefined ? {} : { username: from.username }),
    },
    date: clock++,
    text,
    ...extra,
  } as Message;
}

/** A supergroup's message (a forum's when `topic` is given). */
export function groupMessage(
  chatId: number,
  from: User,
  messageId: number,
  text: string,
  extra: Record<string, unknown> & { topic?: number } = {},
): Message {
  const { topic, ...rest } = extra;
  const chat = {
    id: chatId,
    title: "Ops",
    type: "supergroup" as const,
    ...(topic === undefined ? {} : { is_forum: true as const }),
  };
  return {
    message_id: messageId,
    from,
    chat,
    date: clock++,
    text,
    ...(topic === undefined
      ? {}
      : {
          message_thread_id: topic,
          is_topic_message: true,
          // Telegram: a topic's messages "reply" to the service message that created it.
          reply_to_message: {
            message_id: topic,
            from,
            chat,
            date: clock - 3600,
            message_thread_id: topic,
            forum_topic_created: { name: "Deploys", icon_color: 7322096 },
            is_topic_message: true,
          },
        }),
    ...rest,
  } as Message;
}

/** `@username` at the start of `text`, as a `mention` entity. */
export function mentionEntity(text: string, username: string): MessageEntity {
  const offset = text.indexOf(`@${username}`);
  if (offset === -1) throw new Error(`@${username} is not in ${JSON.stringify(text)}`);
  return { type: "mention", offset, length: username.length + 1 };
}

// ---------------------------------------------------------------- conformance driver

/**
 * Telegram's ids for the conformance suite: users and private chats are positive integers (a
 * private chat's id is its user's), supergroups `-100...`, forum topics small integers, and
 * the channel's message ids `<chat_id>:<message_id>`.
 */
export const TELEGRAM_CONFORMANCE_IDS: Partial<ConformanceIds> = {
  peer: (n) => String(100_000 + n),
  group: (n) => String(-1_001_000_000_000 - n),
  thread: (n) => String(10 + n),
  // High enough never to meet the message ids the fake gives the bot's own messages.
  message: (n, chatId) => `${chatId}:${900_000 + n}`,
};

/** The Telegram message id in a channel message id `<chat_id>:<message_id>`. */
function telegramMessageId(messageId: string): number {
  const match = /^-?\d+:(\d+)$/.exec(messageId);
  if (match === null) throw new Error(`not a Telegram channel message id: ${messageId}`);
  return Number(match[1]);
}

export interface TelegramPlatform extends ChannelPlatformDriver {
  readonly api: FakeTelegram;
  readonly mode: "polling" | "webhook";
  /** Registers the channel under test (its webhook endpoint receives updates); returns it as it is. */
  attach(plugin: TelegramChannel): TelegramChannel;
  /**
   * The URL the driver registered for a file id (for the channel's `attachments.url`): an
   * attachment's own URL, unless it has `data` (the file, which the fake Bot API then serves
   * for the channel to download).
   */
  fileUrl(fileId: string): string | undefined;
  /** The Telegram update (without its `update_id`) the driver makes for a suite message. */
  updateFor(message: PlatformInbound): Omit<Update, "update_id">;
}

/**
 * Starts a fake Telegram for the conformance suite, delivering by long polling or by
 * webhook. `useTelegramApi()` must have been called in the test file.
 */
export function startTelegramPlatform(mode: "polling" | "webhook" = "polling"): TelegramPlatform {
  const api = new FakeTelegram();
  const fileUrls = new Map<string, string>();
  /** The suite's URL of each file the fake serves, by file id. */
  const served = new Map<string, string>();
  let plugin: TelegramChannel | undefined;
  let files = 0;

  const toUpdate = (message: PlatformInbound): Omit<Update, "update_id"> => {
    const chatId = Number(message.chatId);
    const from = user(Number(message.peer.id), message.peer.name ?? `User ${message.peer.id}`);
    let text = message.text;
    const entities: MessageEntity[] = [];
    if (message.mentionsBot === true && message.chatType === "group") {
      // In a group the bot is addressed by its @username (a DM addresses it anyway).
      const handle = `@${api.bot.username}`;
      text = /^@bot\b/.test(text) ? text.replace(/^@bot\b/, handle) : `${handle} ${text}`;
      entities.push(mentionEntity(text, api.bot.username!));
    }
    for (const peer of message.mentions ?? []) {
      // A user without a username is mentioned by a text_mention on their name.
      const name = `user${peer}`;
      let offset = text.indexOf(name);
      if (offset === -1) {
        text = `${text} ${name}`;
        offset = text.length - name.length;
      }
      entities.push({
        type: "text_mention",
        offset,
        length: name.length,
        user: user(Number(peer), name),
      });
    }
    const chat =
      message.chatType === "direct"
        ? { id: chatId, type: "private" as const, first_name: from.first_name }
        : {
            id: chatId,
            type: "supergroup" as const,
            title: message.chatId,
            ...(message.threadId === undefined ? {} : { is_forum: true as const }),
          };
    const telegram: Record<string, unknown> = {
      message_id: telegramMessageId(message.messageId),
      from,
      chat,
      date: Math.floor(Date.now() / 1000),
    };
    if (message.threadId !== undefined) {
      const thread = Number(message.threadId);
      telegram.message_thread_id = thread;
      telegram.is_topic_message = true;
      telegram.reply_to_message = {
        message_id: thread,
        chat,
        date: Math.floor(Date.now() / 1000) - 60,
        forum_topic_created: { name: message.threadId, icon_color: 7322096 },
      };
    }
    if (message.replyTo !== undefined) {
      const author = Number(message.replyTo.peerId ?? 199_999);
      telegram.reply_to_message = {
        message_id: telegramMessageId(message.replyTo.messageId),
        from: user(author, `User ${author}`),
        chat,
        date: Math.floor(Date.now() / 1000) - 60,
        ...(message.replyTo.text === undefined ? {} : { text: message.replyTo.text }),
      };
    }
    const attachments = message.attachments ?? [];
    if (attachments.length > 0) {
      const [first] = attachments;
      const fileId = `AgACAgIAAxkBAAI${++files}`;
      if (first!.data !== undefined) {
        api.addFile(fileId, Buffer.from(first!.data, "base64"), `documents/${fileId}`);
        if (first!.url !== undefined) served.set(fileId, first!.url);
      } else if (first!.url !== undefined) {
        fileUrls.set(fileId, first!.url);
      }
      const file = { file_id: fileId, file_unique_id: `AQAD${files}`, file_size: 2048 };
      if (first!.kind === "image" && first!.mediaType === "image/jpeg") {
        telegram.photo = [{ ...file, width: 320, height: 240 }];
      } else {
        const field =
          first!.kind === "audio" ? "audio" : first!.kind === "video" ? "video" : "document";
        telegram[field] = {
          ...file,
          ...(first!.mediaType === undefined ? {} : { mime_type: first!.mediaType }),
          ...(first!.name === undefined ? {} : { file_name: first!.name }),
        };
      }
      telegram.caption = text;
      if (entities.length > 0) telegram.caption_entities = entities;
    } else {
      telegram.text = text;
      if (entities.length > 0) telegram.entities = entities;
    }
    return { message: telegram } as unknown as Omit<Update, "update_id">;
  };

  const targetRef = (action: BotAction): PlatformTargetRef => ({
    chatId: String(action.chatId),
    ...(action.threadId === undefined ? {} : { threadId: String(action.threadId) }),
  });

  return {
    api,
    mode,
    attach(p) {
      plugin = p;
      return p;
    },
    fileUrl: (fileId) => fileUrls.get(fileId),
    updateFor: toUpdate,
    downloads: () => api.downloads.flatMap((fileId) => served.get(fileId) ?? []),
    async inject(message) {
      const update = toUpdate(message);
      if (mode === "polling") return api.push(update);
      const url = plugin?.localUrl;
      if (url === undefined) throw new Error("the channel's webhook is not listening");
      const delivered = api.stamp(update);
      const status = await api.deliverWebhook(url, delivered, WEBHOOK_SECRET);
      if (status !== 200) throw new Error(`the webhook answered ${status}`);
      return status;
    },
    outbound(): PlatformOutbound[] {
      return api.actions.flatMap((action): PlatformOutbound[] => {
        const target = targetRef(action);
        const messageId = `${action.chatId}:${action.messageId}`;
        switch (action.kind) {
          case "text":
            return [
              {
                kind: "text",
                target,
                text: action.text ?? "",
                messageId,
                ...(action.replyTo === undefined
                  ? {}
                  : {
                      replyToMessageId: `${action.replyTo.chatId ?? action.chatId}:${action.replyTo.messageId}`,
                    }),
              },
            ];
          case "media":
            return [
              {
                kind: "media",
                target,
                messageId,
                media: {
                  kind: action.media?.method === "sendPhoto" ? "image" : "file",
                  ...(action.media?.url === undefined ? {} : { url: action.media.url }),
                  ...(action.media?.data === undefined ? {} : { data: action.media.data }),
                  ...(action.media?.caption === undefined ? {} : { caption: action.media.caption }),
                },
              },
            ];
          case "edit":
            return [{ kind: "edit", target, messageId, text: action.text ?? "" }];
          case "typing":
            return [{ kind: "typing", target }];
          case "reaction":
            return [{ kind: "reaction", target, messageId, emoji: action.emoji ?? "" }];
          default:
            return [];
        }
      });
    },
    ...(mode === "polling"
      ? {
          async disconnect() {
            // Telegram's way of dropping a poller: another getUpdates took over.
            api.conflict();
          },
        }
      : {}),
    async close() {
      api.close();
    },
  };
}

// ---------------------------------------------------------------- harness for the channel's own tests

/** Polls `probe` until it returns something other than undefined/false. */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

/** A channel started against a fake Telegram, with a context that records what it gets. */
export interface StartedChannel {
  api: FakeTelegram;
  plugin: TelegramChannel;
  /** Every `ctx.receive` call, in order. */
  received: InboundMessageInput[];
  /** Every `ctx.disconnected` call. */
  disconnects: unknown[];
  /** Starts the plugin again with a fresh context (as the host does after a disconnect). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export const quietLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Creates the channel with `options` over `api` (a new fake by default) and starts it with a
 * recording context. `receive` decides each call's fate (default: accepted); the plugin logs
 * to `logger` (default: nowhere).
 */
export async function startChannel(
  create: (api: FakeTelegram) => TelegramChannel,
  receive: (input: InboundMessageInput, n: number) => Promise<ReceiveResult> = async () => ({
    status: "accepted",
  }),
  api: FakeTelegram = new FakeTelegram(),
  logger: ChannelLogger = quietLogger,
): Promise<StartedChannel> {
  const plugin = create(api);
  const received: InboundMessageInput[] = [];
  const disconnects: unknown[] = [];
  let controller = new AbortController();
  const context = (): ChannelContext => ({
    channel: plugin.id,
    config: {},
    logger,
    signal: controller.signal,
    receive(input) {
      received.push(input);
      return receive(input, received.length);
    },
    disconnected(error) {
      disconnects.push(error);
    },
  });
  await plugin.start(context());
  return {
    api,
    plugin,
    received,
    disconnects,
    async restart() {
      controller.abort();
      await plugin.stop();
      controller = new AbortController();
      await plugin.start(context());
    },
    async stop() {
      controller.abort();
      await plugin.stop();
      api.close();
    },
  };
}
