/**
 * A small host for the Discord channel's own tests: it starts a plugin with a context that
 * records what it receives, answers `ctx.receive` as a test says, and — like the
 * ChannelManager — stops and starts the plugin again when it reports `ctx.disconnected`
 * (with a short pause, retrying a failed start).
 */
import {
  type ChannelContext,
  type ChannelStateStore,
  type InboundMessageInput,
  NoProcessError,
  type ReceiveResult,
} from "@beamclaw/core";
import {
  createDiscordChannel,
  type DiscordChannel,
  type DiscordChannelOptions,
} from "../../src/discord/index.js";
import { type DiscordPlatform, startDiscordPlatform, TOKEN } from "./platform.js";

export const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** Polls until `probe` returns something other than undefined/false. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

export interface Harness {
  platform: DiscordPlatform;
  plugin: DiscordChannel;
  /** Every `ctx.receive` call, in order (including refused ones). */
  calls: InboundMessageInput[];
  /** Message ids the host took (receive resolved), in order. */
  taken: string[];
  /** Errors passed to `ctx.disconnected`. */
  disconnects: unknown[];
  /** Errors of failed (re)starts. */
  startErrors: unknown[];
  /** Completed starts (the first included). */
  starts(): number;
  /** Stops the plugin (no restart after). */
  stop(): Promise<void>;
}

export interface HarnessOptions {
  platform?: Parameters<typeof startDiscordPlatform>[0];
  /** Connect to this running fake Discord instead of starting one (a restarted bot). */
  on?: DiscordPlatform;
  /** Given to the plugin as `ctx.state` (default: none, as hosts without state). */
  state?: ChannelStateStore;
  plugin?: Partial<DiscordChannelOptions>;
  /** Answers `ctx.receive` (the n-th call, 1-based); an Error is thrown. Default accepted. */
  receive?: (
    input: InboundMessageInput,
    n: number,
  ) => ReceiveResult | Error | Promise<ReceiveResult | Error>;
  /**
   * Given to the plugin as `ctx.admits` (stale contexts reject, as the host's do). Default:
   * none, as hosts written before it.
   */
  admits?: (input: InboundMessageInput) => boolean | Promise<boolean>;
  /** Start the plugin (default true). */
  start?: boolean;
  /** Receives the plugin's logs (default: nothing). */
  logger?: ChannelContext["logger"];
}

/** Cleanups registered by {@link startHarness}; run them in `afterEach`. */
export const cleanups: Array<() => Promise<void>> = [];

export async function runCleanups(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const platform = options.on ?? (await startDiscordPlatform(options.platform));
  if (options.on === undefined) cleanups.push(() => platform.close());
  const plugin = createDiscordChannel({
    token: TOKEN,
    rest: { api: platform.api },
    identifyIntervalMs: 0,
    ...options.plugin,
  });
  const calls: InboundMessageInput[] = [];
  const taken: string[] = [];
  const disconnects: unknown[] = [];
  const startErrors: unknown[] = [];
  let starts = 0;
  let stopped = false;
  let controller = new AbortController();
  let generation = 0;
  let restarting: Promise<void> = Promise.resolve();

  const context = (): ChannelContext => {
    const mine = ++generation;
    const signal = controller.signal;
    return {
      channel: plugin.id,
      config: {},
      logger: options.logger ?? silent,
      signal,
      ...(options.state === undefined ? {} : { state: options.state }),
      ...(options.admits === undefined
        ? {}
        : {
            async admits(input: InboundMessageInput) {
              if (signal.aborted || mine !== generation) throw new NoProcessError("stale context");
              return options.admits!(input);
            },
          }),
      async receive(input) {
        if (signal.aborted || mine !== generation) throw new NoProcessError("stale context");
        calls.push(input);
        const answer = (await options.receive?.(input, calls.length)) ?? { status: "accepted" };
        if (answer instanceof Error) throw answer;
        taken.push(input.messageId);
        return answer;
      },
      disconnected(error) {
        if (signal.aborted || mine !== generation || stopped) return;
        disconnects.push(error);
        restarting = restarting.then(restart);
      },
    };
  };

  const restart = async () => {
    controller.abort();
    await plugin.stop();
    for (let attempt = 0; attempt < 100 && !stopped; attempt++) {
      await new Promise<void>((resolve) => setTimeout(resolve, 5));
      controller = new AbortController();
      try {
        await plugin.start(context());
        starts++;
        return;
      } catch (error) {
        startErrors.push(error);
        controller.abort();
        await plugin.stop();
        if ((error as { isRetryable?: boolean }).isRetryable === false) return;
      }
    }
  };

  const stop = async () => {
    stopped = true;
    await restarting;
    controller.abort();
    await plugin.stop();
  };
  cleanups.push(stop);
  if (options.start !== false) {
    await plugin.start(context());
    starts++;
  }
  return {
    platform,
    plugin,
    calls,
    taken,
    disconnects,
    startErrors,
    starts: () => starts,
    stop,
  };
}
