/**
 * Device identity as OpenClaw defines it: an ed25519 key pair per device; the device id is
 * the SHA-256 (hex) of the raw 32-byte public key; at connect time the device signs a payload
 * that binds the gateway's `connect.challenge` nonce to its id, client, role, scopes and
 * token:
 *
 * - v3: `v3|deviceId|clientId|clientMode|role|scopes(comma)|signedAtMs|token|nonce|platform|deviceFamily`
 *   (platform and device family trimmed, ASCII upper case lowered)
 * - v2: `v2|deviceId|clientId|clientMode|role|scopes(comma)|signedAtMs|token|nonce`
 *
 * The public key and the signature travel as base64url (a PEM public key is accepted too).
 */
import crypto, { type KeyObject } from "node:crypto";

const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

function base64UrlDecode(input: string): Buffer {
  const normalized = input.replaceAll("-", "+").replaceAll("_", "/");
  return Buffer.from(normalized + "=".repeat((4 - (normalized.length % 4)) % 4), "base64");
}

/** The raw 32-byte ed25519 public key, from base64url or PEM; `undefined` when invalid. */
export function rawPublicKey(publicKey: string): Buffer | undefined {
  try {
    if (publicKey.includes("BEGIN")) {
      const spki = crypto
        .createPublicKey(publicKey)
        .export({ type: "spki", format: "der" }) as Buffer;
      if (
        spki.length === ED25519_SPKI_PREFIX.length + 32 &&
        spki.subarray(0, ED25519_SPKI_PREFIX.length).equals(ED25519_SPKI_PREFIX)
      ) {
        return spki.subarray(ED25519_SPKI_PREFIX.length);
      }
      return undefined;
    }
    if (!/^[A-Za-z0-9_\-+/=]+$/.test(publicKey)) return undefined;
    const raw = base64UrlDecode(publicKey);
    return raw.length === 32 ? raw : undefined;
  } catch {
    return undefined;
  }
}

/** The device id of a public key: SHA-256 hex of its raw bytes. */
export function deriveDeviceId(publicKey: string): string | undefined {
  const raw = rawPublicKey(publicKey);
  return raw === undefined ? undefined : crypto.createHash("sha256").update(raw).digest("hex");
}

/** The canonical (base64url, raw) form of a public key. */
export function normalizePublicKey(publicKey: string): string | undefined {
  return rawPublicKey(publicKey)?.toString("base64url");
}

/** Lower-cases ASCII A-Z after trimming, as the v3 payload wants its metadata fields. */
export function normalizeDeviceMetadata(value: string | undefined | null): string {
  if (typeof value !== "string") return "";
  return value.trim().replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** What a device signs at connect time. */
export interface DeviceAuthPayloadFields {
  deviceId: string;
  clientId: string;
  clientMode: string;
  role: string;
  scopes: readonly string[];
  signedAtMs: number;
  token?: string | null;
  nonce: string;
  platform?: string | null;
  deviceFamily?: string | null;
}

/** The v3 payload string (the one to sign). */
export function buildDeviceAuthPayloadV3(fields: DeviceAuthPayloadFields): string {
  return [
    "v3",
    fields.deviceId,
    fields.clientId,
    fields.clientMode,
    fields.role,
    fields.scopes.join(","),
    String(fields.signedAtMs),
    fields.token ?? "",
    fields.nonce,
    normalizeDeviceMetadata(fields.platform),
    normalizeDeviceMetadata(fields.deviceFamily),
  ].join("|");
}

/** The legacy v2 payload string (accepted for compatibility). */
export function buildDeviceAuthPayloadV2(fields: DeviceAuthPayloadFields): string {
  return [
    "v2",
    fields.deviceId,
    fields.clientId,
    fields.clientMode,
    fields.role,
    fields.scopes.join(","),
    String(fields.signedAtMs),
    fields.token ?? "",
    fields.nonce,
  ].join("|");
}

/**
 * Verifies an ed25519 signature (base64url or base64) over `payload`.
 *
 * @example
 * ```ts
 * const identity = createDeviceIdentity();
 * const fields = { nonce, clientId: "cli", clientMode: "cli", role: "operator", scopes: ["operator.read"] };
 * const device = signDeviceChallenge(identity, fields);
 * const payload = buildDeviceAuthPayloadV3({ ...fields, deviceId: device.id, signedAtMs: device.signedAt });
 * verifyDeviceSignature(device.publicKey, payload, device.signature); // true
 * ```
 */
export function verifyDeviceSignature(
  publicKey: string,
  payload: string,
  signature: string,
): boolean {
  const raw = rawPublicKey(publicKey);
  if (raw === undefined) return false;
  try {
    const key = crypto.createPublicKey({
      key: Buffer.concat([ED25519_SPKI_PREFIX, raw]),
      type: "spki",
      format: "der",
    });
    const sig = base64UrlDecode(signature);
    if (sig.length !== 64) return false;
    return crypto.verify(null, Buffer.from(payload, "utf8"), key, sig);
  } catch {
    return false;
  }
}

/** A device key pair, as a client holds it. */
export interface DeviceIdentity {
  deviceId: string;
  /** Raw public key, base64url. */
  publicKey: string;
  privateKey: KeyObject;
}

/**
 * Makes a new device identity (for clients and nodes that connect to a gateway, and tests).
 *
 * @example
 * ```ts
 * const identity = createDeviceIdentity();
 * const device = signDeviceChallenge(identity, { nonce, clientId: "cli", clientMode: "cli",
 *   role: "operator", scopes: ["operator.read"], token });
 * ws.send(JSON.stringify({ type: "req", id: "1", method: "connect", params: { ..., device } }));
 * ```
 */
export function createDeviceIdentity(): DeviceIdentity {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
  const spki = publicKey.export({ type: "spki", format: "der" }) as Buffer;
  const raw = spki.subarray(ED25519_SPKI_PREFIX.length);
  return {
    deviceId: crypto.createHash("sha256").update(raw).digest("hex"),
    publicKey: raw.toString("base64url"),
    privateKey,
  };
}

/** The `device` field of a `connect` request, signed over the v3 payload. */
export function signDeviceChallenge(
  identity: DeviceIdentity,
  fields: Omit<DeviceAuthPayloadFields, "deviceId" | "signedAtMs"> & { signedAtMs?: number },
): { id: string; publicKey: string; signature: string; signedAt: number; nonce: string } {
  const signedAt = fields.signedAtMs ?? Date.now();
  const payload = buildDeviceAuthPayloadV3({
    ...fields,
    deviceId: identity.deviceId,
    signedAtMs: signedAt,
  });
  const signature = crypto
    .sign(null, Buffer.from(payload, "utf8"), identity.privateKey)
    .toString("base64url");
  return {
    id: identity.deviceId,
    publicKey: identity.publicKey,
    signature,
    signedAt,
    nonce: fields.nonce,
  };
}
