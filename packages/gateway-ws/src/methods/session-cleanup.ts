/**
 * `sessions.cleanup` (admin): one pass of session maintenance now (core's
 * `SessionMaintenance`, with `sessions.maintenance` of the configuration): what is stale or
 * over the cap, deleted when the configured mode is `enforce` or the call says `enforce`.
 * `agent` limits it to one agent (default: the default agent), `allAgents` covers every agent,
 * `activeKey` is a session never to delete. OpenClaw's `fixMissing` and `fixDmScope` repair
 * its own file store and have no counterpart here: `true` is refused.
 */
import { isBeamClawError, type SessionCleanupSummary } from "@beamclaw/core";
import type { HubMethod } from "../hub.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError, invalidRequest } from "../protocol/errors.js";
import { optionalBool, optionalString } from "../protocol/params.js";

/** A summary in OpenClaw's shape (`missing` is always 0: no store entry lacks its transcript). */
function summaryRow(summary: SessionCleanupSummary): Record<string, unknown> {
  return {
    ...summary,
    missing: 0,
    ...(summary.dryRun ? {} : { applied: true }),
  };
}

export const sessionCleanupMethods: Record<string, HubMethod> = {
  "sessions.cleanup": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const { method, params: p } = call;
      for (const flag of ["fixMissing", "fixDmScope"]) {
        if (optionalBool(method, p, flag) === true) {
          throw invalidRequest(
            `${method}: ${flag} repairs OpenClaw's own session files; BeamClaw's store has nothing to repair`,
            {
              code: "UNSUPPORTED",
            },
          );
        }
      }
      const agent = optionalString(method, p, "agent", { nonEmpty: true, maxLength: 64 });
      const allAgents = optionalBool(method, p, "allAgents") === true;
      if (agent !== undefined && allAgents) {
        throw invalidRequest(`${method}: give agent or allAgents, not both`, {
          code: "INVALID_PARAMS",
          field: "allAgents",
        });
      }
      const agentId = (agent ?? hub.defaultAgentId).toLowerCase();
      if (!allAgents && !hub.runtime.agents.some((a) => a.id === agentId)) {
        const known = hub.runtime.agents.map((a) => a.id).join(", ");
        throw invalidRequest(`${method}: no agent ${agentId} (the agents are ${known})`, {
          code: "UNKNOWN_AGENT_ID",
          field: "agent",
          agentId,
        });
      }
      const activeKey = optionalString(method, p, "activeKey", { nonEmpty: true, maxLength: 512 });
      let summaries: SessionCleanupSummary[];
      try {
        summaries = await hub.maintenance.run({
          ...(allAgents ? {} : { agentId }),
          enforce: optionalBool(method, p, "enforce") === true,
          ...(activeKey === undefined ? {} : { protect: [activeKey] }),
        });
      } catch (error) {
        if (isBeamClawError(error, "INVALID_ARGUMENT")) {
          throw invalidRequest(`${method}: ${error.message}`, { code: "INVALID_ARGUMENT" });
        }
        if (isBeamClawError(error, "STORE_LOCKED")) {
          throw new GatewayError(ErrorCodes.UNAVAILABLE, `${method}: ${error.message}`, {
            retryable: true,
            retryAfterMs: 30_000,
            details: { code: "STORE_LOCKED" },
          });
        }
        throw error;
      }
      for (const s of summaries) {
        if (s.wouldMutate) {
          hub.log.info(
            `sessions.cleanup ${s.agentId}: ${s.pruned} stale, ${s.capped} over the cap, ${s.appliedCount} deleted (${s.mode}${s.dryRun ? ", report only" : ""})`,
          );
        }
      }
      if (!allAgents) return summaryRow(summaries[0]!);
      const first = summaries[0];
      return {
        allAgents: true,
        mode: first?.mode ?? "warn",
        dryRun: first?.dryRun ?? true,
        stores: summaries.map(summaryRow),
      };
    },
  },
};
