/** `health`, `status`, `logs.tail`, `system-presence`, `last-heartbeat`, `set-heartbeats`, `wake`. */

import { scopeAllows } from "../auth/pairing.js";
import type { HubMethod } from "../hub.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalInt,
  optionalString,
  requireString,
} from "../protocol/params.js";

export const systemMethods: Record<string, HubMethod> = {
  health: {
    scope: Scopes.READ,
    handler: (_call, hub) => hub.health(),
  },

  status: {
    scope: Scopes.READ,
    async handler(call, hub) {
      const store = hub.runtime.store;
      const connections = [...hub.connections];
      const admin = scopeAllows(call.caller.scopes, Scopes.ADMIN);
      const config = hub.config;
      return {
        ok: true,
        version: hub.version,
        startedAt: hub.startedAt,
        uptimeMs: Math.max(0, hub.now() - hub.startedAt),
        draining: hub.draining,
        auth: { mode: hub.auth.mode },
        store: { kind: store.kind, durable: store.capabilities.durable },
        sessions: {
          stored: await store.sessions.count(),
          active: hub.runtime.activeSessions().length,
          runs: hub.runs.active().length,
        },
        agents: hub.runtime.agents.map((a) => ({ id: a.id, model: a.model })),
        defaultAgentId: hub.defaultAgentId,
        connections: {
          operators: connections.filter((c) => c.role === "operator").length,
          nodes: connections.filter((c) => c.role === "node").length,
        },
        heartbeat: { enabled: hub.heartbeat.enabled, everyMs: hub.heartbeat.everyMs },
        ...(hub.liveness === undefined
          ? {}
          : {
              presence: {
                ...hub.liveness.stats(),
                intervalMs: hub.liveness.settings.intervalMs,
                missedBeatsOffline: hub.liveness.settings.missedBeatsOffline,
              },
            }),
        approvals: { pending: hub.approvals.list().length },
        cron: { available: hub.cron !== undefined },
        ...(admin && config !== undefined
          ? {
              providers: Object.entries(config.providers).map(([id, p]) => ({
                id,
                kind: p.kind,
                ...(p.baseUrl === undefined ? {} : { baseUrl: p.baseUrl }),
              })),
              gateway: { host: config.gateway.host, port: config.gateway.port },
            }
          : {}),
      };
    },
  },

  "logs.tail": {
    scope: Scopes.READ,
    handler(call, hub) {
      const { method, params: p } = call;
      const cursor = optionalInt(method, p, "cursor", { min: 0 });
      const limit = optionalInt(method, p, "limit", { min: 1, max: 5000 });
      const maxBytes = optionalInt(method, p, "maxBytes", { min: 1, max: 1_000_000 });
      return hub.log.tail({
        ...(cursor === undefined ? {} : { cursor }),
        ...(limit === undefined ? {} : { limit }),
        ...(maxBytes === undefined ? {} : { maxBytes }),
      });
    },
  },

  "system-presence": {
    scope: Scopes.READ,
    handler: (_call, hub) => hub.presenceList(),
  },

  "last-heartbeat": {
    scope: Scopes.READ,
    handler: (_call, hub) => hub.heartbeat.last(),
  },

  "set-heartbeats": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const enabled = optionalBool(call.method, call.params, "enabled");
      if (enabled === undefined) {
        throw new GatewayError(
          ErrorCodes.INVALID_REQUEST,
          "set-heartbeats needs enabled: boolean",
          {
            details: { code: "INVALID_PARAMS", field: "enabled" },
          },
        );
      }
      await hub.heartbeat.setEnabled(enabled);
      hub.log.info(`heartbeats ${enabled ? "enabled" : "disabled"} by ${call.caller.connId}`);
      return { ok: true, enabled: hub.heartbeat.enabled };
    },
  },

  wake: {
    scope: Scopes.WRITE,
    startsWork: true,
    async handler(call, hub) {
      const { method, params: p } = call;
      const mode = optionalEnum(method, p, "mode", ["now", "next-heartbeat"] as const);
      if (mode === undefined) {
        throw new GatewayError(
          ErrorCodes.INVALID_REQUEST,
          "wake needs mode: now | next-heartbeat",
          {
            details: { code: "INVALID_PARAMS", field: "mode" },
          },
        );
      }
      const text = requireString(method, p, "text", 20_000);
      const requested = optionalString(method, p, "sessionKey", { nonEmpty: true });
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true });
      const session =
        requested !== undefined
          ? hub.session(requested, agentId)
          : hub.session(agentId === undefined ? hub.heartbeat.sessionKey : `agent:${agentId}:main`);
      await hub.heartbeat.wake(text, mode === "now", session.key);
      return {
        ok: true,
        mode,
        queued: mode === "next-heartbeat",
        heartbeatsEnabled: hub.heartbeat.enabled,
        sessionKey: session.key,
      };
    },
  },
};
