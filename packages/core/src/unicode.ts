/**
 * Well-formed Unicode in text that reaches a session. A string holding a lone surrogate (half of
 * a UTF-16 pair, e.g. from a `"\ud800"` JSON escape) can be stored, but every model API refuses
 * a request that holds one: a session whose history held it would fail every call after it.
 * Text is checked where it enters (a message sent to a session, a request body, a WebSocket
 * frame, a webhook) and refused there, with nothing saved.
 */

/** A `\uD800`–`\uDFFF` escape in JSON text: the only way JSON decoded from UTF-8 can hold a lone surrogate. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * Where in a parsed JSON value (or any plain value of objects, arrays and strings) a string or
 * an object key is not well-formed Unicode — holds a lone surrogate — as a path such as
 * `messages[0].content` (`""` for the value itself), or `undefined` when every string is
 * well-formed.
 *
 * Pass the JSON text the value was parsed from as `jsonText` to skip the walk when the text
 * cannot have produced one (no `\uD8..`–`\uDF..` escape and itself well-formed): the usual case
 * costs one scan of the text.
 *
 * @example
 * ```ts
 * import { loneSurrogatePath } from "@beamclaw/core";
 *
 * const text = '{"messages":[{"content":"\\ud800"}]}';
 * loneSurrogatePath(JSON.parse(text), text); // "messages[0].content"
 * ```
 */
export function loneSurrogatePath(value: unknown, jsonText?: string): string | undefined {
  if (jsonText?.isWellFormed() && !SURROGATE_ESCAPE.test(jsonText)) {
    return undefined;
  }
  // Iterative: a deeply nested value must not overflow the stack.
  const pending: Array<[unknown, string]> = [[value, ""]];
  while (pending.length > 0) {
    const [item, path] = pending.pop()!;
    if (typeof item === "string") {
      if (!item.isWellFormed()) return path;
    } else if (Array.isArray(item)) {
      for (let i = item.length - 1; i >= 0; i--) pending.push([item[i], `${path}[${i}]`]);
    } else if (item !== null && typeof item === "object") {
      const keys = Object.keys(item);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        const at = path === "" ? key : `${path}.${key}`;
        if (!key.isWellFormed()) return at;
        pending.push([(item as Record<string, unknown>)[key], at]);
      }
    }
  }
  return undefined;
}

/**
 * The index of the first lone surrogate in `text`, or -1 when it is well-formed Unicode.
 *
 * @example
 * ```ts
 * import { loneSurrogateIndex } from "@beamclaw/core";
 *
 * loneSurrogateIndex("ok \ud83d\ude00"); // -1 (a whole pair: 😀)
 * loneSurrogateIndex("cut \ud83d"); // 4
 * ```
 */
export function loneSurrogateIndex(text: string): number {
  if (text.isWellFormed()) return -1;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0xd800 || unit > 0xdfff) continue;
    if (unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
}

/**
 * `JSON.stringify` writes a lone surrogate as a `\udXXX` escape (a pair stays raw text). A
 * literal backslash before `ud8..` matches too, which only costs a second pass.
 */
const STRINGIFIED_LONE_SURROGATE = /\\ud[89a-f][0-9a-f]{2}/;

/** Replaces lone surrogates in strings and object keys with U+FFFD. */
function wellFormedReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "string") return value.toWellFormed();
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.some((key) => !key.isWellFormed())) {
      const out: Record<string, unknown> = {};
      for (const key of keys) out[key.toWellFormed()] = (value as Record<string, unknown>)[key];
      return out;
    }
  }
  return value;
}

/**
 * `JSON.stringify(data)` with every lone surrogate in a string or an object key replaced by
 * U+FFFD (`\uFFFD`), so the text is accepted by parsers that refuse a lone surrogate, as the
 * model APIs do (`"\ud800"` makes a whole request fail). Well-formed data costs one scan of the
 * text beyond `JSON.stringify`.
 *
 * @example
 * ```ts
 * import { wellFormedJson } from "@beamclaw/core";
 *
 * wellFormedJson({ text: "cut \ud83d" }); // '{"text":"cut �"}'
 * ```
 */
export function wellFormedJson(data: unknown): string {
  const text = JSON.stringify(data);
  if (text === undefined || !STRINGIFIED_LONE_SURROGATE.test(text)) return text;
  return JSON.stringify(data, wellFormedReplacer);
}
