/**
 * The examples printed in this package's README and in the Channels section of
 * `@beamclaw/core`'s README, kept runnable (port 0 instead of a fixed port).
 */
import { AgentRuntime, ChannelManager, createProviderChain, MemoryStore } from "@beamclaw/core";
import { createEchoProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createWebhookChannel, verifyWebhookSignature } from "../src/index.js";
import { SECRET, startWebhookPlatform } from "./webhook-platform.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function echoRuntime() {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [createEchoProvider()], models: [] }),
    agents: [{ id: "main", model: "echo/any" }],
  });
  await runtime.start();
  cleanups.push(async () => {
    await runtime.stop();
    await store.close();
  });
  return runtime;
}

async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("README examples", () => {
  it("the README's signed request carries a valid signature for the example secret", () => {
    const body =
      '{"type":"message","id":"msg-1","chat":{"type":"direct","id":"user-42"},"from":{"id":"user-42","name":"Ada"},"text":"hello"}';
    const header =
      "t=1735689600,v1=4deebf84f45a30bd44e6099d82977b2cf0a2dbeabfc9c4758744ed8a9fb87f6a";
    expect(() =>
      verifyWebhookSignature("an-example-secret-1234", body, header, { now: 1_735_689_600_000 }),
    ).not.toThrow();
  });

  it("the package README example answers a signed event with a signed callback", async () => {
    const runtime = await echoRuntime();
    const platform = await startWebhookPlatform();
    const webhook = platform.attach(
      createWebhookChannel({ secret: SECRET, callbackUrl: platform.callbackUrl, port: 0 }),
    );
    const channels = new ChannelManager({
      runtime,
      channels: [{ plugin: webhook, dmPolicy: "open" }],
    });
    await channels.start();
    cleanups.push(async () => {
      await channels.stop();
      await platform.close();
    });
    const answer = await platform.inject({
      chatType: "direct",
      chatId: "user-42",
      peer: { id: "user-42", name: "Ada" },
      text: "hello",
      messageId: "msg-1",
    });
    expect(answer).toMatchObject({
      status: 202,
      body: { status: "accepted", sessionKey: "agent:main:main" },
    });
    const reply = await until("the callback", () =>
      platform.callbacks.find((c) => c.event.type === "message.text"),
    );
    expect(reply.event).toMatchObject({
      type: "message.text",
      text: "hello",
      target: { chatId: "user-42" },
    });
  });

  it("the core README's Channels example lets a sender in with approvePairing", async () => {
    const runtime = await echoRuntime();
    const platform = await startWebhookPlatform();
    const plugin = platform.attach(
      createWebhookChannel({ secret: SECRET, callbackUrl: platform.callbackUrl, port: 0 }),
    );
    const channels = new ChannelManager({
      runtime,
      channels: [{ plugin, dmPolicy: "pairing", dmScope: "per-channel-peer" }],
    });
    await channels.start();
    cleanups.push(async () => {
      await channels.stop();
      await platform.close();
    });
    const first = await platform.inject({
      chatType: "direct",
      chatId: "u7",
      peer: { id: "u7" },
      text: "hi",
      messageId: "p-1",
    });
    expect(first.body).toMatchObject({ status: "pairing" });
    const notice = await until("the pairing code", () =>
      platform.callbacks.find(
        (c) => c.event.type === "message.text" && c.event.text.includes("pairing code"),
      ),
    );
    const code = /pairing code is (\w{8})/.exec(
      notice.event.type === "message.text" ? notice.event.text : "",
    )![1]!;
    await channels.approvePairing("webhook", code, "owner");
    const second = await platform.inject({
      chatType: "direct",
      chatId: "u7",
      peer: { id: "u7" },
      text: "hi again",
      messageId: "p-2",
    });
    expect(second.body).toMatchObject({
      status: "accepted",
      sessionKey: "agent:main:webhook:direct:u7",
    });
  });
});
