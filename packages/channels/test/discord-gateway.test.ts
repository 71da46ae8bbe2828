/**
 * The Discord channel's gateway connection against a fake gateway (a WebSocket server on
 * 127.0.0.1 speaking Discord's documented protocol): IDENTIFY and its refusals, RESUME after
 * every kind of loss with the events missed replayed, INVALID_SESSION both ways,
 * RECONNECT, zombie connections, acknowledgement of what the host took, and a reconnect
 * storm that loses and duplicates nothing.
 */
import {
  AbortedError,
  AgentRuntime,
  AlreadyStartedError,
  type ChannelContext,
  ChannelManager,
  type ChannelPlugin,
  createProviderChain,
  type InboundMessageInput,
  MemoryStore,
  type ReceiveResult,
} from "@beamclaw/core";
import { createEchoProvider } from "@beamclaw/core/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createDiscordChannel, DiscordGatewayError, DiscordIntents } from "../src/discord/index.js";
import { Op } from "./discord/fake-gateway.js";
import { cleanups, runCleanups, silent, startHarness, waitFor } from "./discord/harness.js";
import {
  BOT,
  closeDiscordMsw,
  type DiscordPlatform,
  preloadDiscordLibraries,
  startDiscordPlatform,
  TOKEN,
} from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(runCleanups);
afterAll(() => closeDiscordMsw());

/** A message from alice in guild channel room-1. */
const say = (platform: DiscordPlatform, n: number, text = `message ${n}`) =>
  platform.inject({
    chatType: "group",
    chatId: "room-1",
    peer: { id: "alice", name: "Alice" },
    text,
    messageId: `m${n}`,
  });

/** The sequence number the fake gave the MESSAGE_CREATE of `messageId`. */
function sequenceOf(platform: DiscordPlatform, messageId: string): number {
  for (const session of platform.gateway.sessions.values()) {
    const event = session.events.find(
      (e) => e.t === "MESSAGE_CREATE" && (e.d as { id?: string }).id === messageId,
    );
    if (event?.s !== undefined && event.s !== null) return event.s;
  }
  throw new Error(`no MESSAGE_CREATE for ${messageId}`);
}

const resumes = (platform: DiscordPlatform) =>
  platform.gateway.frames.filter((f) => f.op === Op.Resume).map((f) => f.d as { seq: number });

/** A context that records what it receives (no restarts). */
function recordingContext(plugin: ChannelPlugin) {
  const controller = new AbortController();
  const received: InboundMessageInput[] = [];
  const ctx: ChannelContext = {
    channel: plugin.id,
    config: {},
    logger: silent,
    signal: controller.signal,
    async receive(input) {
      received.push(input);
      return { status: "accepted" };
    },
    disconnected() {},
  };
  return { ctx, controller, received };
}

describe("identifying", () => {
  it("identifies with the bot token and the GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES and MESSAGE_CONTENT intents, and knows its user once started", async () => {
    const { platform, plugin } = await startHarness();
    const identify = platform.gateway.frames.find((f) => f.op === Op.Identify)?.d as {
      token: string;
      intents: number;
      shard: [number, number];
      properties: Record<string, string>;
    };
    expect(identify.token).toBe(TOKEN);
    expect(identify.intents).toBe((1 << 0) | (1 << 9) | (1 << 12) | (1 << 15));
    expect(identify.shard).toEqual([0, 1]);
    expect(typeof identify.properties.os).toBe("string");
    expect(plugin.user).toEqual(BOT);
    expect(plugin.gatewayMethods.info!.handler(undefined, { scopes: [] })).toMatchObject({
      connected: true,
      user: BOT,
      resumable: true,
    });
  });

  it("does nothing on construction, takes a token pasted with its 'Bot ' prefix, and refuses a missing token or a bad option", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({ token: `Bot ${TOKEN}`, rest: { api: platform.api } });
    expect(platform.requests).toHaveLength(0);
    expect(platform.gateway.connections).toBe(0);
    const { ctx, controller } = recordingContext(plugin);
    await plugin.start(ctx);
    cleanups.push(async () => {
      controller.abort();
      await plugin.stop();
    });
    expect(plugin.user?.id).toBe(BOT.id);
    expect(() => createDiscordChannel({ token: "  " })).toThrow(/token/);
    expect(() => createDiscordChannel({ token: TOKEN, connectTimeoutMs: 0 })).toThrow(
      /connectTimeoutMs/,
    );
    expect(() =>
      createDiscordChannel({
        token: TOKEN,
        allowedMentions: { parse: ["all" as "users"] },
      }),
    ).toThrow(/allowedMentions/);
  });

  it("fails to start with a non-retryable error when Discord rejects the token over REST (401)", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({ token: "not-the-token", rest: { api: platform.api } });
    const { ctx } = recordingContext(plugin);
    const error = await plugin.start(ctx).catch((e: unknown) => e);
    expect(DiscordGatewayError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ isRetryable: false, statusCode: 401 });
    await plugin.stop();
    expect(platform.gateway.connections).toBe(0);
  });

  it("fails to start with a non-retryable error when the gateway rejects the token (close 4004)", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    platform.gateway.behaviour.token = "another-token";
    const plugin = createDiscordChannel({ token: TOKEN, rest: { api: platform.api } });
    const { ctx } = recordingContext(plugin);
    const error = await plugin.start(ctx).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "DISCORD_GATEWAY_ERROR",
      isRetryable: false,
      closeCode: 4004,
    });
    await plugin.stop();
  });

  it("names the Message Content intent when Discord refuses it (close 4014), and starts without it when it is left out", async () => {
    const platform = await startDiscordPlatform({ privilegedIntents: false });
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({ token: TOKEN, rest: { api: platform.api } });
    const { ctx } = recordingContext(plugin);
    const error = await plugin.start(ctx).catch((e: unknown) => e);
    expect(error).toMatchObject({ isRetryable: false, closeCode: 4014 });
    expect((error as Error).message).toMatch(/Message Content intent/);
    await plugin.stop();

    const withoutContent = createDiscordChannel({
      token: TOKEN,
      rest: { api: platform.api },
      identifyIntervalMs: 0,
      intents: DiscordIntents.Guilds | DiscordIntents.GuildMessages | DiscordIntents.DirectMessages,
    });
    const second = recordingContext(withoutContent);
    await withoutContent.start(second.ctx);
    cleanups.push(async () => {
      second.controller.abort();
      await withoutContent.stop();
    });
    expect(withoutContent.user?.id).toBe(BOT.id);
  });

  it("fails a start that gets no READY within connectTimeoutMs with a retryable error, leaving no socket open", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    platform.gateway.behaviour.answerHandshakes = false;
    const plugin = createDiscordChannel({
      token: TOKEN,
      rest: { api: platform.api },
      connectTimeoutMs: 150,
    });
    const { ctx } = recordingContext(plugin);
    const error = await plugin.start(ctx).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "DISCORD_GATEWAY_ERROR", isRetryable: true });
    expect((error as Error).message).toMatch(/no READY or RESUMED/);
    await waitFor("the socket to close", () => platform.gateway.connections === 0);
    await plugin.stop();
  });

  it("spaces IDENTIFYs by identifyIntervalMs across restarts (Discord allows one per 5 s per bucket)", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({
      token: TOKEN,
      rest: { api: platform.api },
      identifyIntervalMs: 300,
    });
    const first = recordingContext(plugin);
    // Taken before the first IDENTIFY: the second may come no sooner than 300 ms after it.
    const firstAt = Date.now();
    await plugin.start(first.ctx);
    await plugin.stop(); // a normal close: the next start must identify
    const second = recordingContext(plugin);
    await plugin.start(second.ctx);
    cleanups.push(async () => {
      second.controller.abort();
      await plugin.stop();
    });
    // (A timer may fire a millisecond early by Date.now(); never more.)
    expect(Date.now() - firstAt).toBeGreaterThanOrEqual(295);
    expect(platform.gateway.count(Op.Identify)).toBe(2);
  });
});

describe("stopping and resuming", () => {
  it("stop closes with 1000, so Discord ends the session, and the next start identifies afresh", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({
      token: TOKEN,
      rest: { api: platform.api },
      identifyIntervalMs: 0,
    });
    const first = recordingContext(plugin);
    await plugin.start(first.ctx);
    await plugin.stop();
    await plugin.stop(); // twice is harmless
    await waitFor("the close", () => platform.gateway.closeCodes.length === 1);
    expect(platform.gateway.closeCodes).toEqual([1000]);
    const second = recordingContext(plugin);
    await plugin.start(second.ctx);
    cleanups.push(async () => {
      second.controller.abort();
      await plugin.stop();
    });
    expect(platform.gateway.count(Op.Identify)).toBe(2);
    expect(platform.gateway.count(Op.Resume)).toBe(0);
  });

  it("a second start() while the first is under way is refused with AlreadyStartedError; one connection is made", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({ token: TOKEN, rest: { api: platform.api } });
    const first = recordingContext(plugin);
    const second = recordingContext(plugin);
    cleanups.push(async () => {
      first.controller.abort();
      second.controller.abort();
      await plugin.stop();
    });
    const starting = plugin.start(first.ctx);
    const refused = await plugin.start(second.ctx).catch((e: unknown) => e);
    await starting;
    expect(AlreadyStartedError.isInstance(refused)).toBe(true);
    expect(platform.gateway.connections).toBe(1);
    await plugin.stop();
    await waitFor("no socket left", () => platform.gateway.connections === 0);
  });

  it("stop() while start() is under way ends the start with AbortedError and connects nothing; a later start connects", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const plugin = createDiscordChannel({ token: TOKEN, rest: { api: platform.api } });
    const first = recordingContext(plugin);
    const starting = plugin.start(first.ctx).catch((e: unknown) => e);
    await plugin.stop();
    expect(AbortedError.isInstance(await starting)).toBe(true);
    expect(platform.gateway.count(Op.Identify)).toBe(0);
    expect(platform.gateway.connections).toBe(0);
    const second = recordingContext(plugin);
    await plugin.start(second.ctx);
    cleanups.push(async () => {
      second.controller.abort();
      await plugin.stop();
    });
    expect(platform.gateway.count(Op.Identify)).toBe(1);
  });

  it("a second stop() while the first waits for a message being handed to the host resolves only once the channel stopped", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let answered = false;
    const h = await startHarness({
      receive: async () => {
        await held;
        answered = true;
        return { status: "accepted" };
      },
    });
    cleanups.push(async () => release());
    await say(h.platform, 1);
    await waitFor("m1 handed to the host", () => h.calls.length === 1);

    const first = h.plugin.stop().then(() => answered);
    const second = h.plugin.stop().then(() => answered);
    // The host answers on a later turn of the event loop: a stop that does not wait for the
    // channel to stop has resolved by then.
    setImmediate(release);
    // Each stop resolved once the message was taken (and only then was the session closed).
    expect(await second).toBe(true);
    expect(await first).toBe(true);
    expect(h.taken).toEqual(["m1"]);
    await waitFor("the close", () => h.platform.gateway.closeCodes.length === 1);
    expect(h.platform.gateway.closeCodes).toEqual([1000]);
    // Stopped: a new start connects.
    const again = recordingContext(h.plugin);
    await h.plugin.start(again.ctx);
    cleanups.push(async () => {
      again.controller.abort();
      await h.plugin.stop();
    });
    expect(h.platform.gateway.count(Op.Identify)).toBe(2);
  });

  it("after a dropped connection, resumes from the last event the host took and receives what was missed, once", async () => {
    const h = await startHarness();
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
    h.platform.gateway.drop();
    // Sent while the bot is away: Discord keeps them for the resume.
    await say(h.platform, 2);
    await say(h.platform, 3);
    await waitFor("m2 and m3", () => h.taken.length === 3);
    expect(h.taken).toEqual(["m1", "m2", "m3"]);
    expect(h.disconnects).toHaveLength(1);
    expect(DiscordGatewayError.isInstance(h.disconnects[0])).toBe(true);
    expect(resumes(h.platform)).toEqual([
      expect.objectContaining({ seq: sequenceOf(h.platform, "m1") }),
    ]);
    expect(h.platform.gateway.count(Op.Identify)).toBe(1);
  });

  it("reconnects and resumes when Discord sends RECONNECT (op 7), closing with the resumable code 4200", async () => {
    const h = await startHarness();
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
    h.platform.gateway.requestReconnect();
    await say(h.platform, 2);
    await waitFor("the restart", () => h.starts() === 2);
    await waitFor("m2", () => h.taken.includes("m2"));
    await waitFor("the close", () => h.platform.gateway.closeCodes.length === 1);
    expect(h.platform.gateway.closeCodes).toEqual([4200]);
    expect(h.platform.gateway.count(Op.Resume)).toBe(1);
    expect(h.platform.gateway.count(Op.Identify)).toBe(1);
    expect(h.taken).toEqual(["m1", "m2"]);
  });

  it("resumes on the same socket after INVALID_SESSION that may be resumed (d: true), without reporting a loss", async () => {
    const h = await startHarness();
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
    h.platform.gateway.invalidateSessions(true);
    await waitFor("the RESUME", () => h.platform.gateway.count(Op.Resume) === 1);
    await say(h.platform, 2);
    await waitFor("m2", () => h.taken.includes("m2"));
    expect(h.disconnects).toHaveLength(0);
    expect(h.taken).toEqual(["m1", "m2"]);
  });

  it("identifies afresh after INVALID_SESSION that may not be resumed (d: false)", async () => {
    const h = await startHarness();
    h.platform.gateway.invalidateSessions(false);
    await waitFor("a second IDENTIFY", () => h.platform.gateway.count(Op.Identify) === 2);
    await waitFor("the restart", () => h.starts() === 2);
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
    expect(h.platform.gateway.count(Op.Resume)).toBe(0);
    expect(h.platform.gateway.closeCodes).toContain(1000);
  });

  it("identifies afresh when Discord refuses the RESUME (INVALID_SESSION d: false)", async () => {
    const h = await startHarness();
    for (const session of h.platform.gateway.sessions.values()) session.ended = true;
    h.platform.gateway.drop();
    await waitFor("a second IDENTIFY", () => h.platform.gateway.count(Op.Identify) === 2);
    await waitFor("the restart", () => h.starts() === 2);
    expect(h.platform.gateway.count(Op.Resume)).toBe(1);
    expect(h.startErrors).toHaveLength(1);
    expect(h.startErrors[0]).toMatchObject({ isRetryable: true });
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
  });

  it("treats a connection whose heartbeats go unacknowledged as lost (a zombie), and resumes", async () => {
    const h = await startHarness({ platform: { heartbeatIntervalMs: 40 } });
    h.platform.gateway.behaviour.ackHeartbeats = false;
    await waitFor("the loss", () => h.disconnects.length === 1);
    h.platform.gateway.behaviour.ackHeartbeats = true;
    await waitFor("the resume", () => h.starts() === 2);
    expect(h.platform.gateway.closeCodes).toContain(4200);
    expect(h.platform.gateway.count(Op.Resume)).toBe(1);
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
  });

  it("heartbeats carry the sequence of the last event the host took", async () => {
    const h = await startHarness({ platform: { heartbeatIntervalMs: 30 } });
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
    const heartbeatsBefore = h.platform.gateway.count(Op.Heartbeat);
    await waitFor(
      "two more heartbeats",
      () => h.platform.gateway.count(Op.Heartbeat) >= heartbeatsBefore + 2,
    );
    const last = h.platform.gateway.frames.filter((f) => f.op === Op.Heartbeat).at(-1);
    expect(last?.d).toBe(sequenceOf(h.platform, "m1"));
  });

  it("a message the host could not take is replayed after the reconnect; the ones it took are not", async () => {
    let failed = false;
    const h = await startHarness({
      receive: (input) => {
        if (input.messageId === "m2" && !failed) {
          failed = true;
          return new Error("the store is unavailable");
        }
        return { status: "accepted" };
      },
    });
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
    await say(h.platform, 2);
    await waitFor("the restart", () => h.starts() === 2);
    await say(h.platform, 3);
    await waitFor("m2 and m3", () => h.taken.length === 3);
    expect(h.taken).toEqual(["m1", "m2", "m3"]);
    expect(h.calls.map((c) => c.messageId)).toEqual(["m1", "m2", "m2", "m3"]);
    expect(resumes(h.platform)).toEqual([
      expect.objectContaining({ seq: sequenceOf(h.platform, "m1") }),
    ]);
  });

  it("acknowledges messages it skips (its own, other bots', webhooks', system messages): none is replayed", async () => {
    const h = await startHarness();
    const base = { chatType: "group" as const, chatId: "room-1", peer: { id: "alice" }, text: "x" };
    await h.platform.injectWith(
      { ...base, messageId: "own" },
      { raw: { author: { ...BOT, bot: true } } },
    );
    await h.platform.injectWith(
      { ...base, messageId: "other-bot" },
      { raw: { author: { id: "200", username: "otherbot", bot: true } } },
    );
    await h.platform.injectWith({ ...base, messageId: "hook" }, { raw: { webhook_id: "300" } });
    await h.platform.injectWith({ ...base, messageId: "joined" }, { raw: { type: 7 } });
    await say(h.platform, 1);
    await waitFor("m1", () => h.taken.includes("m1"));
    h.platform.gateway.drop();
    await say(h.platform, 2);
    await waitFor("m2", () => h.taken.includes("m2"));
    expect(h.calls.map((c) => c.messageId)).toEqual(["m1", "m2"]);
    expect(resumes(h.platform)[0]?.seq).toBe(sequenceOf(h.platform, "m1"));
  });

  it("takes other bots' messages when allowBots is set, never its own", async () => {
    const h = await startHarness({ plugin: { allowBots: true } });
    const base = { chatType: "group" as const, chatId: "room-1", peer: { id: "alice" }, text: "x" };
    await h.platform.injectWith(
      { ...base, messageId: "own" },
      { raw: { author: { ...BOT, bot: true } } },
    );
    await h.platform.injectWith(
      { ...base, messageId: "other-bot" },
      { raw: { author: { id: "200", username: "otherbot", bot: true } } },
    );
    await waitFor("the other bot's message", () => h.taken.includes("other-bot"));
    expect(h.calls.map((c) => c.messageId)).toEqual(["other-bot"]);
  });
});

describe("a reconnect storm", () => {
  it("20 dropped connections while 80 messages arrive: every message is taken exactly once, in order", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: ["echo/any"] }),
      agents: [{ id: "main", model: "echo/any" }],
    });
    await runtime.start();
    const discord = createDiscordChannel({
      token: TOKEN,
      rest: { api: platform.api },
      identifyIntervalMs: 0,
    });
    // The host's view: every receive and its answer, in the order they resolved.
    const answers: Array<{ messageId: string; status: ReceiveResult["status"] }> = [];
    const watched: ChannelPlugin = {
      specificationVersion: "v1",
      id: discord.id,
      meta: discord.meta,
      capabilities: discord.capabilities,
      start: (ctx) =>
        discord.start({
          ...ctx,
          receive: async (input) => {
            const result = await ctx.receive(input);
            answers.push({ messageId: input.messageId, status: result.status });
            return result;
          },
          disconnected: (error) => ctx.disconnected(error),
        }),
      stop: () => discord.stop(),
      sendText: (target, text, options) => discord.sendText(target, text, options),
      sendMedia: (target, media, options) => discord.sendMedia(target, media, options),
      edit: (target, id, text, options) => discord.edit(target, id, text, options),
      typing: (target, options) => discord.typing(target, options),
      react: (target, id, emoji, options) => discord.react(target, id, emoji, options),
    };
    const manager = new ChannelManager({
      runtime,
      channels: [
        {
          plugin: watched,
          groupPolicy: "open",
          requireMention: false,
          dmPolicy: "open",
        },
      ],
      reconnect: { baseDelayMs: 5, maxDelayMs: 20 },
    });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
    });

    const total = 80;
    const drops = 20;
    const kinds = [
      () => platform.gateway.drop(), // the network: no close frame (1006)
      () => platform.gateway.closeWith(4000, "Unknown error"), // Discord: reconnect and resume
      () => platform.gateway.requestReconnect(), // RECONNECT (op 7)
    ];
    let dropped = 0;
    let lastDropped: unknown = null;
    for (let n = 1; n <= total; n++) {
      await say(platform, n, `storm ${n}`);
      if (n % 4 === 0 && dropped < drops) {
        // Each drop hits a new live connection: the last one came back (resumed) first.
        const session = await waitFor("a new connection to drop", () => {
          const live = platform.gateway.connectedSession();
          return live !== undefined && live.socket !== lastDropped ? live : undefined;
        });
        lastDropped = session.socket;
        kinds[dropped % kinds.length]!();
        dropped++;
      }
      // Let the connection come and go between messages.
      await new Promise<void>((resolve) => setTimeout(resolve, n % 3 === 0 ? 3 : 0));
    }
    await waitFor("every message", () => answers.length >= total, 15_000);
    // A moment more: a duplicate would show up now.
    await new Promise<void>((resolve) => setTimeout(resolve, 100));

    expect(dropped).toBe(drops);
    expect(answers.map((a) => a.messageId)).toEqual(
      Array.from({ length: total }, (_, i) => `m${i + 1}`),
    );
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set(["accepted"]));
    // It resumed every time: one session throughout.
    expect(platform.gateway.count(Op.Identify)).toBe(1);
    expect(platform.gateway.count(Op.Resume)).toBeGreaterThanOrEqual(drops);
    expect(manager.status(discord.id).state).toBe("connected");
  });
});
