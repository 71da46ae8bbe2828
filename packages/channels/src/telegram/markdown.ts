/**
 * Telegram's MarkdownV2: the agent writes ordinary Markdown (`**bold**`, `` `code` ``,
 * fenced blocks, `[links](url)`), Telegram wants its own dialect, in which eighteen
 * punctuation characters must be escaped wherever they are not markup. A single unescaped
 * `.` or `!` makes Telegram refuse the whole message ("can't parse entities"), so everything
 * that is not a well-formed construct is escaped and shown as written.
 */

/** The characters MarkdownV2 reserves outside code, links and pre blocks (and `\` itself). */
const RESERVED = /[_*[\]()~`>#+\-=|{}.!\\]/g;

/**
 * Escapes `text` so that Telegram shows it literally with `parse_mode: "MarkdownV2"`.
 *
 * @example
 * ```ts
 * escapeMarkdownV2("v1.2 (beta)!"); // "v1\\.2 \\(beta\\)\\!"
 * ```
 */
export function escapeMarkdownV2(text: string): string {
  return text.replace(RESERVED, "\\$&");
}

/** Inside `code` and pre blocks only the backtick and the backslash are escaped. */
function escapeCode(text: string): string {
  return text.replace(/[`\\]/g, "\\$&");
}

/** Inside a link's `(...)` only `)` and the backslash are escaped. */
function escapeLinkTarget(url: string): string {
  return url.replace(/[)\\]/g, "\\$&");
}

type Style = "bold" | "italic" | "strike" | "link";

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/;
const BULLET = /^(\s*)[-*+]\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const LINK = /^\[([^\]\n]+)\]\(([^()\s]+)\)/;
const ASCII_PUNCTUATION = /[!-/:-@[-`{-~]/;
const WORD = /[\p{L}\p{N}]/u;

/**
 * Converts the Markdown an agent writes into Telegram MarkdownV2: bold (`**x**`, `__x__`),
 * italic (`*x*`, `_x_`), strikethrough (`~~x~~`), inline code, fenced code blocks (with their
 * language), links, headings (shown bold), bullets (shown as `•`) and block quotes. Anything
 * else — and every marker without its partner — is escaped and shown as written. The text
 * Telegram shows is never longer than the input, so a chunk within 4096 characters stays
 * within Telegram's limit.
 *
 * @example
 * ```ts
 * toTelegramMarkdownV2("**Done.** See `build.log` (line 3)!");
 * // "*Done\\.* See `build.log` \\(line 3\\)\\!"
 * ```
 */
export function toTelegramMarkdownV2(markdown: string): string {
  const out: string[] = [];
  let fence: { marker: string; language: string; lines: string[] } | null = null;
  for (const line of markdown.split("\n")) {
    if (fence !== null) {
      const trimmed = line.trim();
      if (
        trimmed.length >= fence.marker.length &&
        trimmed === fence.marker[0]!.repeat(trimmed.length)
      ) {
        out.push(codeBlock(fence.language, fence.lines));
        fence = null;
      } else {
        fence.lines.push(line);
      }
      continue;
    }
    const open = FENCE.exec(line);
    if (open !== null) {
      const language = /^[\w#+.-]{1,32}$/.test(open[2]!) ? open[2]! : "";
      fence = { marker: open[1]!, language, lines: [] };
      continue;
    }
    out.push(convertLine(line));
  }
  // A block the text never closed still ends where the text ends.
  if (fence !== null) out.push(codeBlock(fence.language, fence.lines));
  return out.join("\n");
}

function codeBlock(language: string, lines: string[]): string {
  const body = lines.join("\n");
  // Telegram refuses an empty entity; an empty block becomes nothing.
  if (body.trim().length === 0) return "";
  return `\`\`\`${language}\n${escapeCode(body)}\n\`\`\``;
}

function convertLine(line: string): string {
  const heading = HEADING.exec(line);
  if (heading !== null) {
    const text = inline(heading[1]!, new Set(["bold"]));
    return text.length === 0 ? "" : `*${text}*`;
  }
  const quote = QUOTE.exec(line);
  if (quote !== null) {
    const text = inline(quote[1]!, new Set());
    return text.length === 0 ? "" : `>${text}`;
  }
  const bullet = BULLET.exec(line);
  if (bullet !== null) return `${bullet[1]}• ${inline(bullet[2]!, new Set())}`;
  return inline(line, new Set());
}

/** Where the `marker` closing a span opened at `from` is, or -1. */
function closingOf(text: string, marker: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === "\\") {
      i++;
      continue;
    }
    if (text[i] === "`") {
      // Code spans are opaque: a marker inside one does not close anything.
      const end = text.indexOf("`", i + 1);
      if (end === -1) continue;
      i = end;
      continue;
    }
    if (!text.startsWith(marker, i)) continue;
    let run = 1;
    while (text[i + run] === marker[0]) run++;
    if (run !== marker.length) {
      i += run - 1; // `**` does not close a `*` span, nor `***` a `**` one
      continue;
    }
    if (i === from || /\s/.test(text[i - 1]!)) continue;
    if (marker[0] === "_" && WORD.test(text[i + marker.length] ?? "")) continue; // snake_case
    return i;
  }
  return -1;
}

function inline(text: string, active: ReadonlySet<Style>): string {
  let out = "";
  let i = 0;
  const withStyle = (style: Style) => new Set<Style>([...active, style]);
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\\" && i + 1 < text.length && ASCII_PUNCTUATION.test(text[i + 1]!)) {
      out += escapeMarkdownV2(text[i + 1]!);
      i += 2;
      continue;
    }
    if (c === "`") {
      let run = 1;
      while (text[i + run] === "`") run++;
      const fence = "`".repeat(run);
      const end = text.indexOf(fence, i + run);
      if (end !== -1) {
        let body = text.slice(i + run, end);
        if (run > 1 && body.startsWith(" ") && body.endsWith(" ") && body.trim().length > 0)
          body = body.slice(1, -1);
        if (body.length > 0) {
          out += `\`${escapeCode(body)}\``;
          i = end + run;
          continue;
        }
      }
      out += escapeMarkdownV2(fence);
      i += run;
      continue;
    }
    if (c === "[" && !active.has("link")) {
      const link = LINK.exec(text.slice(i));
      if (link !== null && /^(https?|tg|mailto):/i.test(link[2]!)) {
        const label = inline(link[1]!, withStyle("link"));
        if (label.length > 0) {
          out += `[${label}](${escapeLinkTarget(link[2]!)})`;
          i += link[0].length;
          continue;
        }
      }
    }
    const span = spanAt(text, i, active);
    // `_a_` right after `_b_` would read as `__` (underline): the second stays literal.
    if (span !== undefined && !(span.open === "_" && endsWithMarker(out, "_"))) {
      const body = inline(text.slice(i + span.marker.length, span.end), withStyle(span.style));
      if (body.length > 0) {
        out += `${span.open}${body}${span.open}`;
        i = span.end + span.marker.length;
        continue;
      }
    }
    out += escapeMarkdownV2(c);
    i++;
  }
  return out;
}

/** True when `out` ends with `marker` as markup (not escaped). */
function endsWithMarker(out: string, marker: string): boolean {
  if (!out.endsWith(marker)) return false;
  let backslashes = 0;
  for (let i = out.length - marker.length - 1; i >= 0 && out[i] === "\\"; i--) backslashes++;
  return backslashes % 2 === 0;
}

const SPANS: ReadonlyArray<{ marker: string; style: Exclude<Style, "link">; open: string }> = [
  { marker: "**", style: "bold", open: "*" },
  { marker: "__", style: "bold", open: "*" },
  { marker: "~~", style: "strike", open: "~" },
  { marker: "*", style: "italic", open: "_" },
  { marker: "_", style: "italic", open: "_" },
];

function spanAt(
  text: string,
  i: number,
  active: ReadonlySet<Style>,
): { marker: string; style: Style; open: string; end: number } | undefined {
  for (const span of SPANS) {
    if (!text.startsWith(span.marker, i)) continue;
    if (active.has(span.style)) return undefined; // Telegram does not nest an entity in itself
    const after = text[i + span.marker.length];
    if (after === undefined || /\s/.test(after)) return undefined;
    if (span.marker.length === 1 && after === span.marker) continue;
    if (span.marker[0] === "_" && WORD.test(text[i - 1] ?? "")) return undefined; // snake_case
    const end = closingOf(text, span.marker, i + span.marker.length);
    if (end === -1) return undefined;
    return { ...span, end };
  }
  return undefined;
}
