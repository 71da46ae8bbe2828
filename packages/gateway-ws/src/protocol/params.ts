/**
 * Small readers for method params: each names the method and the field in its error, so a
 * client learns exactly what was wrong (`INVALID_REQUEST`), and nothing reaches a handler
 * with the wrong type.
 */
import { invalidRequest } from "./errors.js";
import { checkParamFields } from "./method-params.js";

/** A method's params as an object (absent params are `{}`). */
export type ParamsObject = Record<string, unknown>;

/**
 * The params of `method` as an object; anything else is `INVALID_REQUEST`, and so is a field
 * a built-in method does not take (`INVALID_PARAMS` naming it: see {@link checkParamFields}).
 */
export function paramsObject(method: string, params: unknown): ParamsObject {
  if (params === undefined || params === null) return {};
  if (typeof params !== "object" || Array.isArray(params)) {
    throw invalidRequest(`invalid ${method} params: params must be an object`);
  }
  checkParamFields(method, params as ParamsObject);
  return params as ParamsObject;
}

function fail(method: string, field: string, expected: string): never {
  throw invalidRequest(`invalid ${method} params: ${field} must be ${expected}`, {
    code: "INVALID_PARAMS",
    field,
  });
}

/** A required non-empty string. */
export function requireString(
  method: string,
  p: ParamsObject,
  field: string,
  maxLength = 100_000,
): string {
  const value = p[field];
  if (typeof value !== "string" || value.length === 0 || value.length > maxLength) {
    fail(method, field, `a non-empty string of at most ${maxLength} characters`);
  }
  return value;
}

/** An optional string (empty allowed unless `nonEmpty`) of at most `maxLength` characters. */
export function optionalString(
  method: string,
  p: ParamsObject,
  field: string,
  options: { nonEmpty?: boolean; maxLength?: number } = {},
): string | undefined {
  const value = p[field];
  if (value === undefined || value === null) return undefined;
  const max = options.maxLength ?? 100_000;
  if (typeof value !== "string" || value.length > max || (options.nonEmpty && value.length === 0)) {
    fail(
      method,
      field,
      `${options.nonEmpty ? "a non-empty string" : "a string"} of at most ${max} characters`,
    );
  }
  return value;
}

/** An optional integer within bounds. */
export function optionalInt(
  method: string,
  p: ParamsObject,
  field: string,
  bounds: { min?: number; max?: number } = {},
): number | undefined {
  const value = p[field];
  if (value === undefined || value === null) return undefined;
  const min = bounds.min ?? Number.MIN_SAFE_INTEGER;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    fail(method, field, `an integer from ${min} to ${max}`);
  }
  return value;
}

/** An optional boolean. */
export function optionalBool(method: string, p: ParamsObject, field: string): boolean | undefined {
  const value = p[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") fail(method, field, "a boolean");
  return value;
}

/** An optional value from a fixed set. */
export function optionalEnum<T extends string>(
  method: string,
  p: ParamsObject,
  field: string,
  allowed: readonly T[],
): T | undefined {
  const value = p[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || !allowed.includes(value as T)) {
    fail(method, field, `one of ${allowed.join(", ")}`);
  }
  return value as T;
}

/** An optional array of non-empty strings. */
export function optionalStringArray(
  method: string,
  p: ParamsObject,
  field: string,
): string[] | undefined {
  const value = p[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string" || v.length === 0)) {
    fail(method, field, "an array of non-empty strings");
  }
  return value as string[];
}

/** An optional array of values from a fixed set, with `minItems`/`maxItems` bounds. */
export function optionalEnumArray<T extends string>(
  method: string,
  p: ParamsObject,
  field: string,
  allowed: readonly T[],
  bounds: { minItems?: number; maxItems?: number } = {},
): T[] | undefined {
  const value = p[field];
  if (value === undefined || value === null) return undefined;
  const min = bounds.minItems ?? 0;
  const max = bounds.maxItems ?? allowed.length;
  if (
    !Array.isArray(value) ||
    value.length < min ||
    value.length > max ||
    value.some((v) => typeof v !== "string" || !allowed.includes(v as T))
  ) {
    fail(method, field, `an array of ${min} to ${max} of ${allowed.join(", ")}`);
  }
  return value as T[];
}
