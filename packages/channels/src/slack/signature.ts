/**
 * Slack's request signing (v0): `X-Slack-Signature: v0=<hex HMAC-SHA256 of
 * "v0:<X-Slack-Request-Timestamp>:<raw body>" keyed with the app's signing secret>`.
 * https://docs.slack.dev/authentication/verifying-requests-from-slack
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { BeamClawError, InvalidArgumentError } from "@beamclaw/core";

/** The header that carries Slack's signature. */
export const SLACK_SIGNATURE_HEADER = "x-slack-signature";
/** The header that carries the Unix time (seconds) the request was signed at. */
export const SLACK_TIMESTAMP_HEADER = "x-slack-request-timestamp";
/** Slack's replay window: a request signed more than five minutes away from now is refused. */
export const SLACK_DEFAULT_TOLERANCE_MS = 5 * 60_000;

/** Why a Slack request's signature was refused. */
export type SlackSignatureProblem = "missing" | "malformed" | "mismatch" | "expired";

/** A request claiming to come from Slack has a missing, malformed, wrong or stale signature. */
export class SlackSignatureError extends BeamClawError {
  readonly problem: SlackSignatureProblem;
  constructor(problem: SlackSignatureProblem, message: string) {
    super("SLACK_SIGNATURE_INVALID", message);
    this.problem = problem;
  }
  static override isInstance = (value: unknown): value is SlackSignatureError =>
    BeamClawError.isInstance(value) && value.code === "SLACK_SIGNATURE_INVALID";
}

function checkSecret(signingSecret: string): void {
  if (typeof signingSecret !== "string" || signingSecret.length === 0) {
    throw new InvalidArgumentError("a Slack signing secret must be a non-empty string");
  }
}

function hmac(signingSecret: string, timestamp: string, body: string | Uint8Array): string {
  const mac = createHmac("sha256", signingSecret);
  mac.update(`v0:${timestamp}:`);
  mac.update(body);
  return mac.digest("hex");
}

/**
 * The `X-Slack-Signature` value Slack would send for `body` signed at `timestamp` (Unix
 * seconds). Useful to test an Events API endpoint.
 *
 * @example
 * ```ts
 * const timestamp = Math.floor(Date.now() / 1000);
 * const headers = {
 *   "x-slack-request-timestamp": String(timestamp),
 *   "x-slack-signature": signSlackRequest(signingSecret, timestamp, body),
 * };
 * ```
 */
export function signSlackRequest(
  signingSecret: string,
  timestamp: number | string,
  body: string | Uint8Array,
): string {
  checkSecret(signingSecret);
  return `v0=${hmac(signingSecret, String(timestamp), body)}`;
}

/** Options of {@link verifySlackRequest}. */
export interface VerifySlackRequestOptions {
  /** The replay window in ms. Default 300 000 (five minutes, as Slack recommends). */
  toleranceMs?: number;
  /** The current time, epoch ms. */
  now?: number;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Checks that a request comes from Slack: its timestamp is within the replay window and its
 * signature matches the raw body. Verify before parsing the body.
 *
 * @throws SlackSignatureError (`missing`, `malformed`, `mismatch`, `expired`).
 * @example
 * ```ts
 * verifySlackRequest(signingSecret, rawBody, {
 *   signature: req.headers["x-slack-signature"],
 *   timestamp: req.headers["x-slack-request-timestamp"],
 * });
 * ```
 */
export function verifySlackRequest(
  signingSecret: string,
  body: string | Uint8Array,
  headers: { signature: string | string[] | undefined; timestamp: string | string[] | undefined },
  options: VerifySlackRequestOptions = {},
): void {
  checkSecret(signingSecret);
  const signature = single(headers.signature);
  const timestamp = single(headers.timestamp);
  if (signature === undefined || signature === "" || timestamp === undefined || timestamp === "") {
    throw new SlackSignatureError(
      "missing",
      `the ${SLACK_SIGNATURE_HEADER} and ${SLACK_TIMESTAMP_HEADER} headers are required`,
    );
  }
  if (!/^\d{1,12}$/.test(timestamp) || !/^v0=[0-9a-f]{64}$/i.test(signature)) {
    throw new SlackSignatureError(
      "malformed",
      `${SLACK_TIMESTAMP_HEADER} must be Unix seconds and ${SLACK_SIGNATURE_HEADER} must look like v0=<64 hex digits>`,
    );
  }
  const toleranceMs = options.toleranceMs ?? SLACK_DEFAULT_TOLERANCE_MS;
  const now = options.now ?? Date.now();
  if (Math.abs(now - Number(timestamp) * 1000) > toleranceMs) {
    throw new SlackSignatureError(
      "expired",
      `the request timestamp is outside the ${Math.round(toleranceMs / 1000)} s replay window`,
    );
  }
  const expected = Buffer.from(hmac(signingSecret, timestamp, body), "hex");
  if (!timingSafeEqual(Buffer.from(signature.slice(3), "hex"), expected)) {
    throw new SlackSignatureError("mismatch", "the signature does not match the body");
  }
}
