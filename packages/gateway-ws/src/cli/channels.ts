/**
 * The `channels` section of `beamclaw.yaml`: each `channels.<id>` becomes a channel plugin of
 * `@beamclaw/channels` (loaded with `import()` only when configured) under one
 * `ChannelManager` bound to the gateway's runtime, and follows the file as it changes: a
 * channel whose section changed is restarted alone, with its new settings.
 */
import { isDeepStrictEqual } from "node:util";
import {
  type AgentRuntime,
  type BeamClawConfig,
  type ChannelEntry,
  type ChannelGatewayMethod,
  type ChannelLogger,
  ChannelManager,
  type ChannelPlugin,
  type ChannelSettings,
  isBeamClawError,
  type Transcriber,
} from "@beamclaw/core";
import { CliError, type CliLog } from "./bootstrap.js";

/** The channel kinds `@beamclaw/channels` provides. */
export const CHANNEL_KINDS = ["discord", "telegram", "slack", "webhook"] as const;
/** A channel kind of `@beamclaw/channels`. */
export type ChannelKind = (typeof CHANNEL_KINDS)[number];

/**
 * Keys of a `channels.<id>` section read by the host (routing, access, delivery); every other
 * key is the adapter's option of that name (`token`, `secret`, `callbackUrl`, `port`, ...).
 */
const HOST_KEYS = [
  "kind",
  "enabled",
  "agentId",
  "dmScope",
  "dmPolicy",
  "allowFrom",
  "groupPolicy",
  "groups",
  "groupAllowFrom",
  "requireMention",
  "operators",
  "debounceMs",
  "dedupeTtlMs",
  "typingIntervalMs",
  "queueMode",
  "streaming",
  "streamThrottleMs",
  "sessionCommands",
] as const;

type Factory = (options: Record<string, unknown>) => ChannelPlugin;

function missing(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown };
  return (
    (e?.code === "ERR_MODULE_NOT_FOUND" || e?.code === "MODULE_NOT_FOUND") &&
    typeof e.message === "string" &&
    e.message.includes("@beamclaw/channels")
  );
}

/** The factory of a channel kind, from its `@beamclaw/channels` entry point. */
async function loadFactory(kind: ChannelKind, where: string): Promise<Factory> {
  try {
    switch (kind) {
      case "discord": {
        const m = await import("@beamclaw/channels/discord");
        return (o) => m.createDiscordChannel(o as never);
      }
      case "telegram": {
        const m = await import("@beamclaw/channels/telegram");
        return (o) => m.createTelegramChannel(o as never);
      }
      case "slack": {
        const m = await import("@beamclaw/channels/slack");
        return (o) => m.createSlackChannel(o as never);
      }
      case "webhook": {
        const m = await import("@beamclaw/channels/webhook");
        return (o) => m.createWebhookChannel(o as never);
      }
    }
  } catch (error) {
    if (missing(error)) {
      throw new CliError(
        `${where} (kind ${kind}) needs @beamclaw/channels, which is not installed. Install it: npm install @beamclaw/channels`,
      );
    }
    throw error;
  }
}

/** The channel sections that are on, by id. */
export function enabledChannels(config: BeamClawConfig): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const [id, section] of Object.entries(config.channels)) {
    if (section.enabled !== false) out.set(id, section);
  }
  return out;
}

/**
 * Builds the channel of one `channels.<id>` section (not started).
 *
 * @throws CliError for an unknown kind, a missing `@beamclaw/channels`, or options the
 *   adapter refuses.
 */
export async function channelEntry(
  id: string,
  section: Record<string, unknown>,
): Promise<ChannelEntry> {
  const where = `channels.${id}`;
  const kind = section.kind ?? id;
  if (typeof kind !== "string" || !(CHANNEL_KINDS as readonly string[]).includes(kind)) {
    throw new CliError(
      `${where}: unknown channel kind ${JSON.stringify(kind)}; set kind to one of ${CHANNEL_KINDS.join(", ")}`,
    );
  }
  const factory = await loadFactory(kind as ChannelKind, where);
  const options: Record<string, unknown> = { id };
  const settings: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(section)) {
    if ((HOST_KEYS as readonly string[]).includes(key)) settings[key] = value;
    else options[key] = value;
  }
  delete settings.kind;
  delete settings.enabled;
  let plugin: ChannelPlugin;
  try {
    plugin = factory(options);
  } catch (error) {
    if (isBeamClawError(error)) throw new CliError(`${where}: ${error.message}`);
    throw error;
  }
  return { ...(settings as ChannelSettings), plugin, config: section };
}

function line(message: string, fields: Record<string, unknown> | undefined): string {
  const { channel, error, ...rest } = fields ?? {};
  const parts = [channel === undefined ? message : `channel ${String(channel)}: ${message}`];
  if (error !== undefined) {
    parts.push(
      isBeamClawError(error)
        ? `${error.message} (${error.code})`
        : error instanceof Error
          ? error.message
          : String(error),
    );
  }
  const extra = Object.entries(rest).filter(([, v]) => v !== undefined);
  if (extra.length > 0) parts.push(extra.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" "));
  return parts.join(" — ");
}

/** The channels of a running gateway: the manager and how they follow the configuration. */
export interface ConfiguredChannels {
  manager: ChannelManager;
  /** The gateway methods of the channels now (`channels.*` and each plugin's own). */
  methods(): Record<string, ChannelGatewayMethod>;
  /**
   * Applies the `channels` section of a new configuration: channels that appeared are added,
   * those removed or disabled are stopped, and those whose section changed are restarted
   * with their new settings — each alone. A section that cannot be applied is logged and
   * its channel keeps running as it was. Resolves with the ids that changed.
   */
  apply(next: BeamClawConfig): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Creates and starts the configured channels under a `ChannelManager` on `runtime` (started).
 * With no channel configured the manager still runs (its methods answer with no channels).
 *
 * @throws CliError for a section that cannot be built; nothing is left running.
 */
export async function startChannels(
  config: BeamClawConfig,
  runtime: AgentRuntime,
  log: CliLog | undefined,
  transcriber?: Transcriber,
): Promise<ConfiguredChannels> {
  const sections = enabledChannels(config);
  const entries: ChannelEntry[] = [];
  for (const [id, section] of sections) entries.push(await channelEntry(id, section));
  const logger: ChannelLogger = {
    debug() {},
    info: (m, f) => log?.info(line(m, f)),
    warn: (m, f) => log?.warn(line(m, f)),
    error: (m, f) => log?.error(line(m, f)),
  };
  let manager: ChannelManager;
  try {
    manager = new ChannelManager({
      runtime,
      channels: entries,
      logger,
      ...(transcriber === undefined ? {} : { transcriber }),
      ...(config.transcription?.timeoutMs === undefined
        ? {}
        : { transcribeTimeoutMs: config.transcription.timeoutMs }),
    });
  } catch (error) {
    if (isBeamClawError(error)) throw new CliError(`channels: ${error.message}`);
    throw error;
  }
  await manager.start();
  let applied = new Map(sections);
  let chain: Promise<unknown> = Promise.resolve();
  const applyNow = async (next: BeamClawConfig): Promise<string[]> => {
    const wanted = enabledChannels(next);
    const changed: string[] = [];
    for (const [id] of applied) {
      if (wanted.has(id)) continue;
      try {
        await manager.remove(id);
        applied.delete(id);
        changed.push(id);
        log?.info(`config: channel ${id} stopped`);
      } catch (error) {
        log?.warn(`config: channels.${id} not applied: ${(error as Error).message}`);
      }
    }
    for (const [id, section] of wanted) {
      const before = applied.get(id);
      if (before !== undefined && isDeepStrictEqual(before, section)) continue;
      try {
        const entry = await channelEntry(id, section);
        if (before === undefined) await manager.add(entry);
        else await manager.replace(entry);
        applied.set(id, section);
        changed.push(id);
        log?.info(`config: channel ${id} ${before === undefined ? "started" : "restarted"}`);
      } catch (error) {
        log?.warn(`config: channels.${id} not applied: ${(error as Error).message}`);
      }
    }
    return changed;
  };
  return {
    manager,
    methods: () => manager.gatewayMethods(),
    apply(next) {
      const run = chain.then(() => applyNow(next));
      chain = run.catch(() => undefined);
      return run;
    },
    async stop() {
      await chain;
      applied = new Map();
      await manager.stop();
    },
  };
}
