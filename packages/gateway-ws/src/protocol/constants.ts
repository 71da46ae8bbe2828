/**
 * Constants of OpenClaw's gateway protocol as BeamClaw speaks it: versions, error codes,
 * close codes, scopes and the limits announced in `hello-ok.policy`.
 */

/** The protocol version this gateway speaks. */
export const PROTOCOL_VERSION = 4;
/** The oldest protocol version a client may offer and still be accepted. */
export const MIN_PROTOCOL_VERSION = 3;

/** The error codes of the protocol's error shape (`res.error.code`). */
export const ErrorCodes = {
  /** The request failed validation or a method precondition. */
  INVALID_REQUEST: "INVALID_REQUEST",
  /** The caller lacks a scope or role for the method. */
  FORBIDDEN: "FORBIDDEN",
  /** The device must be paired (or its pairing widened) by an operator first. */
  NOT_PAIRED: "NOT_PAIRED",
  /** The approval request is unknown or no longer pending. */
  APPROVAL_NOT_FOUND: "APPROVAL_NOT_FOUND",
  /** A subsystem or backend is not available (retryable or not, as `retryable` says). */
  UNAVAILABLE: "UNAVAILABLE",
} as const;

/** One of {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** WebSocket close codes the gateway uses, with the reason text it sends. */
export const CloseCodes = {
  /** `stop()` with no shutdown in progress, or a client's own close. */
  NORMAL: 1000,
  /** The gateway is shutting down (a `shutdown` event precedes it). */
  GOING_AWAY: 1001,
  /** The client's protocol range does not include a version this gateway speaks. */
  PROTOCOL_MISMATCH: 1002,
  /**
   * Policy violation: invalid handshake, failed authentication, pairing required, handshake
   * timeout, or a slow consumer whose outbound buffer passed `maxBufferedBytes`.
   */
  POLICY_VIOLATION: 1008,
  /** A frame larger than the limit (64 KiB before the handshake, `maxPayload` after). */
  MESSAGE_TOO_BIG: 1009,
  /** An unexpected server error on this connection. */
  INTERNAL_ERROR: 1011,
} as const;

/** Operator scopes. `operator.admin` implies every other; `operator.write` implies `read`. */
export const Scopes = {
  READ: "operator.read",
  WRITE: "operator.write",
  ADMIN: "operator.admin",
  APPROVALS: "operator.approvals",
  PAIRING: "operator.pairing",
} as const;

/** The roles a connection may take. */
export type GatewayRole = "operator" | "node";

/** Frames before a successful `connect` may not be larger than this. */
export const PRE_HANDSHAKE_MAX_BYTES = 64 * 1024;

/**
 * The lowest `requestsPerSecond` a gateway takes: one request a day. A lower rate would leave a
 * refused client a `retryAfterMs` of more than a day.
 */
export const MIN_REQUESTS_PER_SECOND = 1 / 86_400;

/** Default limits (each can be changed in `GatewayServerOptions`). */
export const DEFAULT_LIMITS = {
  maxPayloadBytes: 1_048_576,
  maxBufferedBytes: 8 * 1_048_576,
  tickIntervalMs: 30_000,
  handshakeTimeoutMs: 15_000,
  /** Requests per second each connection may sustain ... */
  requestsPerSecond: 50,
  /** ... with bursts up to this many. */
  requestBurst: 100,
  /** How far a device signature's `signedAt` may be from the gateway's clock. */
  deviceSignatureSkewMs: 10 * 60_000,
} as const;
