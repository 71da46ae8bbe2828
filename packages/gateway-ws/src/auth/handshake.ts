/**
 * Who a connecting client is and what it may do: the shared secret (token or password, both
 * compared in constant time), device identity (an ed25519 signature over the connection's
 * challenge nonce), device tokens, and pairing.
 */

import type { ConnectParams } from "../protocol/connect.js";
import { CloseCodes, ErrorCodes, type GatewayRole, Scopes } from "../protocol/constants.js";
import { type ErrorShape, GatewayError } from "../protocol/errors.js";
import {
  buildDeviceAuthPayloadV2,
  buildDeviceAuthPayloadV3,
  deriveDeviceId,
  normalizePublicKey,
  verifyDeviceSignature,
} from "./device-identity.js";
import {
  type DevicePairing,
  type PairedDevice,
  type PairingRequest,
  type PairingRequestLimits,
  pairingCovers,
  pairingFields,
  scopesWithin,
} from "./pairing.js";
import type { AuthRateLimitSettings } from "./rate-limit.js";
import { type SetupCodes, type SetupCompletion, setupAllows } from "./setup-codes.js";
import { secretsEqual } from "./shared-secret.js";

/** How clients authenticate. */
export interface GatewayAuthSettings {
  /** `none`: anyone who can reach the port; `token` / `password`: a shared secret. */
  mode: "none" | "token" | "password";
  token?: string | undefined;
  password?: string | undefined;
  /** Pairing requests from loopback addresses are approved without an operator. */
  autoApproveLoopback: boolean;
  /**
   * Failed logins per remote address (see {@link AuthRateLimitSettings}); `false` turns the
   * limit off. Default: 10 failures in 60 s lock the address out for 5 minutes, loopback
   * included.
   */
  rateLimit?: AuthRateLimitSettings | false | undefined;
  /**
   * Caps on pending pairing requests (see {@link PairingRequestLimits}): past them a device
   * asking to pair is refused with `UNAVAILABLE` / `PAIRING_REQUESTS_FULL`. Default 100
   * pending in all and 10 per client address.
   */
  pairingRequests?: PairingRequestLimits | undefined;
}

/** A refused handshake: the error to answer and how to close. */
export class HandshakeRefusal extends Error {
  readonly shape: ErrorShape;
  readonly closeCode: number;
  readonly closeReason: string;
  constructor(shape: ErrorShape, closeCode: number, closeReason: string) {
    super(shape.message);
    this.shape = shape;
    this.closeCode = closeCode;
    this.closeReason = closeReason;
  }
}

/**
 * `details.code`s of refusals that count as a failed login for the per-address limit: wrong
 * credentials, not missing ones (a client that sent none is not guessing).
 */
export const FAILED_LOGIN_CODES: ReadonlySet<string> = new Set([
  "AUTH_TOKEN_MISMATCH",
  "AUTH_PASSWORD_MISMATCH",
  "AUTH_DEVICE_TOKEN_MISMATCH",
  "AUTH_BOOTSTRAP_TOKEN_INVALID",
  "DEVICE_AUTH_SIGNATURE_INVALID",
]);

/** Who the client turned out to be. */
export interface HandshakeOutcome {
  role: GatewayRole;
  scopes: string[];
  authMethod: "none" | "token" | "password" | "device-token" | "bootstrap-token";
  deviceId?: string;
  device?: PairedDevice;
  /** A device token issued on this connect (returned once in `hello-ok.auth`). */
  issuedToken?: { token: string; issuedAtMs: number };
  /** The setup this connect completed (it came with a setup code's bootstrap token). */
  setupCompletion?: SetupCompletion;
  /**
   * For a device: {@link DevicePairing.mark} taken before the device's token or record was
   * read, for {@link staleDeviceRefusal} when the connection opens.
   */
  pairingMark?: number;
  /** For `device-token`: the hash of the token the handshake verified. */
  tokenHash?: string;
  /**
   * For a device: {@link DevicePairing.standingMark} taken before the device's token or record
   * was read, for the re-check of the open connection against the store (`DeviceWatch`).
   */
  standingMark?: number;
}

function refuse(
  code: string,
  message: string,
  details: Record<string, unknown>,
  closeCode: number = CloseCodes.POLICY_VIOLATION,
): HandshakeRefusal {
  return new HandshakeRefusal(
    new GatewayError(code as "INVALID_REQUEST", message, { details }).toShape(),
    closeCode,
    message.length > 120 ? message.slice(0, 120) : message,
  );
}

/** Checks a client's `connect`; resolves with its role and scopes or rejects with a refusal. */
export async function authenticateConnect(input: {
  params: ConnectParams;
  nonce: string;
  isLoopback: boolean;
  remoteAddress: string | undefined;
  settings: GatewayAuthSettings;
  pairing: DevicePairing;
  /** Setup codes whose bootstrap tokens stand in for the shared secret. */
  setupCodes?: SetupCodes;
  now: number;
  signatureSkewMs: number;
  onPairingRequested(request: PairingRequest, created: boolean): void;
  onPairingResolved(request: PairingRequest, decision: "approved" | "rejected"): void;
}): Promise<HandshakeOutcome> {
  const { params, settings, pairing } = input;
  const roleRaw = params.role ?? "operator";
  if (roleRaw !== "operator" && roleRaw !== "node") {
    throw refuse(ErrorCodes.INVALID_REQUEST, `invalid role: ${roleRaw}`, {
      code: "INVALID_ROLE",
      role: roleRaw,
    });
  }
  const role: GatewayRole = roleRaw;
  let scopes = role === "node" ? [] : [...new Set(params.scopes ?? [])];

  // Device identity first: a bad signature is refused whatever else the client presents.
  const device = params.device;
  let publicKey: string | undefined;
  if (device !== undefined) {
    const derived = deriveDeviceId(device.publicKey);
    publicKey = normalizePublicKey(device.publicKey);
    if (derived === undefined || publicKey === undefined) {
      throw refuse(ErrorCodes.INVALID_REQUEST, "device public key invalid", {
        code: "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        reason: "device-public-key",
      });
    }
    if (derived !== device.id) {
      throw refuse(ErrorCodes.INVALID_REQUEST, "device identity mismatch", {
        code: "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        reason: "device-id-mismatch",
      });
    }
    if (Math.abs(input.now - device.signedAt) > input.signatureSkewMs) {
      throw refuse(ErrorCodes.INVALID_REQUEST, "device signature expired", {
        code: "DEVICE_AUTH_SIGNATURE_EXPIRED",
        reason: "device-signature-stale",
      });
    }
    if (device.nonce.trim().length === 0) {
      throw refuse(ErrorCodes.INVALID_REQUEST, "device nonce required", {
        code: "DEVICE_AUTH_NONCE_REQUIRED",
        reason: "device-nonce-missing",
      });
    }
    if (device.nonce !== input.nonce) {
      throw refuse(ErrorCodes.INVALID_REQUEST, "device nonce mismatch", {
        code: "DEVICE_AUTH_NONCE_MISMATCH",
        reason: "device-nonce-mismatch",
      });
    }
    const tokens = [
      ...new Set([
        params.auth?.token ?? "",
        params.auth?.deviceToken ?? "",
        params.auth?.bootstrapToken ?? "",
      ]),
    ];
    const verified = tokens.some((token) => {
      const fields = {
        deviceId: device.id,
        clientId: params.client.id,
        clientMode: params.client.mode,
        role,
        scopes: params.scopes ?? [],
        signedAtMs: device.signedAt,
        token,
        nonce: device.nonce,
        platform: params.client.platform,
        deviceFamily: params.client.deviceFamily ?? null,
      };
      return (
        verifyDeviceSignature(
          device.publicKey,
          buildDeviceAuthPayloadV3(fields),
          device.signature,
        ) ||
        verifyDeviceSignature(device.publicKey, buildDeviceAuthPayloadV2(fields), device.signature)
      );
    });
    if (!verified) {
      throw refuse(ErrorCodes.INVALID_REQUEST, "device signature invalid", {
        code: "DEVICE_AUTH_SIGNATURE_INVALID",
        reason: "device-signature",
      });
    }
  }

  // The shared secret.
  let authMethod: HandshakeOutcome["authMethod"] | undefined;
  const auth = params.auth ?? {};
  let failure: { code: string; message: string } | undefined;
  if (settings.mode === "none") {
    authMethod = "none";
  } else if (settings.mode === "token") {
    if (auth.token !== undefined && auth.token.length > 0) {
      if (secretsEqual(auth.token, settings.token ?? "")) authMethod = "token";
      else
        failure = { code: "AUTH_TOKEN_MISMATCH", message: "unauthorized: gateway token mismatch" };
    } else {
      failure = { code: "AUTH_TOKEN_MISSING", message: "unauthorized: gateway token missing" };
    }
  } else if (auth.password !== undefined && auth.password.length > 0) {
    if (secretsEqual(auth.password, settings.password ?? "")) authMethod = "password";
    else
      failure = {
        code: "AUTH_PASSWORD_MISMATCH",
        message: "unauthorized: gateway password mismatch",
      };
  } else {
    failure = { code: "AUTH_PASSWORD_MISSING", message: "unauthorized: gateway password missing" };
  }

  // A device token stands in for the shared secret, for the device and role it was issued to.
  let tokenScopes: string[] | undefined;
  let tokenHash: string | undefined;
  // Taken before the device's token or record is read: what changes after it is found as the
  // connection registers (this gateway's changes) or once it is open (any gateway's).
  const standingMark = device === undefined ? undefined : await pairing.standingMark(device.id);
  const pairingMark = pairing.mark();
  const candidate = auth.deviceToken ?? (authMethod === undefined ? auth.token : undefined);
  if (authMethod === undefined && device !== undefined && candidate !== undefined) {
    const stored = await pairing.lookupToken(candidate);
    if (
      stored !== undefined &&
      stored.deviceId === device.id &&
      stored.role === role &&
      scopesWithin(scopes, stored.scopes)
    ) {
      authMethod = "device-token";
      tokenScopes = stored.scopes;
      tokenHash = stored.tokenHash;
    } else {
      failure = {
        code: "AUTH_DEVICE_TOKEN_MISMATCH",
        message: "unauthorized: device token mismatch (rotated or revoked?)",
      };
    }
  }
  // A setup code's bootstrap token stands in for the shared secret, for a device, within the
  // setup's access; the device's pairing still needs an operator.
  const bootstrapToken = auth.bootstrapToken;
  let setupToken: string | undefined;
  if (
    authMethod === undefined &&
    bootstrapToken !== undefined &&
    bootstrapToken.length > 0 &&
    input.setupCodes !== undefined
  ) {
    if (device === undefined) {
      throw refuse(ErrorCodes.NOT_PAIRED, "device identity required", {
        code: "DEVICE_IDENTITY_REQUIRED",
      });
    }
    const setup = await input.setupCodes.lookup(bootstrapToken);
    if (setup === undefined) {
      failure = {
        code: "AUTH_BOOTSTRAP_TOKEN_INVALID",
        message: "unauthorized: setup code invalid, expired or already used",
      };
    } else if (!setupAllows(setup.access, role, scopes)) {
      throw refuse(
        ErrorCodes.INVALID_REQUEST,
        `unauthorized: this setup code grants ${setup.access} access only`,
        { code: "AUTH_SCOPE_MISMATCH", access: setup.access, requestedScopes: scopes },
      );
    } else {
      authMethod = "bootstrap-token";
      setupToken = bootstrapToken;
    }
  }
  if (authMethod === undefined) {
    const f = failure ?? { code: "AUTH_UNAUTHORIZED", message: "unauthorized" };
    throw refuse(ErrorCodes.INVALID_REQUEST, f.message, {
      code: f.code,
      authMode: settings.mode,
      recommendedNextStep: f.code.endsWith("_MISSING")
        ? "update_auth_configuration"
        : "update_auth_credentials",
    });
  }
  if (authMethod === "device-token" && scopes.length === 0) scopes = [...(tokenScopes ?? [])];

  if (device === undefined) {
    if (role === "node") {
      throw refuse(ErrorCodes.NOT_PAIRED, "device identity required", {
        code: "DEVICE_IDENTITY_REQUIRED",
      });
    }
    return { role, scopes, authMethod };
  }

  // Pairing: the device must be paired for this role and these scopes.
  let paired = await pairing.device(device.id);
  // Unpaired (or its token changed) through this gateway since the handshake began: refused
  // now, before an unpaired device could ask to be paired again (and be approved at once).
  const changed = pairing.changeSince(device.id, role, authMethod === "device-token", pairingMark);
  if (changed !== undefined) throw changeRefusal(changed, settings.mode);
  const samesKey = paired !== undefined && paired.publicKey === publicKey;
  const covered = samesKey && pairingCovers(paired!, { publicKey: publicKey!, role, scopes });
  // A device token was issued to a paired device: not covered, the device was unpaired
  // (elsewhere, or as the token was read) and the token is dead with it.
  if (!covered && authMethod === "device-token") {
    throw unpairedRefusal(samesKey ? `${role} unpaired` : "device unpaired", settings.mode);
  }
  if (!covered) {
    const autoApprovable = input.isLoopback && settings.autoApproveLoopback;
    const asked = await requestPairingOrRefuse(
      pairing,
      pairingFields({
        deviceId: device.id,
        publicKey: publicKey!,
        role,
        scopes,
        client: params.client,
        ...(params.commands === undefined ? {} : { commands: params.commands }),
        ...(input.remoteAddress === undefined ? {} : { remoteIp: input.remoteAddress }),
        ...(samesKey ? { existing: paired! } : {}),
      }),
      // A request answered at once never waits: it takes no slot, and is never refused one.
      !autoApprovable,
    );
    const { request, created } = asked;
    const autoApproved =
      request === undefined
        ? asked.paired
        : autoApprovable
          ? await autoApprove(pairing, request, input.onPairingResolved)
          : undefined;
    if (autoApproved !== undefined) {
      paired = autoApproved;
    } else if (request !== undefined) {
      input.onPairingRequested(request, created);
      throw refuse(ErrorCodes.NOT_PAIRED, "pairing required", {
        code: "PAIRING_REQUIRED",
        requestId: request.requestId,
        reason: request.reason,
        deviceId: device.id,
        requestedRole: role,
        requestedScopes: scopes,
        recommendedNextStep: "wait_then_retry",
      });
    }
  }
  // Written over the record as stored now, and only while it still covers this connect: a
  // device unpaired (or narrowed) since it was read is not written back.
  const current = await pairing.updateDevice(device.id, (stored) => {
    if (!pairingCovers(stored, { publicKey: publicKey!, role, scopes })) return undefined;
    stored.lastSeenAtMs = input.now;
    if (params.client.displayName !== undefined) stored.displayName = params.client.displayName;
    stored.platform = params.client.platform;
    return stored;
  });
  if (current === undefined) throw unpairedRefusal("device unpaired", settings.mode);
  if (role === "node" && params.commands !== undefined) {
    // A node may declare fewer commands than were approved, never more.
    const approved = new Set(current.commands ?? []);
    params.commands = params.commands.filter((c) => approved.has(c));
  }
  const outcome: HandshakeOutcome = {
    role,
    scopes: role === "node" ? [] : scopes,
    authMethod,
    deviceId: device.id,
    device: current,
    pairingMark,
    ...(tokenHash === undefined || authMethod !== "device-token" ? {} : { tokenHash }),
    ...(standingMark === undefined ? {} : { standingMark }),
  };
  if (setupToken !== undefined) {
    const completion = await input.setupCodes!.complete(setupToken, {
      deviceId: device.id,
      ...(params.client.displayName === undefined ? {} : { deviceName: params.client.displayName }),
    });
    if (completion === undefined) {
      throw refuse(
        ErrorCodes.INVALID_REQUEST,
        "unauthorized: setup code invalid, expired or already used",
        { code: "AUTH_BOOTSTRAP_TOKEN_INVALID", authMode: settings.mode },
      );
    }
    outcome.setupCompletion = completion;
  }
  if (authMethod !== "device-token") {
    outcome.issuedToken = await pairing.issueToken(device.id, role, outcome.scopes);
  }
  return outcome;
}

/**
 * The refusal for a device's connection about to open after it lost its standing while its
 * handshake ran: its device token rotated or revoked, or the device (or the connection's
 * role of it) unpaired. The close sweep of that change ran before the connection was
 * registered, so it missed it. `undefined` when the connection may open.
 *
 * This half reads the device's record and token from the store, so it also finds changes
 * another gateway on the same store made; {@link changedDeviceRefusal} then finds, in the same
 * turn as the connection registers, what changed through this gateway after that read.
 */
export async function staleDeviceRefusal(
  pairing: DevicePairing,
  outcome: HandshakeOutcome,
  authMode: GatewayAuthSettings["mode"],
): Promise<HandshakeRefusal | undefined> {
  if (outcome.deviceId === undefined || outcome.device === undefined) return undefined;
  const reason = await pairing.storedChange(
    outcome.deviceId,
    outcome.role,
    outcome.device.publicKey,
    outcome.authMethod === "device-token" ? outcome.tokenHash : undefined,
  );
  return reason === undefined ? undefined : changeRefusal(reason, authMode);
}

/**
 * The synchronous half of {@link staleDeviceRefusal}: the changes made through this gateway
 * since the handshake's {@link DevicePairing.mark}.
 */
export function changedDeviceRefusal(
  pairing: DevicePairing,
  outcome: HandshakeOutcome,
  authMode: GatewayAuthSettings["mode"],
): HandshakeRefusal | undefined {
  if (outcome.deviceId === undefined || outcome.pairingMark === undefined) return undefined;
  const reason = pairing.changeSince(
    outcome.deviceId,
    outcome.role,
    outcome.authMethod === "device-token",
    outcome.pairingMark,
  );
  return reason === undefined ? undefined : changeRefusal(reason, authMode);
}

/** The refusal of a change's close `reason` (see {@link DevicePairing.changeSince}). */
function changeRefusal(reason: string, authMode: GatewayAuthSettings["mode"]): HandshakeRefusal {
  if (!reason.startsWith("device token ")) return unpairedRefusal(reason, authMode);
  const message = "unauthorized: device token mismatch (rotated or revoked?)";
  return new HandshakeRefusal(
    new GatewayError(ErrorCodes.INVALID_REQUEST, message, {
      details: {
        code: "AUTH_DEVICE_TOKEN_MISMATCH",
        authMode,
        recommendedNextStep: "update_auth_credentials",
      },
    }).toShape(),
    CloseCodes.POLICY_VIOLATION,
    // The reason the sweep closes the token's other connections with.
    reason,
  );
}

/**
 * `NOT_PAIRED` / `DEVICE_UNPAIRED`: the device (or the role it connects for) was unpaired
 * while its handshake ran; closed with the reason the unpairing closed its other connections.
 */
function unpairedRefusal(reason: string, authMode: GatewayAuthSettings["mode"]): HandshakeRefusal {
  return new HandshakeRefusal(
    new GatewayError(ErrorCodes.NOT_PAIRED, `${reason} while connecting`, {
      details: { code: "DEVICE_UNPAIRED", authMode, recommendedNextStep: "wait_then_retry" },
    }).toShape(),
    CloseCodes.POLICY_VIOLATION,
    reason,
  );
}

/** {@link DevicePairing.requestPairing}, its `PAIRING_REQUESTS_FULL` as a refused handshake. */
async function requestPairingOrRefuse(
  pairing: DevicePairing,
  fields: Parameters<DevicePairing["requestPairing"]>[0],
  enforceLimits: boolean,
): ReturnType<DevicePairing["requestPairing"]> {
  try {
    return await pairing.requestPairing(fields, { enforceLimits });
  } catch (error) {
    const code = GatewayError.isInstance(error)
      ? (error.details as { code?: unknown } | undefined)?.code
      : undefined;
    if (code !== "PAIRING_REQUESTS_FULL") throw error;
    throw new HandshakeRefusal(
      (error as GatewayError).toShape(),
      CloseCodes.POLICY_VIOLATION,
      "too many pending pairing requests",
    );
  }
}

/**
 * Approves a loopback device's request. When a concurrent connect of the same device answered
 * it first, the device as that approval left it is used, if it covers this request.
 */
async function autoApprove(
  pairing: DevicePairing,
  request: PairingRequest,
  onResolved: (request: PairingRequest, decision: "approved" | "rejected") => void,
): Promise<PairedDevice | undefined> {
  request.silent = true;
  try {
    const { device } = await pairing.approve(request.requestId);
    onResolved(request, "approved");
    return device;
  } catch (error) {
    const code =
      error instanceof GatewayError
        ? (error.details as { code?: unknown } | undefined)?.code
        : undefined;
    if (code !== "PAIRING_REQUEST_NOT_FOUND") throw error;
    const device = await pairing.device(request.deviceId);
    return device !== undefined && pairingCovers(device, request) ? device : undefined;
  }
}

/** Scopes a method may require, for `hello-ok.features` and documentation. */
export const ALL_OPERATOR_SCOPES: readonly string[] = Object.values(Scopes);
