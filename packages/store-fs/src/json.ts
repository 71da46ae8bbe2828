/**
 * JSON in and out. Everything stored goes through {@link toJsonText} first, so a value that
 * would not read back deep-equal (a `Date`, `NaN`, a `Map`, a cycle, a `BigInt`) is refused
 * with a typed error before anything is written, instead of being silently changed by
 * `JSON.stringify`.
 */
import { constants } from "node:buffer";
import {
  InvalidArgumentError,
  MAX_STORED_JSON_DEPTH,
  storedJsonTooDeepMessage,
  unreadableStoredValueError,
} from "@beamclaw/core";

/**
 * Serializes `value` as compact JSON after checking it is plain JSON: `null`, booleans,
 * finite numbers, strings, arrays and plain objects (properties that are `undefined` are
 * dropped, as `JSON.stringify` does), nested at most `MAX_STORED_JSON_DEPTH` levels deep.
 * `what` names the value in the error message.
 *
 * @throws InvalidArgumentError for anything else.
 */
export function toJsonText(value: unknown, what: string): string {
  try {
    checkJson(value, what, 0, []);
    return stringifyStored(value, what);
  } catch (error) {
    // A getter or proxy trap of the value threw: not plain data, and not an I/O failure.
    throw unreadableStoredValueError(what, error);
  }
}

/**
 * The longest string JavaScript can hold. Every stored line is built as one string, so this is
 * the most a stored line can take (about 512 MiB of one-byte text).
 */
export const MAX_LINE_LENGTH = constants.MAX_STRING_LENGTH;

function tooLarge(what: string): InvalidArgumentError {
  return new InvalidArgumentError(
    `${what} is too large to store: its line would be longer than the longest string JavaScript can hold (${MAX_LINE_LENGTH} characters)`,
  );
}

/**
 * `JSON.stringify(value)` for a value already known to be plain JSON.
 *
 * @throws InvalidArgumentError when the text would be longer than a string can be.
 */
export function stringifyStored(value: unknown, what: string): string {
  try {
    return JSON.stringify(value);
  } catch (error) {
    if (error instanceof RangeError) throw tooLarge(what);
    throw error;
  }
}

/**
 * Concatenates the parts of one stored line (JSON texts and the punctuation around them), so
 * that a line too long for a string is refused before anything is changed. `reserve` is room
 * the line must leave for what a later line about the same thing adds.
 *
 * @throws InvalidArgumentError when the line (plus `reserve`) would be longer than a string can be.
 */
export function storedLine(what: string, parts: string[], reserve = 0): string {
  let length = reserve;
  for (const part of parts) length += part.length;
  if (length > MAX_LINE_LENGTH) throw tooLarge(what);
  return parts.join("");
}

/** Like {@link toJsonText}, and the value must be a plain object. */
export function toJsonObjectText(value: unknown, what: string): string {
  if (!isPlainObject(value)) {
    throw new InvalidArgumentError(`${what} must be a plain JSON object, got ${typeName(value)}`);
  }
  return toJsonText(value, what);
}

/** A plain object: `{}`, `Object.create(null)` or a parsed JSON object, not an array or class. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function checkJson(value: unknown, path: string, depth: number, ancestors: object[]): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) {
        throw new InvalidArgumentError(`${path} is ${value}, which JSON cannot hold`);
      }
      return;
    case "object":
      break;
    default:
      throw new InvalidArgumentError(`${path} is a ${typeof value}, which JSON cannot hold`);
  }
  if (value === null) return;
  // `depth` counts the arrays and objects enclosing this one: at the limit, it would be one
  // level too many (see MAX_STORED_JSON_DEPTH for how every store counts).
  if (depth >= MAX_STORED_JSON_DEPTH) {
    throw new InvalidArgumentError(storedJsonTooDeepMessage(path));
  }
  if (ancestors.includes(value)) {
    throw new InvalidArgumentError(`${path} refers to itself (a cycle), which JSON cannot hold`);
  }
  ancestors.push(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item === undefined) {
        throw new InvalidArgumentError(`${path}[${i}] is undefined, which JSON cannot hold`);
      }
      checkJson(item, `${path}[${i}]`, depth + 1, ancestors);
    }
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value)) {
      const item = value[key];
      if (item !== undefined) checkJson(item, `${path}.${key}`, depth + 1, ancestors);
    }
  } else {
    throw new InvalidArgumentError(
      `${path} is ${typeName(value)}; only plain objects, arrays and primitives are JSON`,
    );
  }
  ancestors.pop();
}

/** A short description of a value's type for error messages. */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)
      ?.constructor?.name;
    return name !== undefined && name !== "Object" ? `a ${name}` : "an object";
  }
  return `a ${typeof value}`;
}

/** Checks that `value` is a non-empty string; `what` names it in the error. */
export function requireKey(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new InvalidArgumentError(
      `${what} must be a non-empty string, got ${describeValue(value)}`,
    );
  }
  return value;
}

/** Checks that `value` is a finite number; `what` names it in the error. */
export function requireFiniteNumber(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new InvalidArgumentError(`${what} must be a finite number, got ${describeValue(value)}`);
  }
  return value;
}

/** A value as it appears in an error message (short). */
export function describeValue(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  }
  if (typeof value === "number" || typeof value === "boolean" || value === undefined) {
    return String(value);
  }
  return typeName(value);
}

/**
 * A page size: `undefined` gives `fallback`; otherwise an integer from 1 to `max`.
 *
 * @throws InvalidArgumentError for anything else.
 */
export function pageLimit(value: unknown, what: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    throw new InvalidArgumentError(
      `${what} must be an integer from 1 to ${max}, got ${describeValue(value)}`,
    );
  }
  return value;
}

/**
 * Compares two strings by Unicode code point (the order of their UTF-8 bytes), which is what
 * the Store contract means by "sorted"; JavaScript's `<` compares UTF-16 code units and puts
 * U+FF5A after U+1F600.
 */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (U+D800..U+DFFF) encode code points above U+FFFF: move them above U+FFFF's
    // BMP neighbours (U+E000..U+FFFF) before comparing.
    if (x >= 0xd800) x += x < 0xe000 ? 0x2000 : -0x800;
    if (y >= 0xd800) y += y < 0xe000 ? 0x2000 : -0x800;
    return x - y;
  }
  return a.length - b.length;
}

/** Checks that `value` is `undefined` or a plain object (an options bag). */
export function optionsBag<T extends object>(value: T | undefined, what: string): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${what} must be an object, got ${describeValue(value)}`);
  }
  return value;
}
