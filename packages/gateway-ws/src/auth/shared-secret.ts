import crypto from "node:crypto";

/**
 * Compares two secrets in constant time: both are hashed to SHA-256 first, so the comparison
 * takes the same time whatever their lengths and wherever they differ, and
 * `crypto.timingSafeEqual` compares the digests.
 *
 * @example
 * ```ts
 * if (!secretsEqual(presented, configuredToken)) refuse();
 * ```
 */
export function secretsEqual(presented: string, expected: string): boolean {
  const a = crypto.createHash("sha256").update(presented, "utf8").digest();
  const b = crypto.createHash("sha256").update(expected, "utf8").digest();
  // Evaluated without short-circuit so an empty expected secret costs the same as any other.
  const equal = crypto.timingSafeEqual(a, b);
  return equal && expected.length > 0;
}

/** SHA-256 hex of a token: how device tokens are stored (never the token itself). */
export function hashToken(token: string): string {
  return crypto.createHash("sha256").update(token, "utf8").digest("hex");
}

/** A new random bearer token (32 bytes, base64url). */
export function newToken(): string {
  return crypto.randomBytes(32).toString("base64url");
}
