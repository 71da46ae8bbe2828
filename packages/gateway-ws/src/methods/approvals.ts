/** `exec.approval.request`, `exec.approval.waitDecision`, `exec.approval.resolve`, `exec.approval.list`. */
import type { ApprovalDecision } from "@beamclaw/core";
import { APPROVAL_DECISIONS } from "../approvals.js";
import { approvalPayload, type HubMethod } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { invalidRequest } from "../protocol/errors.js";
import {
  optionalBool,
  optionalInt,
  optionalString,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import { asConnectionWait } from "./connection-waits.js";

/** Fields of an approval request that are a string or null, as the protocol has them. */
const NULLABLE_STRINGS = [
  "cwd",
  "host",
  "security",
  "ask",
  "warningText",
  "agentId",
  "resolvedPath",
  "sessionKey",
  "sessionId",
  "runId",
  "toolCallId",
  "turnSourceChannel",
  "turnSourceTo",
  "turnSourceAccountId",
] as const;

function badField(method: string, field: string, expected: string): never {
  throw invalidRequest(`invalid ${method} params: ${field} must be ${expected}`, {
    code: "INVALID_PARAMS",
    field,
  });
}

function isStringArray(value: unknown, nonEmpty = false): boolean {
  return (
    Array.isArray(value) &&
    value.length <= 10_000 &&
    value.every((v) => typeof v === "string" && (!nonEmpty || v.length > 0))
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks the fields of an `exec.approval.request` that operators are shown (the command, its
 * argv, plan, environment and provenance) against the protocol's `ExecApprovalRequestParams`,
 * so that a client cannot hand every approver a request of the wrong shape.
 */
function checkApprovalRequest(method: string, p: ParamsObject): void {
  for (const field of NULLABLE_STRINGS) {
    const value = p[field];
    if (value !== undefined && value !== null && typeof value !== "string") {
      badField(method, field, "a string or null");
    }
  }
  if (p.nodeId !== undefined && p.nodeId !== null) {
    if (typeof p.nodeId !== "string" || p.nodeId.length === 0) {
      badField(method, "nodeId", "a non-empty string or null");
    }
  }
  const thread = p.turnSourceThreadId;
  if (thread !== undefined && thread !== null && !["string", "number"].includes(typeof thread)) {
    badField(method, "turnSourceThreadId", "a string, a number or null");
  }
  if (p.commandArgv !== undefined && !isStringArray(p.commandArgv)) {
    badField(method, "commandArgv", "an array of strings");
  }
  if (
    p.approvalReviewerDeviceIds !== undefined &&
    !isStringArray(p.approvalReviewerDeviceIds, true)
  ) {
    badField(method, "approvalReviewerDeviceIds", "an array of non-empty strings");
  }
  if (
    p.env !== undefined &&
    (!isObject(p.env) || Object.values(p.env).some((v) => typeof v !== "string"))
  ) {
    badField(method, "env", "an object of strings");
  }
  for (const field of [
    "requireDeliveryRoute",
    "suppressDelivery",
    "deliverToApprovalClientsOnly",
  ]) {
    optionalBool(method, p, field);
  }
  if (p.scope !== undefined && !isObject(p.scope)) badField(method, "scope", "an object");
  if (
    p.unavailableDecisions !== undefined &&
    !(
      Array.isArray(p.unavailableDecisions) &&
      p.unavailableDecisions.length === 1 &&
      p.unavailableDecisions[0] === "allow-always"
    )
  ) {
    badField(method, "unavailableDecisions", '["allow-always"]');
  }
  if (p.commandSpans !== undefined) {
    const spans = p.commandSpans;
    const ok =
      Array.isArray(spans) &&
      spans.every(
        (span) =>
          isObject(span) &&
          Number.isInteger(span.startIndex) &&
          Number.isInteger(span.endIndex) &&
          (span.startIndex as number) >= 0 &&
          (span.endIndex as number) > (span.startIndex as number),
      );
    if (!ok) badField(method, "commandSpans", "an array of { startIndex, endIndex } spans");
  }
  const plan = p.systemRunPlan;
  if (plan !== undefined) {
    if (!isObject(plan)) badField(method, "systemRunPlan", "an object");
    if (!isStringArray(plan.argv)) badField(method, "systemRunPlan.argv", "an array of strings");
    if (typeof plan.commandText !== "string") {
      badField(method, "systemRunPlan.commandText", "a string");
    }
    for (const field of ["cwd", "commandPreview", "agentId", "sessionKey"]) {
      const value = plan[field];
      if (value !== undefined && value !== null && typeof value !== "string") {
        badField(method, `systemRunPlan.${field}`, "a string or null");
      }
    }
    for (const field of ["policySnapshot", "mutableFileOperand"]) {
      const value = plan[field];
      if (value !== undefined && value !== null && !isObject(value)) {
        badField(method, `systemRunPlan.${field}`, "an object or null");
      }
    }
  }
}

export const approvalMethods: Record<string, HubMethod> = {
  "exec.approval.request": {
    scope: Scopes.APPROVALS,
    handler(call, hub) {
      const { method, params: p } = call;
      const command = optionalString(method, p, "command", { nonEmpty: true });
      checkApprovalRequest(method, p);
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
      const id = requireString(call.method, call.params, "id", 256);
      return asConnectionWait(call.signal, call.method, () =>
        hub.approvals.waitDecision(id, call.signal),
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
