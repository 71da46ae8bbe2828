/**
 * Discord: when the gateway session cannot be resumed, the events missed in between are not
 * replayed by Discord; the channel fetches them over REST (`GET /channels/{id}/messages
 * ?after=`) for the channels that had activity — nothing is dropped — and skips what it
 * handed over before — nothing is doubled. Against the local fake gateway (INVALID_SESSION
 * `d: false`, a refused RESUME) and msw for REST, in Discord's documented payloads.
 */
import {
  AgentRuntime,
  type ChannelEntry,
  ChannelManager,
  type ChannelStateStore,
  createProviderChain,
  MemoryStore,
  NoProcessError,
} from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createDiscordChannel } from "../src/discord/index.js";
import { Op } from "./discord/fake-gateway.js";
import { cleanups, runCleanups, startHarness, waitFor } from "./discord/harness.js";
import {
  closeDiscordMsw,
  type DiscordPlatform,
  preloadDiscordLibraries,
  startDiscordPlatform,
  TOKEN,
} from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(runCleanups);
afterAll(() => closeDiscordMsw());

/** A message from Alice in guild channel room-1 (`group`) or in her DM with the bot. */
function post(platform: DiscordPlatform, where: "room" | "dm", text: string): string {
  const messageId = platform.snowflake();
  platform.post(
    where === "room"
      ? {
          chatType: "group",
          chatId: "room-1",
          peer: { id: "alice", name: "Alice" },
          text,
          messageId,
        }
      : {
          chatType: "direct",
          chatId: "alice",
          peer: { id: "alice", name: "Alice" },
          text,
          messageId,
        },
  );
  return messageId;
}

const listCalls = (platform: DiscordPlatform) =>
  platform.requests
    .filter((r) => r.method === "GET" && /^\/channels\/[^/]+\/messages$/.test(r.path))
    .map((r) => ({ path: r.path, after: r.query.get("after"), limit: r.query.get("limit") }));

const count = (list: string[], id: string) => list.filter((x) => x === id).length;

describe("Discord backfill after a session that cannot be resumed", () => {
  it("after INVALID_SESSION (d: false) fetches what was missed per channel, in order, and hands nothing over twice", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holding = true;
    let releaseFive!: () => void;
    const fiveHeld = new Promise<void>((resolve) => {
      releaseFive = resolve;
    });
    const h = await startHarness({
      plugin: { connectTimeoutMs: 1_500 },
      receive: async (input) => {
        if (input.text === "held" && holding) {
          holding = false;
          await held;
          // The connection ended under it: the context is stale, the message not taken.
          return new NoProcessError("stale context");
        }
        if (input.text === "five") await fiveHeld;
        return { status: "accepted" };
      },
    });
    const { platform } = h;
    const m1 = post(platform, "room", "one");
    const m2 = post(platform, "dm", "two");
    await waitFor("m1 and m2", () => h.taken.includes(m1) && h.taken.includes(m2));

    // m3 is received but not yet taken, m4 (later) is taken: then Discord ends the session.
    platform.gateway.behaviour.answerHandshakes = false;
    const m3 = post(platform, "room", "held");
    const m4 = post(platform, "room", "four");
    await waitFor("m4 taken, m3 in flight", () =>
      h.taken.includes(m4) && h.calls.some((c) => c.messageId === m3) ? true : undefined,
    );
    platform.gateway.invalidateSessions(false);
    release();
    await waitFor("the loss", () => h.disconnects.length === 1);

    // While the bot is away (its next IDENTIFY goes unanswered), people keep talking.
    const m5 = post(platform, "room", "five");
    const m6 = post(platform, "dm", "six");
    await waitFor("a failed reconnect", () => h.startErrors.length >= 1, 15_000);
    platform.gateway.behaviour.answerHandshakes = true;
    await waitFor("the new session", () => h.starts() === 2, 10_000);

    // While the backfill hands m5 over, m8 arrives live in the DM: it waits behind the
    // backfill, which fetches it from the DM's history too.
    await waitFor("m5 handed over", () => h.calls.some((c) => c.messageId === m5));
    const m8 = post(platform, "dm", "eight");
    releaseFive();
    await waitFor("the backfilled messages", () =>
      [m3, m5, m6, m8].every((id) => h.taken.includes(id)),
    );
    const m7 = post(platform, "room", "seven");
    await waitFor("the live message after the backfill", () => h.taken.includes(m7));

    // Every message once; each channel's in order.
    for (const id of [m1, m2, m3, m4, m5, m6, m7, m8]) expect(count(h.taken, id)).toBe(1);
    expect(
      count(
        h.calls.map((c) => c.messageId),
        m8,
      ),
    ).toBe(1);
    const room = h.taken.filter((id) => [m3, m5, m7].includes(id));
    expect(room).toEqual([m3, m5, m7]);
    expect(h.taken.indexOf(m6)).toBeLessThan(h.taken.indexOf(m8));
    expect(h.taken.indexOf(m8)).toBeLessThan(h.taken.indexOf(m7));
    // Backfilled messages are normalized like live ones.
    const five = h.calls.find((c) => c.messageId === m5)!;
    expect(five).toMatchObject({ chatType: "group", chatId: "room-1", text: "five" });
    const six = h.calls.find((c) => c.messageId === m6)!;
    expect(six).toMatchObject({ chatType: "direct", chatId: "alice", text: "six" });

    // One request per channel with activity: the room from just before the message still in
    // flight, the DM from its last message taken.
    expect(platform.gateway.count(Op.Resume)).toBe(0);
    expect(listCalls(platform)).toEqual([
      { path: "/channels/room-1/messages", after: (BigInt(m3) - 1n).toString(), limit: "100" },
      { path: "/channels/dm-alice/messages", after: m2, limit: "100" },
    ]);
  });

  it("after a refused RESUME fetches what Discord will not replay", async () => {
    const h = await startHarness();
    const { platform } = h;
    const m1 = post(platform, "room", "before");
    await waitFor("m1", () => h.taken.includes(m1));
    for (const session of platform.gateway.sessions.values()) session.ended = true;
    platform.gateway.drop();
    const m2 = post(platform, "room", "while away");
    await waitFor("the new session", () => h.starts() === 2, 10_000);
    await waitFor("m2", () => h.taken.includes(m2));
    expect(platform.gateway.count(Op.Resume)).toBe(1);
    expect(h.taken).toEqual([m1, m2]);
    expect(listCalls(platform)).toEqual([
      { path: "/channels/room-1/messages", after: m1, limit: "100" },
    ]);
  });

  it("does not fetch anything when the session resumes (Discord replays it)", async () => {
    const h = await startHarness();
    const { platform } = h;
    const m1 = post(platform, "room", "before");
    await waitFor("m1", () => h.taken.includes(m1));
    platform.gateway.drop();
    const m2 = post(platform, "room", "replayed");
    await waitFor("the resume", () => h.starts() === 2);
    await waitFor("m2", () => h.taken.includes(m2));
    expect(platform.gateway.count(Op.Resume)).toBe(1);
    expect(h.taken).toEqual([m1, m2]);
    expect(listCalls(platform)).toEqual([]);
  });

  it("goes on with the other channels when one cannot be read, and can be turned off", async () => {
    const h = await startHarness({ plugin: { backfill: { maxChannels: 5 } } });
    const { platform } = h;
    // The room had the latest activity: it is backfilled first.
    const m2 = post(platform, "dm", "dm message");
    const m1 = post(platform, "room", "room message");
    await waitFor("m1 and m2", () => h.taken.includes(m1) && h.taken.includes(m2));
    platform.answerNext("GET", /^\/channels\/room-1\/messages$/, {
      kind: "error",
      status: 403,
      body: { message: "Missing Access", code: 50001 },
    });
    platform.gateway.invalidateSessions(false);
    await waitFor("the loss", () => h.disconnects.length === 1);
    const m3 = post(platform, "dm", "missed dm");
    await waitFor("the new session", () => h.starts() === 2, 10_000);
    await waitFor("m3", () => h.taken.includes(m3));
    expect(listCalls(platform).map((c) => c.path)).toEqual([
      "/channels/room-1/messages",
      "/channels/dm-alice/messages",
    ]);

    const off = await startHarness({ plugin: { backfill: false } });
    const n1 = post(off.platform, "room", "first");
    await waitFor("n1", () => off.taken.includes(n1));
    off.platform.gateway.invalidateSessions(false);
    await waitFor("the new session", () => off.starts() === 2, 10_000);
    const n2 = post(off.platform, "room", "live");
    await waitFor("n2", () => off.taken.includes(n2));
    expect(listCalls(off.platform)).toEqual([]);
  });
});

/** A `ChannelStateStore` over a real MemoryStore's kv, counting its writes. */
async function memoryState() {
  const store = new MemoryStore();
  await store.open();
  cleanups.push(() => store.close());
  const writes: string[] = [];
  const key = (accountId: string, name: string) => `state:${accountId}:${name}`;
  const state: ChannelStateStore = {
    get: (accountId, name) => store.kv.get(key(accountId, name)),
    set: async (accountId, name, value) => {
      writes.push(name);
      await store.kv.set(key(accountId, name), value);
    },
    delete: (accountId, name) => store.kv.delete(key(accountId, name)),
  };
  return { store, state, writes };
}

describe("Discord backfill across restarts (ctx.state)", () => {
  it("a new instance fetches what was posted while the channel was stopped, once, and saves its position debounced", async () => {
    const { state, writes, store } = await memoryState();
    const first = await startHarness({ state, plugin: { backfill: { saveDelayMs: 200 } } });
    const { platform } = first;
    const m1 = post(platform, "room", "one");
    const m2 = post(platform, "dm", "two");
    // A burst: its position is saved in a write or two, not one per message.
    const burst = Array.from({ length: 10 }, (_, i) => post(platform, "room", `burst ${i}`));
    await waitFor("the burst", () => [m1, m2, ...burst].every((id) => first.taken.includes(id)));
    await waitFor("the debounced save", () => writes.length > 0, 10_000);
    expect(writes.length).toBeLessThan(burst.length);
    const last = burst.at(-1)!;
    const saved = () => store.kv.get("state:default:discord.backfill");
    for (let i = 0; !JSON.stringify((await saved()) ?? null).includes(last); i++) {
      if (i > 1_000) throw new Error("the position of the burst was never saved");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // What the backfill needs: per channel, the last message taken (and the guild).
    expect(await saved()).toEqual({
      v: 1,
      channels: [
        ["dm-alice", m2, null],
        ["room-1", last, expect.any(String)],
      ],
    });

    await first.stop();
    // Posted while no bot is connected: only in the channels' history.
    const m3 = post(platform, "room", "while stopped");
    const m4 = post(platform, "dm", "also while stopped");

    const second = await startHarness({ on: platform, state });
    await waitFor("the missed messages", () => [m3, m4].every((id) => second.taken.includes(id)));
    const m5 = post(platform, "room", "live again");
    await waitFor("a live message", () => second.taken.includes(m5));

    // Each message once, across both instances; the room's in order.
    const all = [...first.taken, ...second.taken];
    for (const id of [m1, m2, ...burst, m3, m4, m5]) expect(count(all, id)).toBe(1);
    expect(second.taken.filter((id) => id !== m4)).toEqual([m3, m5]);
    // Fetched from the last message taken of each channel, most recent activity first.
    expect(listCalls(platform)).toEqual([
      { path: "/channels/room-1/messages", after: last, limit: "100" },
      { path: "/channels/dm-alice/messages", after: m2, limit: "100" },
    ]);
    // Stopping saves at once (the default delay is 2 s): the new position is there.
    await second.stop();
    expect(await saved()).toEqual({
      v: 1,
      channels: [
        ["dm-alice", m4, null],
        ["room-1", m5, expect.any(String)],
      ],
    });
  });

  it("without saved state (or without ctx.state) a new instance fetches nothing", async () => {
    const { state } = await memoryState();
    const first = await startHarness();
    const { platform } = first;
    const m1 = post(platform, "room", "one");
    await waitFor("m1", () => first.taken.includes(m1));
    await first.stop();
    post(platform, "room", "lost without state");
    const second = await startHarness({ on: platform, state });
    const m3 = post(platform, "room", "live");
    await waitFor("m3", () => second.taken.includes(m3));
    expect(second.taken).toEqual([m3]);
    expect(listCalls(platform)).toEqual([]);
  });

  it("through a ChannelManager: a hot-reload `replace` and a restart of the process lose and double nothing", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({
        providers: [createScriptedProvider({ id: "demo", responses: Array(20).fill("ok") })],
      }),
      agents: [{ id: "main", model: "demo/any" }],
    });
    await runtime.start();
    const managers: ChannelManager[] = [];
    cleanups.push(async () => {
      for (const m of managers) await m.stop();
      await runtime.stop();
      await store.close();
    });
    /** Every message the plugin handed to the host, with the host's answer. */
    const handed: Array<{ id: string; status: string }> = [];
    const instance = () => {
      const plugin = createDiscordChannel({
        token: TOKEN,
        rest: { api: platform.api },
        identifyIntervalMs: 0,
        connectTimeoutMs: 1_500,
        backfill: { saveDelayMs: 100 },
      });
      // The real plugin, its context's `receive` recorded.
      const start = plugin.start.bind(plugin);
      plugin.start = (ctx) =>
        start({
          ...ctx,
          receive: async (input) => {
            const result = await ctx.receive(input);
            handed.push({ id: input.messageId, status: result.status });
            return result;
          },
        });
      return plugin;
    };
    const entry = (): ChannelEntry => ({
      plugin: instance(),
      dmPolicy: "open",
      groupPolicy: "open",
      requireMention: false,
    });
    const manager = new ChannelManager({
      runtime,
      channels: [entry()],
      reconnect: { baseDelayMs: 20, maxDelayMs: 100 },
    });
    managers.push(manager);
    await manager.start();
    const ids = () => handed.map((h) => h.id);
    const m1 = post(platform, "room", "one");
    const m2 = post(platform, "dm", "two");
    await waitFor("m1 and m2", () => [m1, m2].every((id) => ids().includes(id)));

    // A reload: the new instance cannot connect at first; meanwhile people talk.
    platform.gateway.behaviour.answerHandshakes = false;
    await manager.replace(entry());
    const m3 = post(platform, "room", "during the reload");
    const m4 = post(platform, "dm", "during the reload too");
    platform.gateway.behaviour.answerHandshakes = true;
    await waitFor("m3 and m4", () => [m3, m4].every((id) => ids().includes(id)), 10_000);

    // The process stops; a new one starts on the same store.
    await manager.stop();
    const m5 = post(platform, "room", "while the process was down");
    const next = new ChannelManager({
      runtime,
      channels: [entry()],
      reconnect: { baseDelayMs: 20, maxDelayMs: 100 },
    });
    managers.push(next);
    await next.start();
    await waitFor("m5", () => ids().includes(m5), 10_000);
    const m6 = post(platform, "room", "live");
    await waitFor("m6", () => ids().includes(m6));

    // Every message handed over once, and the host took each as new (not a duplicate).
    expect(handed.map((h) => h.id).sort()).toEqual([m1, m2, m3, m4, m5, m6].sort());
    expect(new Set(handed.map((h) => h.status))).toEqual(new Set(["accepted"]));
    expect(listCalls(platform).map((c) => c.path)).toEqual(
      expect.arrayContaining(["/channels/room-1/messages", "/channels/dm-alice/messages"]),
    );
  });
});
