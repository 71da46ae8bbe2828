/**
 * Keys become file names that stay in their folder, never collide (even on case-insensitive
 * file systems), and stay readable. Property tests over arbitrary strings, lone surrogates
 * included, plus the examples the README gives.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeFileName } from "../src/index.js";

/** Characters a file name may hold on Linux, macOS and Windows alike. */
const PORTABLE = /^[a-z0-9._+%~A-F-]+$/;
const WINDOWS_DEVICES = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)/i;

const anyString = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 80 }),
  fc.string({ unit: "binary", maxLength: 80 }),
  fc.string({
    unit: fc.constantFrom(".", "/", "\\", ":", "%", "A", "a", "~", "\uD800", "\uDC00"),
    maxLength: 12,
  }),
  fc.string({ maxLength: 400 }),
);

describe("file names from keys", () => {
  it("are a single portable path segment: no separator, no dot name, no hidden file, no device name", () => {
    fc.assert(
      fc.property(
        anyString.filter((s) => s.length > 0),
        (key) => {
          const name = encodeFileName(key);
          expect(name).toMatch(PORTABLE);
          expect(name.startsWith(".")).toBe(false);
          expect(name.endsWith(".")).toBe(false);
          expect(name).not.toMatch(WINDOWS_DEVICES);
          expect(name.length).toBeLessThanOrEqual(160 + 65);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("never give two keys the same name, even compared case-insensitively", () => {
    fc.assert(
      fc.property(anyString, anyString, (a, b) => {
        fc.pre(a !== b && a.length > 0 && b.length > 0);
        expect(encodeFileName(a).toLowerCase()).not.toBe(encodeFileName(b).toLowerCase());
      }),
      { numRuns: 5_000 },
    );
    const tricky = [
      "Key",
      "key",
      "KEY",
      "a:b",
      "a+b",
      "a%3Ab",
      "%",
      "%25",
      "x\uD800",
      "x\uDC00",
      "x\uFFFD",
      "e\u0301",
      "\u00e9",
      ".",
      "..",
      "%2E",
      "con",
      "%63on",
      "x".repeat(500),
      `${"x".repeat(499)}y`,
    ];
    const names = tricky.map((k) => encodeFileName(k).toLowerCase());
    expect(new Set(names).size).toBe(tricky.length);
  });

  it("keep ordinary keys readable", () => {
    expect(encodeFileName("agent:main:main")).toBe("agent+main+main");
    expect(encodeFileName("agent:ops:discord:group:42")).toBe("agent+ops+discord+group+42");
    expect(encodeFileName("cron:nightly-backup")).toBe("cron+nightly-backup");
    expect(encodeFileName("../etc/passwd")).toBe("%2E.%2Fetc%2Fpasswd");
    expect(encodeFileName("Ops")).toBe("%4Fps");
    expect(encodeFileName("caf\u00e9")).toBe("caf%C3%A9");
    expect(encodeFileName("x\uD800")).toBe("x%uD800");
  });
});
