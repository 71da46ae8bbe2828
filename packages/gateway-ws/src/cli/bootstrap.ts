/**
 * Builds a running gateway from a `beamclaw.yaml`: the store, the providers and their chain,
 * the agents (with skills), the runtime, its tools (exec, process, web_fetch), the channels,
 * cron (whose `announce` deliveries go to the channels) and the gateway.
 * The adapter packages are optional peers, loaded with `import()` only when the configuration
 * needs them.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import {
  AbortedError,
  type AgentDefinition,
  AgentRuntime,
  type AgentTool,
  agentRuntimeJobRunner,
  type BeamClawConfig,
  BeamClawError,
  ConfigService,
  type CostFunction,
  CronSupervisor,
  computeCost,
  createProviderChain,
  MemoryPressureMonitor,
  MemoryStore,
  type ModelProvider,
  type ModelUsage,
  type OutputSpec,
  SessionMaintenance,
  SkillsWatcher,
  type Store,
  type Transcriber,
  withSkills,
} from "@beamclaw/core";
import { cronChannelDeliver } from "../channel-delivery.js";
import { GatewayLog, type GatewayLogSink } from "../logs.js";
import { channelMethodDefinition } from "../methods/channels.js";
import { createNodeExecHost, type NodeRelay } from "../node-exec.js";
import { createGateway, type GatewayServer } from "../server.js";
import {
  type BuildSkillsReportOptions,
  buildSkillsReport,
  type GatewaySkillsReport,
  loadReportSkills,
  skillsReport,
} from "../skills.js";
import { type ConfiguredChannels, startChannels } from "./channels.js";
import { storeDirProblem } from "./store-dir.js";
import { type ConfiguredTools, startTools } from "./tools.js";

/**
 * Where the start writes its own lines (an MCP server's tools, an applied edit of the file):
 * the gateway's log, so that they read as its lines do (`<ISO time> <level> <message>`).
 */
export type CliLog = Pick<GatewayLog, "info" | "warn" | "error">;

/** A problem the CLI reports in one clear line and exits 1 for. */
export class CliError extends BeamClawError {
  constructor(message: string) {
    super("CLI_ERROR", message);
  }
}

type ProvidersModule = typeof import("@beamclaw/providers");
type StoreFsModule = typeof import("@beamclaw/store-fs");
type StoreRedisModule = typeof import("@beamclaw/store-redis");
type McpModule = typeof import("@beamclaw/mcp");

function missing(error: unknown, pkg: string): boolean {
  const e = error as { code?: unknown; message?: unknown };
  return (
    (e?.code === "ERR_MODULE_NOT_FOUND" || e?.code === "MODULE_NOT_FOUND") &&
    typeof e.message === "string" &&
    e.message.includes(pkg)
  );
}

function notInstalled(pkg: string, why: string): CliError {
  return new CliError(
    `${why} needs ${pkg}, which is not installed. Install it: npm install ${pkg}`,
  );
}

/** Loads `@beamclaw/providers`, or explains how to install it. */
export async function loadProviders(why: string): Promise<ProvidersModule> {
  try {
    return await import("@beamclaw/providers");
  } catch (error) {
    if (missing(error, "@beamclaw/providers")) throw notInstalled("@beamclaw/providers", why);
    throw error;
  }
}

async function loadStoreFs(why: string): Promise<StoreFsModule> {
  try {
    return await import("@beamclaw/store-fs");
  } catch (error) {
    if (missing(error, "@beamclaw/store-fs")) throw notInstalled("@beamclaw/store-fs", why);
    throw error;
  }
}

async function loadStoreRedis(why: string): Promise<StoreRedisModule> {
  try {
    return await import("@beamclaw/store-redis");
  } catch (error) {
    if (missing(error, "@beamclaw/store-redis")) throw notInstalled("@beamclaw/store-redis", why);
    throw error;
  }
}

async function loadMcp(why: string): Promise<McpModule> {
  try {
    return await import("@beamclaw/mcp");
  } catch (error) {
    if (missing(error, "@beamclaw/mcp")) throw notInstalled("@beamclaw/mcp", why);
    throw error;
  }
}

/** The error a cancelled start ends with: the signal's reason when it is an error. */
function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new AbortedError("the start was cancelled");
}

/**
 * Starts the MCP servers of `tools.mcpServers` and registers their tools (`<name>__<tool>`);
 * resolves with a function that stops them all. A server that cannot be started stops the
 * ones started before it and fails with a `CliError` naming it. An aborted `signal` stops
 * the ones started and fails with its reason before the next server is started (the one
 * starting then finishes its start first, within its `connectTimeoutMs`). `log` gets a line
 * per server (its tools), `warn` (default `log`) one per tool it left out (`leftOut()`: a
 * name no model could call, an `include` name the server lacks) and one per tool whose
 * description was cut (`truncated()`: over 4 KiB).
 */
export async function startMcpServers(
  config: BeamClawConfig,
  registry: { register(tool: AgentTool): void; unregister(name: string): boolean },
  log?: (line: string) => void,
  signal?: AbortSignal,
  warn: ((line: string) => void) | undefined = log,
): Promise<() => Promise<void>> {
  const entries = Object.entries(config.tools.mcpServers);
  if (entries.length === 0) return async () => {};
  const mcp = await loadMcp("tools.mcpServers");
  const started: Array<InstanceType<McpModule["McpToolServer"]>> = [];
  const stopAll = async () => {
    for (const server of started.splice(0).reverse()) await server.stop();
  };
  for (const [name, settings] of entries) {
    if (signal?.aborted === true) {
      await stopAll();
      throw abortReason(signal);
    }
    const common = {
      name,
      ...(settings.include === undefined ? {} : { include: settings.include }),
      ...(settings.timeoutMs === undefined ? {} : { timeoutMs: settings.timeoutMs }),
      ...(settings.connectTimeoutMs === undefined
        ? {}
        : { connectTimeoutMs: settings.connectTimeoutMs }),
      ...(settings.approval === undefined ? {} : { approval: settings.approval }),
    };
    const server = new mcp.McpToolServer(
      settings.command !== undefined
        ? {
            ...common,
            command: settings.command,
            args: settings.args,
            ...(settings.env === undefined ? {} : { env: settings.env }),
            ...(settings.cwd === undefined ? {} : { cwd: settings.cwd }),
          }
        : { ...common, url: settings.url!, headers: settings.headers },
    );
    // A signal while this server connects cancels the connect (its stop() does), rather than
    // waiting up to its `connectTimeoutMs`.
    const cancel = () => void server.stop();
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      await server.start({ registry });
    } catch (error) {
      await stopAll();
      // (Read again: the check before the start narrowed `aborted` to false.)
      if ((signal as AbortSignal | undefined)?.aborted) throw abortReason(signal!);
      throw new CliError(`tools.mcpServers.${name}: ${(error as Error).message}`);
    } finally {
      signal?.removeEventListener("abort", cancel);
    }
    started.push(server);
    log?.(`mcp: ${name}: ${server.toolNames().length} tools (${server.toolNames().join(", ")})`);
    for (const { tool, reason } of server.leftOut()) {
      warn?.(`mcp: ${name}: tool ${JSON.stringify(tool)} left out: ${reason}`);
    }
    // (An @beamclaw/mcp older than `truncated()` cuts no description.)
    for (const { tool, reason } of server.truncated?.() ?? []) {
      warn?.(`mcp: ${name}: tool ${JSON.stringify(tool)} description truncated: ${reason}`);
    }
  }
  return stopAll;
}

/**
 * The store a configuration names (not opened). Relative fs dirs are relative to the config file.
 *
 * @throws CliError for an fs `store.dir` on the kernel's proc or sysfs filesystem (which
 *   cannot hold it, and under which the store's open would never return).
 */
export async function createStore(config: BeamClawConfig, configDir: string): Promise<Store> {
  const store = config.store;
  if (store.kind === "memory") return new MemoryStore();
  if (store.kind === "fs") {
    const { createFsStore } = await loadStoreFs('store kind "fs"');
    const dir = isAbsolute(store.dir) ? store.dir : resolve(configDir, store.dir);
    // Refused here: under /proc the store's open would never return (see store-dir.ts).
    const problem = await storeDirProblem(dir);
    if (problem !== undefined) throw new CliError(problem);
    return createFsStore({
      dir,
      ...(store.dedupeWindowMs === undefined ? {} : { dedupeWindowMs: store.dedupeWindowMs }),
    });
  }
  const { createRedisStore } = await loadStoreRedis('store kind "redis"');
  return createRedisStore({
    url: store.url,
    ...(store.prefix === undefined ? {} : { prefix: store.prefix }),
  });
}

/** The providers a configuration names, keyed by their name in `provider/model` refs. */
export async function createProviders(
  config: BeamClawConfig,
): Promise<Record<string, ModelProvider>> {
  const entries = Object.entries(config.providers);
  if (entries.length === 0) return {};
  const p = await loadProviders("the providers section");
  const out: Record<string, ModelProvider> = {};
  for (const [name, settings] of entries) {
    const common = {
      id: name,
      ...(settings.apiKey === undefined ? {} : { apiKey: settings.apiKey }),
      ...(settings.baseUrl === undefined ? {} : { baseUrl: settings.baseUrl }),
      ...(Object.keys(settings.headers).length === 0 ? {} : { headers: settings.headers }),
      ...(settings.timeoutMs === undefined ? {} : { timeoutMs: settings.timeoutMs }),
    };
    const cache = settings.promptCache;
    // Only Anthropic takes cache lifetimes (the schema refuses them for the other kinds).
    const cacheKey = typeof cache === "boolean" ? { promptCacheKey: cache } : {};
    switch (settings.kind) {
      case "anthropic":
        out[name] = p.createAnthropicProvider({
          ...common,
          ...(cache === undefined ? {} : { promptCache: cache }),
        });
        break;
      case "openai":
        out[name] = p.createOpenAIProvider({ ...common, ...cacheKey, api: "chat" });
        break;
      case "openai-responses":
        out[name] = p.createOpenAIProvider({ ...common, ...cacheKey, api: "responses" });
        break;
      case "google":
        out[name] = p.createGoogleProvider({
          ...common,
          ...(settings.vertex === undefined ? {} : { vertex: settings.vertex }),
        });
        break;
      case "openai-compatible":
        if (settings.baseUrl === undefined) {
          throw new CliError(`providers.${name}: an openai-compatible provider needs a baseUrl`);
        }
        out[name] = p.createOpenAICompatibleProvider({
          ...common,
          ...cacheKey,
          ...(settings.structuredOutputs === undefined
            ? {}
            : { structuredOutputs: settings.structuredOutputs }),
          baseUrl: settings.baseUrl,
        });
        break;
    }
  }
  return out;
}

/**
 * The transcriber `transcription` names (`createOpenAITranscriber` over a `providers` entry of
 * an OpenAI kind), or undefined without a `transcription` section.
 *
 * @throws CliError when it names no provider, or one of another kind.
 */
export async function createTranscriber(config: BeamClawConfig): Promise<Transcriber | undefined> {
  const section = config.transcription;
  if (section === undefined) return undefined;
  const settings = config.providers[section.provider];
  if (settings === undefined) {
    throw new CliError(
      `transcription.provider: no provider ${JSON.stringify(section.provider)} in providers`,
    );
  }
  if (!["openai", "openai-responses", "openai-compatible"].includes(settings.kind)) {
    throw new CliError(
      `transcription.provider: ${section.provider} is a ${settings.kind} provider; speech to text needs kind openai, openai-responses or openai-compatible`,
    );
  }
  const p = await loadProviders("transcription");
  return p.createOpenAITranscriber({
    id: section.provider,
    ...(settings.apiKey === undefined ? {} : { apiKey: settings.apiKey }),
    ...(settings.baseUrl === undefined ? {} : { baseUrl: settings.baseUrl }),
    ...(Object.keys(settings.headers).length === 0 ? {} : { headers: settings.headers }),
    ...(section.model === undefined ? {} : { model: section.model }),
    ...(section.language === undefined ? {} : { language: section.language }),
    ...(section.prompt === undefined ? {} : { prompt: section.prompt }),
  });
}

/**
 * Prices model calls from `pricing` (per million tokens, by `provider/model`); a ref it does
 * not list is priced by `fallback` (the provider chain: the providers' built-in list prices),
 * or not at all. Undefined without `pricing` entries: the runtime then asks its model source.
 */
export function costFunction(
  config: BeamClawConfig,
  fallback?: { cost(ref: string, usage: ModelUsage): number },
): CostFunction | undefined {
  if (Object.keys(config.pricing).length === 0) return undefined;
  return (ref, usage) => {
    const price = config.pricing[ref];
    if (price !== undefined) return computeCost(usage, price);
    return fallback?.cost(ref, usage) ?? 0;
  };
}

/**
 * The skills of a configuration: `skills.dirs` (relative ones are relative to the config
 * file) loaded once, gated against this machine and the configuration (`requires.config`),
 * and each agent's `skills` selection (omitted: every eligible skill).
 */
export async function configuredSkills(
  config: BeamClawConfig,
  configDir: string,
): Promise<GatewaySkillsReport> {
  return buildSkillsReport(
    skillDirsOf(config, configDir),
    skillSelectionsOf(config),
    skillLoadOptionsOf(config),
  );
}

/** `skills.dirs`, relative ones resolved against the config file's directory. */
function skillDirsOf(config: BeamClawConfig, configDir: string): string[] {
  return config.skills.dirs.map((d) => (isAbsolute(d) ? d : resolve(configDir, d)));
}

/** Each agent's `skills` selection. */
function skillSelectionsOf(config: BeamClawConfig): Record<string, string[] | undefined> {
  return Object.fromEntries(config.agents.map((a) => [a.id, a.skills]));
}

/** How the skills of `config` are loaded: gated against it, within its `skills` limits. */
function skillLoadOptionsOf(config: BeamClawConfig): BuildSkillsReportOptions {
  const { maxSkills, maxPromptBytes } = config.skills;
  return {
    config: config as unknown as Record<string, unknown>,
    ...(maxSkills === undefined ? {} : { maxSkills }),
    ...(maxPromptBytes === undefined ? {} : { maxPromptBytes }),
  };
}

/** Logs what a skills load left out: gated (info), malformed, clashing and over the limits. */
function logSkillsLoaded(log: CliLog, loaded: GatewaySkillsReport["loaded"]): void {
  for (const gated of loaded.gated) log.info(`skill ${gated.name} is off: ${gated.reason}`);
  for (const invalid of loaded.invalid) log.warn(`skill not loaded: ${invalid.message}`);
  for (const clash of loaded.clashes) log.warn(`skill not loaded: ${clash.message}`);
  if (loaded.overLimit !== undefined) log.warn(`skills not loaded: ${loaded.overLimit.message}`);
}

/** The agents of a configuration, with their selected eligible skills in their prompts. */
export function agentDefinitions(
  config: BeamClawConfig,
  skills: GatewaySkillsReport,
): AgentDefinition[] {
  return config.agents.map((a) => {
    const agent: AgentDefinition = {
      id: a.id,
      model: a.model,
      fallbacks: a.fallbacks,
      tools: a.tools,
      maxSteps: a.maxSteps,
      ...(a.systemPrompt === undefined ? {} : { systemPrompt: a.systemPrompt }),
      ...(a.thinking === undefined ? {} : { thinking: a.thinking }),
      ...(a.maxOutputTokens === undefined ? {} : { maxOutputTokens: a.maxOutputTokens }),
      ...(a.temperature === undefined ? {} : { temperature: a.temperature }),
      ...(a.timeoutMs === undefined ? {} : { timeoutMs: a.timeoutMs }),
      ...(a.contextTokens === undefined ? {} : { contextTokens: a.contextTokens }),
      ...(a.autoCompact === undefined ? {} : { autoCompact: a.autoCompact }),
      ...(a.output === undefined ? {} : { output: a.output as OutputSpec }),
      ...(a.subagents === undefined ? {} : { subagents: a.subagents }),
      ...(a.identity === undefined ? {} : { identity: a.identity }),
    };
    const names = new Set(skills.agents[a.id] ?? []);
    const selected = skills.loaded.skills.filter((s) => names.has(s.name));
    return selected.length === 0 ? agent : withSkills(agent, selected);
  });
}

/** What {@link startFromConfig} started; `stop()` stops it all in reverse order. */
export interface StartedGateway {
  gateway: GatewayServer;
  runtime: AgentRuntime;
  store: Store;
  configService: ConfigService;
  /**
   * Keeps the agents' skills in step with `skills.dirs` (a `SKILL.md` added, edited or
   * removed); stopped by `stop()`.
   */
  skills: SkillsWatcher;
  /** The tools built from `tools.*` (exec's processes end when the gateway stops). */
  tools: ConfiguredTools;
  /** The channels of `channels.*`, under one `ChannelManager` on the runtime. */
  channels: ConfiguredChannels;
  /** The periodic passes of `sessions.maintenance` (what `sessions.cleanup` runs). */
  maintenance: SessionMaintenance;
  address: { host: string; port: number };
  stop(options?: { drainTimeoutMs?: number; reason?: string }): Promise<void>;
}

/**
 * Loads the configuration, builds everything from it, and starts the gateway.
 *
 * With a `signal`, an abort while starting cancels the start: the step under way finishes
 * (an MCP server's connect, a channel's, each within its own time limit), no further step
 * begins, everything already started is stopped in reverse order (processes ended, the store
 * closed, no port left bound), and the call rejects with the signal's reason (an
 * `AbortedError` unless the reason is another error).
 *
 * @throws CliError, ConfigError or the failing part's error when the start fails (after
 *   stopping what had started).
 */
export async function startFromConfig(options: {
  configPath: string;
  env?: Record<string, string | undefined>;
  host?: string;
  port?: number;
  /**
   * Receives every log line, the gateway's and the start's own, each as
   * `<ISO time> <level> <message>`.
   */
  logSink?: GatewayLogSink;
  signal?: AbortSignal;
}): Promise<StartedGateway> {
  const configPath = resolve(options.configPath);
  const configDir = dirname(configPath);
  const signal = options.signal;
  // The gateway's log once it exists (its lines then reach `logs.tail` too); until then one
  // that writes the same lines to the same sink.
  let gatewayRef: GatewayServer | undefined;
  const early = new GatewayLog(options.logSink === undefined ? {} : { sink: options.logSink });
  const log: CliLog = {
    info: (message) => (gatewayRef?.log ?? early).info(message),
    warn: (message) => (gatewayRef?.log ?? early).warn(message),
    error: (message) => (gatewayRef?.log ?? early).error(message),
  };
  /** Between steps: a cancelled start goes no further. */
  const checkpoint = () => {
    if (signal?.aborted === true) throw abortReason(signal);
  };
  checkpoint();
  const configService = new ConfigService({
    path: configPath,
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  await configService.start();
  const cleanups: Array<() => Promise<unknown>> = [() => configService.stop()];
  const unwind = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  };
  try {
    checkpoint();
    const config = configService.current;
    const providers = await createProviders(config);
    checkpoint();
    const store = await createStore(config, configDir);
    await store.open();
    cleanups.push(() => store.close());
    checkpoint();
    const models = createProviderChain({ providers });
    const cost = costFunction(config, models);
    const memoryPressure =
      config.memoryPressure === undefined
        ? undefined
        : new MemoryPressureMonitor(config.memoryPressure).start();
    if (memoryPressure !== undefined) cleanups.push(async () => memoryPressure.stop());
    // The configuration the skills are loaded with (gating, limits): the last one applied.
    let skillsConfig = config;
    const skillsWatcher = new SkillsWatcher({
      dirs: skillDirsOf(config, configDir),
      watch: config.skills.watch,
      load: (dirs) => loadReportSkills(dirs, skillLoadOptionsOf(skillsConfig)),
    });
    await skillsWatcher.start();
    cleanups.push(() => skillsWatcher.stop());
    const skills = skillsReport(
      skillsWatcher.dirs,
      skillsWatcher.current,
      skillSelectionsOf(config),
    );
    logSkillsLoaded(log, skills.loaded);
    checkpoint();
    const approvals = config.tools.approvals;
    const runtime = new AgentRuntime({
      store,
      models,
      agents: agentDefinitions(config, skills),
      ...(approvals.mode === "off"
        ? {}
        : {
            approvals: {
              mode: approvals.mode,
              timeoutMs: approvals.timeoutMs,
              defaultDecision: approvals.defaultDecision,
            },
          }),
      toolTimeoutMs: config.tools.timeoutMs,
      toolMaxOutputBytes: config.tools.maxOutputBytes,
      hibernateAfterMs: config.sessions.hibernateAfterMs,
      historyLimit: config.sessions.historyLimit,
      maxQueuedMessages: config.sessions.maxQueuedMessages,
      defaultQueueMode: config.sessions.defaultQueueMode,
      ...(cost === undefined ? {} : { cost }),
      ...(memoryPressure === undefined ? {} : { memoryPressure }),
    });
    // The runtime settings of one reload are applied after those of the one before: a slow
    // skills load never lets an older file's agents replace a newer one's.
    let liveSettings = Promise.resolve();
    // What `skills.status` reports: the skills the agents were last built with.
    let currentSkills = skills;
    // A `SKILL.md` added, edited or removed: the agents' next runs use the skills as they are
    // now. (Reloads of `beamclaw.yaml` apply their own load below.)
    skillsWatcher.on("skills.changed", ({ result, cause }) => {
      if (cause !== "watch") return;
      liveSettings = liveSettings.then(() => {
        const selections = skillSelectionsOf(skillsConfig);
        const report = skillsReport(skillsWatcher.dirs, result, selections);
        try {
          runtime.reconfigure({ agents: agentDefinitions(skillsConfig, report) });
        } catch (error) {
          log.warn(`skills not applied: ${(error as Error).message}`);
          return;
        }
        currentSkills = report;
        logSkillsLoaded(log, result);
        log.info("skills: reloaded from skills.dirs");
      });
    });
    skillsWatcher.on("skills.error", ({ error }) => {
      log.warn(`skills not reloaded (the skills loaded before stay): ${error.message}`);
    });
    /** Reloads the skills for a new configuration (the last good ones stay on a failure). */
    const reloadSkills = async (next: BeamClawConfig): Promise<GatewaySkillsReport> => {
      skillsConfig = next;
      await skillsWatcher.reload(skillDirsOf(next, configDir));
      currentSkills = skillsReport(
        skillsWatcher.dirs,
        skillsWatcher.current,
        skillSelectionsOf(next),
      );
      return currentSkills;
    };
    // The node host reaches nodes through the gateway, which exists only further down.
    const relay: NodeRelay = {
      invokeNode: (request) =>
        gatewayRef === undefined
          ? Promise.reject(new CliError("the gateway is not running"))
          : gatewayRef.invokeNode(request),
      nodes: () => gatewayRef?.nodes() ?? [],
    };
    const tools = await startTools({
      config,
      configDir,
      tools: runtime.tools!,
      approvals: runtime.approvals,
      nodeHost: (node) => createNodeExecHost(relay, node),
    });
    cleanups.push(() => tools.stop());
    checkpoint();
    const stopMcp = await startMcpServers(config, runtime.tools!, log.info, signal, log.warn);
    cleanups.push(stopMcp);
    checkpoint();
    if (tools.processes !== undefined) {
      log.info(
        `exec: hosts ${Object.values(tools.execHosts)
          .map((h) => h.id)
          .join(", ")}; ${
          runtime.approvals === undefined
            ? "tools.approvals.mode is off, so only allowlisted commands run"
            : `commands need approval (${runtime.approvals.mode}) unless allowlisted`
        }`,
      );
    }
    await runtime.start();
    cleanups.push(() => runtime.stop());
    checkpoint();
    // Channels start after the runtime and stop before it.
    const transcriber = await createTranscriber(config);
    const channels = await startChannels(config, runtime, log, transcriber);
    cleanups.push(() => channels.stop());
    checkpoint();
    // Cron starts after the channels it announces to (a missed run caught up at the start
    // delivers at once) and stops before them.
    const cron = await new CronSupervisor({
      store,
      runJob: agentRuntimeJobRunner(runtime),
      agents: runtime.agents.map((a) => a.id),
      deliver: cronChannelDeliver(channels.manager),
    }).start();
    cleanups.push(() => cron.stop());
    await cron.applyConfig(config.cron.jobs);
    checkpoint();
    // Session maintenance (`sessions.maintenance`, read at each pass): periodic passes, and
    // what `sessions.cleanup` runs. Stops before the runtime.
    const maintenance = new SessionMaintenance(runtime, {
      settings: () => configService.current.sessions.maintenance,
      everyMs: config.sessions.maintenance?.everyMs ?? 3_600_000,
      onPass: (summaries) => {
        for (const s of summaries) {
          if (!s.wouldMutate) continue;
          // Deleting a session deletes the sub-agents it spawned.
          const children = s.subagents > 0 ? `, with ${s.subagents} of their sub-agents` : "";
          log.info(
            s.dryRun
              ? `sessions.maintenance (warn) ${s.agentId}: ${s.pruned} stale and ${s.capped} over maxSessions would be deleted${children} (mode: enforce deletes them)`
              : `sessions.maintenance ${s.agentId}: deleted ${s.appliedCount} sessions (${s.pruned} stale, ${s.capped} over maxSessions${children})`,
          );
        }
      },
      onError: (error) => log.error(`sessions.maintenance failed: ${(error as Error).message}`),
    });
    maintenance.start();
    cleanups.push(() => maintenance.stop());
    // Gateway methods of channels added by a reload after the gateway was created.
    const lateMethods = new Map<string, () => void>();
    // Cron jobs, channels and the live tool settings follow the file as it changes.
    const offConfig = configService.on("config.changed", ({ config: next, diff }) => {
      if (diff.restartRequired.length > 0) {
        log.warn(
          `config: ${diff.restartRequired.join(", ")} changed; restart the gateway to apply (until then the running values stay)`,
        );
      }
      for (const problem of tools.apply(next)) log.warn(problem);
      liveSettings = liveSettings.then(() =>
        applyLiveSettings(runtime, next, diff.applied, log, reloadSkills),
      );
      const everyMs = next.sessions.maintenance?.everyMs ?? 3_600_000;
      if (everyMs !== maintenance.everyMs) maintenance.setEveryMs(everyMs);
      if (diff.changed.some((p) => p === "cron" || p.startsWith("cron."))) {
        cron
          .applyConfig(next.cron.jobs)
          .catch((error: Error) => log.warn(`cron config not applied: ${error.message}`));
      }
      if (diff.changed.some((p) => p === "channels" || p.startsWith("channels."))) {
        channels
          .apply(next)
          .then(() => {
            if (gatewayRef !== undefined) syncChannelMethods(gatewayRef, channels, lateMethods);
          })
          .catch((error: Error) => log.warn(`channels config not applied: ${error.message}`));
      }
    });
    cleanups.push(async () => {
      offConfig();
      await liveSettings;
    });
    const gateway = createGateway({
      runtime,
      config,
      configService,
      cron,
      models,
      skills: () => currentSkills,
      channelMethods: () => channels.methods(),
      // `chat.send` with `deliver: true` replies through the channels' outboxes.
      channels: channels.manager,
      maintenance,
      // A relative `hooks.transformsDir` is the config file's, as every path in it.
      hooks: { baseDir: configDir },
      // So is a relative `heartbeat.heartbeatFile` (the section takes a restart to change).
      ...(config.heartbeat.heartbeatFile === undefined
        ? {}
        : {
            heartbeat: { heartbeatFile: configPathOf(config.heartbeat.heartbeatFile, configDir) },
          }),
      // `chat.send` audio attachments are transcribed as the channels' voice notes are.
      ...(transcriber === undefined ? {} : { transcriber }),
      ...(memoryPressure === undefined ? {} : { memoryPressure }),
      ...(options.host === undefined ? {} : { host: options.host }),
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.logSink === undefined ? {} : { logSink: options.logSink }),
      ...(config.gateway.tls === undefined
        ? {}
        : { tls: await readTls(config.gateway.tls, configDir) }),
    });
    // The lines of the start so far reach `logs.tail` too.
    gateway.log.adopt(early);
    gatewayRef = gateway;
    const mounted = new Set(Object.keys(channels.methods()));
    checkpoint();
    const address = await gateway.start();
    // Names the gateway mounted at creation follow the channels by themselves.
    for (const name of mounted) lateMethods.set(name, () => undefined);
    syncChannelMethods(gateway, channels, lateMethods);
    return {
      gateway,
      runtime,
      store,
      configService,
      skills: skillsWatcher,
      tools,
      channels,
      maintenance,
      address,
      async stop(stopOptions = {}) {
        await gateway.stop(stopOptions);
        await unwind();
      },
    };
  } catch (error) {
    await unwind();
    throw error;
  }
}

/**
 * Registers the gateway methods of channels that appeared since the gateway was created (a
 * reload added them). Every method looks its channel up at each call: one whose channel went
 * away answers `UNAVAILABLE`.
 */
function syncChannelMethods(
  gateway: GatewayServer,
  channels: ConfiguredChannels,
  registered: Map<string, () => void>,
): void {
  for (const name of Object.keys(channels.methods())) {
    if (registered.has(name)) continue;
    try {
      registered.set(
        name,
        gateway.registerMethod(
          name,
          channelMethodDefinition(name, () => channels.methods()),
        ),
      );
    } catch (error) {
      gateway.log.warn(`channel method ${name} not registered: ${(error as Error).message}`);
    }
  }
}

/** A path of the configuration: a relative one is relative to the config file's directory. */
function configPathOf(path: string, configDir: string): string {
  return isAbsolute(path) ? path : resolve(configDir, path);
}

async function readTls(tls: { cert: string; key: string }, configDir: string) {
  const { readFile } = await import("node:fs/promises");
  const path = (p: string) => configPathOf(p, configDir);
  let pem: { cert: Buffer; key: Buffer };
  try {
    pem = { cert: await readFile(path(tls.cert)), key: await readFile(path(tls.key)) };
  } catch (error) {
    throw new CliError(
      `gateway.tls: cannot read the certificate or key: ${(error as Error).message}`,
    );
  }
  try {
    // What the HTTPS server will do with them: a file that is not PEM, or a key that does
    // not match the certificate, is refused here with the setting's name.
    const { createSecureContext } = await import("node:tls");
    createSecureContext(pem);
  } catch (error) {
    throw new CliError(
      `gateway.tls: ${tls.cert} and ${tls.key} are not a usable PEM certificate and key: ${(error as Error).message}`,
    );
  }
  return pem;
}

/**
 * Applies the live-reloadable settings the runtime owns: agents (with their skills), the
 * approval mode, timeout and default decision, and the tool timeout. A switch of approvals
 * between off and on changes how exec is guarded, so it takes a restart and is logged.
 */
function applyLiveSettings(
  runtime: AgentRuntime,
  next: BeamClawConfig,
  applied: readonly string[],
  log: CliLog,
  reloadSkills: (next: BeamClawConfig) => Promise<GatewaySkillsReport>,
): Promise<void> {
  const touched = (prefix: string) =>
    applied.some((p) => p === prefix || p.startsWith(`${prefix}.`));
  const run = async () => {
    if (touched("agents") || touched("skills")) {
      // Built from this file: each agent's `skills` selection, a new agent's, and the
      // skills of `skills.dirs` as it is now (not as it was at the start).
      const current = await reloadSkills(next);
      runtime.reconfigure({ agents: agentDefinitions(next, current) });
      log.info("config: agents applied");
    }
    if (touched("tools.timeoutMs")) runtime.reconfigure({ toolTimeoutMs: next.tools.timeoutMs });
    if (touched("tools.maxOutputBytes")) {
      runtime.reconfigure({ toolMaxOutputBytes: next.tools.maxOutputBytes });
    }
    if (touched("tools.approvals")) {
      const wanted = next.tools.approvals;
      if (runtime.approvals === undefined || wanted.mode === "off") {
        log.warn("config: switching tool approvals on or off takes a restart");
      } else {
        runtime.approvals.configure({
          mode: wanted.mode,
          timeoutMs: wanted.timeoutMs,
          defaultDecision: wanted.defaultDecision,
        });
      }
    }
  };
  return run().catch((error: Error) => log.warn(`config not applied: ${error.message}`));
}
