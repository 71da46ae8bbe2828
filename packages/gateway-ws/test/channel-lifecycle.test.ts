/**
 * `channels.stop`, `channels.start` and `channels.logout` over a real socket, mounted by the
 * gateway from `ChannelManager.gatewayMethods()`: behind the scope the protocol's method
 * table names, params checked against its `Channels*Params`, answered in OpenClaw's shapes —
 * and the channel really stops taking messages, keeps what it owes, and starts again.
 */
import { ChannelManager, type ChannelPlugin } from "@beamclaw/core";
import { createMemoryPlatform, type MemoryPlatform } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, type GatewayServer } from "../src/index.js";
import {
  closeClients,
  protocolScope,
  rpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  validatorOf,
  type Wire,
  waitFor,
} from "./support.js";

useSchemaCheck();

const managers: ChannelManager[] = [];
const platforms: MemoryPlatform[] = [];
const gateways: GatewayServer[] = [];

afterEach(async () => {
  await closeClients();
  for (const gateway of gateways.splice(0)) await gateway.stop();
  for (const manager of managers.splice(0)) await manager.stop();
  await stopStacks();
  for (const platform of platforms.splice(0)) await platform.close();
});

const LIFECYCLE = ["channels.start", "channels.stop", "channels.logout"];

/** A runtime, a manager running `plugin`, and a gateway mounting the manager's methods. */
async function gatewayWith(plugin: (platform: MemoryPlatform) => ChannelPlugin) {
  const stack = await startStack({ responses: [{ text: "hello to you" }] });
  const platform = createMemoryPlatform({ channelId: "memory", capabilities: { typing: false } });
  platforms.push(platform);
  const manager = new ChannelManager({
    runtime: stack.runtime,
    channels: [{ plugin: plugin(platform), dmPolicy: "open" }],
  });
  managers.push(manager);
  await manager.start();
  const gateway = createGateway({
    runtime: stack.runtime,
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    channelMethods: () => manager.gatewayMethods(),
  });
  gateways.push(gateway);
  const { port } = await gateway.start();
  const url = `ws://127.0.0.1:${port}`;
  const admin = await TestClient.connect(url, { token: TOKEN, scopes: ["operator.admin"] });
  return { stack, platform, manager, url, admin };
}

/** The memory plugin with a login it keeps in `ctx.state`, dropped by its `logout`. */
function withLogin(platform: MemoryPlatform): ChannelPlugin {
  const plugin = platform.createChannel();
  return {
    ...plugin,
    start: async (ctx) => {
      await ctx.state?.set("default", "session", { linked: true });
      await plugin.start(ctx);
    },
    logout: async (ctx) => ({
      cleared: (await ctx.state?.delete(ctx.accountId, "session")) ?? false,
    }),
  };
}

/** The default account's row of `channels.status`, checked against the protocol. */
async function accountRow(client: TestClient): Promise<Wire> {
  const status = await client.request("channels.status");
  const validate = validatorOf("ChannelsStatusResult");
  expect(validate(status), JSON.stringify(validate.errors)).toBe(true);
  return status.channelAccounts.memory[0];
}

let counter = 0;
const dm = (platform: MemoryPlatform, text: string) =>
  platform.inject({
    chatType: "direct",
    chatId: "alice",
    peer: { id: "alice" },
    text,
    messageId: `m${++counter}`,
  });

const texts = (platform: MemoryPlatform) =>
  platform.outbound().flatMap((o) => (o.kind === "text" ? [o.text] : []));

describe("channels.stop / channels.start / channels.logout on the gateway", () => {
  it("stop a channel (no message taken, what it owes kept), start it again and log it out, in OpenClaw's shapes", async () => {
    const { stack, platform, manager, url, admin } = await gatewayWith(withLogin);
    expect(admin.hello.features.methods).toEqual(expect.arrayContaining(LIFECYCLE));
    for (const name of LIFECYCLE) expect(protocolScope(name)).toBe("operator.admin");
    const writer = await TestClient.connect(url, { token: TOKEN, scopes: ["operator.write"] });
    for (const name of LIFECYCLE) {
      const refused = await rpcError(writer.request(name, { channel: "memory" }));
      expect([name, refused.code, refused.details]).toEqual([
        name,
        "FORBIDDEN",
        expect.objectContaining({ missingScope: "operator.admin" }),
      ]);
    }
    expect(platform.connected).toBe(true);

    expect(await admin.request("channels.stop", { channel: "memory" })).toEqual({
      channel: "memory",
      accountId: "default",
      stopped: true,
      alreadyStopped: false,
    });
    expect(platform.connected).toBe(false);
    await expect(dm(platform, "anyone there?")).rejects.toThrow(/no plugin is connected/);
    const stopped = await accountRow(admin);
    expect(stopped).toMatchObject({ running: false, connected: false, healthState: "stopped" });
    expect(typeof stopped.lastStopAt).toBe("number");
    expect(
      await admin.request("channels.stop", { channel: "memory", accountId: "default" }),
    ).toEqual({ channel: "memory", accountId: "default", stopped: true, alreadyStopped: true });

    // What is sent to a stopped channel waits in its outbox.
    await manager.deliver(
      "memory",
      { accountId: "default", chatType: "direct", chatId: "alice" },
      { text: "sent while stopped" },
    );
    expect(texts(platform)).toEqual([]);

    expect(await admin.request("channels.start", { channel: "memory" })).toEqual({
      channel: "memory",
      accountId: "default",
      started: true,
      alreadyRunning: false,
    });
    expect(platform.connections).toBe(2);
    await waitFor("the waiting message", () => texts(platform).includes("sent while stopped"));
    expect(await dm(platform, "hello again")).toMatchObject({ status: "accepted" });
    await waitFor("the answer", () => texts(platform).includes("hello to you"));
    expect(texts(platform)).toEqual(["sent while stopped", "hello to you"]);
    expect(stack.provider.calls).toHaveLength(1);
    const running = await accountRow(admin);
    expect(running).toMatchObject({ running: true, connected: true, healthState: "connected" });
    expect(running.lastStartAt).toBeGreaterThanOrEqual(stopped.lastStopAt);
    expect(await admin.request("channels.start", { channel: "memory" })).toEqual({
      channel: "memory",
      accountId: "default",
      started: true,
      alreadyRunning: true,
    });
    expect(platform.connections).toBe(2);

    expect(await admin.request("channels.logout", { channel: "memory" })).toEqual({
      channel: "memory",
      accountId: "default",
      cleared: true,
      loggedOut: true,
    });
    expect(platform.connected).toBe(false);
    expect(await stack.store.kv.get("channels:state:memory:default:session")).toBeUndefined();
    expect(await accountRow(admin)).toMatchObject({ running: false, healthState: "stopped" });
  });

  it("answer an unknown channel, another account, a channel without a login and bad params with typed errors, changing nothing", async () => {
    const { platform, admin } = await gatewayWith((p) => p.createChannel());

    // An unknown channel fails as channels.status fails for one.
    const unknownStatus = await rpcError(admin.request("channels.status", { channel: "nowhere" }));
    for (const name of LIFECYCLE) {
      const unknown = await rpcError(admin.request(name, { channel: "nowhere" }));
      expect(unknown.code).toBe("INVALID_REQUEST");
      expect(unknown.details).toEqual({ code: "CHANNEL_NOT_FOUND", channel: "nowhere" });
      expect(unknown.details).toEqual(unknownStatus.details);

      const account = await rpcError(admin.request(name, { channel: "memory", accountId: "work" }));
      expect(account.code).toBe("INVALID_REQUEST");
      expect(account.details).toEqual({ code: "INVALID_ARGUMENT" });
      expect(account.message).toBe(
        'channel "memory" has one account, "default"; there is no account "work"',
      );

      // What the protocol's params schema refuses is refused before anything happens.
      const definition = `Channels${name.charAt(9).toUpperCase()}${name.slice(10)}Params`;
      for (const params of [{}, { channel: "" }, { channel: "memory", force: true }]) {
        expect(validatorOf(definition)(params)).toBe(false);
        const refused = await rpcError(admin.requestUnchecked(name, params));
        expect(refused.code).toBe("INVALID_REQUEST");
        expect((refused.details as { code: string }).code).toBe("INVALID_PARAMS");
      }
    }

    const noLogin = await rpcError(admin.request("channels.logout", { channel: "memory" }));
    expect(noLogin.code).toBe("INVALID_REQUEST");
    expect(noLogin.details).toEqual({ code: "NOT_SUPPORTED", feature: "channel logout" });
    expect(noLogin.message).toMatch(/channel "memory" has no login to drop/);

    expect(platform.connected).toBe(true);
    expect(platform.connections).toBe(1);
    expect(await accountRow(admin)).toMatchObject({ running: true, connected: true });
    expect(admin.ws.readyState).toBe(admin.ws.OPEN);
  });
});
