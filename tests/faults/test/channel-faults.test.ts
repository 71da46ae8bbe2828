/**
 * A channel disconnects mid-reply. Two channels: a WebSocket client of the gateway that
 * vanishes while its answer streams, and a chat platform (core's `ChannelManager` with the
 * in-memory platform plugin, over `@beamclaw/store-fs`) whose connection drops after the first
 * part of a three-part reply. The rules: the run is not lost with its audience; the reply
 * reaches the user once it can, each part exactly once and in order; the gateway keeps
 * serving; no store file is corrupt.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChannelManager, type ChannelPlugin } from "@beamclaw/core";
import { createMemoryPlatform } from "@beamclaw/core/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeAllClients, GatewayClient, waitFor } from "./support/client.js";
import { corruptFiles } from "./support/files.js";
import { type ModelServer, startModelServer } from "./support/model-server.js";
import { startStack, stopAllStacks, TOKEN } from "./support/stack.js";

let dir: string;
let model: ModelServer;
const cleanups: Array<() => Promise<void>> = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "beamclaw-faults-channel-"));
  model = await startModelServer();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await closeAllClients();
  await stopAllStacks();
  await model.close();
  await rm(dir, { recursive: true, force: true });
});

describe("channels that disconnect mid-reply", () => {
  it("a WebSocket client that vanishes mid-reply loses nothing: the run completes, and on reconnect the whole answer is in the history and agent.wait reports it", async () => {
    const stack = await startStack({ model, store: dir });
    const key = "agent:main:main";
    const chunks = Array.from({ length: 40 }, (_, i) => `w${i} `);
    model.push({ kind: "text", chunks, delayMs: 10 });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    await client.request("chat.send", {
      sessionKey: key,
      message: "long one",
      idempotencyKey: "ws-1",
    });
    await client.waitEvent("chat", (p) => p.runId === "ws-1" && p.state === "delta");
    await client.terminate();

    const again = await GatewayClient.connect(stack.url, TOKEN);
    const waited = await again.request("agent.wait", { runId: "ws-1", timeoutMs: 10_000 });
    expect(waited.status).toBe("ok");
    const history = await again.request("chat.history", { sessionKey: key });
    expect(history.messages.map((m: { role: string }) => m.role)).toEqual(["user", "assistant"]);
    expect(history.messages[1].content[0].text).toBe(chunks.join(""));
    model.push({ kind: "text", chunks: ["still here"] });
    await again.request("chat.send", { sessionKey: key, message: "next", idempotencyKey: "ws-2" });
    expect((await again.chatEnd("ws-2")).payload.state).toBe("final");
    await again.close();
    await stack.stop();
    expect(await corruptFiles(dir)).toEqual([]);
  });

  it("a chat platform that drops its connection after the first part of a reply gets the other parts once it reconnects, each exactly once and in order", async () => {
    const stack = await startStack({ model, store: dir });
    const platform = createMemoryPlatform({ capabilities: { maxMessageLength: 40 } });
    // The connection drops right after the platform confirmed the reply's first part.
    let replyParts = 0;
    const plugin = platform.createChannel();
    const dropping: ChannelPlugin = {
      ...plugin,
      async sendText(target, text, options) {
        const sent = await plugin.sendText(target, text, options);
        if (++replyParts === 1) await platform.disconnect();
        return sent;
      },
    };
    const channels = new ChannelManager({
      runtime: stack.runtime,
      channels: [{ plugin: dropping, dmPolicy: "open" }],
      reconnect: { baseDelayMs: 50, maxDelayMs: 200 },
      outbox: { baseDelayMs: 20, maxDelayMs: 100 },
    });
    await channels.start();
    cleanups.push(() => channels.stop());

    const parts = [
      "First part of the answer, quite long.",
      "Second part, also long enough.",
      "Third and last part of it.",
    ];
    model.push({ kind: "text", chunks: [parts.join("\n\n")] });
    await platform.inject({
      chatType: "direct",
      chatId: "alice",
      peer: { id: "alice" },
      text: "tell me in three parts",
      messageId: "in-1",
    });
    await waitFor(
      "the whole reply",
      () => platform.outbound().filter((o) => o.kind === "text").length >= 3,
    );
    // A moment more, to catch a duplicate.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const texts = platform
      .outbound()
      .filter((o) => o.kind === "text")
      .map((o) => o.text);
    expect(texts.join(" ").replace(/\s+/g, " ")).toBe(parts.join(" "));
    expect(texts.length).toBeGreaterThanOrEqual(3);
    expect(new Set(texts).size).toBe(texts.length);
    expect(platform.connections).toBe(2);
    expect(await channels.outbox("memory").list()).toEqual([]);
    await channels.stop();
    await stack.stop();
    expect(await corruptFiles(dir)).toEqual([]);
  });
});
