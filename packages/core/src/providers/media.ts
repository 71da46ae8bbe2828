import type { Transcriber, TranscriptionInput, TranscriptionOptions } from "./types.js";

/**
 * What a file's first bytes say it is: the check that content is what it claims before it is
 * handed to a model (a vendor refuses a request whose image is not the type it names, and a
 * conversation that keeps such a message fails on every later turn too).
 */

/** Image types every provider adapter takes (Anthropic, OpenAI, Gemini alike). */
export const MODEL_IMAGE_TYPES: ReadonlySet<string> = new Set([
  "image/png",
  "image/jpeg",
  "image/gif",
  "image/webp",
]);

function ascii(bytes: Uint8Array, start: number, text: string): boolean {
  if (bytes.length < start + text.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (bytes[start + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The media type of a file by its signature (magic bytes): `image/png`, `image/jpeg`,
 * `image/gif`, `image/webp` or `application/pdf`; `undefined` for anything else (an HTML
 * login page served in place of a file, say). Reads at most the first 12 bytes.
 *
 * @example
 * ```ts
 * detectMediaType(new TextEncoder().encode("%PDF-1.7\n")); // "application/pdf"
 * detectMediaType(new TextEncoder().encode("<!DOCTYPE html>")); // undefined
 * ```
 */
export function detectMediaType(bytes: Uint8Array): string | undefined {
  if (
    bytes.length >= 8 &&
    bytes[0] === 0x89 &&
    ascii(bytes, 1, "PNG") &&
    bytes[4] === 0x0d &&
    bytes[5] === 0x0a &&
    bytes[6] === 0x1a &&
    bytes[7] === 0x0a
  ) {
    return "image/png";
  }
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return "image/jpeg";
  }
  if (ascii(bytes, 0, "GIF87a") || ascii(bytes, 0, "GIF89a")) return "image/gif";
  if (ascii(bytes, 0, "RIFF") && ascii(bytes, 8, "WEBP")) return "image/webp";
  if (ascii(bytes, 0, "%PDF-")) return "application/pdf";
  return undefined;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * {@link detectMediaType} of base64 content (decodes only its first 16 characters);
 * `undefined` also when the text is not base64.
 *
 * @example
 * ```ts
 * detectBase64MediaType(Buffer.from("%PDF-1.4").toString("base64")); // "application/pdf"
 * ```
 */
export function detectBase64MediaType(base64: string): string | undefined {
  const head = base64.slice(0, 16);
  if (!BASE64.test(head)) return undefined;
  return detectMediaType(Buffer.from(head, "base64"));
}

/** Types outside `text/*` whose files are text a model reads as it is. */
const TEXT_TYPES: ReadonlySet<string> = new Set([
  "application/json",
  "application/ld+json",
  "application/x-ndjson",
  "application/xml",
  "application/yaml",
  "application/x-yaml",
  "application/toml",
  "application/javascript",
  "application/typescript",
  "application/x-sh",
  "application/sql",
  "application/csv",
  "application/x-httpd-php",
  "image/svg+xml",
]);

/**
 * The media type without its parameters, lower-cased: `Text/Plain; charset=utf-8` is
 * `text/plain`.
 */
export function baseMediaType(mediaType: string): string {
  return mediaType.split(";")[0]!.trim().toLowerCase();
}

/**
 * Whether files of this media type are text a model can read as it is: `text/*`, JSON,
 * YAML, XML, TOML, CSV, SQL, scripts and code, SVG, `+json` and `+xml` types. Parameters
 * (`; charset=utf-8`) are ignored.
 *
 * @example
 * ```ts
 * isTextMediaType("text/csv; charset=utf-8"); // true
 * isTextMediaType("application/zip"); // false
 * ```
 */
export function isTextMediaType(mediaType: string): boolean {
  const type = baseMediaType(mediaType);
  return (
    type.startsWith("text/") ||
    TEXT_TYPES.has(type) ||
    type.endsWith("+json") ||
    type.endsWith("+xml")
  );
}

/**
 * A text file's content: its bytes as UTF-8 (a byte-order mark dropped), or `undefined` when
 * they are not UTF-8 or hold a NUL byte (a binary file under a text type).
 */
export function decodeTextFile(bytes: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  return text.includes("\u0000") ? undefined : text;
}

/**
 * A text file as a block of a user message, the form both the gateway's `chat.send` and a
 * `ChannelManager` give the model:
 * `<attachment name="notes.md" type="text/markdown">` ... `</attachment>` (quotes, angle
 * brackets and line breaks in the name and type become `_`).
 */
export function textAttachmentBlock(name: string, mediaType: string, text: string): string {
  const quote = (v: string) => v.replace(/[<>"&\r\n]/g, "_");
  return `<attachment name="${quote(name)}" type="${quote(mediaType)}">\n${text}\n</attachment>`;
}

/**
 * Transcribes an audio clip and gives it as a line of a user message, the form both the
 * gateway and a `ChannelManager` give the model: `[audio: <name>, transcribed]` and the words
 * on the next line, or `[audio: <name>, no speech heard]` when the transcript is empty. The
 * name is the clip's `filename`, else its media type. The transcriber's errors are thrown
 * as they are (the caller decides whether a failure refuses the message or only names it).
 *
 * @example
 * ```ts
 * const line = await transcriptLine(transcriber, { data, mediaType: "audio/ogg" });
 * // "[audio: audio/ogg, transcribed]\nBuy oat milk on the way home."
 * ```
 */
export async function transcriptLine(
  transcriber: Transcriber,
  input: TranscriptionInput,
  options?: TranscriptionOptions,
): Promise<string> {
  const result = await transcriber.transcribe(input, options);
  const text = typeof result?.text === "string" ? result.text.trim() : "";
  const what = input.filename ?? baseMediaType(input.mediaType);
  return text === ""
    ? `[audio: ${what}, no speech heard]`
    : `[audio: ${what}, transcribed]\n${text}`;
}
