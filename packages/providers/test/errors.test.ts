import { describe, expect, it } from "vitest";
import { kindFromStatus, parseRetryAfter } from "../src/errors.js";

const NOW = Date.parse("2025-06-01T12:00:00.000Z");
const headers = (init: Record<string, string>) => new Headers(init);

describe("parseRetryAfter", () => {
  it.each([
    ["7", 7000],
    ["0", 0],
    ["1.5", 1500],
    [" 3 ", 3000],
  ])("reads retry-after %j seconds as %i ms", (value, ms) => {
    expect(parseRetryAfter(headers({ "retry-after": value }), NOW)).toBe(ms);
  });

  it("reads retry-after as an HTTP date, relative to now", () => {
    const value = new Date(NOW + 90_000).toUTCString();
    expect(parseRetryAfter(headers({ "retry-after": value }), NOW)).toBe(90_000);
  });

  it("a date already past means no wait", () => {
    const value = new Date(NOW - 5000).toUTCString();
    expect(parseRetryAfter(headers({ "retry-after": value }), NOW)).toBe(0);
  });

  it("prefers retry-after-ms (OpenAI) to retry-after", () => {
    expect(parseRetryAfter(headers({ "retry-after-ms": "250", "retry-after": "9" }), NOW)).toBe(
      250,
    );
  });

  it.each<Record<string, string>>([
    {},
    { "retry-after": "soon" },
    { "retry-after": "-3" },
    { "retry-after": "" },
  ])("gives undefined for %j", (init) => {
    expect(parseRetryAfter(headers(init), NOW)).toBeUndefined();
  });
});

describe("kindFromStatus", () => {
  it.each([
    [400, "invalid_request"],
    [401, "auth"],
    [403, "auth"],
    [404, "invalid_request"],
    [408, "timeout"],
    [413, "invalid_request"],
    [422, "invalid_request"],
    [429, "rate_limit"],
    [500, "server"],
    [502, "server"],
    [503, "overloaded"],
    [504, "server"],
    [529, "overloaded"],
    [302, "unknown"],
  ])("HTTP %i is %s", (status, kind) => {
    expect(kindFromStatus(status)).toBe(kind);
  });
});
