/**
 * The LineChat channel: the channel conformance suite against a real LineChat server on
 * 127.0.0.1, then what is particular to it — a refused bot token, and a person on a raw TCP
 * connection (as with `nc`) talking to the agent through a ChannelManager.
 */
import net from "node:net";
import {
  AgentRuntime,
  type ChannelContext,
  ChannelManager,
  createProviderChain,
  MemoryStore,
} from "@beamclaw/core";
import { channelConformanceSuite, createEchoProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createLineChatChannel, startChatServer } from "../src/index.js";
import { startChatPlatform } from "./chat-platform.js";

channelConformanceSuite("LineChatChannel", {
  platform: () => startChatPlatform(),
  create: (platform) => createLineChatChannel({ port: platform.server.port, nick: "bot" }),
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A person on a raw TCP connection, reading lines as `nc` would show them. */
async function person(port: number, nick: string) {
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.setEncoding("utf8");
  const lines: string[] = [];
  let buffer = "";
  socket.on("data", (data: string) => {
    buffer += data;
    const parts = buffer.split("\n");
    buffer = parts.pop()!;
    lines.push(...parts);
  });
  cleanups.push(async () => {
    socket.destroy();
  });
  const waitForLine = async (pattern: RegExp) => {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (Date.now() > deadline)
        throw new Error(`no line like ${pattern} in ${JSON.stringify(lines)}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  await waitForLine(/Your nick\?/);
  socket.write(`${nick}\n`);
  await waitForLine(/^Hi /);
  return { say: (line: string) => socket.write(`${line}\n`), waitForLine, lines };
}

describe("LineChat specifics", () => {
  it("refuses to retry a bot token the server rejected (the host marks the channel failed)", async () => {
    const server = await startChatServer({ port: 0, botToken: "right" });
    cleanups.push(() => server.close());
    const plugin = createLineChatChannel({ port: server.port, token: "wrong" });
    const ctx: ChannelContext = {
      channel: plugin.id,
      config: {},
      logger: { debug() {}, info() {}, warn() {}, error() {} },
      signal: new AbortController().signal,
      receive: async () => ({ status: "accepted" }),
      disconnected() {},
    };
    const error = await plugin.start(ctx).catch((e: unknown) => e);
    expect(error).toMatchObject({ isRetryable: false });
    expect((error as Error).message).toMatch(/bad token/);
    await plugin.stop();
  });

  it("answers a person typing over TCP, in a DM and when mentioned in a room", async () => {
    const server = await startChatServer({ port: 0 });
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [createEchoProvider()], models: [] }),
      agents: [{ id: "main", model: "echo/any" }],
    });
    await runtime.start();
    const channels = new ChannelManager({
      runtime,
      channels: [
        {
          plugin: createLineChatChannel({ port: server.port }),
          dmPolicy: "open",
          groupPolicy: "open",
        },
      ],
    });
    await channels.start();
    cleanups.push(async () => {
      await channels.stop();
      await runtime.stop();
      await store.close();
      await server.close();
    });
    const ada = await person(server.port, "ada");
    ada.say("/msg bot hello bot");
    expect(await ada.waitForLine(/^\[dm\] bot: hello bot/)).toMatch(/\(m\d+\)$/);
    ada.say("nobody mentions the bot here");
    ada.say("@bot are you there?");
    expect(await ada.waitForLine(/^\[#general\] bot: ada: @bot are you there\?/)).toBeDefined();
    expect(ada.lines.some((l) => l.includes("bot: ada: nobody mentions"))).toBe(false);
  });
});
