/**
 * A `ChannelManager` over a real `AgentRuntime` and `MemoryStore`, with one channel of the
 * in-memory platform of `@beamclaw/core/testing`: what the channel tests set up. Not a test
 * file itself.
 */
import {
  AgentRuntime,
  type AgentRuntimeOptions,
  type ChannelCapabilities,
  ChannelManager,
  type ChannelManagerOptions,
  type ChannelPlugin,
  type ChannelSettings,
  createProviderChain,
  MemoryStore,
  type ModelProvider,
} from "../src/index.js";
import {
  createEchoProvider,
  createMemoryPlatform,
  type MemoryPlatform,
} from "../src/testing/index.js";

/** What {@link channelHarness} made. */
export interface ChannelHarness {
  platform: MemoryPlatform;
  plugin: ChannelPlugin;
  manager: ChannelManager;
  runtime: AgentRuntime;
  store: MemoryStore;
  /** Stops the manager and the runtime, keeping the store (a process restart). */
  crash(): Promise<void>;
}

/** Options of {@link channelHarness}. */
export interface ChannelHarnessOptions {
  /** The channel's settings (DM and group policy are `open` unless given). */
  settings?: ChannelSettings;
  capabilities?: Partial<ChannelCapabilities>;
  /** The model (the echo provider unless given); the agent's model is `<its id>/m`. */
  provider?: ModelProvider;
  /** A store of an earlier harness (a restart); a new `MemoryStore` unless given. */
  store?: MemoryStore;
  runtime?: Partial<AgentRuntimeOptions>;
  manager?: Partial<ChannelManagerOptions>;
  /** Wraps the plugin before the manager gets it. */
  wrap?: (plugin: ChannelPlugin) => ChannelPlugin;
  /** Does not start the manager. */
  idle?: boolean;
}

/**
 * Starts a store, a runtime (agent `main`, every tool allowed) and a `ChannelManager` with
 * one memory-platform channel; what stops them all is pushed onto `cleanups`.
 */
export async function channelHarness(
  cleanups: Array<() => Promise<void>>,
  options: ChannelHarnessOptions = {},
): Promise<ChannelHarness> {
  const store = options.store ?? new MemoryStore();
  await store.open();
  const platform = createMemoryPlatform({ capabilities: options.capabilities ?? {} });
  const plugin = (options.wrap ?? ((p) => p))(platform.createChannel());
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({
      providers: [options.provider ?? createEchoProvider()],
      models: [],
      retry: { maxAttempts: 1 },
    }),
    agents: [{ id: "main", model: `${(options.provider ?? { id: "echo" }).id}/m`, tools: ["*"] }],
    ...options.runtime,
  });
  await runtime.start();
  const manager = new ChannelManager({
    runtime,
    channels: [{ plugin, dmPolicy: "open", groupPolicy: "open", ...options.settings }],
    reconnect: { baseDelayMs: 10, maxDelayMs: 50 },
    outbox: { baseDelayMs: 10, maxDelayMs: 40 },
    ...options.manager,
  });
  if (!options.idle) await manager.start();
  let down = false;
  const crash = async () => {
    if (down) return;
    down = true;
    await manager.stop();
    await runtime.stop();
    await platform.close();
  };
  cleanups.push(async () => {
    await crash();
    await store.close();
  });
  return { platform, plugin, manager, runtime, store, crash };
}
