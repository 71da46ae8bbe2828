/**
 * The JSON clients send (HTTP request bodies, WebSocket frames) as text: UTF-8 only, and no
 * string holding a lone surrogate. Bytes that are not UTF-8 (a Latin-1 `café`) would otherwise
 * reach the model and the session as U+FFFD, and a `"\ud800"` escape would be stored and then
 * refused by every provider the session's history is sent to.
 */
import { loneSurrogatePath } from "@beamclaw/core";

/** Why a client's JSON text was refused. */
export class JsonTextError extends Error {
  /** `invalid_encoding` (not UTF-8), `invalid_json`, or `invalid_unicode` (a lone surrogate). */
  readonly code: "invalid_encoding" | "invalid_json" | "invalid_unicode";
  constructor(code: JsonTextError["code"], message: string) {
    super(message);
    this.name = "JsonTextError";
    this.code = code;
  }
}

// `fatal`: refuse bytes that are not UTF-8 rather than turn them into U+FFFD. A leading BOM is
// dropped (RFC 8259 lets a parser ignore it).
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `bytes` as UTF-8 text, without a leading BOM. @throws JsonTextError `invalid_encoding`. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new JsonTextError("invalid_encoding", "the body is not valid UTF-8; send it as UTF-8");
  }
}

/**
 * What is wrong with a parsed value, when a string of it holds a lone surrogate. `text`, the
 * JSON it was parsed from, spares the walk of a value whose text has no surrogate escape.
 */
export function loneSurrogateProblem(value: unknown, text?: string): string | undefined {
  const at = loneSurrogatePath(value, text);
  return at === undefined
    ? undefined
    : `${at || "the value"} holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape); send well-formed Unicode`;
}

/**
 * Parses a request body: UTF-8 JSON whose strings are well-formed Unicode.
 *
 * @throws JsonTextError `invalid_encoding`, `invalid_json` or `invalid_unicode`.
 */
export function parseJsonBody(bytes: Uint8Array): unknown {
  const text = decodeUtf8(bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new JsonTextError("invalid_json", "the body is not valid JSON");
  }
  const problem = loneSurrogateProblem(value, text);
  if (problem !== undefined) throw new JsonTextError("invalid_unicode", problem);
  return value;
}
