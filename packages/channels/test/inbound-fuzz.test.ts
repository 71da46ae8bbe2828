/**
 * Malformed input on every inbound path, against the real endpoints: the webhook's and
 * Telegram's and Slack's HTTP listeners on 127.0.0.1, Telegram's `getUpdates` answered by the
 * msw fake, Slack Socket Mode frames over a real local WebSocket, Discord dispatches from the
 * fake gateway. Each case is enumerated (no randomness) and named after its input: the body
 * is not JSON or not an object, a documented field is missing or of the wrong type (null, a
 * number, a string, an array, a nested object, a 20 000-character string), a signature or
 * secret token is wrong, a body is too big. For each the test checks the answer (the status
 * the vendor documents), that nothing threw unhandled, that no malformed message reached the
 * host (the context validates what it gets as `ChannelManager` does, with `normalizeInbound`),
 * that no handler failed with a TypeError it then swallowed, and that a valid input right after
 * it is handled normally.
 */
import {
  type ChannelContext,
  type InboundMessage,
  InvalidInboundError,
  normalizeInbound,
  type ReceiveResult,
} from "@beamclaw/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createTelegramChannel,
  createWebhookChannel,
  SECRET_TOKEN_HEADER,
  SIGNATURE_HEADER,
  signWebhookPayload,
  type TelegramChannel,
} from "../src/index.js";
import { createSlackChannel, signSlackRequest } from "../src/slack/index.js";
import { runCleanups, startHarness, waitFor } from "./discord/harness.js";
import { closeDiscordMsw, GUILD_ID, preloadDiscordLibraries } from "./discord/platform.js";
import { closeFakeSlackApi } from "./slack/fake-slack-api.js";
import {
  eventCallback,
  SIGNING_SECRET,
  SlackHttpPlatform,
  SlackSocketModePlatform,
} from "./slack/slack-platform.js";
import {
  FakeTelegram,
  fetchLocal,
  privateMessage,
  TOKEN as TELEGRAM_TOKEN,
  user,
  useTelegramApi,
  WEBHOOK_SECRET,
} from "./telegram-platform.js";
import { startWebhookPlatform, SECRET as WEBHOOK_SIGNING_SECRET } from "./webhook-platform.js";

await preloadDiscordLibraries();

// ---------------------------------------------------------------- the enumerated inputs

const LONG = "x".repeat(20_000);
/** The tests that walk through a hundred cases or more, each with a valid input after it. */
const LONG_TEST_MS = 90_000;

/** The values a field is replaced by, each with the name a failure reports. */
const VALUES: ReadonlyArray<readonly [string, unknown]> = [
  ["null", null],
  ["the number 42", 42],
  ["the number -1.5", -1.5],
  ["a string", "a string"],
  ["an empty string", ""],
  ["true", true],
  ["an array", ["a", 1]],
  ["a nested object", { nested: { deep: [1, { x: null }] } }],
  ["a 20000-character string", LONG],
];

type FieldType = "string" | "integer" | "boolean" | "object" | "array";

/** A documented field of a payload, as the adapter reads it. */
interface Field {
  /** Dotted path; numbers index arrays (`entities.0.offset`). */
  path: string;
  type: FieldType;
  /**
   * `required`: a message without it (or with a value of another type) is not a message;
   * `strict`: optional, but a value of another type makes the message unreadable (it would
   * be routed or attributed wrongly); `optional`: a value of another type may be ignored.
   */
  rule: "required" | "strict" | "optional";
}

/** One malformed input. */
interface Case {
  name: string;
  payload: unknown;
  /** Nothing may reach the host for it (else: something may, if it is well-formed). */
  mustDrop: boolean;
}

const MISSING = Symbol("missing");

function fits(value: unknown, type: FieldType): boolean {
  switch (type) {
    case "string":
      return typeof value === "string";
    case "integer":
      return Number.isSafeInteger(value);
    case "boolean":
      return typeof value === "boolean";
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    case "array":
      return Array.isArray(value);
  }
}

/** A deep copy of `payload` with `path` set to `value` (or removed). */
function withField(payload: unknown, path: string, value: unknown): unknown {
  const copy = structuredClone(payload) as Record<string, unknown>;
  const keys = path.split(".");
  let at: Record<string, unknown> = copy;
  for (const key of keys.slice(0, -1)) {
    const next = at[key];
    if (typeof next !== "object" || next === null) at[key] = {};
    at = at[key] as Record<string, unknown>;
  }
  const last = keys.at(-1)!;
  if (value === MISSING) delete at[last];
  else at[last] = value;
  return copy;
}

/**
 * For each field: without it, and with each value of another type (and, for strings, the
 * empty and the 20 000-character string, which are of the right type).
 */
function fieldCases(base: unknown, fields: readonly Field[]): Case[] {
  const cases: Case[] = [];
  for (const field of fields) {
    cases.push({
      name: `${field.path} missing`,
      payload: withField(base, field.path, MISSING),
      mustDrop: field.rule === "required",
    });
    for (const [label, value] of VALUES) {
      const typed = fits(value, field.type);
      if (typed && value !== "" && value !== LONG) continue;
      cases.push({
        name: `${field.path} = ${label}`,
        payload: withField(base, field.path, value),
        mustDrop:
          !typed && (field.rule === "required" || (field.rule === "strict" && value !== null)),
      });
    }
  }
  return cases;
}

/** Bodies that are not a JSON object. */
const NOT_OBJECTS: ReadonlyArray<readonly [string, string]> = [
  ["an empty body", ""],
  ["not JSON", "{oops"],
  ["truncated JSON", '{"type":"message","id":'],
  ["a JSON array", '[{"type":"message"}]'],
  ["a JSON string", '"message"'],
  ["a JSON number", "42"],
  ["JSON null", "null"],
  ["JSON true", "true"],
  ["binary garbage", "\u0000\u0001\u00ff\ufffd"],
];

// ---------------------------------------------------------------- what the host saw

interface LogEntry {
  level: string;
  message: string;
  fields: string;
}

function describeValue(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v instanceof Error ? `${v.name}: ${v.message}` : v,
  );
}

/** A context that validates what it is handed the way `ChannelManager` does, and records. */
class Host {
  readonly messages: InboundMessage[] = [];
  /** Fields of messages the host refused as malformed. */
  readonly refused: string[] = [];
  readonly logs: LogEntry[] = [];
  readonly disconnects: unknown[] = [];
  controller = new AbortController();

  ctx(channel: string): ChannelContext {
    const signal = this.controller.signal;
    const log =
      (level: string) =>
      (message: string, fields?: Record<string, unknown>): void => {
        this.logs.push({ level, message, fields: describeValue(fields ?? {}) });
      };
    return {
      channel,
      config: {},
      logger: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
      signal,
      receive: async (input): Promise<ReceiveResult> => {
        try {
          this.messages.push(normalizeInbound(channel, input));
        } catch (error) {
          if (InvalidInboundError.isInstance(error)) this.refused.push(error.field);
          throw error;
        }
        return { status: "accepted" };
      },
      disconnected: (error) => {
        this.disconnects.push(error);
      },
    };
  }

  /** Messages whose text is `text`. */
  withText(text: string): InboundMessage[] {
    return this.messages.filter((m) => m.text === text);
  }
}

/** An id or a name made of a value of the wrong type (`String(null)`, `[object Object]`...). */
const GARBAGE_ID =
  /\[object |^(?:null|undefined|NaN|true|false)$|(?:^|:)(?:null|undefined|NaN)(?:$|:)/;

function garbageOf(message: InboundMessage): string[] {
  const ids: Array<[string, unknown]> = [
    ["accountId", message.accountId],
    ["peer.id", message.peer.id],
    ["peer.name", message.peer.name],
    ["chatId", message.chatId],
    ["threadId", message.threadId],
    ["messageId", message.messageId],
    ["replyTo.messageId", message.replyTo?.messageId],
    ["replyTo.peerId", message.replyTo?.peerId],
    ...message.mentions.peers.map((p, i): [string, unknown] => [`mentions.peers[${i}]`, p]),
    ...message.attachments.flatMap(
      (a, i): Array<[string, unknown]> => [
        [`attachments[${i}].url`, a.url],
        [`attachments[${i}].name`, a.name],
        [`attachments[${i}].mediaType`, a.mediaType],
      ],
    ),
  ];
  const found = ids
    .filter(([, v]) => typeof v === "string" && GARBAGE_ID.test(v))
    .map(([k, v]) => `${k}=${String(v).slice(0, 40)}`);
  for (const [k, v] of [
    ["text", message.text],
    ["replyTo.text", message.replyTo?.text],
  ] as const) {
    if (typeof v === "string" && v.includes("[object ")) found.push(`${k} has [object ...]`);
  }
  return found;
}

/** Handler failures that are bugs (a TypeError swallowed by a catch-all), from the logs. */
const BUG_IN_LOG = /TypeError|Cannot read prop|is not a function|is not iterable|Cannot convert/;

const crashes: string[] = [];
const onCrash = (error: unknown) => {
  crashes.push(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
};
beforeAll(() => {
  process.on("unhandledRejection", onCrash);
  process.on("uncaughtException", onCrash);
});
afterAll(() => {
  process.off("unhandledRejection", onCrash);
  process.off("uncaughtException", onCrash);
});

/**
 * After one case: nothing threw unhandled, nothing the case sent reached the host malformed
 * (and nothing at all when `mustDrop`), no handler swallowed a TypeError.
 */
function checkCase(
  name: string,
  host: Host,
  from: { messages: number; logs: number },
  mustDrop: boolean,
  ignoreText?: string,
): void {
  const delivered = host.messages
    .slice(from.messages)
    .filter((m) => ignoreText === undefined || m.text !== ignoreText);
  expect(crashes, `${name}: unhandled errors`).toEqual([]);
  if (mustDrop) {
    expect(
      delivered.map((m) => m.messageId.slice(0, 60)),
      `${name}: a malformed message reached the host`,
    ).toEqual([]);
  }
  for (const message of delivered) {
    expect(garbageOf(message), `${name}: garbage in a delivered message`).toEqual([]);
  }
  const bugs = host.logs
    .slice(from.logs)
    .filter((l) => BUG_IN_LOG.test(l.fields) || BUG_IN_LOG.test(l.message))
    .map((l) => `${l.level}: ${l.message} ${l.fields.slice(0, 200)}`);
  expect(bugs, `${name}: a handler failed`).toEqual([]);
}

const mark = (host: Host) => ({ messages: host.messages.length, logs: host.logs.length });

/**
 * Sends one input that must be refused with `status`, and checks that nothing of it reached
 * the host ({@link checkCase} with `mustDrop`). Returns the answer for further checks.
 */
async function refused<A extends { status: number }>(
  host: Host,
  name: string,
  status: number,
  send: () => Promise<A>,
): Promise<A> {
  const from = mark(host);
  const answer = await send();
  expect(answer.status, name).toBe(status);
  checkCase(name, host, from, true);
  return answer;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await runCleanups();
  crashes.length = 0;
});

// ---------------------------------------------------------------- the generic webhook

describe("webhook: malformed requests", () => {
  const WEBHOOK_FIELDS: Field[] = [
    { path: "type", type: "string", rule: "required" },
    { path: "id", type: "string", rule: "required" },
    { path: "chat", type: "object", rule: "required" },
    { path: "chat.type", type: "string", rule: "required" },
    { path: "chat.id", type: "string", rule: "optional" },
    { path: "chat.threadId", type: "string", rule: "optional" },
    { path: "from", type: "object", rule: "required" },
    { path: "from.id", type: "string", rule: "required" },
    { path: "from.name", type: "string", rule: "optional" },
    { path: "text", type: "string", rule: "optional" },
    { path: "attachments", type: "array", rule: "optional" },
    { path: "attachments.0", type: "object", rule: "optional" },
    { path: "attachments.0.kind", type: "string", rule: "optional" },
    { path: "attachments.0.url", type: "string", rule: "optional" },
    { path: "attachments.0.size", type: "integer", rule: "optional" },
    { path: "mentions", type: "object", rule: "optional" },
    { path: "mentions.bot", type: "boolean", rule: "optional" },
    { path: "mentions.ids", type: "array", rule: "optional" },
    { path: "replyTo", type: "object", rule: "optional" },
    { path: "replyTo.id", type: "string", rule: "optional" },
    { path: "replyTo.text", type: "string", rule: "optional" },
    { path: "accountId", type: "string", rule: "optional" },
    { path: "timestamp", type: "integer", rule: "optional" },
  ];
  const base = {
    type: "message",
    id: "fuzz-base",
    chat: { type: "direct", id: "user-42", threadId: "t-1" },
    from: { id: "user-42", name: "Ada" },
    text: "a malformed one",
    attachments: [
      { kind: "image", url: "https://files.example/cat.png", mediaType: "image/png", size: 12 },
    ],
    mentions: { bot: true, ids: ["user-7"] },
    replyTo: { id: "msg-0", text: "earlier", from: "user-7" },
    accountId: "default",
    timestamp: 1_735_689_600_000,
  };

  async function started(maxBodyBytes?: number) {
    const platform = await startWebhookPlatform();
    cleanups.push(() => platform.close());
    const plugin = platform.attach(
      createWebhookChannel({
        secret: WEBHOOK_SIGNING_SECRET,
        callbackUrl: platform.callbackUrl,
        port: 0,
        ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }),
      }),
    );
    const host = new Host();
    await plugin.start(host.ctx(plugin.id));
    cleanups.push(async () => {
      host.controller.abort();
      await plugin.stop();
    });
    let n = 0;
    const signed = (body: string) =>
      platform.post(body, { [SIGNATURE_HEADER]: signWebhookPayload(WEBHOOK_SIGNING_SECRET, body) });
    /** A valid event: answered 202, and the host has it. */
    const valid = async (name: string) => {
      const text = `valid after ${name}`;
      const body = JSON.stringify({ ...base, id: `valid-${++n}`, text });
      const answer = await signed(body);
      expect(answer.status, `a valid event after ${name}`).toBe(202);
      expect(host.withText(text), `a valid event after ${name}`).toHaveLength(1);
    };
    return { platform, host, signed, valid };
  }

  it("answers 400 to signed bodies that are not a JSON object, and takes the next event", async () => {
    const { host, signed, valid } = await started();
    for (const [name, body] of NOT_OBJECTS) {
      await refused(host, name, 400, () => signed(body));
      await valid(name);
    }
  });

  it("answers 401 to missing, malformed, wrong and stale signatures before reading the body", async () => {
    const { platform, host, valid } = await started();
    const body = JSON.stringify({ ...base, id: "unsigned" });
    const headers: Array<[string, string | undefined]> = [
      ["no signature", undefined],
      ["an empty signature", ""],
      ["t= without v1=", `t=${Math.floor(Date.now() / 1000)}`],
      ["v1= without t=", `v1=${"0".repeat(64)}`],
      ["a non-numeric t", `t=now,v1=${"0".repeat(64)}`],
      ["a short v1", `t=${Math.floor(Date.now() / 1000)},v1=abc`],
      ["a non-hex v1", `t=${Math.floor(Date.now() / 1000)},v1=${"z".repeat(64)}`],
      ["a 20000-character header", `t=${Math.floor(Date.now() / 1000)},v1=${"a".repeat(9_000)}`],
      ["another secret", signWebhookPayload("another-secret-of-many-characters", body)],
      ["another body", signWebhookPayload(WEBHOOK_SIGNING_SECRET, `${body} `)],
      ["a year-old signature", signWebhookPayload(WEBHOOK_SIGNING_SECRET, body, Date.now() - 3e10)],
    ];
    for (const [name, header] of headers) {
      await refused(host, name, 401, () =>
        platform.post(body, header === undefined ? {} : { [SIGNATURE_HEADER]: header }),
      );
    }
    // A not-JSON body with a bad signature: the signature is refused first.
    expect((await platform.post("{oops", { [SIGNATURE_HEADER]: "t=1,v1=00" })).status).toBe(401);
    await valid("bad signatures");
  });

  it("answers 413 to a body over maxBodyBytes, signed or not", async () => {
    const { platform, host, signed, valid } = await started(4096);
    const big = JSON.stringify({ ...base, text: LONG });
    const from = mark(host);
    expect((await signed(big)).status).toBe(413);
    expect((await platform.post(big, {})).status).toBe(413);
    checkCase("a 20000-character text over the limit", host, from, true);
    await valid("an oversized body");
  });

  it(
    "answers 400 (or takes a well-formed event) for each field missing or of the wrong type",
    async () => {
      const { host, signed, valid } = await started();
      const cases = fieldCases(base, WEBHOOK_FIELDS);
      expect(cases.length).toBeGreaterThan(150);
      let n = 0;
      for (const c of cases) {
        const payload = { ...(c.payload as Record<string, unknown>) };
        if ("id" in payload && payload.id === base.id) payload.id = `case-${++n}`;
        const from = mark(host);
        const answer = await signed(JSON.stringify(payload));
        const delivered = host.messages.length - from.messages;
        if (c.mustDrop) expect(answer.status, c.name).toBe(400);
        else expect([202, 400], c.name).toContain(answer.status);
        expect(delivered, `${c.name}: answered ${answer.status}`).toBe(
          answer.status === 202 ? 1 : 0,
        );
        checkCase(c.name, host, from, c.mustDrop);
        await valid(c.name);
      }
    },
    LONG_TEST_MS,
  );
});

// ---------------------------------------------------------------- Telegram

const ALICE = user(100_001, "Alice", "alice");

/** The documented fields of a Telegram `Message` the channel reads. */
const TELEGRAM_FIELDS: Field[] = [
  { path: "message", type: "object", rule: "required" },
  { path: "message.message_id", type: "integer", rule: "required" },
  { path: "message.date", type: "integer", rule: "required" },
  { path: "message.chat", type: "object", rule: "required" },
  { path: "message.chat.id", type: "integer", rule: "required" },
  { path: "message.chat.type", type: "string", rule: "required" },
  { path: "message.from", type: "object", rule: "strict" },
  { path: "message.from.id", type: "integer", rule: "required" },
  { path: "message.from.first_name", type: "string", rule: "strict" },
  { path: "message.from.username", type: "string", rule: "strict" },
  { path: "message.sender_chat", type: "object", rule: "strict" },
  { path: "message.text", type: "string", rule: "strict" },
  { path: "message.entities", type: "array", rule: "optional" },
  { path: "message.entities.0", type: "object", rule: "optional" },
  { path: "message.entities.0.type", type: "string", rule: "optional" },
  { path: "message.entities.0.offset", type: "integer", rule: "optional" },
  { path: "message.entities.1.user", type: "object", rule: "optional" },
  { path: "message.entities.1.user.id", type: "integer", rule: "optional" },
  { path: "message.reply_to_message", type: "object", rule: "optional" },
  { path: "message.reply_to_message.message_id", type: "integer", rule: "optional" },
  { path: "message.reply_to_message.chat", type: "object", rule: "optional" },
  { path: "message.reply_to_message.from", type: "object", rule: "optional" },
  { path: "message.quote", type: "object", rule: "optional" },
  { path: "message.message_thread_id", type: "integer", rule: "optional" },
  { path: "message.photo", type: "array", rule: "optional" },
  { path: "message.document", type: "object", rule: "optional" },
  { path: "message.caption", type: "string", rule: "optional" },
];

/** A private message with a mention, a text_mention and a reply: every field is read. */
function telegramBase(): Record<string, unknown> {
  const text = "@beamclaw_test_bot ask Bob";
  return {
    update_id: 0,
    message: privateMessage(ALICE, 1, text, {
      entities: [
        { type: "mention", offset: 0, length: 18 },
        { type: "text_mention", offset: 23, length: 3, user: user(100_002, "Bob") },
      ],
      reply_to_message: {
        message_id: 1,
        from: user(100_002, "Bob"),
        chat: { id: ALICE.id, type: "private", first_name: "Alice" },
        date: 1_735_689_000,
        text: "earlier",
      },
    }),
  };
}

/** Telegram's malformed Update bodies (not the Message inside). */
const TELEGRAM_UPDATE_CASES: ReadonlyArray<readonly [string, unknown]> = [
  ["an object without update_id", { message: privateMessage(ALICE, 5, "no id") }],
  ["update_id = a string", { update_id: "7", message: privateMessage(ALICE, 5, "x") }],
  ["update_id = -1.5", { update_id: -1.5, message: privateMessage(ALICE, 5, "x") }],
  ["update_id = null", { update_id: null, message: privateMessage(ALICE, 5, "x") }],
  ["update_id = 2^60", { update_id: 2 ** 60, message: privateMessage(ALICE, 5, "x") }],
];

// Each vendor's msw server runs only during its describe: two at once would both read
// every request.
describe("Telegram webhook: malformed requests", () => {
  useTelegramApi();
  async function started() {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const plugin = createTelegramChannel({
      token: TELEGRAM_TOKEN,
      mode: "webhook",
      webhook: { secretToken: WEBHOOK_SECRET, port: 0, maxBodyBytes: 64 * 1024 },
      attachments: { inlineImageMaxBytes: 0 },
    });
    const host = new Host();
    await plugin.start(host.ctx(plugin.id));
    cleanups.push(async () => {
      host.controller.abort();
      await plugin.stop();
    });
    const url = plugin.localUrl!;
    /** POSTs `body` with the secret token (`null`: without one). */
    const post = (body: string, secret: string | null = WEBHOOK_SECRET) =>
      fetchLocal(url, body, {
        "content-type": "application/json",
        ...(secret === null ? {} : { [SECRET_TOKEN_HEADER]: secret }),
      });
    let updateId = 700_000_000;
    let messageId = 1000;
    const valid = async (name: string) => {
      const text = `valid after ${name}`;
      const body = JSON.stringify({
        update_id: ++updateId,
        message: privateMessage(ALICE, ++messageId, text),
      });
      expect((await post(body)).status, `a valid update after ${name}`).toBe(200);
      expect(host.withText(text), `a valid update after ${name}`).toHaveLength(1);
    };
    return { host, post, valid, nextUpdateId: () => ++updateId };
  }

  it("answers 401 to a missing or wrong secret token, 413 to a big body, 400 to bodies that are no Update", async () => {
    const { host, post, valid } = await started();
    const update = JSON.stringify({ update_id: 1, message: privateMessage(ALICE, 1, "hi") });
    const secrets: Array<[string, string | null]> = [
      ["no secret token", null],
      ["an empty secret token", ""],
      ["a wrong secret token", "a-wrong-secret-token-of-32-chars"],
      ["a 9000-character secret token", "a".repeat(9_000)],
    ];
    for (const [name, secret] of secrets)
      await refused(host, name, 401, () => post(update, secret));
    const from = mark(host);
    const big = JSON.stringify({ update_id: 2, message: privateMessage(ALICE, 2, LONG.repeat(4)) });
    expect((await post(big)).status, "a body over maxBodyBytes").toBe(413);
    checkCase("a body over maxBodyBytes", host, from, true);
    for (const [name, body] of NOT_OBJECTS) await refused(host, name, 400, () => post(body));
    for (const [name, body] of TELEGRAM_UPDATE_CASES) {
      await refused(host, name, 400, () => post(JSON.stringify(body)));
    }
    await valid("refused requests");
  });

  it(
    "confirms (200) an update whose message has a field missing or of the wrong type, handing over nothing malformed",
    async () => {
      const { host, post, valid, nextUpdateId } = await started();
      const cases = fieldCases(telegramBase(), TELEGRAM_FIELDS);
      expect(cases.length).toBeGreaterThan(150);
      for (const c of cases) {
        const from = mark(host);
        const body = { ...(c.payload as Record<string, unknown>), update_id: nextUpdateId() };
        const answer = await post(JSON.stringify(body));
        // Telegram redelivers anything but a 2xx: a malformed update is confirmed, and logged.
        expect(answer.status, `${c.name}: ${answer.body}`).toBe(200);
        checkCase(c.name, host, from, c.mustDrop);
        await valid(c.name);
      }
    },
    LONG_TEST_MS,
  );
});

describe("Telegram long polling: malformed getUpdates results", () => {
  useTelegramApi();
  async function started() {
    const api = new FakeTelegram();
    cleanups.push(async () => api.close());
    const plugin: TelegramChannel = createTelegramChannel({
      token: TELEGRAM_TOKEN,
      polling: { timeoutSeconds: 5, baseDelayMs: 1, maxDelayMs: 5, disconnectAfterFailures: 3 },
      attachments: { inlineImageMaxBytes: 0 },
    });
    const host = new Host();
    await plugin.start(host.ctx(plugin.id));
    cleanups.push(async () => {
      host.controller.abort();
      await plugin.stop();
    });
    let messageId = 1000;
    /** A valid update: the host gets it, and every update before it is confirmed. */
    const valid = async (name: string) => {
      const text = `valid after ${name}`;
      api.push({ message: privateMessage(ALICE, ++messageId, text) });
      await waitFor(`a valid update after ${name}`, () => host.withText(text).length === 1);
      await waitFor(`${name}: every update confirmed`, () => api.pendingUpdates.length === 0);
      expect(host.withText(text), `a valid update after ${name}`).toHaveLength(1);
      expect(host.disconnects, `${name}: the channel reported itself disconnected`).toEqual([]);
    };
    return { api, host, valid };
  }

  it(
    "confirms updates whose message has a field missing or of the wrong type, handing over nothing malformed",
    async () => {
      const { api, host, valid } = await started();
      const cases = fieldCases(telegramBase(), TELEGRAM_FIELDS);
      for (const c of cases) {
        const from = mark(host);
        const { update_id: _ignored, ...update } = c.payload as Record<string, unknown>;
        api.push(update);
        await valid(c.name);
        checkCase(c.name, host, from, c.mustDrop, `valid after ${c.name}`);
      }
    },
    LONG_TEST_MS,
  );

  it("survives a getUpdates result that is not a list of Updates, and polls on", async () => {
    const { api, host, valid } = await started();
    const results: ReadonlyArray<readonly [string, unknown]> = [
      ["result = null", null],
      ["result = a string", "updates"],
      ["result = 42", 42],
      ["result = an object", { update_id: 5 }],
      ["result = [null]", [null]],
      ["result = [42]", [42]],
      ["result = ['x']", ["x"]],
      ["result = [[]]", [[]]],
      ["result = [{}] (no update_id)", [{}]],
      [
        "result = [{ update_id: 'x' }]",
        [{ update_id: "x", message: privateMessage(ALICE, 9, "x") }],
      ],
      [
        "result = [{ update_id: 1.5 }]",
        [{ update_id: 1.5, message: privateMessage(ALICE, 9, "x") }],
      ],
      ["result = [{ update_id: -1 }]", [{ update_id: -1, message: privateMessage(ALICE, 9, "x") }]],
      ["result = [{ update_id: 2^60 }]", [{ update_id: 2 ** 60 }]],
    ];
    for (const [name, result] of results) {
      const from = mark(host);
      api.script("getUpdates", { result });
      await valid(name);
      checkCase(name, host, from, true, `valid after ${name}`);
    }
  });
});

// ---------------------------------------------------------------- Slack

/** The documented fields of a Slack `message` event the channel reads. */
const SLACK_FIELDS: Field[] = [
  { path: "type", type: "string", rule: "required" },
  { path: "user", type: "string", rule: "required" },
  { path: "channel", type: "string", rule: "required" },
  { path: "ts", type: "string", rule: "required" },
  { path: "text", type: "string", rule: "optional" },
  { path: "subtype", type: "string", rule: "optional" },
  { path: "channel_type", type: "string", rule: "optional" },
  { path: "thread_ts", type: "string", rule: "optional" },
  { path: "parent_user_id", type: "string", rule: "optional" },
  { path: "client_msg_id", type: "string", rule: "optional" },
  { path: "bot_id", type: "string", rule: "optional" },
  { path: "hidden", type: "boolean", rule: "optional" },
  { path: "files", type: "array", rule: "optional" },
  { path: "files.0", type: "object", rule: "optional" },
  { path: "files.0.url_private_download", type: "string", rule: "optional" },
  { path: "files.0.mimetype", type: "string", rule: "optional" },
  { path: "files.0.size", type: "integer", rule: "optional" },
];

let slackTs = 1_735_689_600;
function slackBase(): Record<string, unknown> {
  const ts = `${++slackTs}.000100`;
  return {
    client_msg_id: `cm-${ts}`,
    type: "message",
    subtype: "file_share",
    channel: "C123ABC456",
    user: "U123ABC456",
    text: "look &lt;here&gt; <@U0OTHER01>",
    ts,
    thread_ts: `${slackTs - 100}.000100`,
    parent_user_id: "U0OTHER01",
    event_ts: ts,
    channel_type: "channel",
    files: [
      {
        id: "F0FILE0001",
        name: "cat.png",
        mimetype: "image/png",
        size: 1024,
        url_private_download: "https://files.slack.com/files-pri/T0/download/cat.png",
      },
    ],
  };
}

/** A malformed event with fresh ids, so the host's duplicate suppression plays no part. */
function freshSlackEvent(payload: unknown, n: number): unknown {
  if (typeof payload !== "object" || payload === null) return payload;
  const event = { ...(payload as Record<string, unknown>) };
  if (typeof event.client_msg_id === "string" && event.client_msg_id.startsWith("cm-"))
    event.client_msg_id = `cm-case-${n}`;
  return event;
}

describe("Slack Events API: malformed requests", () => {
  afterAll(() => closeFakeSlackApi());
  async function started(maxBodyBytes?: number) {
    const platform = new SlackHttpPlatform();
    cleanups.push(() => platform.close());
    const plugin = platform.attach(
      createSlackChannel({
        ...platform.channelOptions(),
        ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }),
      }),
    );
    const host = new Host();
    await plugin.start(host.ctx(plugin.id));
    cleanups.push(async () => {
      host.controller.abort();
      await plugin.stop();
    });
    const signed = (body: string) => {
      const timestamp = Math.floor(Date.now() / 1000);
      return platform.post(body, {
        "x-slack-request-timestamp": String(timestamp),
        "x-slack-signature": signSlackRequest(SIGNING_SECRET, timestamp, body),
      });
    };
    const valid = async (name: string) => {
      const text = `valid after ${name}`;
      const answer = await platform.send(eventCallback({ ...slackBase(), text }));
      expect(answer.status, `a valid event after ${name}`).toBe(200);
      expect(host.withText(text), `a valid event after ${name}`).toHaveLength(1);
    };
    return { platform, host, signed, valid };
  }

  it("answers 400 (not retried) to signed bodies that are not a JSON object", async () => {
    const { host, signed, valid } = await started();
    for (const [name, body] of NOT_OBJECTS) {
      const answer = await refused(host, name, 400, () => signed(body));
      expect(answer.headers["x-slack-no-retry"], name).toBe("1");
      await valid(name);
    }
  });

  it("answers 401 to missing, malformed, wrong and stale signatures, and 413 to a big body", async () => {
    const { platform, host, valid } = await started(4096);
    const body = JSON.stringify(eventCallback(slackBase()));
    const now = Math.floor(Date.now() / 1000);
    const good = signSlackRequest(SIGNING_SECRET, now, body);
    const headers: Array<[string, Record<string, string>]> = [
      ["no headers", {}],
      ["no timestamp", { "x-slack-signature": good }],
      ["no signature", { "x-slack-request-timestamp": String(now) }],
      [
        "a non-numeric timestamp",
        { "x-slack-request-timestamp": "now", "x-slack-signature": good },
      ],
      [
        "a v1= signature",
        { "x-slack-request-timestamp": String(now), "x-slack-signature": `v1=${good.slice(3)}` },
      ],
      [
        "a short signature",
        { "x-slack-request-timestamp": String(now), "x-slack-signature": "v0=abc" },
      ],
      [
        "a 9000-character signature",
        {
          "x-slack-request-timestamp": String(now),
          "x-slack-signature": `v0=${"a".repeat(9_000)}`,
        },
      ],
      [
        "another secret",
        {
          "x-slack-request-timestamp": String(now),
          "x-slack-signature": signSlackRequest("another-secret", now, body),
        },
      ],
      [
        "another timestamp",
        { "x-slack-request-timestamp": String(now - 1), "x-slack-signature": good },
      ],
      [
        "a stale request",
        {
          "x-slack-request-timestamp": String(now - 3600),
          "x-slack-signature": signSlackRequest(SIGNING_SECRET, now - 3600, body),
        },
      ],
    ];
    for (const [name, h] of headers) await refused(host, name, 401, () => platform.post(body, h));
    const from = mark(host);
    const big = JSON.stringify(eventCallback({ ...slackBase(), text: LONG }));
    const answer = await platform.post(big, {
      "x-slack-request-timestamp": String(now),
      "x-slack-signature": signSlackRequest(SIGNING_SECRET, now, big),
    });
    expect(answer.status, "a body over maxBodyBytes").toBe(413);
    checkCase("a body over maxBodyBytes", host, from, true);
    await valid("refused requests");
  });

  it("answers url_verification only with a string challenge", async () => {
    const { host, signed, valid } = await started();
    const ok = await signed(
      JSON.stringify({
        type: "url_verification",
        token: "t",
        challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
      }),
    );
    expect(ok).toMatchObject({
      status: 200,
      body: { challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" },
    });
    for (const [name, challenge] of VALUES.filter(([, v]) => typeof v !== "string")) {
      await refused(host, `challenge = ${name}`, 400, () =>
        signed(JSON.stringify({ type: "url_verification", challenge })),
      );
    }
    await valid("url_verification");
  });

  it(
    "answers 200 (ignored) or 400 (not retried) for an event with a field missing or of the wrong type",
    async () => {
      const { host, signed, valid } = await started();
      const cases: Case[] = [
        ...VALUES.map(
          ([label, value]): Case => ({
            name: `event = ${label}`,
            payload: value,
            mustDrop: true,
          }),
        ),
        { name: "event missing", payload: MISSING, mustDrop: true },
        ...fieldCases(slackBase(), SLACK_FIELDS),
      ];
      let n = 0;
      for (const c of cases) {
        const from = mark(host);
        const payload = eventCallback({});
        if (c.payload === MISSING) delete (payload as Record<string, unknown>).event;
        else (payload as Record<string, unknown>).event = freshSlackEvent(c.payload, ++n);
        const answer = await signed(JSON.stringify(payload));
        if (answer.status === 400) {
          expect(answer.headers["x-slack-no-retry"], c.name).toBe("1");
        } else {
          expect(answer.status, `${c.name}: ${JSON.stringify(answer.body)}`).toBe(200);
        }
        checkCase(c.name, host, from, c.mustDrop);
        await valid(c.name);
      }
    },
    LONG_TEST_MS,
  );
});

describe("Slack Socket Mode: malformed frames and events", () => {
  afterAll(() => closeFakeSlackApi());
  async function started() {
    const platform = await SlackSocketModePlatform.start();
    cleanups.push(() => platform.close());
    const plugin = createSlackChannel(platform.channelOptions());
    const host = new Host();
    await plugin.start(host.ctx(plugin.id));
    cleanups.push(async () => {
      host.controller.abort();
      await plugin.stop();
    });
    const valid = async (name: string) => {
      const text = `valid after ${name}`;
      const payload = eventCallback({ ...slackBase(), text });
      platform.server.deliver(payload);
      await waitFor(`a valid event after ${name}`, () => host.withText(text).length === 1);
      await waitFor(`${name}: the valid event acknowledged`, () =>
        platform.server.isAcked(payload.event_id),
      );
      expect(host.disconnects, `${name}: the connection was reported lost`).toEqual([]);
      expect(platform.server.connections, `${name}: the client reconnected`).toBe(1);
    };
    return { platform, host, valid };
  }

  it(
    "ignores frames that are not envelopes, keeps the connection, and takes the next event",
    async () => {
      const { platform, host, valid } = await started();
      const frames: ReadonlyArray<readonly [string, string]> = [
        ...NOT_OBJECTS.filter(([, body]) => body !== ""),
        ["an object without type", JSON.stringify({ envelope_id: "env-x1" })],
        ["type = 42", JSON.stringify({ type: 42, envelope_id: "env-x2", payload: {} })],
        ["type = null", JSON.stringify({ type: null, envelope_id: "env-x3" })],
        ["events_api without envelope_id or payload", JSON.stringify({ type: "events_api" })],
        [
          "events_api without payload",
          JSON.stringify({ type: "events_api", envelope_id: "env-a" }),
        ],
        ...VALUES.map(
          ([label, value]) =>
            [
              `events_api with payload = ${label}`,
              JSON.stringify({ type: "events_api", envelope_id: `env-p-${label}`, payload: value }),
            ] as const,
        ),
        ...VALUES.map(
          ([label, value]) =>
            [
              `events_api with payload.event = ${label}`,
              JSON.stringify({
                type: "events_api",
                envelope_id: `env-e-${label}`,
                payload: { ...eventCallback({}), event: value },
              }),
            ] as const,
        ),
        ...VALUES.map(
          ([label, value]) =>
            [
              `events_api with envelope_id = ${label}`,
              JSON.stringify({
                type: "events_api",
                envelope_id: value,
                payload: eventCallback({ ...slackBase(), text: `envelope_id = ${label}` }),
              }),
            ] as const,
        ),
        ...[
          "error",
          "disconnected",
          "connected",
          "slack_event",
          "ws_message",
          "close",
          "newListener",
        ].map(
          (type) =>
            [
              `an envelope of type "${type}"`,
              JSON.stringify({ type, envelope_id: `env-t-${type}`, payload: {} }),
            ] as const,
        ),
        ...["error", "disconnected", "message_changed"].map(
          (type) =>
            [
              `events_api with an event of type "${type}"`,
              JSON.stringify({
                type: "events_api",
                envelope_id: `env-et-${type}`,
                payload: eventCallback({ type, user: "U123ABC456", channel: "C1", ts: "1.2" }),
              }),
            ] as const,
        ),
        [
          "hello with a garbage body",
          JSON.stringify({ type: "hello", num_connections: "x", debug_info: 5 }),
        ],
        ["a binary frame", "\u0000\u0001binary"],
      ];
      for (const [name, frame] of frames) {
        const from = mark(host);
        const binary = name === "a binary frame";
        expect(platform.server.sendRaw(frame, { binary }), `${name}: sent`).toBe(true);
        await valid(name);
        // A well-formed message in an envelope without a usable envelope_id cannot be
        // acknowledged; it may be taken (the host suppresses Slack's redelivery of it).
        checkCase(
          name,
          host,
          from,
          !name.startsWith("events_api with envelope_id"),
          `valid after ${name}`,
        );
      }
    },
    LONG_TEST_MS,
  );

  it(
    "acknowledges events with a field missing or of the wrong type, handing over nothing malformed",
    async () => {
      const { platform, host, valid } = await started();
      const cases = fieldCases(slackBase(), SLACK_FIELDS);
      let n = 0;
      for (const c of cases) {
        const from = mark(host);
        const payload = eventCallback(freshSlackEvent(c.payload, ++n) as Record<string, unknown>);
        platform.server.deliver(payload);
        await valid(c.name);
        await waitFor(`${c.name}: acknowledged`, () => platform.server.isAcked(payload.event_id));
        checkCase(c.name, host, from, c.mustDrop, `valid after ${c.name}`);
      }
    },
    LONG_TEST_MS,
  );
});

// ---------------------------------------------------------------- Discord

/** The documented fields of a MESSAGE_CREATE the channel reads. */
const DISCORD_FIELDS: Field[] = [
  { path: "id", type: "string", rule: "required" },
  { path: "channel_id", type: "string", rule: "required" },
  { path: "author", type: "object", rule: "required" },
  { path: "author.id", type: "string", rule: "required" },
  { path: "author.username", type: "string", rule: "optional" },
  { path: "author.bot", type: "boolean", rule: "optional" },
  { path: "guild_id", type: "string", rule: "strict" },
  { path: "content", type: "string", rule: "optional" },
  { path: "type", type: "integer", rule: "optional" },
  { path: "channel_type", type: "integer", rule: "optional" },
  { path: "member", type: "object", rule: "optional" },
  { path: "member.nick", type: "string", rule: "optional" },
  { path: "mentions", type: "array", rule: "optional" },
  { path: "mentions.0", type: "object", rule: "optional" },
  { path: "mentions.0.id", type: "string", rule: "optional" },
  { path: "mention_roles", type: "array", rule: "optional" },
  { path: "attachments", type: "array", rule: "optional" },
  { path: "attachments.0.url", type: "string", rule: "optional" },
  { path: "attachments.0.size", type: "integer", rule: "optional" },
  { path: "attachments.0.content_type", type: "string", rule: "optional" },
  { path: "message_reference", type: "object", rule: "optional" },
  { path: "message_reference.message_id", type: "string", rule: "optional" },
  { path: "referenced_message", type: "object", rule: "optional" },
  { path: "referenced_message.author", type: "object", rule: "optional" },
  { path: "timestamp", type: "string", rule: "optional" },
];

describe("Discord gateway: malformed dispatches", () => {
  afterAll(() => closeDiscordMsw());
  async function started() {
    const host = new Host();
    const h = await startHarness({
      logger: host.ctx("discord").logger,
      receive: async (input) => {
        try {
          host.messages.push(normalizeInbound("discord", input));
        } catch (error) {
          return error as Error;
        }
        return { status: "accepted" };
      },
    });
    let n = 0;
    const valid = async (name: string) => {
      const text = `valid after ${name}`;
      await h.platform.inject({
        chatType: "group",
        chatId: "general",
        peer: { id: "u-1", name: "Ada" },
        text,
        messageId: `valid-${++n}`,
      });
      await waitFor(`a valid message after ${name}`, () => host.withText(text).length === 1);
      expect(h.disconnects, `${name}: the connection was reported lost`).toEqual([]);
    };
    return { h, host, valid };
  }

  it(
    "skips MESSAGE_CREATE payloads with a field missing or of the wrong type, and takes the next message",
    async () => {
      const { h, host, valid } = await started();
      const base = await h.platform.injectWith(
        {
          chatType: "group",
          chatId: "general",
          peer: { id: "u-2", name: "Grace" },
          text: "base <@u-3>",
          messageId: "base-1",
          mentions: ["u-3"],
          replyTo: { messageId: "m-0", text: "earlier", peerId: "u-3" },
          attachments: [
            {
              kind: "image",
              url: "https://cdn.discordapp.com/a.png",
              mediaType: "image/png",
              name: "a.png",
              size: 10,
            },
          ],
        },
        { raw: { member: { nick: "Countess", roles: [], joined_at: "2024-01-01T00:00:00.000Z" } } },
      );
      await waitFor("the base message", () => host.messages.length === 1);
      expect(base.guild_id).toBe(GUILD_ID);
      const cases: Case[] = [
        ...VALUES.map(
          ([label, value]): Case => ({ name: `d = ${label}`, payload: value, mustDrop: true }),
        ),
        ...fieldCases(base, DISCORD_FIELDS),
      ];
      let n = 0;
      for (const c of cases) {
        const from = mark(host);
        let payload = c.payload;
        if (typeof payload === "object" && payload !== null && !Array.isArray(payload)) {
          const record = payload as Record<string, unknown>;
          if (record.id === base.id) payload = { ...record, id: `case-${++n}` };
        }
        h.platform.gateway.dispatch("MESSAGE_CREATE", payload);
        await valid(c.name);
        checkCase(c.name, host, from, c.mustDrop, `valid after ${c.name}`);
      }
    },
    LONG_TEST_MS,
  );

  it(
    "ignores malformed payloads of the other dispatches it reads, and stays connected",
    async () => {
      const { h, host, valid } = await started();
      const types = [
        "READY",
        "RESUMED",
        "GUILD_CREATE",
        "GUILD_DELETE",
        "GUILD_ROLE_CREATE",
        "CHANNEL_CREATE",
        "THREAD_CREATE",
        "THREAD_DELETE",
        "THREAD_LIST_SYNC",
      ];
      const payloads: ReadonlyArray<readonly [string, unknown]> = [
        ...VALUES,
        [
          "an object with fields of the wrong type",
          { id: 42, channels: "x", threads: 5, roles: {}, user: [] },
        ],
        [
          "a list of garbage",
          { id: GUILD_ID, channels: [null, 1, "x", { id: 5 }], threads: [[]], roles: [null] },
        ],
      ];
      for (const type of types) {
        for (const [label, d] of payloads) {
          const name = `${type} with d = ${label}`;
          const from = mark(host);
          h.platform.gateway.dispatch(type, d);
          await valid(name);
          checkCase(name, host, from, true, `valid after ${name}`);
        }
      }
    },
    LONG_TEST_MS,
  );
});
