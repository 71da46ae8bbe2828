/**
 * `parsePartialJson`: the value the beginning of a JSON text stands for so far. Examples of
 * each rule, and properties over arbitrary JSON values: every prefix of their text (compact
 * and indented) reads without throwing, as a value the whole one grows into, and the whole
 * text reads as `JSON.parse` reads it.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { JsonValue } from "../src/providers/types.js";
import { parsePartialJson } from "../src/sessions/partial-json.js";

describe("parsePartialJson", () => {
  it.each([
    ["", undefined],
    ["   ", undefined],
    ["{", {}],
    ['{"ci', {}],
    ['{"city"', {}],
    ['{"city":', {}],
    ['{"city":"Par', { city: "Par" }],
    ['{"city":"Paris","t', { city: "Paris" }],
    ['{"n":-', {}],
    ['{"n":1.', {}],
    ['{"n":12', { n: 12 }],
    ['{"n":1e', {}],
    ['{"n":1e3,"ok":t', { n: 1000, ok: true }],
    ['{"a":nu', { a: null }],
    ['{"tags":["a","b', { tags: ["a", "b"] }],
    ['{"tags":["a",', { tags: ["a"] }],
    ['{"deep":{"x":[{"y":', { deep: { x: [{}] } }],
    ['{"s":"line\\', { s: "line" }],
    ['{"s":"\\u00', { s: "" }],
    ['{"s":"caf\\u00e9 \\"x\\""}', { s: 'café "x"' }],
    ['```json\n{"a":1', { a: 1 }],
    ['```json\n{"a":1}\n```', { a: 1 }],
    ["[1, 2, 3", [1, 2, 3]],
    ['"text so fa', "text so fa"],
  ])("%j reads as %j", (text, expected) => {
    expect(parsePartialJson(text)).toEqual(expected);
  });

  it.each([["no json"], ['{"a" 1}'], ['{"a":tx}'], ["{a:1}"], ['{"s":"\\q"}'], ['{"n":1-}']])(
    "%j is not the beginning of a JSON text: undefined",
    (text) => {
      expect(parsePartialJson(text)).toBeUndefined();
    },
  );

  it("keeps a __proto__ key as an own property, as JSON.parse does", () => {
    const value = parsePartialJson('{"__proto__":{"polluted":true},"a":1') as Record<
      string,
      unknown
    >;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(["__proto__", "a"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("reads every prefix of any JSON text without throwing, and the whole as JSON.parse does", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (value, indent) => {
        const text = JSON.stringify(value, null, indent ? 2 : undefined);
        for (let n = 0; n < text.length; n++) parsePartialJson(text.slice(0, n));
        expect(parsePartialJson(text)).toEqual(JSON.parse(text));
      }),
      { numRuns: 300 },
    );
  });

  it("a prefix's value is contained in the whole one: nothing appears that the text will not hold", () => {
    /** Whether `part` could grow into `whole`: same keys and items so far, strings as prefixes. */
    const within = (part: JsonValue, whole: JsonValue): boolean => {
      if (typeof part === "string") return typeof whole === "string" && whole.startsWith(part);
      if (typeof part === "number") return typeof whole === "number";
      if (part === null || typeof part === "boolean") return part === whole;
      if (Array.isArray(part)) {
        return (
          Array.isArray(whole) &&
          part.length <= whole.length &&
          part.every((item, i) => within(item, whole[i]!))
        );
      }
      if (typeof whole !== "object" || whole === null || Array.isArray(whole)) return false;
      return Object.entries(part).every(
        ([key, item]) =>
          Object.hasOwn(whole, key) && within(item as JsonValue, whole[key] as JsonValue),
      );
    };
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })).map((v) => v as JsonValue),
        (value) => {
          const text = JSON.stringify(value);
          const whole = JSON.parse(text) as JsonValue;
          for (let n = 1; n <= text.length; n++) {
            const part = parsePartialJson(text.slice(0, n));
            if (part !== undefined) expect(within(part, whole)).toBe(true);
          }
        },
      ),
      { numRuns: 80 },
    );
  });
});
