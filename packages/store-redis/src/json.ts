/**
 * JSON in and out of Redis, with the contract's guarantees: what is written is what is read
 * back, so a value JSON cannot represent faithfully (a function, `NaN`, a `Date`, a `Map`, a
 * cycle, a hole in an array), nested deeper than `MAX_STORED_JSON_DEPTH` or larger than Redis
 * takes in one argument ({@link MAX_VALUE_BYTES}) is refused with an `InvalidArgumentError`
 * before anything is written, and a stored value that does not parse is a `STORE_CORRUPT`
 * error naming its key.
 */
import {
  InvalidArgumentError,
  MAX_STORED_JSON_DEPTH,
  StoreError,
  storedJsonTooDeepMessage,
  unreadableStoredValueError,
} from "@beamclaw/core";

/**
 * The largest JSON text, in bytes of UTF-8, stored as one value: 512 MiB, Redis' default
 * `proto-max-bulk-len`. Redis answers a longer argument with a protocol error and drops the
 * connection, failing every other command in flight on it, and a retry fails the same way; so
 * such a value is refused before it is sent. Only text with characters beyond ASCII can reach
 * it (a JavaScript string holds fewer than 2^29 UTF-16 code units).
 */
export const MAX_VALUE_BYTES = 512 * 1024 * 1024;

/**
 * Serializes `value`, or throws `InvalidArgumentError` naming `what` and the bad path. The
 * check stops at `MAX_STORED_JSON_DEPTH` and `JSON.stringify` only sees a value within it, so
 * no value, however deep, can overflow the call stack.
 */
export function encodeJson(value: unknown, what: string): string {
  let problem: string | InvalidArgumentError | undefined;
  let text: string | undefined;
  try {
    problem = findProblem(value, "", 0, new Set(), what);
    if (problem === undefined) text = JSON.stringify(value);
  } catch (error) {
    // A getter or proxy trap of the value threw: not plain data, and not a Redis failure.
    throw unreadableStoredValueError(what, error);
  }
  if (problem instanceof InvalidArgumentError) throw problem;
  if (problem !== undefined) {
    throw new InvalidArgumentError(`${what} is not JSON: ${problem}`);
  }
  // A UTF-16 code unit takes at most 3 bytes of UTF-8: a shorter text needs no count.
  if (text!.length * 3 > MAX_VALUE_BYTES) {
    const bytes = Buffer.byteLength(text!, "utf8");
    if (bytes > MAX_VALUE_BYTES) {
      throw new InvalidArgumentError(
        `${what} is too large to store: its JSON is ${bytes} bytes of UTF-8, more than Redis takes in one value (${MAX_VALUE_BYTES} bytes, its default proto-max-bulk-len)`,
      );
    }
  }
  return text!;
}

/** Like {@link encodeJson}, and requires a plain object. */
export function encodeJsonObject(value: unknown, what: string): string {
  if (!isPlainObject(value)) {
    throw new InvalidArgumentError(`${what} must be a plain object`);
  }
  return encodeJson(value, what);
}

/** Parses stored JSON; a parse failure is `STORE_CORRUPT` with the Redis key in the message. */
export function decodeJson<T>(text: string, redisKey: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new StoreError("STORE_CORRUPT", `value at Redis key "${redisKey}" is not JSON`, {
      cause: error,
    });
  }
}

/**
 * Parses a stored record (a session, job, run, device, token, approval, transcript entry or
 * queued payload): a value that does not parse, or that is not a JSON object (`null`, a
 * number, an array: something else wrote it), is `STORE_CORRUPT` naming the Redis key.
 */
export function decodeJsonObject<T>(text: string, redisKey: string): T {
  const value = decodeJson<unknown>(text, redisKey);
  if (!isPlainObject(value)) {
    throw new StoreError(
      "STORE_CORRUPT",
      `value at Redis key "${redisKey}" is not a JSON object (found ${value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`})`,
    );
  }
  return value as T;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * The first problem in `value`: a description of what JSON cannot carry, or the
 * `InvalidArgumentError` for a part nested too deep (its message is the same in every store).
 * `depth` is the number of arrays and objects enclosing `value`; `what` prefixes the path of
 * the too-deep part.
 */
function findProblem(
  value: unknown,
  path: string,
  depth: number,
  seen: Set<object>,
  what: string,
): string | InvalidArgumentError | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${value} at ${path || "(root)"}`;
    case "object": {
      if (value === null) return undefined;
      // At the limit, this array or object would be one level too many.
      if (depth >= MAX_STORED_JSON_DEPTH) {
        const at = path === "" || path.startsWith("[") ? path : `.${path}`;
        return new InvalidArgumentError(storedJsonTooDeepMessage(`${what}${at}`));
      }
      if (seen.has(value)) return `a cycle at ${path || "(root)"}`;
      seen.add(value);
      let problem: string | InvalidArgumentError | undefined;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length && problem === undefined; i++) {
          if (!(i in value) || value[i] === undefined) problem = `a hole at ${path}[${i}]`;
          else problem = findProblem(value[i], `${path}[${i}]`, depth + 1, seen, what);
        }
      } else if (isPlainObject(value)) {
        for (const key of Object.keys(value)) {
          const child = value[key];
          // An absent optional field: JSON drops it, and reading back gives the same object.
          if (child === undefined) continue;
          problem = findProblem(child, path === "" ? key : `${path}.${key}`, depth + 1, seen, what);
          if (problem !== undefined) break;
        }
      } else {
        problem = `a ${value.constructor?.name ?? "non-plain"} object at ${path || "(root)"}`;
      }
      seen.delete(value);
      return problem;
    }
    default:
      return `a ${typeof value} at ${path || "(root)"}`;
  }
}
