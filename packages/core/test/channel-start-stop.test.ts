/**
 * An operator stops one channel and starts it again (`stopChannel`, `startChannel`, and
 * `logoutChannel`, which also drops the login a plugin keeps), on a running `ChannelManager`:
 * a stopped channel takes no message and is not reconnected, yet loses nothing — replies of
 * runs in progress and host messages wait in its outbox and go out after the start. Also
 * their gateway methods, `channels.start` / `stop` / `logout`, in OpenClaw's shapes.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentRuntime,
  type ChannelContext,
  ChannelManager,
  ChannelNotFoundError,
  type ChannelPlugin,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
  type ModelProvider,
  NoProcessError,
  NotSupportedError,
} from "../src/index.js";
import {
  createEchoProvider,
  createMemoryPlatform,
  createScriptedProvider,
  type MemoryPlatform,
} from "../src/testing/index.js";
import { waitFor } from "./support.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function runtimeWith(store: MemoryStore, provider: ModelProvider = createEchoProvider()) {
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
  return runtime;
}

function platformOf(channelId = "memory"): MemoryPlatform {
  const platform = createMemoryPlatform({ channelId, capabilities: { typing: false } });
  cleanups.push(() => platform.close());
  return platform;
}

/** The platform's plugin, recording every context it was started with. */
function recording(platform: MemoryPlatform, contexts: ChannelContext[]): ChannelPlugin {
  const plugin = platform.createChannel();
  return {
    ...plugin,
    start: async (ctx) => {
      contexts.push(ctx);
      await plugin.start(ctx);
    },
  };
}

interface Setup {
  store?: MemoryStore;
  provider?: ModelProvider;
  plugins: ChannelPlugin[];
  /** Does not start the manager. */
  idle?: boolean;
}

async function managerWith(setup: Setup) {
  const store = setup.store ?? new MemoryStore();
  const runtime = await runtimeWith(store, setup.provider);
  const manager = new ChannelManager({
    runtime,
    channels: setup.plugins.map((plugin) => ({ plugin, dmPolicy: "open" as const })),
    reconnect: { baseDelayMs: 10, maxDelayMs: 50 },
    outbox: { baseDelayMs: 10, maxDelayMs: 40 },
  });
  if (setup.idle !== true) await manager.start();
  let down = false;
  const shutdown = async () => {
    if (down) return;
    down = true;
    await manager.stop();
    await runtime.stop();
  };
  cleanups.push(async () => {
    await shutdown();
    await store.close();
  });
  return { manager, runtime, store, shutdown };
}

let counter = 0;
const dm = (platform: MemoryPlatform, text: string, peer = "alice") =>
  platform.inject({
    chatType: "direct",
    chatId: peer,
    peer: { id: peer },
    text,
    messageId: `m${++counter}`,
  });

const texts = (platform: MemoryPlatform) =>
  platform.outbound().flatMap((o) => (o.kind === "text" ? [o.text] : []));

/** A provider whose first answer waits for `release()`. */
function heldProvider(answer: string) {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const provider = createScriptedProvider({
    id: "held",
    responses: [
      {
        events: [
          { type: "response-start", model: "m" },
          { type: "wait", until: held },
          { type: "text-delta", text: answer },
          { type: "finish", reason: "stop" },
        ],
      },
    ],
  });
  return { provider, release };
}

describe("stopChannel", () => {
  it("stops the plugin and takes no more inbound messages; the other channels stay connected", async () => {
    const alpha = platformOf("alpha");
    const beta = platformOf("beta");
    const contexts: ChannelContext[] = [];
    const provider = createEchoProvider();
    const { manager } = await managerWith({
      provider,
      plugins: [recording(alpha, contexts), beta.createChannel()],
    });
    expect(await dm(alpha, "before")).toMatchObject({ status: "accepted" });
    await waitFor("alpha's reply", () => texts(alpha).includes("before"));

    expect(await manager.stopChannel("alpha")).toBe(true);
    expect(alpha.connected).toBe(false);
    expect(manager.status("alpha")).toMatchObject({ state: "stopped", attempts: 0 });
    expect(typeof manager.status("alpha").lastStopAt).toBe("number");
    // The plugin's context is stale: what it would still hand over is refused, not taken.
    expect(contexts[0]!.signal.aborted).toBe(true);
    await expect(
      contexts[0]!.receive({
        peer: { id: "alice" },
        chatType: "direct",
        text: "after the stop",
        messageId: "late-1",
      }),
    ).rejects.toBeInstanceOf(NoProcessError);
    await expect(dm(alpha, "after the stop")).rejects.toBeInstanceOf(NoProcessError);
    expect(
      (await manager.runtime.store.queue.pending({ sessionKey: "agent:main:main", limit: 10 }))
        .length,
    ).toBe(0);

    // The supervisor has no process of it left to restart.
    const children = await manager.supervisor!.whichChildren();
    expect(children.map((c) => c.id)).toEqual(["beta"]);
    expect(manager.status("beta").state).toBe("connected");
    expect(await dm(beta, "beta still answers")).toMatchObject({ status: "accepted" });
    await waitFor("beta's reply", () => texts(beta).includes("beta still answers"));
    expect(texts(alpha)).toEqual(["before"]);
  });

  it("is idempotent, and neither restart() nor a dropped connection brings the channel back", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()] });
    expect(await manager.stopChannel("memory")).toBe(true);
    const stoppedAt = manager.status("memory").lastStopAt;
    expect(await manager.stopChannel("memory")).toBe(false);
    expect(manager.status("memory").lastStopAt).toBe(stoppedAt);

    manager.restart("memory");
    await platform.disconnect();
    expect(await manager.stopChannel("memory")).toBe(false);
    expect(manager.status("memory").state).toBe("stopped");
    expect(platform.connections).toBe(1);
    expect(await manager.supervisor!.whichChildren()).toEqual([]);
  });

  it("keeps what a stopped channel owes: a reply whose run ends meanwhile and deliver() go out after startChannel, once", async () => {
    const platform = platformOf();
    const { provider, release } = heldProvider("the answer");
    const { manager } = await managerWith({ provider, plugins: [platform.createChannel()] });
    expect(await dm(platform, "question")).toMatchObject({ status: "accepted" });
    await waitFor("the run", () => provider.requests.length === 1);

    await manager.stopChannel("memory");
    release();
    const outbox = manager.outbox("memory");
    await waitFor("the reply in the outbox", async () =>
      (await outbox.list()).some((e) => e.state === "ready"),
    );
    const id = await manager.deliver(
      "memory",
      { accountId: "default", chatType: "group", chatId: "ops" },
      { text: "a cron announcement" },
    );
    expect((await outbox.list()).map((e) => e.id)).toContain(id);
    expect(texts(platform)).toEqual([]);

    expect(await manager.startChannel("memory")).toBe(true);
    await waitFor("both messages", () => texts(platform).length === 2);
    await outbox.idle();
    expect(texts(platform)).toEqual(["the answer", "a cron announcement"]);
    expect(await outbox.list()).toEqual([]);
    expect(provider.requests).toHaveLength(1);
  });

  it("delivers, once, the reply of a run that goes on across a stop and a start of its channel", async () => {
    const platform = platformOf();
    const { provider, release } = heldProvider("worth the wait");
    const { manager } = await managerWith({ provider, plugins: [platform.createChannel()] });
    await dm(platform, "question");
    await waitFor("the run", () => provider.requests.length === 1);
    await manager.stopChannel("memory");
    expect(await manager.startChannel("memory")).toBe(true);
    const outbox = manager.outbox("memory");
    expect((await outbox.list()).map((e) => e.state)).toEqual(["pending-run"]);
    release();
    await waitFor("the reply", () => texts(platform).includes("worth the wait"));
    await outbox.idle();
    expect(texts(platform)).toEqual(["worth the wait"]);
    expect(await outbox.list()).toEqual([]);
    expect(provider.requests).toHaveLength(1);
  });

  it("before start() keeps the channel from starting; startChannel then picks up the reply owed from before the last stop", async () => {
    const store = new MemoryStore();
    const stuck = createScriptedProvider({
      id: "scripted",
      responses: [{ events: [{ type: "delay", ms: Infinity }] }],
    });
    const firstPlatform = platformOf();
    const first = await managerWith({
      store,
      provider: stuck,
      plugins: [firstPlatform.createChannel()],
    });
    await dm(firstPlatform, "long question");
    await waitFor("the run to start", () => stuck.requests.length === 1);
    await first.shutdown();

    const platform = platformOf();
    const answering = createScriptedProvider({ id: "scripted", responses: ["answered at last"] });
    const { manager } = await managerWith({
      store,
      provider: answering,
      plugins: [platform.createChannel()],
      idle: true,
    });
    expect(await manager.stopChannel("memory")).toBe(true);
    await manager.start();
    expect(platform.connected).toBe(false);
    expect(platform.connections).toBe(0);
    expect(manager.status("memory").state).toBe("stopped");

    expect(await manager.startChannel("memory")).toBe(true);
    expect(platform.connected).toBe(true);
    await waitFor("the reply", () => texts(platform).includes("answered at last"));
    await manager.outbox("memory").idle();
    expect(texts(platform)).toEqual(["answered at last"]);
    expect(answering.requests).toHaveLength(1);
  });
});

describe("startChannel", () => {
  it("connects a stopped channel as a first start, and leaves a running one alone", async () => {
    const platform = platformOf();
    const contexts: ChannelContext[] = [];
    const { manager } = await managerWith({ plugins: [recording(platform, contexts)] });
    const firstStart = manager.status("memory").lastStartAt;
    expect(typeof firstStart).toBe("number");
    expect(await manager.startChannel("memory")).toBe(false);
    expect(platform.connections).toBe(1);

    await manager.stopChannel("memory");
    expect(await manager.startChannel("memory")).toBe(true);
    expect(manager.status("memory")).toMatchObject({ state: "connected", attempts: 0 });
    expect(manager.status("memory").lastStartAt).toBeGreaterThanOrEqual(firstStart!);
    expect(platform.connections).toBe(2);
    expect(contexts).toHaveLength(2);
    expect(contexts[1]!.signal.aborted).toBe(false);
    expect(await dm(platform, "back again")).toMatchObject({ status: "accepted" });
    await waitFor("the reply", () => texts(platform).includes("back again"));
    expect(await manager.startChannel("memory")).toBe(false);
    expect(platform.connections).toBe(2);
    // Supervised again: a dropped connection reconnects.
    await platform.disconnect();
    await waitFor(
      "the reconnect",
      () => platform.connections === 3 && manager.status("memory").state === "connected",
    );
  });

  it("starts a channel that failed for good again", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()], idle: true });
    platform.refuseConnections(1, Object.assign(new Error("bad token"), { isRetryable: false }));
    await manager.start();
    expect(manager.status("memory").state).toBe("failed");
    expect(await manager.startChannel("memory")).toBe(true);
    expect(manager.status("memory").state).toBe("connected");
    expect(manager.status("memory").lastError).toBeUndefined();
  });

  it("runs concurrent stops and starts of a channel one at a time, in the order called", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()] });
    const results = await Promise.all([
      manager.stopChannel("memory"),
      manager.startChannel("memory"),
      manager.stopChannel("memory"),
      manager.stopChannel("memory"),
    ]);
    expect(results).toEqual([true, true, true, false]);
    expect(manager.status("memory").state).toBe("stopped");
    expect(platform.connected).toBe(false);
    expect(platform.connections).toBe(2);
  });
});

describe("a stopped channel and the manager's other changes", () => {
  it("replace keeps it stopped with the new plugin and settings; startChannel runs them", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()] });
    await manager.stopChannel("memory");
    await manager.replace({ plugin: platform.createChannel(), dmPolicy: "open", agentId: "ops" });
    expect(platform.connections).toBe(1);
    expect(manager.status("memory").state).toBe("stopped");
    expect(await manager.startChannel("memory")).toBe(true);
    expect(platform.connections).toBe(2);
    expect(await dm(platform, "who answers?")).toMatchObject({ sessionKey: "agent:ops:main" });
  });

  it("remove and the manager's stop() take a stopped channel as it is; afterwards start and stop are refused", async () => {
    const one = platformOf("one");
    const two = platformOf("two");
    const { manager, shutdown } = await managerWith({
      plugins: [one.createChannel(), two.createChannel()],
    });
    await manager.stopChannel("one");
    await manager.stopChannel("two");
    await manager.remove("two");
    expect(manager.channelIds).toEqual(["one"]);
    await expect(manager.startChannel("two")).rejects.toBeInstanceOf(ChannelNotFoundError);

    await shutdown();
    expect(manager.status("one").state).toBe("stopped");
    expect(one.connected).toBe(false);
    await expect(manager.startChannel("one")).rejects.toBeInstanceOf(NoProcessError);
    await expect(manager.startChannel("one")).rejects.toThrow(/manager is stopped/);
    await expect(manager.stopChannel("one")).rejects.toBeInstanceOf(NoProcessError);
    expect(one.connections).toBe(1);
  });

  it("refuses an unknown channel with ChannelNotFoundError and changes nothing", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()] });
    for (const call of [
      () => manager.stopChannel("nowhere"),
      () => manager.startChannel("nowhere"),
      () => manager.logoutChannel("nowhere"),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(ChannelNotFoundError);
    }
    expect(manager.status("memory").state).toBe("connected");
  });
});

describe("logoutChannel", () => {
  /** The memory plugin with a login it keeps in `ctx.state`, and a logout that drops it. */
  function withLogin(platform: MemoryPlatform, calls: string[]): ChannelPlugin {
    const plugin = platform.createChannel();
    return {
      ...plugin,
      start: async (ctx) => {
        await ctx.state?.set("default", "session", { linked: true });
        await plugin.start(ctx);
      },
      logout: async (ctx) => {
        calls.push(`${ctx.channel}:${ctx.accountId}:${platform.connected}`);
        const cleared = (await ctx.state?.delete(ctx.accountId, "session")) ?? false;
        return { cleared };
      },
    };
  }

  it("stops the channel, then lets the plugin drop the login it keeps; the channel stays stopped", async () => {
    const platform = platformOf();
    const calls: string[] = [];
    const { manager, store } = await managerWith({ plugins: [withLogin(platform, calls)] });
    const key = "channels:state:memory:default:session";
    expect(await store.kv.get(key)).toEqual({ linked: true });

    expect(await manager.logoutChannel("memory")).toEqual({
      cleared: true,
      loggedOut: true,
      stopped: true,
    });
    // Called once the channel was stopped.
    expect(calls).toEqual(["memory:default:false"]);
    expect(await store.kv.get(key)).toBeUndefined();
    expect(manager.status("memory").state).toBe("stopped");
    expect(platform.connected).toBe(false);
    // Nothing left to drop; the channel was stopped already.
    expect(await manager.logoutChannel("memory")).toEqual({
      cleared: false,
      loggedOut: false,
      stopped: false,
    });
    expect(await manager.startChannel("memory")).toBe(true);
    expect(await store.kv.get(key)).toEqual({ linked: true });
  });

  it("refuses a channel whose plugin keeps no login with NotSupportedError, and leaves it running", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()] });
    const error = await manager.logoutChannel("memory").catch((e: unknown) => e);
    expect(NotSupportedError.isInstance(error)).toBe(true);
    expect((error as NotSupportedError).code).toBe("NOT_SUPPORTED");
    expect((error as Error).message).toMatch(/channel "memory" has no login to drop/);
    expect(manager.status("memory").state).toBe("connected");
    expect(platform.connections).toBe(1);
  });

  it("leaves the channel stopped when the plugin's logout fails", async () => {
    const platform = platformOf();
    const plugin: ChannelPlugin = {
      ...platform.createChannel(),
      logout: async () => {
        throw new Error("the platform refused the logout");
      },
    };
    const { manager } = await managerWith({ plugins: [plugin] });
    await expect(manager.logoutChannel("memory")).rejects.toThrow(/refused the logout/);
    expect(manager.status("memory").state).toBe("stopped");
    expect(await manager.stopChannel("memory")).toBe(false);
  });

  it("refuses a plugin whose logout is not a function", async () => {
    const platform = platformOf();
    const plugin = { ...platform.createChannel(), logout: "yes" } as unknown as ChannelPlugin;
    const store = new MemoryStore();
    const runtime = await runtimeWith(store);
    cleanups.push(async () => {
      await runtime.stop();
      await store.close();
    });
    expect(() => new ChannelManager({ runtime, channels: [{ plugin }] })).toThrow(
      /logout must be a function/,
    );
  });
});

describe("channels.start, channels.stop and channels.logout (gateway methods)", () => {
  const caller = { scopes: ["operator.admin"] };

  it("need operator.admin, and answer in OpenClaw's shapes, saying when nothing had to be done", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()] });
    const methods = manager.gatewayMethods();
    for (const name of ["channels.start", "channels.stop", "channels.logout"]) {
      expect(methods[name]!.scope).toBe("operator.admin");
    }
    const call = (name: string, params: Record<string, string>) =>
      methods[name]!.handler(params, caller);

    expect(await call("channels.stop", { channel: "memory" })).toEqual({
      channel: "memory",
      accountId: "default",
      stopped: true,
      alreadyStopped: false,
    });
    const status = (await methods["channels.status"]!.handler({}, caller)) as {
      channelAccounts: Record<string, Array<Record<string, unknown>>>;
    };
    expect(status.channelAccounts.memory![0]).toMatchObject({
      accountId: "default",
      running: false,
      connected: false,
      healthState: "stopped",
      lastStopAt: manager.status("memory").lastStopAt,
    });
    expect(await call("channels.stop", { channel: "memory", accountId: "default" })).toEqual({
      channel: "memory",
      accountId: "default",
      stopped: true,
      alreadyStopped: true,
    });
    // An empty or blank accountId is the default account, as OpenClaw reads it.
    expect(await call("channels.start", { channel: "memory", accountId: " " })).toEqual({
      channel: "memory",
      accountId: "default",
      started: true,
      alreadyRunning: false,
    });
    expect(await call("channels.start", { channel: "memory", accountId: "" })).toEqual({
      channel: "memory",
      accountId: "default",
      started: true,
      alreadyRunning: true,
    });
    expect(platform.connections).toBe(2);
    const running = (await methods["channels.status"]!.handler({}, caller)) as {
      channelAccounts: Record<string, Array<Record<string, unknown>>>;
    };
    expect(running.channelAccounts.memory![0]).toMatchObject({
      running: true,
      connected: true,
      lastStartAt: manager.status("memory").lastStartAt,
    });
  });

  it("refuse another account, an unknown channel and a channel without a login, changing nothing", async () => {
    const platform = platformOf();
    const { manager } = await managerWith({ plugins: [platform.createChannel()] });
    const methods = manager.gatewayMethods();
    for (const name of ["channels.start", "channels.stop", "channels.logout"]) {
      const method = methods[name]!;
      await expect(
        method.handler({ channel: "memory", accountId: "work" }, caller),
      ).rejects.toSatisfy(
        (e: unknown) =>
          InvalidArgumentError.isInstance(e) && /has one account, "default"/.test(e.message),
      );
      await expect(method.handler({ channel: "nowhere" }, caller)).rejects.toMatchObject({
        code: "CHANNEL_NOT_FOUND",
        channel: "nowhere",
      });
      // The params schema is the protocol's: a channel is required, nothing else is allowed.
      for (const bad of [{}, { channel: "" }, { channel: "memory", force: true }, { channel: 7 }]) {
        const checked = await method.params!["~standard"].validate(bad);
        expect(checked.issues?.length).toBeGreaterThan(0);
      }
      expect(
        await method.params!["~standard"].validate({ channel: "memory", accountId: "" }),
      ).toEqual({ value: { channel: "memory", accountId: "" } });
    }
    await expect(
      methods["channels.logout"]!.handler({ channel: "memory" }, caller),
    ).rejects.toMatchObject({ code: "NOT_SUPPORTED" });
    expect(manager.status("memory").state).toBe("connected");
    expect(platform.connections).toBe(1);
  });

  it("channels.logout answers with what the plugin cleared", async () => {
    const platform = platformOf();
    const plugin: ChannelPlugin = {
      ...platform.createChannel(),
      logout: async () => ({ cleared: true }),
    };
    const { manager } = await managerWith({ plugins: [plugin] });
    expect(
      await manager.gatewayMethods()["channels.logout"]!.handler({ channel: "memory" }, caller),
    ).toEqual({ channel: "memory", accountId: "default", cleared: true, loggedOut: true });
    expect(manager.status("memory").state).toBe("stopped");
  });
});
