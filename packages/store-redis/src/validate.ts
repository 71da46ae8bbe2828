/**
 * Argument checks shared by the sub-stores. Each throws `InvalidArgumentError` before
 * anything reaches Redis, so bad input never writes anything.
 */
import { InvalidArgumentError } from "@beamclaw/core";

/** Default and maximum page size of listings. */
export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

/**
 * A non-empty, well-formed string naming a record. Ill-formed strings (a lone surrogate)
 * are refused because UTF-8 would turn them into U+FFFD and two different keys into one.
 */
export function requireId(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new InvalidArgumentError(`${what} must be a non-empty string, got ${show(value)}`);
  }
  if (!(value as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new InvalidArgumentError(`${what} must be well-formed Unicode (it has a lone surrogate)`);
  }
  return value;
}

/** A finite number. */
export function requireNumber(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new InvalidArgumentError(`${what} must be a finite number, got ${show(value)}`);
  }
  return value;
}

/** A duration in whole ms, at least 1 (Redis expiries are whole ms). */
export function requireTtl(value: unknown, what: string): number {
  return requireInteger(value, what, 1);
}

/** A page size: `undefined` gives `DEFAULT_LIMIT`; otherwise an integer in 1..`MAX_LIMIT`. */
export function pageLimit(value: unknown, what: string): number {
  return value === undefined ? DEFAULT_LIMIT : requireInteger(value, what, 1, MAX_LIMIT);
}

/** An integer in `min..max`. */
export function requireInteger(
  value: unknown,
  what: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `within ${min}..${max}`;
    throw new InvalidArgumentError(`${what} must be an integer ${range}, got ${show(value)}`);
  }
  return value;
}

/** An options argument: `undefined` or a plain object. */
export function optionsObject<T extends object>(value: T | undefined, what: string): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${what} must be an object, got ${show(value)}`);
  }
  return value;
}

export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value == null) {
    return String(value);
  }
  return Array.isArray(value) ? "an array" : `a ${typeof value}`;
}
