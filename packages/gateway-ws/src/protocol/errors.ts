import { BeamClawError, describe } from "@beamclaw/core";
import { OVERLOAD_CODES, retryAfterMsOf } from "../retry-after.js";
import { type ErrorCode, ErrorCodes } from "./constants.js";

/** The protocol's error shape (`res.error`). */
export interface ErrorShape {
  code: string;
  message: string;
  details?: unknown;
  retryable?: boolean;
  retryAfterMs?: number;
}

/** Options of {@link GatewayError}. */
export interface GatewayErrorOptions {
  details?: unknown;
  retryable?: boolean;
  retryAfterMs?: number;
  cause?: unknown;
}

/**
 * A request failed in a way the client is told about: `code` is one of the protocol's error
 * codes (`INVALID_REQUEST`, `FORBIDDEN`, `NOT_PAIRED`, `APPROVAL_NOT_FOUND`, `UNAVAILABLE`),
 * `details` carries a structured reason (`details.code`).
 *
 * @example
 * ```ts
 * throw new GatewayError("UNAVAILABLE", "cron is not available: no cron service configured", {
 *   details: { code: "SUBSYSTEM_UNAVAILABLE", subsystem: "cron" },
 * });
 * ```
 */
export class GatewayError extends BeamClawError {
  readonly details: unknown;
  readonly retryable: boolean | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.details = options.details;
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The error as the protocol carries it. */
  toShape(): ErrorShape {
    return {
      code: this.code,
      message: this.message.length > 0 ? this.message : this.code,
      ...(this.details === undefined ? {} : { details: this.details }),
      ...(this.retryable === undefined ? {} : { retryable: this.retryable }),
      ...(this.retryAfterMs === undefined
        ? {}
        : { retryAfterMs: Math.max(0, Math.ceil(this.retryAfterMs)) }),
    };
  }

  static override isInstance = (value: unknown): value is GatewayError =>
    value instanceof GatewayError ||
    (BeamClawError.isInstance(value) &&
      (Object.values(ErrorCodes) as string[]).includes(value.code) &&
      typeof (value as { toShape?: unknown }).toShape === "function");
}

/** `INVALID_REQUEST` with a message naming what was wrong. */
export function invalidRequest(message: string, details?: unknown): GatewayError {
  return new GatewayError(ErrorCodes.INVALID_REQUEST, message, {
    ...(details === undefined ? {} : { details }),
  });
}

/**
 * `UNAVAILABLE` for a method whose subsystem does not exist in this build or was not given to
 * the gateway. Never retryable: retrying does not make the subsystem appear.
 */
export function subsystemUnavailable(subsystem: string, message: string): GatewayError {
  return new GatewayError(ErrorCodes.UNAVAILABLE, message, {
    details: { code: "SUBSYSTEM_UNAVAILABLE", subsystem },
    retryable: false,
  });
}

/** `FORBIDDEN` for a missing scope, with the protocol's structured details. */
export function missingScope(scope: string, requiredScopes: string[] = [scope]): GatewayError {
  return new GatewayError(ErrorCodes.FORBIDDEN, `missing scope: ${scope}`, {
    details: { code: "MISSING_SCOPE", missingScope: scope, requiredScopes },
  });
}

const INVALID_CODES = new Set([
  "INVALID_ARGUMENT",
  "INVALID_SESSION_KEY",
  "CONFIG_INVALID",
  "DUPLICATE",
]);
const RETRYABLE_CODES = new Set([
  ...OVERLOAD_CODES,
  "STORE_UNAVAILABLE",
  "STORE_LOCKED",
  "TIMEOUT",
  "CIRCUIT_OPEN",
  "NO_PROCESS",
  // A run is in flight or messages wait: the same request succeeds once the session is at rest.
  "SESSION_BUSY",
]);

/**
 * Turns anything a handler threw into the protocol's error shape. BeamClaw errors keep their
 * code in `details.code`; invalid arguments become `INVALID_REQUEST`, the rest `UNAVAILABLE`.
 * An error's `retryAfterMs` becomes the shape's; an overload (`OVERLOADED`, `MAX_CHILDREN`,
 * `RATE_LIMITED`) without one gets 1 s, so that every overload says when to retry.
 */
export function toErrorShape(error: unknown): ErrorShape {
  if (GatewayError.isInstance(error)) return error.toShape();
  if (BeamClawError.isInstance(error)) {
    if (error.code === "FORBIDDEN") {
      return { code: ErrorCodes.FORBIDDEN, message: error.message, details: { code: error.code } };
    }
    const retryAfterMs = retryAfterMsOf(error);
    const reason = (error as { reason?: unknown }).reason;
    const shape: ErrorShape = {
      code: INVALID_CODES.has(error.code) ? ErrorCodes.INVALID_REQUEST : ErrorCodes.UNAVAILABLE,
      message: error.message || error.code,
      // `reason` tells overloads apart (`memory`: the gateway is shedding load).
      details: typeof reason === "string" ? { code: error.code, reason } : { code: error.code },
    };
    if (!INVALID_CODES.has(error.code)) {
      shape.retryable =
        RETRYABLE_CODES.has(error.code) ||
        (error as { isRetryable?: unknown }).isRetryable === true;
    }
    if (retryAfterMs !== undefined) shape.retryAfterMs = retryAfterMs;
    return shape;
  }
  return { code: ErrorCodes.UNAVAILABLE, message: describe(error) || "internal error" };
}
