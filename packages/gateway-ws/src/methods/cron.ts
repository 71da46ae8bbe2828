/**
 * `cron.*`, driven through a {@link GatewayCronBackend}. Without one, each method answers
 * `UNAVAILABLE` naming the missing subsystem: BeamClaw's core has no cron service yet.
 */
import type { GatewayCronBackend } from "../cron.js";
import type { GatewayHub, HubMethod } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { invalidRequest, subsystemUnavailable } from "../protocol/errors.js";
import { optionalEnum, type ParamsObject } from "../protocol/params.js";

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
    handler: (call, hub) => backend(hub).list(call.params),
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
        throw invalidRequest("invalid cron.add params: name must be a non-empty string");
      }
      if (typeof p.schedule !== "object" || p.schedule === null) {
        throw invalidRequest("invalid cron.add params: schedule must be an object");
      }
      if (typeof p.payload !== "object" || p.payload === null) {
        throw invalidRequest("invalid cron.add params: payload must be an object");
      }
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
        throw invalidRequest("invalid cron.update params: patch must be an object");
      }
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
    handler: (call, hub) => backend(hub).runs(call.params),
  },
};
