/** `beamclaw doctor`: checks a configuration without starting anything. */
import { access, constants, stat } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import {
  type BeamClawConfig,
  ConfigError,
  createWebFetchTool,
  ExecAllowlist,
  loadConfigFile,
  NodeHost,
  validateAccessPolicy,
} from "@beamclaw/core";
import { hookMappings, transformFile } from "../hooks/ingress.js";
import { isTemplated } from "../hooks/template.js";
import {
  CliError,
  configuredSkills,
  createProviders,
  createTranscriber,
  loadProviders,
} from "./bootstrap.js";
import { channelEntry, enabledChannels } from "./channels.js";
import { storeDirProblem } from "./store-dir.js";
import { buildExecHosts } from "./tools.js";

/** One finding. */
export interface DoctorFinding {
  level: "ok" | "warn" | "error";
  message: string;
}

/** The environment variables a provider kind reads its key from, the first preferred. */
const KEY_ENV: Record<string, readonly string[]> = {
  anthropic: ["ANTHROPIC_API_KEY"],
  openai: ["OPENAI_API_KEY"],
  "openai-responses": ["OPENAI_API_KEY"],
  google: ["GEMINI_API_KEY", "GOOGLE_API_KEY"],
};

function isLoopbackHost(host: string): boolean {
  return host === "127.0.0.1" || host === "::1" || host === "localhost";
}

async function writableDir(dir: string): Promise<string | undefined> {
  let probe = dir;
  for (;;) {
    try {
      const info = await stat(probe);
      if (!info.isDirectory()) return `${probe} is not a directory`;
      await access(probe, constants.W_OK);
      return undefined;
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT")
        return `${probe}: ${(error as Error).message}`;
      const parent = dirname(probe);
      if (parent === probe) return `no existing parent directory of ${dir}`;
      probe = parent;
    }
  }
}

/** `url` with its user information (`redis://:password@host`) masked, whatever its scheme. */
function withoutCredentials(url: string): string {
  return url.replace(/^([^/?#]*\/\/)[^/?#@]*@/, "$1***@");
}

async function installed(pkg: string): Promise<boolean> {
  try {
    await import(pkg);
    return true;
  } catch {
    return false;
  }
}

/** Checks the configuration at `configPath`; resolves with every finding. */
export async function doctor(
  configPath: string,
  options: { env?: Record<string, string | undefined>; probe?: boolean } = {},
): Promise<DoctorFinding[]> {
  const findings: DoctorFinding[] = [];
  const env = options.env ?? process.env;
  const path = resolve(configPath);
  let config: BeamClawConfig;
  try {
    config = await loadConfigFile(path, { env });
  } catch (error) {
    if (ConfigError.isInstance(error)) {
      for (const issue of error.issues) {
        findings.push({ level: "error", message: `config ${issue.path}: ${issue.message}` });
      }
      return findings;
    }
    throw error;
  }
  findings.push({ level: "ok", message: `config ${path} is valid` });

  const gw = config.gateway;
  if (gw.auth.mode === "token" && !gw.auth.token) {
    findings.push({
      level: "error",
      message: "gateway.auth.mode is token but gateway.auth.token is empty",
    });
  } else if (gw.auth.mode === "password" && !gw.auth.password) {
    findings.push({
      level: "error",
      message: "gateway.auth.mode is password but gateway.auth.password is empty",
    });
  } else if (gw.auth.mode === "none" && !isLoopbackHost(gw.host)) {
    findings.push({
      level: "error",
      message: `gateway.auth.mode is none while listening on ${gw.host}: anyone who can reach the port controls the agents`,
    });
  } else {
    findings.push({
      level: "ok",
      message: `gateway listens on ${gw.host}:${gw.port} with ${gw.auth.mode} auth`,
    });
  }
  if (gw.auth.mode === "token" && gw.auth.token !== undefined && gw.auth.token.length < 16) {
    findings.push({ level: "warn", message: "gateway.auth.token is shorter than 16 characters" });
  }

  const configDir = dirname(path);
  const store = config.store;
  if (store.kind === "fs") {
    if (!(await installed("@beamclaw/store-fs"))) {
      findings.push({
        level: "error",
        message: 'store kind "fs" needs @beamclaw/store-fs: npm install @beamclaw/store-fs',
      });
    } else {
      const dir = isAbsolute(store.dir) ? store.dir : resolve(configDir, store.dir);
      const kernel = await storeDirProblem(dir);
      const problem = kernel === undefined ? await writableDir(dir) : undefined;
      findings.push(
        kernel !== undefined
          ? { level: "error", message: kernel }
          : problem === undefined
            ? { level: "ok", message: `store: files in ${dir}` }
            : { level: "error", message: `store.dir ${dir} is not writable: ${problem}` },
      );
    }
  } else if (store.kind === "redis") {
    if (!(await installed("@beamclaw/store-redis"))) {
      findings.push({
        level: "error",
        message:
          'store kind "redis" needs @beamclaw/store-redis: npm install @beamclaw/store-redis',
      });
    } else if (!/^rediss?:\/\//.test(store.url)) {
      findings.push({
        level: "error",
        message: `store.url ${withoutCredentials(store.url)} is not a redis:// or rediss:// URL`,
      });
    } else {
      findings.push({
        level: "ok",
        message: `store: redis at ${withoutCredentials(store.url)}`,
      });
    }
  } else {
    findings.push({ level: "warn", message: "store kind memory: nothing survives a restart" });
  }

  const providerNames = Object.keys(config.providers);
  if (providerNames.length === 0) {
    findings.push({
      level: "error",
      message: "no providers are configured: agents have no model to call",
    });
  } else {
    try {
      await loadProviders("the providers section");
      await createProviders(config);
      findings.push({ level: "ok", message: `providers: ${providerNames.join(", ")}` });
    } catch (error) {
      findings.push({
        level: "error",
        message:
          error instanceof CliError ? error.message : `providers: ${(error as Error).message}`,
      });
    }
    if (config.transcription !== undefined) {
      try {
        await createTranscriber(config);
        findings.push({
          level: "ok",
          message: `transcription: voice notes through ${config.transcription.provider}`,
        });
      } catch (error) {
        findings.push({ level: "error", message: (error as Error).message });
      }
    }
    for (const [name, p] of Object.entries(config.providers)) {
      const envKeys = KEY_ENV[p.kind];
      if (p.apiKey === undefined && envKeys !== undefined && !envKeys.some((key) => env[key])) {
        const [first, ...others] = envKeys;
        const names = others.length === 0 ? first : `${first} (or ${others.join(", ")})`;
        findings.push({
          level: "warn",
          message: `providers.${name}: no apiKey and ${names} is not set`,
        });
      }
    }
  }
  for (const agent of config.agents) {
    for (const ref of [agent.model, ...agent.fallbacks]) {
      const provider = ref.slice(0, ref.indexOf("/"));
      if (!(provider in config.providers)) {
        findings.push({
          level: "error",
          message: `agents.${agent.id}: model ${ref} names provider "${provider}", which is not configured`,
        });
      }
    }
  }
  if (!findings.some((f) => f.message.startsWith("agents."))) {
    findings.push({
      level: "ok",
      message: `agents: ${config.agents.map((a) => `${a.id} (${a.model})`).join(", ")}`,
    });
  }

  findings.push(...(await skillFindings(config, configDir)));
  findings.push(...(await toolFindings(config, configDir)));
  findings.push(...(await channelFindings(config)));
  findings.push(...(await hookFindings(config, configDir)));

  if (options.probe === true) {
    for (const [name, p] of Object.entries(config.providers)) {
      if (p.baseUrl === undefined) continue;
      try {
        const response = await fetch(p.baseUrl, { signal: AbortSignal.timeout(3000) });
        await response.body?.cancel();
        findings.push({
          level: "ok",
          message: `providers.${name}: ${p.baseUrl} answered (HTTP ${response.status})`,
        });
      } catch (error) {
        findings.push({
          level: "warn",
          message: `providers.${name}: ${p.baseUrl} is not reachable (${(error as Error).message})`,
        });
      }
    }
  }
  return findings;
}

/** Channels: each enabled section builds (kind, package, options) and its policy is valid. */
async function channelFindings(config: BeamClawConfig): Promise<DoctorFinding[]> {
  const findings: DoctorFinding[] = [];
  const agents = new Set(config.agents.map((a) => a.id));
  for (const [id, section] of enabledChannels(config)) {
    try {
      const entry = await channelEntry(id, section);
      validateAccessPolicy(entry, `channels.${id}`);
      if (entry.agentId !== undefined && !agents.has(entry.agentId)) {
        throw new CliError(`channels.${id}: unknown agent "${entry.agentId}"`);
      }
      findings.push({
        level: "ok",
        message: `channels.${id}: ${entry.plugin.meta.label}, DM policy ${entry.dmPolicy ?? "pairing"}`,
      });
    } catch (error) {
      const message = (error as Error).message;
      findings.push({
        level: "error",
        message: message.startsWith(`channels.${id}`) ? message : `channels.${id}: ${message}`,
      });
    }
  }
  // Cron jobs that announce to a channel: that channel must be configured and enabled.
  const configured = new Set(enabledChannels(config).keys());
  for (const job of config.cron.jobs) {
    const delivery = job.delivery;
    if (delivery.kind !== "announce" || configured.has(delivery.channel)) continue;
    findings.push({
      level: "error",
      message: `cron.jobs.${job.id}: announces to channel "${delivery.channel}", which is not configured${
        configured.size === 0
          ? " (no channel is)"
          : ` (the channels are ${[...configured].join(", ")})`
      }`,
    });
  }
  return findings;
}

/** Skills: what is eligible, what is gated and why, and agents naming skills they will not get. */
async function skillFindings(config: BeamClawConfig, configDir: string): Promise<DoctorFinding[]> {
  if (config.skills.dirs.length === 0) return [];
  const findings: DoctorFinding[] = [];
  let report: Awaited<ReturnType<typeof configuredSkills>>;
  try {
    report = await configuredSkills(config, configDir);
  } catch (error) {
    return [{ level: "error", message: `skills: ${(error as Error).message}` }];
  }
  const { skills, gated, invalid, clashes, overLimit } = report.loaded;
  findings.push({
    level: "ok",
    message: `skills: ${skills.length} eligible${skills.length === 0 ? "" : ` (${skills.map((s) => s.name).join(", ")})`} in ${report.dirs.join(", ")}`,
  });
  for (const g of gated) {
    findings.push({ level: "warn", message: `skill ${g.name} is gated off: ${g.reason}` });
  }
  for (const e of [...invalid, ...clashes])
    findings.push({ level: "warn", message: `skill not loaded: ${e.message}` });
  if (overLimit !== undefined)
    findings.push({ level: "warn", message: `skills not loaded: ${overLimit.message}` });
  for (const agent of config.agents) {
    for (const name of agent.skills ?? []) {
      const same = (other: string) => other.toLowerCase() === name.toLowerCase();
      if (name === "*" || skills.some((s) => same(s.name))) continue;
      const off = gated.find((g) => same(g.name));
      findings.push({
        level: "warn",
        message: `agents.${agent.id}: skill ${name} ${off === undefined ? "is not in any skills directory" : `is gated off (${off.reason})`}, so it is not in the prompt`,
      });
    }
  }
  return findings;
}

/** `tools.exec` and `tools.webFetch`: what the gateway would build, and what it would refuse. */
async function toolFindings(config: BeamClawConfig, configDir: string): Promise<DoctorFinding[]> {
  const findings: DoctorFinding[] = [];
  const { exec, webFetch, approvals } = config.tools;
  const offered = (tool: string) =>
    config.agents.some((a) => a.tools.includes("*") || a.tools.includes(tool));
  if (exec.enabled) {
    let problem = false;
    try {
      new ExecAllowlist(exec.allowlist);
      const hosts = await buildExecHosts(exec, {
        configDir,
        nodeHost: (node) => new NodeHost(node),
      });
      findings.push({
        level: "ok",
        message: `tools.exec: hosts ${Object.values(hosts)
          .map((h) => h.id)
          .join(
            ", ",
          )} (default ${exec.host}), ${exec.allowlist.length} allowlist entr${exec.allowlist.length === 1 ? "y" : "ies"}`,
      });
    } catch (error) {
      problem = true;
      findings.push({
        level: "error",
        message:
          error instanceof CliError ? error.message : `tools.exec: ${(error as Error).message}`,
      });
    }
    if (!problem && exec.host === "gateway") {
      findings.push({
        level: "warn",
        message:
          "tools.exec.host is gateway: approved commands run unsandboxed on this machine, as the gateway's user",
      });
    }
    if (approvals.mode === "off") {
      findings.push({
        level: "warn",
        message:
          "tools.exec is enabled and tools.approvals.mode is off: only allowlisted commands run",
      });
    } else if (approvals.defaultDecision !== "deny") {
      findings.push({
        level: "warn",
        message: `tools.approvals.defaultDecision is ${approvals.defaultDecision}: an exec command nobody answers for runs anyway`,
      });
    }
    if (exec.node !== undefined) {
      findings.push({
        level: "ok",
        message: `tools.exec.node: commands for node ${exec.node.nodeId} need it paired and connected with system.run`,
      });
    }
    if (!offered("exec")) {
      findings.push({
        level: "warn",
        message: 'tools.exec is enabled but no agent lists "exec" (or "*") in its tools',
      });
    }
  }
  if (webFetch.enabled) {
    try {
      createWebFetchTool({
        allow: webFetch.allow,
        maxBytes: webFetch.maxBytes,
        timeoutMs: webFetch.timeoutMs,
      });
      findings.push({
        level: "ok",
        message: `tools.webFetch: on${webFetch.allow.length === 0 ? "" : `, internal hosts allowed: ${webFetch.allow.join(", ")}`}`,
      });
    } catch (error) {
      findings.push({ level: "error", message: `tools.webFetch: ${(error as Error).message}` });
    }
    if (!offered("web_fetch")) {
      findings.push({
        level: "warn",
        message: 'tools.webFetch is enabled but no agent lists "web_fetch" (or "*") in its tools',
      });
    }
  }
  return findings;
}

/**
 * `hooks`: a token of its own, a session-key policy that lets its mappings work, mappings
 * whose channels, agents and transform modules exist.
 */
async function hookFindings(config: BeamClawConfig, configDir: string): Promise<DoctorFinding[]> {
  const hooks = config.hooks;
  if (!hooks.enabled) return [];
  const findings: DoctorFinding[] = [];
  const auth = config.gateway.auth;
  const token = hooks.token ?? "";
  if (token === auth.token || token === auth.password) {
    findings.push({
      level: "error",
      message:
        "hooks.token is the gateway's own secret: give hooks a token of their own (whoever sends webhooks would hold an operator's key)",
    });
  } else if (token.length < 16) {
    findings.push({ level: "warn", message: "hooks.token is shorter than 16 characters" });
  }
  if (!isLoopbackHost(config.gateway.host) && config.gateway.tls === undefined) {
    findings.push({
      level: "warn",
      message: `hooks are reachable on ${config.gateway.host} without TLS: the hook token travels in clear unless a proxy in front adds HTTPS`,
    });
  }
  if (hooks.allowRequestSessionKey && hooks.allowedSessionKeyPrefixes.length === 0) {
    findings.push({
      level: "warn",
      message:
        'hooks.allowRequestSessionKey is on with no hooks.allowedSessionKeyPrefixes: a caller can write into any session (set e.g. ["hook:"])',
    });
  }
  const agents = new Set(config.agents.map((a) => a.id));
  const channels = new Set(enabledChannels(config).keys());
  for (const id of hooks.allowedAgentIds ?? []) {
    if (id !== "*" && !agents.has(id)) {
      findings.push({
        level: "warn",
        message: `hooks.allowedAgentIds names agent "${id}", which is not configured`,
      });
    }
  }
  const transformsDir =
    hooks.transformsDir === undefined ? undefined : resolve(configDir, hooks.transformsDir);
  for (const mapping of hookMappings(hooks)) {
    const name = `hooks mapping ${mapping.id ?? mapping.match.path ?? mapping.match.source}`;
    if (mapping.sessionKey !== undefined && isTemplated(mapping.sessionKey)) {
      if (!hooks.allowRequestSessionKey) {
        findings.push({
          level: "error",
          message: `${name}: its sessionKey comes from the payload, which needs hooks.allowRequestSessionKey (every request would be refused)`,
        });
      }
    }
    if (mapping.agentId !== undefined && !agents.has(mapping.agentId)) {
      findings.push({ level: "error", message: `${name}: unknown agent "${mapping.agentId}"` });
    }
    if (mapping.channel !== undefined && !channels.has(mapping.channel)) {
      findings.push({
        level: "error",
        message: `${name}: delivers to channel "${mapping.channel}", which is not configured`,
      });
    }
    if (mapping.transform !== undefined) {
      const problem = await transformProblem(transformsDir, mapping.transform.module);
      if (problem !== undefined) findings.push({ level: "error", message: `${name}: ${problem}` });
    }
  }
  if (!findings.some((f) => f.level === "error")) {
    findings.push({
      level: "ok",
      message: `hooks: ${hooks.path}/wake, ${hooks.path}/agent and ${hookMappings(hooks).length} mapping(s)`,
    });
  }
  return findings;
}

/** Why a transform module cannot be loaded, if it cannot. */
async function transformProblem(
  dir: string | undefined,
  module: string,
): Promise<string | undefined> {
  if (dir === undefined) return `transform ${module} needs hooks.transformsDir`;
  try {
    await transformFile(dir, module);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
