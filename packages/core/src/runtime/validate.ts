/**
 * Argument checks shared by the public entry points, so that a JavaScript caller (no type
 * checker) who passes the wrong kind of value gets an `InvalidArgumentError` naming it,
 * instead of a `TypeError` from deep inside. Internal: not exported from the package.
 * @internal
 */
import { InvalidArgumentError } from "../errors.js";

/** A short, safe description of any value for an error message (never throws). */
export function describeArg(value: unknown): string {
  if (typeof value === "string")
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol" || typeof value === "function") return `a ${typeof value}`;
  if (typeof value === "object" && value !== null)
    return Array.isArray(value) ? "an array" : "an object";
  return String(value);
}

/** `value` when it is a plain object (not null, not an array); else `InvalidArgumentError`. */
export function requireObject<T extends object>(value: unknown, what: string): T {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${what} must be an object, got ${describeArg(value)}`);
  }
  return value as T;
}

/** Like {@link requireObject}, with `undefined` meaning `{}`. */
export function optionalObject<T extends object>(value: unknown, what: string): Partial<T> {
  return value === undefined ? {} : requireObject<T>(value, what);
}

/** Throws unless `value` is undefined or a function. */
export function optionalFunction(value: unknown, what: string): void {
  if (value !== undefined && typeof value !== "function") {
    throw new InvalidArgumentError(`${what} must be a function, got ${describeArg(value)}`);
  }
}

/** Throws unless `value` is undefined or a string (non-empty when `nonEmpty`). */
export function optionalString(value: unknown, what: string, nonEmpty = false): void {
  if (value === undefined) return;
  if (typeof value !== "string" || (nonEmpty && value.length === 0)) {
    throw new InvalidArgumentError(
      `${what} must be a ${nonEmpty ? "non-empty " : ""}string, got ${describeArg(value)}`,
    );
  }
}

/**
 * Throws unless `value` is undefined or a number (not NaN) `>= min` (`> 0` when `min` is
 * `"positive"`) and `<= max` (when given), an integer when `integer`, and finite unless
 * `infinity` is allowed.
 */
export function optionalNumber(
  value: unknown,
  what: string,
  rule: { min: number | "positive"; max?: number; integer?: boolean; infinity?: boolean },
): void {
  if (value === undefined) return;
  const ok =
    typeof value === "number" &&
    !Number.isNaN(value) &&
    (rule.min === "positive" ? value > 0 : value >= rule.min) &&
    (rule.max === undefined || value <= rule.max) &&
    (value === Infinity
      ? rule.infinity === true
      : Number.isFinite(value) && (rule.integer !== true || Number.isInteger(value)));
  if (!ok) {
    const bound =
      (rule.min === "positive" ? "> 0" : `>= ${rule.min}`) +
      (rule.max === undefined ? "" : ` and <= ${rule.max}`);
    throw new InvalidArgumentError(
      `${what} must be ${rule.integer === true ? "a whole number" : "a number"} ${bound}${rule.infinity === true ? " (or Infinity)" : ""}, got ${describeArg(value)}`,
    );
  }
}

/** Throws unless `value` is undefined or one of `allowed`. */
export function optionalOneOf(value: unknown, what: string, allowed: readonly string[]): void {
  if (value === undefined) return;
  if (typeof value !== "string" || !allowed.includes(value)) {
    throw new InvalidArgumentError(
      `${what} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${describeArg(value)}`,
    );
  }
}

/** Throws unless `value` is undefined or an `AbortSignal` (or a look-alike with the same API). */
export function optionalSignal(value: unknown, what: string): void {
  if (value === undefined) return;
  const signal = value as Partial<AbortSignal> | null;
  if (
    typeof signal !== "object" ||
    signal === null ||
    typeof signal.aborted !== "boolean" ||
    typeof signal.addEventListener !== "function" ||
    typeof signal.removeEventListener !== "function"
  ) {
    throw new InvalidArgumentError(`${what} must be an AbortSignal, got ${describeArg(value)}`);
  }
}
