/**
 * The size cap on a tool's result as it goes into the transcript and back to the model. One
 * `cat` of a log file or an unbounded `find /` would otherwise put megabytes into every later
 * request of the session (and into the store), until the provider refuses the request.
 */
import { InvalidArgumentError } from "../errors.js";
import type { JsonValue } from "../providers/types.js";

/** The default cap on a tool result: 64 KiB of UTF-8, as serialized into the transcript. */
export const DEFAULT_TOOL_MAX_OUTPUT_BYTES = 64 * 1024;

/**
 * What a tool that keeps its own result within the runner's default cap (the exec and
 * web_fetch tools) allows its long text fields together: that cap, less 4 KiB for the rest
 * of the result.
 */
export const DEFAULT_TOOL_TEXT_BYTES = DEFAULT_TOOL_MAX_OUTPUT_BYTES - 4 * 1024;

/**
 * Room kept for the marker, so that the head plus the marker stay within the cap. The longest
 * marker (both counts at 16 digits) is about 150 bytes.
 */
const MARKER_ROOM = 256;

/** The smallest cap accepted: the marker must fit, with some of the output before it. */
export const MIN_TOOL_MAX_OUTPUT_BYTES = 1024;

/**
 * Checks a `maxOutputBytes` setting: an integer of at least {@link MIN_TOOL_MAX_OUTPUT_BYTES},
 * or `Infinity` for no cap.
 *
 * @throws InvalidArgumentError otherwise.
 */
export function checkMaxOutputBytes(value: unknown): number {
  if (
    value === Number.POSITIVE_INFINITY ||
    (typeof value === "number" && Number.isSafeInteger(value) && value >= MIN_TOOL_MAX_OUTPUT_BYTES)
  ) {
    return value;
  }
  throw new InvalidArgumentError(
    `maxOutputBytes must be an integer of at least ${MIN_TOOL_MAX_OUTPUT_BYTES} (or Infinity for no cap), got ${String(value)}`,
  );
}

/**
 * The marker that ends a truncated result. It says how much was dropped, so that the model
 * can ask for less (a narrower command, a range) rather than believe it saw everything.
 */
export function truncationMarker(droppedBytes: number, totalBytes: number): string {
  return `\n[tool output truncated: ${droppedBytes} of ${totalBytes} bytes dropped]`;
}

/**
 * The longest prefix of `text` that is at most `maxBytes` bytes of UTF-8, never splitting a
 * character (nor a surrogate pair).
 */
export function utf8Prefix(text: string, maxBytes: number): string {
  if (maxBytes <= 0) return "";
  // Each UTF-16 unit is 1 to 3 bytes (a surrogate pair, two units, is 4): `maxBytes` units
  // always hold at least `maxBytes` bytes, so only that much needs encoding.
  let head = text.length > maxBytes ? text.slice(0, maxBytes) : text;
  const last = head.charCodeAt(head.length - 1);
  // Never end on the first half of a surrogate pair.
  if (last >= 0xd800 && last <= 0xdbff) head = head.slice(0, -1);
  const bytes = Buffer.from(head, "utf8");
  if (bytes.length <= maxBytes) return head;
  let end = maxBytes;
  // `bytes[end]` is the first byte left out: while it continues a character (10xxxxxx), that
  // character started before the cut, so cut before it.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.toString("utf8", 0, end);
}

/**
 * Caps a tool result at `maxBytes` bytes of UTF-8 as it will be serialized: a string is
 * measured as its text, anything else as its JSON. A result within the cap is returned as it
 * is. A longer one becomes a string: its head (the text, or the start of the JSON text),
 * cut at a character boundary, followed by {@link truncationMarker}, all within `maxBytes`.
 * The result is always valid JSON and valid UTF-8.
 *
 * @example
 * ```ts
 * capToolOutput("x".repeat(100_000), 65_536);
 * // "xxx…x\n[tool output truncated: 34720 of 100000 bytes dropped]"
 * ```
 */
export function capToolOutput(output: JsonValue, maxBytes: number): JsonValue {
  if (maxBytes === Number.POSITIVE_INFINITY) return output;
  const text = typeof output === "string" ? output : JSON.stringify(output);
  // Cheap bounds first: a string of n UTF-16 units is n to 3n bytes.
  if (text.length * 3 <= maxBytes) return output;
  const total = Buffer.byteLength(text, "utf8");
  if (total <= maxBytes) return output;
  const head = utf8Prefix(text, Math.max(0, maxBytes - MARKER_ROOM));
  const dropped = total - Buffer.byteLength(head, "utf8");
  return head + truncationMarker(dropped, total);
}

/** Bytes of `text` as the content of a JSON string: UTF-8, escapes counted, no quotes. */
export function jsonTextBytes(text: string): number {
  return Buffer.byteLength(JSON.stringify(text), "utf8") - 2;
}

/**
 * The longest start (`keep: "head"`) or end (`"tail"`) of `text` that is at most `maxBytes`
 * bytes as the content of a JSON string ({@link jsonTextBytes}), never splitting a surrogate
 * pair. For a tool that must keep its result within the runner's cap itself, so that the cap
 * never cuts the result's JSON text.
 */
export function fitJsonText(text: string, maxBytes: number, keep: "head" | "tail"): string {
  if (jsonTextBytes(text) <= maxBytes) return text;
  const part = (length: number) => (keep === "head" ? text.slice(0, length) : text.slice(-length));
  // Every character takes at least a byte, so the part is at most `maxBytes` long; a longer
  // part takes more bytes, so the longest that fits is found by bisection.
  let fits = 0;
  let over = Math.min(text.length, Math.max(0, maxBytes) + 1);
  while (over - fits > 1) {
    const middle = Math.floor((fits + over) / 2);
    if (jsonTextBytes(part(middle)) <= maxBytes) fits = middle;
    else over = middle;
  }
  if (fits === 0) return "";
  const kept = part(fits);
  // A part that ends (head) or starts (tail) with half of a pair drops that half.
  const edge = kept.charCodeAt(keep === "head" ? kept.length - 1 : 0);
  if (keep === "head" && edge >= 0xd800 && edge <= 0xdbff) return kept.slice(0, -1);
  if (keep === "tail" && edge >= 0xdc00 && edge <= 0xdfff) return kept.slice(1);
  return kept;
}
