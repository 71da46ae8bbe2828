/**
 * The Discord channel against a fake Discord (a WebSocket gateway on 127.0.0.1 and the REST
 * API through msw): the channel conformance suite, and the README's example end to end.
 */
import { AgentRuntime, ChannelManager, createProviderChain, MemoryStore } from "@beamclaw/core";
import { channelConformanceSuite, createEchoProvider } from "@beamclaw/core/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createDiscordChannel } from "../src/discord/index.js";
import { cleanups, runCleanups, waitFor } from "./discord/harness.js";
import {
  BOT,
  closeDiscordMsw,
  preloadDiscordLibraries,
  startDiscordPlatform,
  TOKEN,
} from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(runCleanups);
afterAll(() => closeDiscordMsw());

channelConformanceSuite("DiscordChannel", {
  // The suite's thread cases run on its first chat type, direct: their thread is seeded in
  // the DM with "alice" (Discord has threads in guild channels only; guild threads are
  // tested in discord-inbound.test.ts and discord-rest.test.ts).
  platform: () => startDiscordPlatform({ threads: [{ id: "thread-9", dmWith: "alice" }] }),
  create: (platform) =>
    createDiscordChannel({ token: TOKEN, rest: { api: platform.api }, identifyIntervalMs: 0 }),
});

describe("the README example", () => {
  it("DMs from strangers get a pairing code; guild channels answer @-mentions, in the thread they came from", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: [] }),
      agents: [{ id: "main", model: "echo/any" }],
    });
    await runtime.start();
    const discord = createDiscordChannel({ token: TOKEN, rest: { api: platform.api } });
    const channels = new ChannelManager({
      runtime,
      channels: [
        { plugin: discord, dmPolicy: "pairing", groupPolicy: "open", requireMention: true },
      ],
    });
    await channels.start();
    cleanups.push(async () => {
      await channels.stop();
      await runtime.stop();
      await store.close();
    });
    expect(channels.status("discord").state).toBe("connected");

    await platform.inject({
      chatType: "direct",
      chatId: "u-1",
      peer: { id: "u-1", name: "Stranger" },
      text: "hi bot",
      messageId: "dm-1",
    });
    const pairing = await waitFor("the pairing code", () =>
      platform.outbound().find((o) => o.kind === "text" && o.target.chatType === "direct"),
    );
    expect(pairing.target.chatId).toBe("u-1");
    expect(pairing.kind === "text" && pairing.text).toMatch(/[A-Z2-9]{8}/);

    await platform.inject({
      chatType: "group",
      chatId: "general",
      threadId: "t-1",
      peer: { id: "u-2", name: "Ada" },
      text: "nobody asked the bot",
      messageId: "g-1",
    });
    await platform.inject({
      chatType: "group",
      chatId: "general",
      threadId: "t-1",
      peer: { id: "u-2", name: "Ada" },
      text: `<@${BOT.id}> ping 7`,
      messageId: "g-2",
      mentionsBot: true,
    });
    const reply = await waitFor("the reply", () =>
      platform.outbound().find((o) => o.kind === "text" && o.text.includes("ping 7")),
    );
    expect(reply.target).toEqual({ chatType: "group", chatId: "general", threadId: "t-1" });
    expect(
      platform.outbound().some((o) => o.kind === "text" && o.text.includes("nobody asked")),
    ).toBe(false);
  });
});
