/**
 * Helpers shared by the tests of every channel: a host (`ChannelManager` over an
 * `AgentRuntime` whose scripted model answers, on a memory store) around a plugin, the
 * statuses of the host's answers, a small PNG; and for the tests of `start()` and `stop()`
 * overlapping, ports (whether a server still listens), a context that takes everything, and
 * how a start had ended when a stop resolved.
 */
import {
  AgentRuntime,
  type ChannelContext,
  type ChannelEntry,
  type ChannelLogger,
  ChannelManager,
  type ChannelPlugin,
  createProviderChain,
  MemoryStore,
  type OutboxRetryOptions,
  type ReceiveStatus,
  subscribeTelemetry,
} from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";

/** Where a helper registers what the test's `afterEach` undoes (run newest first). */
export type Cleanups = Array<() => Promise<void>>;

/** A PNG: its 8-byte signature, then a header chunk. */
export const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.from("\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0", "latin1"),
]);

/**
 * A host running `plugin` with `settings`: a started `ChannelManager` over an `AgentRuntime`
 * whose model answers `reply` (each of them in turn, for a list), on a memory store; stopped
 * (manager, runtime, store) by
 * `cleanups`; `outbox` sets how its outbox retries. `provider.requests` are what the model was asked; `statuses` the host's
 * answers to inbound messages, in order.
 */
export async function managedHost(
  plugin: ChannelPlugin,
  settings: Partial<ChannelEntry>,
  options: {
    cleanups: Cleanups;
    reply: string | string[];
    logger?: ChannelLogger;
    outbox?: OutboxRetryOptions;
  },
) {
  const store = new MemoryStore();
  await store.open();
  const replies = typeof options.reply === "string" ? [options.reply] : options.reply;
  const provider = createScriptedProvider({
    id: "s",
    responses: replies.map((text) => ({ text })),
  });
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider] }),
    agents: [{ id: "main", model: "s/m" }],
  });
  await runtime.start();
  const manager = new ChannelManager({
    runtime,
    channels: [{ plugin, ...settings }],
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    ...(options.outbox === undefined ? {} : { outbox: options.outbox }),
  });
  const statuses: ReceiveStatus[] = [];
  const off = subscribeTelemetry("beamclaw:channel.inbound", (event) => {
    if (event.channel === plugin.id) statuses.push(event.status as ReceiveStatus);
  });
  options.cleanups.push(async () => {
    off();
    await manager.stop();
    await runtime.stop();
    await store.close();
  });
  await manager.start();
  return { manager, runtime, provider, statuses };
}

export { canListen, freePort } from "@beamclaw/core/testing";

/** A context that takes every message and logs nowhere (its signal never aborts). */
export function acceptingContext(channel: string): ChannelContext {
  return {
    channel,
    config: {},
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    signal: new AbortController().signal,
    receive: async () => ({ status: "accepted" }),
    disconnected() {},
  };
}

/**
 * Follows a `start()` under way: `settled` resolves once it has ended (never rejects), and
 * `seenBy(stop)` resolves, once `stop` does, with how the start had ended by then:
 * `"started"`, its error, or `undefined` while it was still under way.
 */
export function followStart(start: Promise<void>) {
  let outcome: unknown;
  const settled = start
    .then(
      () => "started",
      (error: unknown) => error,
    )
    .then((ended) => {
      outcome = ended;
    });
  return { settled, seenBy: (stop: Promise<void>) => stop.then(() => outcome) };
}
