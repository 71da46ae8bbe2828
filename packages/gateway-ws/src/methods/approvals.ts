/** `exec.approval.request`, `exec.approval.waitDecision`, `exec.approval.resolve`, `exec.approval.list`. */
import type { ApprovalDecision } from "@beamclaw/core";
import { APPROVAL_DECISIONS } from "../approvals.js";
import { approvalPayload, type HubMethod } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { invalidRequest } from "../protocol/errors.js";
import { optionalBool, optionalInt, optionalString, requireString } from "../protocol/params.js";

export const approvalMethods: Record<string, HubMethod> = {
  "exec.approval.request": {
    scope: Scopes.APPROVALS,
    handler(call, hub) {
      const { method, params: p } = call;
      const command = optionalString(method, p, "command", { nonEmpty: true });
      const argv = p.commandArgv;
      const plan = p.systemRunPlan as { commandText?: unknown } | undefined;
      if (
        command === undefined &&
        !(Array.isArray(argv) && argv.length > 0) &&
        typeof plan?.commandText !== "string"
      ) {
        throw invalidRequest(
          `invalid ${method} params: give command, commandArgv or systemRunPlan`,
          { code: "INVALID_PARAMS", field: "command" },
        );
      }
      if (p.host === "node" && plan === undefined) {
        throw invalidRequest(`invalid ${method} params: host=node needs a systemRunPlan`, {
          code: "INVALID_PARAMS",
          field: "systemRunPlan",
        });
      }
      const id = optionalString(method, p, "id", { nonEmpty: true, maxLength: 256 });
      const timeoutMs = optionalInt(method, p, "timeoutMs", { min: 1, max: 24 * 3_600_000 });
      const twoPhase = optionalBool(method, p, "twoPhase") === true;
      return hub.approvals.request(
        { ...p, requestedBy: call.caller.deviceId ?? call.caller.connId },
        {
          ...(id === undefined ? {} : { id }),
          ...(timeoutMs === undefined ? {} : { timeoutMs }),
          twoPhase,
        },
      );
    },
  },

  "exec.approval.waitDecision": {
    scope: Scopes.APPROVALS,
    handler(call, hub) {
      return hub.approvals.waitDecision(
        requireString(call.method, call.params, "id", 256),
        call.signal,
      );
    },
  },

  "exec.approval.resolve": {
    scope: Scopes.APPROVALS,
    handler(call, hub) {
      const { method, params: p } = call;
      const id = requireString(method, p, "id", 256);
      const decision = requireString(method, p, "decision", 64);
      if (!APPROVAL_DECISIONS.includes(decision as ApprovalDecision)) {
        throw invalidRequest(
          `invalid ${method} params: decision must be one of ${APPROVAL_DECISIONS.join(", ")}`,
          {
            code: "INVALID_PARAMS",
            field: "decision",
          },
        );
      }
      const entry = hub.approvals.resolve(id, decision as ApprovalDecision, {
        scopes: [...call.caller.scopes],
        id: call.caller.deviceId ?? call.caller.connId,
      });
      return { ok: true, id, decision, kind: entry.kind };
    },
  },

  "exec.approval.list": {
    scope: Scopes.APPROVALS,
    handler: (_call, hub) => ({ approvals: hub.approvals.list().map(approvalPayload) }),
  },
};
