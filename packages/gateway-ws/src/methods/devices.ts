/**
 * Pairing and device tokens: `device.pair.*` (with setup codes: `device.pair.setupCode`,
 * `device.pair.setupStatus`), `device.token.rotate`, `device.token.revoke`, and `node.pair.*`
 * (the same pairing, for devices asking for the node role).
 */
import { changedConnections, type DeviceChange } from "../auth/device-watch.js";
import type { PairedDevice, PairingRequest } from "../auth/pairing.js";
import { scopeAllows, scopesWithin } from "../auth/pairing.js";
import { encodeSetupCode, type SetupAccess, SetupCodes } from "../auth/setup-codes.js";
import type { GatewayHub, HubMethod } from "../hub.js";
import { nodePendingQueues } from "../node-pending.js";
import { EXEC_NODE_COMMANDS } from "../nodes.js";
import { CloseCodes, ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError, invalidRequest, missingScope } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalString,
  optionalStringArray,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import type { MethodCall } from "./types.js";

function deviceView(device: PairedDevice): Record<string, unknown> {
  return {
    deviceId: device.deviceId,
    publicKey: device.publicKey,
    roles: device.roles,
    scopes: device.scopes,
    createdAtMs: device.createdAtMs,
    approvedAtMs: device.approvedAtMs,
    ...(device.label === undefined ? {} : { label: device.label }),
    ...(device.displayName === undefined ? {} : { displayName: device.displayName }),
    ...(device.platform === undefined ? {} : { platform: device.platform }),
    ...(device.clientId === undefined ? {} : { clientId: device.clientId }),
    ...(device.clientMode === undefined ? {} : { clientMode: device.clientMode }),
    ...(device.commands === undefined ? {} : { commands: device.commands }),
    ...(device.lastSeenAtMs === undefined ? {} : { lastSeenAtMs: device.lastSeenAtMs }),
  };
}

async function pendingFor(hub: GatewayHub, role: "node" | "operator" | "any", requestId: string) {
  const request = await hub.pairing.request(requestId);
  if (
    request === undefined ||
    (role !== "any" && (request.role === "node") !== (role === "node"))
  ) {
    throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown pairing request ${requestId}`, {
      details: { code: "PAIRING_REQUEST_NOT_FOUND", requestId },
    });
  }
  return request;
}

/** Approving a node that may run programs needs admin; one with other commands, write. */
function checkNodeApproval(call: MethodCall, request: PairingRequest): void {
  const commands = request.commands ?? [];
  if (
    commands.some((c) => EXEC_NODE_COMMANDS.has(c)) &&
    !scopeAllows(call.caller.scopes, Scopes.ADMIN)
  ) {
    throw missingScope(Scopes.ADMIN, [Scopes.PAIRING, Scopes.ADMIN]);
  }
  if (commands.length > 0 && !scopeAllows(call.caller.scopes, Scopes.WRITE)) {
    throw missingScope(Scopes.WRITE, [Scopes.PAIRING, Scopes.WRITE]);
  }
}

async function approve(call: MethodCall, hub: GatewayHub, role: "node" | "operator" | "any") {
  const request = await pendingFor(
    hub,
    role,
    requireString(call.method, call.params, "requestId", 256),
  );
  if (request.role === "node") checkNodeApproval(call, request);
  const { device } = await hub.pairing.approve(request.requestId, {
    approverScopes: call.caller.scopes,
  });
  hub.pairingResolved(request, "approved");
  return { ok: true, requestId: request.requestId, device: deviceView(device) };
}

async function reject(call: MethodCall, hub: GatewayHub, role: "node" | "operator" | "any") {
  const request = await pendingFor(
    hub,
    role,
    requireString(call.method, call.params, "requestId", 256),
  );
  await hub.pairing.reject(request.requestId);
  hub.pairingResolved(request, "rejected");
  return { ok: true, requestId: request.requestId, deviceId: request.deviceId };
}

/**
 * Answers `call` with `answer(closing)` and closes the `closing` connections `change` closes
 * (see {@link changedConnections}: 1008 with the change's reason), then announces the change
 * to the other gateways on the store, which close theirs. The caller, when among them, is
 * answered first: the answer would be lost on a closing connection.
 */
function answerThenClose<R>(
  call: MethodCall,
  hub: GatewayHub,
  change: DeviceChange,
  answer: (closing: number) => R,
): R {
  const connections = changedConnections(hub.connections, change);
  const result = answer(connections.length);
  connections.find((c) => c.connId === call.caller.connId)?.respond(call.id, true, result);
  for (const c of connections) c.close(CloseCodes.POLICY_VIOLATION, change.reason);
  hub.deviceWatch.announce(change);
  return result;
}

/**
 * Records `change` in the store before it is made, so that every gateway's re-check of its
 * open connections against the store closes the same ones, with the same reason, as
 * {@link answerThenClose} closes here (see `DevicePairing.recordStandingChange`).
 */
function recordChange(hub: GatewayHub, change: DeviceChange): Promise<void> {
  return hub.pairing.recordStandingChange(change.deviceId, change.role, change.reason);
}

/** Non-admins manage only their own device, and never beyond their own scopes. */
function checkTokenTarget(call: MethodCall, deviceId: string, scopes: readonly string[]): void {
  if (scopeAllows(call.caller.scopes, Scopes.ADMIN)) return;
  if (call.caller.deviceId !== deviceId) {
    throw new GatewayError(
      ErrorCodes.FORBIDDEN,
      "only an admin may manage another device's tokens",
      {
        details: { code: "DEVICE_NOT_OWNED", deviceId },
      },
    );
  }
  if (!scopesWithin(scopes, [...call.caller.scopes])) {
    throw new GatewayError(ErrorCodes.FORBIDDEN, "a token may not carry scopes its caller lacks", {
      details: { code: "SCOPE_ESCALATION" },
    });
  }
}

async function pairedOrFail(hub: GatewayHub, deviceId: string): Promise<PairedDevice> {
  const device = await hub.pairing.device(deviceId);
  if (device === undefined) throw deviceNotFound(deviceId);
  return device;
}

function deviceNotFound(deviceId: string): GatewayError {
  return new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown device ${deviceId}`, {
    details: { code: "DEVICE_NOT_FOUND", deviceId },
  });
}

/** The WebSocket URL a setup code points at: `publicUrl`, else the one the caller used. */
function setupUrl(call: MethodCall, p: ParamsObject): { url: string; source: string } {
  const publicUrl = optionalString(call.method, p, "publicUrl", {
    nonEmpty: true,
    maxLength: 2048,
  });
  if (publicUrl !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(publicUrl);
    } catch {
      throw invalidRequest(`invalid ${call.method} params: publicUrl must be a URL`, {
        code: "INVALID_PARAMS",
        field: "publicUrl",
      });
    }
    const scheme = { "ws:": "ws:", "wss:": "wss:", "http:": "ws:", "https:": "wss:" }[
      parsed.protocol
    ];
    if (scheme === undefined || parsed.username !== "" || parsed.password !== "") {
      throw invalidRequest(
        `invalid ${call.method} params: publicUrl must be an http(s) or ws(s) URL without credentials`,
        { code: "INVALID_PARAMS", field: "publicUrl" },
      );
    }
    parsed.protocol = scheme;
    return { url: parsed.toString().replace(/\/$/, ""), source: "publicUrl" };
  }
  if (call.caller.gatewayUrl === undefined) {
    throw invalidRequest(
      `${call.method}: the gateway's URL is unknown (the request had no Host header); pass publicUrl`,
      { code: "GATEWAY_URL_UNKNOWN" },
    );
  }
  return { url: call.caller.gatewayUrl, source: "request" };
}

export const deviceMethods: Record<string, HubMethod> = {
  "device.pair.setupCode": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const { method, params: p } = call;
      optionalBool(method, p, "preferRemoteUrl");
      optionalBool(method, p, "includeQr");
      optionalBool(method, p, "joinUrl");
      const profile = optionalEnum(method, p, "bootstrapProfile", ["limited", "node"] as const);
      const access: SetupAccess = profile ?? "limited";
      const { url, source } = setupUrl(call, p);
      const { record, token } = await new SetupCodes(hub.runtime.store.kv, hub.now).create(access);
      hub.log.info(`setup code ${record.setupId} created (${access}) by ${call.caller.connId}`);
      // `includeQr` and `joinUrl` are not rendered here: clients draw the QR of `setupCode`.
      return {
        setupId: record.setupId,
        setupCode: encodeSetupCode(url, token),
        gatewayUrl: url,
        auth: hub.auth.mode === "password" ? "password" : "token",
        urlSource: source,
        access,
        expiresAtMs: record.expiresAtMs,
      };
    },
  },
  "device.pair.setupStatus": {
    scope: Scopes.ADMIN,
    async handler(call, hub) {
      const setupId = requireString(call.method, call.params, "setupId", 128);
      const record = await new SetupCodes(hub.runtime.store.kv, hub.now).get(setupId);
      if (record === undefined) {
        throw new GatewayError(ErrorCodes.INVALID_REQUEST, `unknown setup ${setupId}`, {
          details: { code: "SETUP_NOT_FOUND", setupId },
        });
      }
      return record.completion === undefined ? {} : { completion: record.completion };
    },
  },
  "device.pair.list": {
    scope: Scopes.PAIRING,
    async handler(_call, hub) {
      return {
        pending: await hub.pairing.pendingRequests(),
        paired: (await hub.pairing.pairedDevices()).map(deviceView),
      };
    },
  },
  "device.pair.approve": {
    scope: Scopes.PAIRING,
    handler: (call, hub) => approve(call, hub, "any"),
  },
  "device.pair.reject": {
    scope: Scopes.PAIRING,
    handler: (call, hub) => reject(call, hub, "any"),
  },
  "device.pair.remove": {
    scope: Scopes.PAIRING,
    async handler(call, hub) {
      const deviceId = requireString(call.method, call.params, "deviceId", 256);
      checkTokenTarget(call, deviceId, []);
      const change: DeviceChange = { deviceId, role: "*", reason: "device unpaired" };
      if ((await hub.pairing.device(deviceId)) !== undefined) await recordChange(hub, change);
      const removed = await hub.pairing.remove(deviceId);
      // A handshake of the device still running is refused as it registers (same reason).
      const result = { ok: true, deviceId, removed };
      if (!removed) return result;
      return answerThenClose(call, hub, change, () => result);
    },
  },
  "device.pair.rename": {
    scope: Scopes.PAIRING,
    async handler(call, hub) {
      const deviceId = requireString(call.method, call.params, "deviceId", 256);
      const label = requireString(call.method, call.params, "label", 64);
      checkTokenTarget(call, deviceId, []);
      // Over the record as stored now: a device unpaired meanwhile is not written back.
      const device = await hub.pairing.updateDevice(deviceId, (stored) => ({ ...stored, label }));
      if (device === undefined) throw deviceNotFound(deviceId);
      return { ok: true, device: deviceView(device) };
    },
  },
  "device.token.rotate": {
    scope: Scopes.PAIRING,
    async handler(call, hub) {
      const { method, params: p } = call;
      const deviceId = requireString(method, p, "deviceId", 256);
      const role = requireString(method, p, "role", 64);
      // Ownership first: a non-admin learns nothing of devices that are not its own.
      checkTokenTarget(call, deviceId, []);
      const device = await pairedOrFail(hub, deviceId);
      if (!device.roles.includes(role)) {
        throw invalidRequest(`device ${deviceId} was not approved for role ${role}`, {
          code: "ROLE_NOT_APPROVED",
        });
      }
      const scopes =
        optionalStringArray(method, p, "scopes") ?? (role === "node" ? [] : device.scopes);
      if (!scopesWithin(scopes, device.scopes)) {
        throw invalidRequest("scopes must stay within the device's approved scopes", {
          code: "SCOPE_NOT_APPROVED",
        });
      }
      checkTokenTarget(call, deviceId, scopes);
      const change: DeviceChange = { deviceId, role, reason: "device token rotated" };
      await recordChange(hub, change);
      const issued = await hub.pairing.issueToken(deviceId, role, scopes, { rotation: true });
      // The token travels back only to the device itself, authenticated by its token.
      const inBand = call.caller.deviceId === deviceId && call.caller.authMethod === "device-token";
      // A caller that came in with the old token gets the new one, then is closed with the
      // other connections of the old token: it reconnects with the token it was just given.
      return answerThenClose(call, hub, change, () => ({
        deviceId,
        role,
        scopes,
        rotatedAtMs: issued.issuedAtMs,
        ...(inBand
          ? { token: issued.token, tokenDelivery: "in-band" }
          : { tokenDelivery: "withheld-cross-device" }),
      }));
    },
  },
  "device.token.revoke": {
    scope: Scopes.PAIRING,
    async handler(call, hub) {
      const deviceId = requireString(call.method, call.params, "deviceId", 256);
      const role = requireString(call.method, call.params, "role", 64);
      checkTokenTarget(call, deviceId, []);
      await pairedOrFail(hub, deviceId);
      const change: DeviceChange = { deviceId, role, reason: "device token revoked" };
      await recordChange(hub, change);
      const revoked = await hub.pairing.revokeTokens(deviceId, role);
      return answerThenClose(call, hub, change, (closing) => ({
        ok: true,
        deviceId,
        role,
        revoked,
        disconnected: closing,
      }));
    },
  },

  "node.pair.list": {
    scope: Scopes.PAIRING,
    async handler(_call, hub) {
      return {
        pending: (await hub.pairing.pendingRequests()).filter((r) => r.role === "node"),
        paired: (await hub.pairing.pairedDevices())
          .filter((d) => d.roles.includes("node"))
          .map(deviceView),
      };
    },
  },
  "node.pair.approve": {
    scope: Scopes.PAIRING,
    handler: (call, hub) => approve(call, hub, "node"),
  },
  "node.pair.reject": {
    scope: Scopes.PAIRING,
    handler: (call, hub) => reject(call, hub, "node"),
  },
  "node.pair.remove": {
    scope: Scopes.PAIRING,
    async handler(call, hub) {
      const nodeId = requireString(call.method, call.params, "nodeId", 256);
      const device = await pairedOrFail(hub, nodeId);
      if (!device.roles.includes("node")) {
        throw invalidRequest(`device ${nodeId} is not a paired node`, { code: "NODE_NOT_FOUND" });
      }
      const change: DeviceChange = { deviceId: nodeId, role: "node", reason: "node unpaired" };
      // Recorded first, as one change: its token revocation is part of the unpairing.
      await recordChange(hub, change);
      await hub.pairing.revokeTokens(nodeId, "node");
      // A node handshake of the device still running is refused as it registers (same reason).
      await hub.pairing.removeRole(nodeId, "node");
      await nodePendingQueues(hub.runtime.store.kv, hub.now).clear(nodeId);
      return answerThenClose(call, hub, change, () => ({ ok: true, nodeId, removed: true }));
    },
  },
};
