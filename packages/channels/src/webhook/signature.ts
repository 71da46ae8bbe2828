/**
 * Webhook signatures: HMAC-SHA256 over the timestamp and the raw body, in one header
 * (`X-BeamClaw-Signature: t=<unix seconds>,v1=<hex>`), the same in both directions.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { BeamClawError, InvalidArgumentError } from "@beamclaw/core";

/** The header that carries the signature. */
export const SIGNATURE_HEADER = "x-beamclaw-signature";
/** The header that carries an outbound delivery's id (the same for each retry). */
export const DELIVERY_HEADER = "x-beamclaw-delivery";
/** Default replay window: a signature older (or newer) than this is refused. */
export const DEFAULT_TOLERANCE_MS = 5 * 60_000;

/** Why a signature was refused. */
export type WebhookSignatureProblem = "missing" | "malformed" | "mismatch" | "expired";

/** A webhook request's signature is missing, malformed, wrong, or outside the replay window. */
export class WebhookSignatureError extends BeamClawError {
  readonly problem: WebhookSignatureProblem;
  constructor(problem: WebhookSignatureProblem, message: string) {
    super("WEBHOOK_SIGNATURE_INVALID", message);
    this.problem = problem;
  }
  static override isInstance = (value: unknown): value is WebhookSignatureError =>
    BeamClawError.isInstance(value) && value.code === "WEBHOOK_SIGNATURE_INVALID";
}

function hmac(secret: string, timestamp: string, body: string | Uint8Array): string {
  const mac = createHmac("sha256", secret);
  mac.update(`${timestamp}.`);
  mac.update(body);
  return mac.digest("hex");
}

function checkSecret(secret: string): void {
  if (typeof secret !== "string" || secret.length < 16) {
    throw new InvalidArgumentError("a webhook secret must be a string of at least 16 characters");
  }
}

/**
 * The signature header value for `body`, signed at `now` (epoch ms).
 *
 * @example
 * ```ts
 * const body = JSON.stringify(event);
 * await fetch(url, { method: "POST", body, headers: {
 *   "content-type": "application/json",
 *   "x-beamclaw-signature": signWebhookPayload(secret, body),
 * } });
 * ```
 */
export function signWebhookPayload(
  secret: string,
  body: string | Uint8Array,
  now: number = Date.now(),
): string {
  checkSecret(secret);
  const timestamp = String(Math.floor(now / 1000));
  return `t=${timestamp},v1=${hmac(secret, timestamp, body)}`;
}

/** Options of {@link verifyWebhookSignature}. */
export interface VerifyWebhookOptions {
  /** The replay window in ms. Default 300 000 (five minutes). */
  toleranceMs?: number;
  now?: number;
}

/**
 * Checks a signature header against the raw body. Several `v1=` values are accepted (one
 * per secret while a secret is rotated); one match is enough.
 *
 * @throws WebhookSignatureError (`missing`, `malformed`, `mismatch`, `expired`).
 * @example
 * ```ts
 * verifyWebhookSignature(secret, rawBody, req.headers["x-beamclaw-signature"]);
 * ```
 */
export function verifyWebhookSignature(
  secret: string,
  body: string | Uint8Array,
  header: string | string[] | undefined,
  options: VerifyWebhookOptions = {},
): void {
  checkSecret(secret);
  if (header === undefined || header === "" || (Array.isArray(header) && header.length === 0)) {
    throw new WebhookSignatureError("missing", `the ${SIGNATURE_HEADER} header is missing`);
  }
  const value = Array.isArray(header) ? header.join(",") : header;
  let timestamp: string | undefined;
  const signatures: string[] = [];
  for (const part of value.split(",")) {
    const [key, ...rest] = part.trim().split("=");
    const v = rest.join("=");
    if (key === "t") timestamp = v;
    else if (key === "v1") signatures.push(v);
  }
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp) || signatures.length === 0) {
    throw new WebhookSignatureError(
      "malformed",
      `the ${SIGNATURE_HEADER} header must look like t=<unix seconds>,v1=<hex>`,
    );
  }
  const toleranceMs = options.toleranceMs ?? DEFAULT_TOLERANCE_MS;
  const now = options.now ?? Date.now();
  if (Math.abs(now - Number(timestamp) * 1000) > toleranceMs) {
    throw new WebhookSignatureError(
      "expired",
      `the signature's timestamp is outside the ${Math.round(toleranceMs / 1000)} s replay window`,
    );
  }
  const expected = Buffer.from(hmac(secret, timestamp, body), "hex");
  const match = signatures.some((s) => {
    if (!/^[0-9a-f]{64}$/i.test(s)) return false;
    return timingSafeEqual(Buffer.from(s, "hex"), expected);
  });
  if (!match) throw new WebhookSignatureError("mismatch", "the signature does not match the body");
}
