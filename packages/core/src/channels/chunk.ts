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
  /**
   * The inline entity cut in two (one longer than a chunk): its markup, closed at the end of
   * this piece and reopened at the start of the next.
   */
  markup?: string;
}

/** An inline Markdown entity of a line: `` `code` ``, `**bold**`, `_it_`, `~~s~~`, `[a](b)`. */
interface Span {
  start: number;
  end: number;
  /** The delimiter that opens and closes it, when cutting it can keep it balanced (not links). */
  markup?: string;
}

const EMPHASIS = ["**", "__", "~~", "*", "_"];
const LINK = /^!?\[[^[\]\n]*\]\([^()\s]*\)/;

function isSpace(char: string | undefined): boolean {
  return char !== undefined && /\s/.test(char);
}

function isPunctuation(char: string | undefined): boolean {
  return char !== undefined && /[\p{P}\p{S}]/u.test(char);
}

/** Whitespace or punctuation (or nothing): where an emphasis delimiter may open or close. */
function isEdge(char: string | undefined): boolean {
  return char === undefined || isSpace(char) || isPunctuation(char);
}

/**
 * The top-level inline entities of `line`, left to right, found about as CommonMark finds
 * them (flanking delimiter runs; `_` not inside a word, so `snake_case_name` is no entity).
 */
function inlineSpans(line: string): Span[] {
  const spans: Span[] = [];
  let i = 0;
  while (i < line.length) {
    const char = line[i]!;
    if (char === "`") {
      let n = 1;
      while (line[i + n] === "`") n++;
      const run = "`".repeat(n);
      let j = line.indexOf(run, i + n);
      // A closer is a run of exactly as many backticks.
      while (j !== -1 && (line[j + n] === "`" || line[j - 1] === "`")) {
        let k = j;
        while (line[k] === "`") k++;
        j = line.indexOf(run, k);
      }
      if (j !== -1) {
        spans.push({ start: i, end: j + n, markup: run });
        i = j + n;
      } else i += n;
      continue;
    }
    if (char === "[" || (char === "!" && line[i + 1] === "[")) {
      const link = LINK.exec(line.slice(i));
      if (link !== null) {
        spans.push({ start: i, end: i + link[0].length });
        i += link[0].length;
        continue;
      }
    }
    if (char === "*" || char === "_" || char === "~") {
      let n = 1;
      while (line[i + n] === char) n++;
      const delimiter = EMPHASIS.find((d) => d === char.repeat(n));
      // CommonMark's flanking rules; `_` also may not open or close inside a word.
      const intraword = char !== "_";
      const opens =
        !isSpace(line[i + n]) &&
        (isEdge(line[i - 1]) || (intraword && !isPunctuation(line[i + n])));
      if (delimiter !== undefined && opens) {
        // The closer: a run of exactly as many, after text.
        const closes = (j: number) =>
          line[j - 1] !== char &&
          line[j + n] !== char &&
          !isSpace(line[j - 1]) &&
          (isEdge(line[j + n]) || (intraword && !isPunctuation(line[j - 1])));
        let j = line.indexOf(delimiter, i + n + 1);
        while (j !== -1 && !closes(j)) j = line.indexOf(delimiter, j + 1);
        if (j !== -1) {
          spans.push({ start: i, end: j + n, markup: delimiter });
          i = j + n;
          continue;
        }
      }
      i += n;
      continue;
    }
    i++;
  }
  return spans;
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
  // Inside the line the budget falls in: the last whitespace outside inline entities (an
  // entity longer than a chunk is cut inside, its markup kept balanced), else a hard cut.
  const { before } = crossing;
  const limit = Math.max(1, budget - closer(before).length);
  const spans =
    before === null && !crossing.delimiter
      ? inlineSpans(rest.slice(crossing.lineStart, crossing.lineEnd)).map((span) => ({
          ...span,
          start: span.start + crossing.lineStart,
          end: span.end + crossing.lineStart,
        }))
      : [];
  const within = (q: number) => spans.find((span) => span.start < q && q < span.end);
  /** The entity a cut at `limit` falls in, when it cannot fit in a chunk of its own. */
  const oversized = (() => {
    const span = within(limit);
    return span !== undefined && span.end - span.start > limit ? span : undefined;
  })();
  /** The last entity with a space to break at, when no space outside one is left. */
  let spaced: Span | undefined;
  if (!crossing.delimiter) {
    for (let q = Math.min(limit, crossing.lineEnd - 1); q > crossing.lineStart; q--) {
      const char = rest[q];
      if (char !== " " && char !== "\t") continue;
      const span = within(q);
      if (span === undefined) {
        const end = before === null ? rest.slice(0, q).trimEnd().length : q;
        if (end > 0) candidates.push({ end, next: q + 1, fence: before, rank: 1 });
        break;
      }
      spaced ??= span;
    }
  }
  // No other break: through the entity (balanced) rather than through a word; but an entity
  // that fits after nothing but whitespace starts the next chunk instead.
  const entityToCut = oversized ?? spaced;
  if (entityToCut !== undefined && !candidates.some((c) => c.end > 0)) {
    const start = entityToCut.start;
    if (oversized === undefined && start > 0 && rest.slice(0, start).trim() === "") {
      return { end: 0, next: start, fence: null, rank: 0 };
    }
    const cut = cutInside(rest, entityToCut, limit);
    if (cut !== undefined) return cut;
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
  // A hard cut: before an entity that fits in a chunk, rather than through it. Inside a
  // fence-opening line that cannot fit with its closer (a tiny limit), the line is cut as
  // plain text rather than opened.
  const entity = within(limit);
  if (entity !== undefined && oversized === undefined && entity.start > 0) {
    return { end: entity.start, next: entity.start, fence: null, rank: 0 };
  }
  const opener = crossing.delimiter && before === null;
  let cut = safeBoundary(rest, opener ? Math.min(limit, crossing.lineEnd - 1) : limit);
  // Never stall: at worst, one code point.
  if (cut === 0) cut = String.fromCodePoint(rest.codePointAt(0)!).length;
  return { end: cut, next: cut, fence: opener ? null : before, rank: 0 };
}

/**
 * A cut inside `span` (an entity longer than a chunk) at its last whitespace that leaves room
 * for its closing markup, else through a word; `undefined` when no cut leaves text on both
 * sides. A link's markup cannot be split: it is cut as plain text.
 */
function cutInside(rest: string, span: Span, limit: number): Cut | undefined {
  const markup = span.markup ?? "";
  const first = span.start + markup.length; // the entity's text
  const last = span.end - markup.length;
  const room = limit - markup.length;
  for (let q = Math.min(room, last - 1); q > first; q--) {
    if (rest[q] !== " " && rest[q] !== "\t") continue;
    const end = rest.slice(0, q).trimEnd().length;
    let next = q + 1;
    while (next < last && (rest[next] === " " || rest[next] === "\t")) next++;
    if (end > first && next < last) return { end, next, fence: null, rank: 1, markup };
  }
  const cut = safeBoundary(rest, room);
  if (cut > first && cut < last && !isSpace(rest[cut]) && !isSpace(rest[cut - 1])) {
    return { end: cut, next: cut, fence: null, rank: 0, markup };
  }
  return undefined;
}

/**
 * Splits `text` into chunks of at most `maxLength` characters (UTF-16 code units, as
 * `ChannelCapabilities.maxMessageLength` counts) for a platform's message limit.
 *
 * It breaks at a paragraph if it can, else at a line, else at a space, and only then inside
 * a word — never inside a surrogate pair or (when it can help it) a grapheme such as an emoji
 * sequence. A space inside an inline entity (`` `code` ``, `**bold**`, `_italic_`,
 * `~~struck~~`, `[a link](url)`) is not a break when the entity fits in a chunk; one longer
 * than a chunk is cut inside, its markup closed at the end of one chunk and reopened at the
 * start of the next (a link's, which cannot be, is cut as plain text). It does not split a
 * fenced code block that fits; a block longer than the limit
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
    if (cut.next <= 0 && cut.markup === undefined) {
      // Never stall: at worst, one code point.
      cut.end = cut.next = String.fromCodePoint(rest.codePointAt(0)!).length;
    }
    const piece = rest.slice(0, cut.end) + (cut.markup ?? "");
    if (cut.fence !== null || piece.trim().length > 0) {
      chunks.push(reopen + piece + closer(cut.fence));
    }
    rest = (cut.markup ?? "") + rest.slice(cut.next);
    if (cut.fence === null) rest = rest.replace(/^\s*\n/, "");
    fence = cut.fence;
  }
  return chunks;
}
