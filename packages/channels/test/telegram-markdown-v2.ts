/**
 * What Telegram shows for a MarkdownV2 text, for the fake Bot API: the text without its
 * markup, or the error Telegram answers for markup it cannot parse. It follows the rules of
 * https://core.telegram.org/bots/api#markdownv2-style strictly, so a message the channel
 * escapes wrongly is refused here as it would be there.
 */

/** Telegram's `Bad Request: can't parse entities: ...` as an exception. */
export class MarkdownV2Error extends Error {}

const FORMATTING = new Set(["*", "_", "~", "|"]);
const RESERVED = new Set([..."_*[]()~`>#+-=|{}.!"]);

/**
 * Parses `text` the way Telegram does and returns what it would show.
 *
 * @throws MarkdownV2Error with Telegram's description of the problem.
 */
export function parseMarkdownV2(text: string): string {
  let out = "";
  const open: string[] = [];
  let link: { start: number } | null = null;
  let i = 0;
  const fail = (problem: string): never => {
    throw new MarkdownV2Error(`can't parse entities: ${problem}`);
  };
  const atLineStart = () => i === 0 || text[i - 1] === "\n";
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\\") {
      const next = text[i + 1];
      if (next === undefined) fail("Can't find end of escape sequence");
      const code = next!.charCodeAt(0);
      if (code < 1 || code > 126) fail(`Character '${next}' can't be escaped`);
      out += next;
      i += 2;
      continue;
    }
    if (c === "`") {
      const pre = text.startsWith("```", i);
      const marker = pre ? "```" : "`";
      let j = i + marker.length;
      let body = "";
      if (pre) {
        // An optional language up to the first line break.
        const newline = text.indexOf("\n", j);
        const firstLine = newline === -1 ? "" : text.slice(j, newline);
        if (newline !== -1 && /^[\w#+.-]*$/.test(firstLine)) j = newline + 1;
      }
      let closed = false;
      while (j < text.length) {
        if (text[j] === "\\") {
          const next = text[j + 1];
          if (next !== "`" && next !== "\\") fail("Character in code must be ` or \\ to escape");
          body += next;
          j += 2;
          continue;
        }
        if (text.startsWith(marker, j)) {
          closed = true;
          break;
        }
        body += text[j];
        j++;
      }
      if (!closed) fail(`Can't find end of ${pre ? "Pre" : "Code"} entity at byte offset ${i}`);
      if (body.length === 0) fail("Text must be non-empty");
      out += pre && body.endsWith("\n") ? body.slice(0, -1) : body;
      i = j + marker.length;
      continue;
    }
    if (c === "[" && link === null) {
      link = { start: out.length };
      i++;
      continue;
    }
    if (c === "]" && link !== null) {
      if (text[i + 1] !== "(") fail("Can't find end of a URL");
      let j = i + 2;
      while (j < text.length && text[j] !== ")") j += text[j] === "\\" ? 2 : 1;
      if (j >= text.length) fail("Can't find end of a URL");
      if (out.length === link.start) fail("Text must be non-empty");
      link = null;
      i = j + 1;
      continue;
    }
    if (c === ">" && atLineStart()) {
      i++; // a block quote line
      continue;
    }
    if (FORMATTING.has(c)) {
      let marker = c;
      if ((c === "_" || c === "|") && text[i + 1] === c) marker = c + c;
      if (marker === "|")
        fail("Character '|' is reserved and must be escaped with the preceding '\\'");
      const top = open.lastIndexOf(marker);
      if (top === -1) open.push(marker);
      else if (top === open.length - 1) open.pop();
      else fail(`Can't find end of ${marker} entity`);
      i += marker.length;
      continue;
    }
    if (RESERVED.has(c)) {
      fail(`Character '${c}' is reserved and must be escaped with the preceding '\\'`);
    }
    out += c;
    i++;
  }
  if (open.length > 0) fail(`Can't find end of the entity starting with ${open.at(-1)}`);
  if (link !== null) fail("Can't find end of a URL");
  return out;
}
