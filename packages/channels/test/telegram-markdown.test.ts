/**
 * Markdown to Telegram MarkdownV2, checked against a parser as strict as Telegram's
 * (https://core.telegram.org/bots/api#markdownv2-style): what the agent writes is shown with
 * its formatting, and nothing it writes makes Telegram refuse the message.
 */
import { describe, expect, it } from "vitest";
import { escapeMarkdownV2, toTelegramMarkdownV2 } from "../src/index.js";
import { parseMarkdownV2 } from "./telegram-markdown-v2.js";

/** What Telegram shows for the converted text. */
const shown = (markdown: string) => parseMarkdownV2(toTelegramMarkdownV2(markdown));

describe("toTelegramMarkdownV2", () => {
  it("escapes every character MarkdownV2 reserves outside markup", () => {
    const text = "v1.2 (beta)! a_b *c* [d] {e} #f +g -h =i |j| ~k~ `l` >m \\n";
    expect(escapeMarkdownV2(text)).toBe(
      "v1\\.2 \\(beta\\)\\! a\\_b \\*c\\* \\[d\\] \\{e\\} \\#f \\+g \\-h \\=i \\|j\\| \\~k\\~ \\`l\\` \\>m \\\\n",
    );
    expect(parseMarkdownV2(escapeMarkdownV2(text))).toBe(text);
  });

  it("converts bold, italic, strikethrough, inline code and links", () => {
    expect(toTelegramMarkdownV2("**Done.** See `build.log` (line 3)!")).toBe(
      "*Done\\.* See `build.log` \\(line 3\\)\\!",
    );
    expect(toTelegramMarkdownV2("*it* _it_ __bold__ ~~gone~~")).toBe("_it_ _it_ *bold* ~gone~");
    expect(toTelegramMarkdownV2("[the docs](https://example.com/a_b) now")).toBe(
      "[the docs](https://example.com/a_b) now",
    );
    expect(toTelegramMarkdownV2("**a *b* c**")).toBe("*a _b_ c*");
    expect(toTelegramMarkdownV2("*a **b** c*")).toBe("_a *b* c_");
  });

  it("keeps code verbatim: only ` and \\ are escaped in code and fenced blocks, with their language", () => {
    const markdown = '```ts\nconst a = `x` + "\\\\" + (1 * 2)!;\n```\nafter.';
    expect(toTelegramMarkdownV2(markdown)).toBe(
      '```ts\nconst a = \\`x\\` + "\\\\\\\\" + (1 * 2)!;\n```\nafter\\.',
    );
    expect(shown(markdown)).toBe('const a = `x` + "\\\\" + (1 * 2)!;\nafter.');
    expect(shown("`` a ` b ``")).toBe("a ` b");
    // A block the text never closed (the end of a chunk) still ends as a block.
    expect(shown("```\nunclosed {x}")).toBe("unclosed {x}");
  });

  it("shows headings bold, bullets as •, and quotes as block quotes", () => {
    expect(toTelegramMarkdownV2("## Sub-heading!\n- one.\n* two\n> quoted.")).toBe(
      "*Sub\\-heading\\!*\n• one\\.\n• two\n>quoted\\.",
    );
  });

  it("leaves snake_case, lone markers and unsafe links as written", () => {
    for (const text of [
      "snake_case_name and a_b_c",
      "unbalanced **bold and *italic and `code",
      "a * b * c and ** not bold **",
      "[run me](javascript:alert(1))",
      "@beamclaw_test_bot hello",
      "http://example.com/path_with_underscores?q=1&b=2",
    ]) {
      expect(shown(text), text).toBe(text);
    }
  });

  it("never makes Telegram refuse a text, nor shows more than the agent wrote (2000 random texts)", () => {
    // A seeded generator: the same texts every run.
    let seed = 20_260_101;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed / 2_147_483_648;
    };
    const alphabet = [..."ab c_*`~[]()#+-=|{}.!>\\\n"];
    const pieces = ["**", "__", "~~", "```", "```py\n", "[x](https://e.com)", "> ", "- ", "# "];
    for (let n = 0; n < 2000; n++) {
      let text = "";
      const length = 1 + Math.floor(random() * 40);
      while (text.length < length) {
        text +=
          random() < 0.2
            ? pieces[Math.floor(random() * pieces.length)]!
            : alphabet[Math.floor(random() * alphabet.length)]!;
      }
      const converted = toTelegramMarkdownV2(text);
      let visible: string;
      try {
        visible = parseMarkdownV2(converted);
      } catch (error) {
        throw new Error(
          `${JSON.stringify(text)} became ${JSON.stringify(converted)}: ${(error as Error).message}`,
        );
      }
      expect(visible.length, JSON.stringify(text)).toBeLessThanOrEqual(text.length);
    }
  });
});
