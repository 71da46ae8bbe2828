/** The `connect` request's params, checked field by field. */
import { invalidRequest } from "./errors.js";
import { checkParamFields } from "./method-params.js";

/** The client block of `connect`. */
export interface ClientInfo {
  id: string;
  version: string;
  platform: string;
  mode: string;
  displayName?: string;
  deviceFamily?: string;
  modelIdentifier?: string;
  instanceId?: string;
  timeZone?: string;
}

/** A device's proof of identity in `connect`. */
export interface DeviceProof {
  id: string;
  publicKey: string;
  signature: string;
  signedAt: number;
  nonce: string;
}

/** `connect` params as the gateway uses them. */
export interface ConnectParams {
  minProtocol: number;
  maxProtocol: number;
  client: ClientInfo;
  role?: string;
  scopes?: string[];
  caps?: string[];
  commands?: string[];
  permissions?: Record<string, boolean>;
  device?: DeviceProof;
  auth?: { token?: string; password?: string; deviceToken?: string; bootstrapToken?: string };
  locale?: string;
  userAgent?: string;
}

function str(value: unknown, field: string, required: boolean, max = 512): string | undefined {
  if (value === undefined && !required) return undefined;
  if (typeof value !== "string" || value.length === 0 || value.length > max) {
    throw invalidRequest(`invalid connect params: ${field} must be a non-empty string`, {
      code: "INVALID_CONNECT_PARAMS",
      field,
    });
  }
  return value;
}

function strings(value: unknown, field: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (
    !Array.isArray(value) ||
    value.length > 256 ||
    value.some((v) => typeof v !== "string" || v.length === 0 || v.length > 256)
  ) {
    throw invalidRequest(`invalid connect params: ${field} must be an array of non-empty strings`, {
      code: "INVALID_CONNECT_PARAMS",
      field,
    });
  }
  return value as string[];
}

function protocolNumber(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw invalidRequest(`invalid connect params: ${field} must be an integer >= 1`, {
      code: "INVALID_CONNECT_PARAMS",
      field,
    });
  }
  return value;
}

/**
 * Checks `connect` params; throws `INVALID_REQUEST` naming the first bad field. A top-level
 * field OpenClaw's `ConnectParams` does not have is refused like any method's unknown field
 * (`details.code` `INVALID_PARAMS`, `unknownFields`, a did-you-mean in the message: see
 * {@link checkParamFields}); the protocol's fields BeamClaw does not use (`pathEnv`,
 * `transports`, `client.buildId`, ...) are accepted and ignored.
 */
export function parseConnectParams(raw: unknown): ConnectParams {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw invalidRequest("invalid connect params: params must be an object", {
      code: "INVALID_CONNECT_PARAMS",
    });
  }
  const p = raw as Record<string, unknown>;
  checkParamFields("connect", p);
  const c = p.client;
  if (typeof c !== "object" || c === null || Array.isArray(c)) {
    throw invalidRequest("invalid connect params: client must be an object", {
      code: "INVALID_CONNECT_PARAMS",
      field: "client",
    });
  }
  const client = c as Record<string, unknown>;
  const info: ClientInfo = {
    id: str(client.id, "client.id", true)!,
    version: str(client.version, "client.version", true)!,
    platform: str(client.platform, "client.platform", true)!,
    mode: str(client.mode, "client.mode", true)!,
  };
  for (const field of [
    "displayName",
    "deviceFamily",
    "modelIdentifier",
    "instanceId",
    "timeZone",
  ] as const) {
    const value = str(client[field], `client.${field}`, false);
    if (value !== undefined) info[field] = value;
  }
  const out: ConnectParams = {
    minProtocol: protocolNumber(p.minProtocol, "minProtocol"),
    maxProtocol: protocolNumber(p.maxProtocol, "maxProtocol"),
    client: info,
  };
  const role = str(p.role, "role", false, 64);
  if (role !== undefined) out.role = role;
  const scopes = strings(p.scopes, "scopes");
  if (scopes !== undefined) out.scopes = scopes;
  const caps = strings(p.caps, "caps");
  if (caps !== undefined) out.caps = caps;
  const commands = strings(p.commands, "commands");
  if (commands !== undefined) out.commands = commands;
  if (p.permissions !== undefined) {
    if (typeof p.permissions !== "object" || p.permissions === null) {
      throw invalidRequest("invalid connect params: permissions must be an object", {
        code: "INVALID_CONNECT_PARAMS",
        field: "permissions",
      });
    }
    out.permissions = Object.fromEntries(
      Object.entries(p.permissions as Record<string, unknown>).filter(
        (e): e is [string, boolean] => typeof e[1] === "boolean",
      ),
    );
  }
  if (p.device !== undefined) {
    const d = p.device as Record<string, unknown> | null;
    if (typeof d !== "object" || d === null) {
      throw invalidRequest("invalid connect params: device must be an object", {
        code: "INVALID_CONNECT_PARAMS",
        field: "device",
      });
    }
    if (typeof d.signedAt !== "number" || !Number.isInteger(d.signedAt) || d.signedAt < 0) {
      throw invalidRequest("invalid connect params: device.signedAt must be an integer", {
        code: "INVALID_CONNECT_PARAMS",
        field: "device.signedAt",
      });
    }
    out.device = {
      id: str(d.id, "device.id", true, 256)!,
      publicKey: str(d.publicKey, "device.publicKey", true, 4096)!,
      signature: str(d.signature, "device.signature", true, 1024)!,
      signedAt: d.signedAt,
      nonce: typeof d.nonce === "string" ? d.nonce : "",
    };
  }
  if (p.auth !== undefined) {
    const a = p.auth as Record<string, unknown> | null;
    if (typeof a !== "object" || a === null) {
      throw invalidRequest("invalid connect params: auth must be an object", {
        code: "INVALID_CONNECT_PARAMS",
        field: "auth",
      });
    }
    const auth: NonNullable<ConnectParams["auth"]> = {};
    for (const field of ["token", "password", "deviceToken", "bootstrapToken"] as const) {
      const value = a[field];
      if (value === undefined) continue;
      if (typeof value !== "string" || value.length > 4096) {
        throw invalidRequest(`invalid connect params: auth.${field} must be a string`, {
          code: "INVALID_CONNECT_PARAMS",
          field: `auth.${field}`,
        });
      }
      auth[field] = value;
    }
    out.auth = auth;
  }
  if (typeof p.locale === "string") out.locale = p.locale;
  if (typeof p.userAgent === "string") out.userAgent = p.userAgent;
  return out;
}
