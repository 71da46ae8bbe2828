/**
 * What the gateway offers: `models.list`, `tools.catalog`, `tools.effective`, `commands.list`,
 * `agents.list`, `agent.identity.get`, `config.get`, `skills.status`, `usage.status`,
 * `usage.cost`.
 */
import { createHash } from "node:crypto";
import { dirname, isAbsolute, resolve } from "node:path";
import { type AgentDefinition, CHAT_COMMANDS, parseSessionKey, usageDay } from "@beamclaw/core";
import type { GatewayHub, HubMethod } from "../hub.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalInt,
  optionalString,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import { buildSkillsReport, type GatewaySkillsReport } from "../skills.js";
import { dayRange, meterRows } from "./session-usage.js";

// Whole names (`key`, `apiKey`) and endings (`botToken`, `signingSecret`, `inboundSecret`).
const SECRET_KEYS =
  /(^key|apikey|api_key|privatekey|private_key|token|password|passwd|secret|authorization|cookie|credentials?)$/i;
/** Maps whose every value may be a secret: HTTP headers, an MCP server's environment. */
const SECRET_MAPS = new Set(["headers", "env"]);
/** The user information of a URL (`redis://:password@host`). */
const URL_CREDENTIALS = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]*@/i;
/** What a secret in `config.get` is replaced with. */
export const REDACTED = "__REDACTED__";

/**
 * A copy of `value` with every secret-looking field (`apiKey`, `token`, `botToken`,
 * `signingSecret`, `password`, ...), every value of a `headers` or `env` map, and the
 * credentials of any URL (`redis://:pw@host`) replaced by {@link REDACTED}.
 */
export function redactSecrets(value: unknown, path: string[] = []): unknown {
  if (typeof value === "string") return value.replace(URL_CREDENTIALS, `$1${REDACTED}@`);
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, path));
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const inMap = SECRET_MAPS.has(path.at(-1) ?? "");
    out[k] =
      (SECRET_KEYS.test(k) || inMap) && typeof v === "string" && v.length > 0
        ? REDACTED
        : redactSecrets(v, [...path, k]);
  }
  return out;
}

function agentOf(hub: GatewayHub, method: string, p: ParamsObject): AgentDefinition {
  const agentId = optionalString(method, p, "agentId", { nonEmpty: true }) ?? hub.defaultAgentId;
  const agent = hub.runtime.agents.find((a) => a.id === agentId);
  if (agent === undefined) {
    throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown agent "${agentId}"`, {
      details: { code: "UNKNOWN_AGENT_ID", agentId },
    });
  }
  return agent;
}

/**
 * The agent of session `key` (a cron session's is the default agent): `agentId`, when given
 * too, must be the same (`AGENT_MISMATCH`); a malformed key is `INVALID_SESSION_KEY`.
 */
function sessionAgentOf(
  hub: GatewayHub,
  method: string,
  p: ParamsObject,
  key: string,
): { agent: AgentDefinition; key: string } {
  const agentId = optionalString(method, p, "agentId", { nonEmpty: true })?.toLowerCase();
  const session = hub.session(key, agentId);
  const agent = agentOf(hub, method, {
    agentId: parseSessionKey(session.key).agentId ?? agentId ?? hub.defaultAgentId,
  });
  return { agent, key: session.key };
}

/**
 * The agent `agent.identity.get` describes: the agent of `sessionKey`, else `agentId`'s,
 * else the default agent, as OpenClaw resolves it.
 */
function identityAgentOf(hub: GatewayHub, method: string, p: ParamsObject): AgentDefinition {
  const sessionKey = optionalString(method, p, "sessionKey", { maxLength: 512 })?.trim();
  if (sessionKey === undefined || sessionKey === "") return agentOf(hub, method, p);
  return sessionAgentOf(hub, method, p, sessionKey).agent;
}

/**
 * What OpenClaw's `agent.identity.get` answers (`AgentIdentityResult`): the configured
 * identity's name (else the agent's id), emoji and avatar, and where each came from.
 */
function identityResult(agent: AgentDefinition): Record<string, unknown> {
  const identity = agent.identity ?? {};
  const avatar = identity.avatar;
  return {
    agentId: agent.id,
    name: identity.name ?? agent.id,
    nameSource: identity.name === undefined ? "default" : "config",
    ...(identity.emoji === undefined ? {} : { emoji: identity.emoji }),
    ...(avatar === undefined
      ? { avatarStatus: "none" }
      : {
          avatar,
          avatarSource: "config",
          avatarStatus: avatar.startsWith("data:") ? "data" : "remote",
        }),
  };
}

/**
 * The tools `agent` may call in `sessionKey`, by name and description: its allowed global
 * tools, the session's own, and `spawn_subagent` when it may spawn sub-agents.
 */
function toolsOf(
  hub: GatewayHub,
  agent: AgentDefinition,
  sessionKey: string,
): Array<{ name: string; description: string }> {
  const tools = [...(hub.runtime.tools?.forSession(agent, sessionKey).values() ?? [])].map(
    (tool) => ({ name: tool.name, description: tool.description }),
  );
  if (agent.subagents !== undefined) {
    tools.push({
      name: "spawn_subagent",
      description: "Delegate a self-contained task to a sub-agent.",
    });
  }
  return tools;
}

function splitRef(ref: string): { provider: string; model: string } {
  const slash = ref.indexOf("/");
  return { provider: ref.slice(0, slash), model: ref.slice(slash + 1) };
}

function isoDay(offsetDays: number, now: number): string {
  return usageDay(now - offsetDays * 86_400_000);
}

export const catalogMethods: Record<string, HubMethod> = {
  "models.list": {
    scope: Scopes.READ,
    handler(call, hub) {
      const agentId = optionalString(call.method, call.params, "agentId", { nonEmpty: true });
      const agents =
        agentId === undefined ? hub.runtime.agents : [agentOf(hub, call.method, call.params)];
      const providers = hub.config?.providers ?? {};
      const seen = new Set<string>();
      const models: Array<Record<string, unknown>> = [];
      const refs = [
        ...agents.flatMap((a) => [a.model, ...(a.fallbacks ?? [])]),
        ...(agentId === undefined ? Object.keys(hub.config?.pricing ?? {}) : []),
      ];
      for (const ref of refs) {
        if (seen.has(ref) || !ref.includes("/")) continue;
        seen.add(ref);
        const { provider, model } = splitRef(ref);
        const tags = agents.filter((a) => a.model === ref).map((a) => `primary:${a.id}`);
        models.push({
          id: model,
          name: model,
          provider,
          ...(tags.length > 0 ? { tags } : {}),
          ...(hub.config === undefined ? {} : { available: provider in providers }),
        });
      }
      return { models };
    },
  },

  "tools.catalog": {
    scope: Scopes.READ,
    handler(call, hub) {
      const agent = agentOf(hub, call.method, call.params);
      const entries = toolsOf(hub, agent, `agent:${agent.id}:main`).map((tool) => ({
        id: tool.name,
        label: tool.name,
        description: tool.description,
        source: "core" as const,
        defaultProfiles: ["full" as const],
      }));
      return {
        agentId: agent.id,
        profiles: [{ id: "full", label: "Full" }],
        groups:
          entries.length === 0
            ? []
            : [{ id: "tools", label: "Tools", source: "core", tools: entries }],
      };
    },
  },

  "tools.effective": {
    scope: Scopes.READ,
    handler(call, hub) {
      const { method, params: p } = call;
      const { agent, key } = sessionAgentOf(
        hub,
        method,
        p,
        requireString(method, p, "sessionKey", 512),
      );
      const servers = Object.keys(hub.config?.tools.mcpServers ?? {});
      const core: Array<Record<string, unknown>> = [];
      const mcp: Array<Record<string, unknown>> = [];
      for (const tool of toolsOf(hub, agent, key)) {
        const cut = tool.name.indexOf("__");
        const server = cut > 0 ? tool.name.slice(0, cut) : undefined;
        const entry = {
          id: tool.name,
          label: tool.name,
          description: tool.description,
          rawDescription: tool.description,
        };
        if (server !== undefined && servers.includes(server)) {
          mcp.push({
            ...entry,
            source: "mcp",
            mcpServer: server,
            mcpToolName: tool.name.slice(cut + 2),
          });
        } else {
          core.push({ ...entry, source: "core" });
        }
      }
      return {
        agentId: agent.id,
        profile: "full",
        groups: [
          ...(core.length === 0
            ? []
            : [{ id: "core", label: "Tools", source: "core", tools: core }]),
          ...(mcp.length === 0
            ? []
            : [{ id: "mcp", label: "MCP servers", source: "mcp", tools: mcp }]),
        ],
      };
    },
  },

  "commands.list": {
    scope: Scopes.READ,
    handler(call, hub) {
      const { method, params: p } = call;
      // The agent is checked (an unknown one is an error); every agent has the same commands.
      if (p.agentId !== undefined) agentOf(hub, method, p);
      optionalString(method, p, "sessionKey", { nonEmpty: true, maxLength: 512 });
      optionalString(method, p, "provider", { nonEmpty: true });
      const scope = optionalEnum(method, p, "scope", ["text", "native", "both"] as const) ?? "both";
      const includeArgs = optionalBool(method, p, "includeArgs") !== false;
      // Chat commands are typed as text in the channels; none is a platform's native command.
      if (scope === "native") return { commands: [] };
      return {
        commands: CHAT_COMMANDS.map((command) => ({
          name: command.name,
          textAliases: [...command.textAliases],
          description: command.description,
          category: command.category,
          source: "native",
          scope: "text",
          acceptsArgs: command.args.length > 0,
          ...(includeArgs && command.args.length > 0
            ? {
                args: command.args.map((arg) => ({
                  name: arg.name,
                  description: arg.description,
                  type: arg.type,
                  ...(arg.required === true ? { required: true } : {}),
                  ...(arg.choices === undefined
                    ? {}
                    : { choices: arg.choices.map((value) => ({ value, label: value })) }),
                })),
              }
            : {}),
        })),
      };
    },
  },

  "agents.list": {
    scope: Scopes.READ,
    handler(_call, hub) {
      return {
        defaultId: hub.defaultAgentId,
        mainKey: "main",
        scope: "per-sender",
        agents: hub.runtime.agents.map((a) => ({
          id: a.id,
          kind: "agent",
          name: a.identity?.name ?? a.id,
          ...(a.identity === undefined || Object.keys(a.identity).length === 0
            ? {}
            : {
                identity: {
                  ...a.identity,
                  ...(a.identity.avatar === undefined ? {} : { avatarUrl: a.identity.avatar }),
                },
              }),
          model: { primary: a.model, fallbacks: a.fallbacks ?? [] },
          ...(a.thinking === undefined ? {} : { thinkingDefault: a.thinking }),
        })),
      };
    },
  },

  "agent.identity.get": {
    scope: Scopes.READ,
    handler(call, hub) {
      return identityResult(identityAgentOf(hub, call.method, call.params));
    },
  },

  "config.get": {
    scope: Scopes.READ,
    handler(_call, hub) {
      const config = hub.config;
      const shown =
        config === undefined
          ? { agents: hub.runtime.agents.map((a) => ({ id: a.id, model: a.model })) }
          : redactSecrets(config);
      const text = JSON.stringify(shown);
      return {
        exists: config !== undefined,
        valid: true,
        hash: createHash("sha256").update(text).digest("hex"),
        config: shown,
        issues: [],
        hotReload: hub.configService !== undefined,
      };
    },
  },

  "skills.status": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const agent = agentOf(hub, call.method, call.params);
      // What the agents were built with; without it, the configuration as it is now.
      const report = hub.skills ?? (await skillsOfConfig(hub));
      const selected = new Set(report.agents[agent.id] ?? []);
      const { loaded } = report;
      return {
        agentId: agent.id,
        dirs: report.dirs,
        skills: [
          ...loaded.skills.map((s) => ({
            name: s.name,
            description: s.description,
            dir: s.dir,
            eligible: true,
            enabled: selected.has(s.name),
            userInvocable: s.userInvocable,
            disableModelInvocation: s.disableModelInvocation,
            missing: [],
          })),
          ...loaded.gated.map((g) => ({
            name: g.name,
            description: g.skill.description,
            dir: g.dir,
            eligible: false,
            enabled: false,
            userInvocable: g.skill.userInvocable,
            disableModelInvocation: g.skill.disableModelInvocation,
            missing: g.reasons,
          })),
        ],
        shadowed: loaded.shadowed,
        invalid: loaded.invalid.map((e) => ({ file: e.file, message: e.message })),
        // Skills left out: a name that differs from a loaded one's only in case, or over the
        // `skills.maxSkills` / `skills.maxPromptBytes` limits.
        clashes: loaded.clashes.map((e) => ({ files: e.files, message: e.message })),
        overLimit: loaded.overLimit?.dropped ?? [],
      };
    },
  },

  "usage.status": {
    scope: Scopes.READ,
    async handler(_call, hub) {
      const now = hub.now();
      const day = usageDay(now);
      await hub.runtime.usage.flush();
      const rows = await hub.runtime.usage.persisted(day);
      const providers = new Set<string>(Object.keys(hub.config?.providers ?? {}));
      for (const row of rows) providers.add(row.key.split(":")[3] ?? "unknown");
      return {
        updatedAt: now,
        day,
        providers: [...providers].sort().map((provider) => {
          const today = rows
            .filter((r) => r.key.split(":")[3] === provider)
            .reduce(
              (t, r) => ({
                calls: t.calls + r.totals.calls,
                inputTokens: t.inputTokens + r.totals.inputTokens,
                outputTokens: t.outputTokens + r.totals.outputTokens,
                costUsd: t.costUsd + r.totals.costUsd,
              }),
              { calls: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 },
            );
          const kind = hub.config?.providers[provider]?.kind;
          return {
            provider,
            displayName: provider,
            ...(kind === undefined ? {} : { kind }),
            windows: [],
            today,
          };
        }),
      };
    },
  },

  "usage.cost": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const days = optionalInt(method, p, "days", { min: 1, max: 366 });
      const startDate = optionalString(method, p, "startDate", { nonEmpty: true });
      const endDate = optionalString(method, p, "endDate", { nonEmpty: true });
      for (const [field, value] of [
        ["startDate", startDate],
        ["endDate", endDate],
      ] as const) {
        if (value !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(value)) {
          throw new GatewayError(
            ErrorCodes.INVALID_REQUEST,
            `invalid ${method} params: ${field} must be YYYY-MM-DD`,
            {
              details: { code: "INVALID_PARAMS", field },
            },
          );
        }
      }
      const now = hub.now();
      const end = endDate ?? isoDay(0, now);
      const list: string[] = [];
      if (startDate !== undefined) {
        for (
          let t = Date.parse(`${startDate}T00:00:00Z`);
          usageDay(t) <= end && list.length < 366;
          t += 86_400_000
        ) {
          list.push(usageDay(t));
        }
      } else {
        const count = days ?? 30;
        const endMs = Date.parse(`${end}T00:00:00Z`);
        for (let i = count - 1; i >= 0; i--) list.push(usageDay(endMs - i * 86_400_000));
      }
      const totals = {
        input: 0,
        output: 0,
        cacheRead: 0,
        cacheWrite: 0,
        totalTokens: 0,
        totalCost: 0,
        calls: 0,
      };
      type Day = typeof totals & {
        date: string;
        providers: Record<string, Record<string, number>>;
      };
      const byDay = new Map<string, Day>();
      const rows =
        list.length === 0
          ? []
          : await meterRows(hub, dayRange(Date.parse(`${list[0]}T00:00:00Z`), list.length));
      for (const { day, provider, calls, totals: t } of rows) {
        let entry = byDay.get(day);
        if (entry === undefined) {
          entry = { date: day, ...totals, providers: {} };
          byDay.set(day, entry);
        }
        entry.input += t.input;
        entry.output += t.output;
        entry.cacheRead += t.cacheRead;
        entry.cacheWrite += t.cacheWrite;
        entry.totalTokens += t.input + t.output;
        entry.totalCost += t.totalCost;
        entry.calls += calls;
        const p0 = entry.providers[provider] ?? {
          calls: 0,
          inputTokens: 0,
          outputTokens: 0,
          costUsd: 0,
        };
        p0.calls! += calls;
        p0.inputTokens! += t.input;
        p0.outputTokens! += t.output;
        p0.costUsd! += t.totalCost;
        entry.providers[provider] = p0;
      }
      const daily = list.flatMap((day) => byDay.get(day) ?? []);
      for (const entry of daily) {
        for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] += entry[k];
      }
      return { updatedAt: now, startDate: list[0], endDate: end, days: list.length, daily, totals };
    },
  },
};

/**
 * `skills.status` without a report from the host: `skills.dirs` of the configuration as it is
 * now, relative ones resolved against the config file's directory (as `beamclaw gateway`
 * does; the working directory for a configuration given as an object), gated against the
 * configuration too (`requires.config`).
 */
async function skillsOfConfig(hub: GatewayHub): Promise<GatewaySkillsReport> {
  const config = hub.config;
  if (config === undefined) return buildSkillsReport([], {});
  const file = hub.configService?.path;
  const base = file === undefined ? process.cwd() : dirname(file);
  return buildSkillsReport(
    config.skills.dirs.map((d) => (isAbsolute(d) ? d : resolve(base, d))),
    Object.fromEntries(config.agents.map((a) => [a.id, a.skills])),
    { config: config as unknown as Record<string, unknown> },
  );
}
