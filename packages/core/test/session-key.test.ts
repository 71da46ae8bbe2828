/**
 * Session keys: the forms OpenClaw writes, their normalization, the agent id rule, and the
 * guarantee that no accepted key can act as a path outside a store.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidSessionKeyError } from "../src/errors.js";
import {
  AGENT_ID_PATTERN,
  normalizeAgentId,
  normalizeSessionKey,
  parseSessionKey,
  sessionKey,
  subagentKey,
} from "../src/sessions/session-key.js";
import { failureOf } from "./support.js";

/** Asserts that `fn` throws an `InvalidSessionKeyError` with code `INVALID_SESSION_KEY`. */
function expectInvalid(fn: () => unknown): InvalidSessionKeyError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, "expected InvalidSessionKeyError").toBeInstanceOf(InvalidSessionKeyError);
  expect((thrown as InvalidSessionKeyError).code).toBe("INVALID_SESSION_KEY");
  expect(InvalidSessionKeyError.isInstance(thrown)).toBe(true);
  return thrown as InvalidSessionKeyError;
}

describe("session key forms", () => {
  it("agent:<id>:main is an agent's main session", () => {
    expect(parseSessionKey("agent:main:main")).toEqual({
      key: "agent:main:main",
      agentId: "main",
      kind: "main",
      depth: 0,
    });
  });

  it("agent:<id>:direct:<peer> is a direct conversation with that peer", () => {
    expect(parseSessionKey("agent:ops:direct:user-42")).toEqual({
      key: "agent:ops:direct:user-42",
      agentId: "ops",
      kind: "direct",
      peer: "user-42",
      depth: 0,
    });
  });

  it("agent:<id>:<channel>:direct:<peer> names the channel of a direct conversation", () => {
    expect(parseSessionKey("agent:ops:telegram:direct:99")).toMatchObject({
      kind: "direct",
      channel: "telegram",
      peer: "99",
      depth: 0,
    });
  });

  it("agent:<id>:<channel>:group:<id> is a group chat on a channel", () => {
    expect(parseSessionKey("agent:ops:discord:group:42")).toEqual({
      key: "agent:ops:discord:group:42",
      agentId: "ops",
      kind: "group",
      channel: "discord",
      groupId: "42",
      depth: 0,
    });
  });

  it("a trailing :thread:<id> names a thread inside any form", () => {
    expect(parseSessionKey("agent:ops:discord:group:42:thread:7")).toEqual({
      key: "agent:ops:discord:group:42:thread:7",
      agentId: "ops",
      kind: "group",
      channel: "discord",
      groupId: "42",
      threadId: "7",
      depth: 0,
    });
    expect(parseSessionKey("agent:ops:direct:bob:thread:t1")).toMatchObject({
      kind: "direct",
      peer: "bob",
      threadId: "t1",
    });
    expect(parseSessionKey("agent:main:main:thread:9")).toMatchObject({
      kind: "main",
      threadId: "9",
    });
  });

  it("agent:<id>:subagent:<uuid> is a sub-agent session at depth 1", () => {
    const uuid = "0b6f4a4e-6c1f-4c43-9a43-1f1f2e6c0d11";
    expect(parseSessionKey(`agent:ops:subagent:${uuid}`)).toEqual({
      key: `agent:ops:subagent:${uuid}`,
      agentId: "ops",
      kind: "subagent",
      subagentId: uuid,
      depth: 1,
    });
  });

  it("each further :subagent:<id> pair is one level deeper", () => {
    expect(parseSessionKey("agent:ops:subagent:a:subagent:b")).toMatchObject({
      kind: "subagent",
      subagentId: "b",
      depth: 2,
    });
  });

  it("cron:<jobId> is an isolated cron run with no agent in the key", () => {
    expect(parseSessionKey("cron:nightly-report")).toEqual({
      key: "cron:nightly-report",
      agentId: undefined,
      kind: "cron",
      jobId: "nightly-report",
      depth: 0,
    });
  });

  it("agent:<id>:<channel> alone is a channel session; other shapes are kind other", () => {
    expect(parseSessionKey("agent:ops:slack")).toMatchObject({ kind: "channel", channel: "slack" });
    expect(parseSessionKey("agent:ops:a:b:c")).toMatchObject({ kind: "other", agentId: "ops" });
  });

  it("segments may use letters, digits and . _ - + = @ # ~ !", () => {
    const key = "agent:ops:direct:a.b_c-d+e=f@g#h~i!j";
    expect(parseSessionKey(key).peer).toBe("a.b_c-d+e=f@g#h~i!j");
  });
});

describe("normalization", () => {
  it("keys are case-insensitive: normalized to lower case", () => {
    expect(parseSessionKey("Agent:Ops:Discord:Group:42:Thread:7")).toEqual({
      key: "agent:ops:discord:group:42:thread:7",
      agentId: "ops",
      kind: "group",
      channel: "discord",
      groupId: "42",
      threadId: "7",
      depth: 0,
    });
    expect(normalizeSessionKey("AGENT:MAIN:MAIN")).toBe("agent:main:main");
    expect(normalizeSessionKey("CRON:Job1")).toBe("cron:job1");
  });

  it("surrounding whitespace is trimmed", () => {
    expect(normalizeSessionKey("  agent:main:main\n\t")).toBe("agent:main:main");
  });

  it("whitespace inside a key is refused, not silently kept or removed", () => {
    expectInvalid(() => parseSessionKey("agent:main: main"));
    expectInvalid(() => parseSessionKey("agent:main:ma in"));
    expectInvalid(() => parseSessionKey("agent :main:main"));
  });

  it("normalizing is idempotent", () => {
    const once = normalizeSessionKey(" Agent:OPS:direct:Bob ");
    expect(normalizeSessionKey(once)).toBe(once);
  });

  it("sessionKey() and subagentKey() build normalized keys", () => {
    expect(sessionKey("OPS", "Direct", "Bob")).toBe("agent:ops:direct:bob");
    expect(subagentKey("ops", "ABC")).toBe("agent:ops:subagent:abc");
    expect(parseSessionKey(subagentKey("ops", "x")).depth).toBe(1);
  });

  it("sessionKey() validates every part: a part holding ':' is refused, not split into more segments", () => {
    // "ops:subagent" is not a valid agent id; it must not turn into agent "ops" + a sub-agent key.
    expectInvalid(() => sessionKey("ops:subagent", "x"));
    expectInvalid(() => sessionKey("ops", "direct:bob"));
  });
});

describe("agent ids", () => {
  it(`agent ids match ${AGENT_ID_PATTERN.source}`, () => {
    for (const id of ["a", "0", "main", "ops-2", "a_b", "a".repeat(64)]) {
      expect(normalizeAgentId(id)).toBe(id);
      expect(parseSessionKey(`agent:${id}:main`).agentId).toBe(id);
    }
  });

  it("normalizeAgentId lower-cases and trims", () => {
    expect(normalizeAgentId("  Ops ")).toBe("ops");
  });

  it("ids that start with _ or -, hold other characters or exceed 64 characters are refused", () => {
    for (const id of ["_a", "-a", "a.b", "a+b", "a@b", "a b", "", "é", "a".repeat(65)]) {
      expectInvalid(() => normalizeAgentId(id));
      expectInvalid(() => parseSessionKey(`agent:${id}:main`));
    }
  });

  it("normalizeAgentId refuses a non-string", () => {
    expectInvalid(() => normalizeAgentId(42 as unknown as string));
  });
});

describe("rejection", () => {
  it.each([
    ["an empty key", ""],
    ["a blank key", "   "],
    ["an unknown head", "session:main:main"],
    ["an agent key without a rest", "agent:main"],
    ["a lone head", "agent"],
    ["an empty agent id", "agent::main"],
    ["an empty segment in the middle", "agent:main::main"],
    ["a trailing colon", "agent:main:main:"],
    ["a leading colon", ":agent:main:main"],
    ["a cron key without a job id", "cron:"],
    ["a cron key with extra segments", "cron:a:b"],
    ["a sub-agent without an id", "agent:ops:subagent"],
    ["a sub-agent with two ids", "agent:ops:subagent:a:b"],
    ["a sub-agent whose id is 'subagent'", "agent:ops:subagent:subagent"],
  ])("%s is refused", (_what, key) => {
    expectInvalid(() => parseSessionKey(key));
  });

  it.each([
    ["a slash", "agent:main:a/b"],
    ["a path of slashes", "agent:main:../../etc/passwd"],
    ["a backslash", "agent:main:a\\b"],
    ["a segment that is ..", "agent:main:.."],
    ["a segment that is .", "agent:main:."],
    ["a segment of dots", "agent:main:direct:..."],
    ["a NUL", "agent:main:a\u0000b"],
    ["a control character", "agent:main:a\u0007"],
    ["DEL", "agent:main:a\u007f"],
    ["a newline inside", "agent:main:a\nb"],
    ["a tab inside", "agent:main:a\tb"],
    ["a non-ASCII letter", "agent:main:café"],
    ["a percent escape", "agent:main:%2e%2e"],
    ["a quote", 'agent:main:a"b'],
    ["a star", "agent:main:*"],
  ])("a key with %s is refused", (_what, key) => {
    expectInvalid(() => parseSessionKey(key));
  });

  it("a key longer than 512 characters is refused; 512 is accepted", () => {
    const head = "agent:main:direct:";
    const fits = head + "p".repeat(512 - head.length);
    expect(fits.length).toBe(512);
    expect(parseSessionKey(fits).key).toBe(fits);
    expectInvalid(() => parseSessionKey(`${fits}q`));
    // The error does not echo a huge key back.
    const error = expectInvalid(() => parseSessionKey(`agent:main:${"x".repeat(10_000)}`));
    expect(error.message.length).toBeLessThan(400);
  });

  it("a non-string is refused with the same typed error", () => {
    for (const raw of [undefined, null, 42, {}, ["agent", "main", "main"]]) {
      expectInvalid(() => parseSessionKey(raw as unknown as string));
    }
  });

  it("the error names the offending key", async () => {
    const error = await failureOf(() => parseSessionKey("agent:main:a/b"));
    expect(error).toBeInstanceOf(InvalidSessionKeyError);
    expect((error as InvalidSessionKeyError).key).toBe("agent:main:a/b");
    expect((error as Error).message).toContain("agent:main:a/b");
  });
});

describe("no accepted key can act as a path (property)", () => {
  /** Pieces that mix valid characters with every kind of hostile one. */
  const piece = fc.constantFrom(
    "a",
    "Z",
    "0",
    "9",
    ".",
    "..",
    "-",
    "_",
    "+",
    "=",
    "@",
    "#",
    "~",
    "!",
    "/",
    "\\",
    " ",
    "\t",
    "\n",
    "\r",
    "\u0000",
    "\u001b",
    "\u007f",
    "\u00a0",
    "\u2028",
    "%",
    "main",
    "direct",
    "group",
    "thread",
    "subagent",
    "é",
    "K",
    "İ",
  );
  const segment = fc.array(piece, { minLength: 0, maxLength: 6 }).map((parts) => parts.join(""));
  const rawKey = fc.oneof(
    fc
      .tuple(segment, fc.array(segment, { minLength: 0, maxLength: 5 }))
      .map(([id, rest]) => ["agent", id, ...rest].join(":")),
    segment.map((job) => `cron:${job}`),
    fc.array(segment, { minLength: 1, maxLength: 6 }).map((segments) => segments.join(":")),
    fc.string({ unit: "binary", maxLength: 40 }),
  );

  const forbidden = (key: string): string | undefined => {
    if (key.includes("/")) return "/";
    if (key.includes("\\")) return "\\";
    if (key.includes("..")) return "..";
    if (/\s/u.test(key)) return "whitespace";
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the point of the check
    if (/[\u0000-\u001f\u007f-\u009f]/u.test(key)) return "a control character";
    return undefined;
  };

  it("an accepted key never contains /, \\, .., whitespace or control characters", () => {
    fc.assert(
      fc.property(rawKey, (raw) => {
        let parsed: ReturnType<typeof parseSessionKey>;
        try {
          parsed = parseSessionKey(raw);
        } catch (error) {
          // Refusal is always the typed error, never anything else.
          return InvalidSessionKeyError.isInstance(error);
        }
        expect(forbidden(parsed.key)).toBeUndefined();
        expect(parsed.key.length).toBeLessThanOrEqual(512);
        expect(parsed.key).toBe(parsed.key.toLowerCase());
        // Every segment is non-empty and the key is a fixed point of normalization.
        expect(parsed.key.split(":").every((s) => s.length > 0)).toBe(true);
        expect(normalizeSessionKey(parsed.key)).toBe(parsed.key);
        if (parsed.agentId !== undefined) expect(AGENT_ID_PATTERN.test(parsed.agentId)).toBe(true);
        return true;
      }),
      { numRuns: 3000 },
    );
  });

  it("keys that differ only in case or surrounding whitespace normalize to the same key", () => {
    const valid = fc
      .tuple(
        fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,10}$/),
        fc.array(fc.stringMatching(/^[a-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 4 }),
      )
      .map(([id, rest]) => ["agent", id, ...rest].join(":"));
    fc.assert(
      fc.property(valid, fc.constantFrom("", " ", "\t", "\n "), (key, pad) => {
        const shouted = `${pad}${key.toUpperCase()}${pad}`;
        expect(normalizeSessionKey(shouted)).toBe(normalizeSessionKey(key));
      }),
      { numRuns: 500 },
    );
  });
});
