/**
 * A running `ChannelManager` changed live (what a reload of `channels.*` does): `add` starts
 * one more channel, `replace` restarts one channel with new settings — the others keep their
 * connection, a reply in progress still arrives — and `remove` stops one. And the
 * `channels` section of the configuration schema.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  ChannelManager,
  ChannelNotFoundError,
  ConfigError,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  NoProcessError,
  parseConfig,
} from "../src/index.js";
import {
  createEchoProvider,
  createMemoryPlatform,
  createScriptedProvider,
  type MemoryPlatform,
} from "../src/testing/index.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

async function runtimeWith(provider = createEchoProvider()) {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [
      { id: "main", model: `${provider.id}/m` },
      { id: "ops", model: `${provider.id}/m` },
    ],
  });
  await runtime.start();
  return { store, runtime };
}

function platform(channelId: string): MemoryPlatform {
  const p = createMemoryPlatform({ channelId, capabilities: { typing: false } });
  cleanups.push(() => p.close());
  return p;
}

const dm = (p: MemoryPlatform, text: string, messageId: string, peer = "alice") =>
  p.inject({ chatType: "direct", chatId: peer, peer: { id: peer }, text, messageId });

const texts = (p: MemoryPlatform) =>
  p.outbound().flatMap((o) => (o.kind === "text" ? [o.text] : []));

describe("a running ChannelManager changed live", () => {
  it("adds, replaces and removes channels one at a time; the others stay connected", async () => {
    const { store, runtime } = await runtimeWith();
    const alpha = platform("alpha");
    const beta = platform("beta");
    const manager = new ChannelManager({
      runtime,
      channels: [{ plugin: alpha.createChannel(), dmPolicy: "open" }],
    });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
    });

    await manager.add({ plugin: beta.createChannel(), dmPolicy: "open" });
    expect(manager.channelIds).toEqual(["alpha", "beta"]);
    expect(manager.status("beta").state).toBe("connected");
    expect(await dm(beta, "hello beta", "b1")).toMatchObject({
      status: "accepted",
      sessionKey: "agent:main:main",
    });
    await waitFor("beta's reply", () => texts(beta).some((t) => t.includes("hello beta")));

    // Beta now answers with another agent and refuses strangers; alpha is not restarted.
    const alphaConnections = alpha.connections;
    const betaConnections = beta.connections;
    await manager.replace({
      plugin: beta.createChannel(),
      agentId: "ops",
      dmPolicy: "allowlist",
      allowFrom: ["alice"],
    });
    expect(beta.connections).toBe(betaConnections + 1);
    expect(alpha.connections).toBe(alphaConnections);
    expect(manager.status("beta").state).toBe("connected");
    expect(await dm(beta, "again", "b2")).toMatchObject({ sessionKey: "agent:ops:main" });
    expect(await dm(beta, "me too", "b3", "mallory")).toMatchObject({ status: "blocked" });
    // Already-seen message ids stay seen across the replacement.
    expect(await dm(beta, "hello beta", "b1")).toMatchObject({ status: "duplicate" });

    await manager.remove("beta");
    expect(manager.channelIds).toEqual(["alpha"]);
    expect(beta.connected).toBe(false);
    expect(() => manager.status("beta")).toThrow(ChannelNotFoundError);
    expect(await dm(alpha, "still here", "a1")).toMatchObject({ status: "accepted" });
    await waitFor("alpha's reply", () => texts(alpha).some((t) => t.includes("still here")));
  });

  it("delivers a reply in progress through the replaced plugin", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const provider = createScriptedProvider({
      id: "s",
      responses: [
        {
          events: [
            { type: "response-start", model: "m" },
            { type: "wait", until: held },
            { type: "text-delta", text: "the answer" },
            { type: "finish", reason: "stop" },
          ],
        },
      ],
    });
    const { store, runtime } = await runtimeWith(provider);
    const chat = platform("chat");
    const manager = new ChannelManager({
      runtime,
      channels: [{ plugin: chat.createChannel(), dmPolicy: "open" }],
    });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
    });
    await dm(chat, "question", "q1");
    await waitFor("the run", () => provider.calls.length === 1);
    await manager.replace({ plugin: chat.createChannel(), dmPolicy: "open", debounceMs: 50 });
    release();
    await waitFor("the reply", () => texts(chat).includes("the answer"));
    expect(texts(chat)).toEqual(["the answer"]);
  });

  it("refuses bad changes with typed errors and changes nothing", async () => {
    const { store, runtime } = await runtimeWith();
    const one = platform("one");
    const manager = new ChannelManager({
      runtime,
      channels: [{ plugin: one.createChannel(), dmPolicy: "open" }],
    });
    await manager.start();
    await expect(manager.add({ plugin: one.createChannel() })).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(
      manager.replace({ plugin: one.createChannel(), agentId: "nobody" }),
    ).rejects.toThrow(/unknown agent "nobody"/);
    expect(manager.status("one").state).toBe("connected");
    await expect(manager.replace({ plugin: platform("two").createChannel() })).rejects.toThrow(
      ChannelNotFoundError,
    );
    await expect(manager.remove("two")).rejects.toThrow(ChannelNotFoundError);
    await manager.stop();
    await expect(manager.add({ plugin: platform("three").createChannel() })).rejects.toThrow(
      NoProcessError,
    );
    await runtime.stop();
    await store.close();
  });
});

describe("the channels section of the configuration", () => {
  const base = { agents: [{ id: "main", model: "p/m" }] };

  it("takes sections by channel id with kind, enabled and the adapter's own keys", () => {
    const config = parseConfig({
      ...base,
      channels: {
        telegram: { token: "123:abc", dmPolicy: "pairing" },
        hooks: { kind: "webhook", enabled: false, secret: "x".repeat(16) },
      },
    });
    expect(config.channels.hooks).toMatchObject({ kind: "webhook", enabled: false });
    expect(config.channels.telegram).toMatchObject({ token: "123:abc" });
  });

  it("refuses an id that cannot be a channel id, and a kind or enabled of the wrong type", () => {
    for (const channels of [
      { Telegram: {} },
      { "my channel": {} },
      { telegram: { enabled: "yes" } },
      { telegram: { kind: "" } },
    ]) {
      expect(() => parseConfig({ ...base, channels })).toThrow(ConfigError);
    }
  });
});
