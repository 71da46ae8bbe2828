/**
 * Reading JSON that is still being written: the value a prefix of a JSON text stands for so
 * far, for showing a structured answer while it streams (`RunHandle.partialOutputs`).
 */
import type { JsonValue } from "../providers/types.js";

/** Nothing (yet) where a value should be. */
const MISSING: unique symbol = Symbol("missing");
/** The text is not the beginning of a JSON text. */
class NotJson extends Error {}

const NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const LITERALS: Record<string, JsonValue> = { t: true, f: false, n: null };
const LITERAL_TEXT: Record<string, string> = { t: "true", f: "false", n: "null" };
const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

/**
 * The value that `text`, the beginning of a JSON text, stands for so far: what is complete,
 * with open strings, arrays and objects closed where the text stops. A key whose value has not
 * begun is left out, a number is taken once it reads as one (`-` and `1.` are not yet), and
 * `t`, `f`, `n` are already `true`, `false`, `null`. A Markdown code fence before the JSON is
 * skipped. `undefined` when nothing has begun, or when `text` cannot be the beginning of a
 * JSON text.
 *
 * @example
 * ```ts
 * parsePartialJson('{"city":"Par'); // { city: "Par" }
 * parsePartialJson('{"tags":["a","b'); // { tags: ["a", "b"] }
 * parsePartialJson('{"n":1,"ok'); // { n: 1 }
 * ```
 */
export function parsePartialJson(text: string): JsonValue | undefined {
  let i = skipFence(text);
  const end = text.length;

  const skipSpace = (): void => {
    while (i < end) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      i++;
    }
  };

  /** A string from its opening quote; `done` says whether its closing quote came. */
  const readString = (): { value: string; done: boolean } => {
    i++; // the opening quote
    let value = "";
    while (i < end) {
      const c = text[i]!;
      if (c === '"') {
        i++;
        return { value, done: true };
      }
      if (c === "\\") {
        if (i + 1 >= end) break; // an escape cut in half is left out
        const e = text[i + 1]!;
        if (e === "u") {
          if (i + 6 > end) break;
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new NotJson();
          value += String.fromCharCode(Number.parseInt(hex, 16));
          i += 6;
          continue;
        }
        const decoded = ESCAPES[e];
        if (decoded === undefined) throw new NotJson();
        value += decoded;
        i += 2;
        continue;
      }
      if (c.charCodeAt(0) < 0x20) throw new NotJson();
      value += c;
      i++;
    }
    i = end;
    return { value, done: false };
  };

  const readValue = (): JsonValue | typeof MISSING => {
    skipSpace();
    if (i >= end) return MISSING;
    const c = text[i]!;
    if (c === "{") return readObject();
    if (c === "[") return readArray();
    if (c === '"') return readString().value;
    if (c === "-" || (c >= "0" && c <= "9")) {
      const start = i;
      while (i < end && /[-+0-9.eE]/.test(text[i]!)) i++;
      const number = text.slice(start, i);
      if (NUMBER.test(number)) return Number(number);
      if (i >= end) return MISSING; // still being written
      throw new NotJson();
    }
    const literal = LITERAL_TEXT[c];
    if (literal !== undefined) {
      const written = text.slice(i, i + literal.length);
      if (!literal.startsWith(written)) throw new NotJson();
      i += written.length;
      return LITERALS[c]!;
    }
    throw new NotJson();
  };

  /**
   * Past the space, and a comma, before a container's next item: whether one follows (false
   * at the container's `close`, which is passed, or at the end of the text).
   */
  const nextItem = (close: string): boolean => {
    skipSpace();
    if (i >= end) return false;
    if (text[i] === close) {
      i++;
      return false;
    }
    if (text[i] === ",") {
      i++;
      skipSpace();
      if (i >= end) return false;
    }
    return true;
  };

  const readObject = (): JsonValue => {
    i++; // {
    const out: Record<string, JsonValue> = {};
    for (;;) {
      if (!nextItem("}")) return out;
      if (text[i] !== '"') throw new NotJson();
      const key = readString();
      if (!key.done) return out;
      skipSpace();
      if (i >= end) return out;
      if (text[i] !== ":") throw new NotJson();
      i++;
      const value = readValue();
      if (value === MISSING) return out;
      // An own property even for `__proto__`, as JSON.parse makes it.
      Object.defineProperty(out, key.value, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      if (i >= end) return out;
    }
  };

  const readArray = (): JsonValue => {
    i++; // [
    const out: JsonValue[] = [];
    for (;;) {
      if (!nextItem("]")) return out;
      const value = readValue();
      if (value === MISSING) return out;
      out.push(value);
      if (i >= end) return out;
    }
  };

  try {
    const value = readValue();
    return value === MISSING ? undefined : value;
  } catch (error) {
    if (error instanceof NotJson) return undefined;
    throw error;
  }
}

/** Where the JSON starts: after leading space and an opening Markdown code fence line. */
function skipFence(text: string): number {
  const fence = /^\s*```[a-zA-Z0-9_-]*[ \t]*(?:\r?\n|$)/.exec(text);
  return fence === null ? 0 : fence[0].length;
}

/** `T` with every property, at every depth, optional: a structured answer while it streams. */
export type DeepPartial<T> = T extends readonly (infer U)[]
  ? DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;
