/** `beamclaw doctor`: checks a configuration without starting anything. */
import { access, constants, stat } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { type BeamClawConfig, ConfigError, loadConfigFile } from "@beamclaw/core";
import { CliError, createProviders, loadProviders } from "./bootstrap.js";

/** One finding. */
export interface DoctorFinding {
  level: "ok" | "warn" | "error";
  message: string;
}

const KEY_ENV: Record<string, string> = {
  anthropic: "ANTHROPIC_API_KEY",
  openai: "OPENAI_API_KEY",
  "openai-responses": "OPENAI_API_KEY",
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
      const problem = await writableDir(dir);
      findings.push(
        problem === undefined
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
        message: `store.url ${store.url} is not a redis:// or rediss:// URL`,
      });
    } else {
      findings.push({
        level: "ok",
        message: `store: redis at ${store.url.replace(/\/\/[^@/]*@/, "//***@")}`,
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
    for (const [name, p] of Object.entries(config.providers)) {
      const envKey = KEY_ENV[p.kind];
      if (p.apiKey === undefined && envKey !== undefined && !env[envKey]) {
        findings.push({
          level: "warn",
          message: `providers.${name}: no apiKey and ${envKey} is not set`,
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
