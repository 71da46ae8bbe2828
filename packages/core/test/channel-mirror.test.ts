/**
 * Deliveries mirrored into the conversation of the chat they land in (OpenClaw's "delivery
 * mirror"): `ChannelManager` remembers which session each chat's messages go to, and
 * `deliver(..., { mirror: true })` injects the delivered text into that session, so that when
 * the user answers a cron announcement in the chat, the agent knows what they answer. The
 * in-memory platform of `@beamclaw/core/testing`, a real `AgentRuntime` over a `MemoryStore`,
 * scripted models.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  type ChannelLogger,
  ChannelManager,
  type ChannelSettings,
  type ChannelTarget,
  createProviderChain,
  type KvSetOptions,
  MemoryStore,
} from "../src/index.js";
import {
  createMemoryPlatform,
  createScriptedProvider,
  type MemoryPlatform,
  type PlatformInbound,
  type ScriptEntry,
} from "../src/testing/index.js";
import { deferred, transcriptOf, waitFor } from "./support.js";

const DAY_MS = 24 * 60 * 60 * 1000;
const ANNOUNCEMENT = "Your daily summary: 3 new issues, one of them urgent.";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface LogLine {
  level: "warn" | "error";
  message: string;
  fields: Record<string, unknown> | undefined;
}

interface Setup {
  script?: ScriptEntry[];
  settings?: ChannelSettings;
  store?: MemoryStore;
  /** The manager's clock. */
  now?: () => number;
}

async function setup(options: Setup = {}) {
  const store = options.store ?? new MemoryStore();
  await store.open();
  const provider = createScriptedProvider({ id: "scripted", responses: options.script ?? [] });
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({
      providers: [provider],
      models: [],
      retry: { maxAttempts: 1 },
    }),
    agents: [{ id: "main", model: "scripted/m" }],
  });
  await runtime.start();
  const platform = createMemoryPlatform({ capabilities: { typing: false } });
  const logs: LogLine[] = [];
  const logger: ChannelLogger = {
    debug() {},
    info() {},
    warn: (message, fields) => logs.push({ level: "warn", message, fields }),
    error: (message, fields) => logs.push({ level: "error", message, fields }),
  };
  const manager = new ChannelManager({
    runtime,
    channels: [
      {
        plugin: platform.createChannel(),
        dmPolicy: "open",
        groupPolicy: "open",
        requireMention: false,
        dmScope: "per-channel-peer",
        ...options.settings,
      },
    ],
    logger,
    reconnect: { baseDelayMs: 10, maxDelayMs: 50 },
    outbox: { baseDelayMs: 10, maxDelayMs: 40 },
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  await manager.start();
  let down = false;
  const shutdown = async () => {
    if (down) return;
    down = true;
    await manager.stop();
    await runtime.stop();
    await platform.close();
  };
  cleanups.push(async () => {
    await shutdown();
    await store.close();
  });
  return { store, provider, runtime, platform, manager, logs, shutdown };
}

let counter = 0;

function dm(text: string, peer = "alice"): PlatformInbound {
  return {
    chatType: "direct",
    chatId: `dm-${peer}`,
    peer: { id: peer, name: peer },
    text,
    messageId: `m${++counter}`,
  };
}

function inRoom(text: string, threadId?: string): PlatformInbound {
  return {
    chatType: "group",
    chatId: "room-1",
    peer: { id: "bob", name: "Bob" },
    text,
    messageId: `m${++counter}`,
    ...(threadId === undefined ? {} : { threadId }),
  };
}

const aliceChat: ChannelTarget = { accountId: "default", chatType: "direct", chatId: "dm-alice" };
const room: ChannelTarget = { accountId: "default", chatType: "group", chatId: "room-1" };
const ALICE = "agent:main:memory:direct:alice";
const ROOM = "agent:main:memory:group:room-1";
const THREAD = "agent:main:memory:group:room-1:thread:t1";

function sentTexts(platform: MemoryPlatform): string[] {
  return platform.outbound().flatMap((o) => (o.kind === "text" ? [o.text] : []));
}

/** A session's transcript as `role:text` lines. */
async function transcript(store: MemoryStore, key: string): Promise<string[]> {
  const records = await store.transcripts.read(key, { limit: 100 });
  return transcriptOf(records.map((r) => r.entry.message as never));
}

/** Waits until a session's transcript has `count` entries, and returns them. */
function transcriptWith(store: MemoryStore, key: string, count: number): Promise<string[]> {
  return waitFor(`${count} entries in ${key}`, async () => {
    const lines = await transcript(store, key);
    return lines.length >= count && lines;
  });
}

/** A response that waits for `until` before its text. */
function held(text: string, until: Promise<void>): ScriptEntry {
  return {
    events: [
      { type: "response-start", model: "m" },
      { type: "wait", until },
      { type: "text-delta", text },
      { type: "finish", reason: "stop" },
    ],
  };
}

describe("the session of a chat", () => {
  it("is recorded when the chat's message is accepted: direct, group and thread, each its own", async () => {
    const { manager, platform, store } = await setup({
      script: [{ text: "hi Alice" }, { text: "hi room" }, { text: "hi thread" }],
    });
    expect(await manager.sessionOf("memory", aliceChat)).toBeUndefined();
    expect(await platform.inject(dm("hello"))).toMatchObject({ sessionKey: ALICE });
    expect(await platform.inject(inRoom("hello room"))).toMatchObject({ sessionKey: ROOM });
    expect(await platform.inject(inRoom("hello thread", "t1"))).toMatchObject({
      sessionKey: THREAD,
    });

    expect(await manager.sessionOf("memory", aliceChat)).toBe(ALICE);
    expect(await manager.sessionOf("memory", room)).toBe(ROOM);
    expect(await manager.sessionOf("memory", { ...room, threadId: "t1" })).toBe(THREAD);
    // Another chat, another thread or another account of the channel is not that chat.
    expect(await manager.sessionOf("memory", { ...aliceChat, chatId: "dm-bob" })).toBeUndefined();
    expect(await manager.sessionOf("memory", { ...room, threadId: "t2" })).toBeUndefined();
    expect(await manager.sessionOf("memory", { ...aliceChat, accountId: "work" })).toBeUndefined();
    // Durable, under the manager's `channels:` prefix.
    expect(await store.kv.keys("channels:chat-session:memory:")).toHaveLength(3);
  });

  it("is remembered for 90 days after the chat's last message", async () => {
    let storeClock = Date.now();
    const store = new MemoryStore({ now: () => storeClock });
    const { manager, platform } = await setup({ store, script: [{ text: "hi" }] });
    await platform.inject(dm("hello"));
    storeClock += 89 * DAY_MS;
    expect(await manager.sessionOf("memory", aliceChat)).toBe(ALICE);
    storeClock += 2 * DAY_MS;
    expect(await manager.sessionOf("memory", aliceChat)).toBeUndefined();
  });

  it("is written once for a busy chat, again when its session changes or a day has passed", async () => {
    let clock = Date.now();
    const store = new MemoryStore();
    const writes: Array<{ key: string; value: unknown; options: KvSetOptions | undefined }> = [];
    const set = store.kv.set.bind(store.kv);
    store.kv.set = (key, value, options) => {
      if (key.startsWith("channels:chat-session:")) writes.push({ key, value, options });
      return set(key, value, options);
    };
    const { manager, platform } = await setup({
      store,
      now: () => clock,
      script: ["one", "two", "three", "four", "five"],
    });
    await platform.inject(dm("one"));
    await platform.inject(dm("two"));
    await platform.inject(dm("three"));
    expect(writes).toHaveLength(1);
    expect(writes[0]!.value).toMatchObject({ sessionKey: ALICE });
    expect(writes[0]!.options).toEqual({ ttlMs: 90 * DAY_MS });

    clock += DAY_MS;
    await platform.inject(dm("four"));
    expect(writes).toHaveLength(2);

    // The chat's messages now go to another session: that is written at once.
    await manager.replace({
      plugin: platform.createChannel(),
      dmPolicy: "open",
      dmScope: "per-peer",
    });
    await waitFor("the channel again", () => manager.status("memory").state === "connected");
    expect(await platform.inject(dm("five"))).toMatchObject({
      sessionKey: "agent:main:direct:alice",
    });
    expect(writes).toHaveLength(3);
    expect(await manager.sessionOf("memory", aliceChat)).toBe("agent:main:direct:alice");
  });

  it("a write that fails is logged, and the message is still answered", async () => {
    const store = new MemoryStore();
    const set = store.kv.set.bind(store.kv);
    store.kv.set = (key, value, options) =>
      key.startsWith("channels:chat-session:")
        ? Promise.reject(new Error("disk full"))
        : set(key, value, options);
    const { manager, platform, logs } = await setup({ store, script: ["answered anyway"] });
    expect(await platform.inject(dm("hello"))).toMatchObject({ status: "accepted" });
    await waitFor("the reply", () => sentTexts(platform).includes("answered anyway"));
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: "warn",
        message: "could not record the session of a chat",
        fields: expect.objectContaining({ sessionKey: ALICE }),
      }),
    );
    expect(await manager.sessionOf("memory", aliceChat)).toBeUndefined();
  });
});

describe("deliver with mirror", () => {
  it("sends the message and injects its text, without a label, into the direct chat's session; the next request carries it", async () => {
    const { manager, platform, store, provider } = await setup({
      script: ["Hello Alice!", "The urgent one is #42."],
    });
    await platform.inject(dm("hello"));
    await waitFor("the reply", () => sentTexts(platform).includes("Hello Alice!"));

    const entryId = await manager.deliver(
      "memory",
      aliceChat,
      { text: `${ANNOUNCEMENT}\n` },
      { mirror: true },
    );
    expect(typeof entryId).toBe("string");
    await waitFor("the announcement in the chat", () =>
      sentTexts(platform).includes(`${ANNOUNCEMENT}\n`),
    );
    expect(await transcriptWith(store, ALICE, 3)).toEqual([
      "user:hello",
      "assistant:Hello Alice!",
      `assistant:${ANNOUNCEMENT}`,
    ]);
    const [note] = await store.transcripts.read(ALICE, { order: "desc", limit: 1 });
    expect(note!.entry.runId).toMatch(/^inject:/);
    // The note costs no model call.
    expect(provider.requests).toHaveLength(1);

    // The user answers the announcement in the chat: the model reads what it answers.
    await platform.inject(dm("which one is urgent?"));
    await waitFor("the answer", () => sentTexts(platform).includes("The urgent one is #42."));
    expect(transcriptOf(provider.requests[1]!.messages)).toEqual([
      "user:hello",
      "assistant:Hello Alice!",
      `assistant:${ANNOUNCEMENT}`,
      "user:which one is urgent?",
    ]);
  });

  it("a group chat's message goes to the group's session, a thread's to the thread's", async () => {
    const { manager, platform, store } = await setup({ script: ["room reply", "thread reply"] });
    await platform.inject(inRoom("hello room"));
    await platform.inject(inRoom("hello thread", "t1"));
    await transcriptWith(store, ROOM, 2);
    await transcriptWith(store, THREAD, 2);

    await manager.deliver("memory", room, { text: "Stand-up in 5 minutes." }, { mirror: true });
    await manager.deliver(
      "memory",
      { ...room, threadId: "t1" },
      { text: "The deploy finished." },
      { mirror: true },
    );
    expect((await transcriptWith(store, ROOM, 3)).at(-1)).toBe("assistant:Stand-up in 5 minutes.");
    expect((await transcriptWith(store, THREAD, 3)).at(-1)).toBe("assistant:The deploy finished.");
    // Each only once, and only where it was sent.
    await manager.stop();
    expect(await transcript(store, ROOM)).toEqual([
      "user:Bob: hello room",
      "assistant:room reply",
      "assistant:Stand-up in 5 minutes.",
    ]);
    expect(await transcript(store, THREAD)).toEqual([
      "user:Bob: hello thread",
      "assistant:thread reply",
      "assistant:The deploy finished.",
    ]);
  });

  it("injects nothing for a chat that never wrote, a media-only message, the session that wrote it, or without mirror", async () => {
    const { manager, platform, store } = await setup({ script: ["Hello Alice!"] });
    await platform.inject(dm("hello"));
    await transcriptWith(store, ALICE, 2);

    const stranger: ChannelTarget = { ...aliceChat, chatId: "dm-carol" };
    await manager.deliver("memory", stranger, { text: "Hi Carol." }, { mirror: true });
    await manager.deliver(
      "memory",
      aliceChat,
      { media: { kind: "image", url: "https://example.com/chart.png" } },
      { mirror: true },
    );
    await manager.deliver(
      "memory",
      aliceChat,
      { text: "An answer the session wrote itself." },
      { mirror: true, sourceSessionKey: ALICE },
    );
    await manager.deliver("memory", aliceChat, { text: "Not mirrored." });
    await waitFor("every delivery on the platform", () => platform.outbound().length === 5);
    // stop() waits for the mirrors in the background.
    await manager.stop();

    expect(await transcript(store, ALICE)).toEqual(["user:hello", "assistant:Hello Alice!"]);
    const { items } = await store.sessions.list();
    expect(items.map((s) => s.key)).toEqual([ALICE]);
  });

  it("another session's message is mirrored: sourceSessionKey only spares the chat's own session", async () => {
    const { manager, platform, store } = await setup({ script: ["Hello Alice!"] });
    await platform.inject(dm("hello"));
    await transcriptWith(store, ALICE, 2);
    await manager.deliver(
      "memory",
      aliceChat,
      { text: "A reply written in the operator's session." },
      { mirror: true, sourceSessionKey: "agent:main:operator" },
    );
    expect((await transcriptWith(store, ALICE, 3)).at(-1)).toBe(
      "assistant:A reply written in the operator's session.",
    );
  });

  it("never fails the delivery when the injection fails: a stopped runtime is logged", async () => {
    const { manager, platform, runtime, logs } = await setup({ script: ["Hello Alice!"] });
    await platform.inject(dm("hello"));
    await waitFor("the reply", () => sentTexts(platform).includes("Hello Alice!"));
    await runtime.stop();

    const entryId = await manager.deliver(
      "memory",
      aliceChat,
      { text: ANNOUNCEMENT },
      { mirror: true },
    );
    expect(typeof entryId).toBe("string");
    await waitFor("the announcement in the chat", () => sentTexts(platform).includes(ANNOUNCEMENT));
    const warning = await waitFor("the warning", () =>
      logs.find((l) => l.message.includes("could not be mirrored")),
    );
    expect(warning).toMatchObject({
      level: "warn",
      fields: {
        channel: "memory",
        sessionKey: ALICE,
        error: expect.objectContaining({ code: "NO_PROCESS" }),
      },
    });
  });

  it("waits for the session's active run without holding up the delivery: the note lands after the run's messages", async () => {
    const gate = deferred();
    const { manager, platform, store } = await setup({
      script: [{ text: "first" }, held("the long answer", gate.promise)],
    });
    await platform.inject(dm("hello"));
    await transcriptWith(store, ALICE, 2);
    await platform.inject(dm("a long question"));
    await transcriptWith(store, ALICE, 3);

    // The run is held: deliver resolves all the same, and the chat gets the message.
    await manager.deliver("memory", aliceChat, { text: ANNOUNCEMENT }, { mirror: true });
    await waitFor("the announcement in the chat", () => sentTexts(platform).includes(ANNOUNCEMENT));
    expect(await transcript(store, ALICE)).toEqual([
      "user:hello",
      "assistant:first",
      "user:a long question",
    ]);

    gate.resolve();
    expect(await transcriptWith(store, ALICE, 5)).toEqual([
      "user:hello",
      "assistant:first",
      "user:a long question",
      "assistant:the long answer",
      `assistant:${ANNOUNCEMENT}`,
    ]);
  });

  it("stop() does not wait for an injection waiting for a run; the session saves it after the run", async () => {
    const gate = deferred();
    const { manager, platform, store, runtime } = await setup({
      script: [held("the long answer", gate.promise)],
    });
    await platform.inject(dm("a long question"));
    await transcriptWith(store, ALICE, 1);
    await manager.deliver("memory", aliceChat, { text: ANNOUNCEMENT }, { mirror: true });
    await waitFor("the announcement in the chat", () => sentTexts(platform).includes(ANNOUNCEMENT));

    // Resolves while the run is still held.
    await manager.stop();
    expect(await transcript(store, ALICE)).toEqual(["user:a long question"]);

    gate.resolve();
    expect(await transcriptWith(store, ALICE, 3)).toEqual([
      "user:a long question",
      "assistant:the long answer",
      `assistant:${ANNOUNCEMENT}`,
    ]);
    expect(runtime.status).toBe("running");
  });
});
