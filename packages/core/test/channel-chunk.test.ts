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
          // Lines added at breaks are fence lines; leave every fence line out on both sides.
          const content = (t: string) =>
            words(
              t
                .split("\n")
                .filter((line) => !/^ {0,3}(`{3,}|~{3,})\S*\s*$/.test(line))
                .join("\n"),
            );
          expect(content(chunks.join("\n"))).toEqual(content(text));
        },
      ),
      { numRuns: 400 },
    );
  });
});
