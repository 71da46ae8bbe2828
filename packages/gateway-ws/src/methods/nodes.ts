/** `node.list`, `node.describe`, `node.invoke`, and the node-side `node.invoke.result`, `node.event`. */
import type { GatewayHub, HubMethod } from "../hub.js";
import { EXEC_NODE_COMMANDS, type NodeInvokeResult } from "../nodes.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError, invalidRequest } from "../protocol/errors.js";
import { optionalInt, optionalString, requireString } from "../protocol/params.js";

async function nodeViews(hub: GatewayHub): Promise<Array<Record<string, unknown>>> {
  const connected = new Map(hub.nodes.list().map((n) => [n.nodeId, n]));
  const paired = (await hub.pairing.pairedDevices()).filter((d) => d.roles.includes("node"));
  const views: Array<Record<string, unknown>> = [];
  for (const device of paired) {
    const live = connected.get(device.deviceId);
    connected.delete(device.deviceId);
    views.push({
      nodeId: device.deviceId,
      displayName: device.label ?? live?.displayName ?? device.displayName ?? device.deviceId,
      platform: live?.platform ?? device.platform,
      ...(live?.version === undefined ? {} : { version: live.version }),
      caps: live?.caps ?? [],
      commands: live?.commands ?? device.commands ?? [],
      paired: true,
      connected: live !== undefined,
      ...(live === undefined
        ? {}
        : {
            connectedAtMs: live.connectedAtMs,
            lastSeenAtMs: live.connectedAtMs,
            lastSeenReason: "connect",
          }),
      ...(live === undefined && device.lastSeenAtMs !== undefined
        ? { lastSeenAtMs: device.lastSeenAtMs }
        : {}),
    });
  }
  for (const live of connected.values()) {
    views.push({ ...live, paired: false, connected: true });
  }
  return views;
}

export const nodeMethods: Record<string, HubMethod> = {
  "node.list": {
    scope: Scopes.READ,
    async handler(_call, hub) {
      return { ts: hub.now(), nodes: await nodeViews(hub) };
    },
  },

  "node.describe": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const nodeId = requireString(call.method, call.params, "nodeId", 256);
      const node = (await nodeViews(hub)).find((n) => n.nodeId === nodeId);
      if (node === undefined) {
        throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown node ${nodeId}`, {
          details: { code: "NODE_NOT_FOUND", nodeId },
        });
      }
      return node;
    },
  },

  "node.invoke": {
    // Commands that run programs on the node need admin; the rest, write.
    scope: (params) =>
      typeof params.command === "string" && EXEC_NODE_COMMANDS.has(params.command)
        ? [Scopes.ADMIN]
        : [Scopes.WRITE],
    startsWork: true,
    async handler(call, hub) {
      const { method, params: p } = call;
      const nodeId = requireString(method, p, "nodeId", 256);
      const command = requireString(method, p, "command", 256);
      const idempotencyKey = requireString(method, p, "idempotencyKey", 256);
      const timeoutMs = optionalInt(method, p, "timeoutMs", { min: 0, max: 600_000 }) ?? 30_000;
      optionalString(method, p, "sessionKey", { nonEmpty: true });
      const result = await hub.nodes.invoke({
        nodeId,
        command,
        ...(p.params === undefined ? {} : { params: p.params }),
        timeoutMs: timeoutMs === 0 ? 30_000 : timeoutMs,
        idempotencyKey,
      });
      if (!result.ok) {
        throw new GatewayError(
          ErrorCodes.UNAVAILABLE,
          result.error?.message ?? `${command} failed on node ${nodeId}`,
          { details: { code: result.error?.code ?? "NODE_INVOKE_FAILED", nodeId, command } },
        );
      }
      const payload =
        result.payload !== undefined
          ? result.payload
          : result.payloadJSON !== undefined
            ? safeParse(result.payloadJSON)
            : null;
      return {
        ok: true,
        nodeId,
        command,
        payload,
        ...(result.payloadJSON === undefined ? {} : { payloadJSON: result.payloadJSON }),
      };
    },
  },

  "node.invoke.result": {
    scope: "node",
    handler(call, hub) {
      const { method, params: p } = call;
      const id = requireString(method, p, "id", 256);
      const nodeId = requireString(method, p, "nodeId", 256);
      if (nodeId !== call.caller.deviceId) {
        throw invalidRequest("nodeId does not match this node", { code: "NODE_ID_MISMATCH" });
      }
      if (typeof p.ok !== "boolean")
        throw invalidRequest(`invalid ${method} params: ok must be a boolean`);
      const result: NodeInvokeResult = {
        ok: p.ok,
        ...(p.payload === undefined ? {} : { payload: p.payload }),
        ...(typeof p.payloadJSON === "string" ? { payloadJSON: p.payloadJSON } : {}),
        ...(typeof p.error === "object" && p.error !== null
          ? { error: p.error as NodeInvokeResult["error"] }
          : {}),
      };
      const matched = hub.nodes.complete(nodeId, id, result);
      return matched ? { ok: true } : { ok: true, ignored: true };
    },
  },

  "node.event": {
    scope: "node",
    handler(call, hub) {
      const event = requireString(call.method, call.params, "event", 256);
      hub.log.info(`node event ${event} from ${call.caller.deviceId ?? call.caller.connId}`);
      return { ok: true, event, handled: false };
    },
  },
};

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
