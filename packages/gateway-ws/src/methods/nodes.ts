/**
 * `node.list`, `node.describe`, `node.invoke`, the node-side `node.invoke.result`,
 * `node.event`, and the queue of work waiting for a node: `node.pending.enqueue` (operators),
 * `node.pending.drain`, `node.pending.pull`, `node.pending.ack` (the node itself).
 */
import type { GatewayHub, HubMethod } from "../hub.js";
import { NODE_PENDING_TYPES, type NodePendingItem, nodePendingQueues } from "../node-pending.js";
import { EXEC_NODE_COMMANDS, type NodeInvokeResult } from "../nodes.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError, invalidRequest } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalInt,
  optionalString,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import type { MethodCall } from "./types.js";

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

function pending(hub: GatewayHub) {
  return nodePendingQueues(hub.runtime.store.kv, hub.now);
}

/** The calling node's id (its device id). */
function callingNode(call: MethodCall): string {
  const nodeId = call.caller.deviceId;
  if (nodeId === undefined) {
    throw invalidRequest("this connection has no node identity", { code: "NODE_ID_MISSING" });
  }
  return nodeId;
}

/** `maxItems` of `node.pending.drain` / `pull` (1 to 10, default 10). */
function maxItems(method: string, p: ParamsObject): number {
  return optionalInt(method, p, "maxItems", { min: 1, max: 10 }) ?? 10;
}

function itemView(item: NodePendingItem): Record<string, unknown> {
  return {
    id: item.id,
    type: item.type,
    priority: item.priority,
    createdAtMs: item.createdAtMs,
    expiresAtMs: item.expiresAtMs,
    ...(item.payload === undefined ? {} : { payload: item.payload }),
  };
}

const nodePendingMethods: Record<string, HubMethod> = {
  "node.pending.enqueue": {
    scope: Scopes.WRITE,
    async handler(call, hub) {
      const { method, params: p } = call;
      const nodeId = requireString(method, p, "nodeId", 256);
      const type = optionalEnum(method, p, "type", NODE_PENDING_TYPES);
      if (type === undefined) {
        throw invalidRequest(
          `invalid ${method} params: type must be one of ${NODE_PENDING_TYPES.join(", ")}`,
          { code: "INVALID_PARAMS", field: "type" },
        );
      }
      const priority = optionalEnum(method, p, "priority", ["normal", "high"] as const) ?? "normal";
      const expiresInMs = optionalInt(method, p, "expiresInMs", { min: 1_000, max: 86_400_000 });
      const wake = optionalBool(method, p, "wake") ?? true;
      const device = await hub.pairing.device(nodeId);
      if (device === undefined || !device.roles.includes("node")) {
        throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown node ${nodeId}`, {
          details: { code: "NODE_NOT_FOUND", nodeId },
        });
      }
      const { revision, queued } = await pending(hub).enqueue(nodeId, {
        type,
        priority,
        ...(expiresInMs === undefined ? {} : { expiresInMs }),
      });
      // A connected node is told to pull; there is no push service to wake one that is not.
      let wakeTriggered = false;
      if (wake) {
        for (const connection of hub.connections) {
          if (connection.role !== "node" || connection.deviceId !== nodeId) continue;
          if (connection.sendEvent("node.pending", { nodeId, revision, type, priority }))
            wakeTriggered = true;
        }
      }
      return { nodeId, revision, queued: itemView(queued), wakeTriggered };
    },
  },

  "node.pending.drain": {
    scope: "node",
    async handler(call, hub) {
      const nodeId = callingNode(call);
      const limit = maxItems(call.method, call.params);
      const { revision, items, hasMore } = await pending(hub).next(nodeId, limit, true);
      return { nodeId, revision, items: items.map(itemView), hasMore };
    },
  },

  "node.pending.pull": {
    scope: "node",
    async handler(call, hub) {
      const nodeId = callingNode(call);
      const limit = maxItems(call.method, call.params);
      const { revision, items, hasMore } = await pending(hub).next(nodeId, limit, false);
      return { nodeId, revision, items: items.map(itemView), hasMore };
    },
  },

  "node.pending.ack": {
    scope: "node",
    async handler(call, hub) {
      const { method, params: p } = call;
      const nodeId = callingNode(call);
      const ids = p.ids;
      if (
        !Array.isArray(ids) ||
        ids.length === 0 ||
        ids.length > 100 ||
        ids.some((id) => typeof id !== "string" || id.length === 0 || id.length > 256)
      ) {
        throw invalidRequest(`invalid ${method} params: ids must be 1 to 100 non-empty strings`, {
          code: "INVALID_PARAMS",
          field: "ids",
        });
      }
      const outcome = await pending(hub).ack(nodeId, ids as string[]);
      return { ok: true, nodeId, ...outcome };
    },
  },
};

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
        // A caller that disconnects stops waiting: no pending invoke or timer is left for it.
        signal: call.signal,
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
      if (typeof p.ok !== "boolean") {
        throw invalidRequest(`invalid ${method} params: ok must be a boolean`, {
          code: "INVALID_PARAMS",
          field: "ok",
        });
      }
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
      // The payload comes as a value or, from older nodes, as JSON text.
      const payloadJSON = optionalString(call.method, call.params, "payloadJSON", {
        maxLength: 1_000_000,
      });
      hub.log.info(`node event ${event} from ${call.caller.deviceId ?? call.caller.connId}`);
      if (event === "node.presence.alive" && hub.liveness !== undefined) {
        // A beat that carries the node's clock: its latency joins the presence counters.
        const payload =
          (call.params as { payload?: unknown }).payload ??
          (payloadJSON === undefined ? undefined : safeParse(payloadJSON));
        const sentAtMs =
          typeof payload === "object" && payload !== null
            ? (payload as { sentAtMs?: unknown }).sentAtMs
            : undefined;
        hub.liveness.beat(
          call.caller.connId,
          typeof sentAtMs === "number" && Number.isFinite(sentAtMs) && sentAtMs > 0
            ? sentAtMs
            : undefined,
        );
        return { ok: true, event, handled: true };
      }
      return { ok: true, event, handled: false };
    },
  },

  ...nodePendingMethods,
};

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
