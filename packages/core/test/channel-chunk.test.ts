/**
 * `chunkText`: replies split at the platform limit without breaking Markdown code blocks,
 * preferring paragraph, line and word boundaries, never splitting a surrogate pair.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { chunkText, InvalidArgumentError } from "../src/index.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/** Lines that open or close a fence, counted the simple way (no nested or mixed fences). */
function fenceLines(text: string): number {
  return text.split("\n").filter((line) => FENCE.test(line)).length;
}

function hasLoneSurrogate(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return true;
      i++;
    } else if (code >= 0xdc00 && code <= 0xdfff) return true;
  }
  return false;
}

/** The words of a text, in order (whitespace does not count). */
function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w.length > 0);
}

describe("chunkText", () => {
  it("returns text that fits unchanged, and no chunk for empty or blank text", () => {
    expect(chunkText("hello", 10)).toEqual(["hello"]);
    expect(chunkText("x".repeat(10), 10)).toEqual(["x".repeat(10)]);
    expect(chunkText("", 10)).toEqual([]);
    expect(chunkText("  \n\n ", 10)).toEqual([]);
  });

  it("refuses a limit below 8 or not an integer with InvalidArgumentError", () => {
    expect(() => chunkText("hello", 7)).toThrow(InvalidArgumentError);
    expect(() => chunkText("hello", 10.5)).toThrow(InvalidArgumentError);
    expect(() => chunkText(42 as unknown as string, 10)).toThrow(InvalidArgumentError);
  });

  it("breaks at a paragraph before a line, and at a line before a word", () => {
    const paragraph = "alpha beta gamma delta epsilon"; // 30
    const text = `${paragraph}\n\n${paragraph}\nzeta eta theta`;
    expect(chunkText(text, 50)).toEqual([paragraph, `${paragraph}\nzeta eta theta`]);
    const lines = `${paragraph}\n${paragraph} iota`;
    expect(chunkText(lines, 40)).toEqual([paragraph, `${paragraph} iota`]);
  });

  it("breaks between words when a line is longer than the limit, and drops the space at the break", () => {
    const chunks = chunkText("one two three four five six seven eight nine ten", 20);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(20);
      expect(chunk).toBe(chunk.trim());
    }
    expect(chunks.join(" ")).toBe("one two three four five six seven eight nine ten");
  });

  it("cuts a word longer than the limit, never inside a surrogate pair or an emoji sequence", () => {
    const emoji = "👨‍👩‍👧‍👦"; // one grapheme, 11 code units
    const text = `${"a".repeat(15)}${emoji}${"😀".repeat(9)}`;
    const chunks = chunkText(text, 16);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(16);
      expect(hasLoneSurrogate(chunk)).toBe(false);
    }
    expect(chunks.join("")).toBe(text);
    expect(chunks.some((c) => c.includes(emoji))).toBe(true);
  });

  it("keeps a code block that fits in one chunk, moving the break before it", () => {
    const code = "```ts\nconst a = 1;\nconst b = 2;\n```";
    const text = `${"intro ".repeat(8).trim()}\n\n${code}\n\nafter the code`;
    const chunks = chunkText(text, 60);
    const holding = chunks.filter((c) => c.includes("const a"));
    expect(holding).toHaveLength(1);
    expect(holding[0]).toContain(code);
  });

  it("closes a code block longer than the limit at the end of a chunk and reopens it, with its language, in the next", () => {
    const body = Array.from({ length: 40 }, (_, i) => `let v${i} = ${i};`).join("\n");
    const text = `Here is the code:\n\n\`\`\`python\n${body}\n\`\`\`\n\nThat is all.`;
    const chunks = chunkText(text, 120);
    expect(chunks.length).toBeGreaterThan(3);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(120);
      expect(fenceLines(chunk) % 2).toBe(0);
    }
    const inside = chunks.filter((c) => c.includes("let v"));
    for (const chunk of inside) {
      expect(chunk.split("\n").find((l) => FENCE.test(l))).toBe("```python");
    }
    for (const chunk of inside.slice(0, -1)) expect(chunk.endsWith("\n```")).toBe(true);
    expect(inside.at(-1)).toContain("```\n\nThat is all.");
    // Every line of code arrives once, in order.
    const lines = chunks.flatMap((c) => c.split("\n")).filter((l) => l.startsWith("let v"));
    expect(lines).toEqual(body.split("\n"));
  });

  it("honours tilde fences and longer backtick fences that contain shorter ones", () => {
    const inner = "```\nnot a fence end\n```";
    const text = `~~~~md\n${inner}\n${"line of text\n".repeat(12)}~~~~`;
    const chunks = chunkText(text, 80);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(80);
      const lines = chunk.split("\n");
      expect(lines[0]).toBe("~~~~md");
      expect(lines.at(-1)).toBe("~~~~");
    }
  });

  it("leaves an unclosed code block at the end unclosed, as it was written", () => {
    const text = `${"word ".repeat(10)}\n\n\`\`\`\n${"x = 1\n".repeat(20)}`;
    const chunks = chunkText(text, 60);
    const last = chunks.at(-1)!;
    expect(last.startsWith("```")).toBe(true);
    expect(last.endsWith("```")).toBe(false);
    for (const chunk of chunks) expect(chunk.length).toBeLessThanOrEqual(60);
  });

  it("property: every chunk fits, no surrogate pair is split, and every word arrives once, in order", () => {
    const letters = "abcdefghijklmnopqrstuvwxyz0123456789.,!?-_=()[]{}<>#*".split("");
    const word = fc.oneof(
      {
        weight: 8,
        arbitrary: fc.string({ minLength: 1, maxLength: 12, unit: fc.constantFrom(...letters) }),
      },
      { weight: 2, arbitrary: fc.constantFrom("😀", "👨‍👩‍👧", "ünï", "\n", "\n\n", "  ") },
      // Fences on lines of their own, as models write them.
      { weight: 1, arbitrary: fc.constantFrom("\n```\n", "\n~~~\n", "\n```js\n", "\n````\n") },
    );
    fc.assert(
      fc.property(
        fc.array(word, { maxLength: 150 }),
        fc.integer({ min: 24, max: 120 }),
        (parts, max) => {
          const text = parts.join(" ");
          const chunks = chunkText(text, max);
          for (const chunk of chunks) {
            expect(chunk.length).toBeLessThanOrEqual(max);
            expect(hasLoneSurrogate(chunk)).toBe(false);
          }
          // Lines added at breaks are fence lines, markup added is an entity's delimiters
          // (closed and reopened): leave both out on both sides.
          const content = (t: string) =>
            words(
              t
                .split("\n")
                .filter((line) => !/^ {0,3}(`{3,}|~{3,})\S*\s*$/.test(line))
                .join("\n")
                .replace(/[*_~]/g, ""),
            );
          expect(content(chunks.join("\n"))).toEqual(content(text));
        },
      ),
      { numRuns: 400 },
    );
  });

  it("does not break inside an inline entity that fits, moving the break before it", () => {
    const bold = "**bold text that should stay whole**";
    expect(chunkText(`some words here and ${bold} after`, 40)).toEqual([
      "some words here and",
      bold,
      "after",
    ]);
    const code = "`inline code span here`";
    expect(chunkText(`lead ${code} and more words follow here`, 30)).toEqual([
      `lead ${code}`,
      "and more words follow here",
    ]);
    const link = "[the docs page](https://example.com/d)";
    expect(chunkText(`please see ${link} now`, 40)).toEqual(["please see", link, "now"]);
    const italic = "_slanted words_";
    expect(chunkText(`one two three ${italic} four`, 24)).toEqual([
      "one two three",
      `${italic} four`,
    ]);
    // No space outside it: cut the entity (balanced) rather than a word, else before it.
    expect(chunkText("xx**bold fits here** tail", 18)).toEqual([
      "xx**bold fits**",
      "**here** tail",
    ]);
    expect(chunkText("xxxx**boldfitshere**", 18)).toEqual(["xxxx", "**boldfitshere**"]);
    // Only whitespace before it: the entity starts the next chunk whole.
    expect(chunkText("\n **a a aaaaaa aaa aa a**", 24)).toEqual(["**a a aaaaaa aaa aa a**"]);
    // An underscore inside a word is no entity.
    expect(chunkText("snake_case_name and other_name plus", 20)).toEqual([
      "snake_case_name and",
      "other_name plus",
    ]);
  });

  it("cuts an entity longer than the limit inside, closing its markup in one chunk and reopening it in the next", () => {
    const long = `**${"word ".repeat(20).trim()}**`;
    const chunks = chunkText(`${long} tail`, 30);
    expect(chunks.at(-1)).toBe("tail");
    for (const chunk of chunks.slice(0, -1)) {
      expect(chunk.length).toBeLessThanOrEqual(30);
      expect(chunk).toMatch(/^\*\*word( word)*\*\*$/);
    }
    expect(chunks.slice(0, -1).join(" ").replaceAll("**", "")).toBe("word ".repeat(20).trim());
    const code = `\`${"x".repeat(50)}\``;
    const pieces = chunkText(`${code} tail`, 20);
    for (const piece of pieces.slice(0, -1)) expect(piece).toMatch(/^`x+`$/);
    expect(pieces.join("").replaceAll("`", "")).toBe(`${"x".repeat(50)}tail`);
  });

  it("property: an inline entity that fits in a chunk is never split, and a longer one is cut with balanced markup", () => {
    const word = fc.string({
      minLength: 1,
      maxLength: 8,
      unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789".split("")),
    });
    const phrase = fc.array(word, { minLength: 1, maxLength: 6 }).map((ws) => ws.join(" "));
    const entity = fc.oneof(
      phrase.map((p) => `**${p}**`),
      phrase.map((p) => `\`${p}\``),
      phrase.map((p) => `_${p}_`),
      phrase.map((p) => `~~${p}~~`),
      phrase.map((p) => `[${p}](https://example.com/${p.length})`),
    );
    const token = fc.oneof(
      { weight: 6, arbitrary: word },
      { weight: 3, arbitrary: entity },
      { weight: 1, arbitrary: fc.constantFrom("\n", "\n\n") },
    );
    fc.assert(
      fc.property(
        fc.array(token, { maxLength: 80 }),
        fc.integer({ min: 24, max: 120 }),
        (tokens, max) => {
          const text = tokens.join(" ");
          const chunks = chunkText(text, max);
          for (const chunk of chunks) {
            expect(chunk.length).toBeLessThanOrEqual(max);
            // Balanced markup in every chunk (links aside, whose brackets hold no markup).
            const plain = chunk.replace(/\]\([^)]*\)/g, "");
            expect(plain.split("**").length % 2).toBe(1);
            expect(plain.split("~~").length % 2).toBe(1);
            expect(plain.split("`").length % 2).toBe(1);
            expect(plain.split("_").length % 2).toBe(1);
          }
          for (const t of tokens) {
            if (t.length > 0 && /^[*`_~[]/.test(t) && t.length <= max) {
              expect(chunks.some((chunk) => chunk.includes(t))).toBe(true);
            }
          }
          // Every character arrives once, in order (whitespace and added markup aside).
          const content = (t: string) => t.replace(/[\s*_~`]/g, "");
          expect(content(chunks.join(""))).toBe(content(text));
        },
      ),
      { numRuns: 400 },
    );
  });
});
