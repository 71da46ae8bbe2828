/**
 * Keys are case-insensitive for ASCII only. A character outside ASCII whose lower case
 * is an ASCII letter (the Kelvin sign, U+212A, lower-cases to "k") must be refused, not folded
 * into another key: `direct:\u212Aate` would otherwise be Kate's conversation.
 */
import { describe, expect, it } from "vitest";
import { InvalidSessionKeyError } from "../src/errors.js";
import { normalizeAgentId, parseSessionKey, sessionKey } from "../src/sessions/session-key.js";
import { failureOf } from "./support.js";

const KELVIN = "\u212A";

describe("unicode case folding in session keys", () => {
  it("a key holding a non-ASCII letter that lower-cases to ASCII is refused with a typed error", async () => {
    for (const raw of [
      `agent:main:direct:${KELVIN}ate`,
      `agent:${KELVIN}ops:main`,
      `cron:${KELVIN}job`,
      `agent:main:discord:group:${KELVIN}1`,
    ]) {
      const error = await failureOf(() => parseSessionKey(raw));
      expect(error, raw).toBeInstanceOf(InvalidSessionKeyError);
    }
    expect(await failureOf(() => sessionKey("main", "direct", `${KELVIN}ate`))).toBeInstanceOf(
      InvalidSessionKeyError,
    );
  });

  it("an agent id holding such a letter is refused too", async () => {
    expect(await failureOf(() => normalizeAgentId(`${KELVIN}ops`))).toBeInstanceOf(
      InvalidSessionKeyError,
    );
  });

  it("ASCII case differences still normalize to one key", () => {
    expect(parseSessionKey("Agent:Main:Direct:KATE").key).toBe("agent:main:direct:kate");
    expect(normalizeAgentId("OPS")).toBe("ops");
  });
});
