/**
 * Reading the untyped JSON of vendor events without `any`, and the two conversions every
 * adapter needs for tools: streamed argument text to a value, a tool's output to text.
 */
import { type FinishReason, type JsonObject, type JsonValue, wellFormedJson } from "@beamclaw/core";

/** A JSON object as parsed from the wire. */
export type Wire = Record<string, unknown>;

/** True for a plain (non-array) object. */
export function isWire(value: unknown): value is Wire {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `value[key]` when `value` is an object, else undefined. */
export function field(value: unknown, key: string): unknown {
  return isWire(value) ? value[key] : undefined;
}

/** `value[key]` as a string, else undefined. */
export function stringField(value: unknown, key: string): string | undefined {
  const v = field(value, key);
  return typeof v === "string" ? v : undefined;
}

/**
 * `table[key]` when `key` is one of the table's own keys, else undefined: a vendor's string
 * (an error type, a finish reason) never reaches `Object.prototype` (`"constructor"`).
 */
export function lookup<T>(
  table: Readonly<Record<string, T>>,
  key: string | undefined,
): T | undefined {
  return key !== undefined && Object.hasOwn(table, key) ? table[key] : undefined;
}

/** `value[key]` as a finite number, else undefined. */
export function numberField(value: unknown, key: string): number | undefined {
  const v = field(value, key);
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/**
 * The arguments of a tool call, from the JSON text the model streamed. Empty text is `{}`
 * (a call without arguments). Text that is not valid JSON is returned as the raw string, so
 * nothing is lost: the tool's input validation then tells the model what was wrong, instead
 * of the whole turn failing.
 */
export function parseToolInput(text: string): JsonValue {
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/**
 * True for a finish reason that ends an answer before the model did (`length`,
 * `content-filter`, `refusal`): a tool call still streaming then was cut off.
 */
export function endsEarly(reason: FinishReason): boolean {
  return reason === "length" || reason === "content-filter" || reason === "refusal";
}

/**
 * True when a tool call's streamed argument text is a whole JSON value. Under a finish reason
 * that {@link endsEarly}, a call whose arguments are not (empty, or JSON cut short) was
 * truncated: adapters drop it rather than yield a `tool-call` that would run with partial input.
 */
export function isWholeJson(text: string): boolean {
  if (text.trim() === "") return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * A tool's output as the text vendors expect in a tool result. A lone surrogate in it becomes
 * U+FFFD: written as a `\udXXX` escape inside the text, the vendor would refuse the request.
 */
export function toolOutputText(output: JsonValue): string {
  return typeof output === "string" ? output : wellFormedJson(output);
}

/** A tool call's input as the JSON text of its `arguments` (lone surrogates as U+FFFD). */
export function toolInputText(input: JsonValue): string {
  return typeof input === "string" ? input : wellFormedJson(input);
}

/** The tool-call input as a JSON object; vendors that require an object get `{}` otherwise. */
export function inputObject(input: JsonValue): JsonObject {
  return typeof input === "object" && input !== null && !Array.isArray(input) ? input : {};
}

/**
 * Sets `body[key]` to the object already there with `fields` added, so that two settings
 * written into one vendor object (Anthropic's `output_config`, the Responses API's `text`)
 * do not overwrite each other.
 */
export function mergeIntoField(body: JsonObject, key: string, fields: JsonObject): void {
  const current = body[key];
  body[key] = { ...(isWire(current) ? (current as JsonObject) : {}), ...fields };
}

/** Shallow-merges the caller's provider-specific options over the mapped request body. */
export function withProviderOptions(
  body: JsonObject,
  providerOptions: Record<string, JsonObject> | undefined,
  providerId: string,
): JsonObject {
  const extra = providerOptions?.[providerId];
  return extra === undefined ? body : { ...body, ...extra };
}
