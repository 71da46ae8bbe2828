/**
 * Helpers of the Slack tests: a started channel with a recording context, a host
 * (`ChannelManager` + `AgentRuntime` with an echo model) around it, and polling.
 */
import {
  AgentRuntime,
  type ChannelContext,
  type ChannelEntry,
  ChannelManager,
  createProviderChain,
  type InboundMessageInput,
  MemoryStore,
  type ReceiveResult,
} from "@beamclaw/core";
import { createEchoProvider } from "@beamclaw/core/testing";
import {
  createSlackChannel,
  type SlackChannel,
  type SlackChannelOptions,
} from "../../src/slack/index.js";
import { SlackHttpPlatform, SlackSocketModePlatform } from "./slack-platform.js";

export const cleanups: Array<() => Promise<void>> = [];

/** Runs the registered cleanups, newest first (call it in `afterEach`). */
export async function cleanUp(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}

export const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** One line a {@link recordingLogger} was given. */
export interface LogEntry {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  data: Record<string, unknown> | undefined;
}

/** A channel logger that keeps what it is given, in `entries`. */
export function recordingLogger() {
  const entries: LogEntry[] = [];
  const log =
    (level: LogEntry["level"]) =>
    (message: string, data?: Record<string, unknown>): void => {
      entries.push({ level, message, data });
    };
  return {
    entries,
    logger: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
  };
}

/** Polls until `probe` returns something other than undefined/false. */
export async function until<T>(
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
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A promise with its resolve and reject. */
export function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** What a recording context saw. */
export interface Recording {
  received: InboundMessageInput[];
  disconnects: unknown[];
  ctx: ChannelContext;
  controller: AbortController;
}

/**
 * A context that records, answering `receive` with `answer(input, n)` (default: accepted at
 * once).
 */
export function recordingContext(
  plugin: SlackChannel,
  answer?: (input: InboundMessageInput, n: number) => Promise<ReceiveResult> | ReceiveResult,
): Recording {
  const received: InboundMessageInput[] = [];
  const disconnects: unknown[] = [];
  const controller = new AbortController();
  const ctx: ChannelContext = {
    channel: plugin.id,
    config: {},
    logger: silentLogger,
    signal: controller.signal,
    async receive(input) {
      received.push(input);
      return answer === undefined ? { status: "accepted" } : answer(input, received.length);
    },
    disconnected(error) {
      disconnects.push(error);
    },
  };
  return { received, disconnects, ctx, controller };
}

/** A Socket Mode channel, started against a fresh fake, with a recording context. */
export async function startedSocketMode(
  options: Partial<SlackChannelOptions> = {},
  answer?: Parameters<typeof recordingContext>[1],
) {
  const platform = await SlackSocketModePlatform.start();
  cleanups.push(() => platform.close());
  const plugin = createSlackChannel({ ...platform.channelOptions(), ...options });
  const recording = recordingContext(plugin, answer);
  await plugin.start(recording.ctx);
  cleanups.push(async () => {
    recording.controller.abort();
    await plugin.stop();
  });
  return { platform, plugin, ...recording };
}

/**
 * An Events API channel, started against a fresh fake, with a recording context (and a
 * recording logger: `logs`).
 */
export async function startedHttp(
  options: Partial<SlackChannelOptions> = {},
  answer?: Parameters<typeof recordingContext>[1],
) {
  const platform = new SlackHttpPlatform();
  cleanups.push(() => platform.close());
  const plugin = platform.attach(createSlackChannel({ ...platform.channelOptions(), ...options }));
  const recording = recordingContext(plugin, answer);
  const { entries: logs, logger } = recordingLogger();
  await plugin.start({ ...recording.ctx, logger });
  cleanups.push(async () => {
    recording.controller.abort();
    await plugin.stop();
  });
  return { platform, plugin, logs, ...recording };
}

/** A host around `plugin`: a `ChannelManager` over an `AgentRuntime` whose model echoes. */
export async function hosted(
  plugin: SlackChannel,
  settings: Partial<ChannelEntry> = {},
  reconnect = { baseDelayMs: 5, maxDelayMs: 40 },
) {
  const store = new MemoryStore();
  await store.open();
  const echo = createEchoProvider();
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [echo], models: ["echo/any"] }),
    agents: [{ id: "main", model: "echo/any" }],
  });
  await runtime.start();
  const manager = new ChannelManager({
    runtime,
    channels: [{ plugin, dmPolicy: "open", groupPolicy: "open", ...settings }],
    reconnect,
    outbox: { baseDelayMs: 20, maxDelayMs: 200 },
    logger: silentLogger,
  });
  await manager.start();
  cleanups.push(async () => {
    await manager.stop();
    await runtime.stop();
    await store.close();
  });
  /** The user texts the model was asked to answer, in order. */
  const asked = () =>
    echo.requests.map((request) => {
      const last = request.messages.findLast((m) => m.role === "user");
      return last?.content.map((part) => (part.type === "text" ? part.text : "")).join("") ?? "";
    });
  return { manager, runtime, echo, asked };
}

/** A PNG: the 8-byte signature, then anything. */
export const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.from("\x00\x00\x00\x0dIHDR a small chart", "latin1"),
]);
