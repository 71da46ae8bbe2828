/**
 * Splitting a long reply into platform-sized messages without breaking its Markdown.
 */
import { InvalidArgumentError } from "../errors.js";

/** The smallest limit `chunkText` accepts. */
export const MIN_CHUNK_LENGTH = 8;

interface Fence {
  /** `` ` `` or `~`. */
  char: string;
  /** How many of them opened it; a closer needs at least as many. */
  length: number;
  /** The opening line as written, e.g. "```ts", used to reopen the block in the next chunk. */
  line: string;
}

interface Cut {
  /** The piece is `rest.slice(0, end)`. */
  end: number;
  /** The next chunk continues at `rest.slice(next)`. */
  next: number;
  /** The code fence still open at `end` (closed in this chunk, reopened in the next). */
  fence: Fence | null;
  /** 4 paragraph break, 3 line break, 2 line break inside a code block, 1 whitespace, 0 hard cut. */
  rank: number;
}

const FENCE_LINE = /^ {0,3}(`{3,}|~{3,})(.*)$/;

/** The fence state after `line`, given the state before it. */
function fenceAfter(state: Fence | null, line: string): Fence | null {
  const match = FENCE_LINE.exec(line.endsWith("\r") ? line.slice(0, -1) : line);
  if (match === null) return state;
  const run = match[1]!;
  const info = match[2]!;
  if (state === null) {
    // CommonMark: the info string of a backtick fence may not contain a backtick.
    if (run[0] === "`" && info.includes("`")) return null;
    return { char: run[0]!, length: run.length, line: line.trimEnd() };
  }
  if (run[0] === state.char && run.length >= state.length && info.trim() === "") return null;
  return state;
}

function closer(fence: Fence | null): string {
  return fence === null ? "" : `\n${fence.char.repeat(fence.length)}`;
}

let segmenter: Intl.Segmenter | undefined;

/**
 * The last grapheme boundary at or before `limit` (a code point boundary when a single
 * grapheme is longer), never inside a surrogate pair. 0 when there is none.
 */
function safeBoundary(text: string, limit: number): number {
  if (limit >= text.length) return text.length;
  segmenter ??= new Intl.Segmenter(undefined, { granularity: "grapheme" });
  let best = 0;
  for (const { index } of segmenter.segment(text.slice(0, limit + 32))) {
    if (index > limit) break;
    best = index;
  }
  if (best > 0) return best;
  // One grapheme longer than the limit: fall back to code points.
  const code = text.charCodeAt(limit - 1);
  return code >= 0xd800 && code <= 0xdbff ? limit - 1 : limit;
}

function isBlank(line: string): boolean {
  return line.trim().length === 0;
}

/** Where to end the next chunk of `rest` (which starts with `start` open), within `budget`. */
function findCut(rest: string, budget: number, start: Fence | null, fences: boolean): Cut {
  const candidates: Cut[] = [];
  let state = start;
  let lineStart = 0;
  /** The line the budget falls in, and the fence state before it. */
  let crossing:
    | { lineStart: number; lineEnd: number; before: Fence | null; delimiter: boolean }
    | undefined;
  while (lineStart < rest.length) {
    const newline = rest.indexOf("\n", lineStart);
    const lineEnd = newline === -1 ? rest.length : newline;
    const line = rest.slice(lineStart, lineEnd);
    const before = state;
    const after = fences ? fenceAfter(before, line) : null;
    const delimiter = (before === null) !== (after === null);
    if (newline === -1 || lineEnd + closer(after).length > budget) {
      crossing = { lineStart, lineEnd, before, delimiter };
      break;
    }
    if (after === null) {
      let end = lineEnd;
      while (end > 0 && /\s/.test(rest[end - 1]!)) end--;
      let next = lineEnd + 1;
      while (next < rest.length && rest[next] === "\n") next++;
      const nextLineEnd = rest.indexOf("\n", lineEnd + 1);
      const paragraph =
        isBlank(line) ||
        isBlank(rest.slice(lineEnd + 1, nextLineEnd === -1 ? rest.length : nextLineEnd));
      candidates.push({ end, next, fence: null, rank: paragraph ? 4 : 3 });
    } else {
      candidates.push({ end: lineEnd, next: lineEnd + 1, fence: after, rank: 2 });
    }
    state = after;
    lineStart = lineEnd + 1;
  }
  crossing ??= { lineStart, lineEnd: rest.length, before: state, delimiter: false };
  // Inside the line the budget falls in: the last whitespace, else a hard cut.
  const { before } = crossing;
  const limit = Math.max(1, budget - closer(before).length);
  if (!crossing.delimiter) {
    for (let q = Math.min(limit, crossing.lineEnd - 1); q > crossing.lineStart; q--) {
      const char = rest[q];
      if (char === " " || char === "\t") {
        const end = before === null ? rest.slice(0, q).trimEnd().length : q;
        if (end > 0) candidates.push({ end, next: q + 1, fence: before, rank: 1 });
        break;
      }
    }
  }
  // Prefer the best kind of break that still fills half the chunk; else the latest break.
  const half = budget / 2;
  for (let rank = 4; rank >= 1; rank--) {
    let best: Cut | undefined;
    for (const c of candidates) if (c.rank === rank && c.end >= half) best = c;
    if (best !== undefined) return best;
  }
  let latest: Cut | undefined;
  for (const c of candidates) {
    if (c.end > 0 && (latest === undefined || c.end > latest.end)) latest = c;
  }
  if (latest !== undefined) return latest;
  // A hard cut. Inside a fence-opening line that cannot fit with its closer (a tiny limit),
  // the line is cut as plain text rather than opened.
  const opener = crossing.delimiter && before === null;
  let cut = safeBoundary(rest, opener ? Math.min(limit, crossing.lineEnd - 1) : limit);
  // Never stall: at worst, one code point.
  if (cut === 0) cut = String.fromCodePoint(rest.codePointAt(0)!).length;
  return { end: cut, next: cut, fence: opener ? null : before, rank: 0 };
}

/**
 * Splits `text` into chunks of at most `maxLength` characters (UTF-16 code units, as
 * `ChannelCapabilities.maxMessageLength` counts) for a platform's message limit.
 *
 * It breaks at a paragraph if it can, else at a line, else at a space, and only then inside
 * a word — never inside a surrogate pair or (when it can help it) a grapheme such as an emoji
 * sequence. It does not split a fenced code block that fits; a block longer than the limit
 * is closed at the end of one chunk and reopened, with its language, at the start of the
 * next, so that every chunk renders as code. Whitespace at the breaks is dropped (inside code
 * blocks only the newline). Text that fits is returned as is; empty text gives no chunks.
 *
 * @throws InvalidArgumentError when `maxLength` is not an integer of at least 8.
 * @example
 * ```ts
 * const chunks = chunkText(reply, plugin.capabilities.maxMessageLength);
 * for (const chunk of chunks) await plugin.sendText(target, chunk);
 * ```
 */
export function chunkText(text: string, maxLength: number): string[] {
  if (typeof text !== "string") throw new InvalidArgumentError("chunkText: text must be a string");
  if (!Number.isInteger(maxLength) || maxLength < MIN_CHUNK_LENGTH) {
    throw new InvalidArgumentError(
      `chunkText: maxLength must be an integer >= ${MIN_CHUNK_LENGTH}, got ${maxLength}`,
    );
  }
  if (text.length <= maxLength) return text.trim().length === 0 ? [] : [text];
  const chunks: string[] = [];
  let rest = text;
  let fence: Fence | null = null;
  while (rest.length > 0) {
    // Reopening and closing a fence must leave room for content; with a tiny limit (or an
    // absurdly long fence line) the rest is split as plain text.
    let fences = true;
    if (fence !== null && fence.line.length + 1 + closer(fence).length > maxLength / 2) {
      fence = null;
      fences = false;
    }
    const reopen = fence === null ? "" : `${fence.line}\n`;
    if (reopen.length + rest.length <= maxLength) {
      if (fence !== null || rest.trim().length > 0) chunks.push(reopen + rest);
      break;
    }
    const cut = findCut(rest, maxLength - reopen.length, fence, fences);
    const piece = rest.slice(0, cut.end);
    if (cut.fence !== null || piece.trim().length > 0) {
      chunks.push(reopen + piece + closer(cut.fence));
    }
    rest = rest.slice(cut.next);
    if (cut.fence === null) rest = rest.replace(/^\s*\n/, "");
    fence = cut.fence;
  }
  return chunks;
}
