/**
 * Keys to file names. Agent ids, session keys, job ids and device ids are arbitrary strings
 * as far as the store is concerned; each becomes one path segment that
 *
 * - can never escape its directory: no `/`, `\`, `..`, leading dot, NUL or control character
 *   survives, and every file name is a single segment;
 * - is injective, even on case-insensitive file systems (macOS, Windows): two different keys
 *   never share a name, because upper-case letters are escaped and escapes use upper-case hex;
 * - stays readable: `agent:main:main` is `agent+main+main`.
 *
 * The rules: `a-z`, `0-9`, `-`, `_` and `.` (not leading or trailing) are kept; `:` becomes
 * `+`; every other character is percent-encoded as its UTF-8 bytes (`%2F` for `/`, `%41`
 * for `A`); a lone UTF-16 surrogate becomes `%uD800`. Windows device names (`con`, `nul`,
 * `com1`, ...) get their first letter escaped. A name that would be longer than
 * {@link MAX_ENCODED_LENGTH} keeps a readable prefix and ends in `~` and the SHA-256 of the
 * full encoding (`~` never appears otherwise, so the two forms cannot collide).
 */
import { createHash } from "node:crypto";

/** Longest encoded name (before the extension); leaves room for temp-file suffixes. */
export const MAX_ENCODED_LENGTH = 160;
const HASHED_PREFIX_LENGTH = 80;

const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$)(\.|$)/;

function isKept(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || // -
    code === 0x5f || // _
    code === 0x2e // .
  );
}

function hexByte(byte: number): string {
  return `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
}

/**
 * The file-name form of `key` (without extension).
 *
 * @example
 * ```ts
 * encodeFileName("agent:main:main"); // "agent+main+main"
 * encodeFileName("../etc/passwd");   // "%2E.%2Fetc%2Fpasswd"
 * ```
 */
export function encodeFileName(key: string): string {
  let out = "";
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (isKept(code)) {
      out += key[i];
    } else if (code === 0x3a) {
      out += "+";
    } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < key.length) {
      const next = key.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        for (const byte of Buffer.from(key.slice(i, i + 2), "utf8")) out += hexByte(byte);
        i++;
      } else {
        out += `%u${code.toString(16).toUpperCase()}`;
      }
    } else if (code >= 0xd800 && code <= 0xdfff) {
      out += `%u${code.toString(16).toUpperCase()}`;
    } else if (code < 0x80) {
      out += hexByte(code);
    } else {
      for (const byte of Buffer.from(key[i]!, "utf8")) out += hexByte(byte);
    }
  }
  // A leading or trailing dot would make a hidden file, `.`/`..`, or a name Windows trims.
  if (out.startsWith(".")) out = `%2E${out.slice(1)}`;
  if (out.endsWith(".")) out = `${out.slice(0, -1)}%2E`;
  if (WINDOWS_DEVICE.test(out)) out = `${hexByte(out.charCodeAt(0))}${out.slice(1)}`;
  if (out.length > MAX_ENCODED_LENGTH) {
    const digest = createHash("sha256").update(out).digest("hex");
    let prefix = out.slice(0, HASHED_PREFIX_LENGTH);
    // Do not cut an escape in half: the prefix is only for people, but keep it tidy.
    const cut = prefix.lastIndexOf("%");
    if (cut !== -1 && cut > prefix.length - 6) prefix = prefix.slice(0, cut);
    out = `${prefix}~${digest}`;
  }
  return out;
}
