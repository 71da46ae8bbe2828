/**
 * `cron.*`, driven through a {@link GatewayCronBackend} (core's `CronSupervisor` is adapted to
 * one). Without one, each method answers `UNAVAILABLE` naming the missing subsystem.
 */
import type { GatewayCronBackend } from "../cron.js";
import type { GatewayHub, HubMethod } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { invalidRequest, subsystemUnavailable } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalEnumArray,
  optionalInt,
  optionalString,
  type ParamsObject,
} from "../protocol/params.js";

function backend(hub: GatewayHub): GatewayCronBackend {
  if (hub.cron === undefined) {
    throw subsystemUnavailable(
      "cron",
      "cron is not available: this gateway was started without a cron service (pass `cron` to createGateway: a CronSupervisor or a GatewayCronBackend)",
    );
  }
  return hub.cron;
}

function jobId(method: string, p: ParamsObject): string {
  const id = p.id ?? p.jobId;
  if (typeof id !== "string" || id.length === 0) {
    throw invalidRequest(`invalid ${method} params: id (or jobId) must be a non-empty string`, {
      code: "INVALID_PARAMS",
      field: "id",
    });
  }
  return id;
}

/** A job id as the protocol allows it: non-empty, without `/` or `\\`. */
function optionalJobId(method: string, p: ParamsObject, field: string): string | undefined {
  const id = optionalString(method, p, field, { nonEmpty: true, maxLength: 256 });
  if (id !== undefined && /[/\\]/.test(id)) {
    throw invalidRequest(`invalid ${method} params: ${field} must not contain / or \\`, {
      code: "INVALID_PARAMS",
      field,
    });
  }
  return id;
}

const RUN_STATUSES = ["ok", "error", "skipped"] as const;
const DELIVERY_STATUSES = ["delivered", "not-delivered", "unknown", "not-requested"] as const;

/**
 * `cron.list`'s params, every field checked against the protocol's `CronListParams` (a wrong
 * type or value is `INVALID_PARAMS` naming the field, never a silent default), absent fields
 * left out. What the backend receives.
 */
function cronListParams(method: string, p: ParamsObject): Record<string, unknown> {
  const out: Record<string, unknown> = {
    includeDisabled: optionalBool(method, p, "includeDisabled"),
    limit: optionalInt(method, p, "limit", { min: 1, max: 200 }),
    offset: optionalInt(method, p, "offset", { min: 0 }),
    query: optionalString(method, p, "query", { maxLength: 1_000 }),
    enabled: optionalEnum(method, p, "enabled", ["all", "enabled", "disabled"] as const),
    scheduleKind: optionalEnum(method, p, "scheduleKind", [
      "all",
      "at",
      "every",
      "cron",
      "on-exit",
      "stream",
    ] as const),
    lastRunStatus: optionalEnum(method, p, "lastRunStatus", [
      "all",
      ...RUN_STATUSES,
      "unknown",
    ] as const),
    trigger: optionalEnum(method, p, "trigger", ["all", "conditional", "unconditional"] as const),
    sortBy: optionalEnum(method, p, "sortBy", ["nextRunAtMs", "updatedAtMs", "name"] as const),
    sortDir: optionalEnum(method, p, "sortDir", ["asc", "desc"] as const),
    agentId: optionalString(method, p, "agentId", { nonEmpty: true, maxLength: 64 }),
    compact: optionalBool(method, p, "compact"),
    includeDeliveryPreviews: optionalBool(method, p, "includeDeliveryPreviews"),
  };
  return withoutUndefined(out);
}

/** `cron.runs`'s params, checked against the protocol's `CronRunsParams` as {@link cronListParams}. */
function cronRunsParams(method: string, p: ParamsObject): Record<string, unknown> {
  const out: Record<string, unknown> = {
    agentId: optionalString(method, p, "agentId", { nonEmpty: true, maxLength: 64 }),
    scope: optionalEnum(method, p, "scope", ["job", "all"] as const),
    id: optionalJobId(method, p, "id"),
    jobId: optionalJobId(method, p, "jobId"),
    runId: optionalString(method, p, "runId", { nonEmpty: true, maxLength: 256 }),
    limit: optionalInt(method, p, "limit", { min: 1, max: 200 }),
    offset: optionalInt(method, p, "offset", { min: 0 }),
    statuses: optionalEnumArray(method, p, "statuses", RUN_STATUSES, { minItems: 1 }),
    status: optionalEnum(method, p, "status", ["all", ...RUN_STATUSES] as const),
    deliveryStatuses: optionalEnumArray(method, p, "deliveryStatuses", DELIVERY_STATUSES, {
      minItems: 1,
    }),
    deliveryStatus: optionalEnum(method, p, "deliveryStatus", DELIVERY_STATUSES),
    query: optionalString(method, p, "query", { maxLength: 1_000 }),
    sortDir: optionalEnum(method, p, "sortDir", ["asc", "desc"] as const),
  };
  return withoutUndefined(out);
}

/**
 * A payload's `timeoutSeconds`, when given, is what the protocol allows: a finite number of
 * seconds >= 0 (`0`: no limit). Anything else is `INVALID_PARAMS` naming `field`. (The cron
 * backend reads it; core's adapter also bounds it by the longest limit a run can have.)
 */
function checkTimeoutSeconds(method: string, payload: unknown, field: string): void {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return;
  const value = (payload as { timeoutSeconds?: unknown }).timeoutSeconds;
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw invalidRequest(
      `invalid ${method} params: ${field} must be a number of seconds >= 0 (0: no limit)`,
      { code: "INVALID_PARAMS", field },
    );
  }
}

function withoutUndefined(record: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(record)) if (record[key] === undefined) delete record[key];
  return record;
}

/** Job changes made through the gateway are announced here; runs by the backend's `subscribe`. */
function announce(
  hub: GatewayHub,
  action: string,
  id: string,
  extra: Record<string, unknown> = {},
) {
  hub.broadcast("cron", { action, jobId: id, ts: hub.now(), ...extra }, { scope: Scopes.READ });
}

export const cronMethods: Record<string, HubMethod> = {
  "cron.list": {
    scope: Scopes.READ,
    handler: (call, hub) => backend(hub).list(cronListParams(call.method, call.params)),
  },
  "cron.status": {
    scope: Scopes.READ,
    handler: (_call, hub) => backend(hub).status(),
  },
  "cron.add": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const cron = backend(hub);
      const p = call.params;
      if (typeof p.name !== "string" || p.name.length === 0) {
        throw invalidRequest("invalid cron.add params: name must be a non-empty string", {
          code: "INVALID_PARAMS",
          field: "name",
        });
      }
      for (const field of ["schedule", "payload"]) {
        const value = p[field];
        if (typeof value !== "object" || value === null || Array.isArray(value)) {
          throw invalidRequest(`invalid cron.add params: ${field} must be an object`, {
            code: "INVALID_PARAMS",
            field,
          });
        }
      }
      checkTimeoutSeconds(call.method, p.payload, "payload.timeoutSeconds");
      const job = await cron.add(p);
      const id = (job as { id?: unknown } | null)?.id;
      if (typeof id === "string") announce(hub, "added", id);
      return job;
    },
  },
  "cron.update": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const cron = backend(hub);
      const id = jobId(call.method, call.params);
      const patch = call.params.patch;
      if (typeof patch !== "object" || patch === null || Array.isArray(patch)) {
        throw invalidRequest("invalid cron.update params: patch must be an object", {
          code: "INVALID_PARAMS",
          field: "patch",
        });
      }
      checkTimeoutSeconds(
        call.method,
        (patch as { payload?: unknown }).payload,
        "patch.payload.timeoutSeconds",
      );
      const job = await cron.update(id, patch as Record<string, unknown>);
      announce(hub, "updated", id);
      return job;
    },
  },
  "cron.remove": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const cron = backend(hub);
      const id = jobId(call.method, call.params);
      const result = await cron.remove(id);
      if (result.removed) announce(hub, "removed", id);
      return { ok: true, ...result };
    },
  },
  "cron.run": {
    scope: Scopes.ADMIN,
    startsWork: true,
    handler(call, hub) {
      const cron = backend(hub);
      const mode =
        optionalEnum(call.method, call.params, "mode", ["due", "force", "if-enabled"] as const) ??
        "force";
      return cron.run(jobId(call.method, call.params), mode);
    },
  },
  "cron.runs": {
    scope: Scopes.READ,
    handler: (call, hub) => backend(hub).runs(cronRunsParams(call.method, call.params)),
  },
};
