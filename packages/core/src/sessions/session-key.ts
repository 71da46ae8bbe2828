/**
 * Session keys, as OpenClaw writes them:
 *
 * | key | what |
 * |---|---|
 * | `agent:main:main` | an agent's main session |
 * | `agent:ops:direct:<peer>` | a direct-message conversation |
 * | `agent:ops:<channel>:group:<id>` | a group chat on a channel |
 * | `...:thread:<id>` | a thread inside any of the above |
 * | `agent:<id>:subagent:<uuid>` | a sub-agent session |
 * | `cron:<jobId>` | an isolated cron run |
 *
 * Keys are case-insensitive: they are normalized to lower case, trimmed, with empty
 * segments refused. They are ASCII: a character outside it is refused (some, like the Kelvin
 * sign, lower-case to an ASCII letter and would alias another key). Agent ids match
 * `^[a-z0-9][a-z0-9_-]{0,63}$`. Other segments may use
 * letters, digits and `. _ - + = @ # ~ !`; nothing that could act as a path (`/`, `\`, `..`,
 * control characters, whitespace) is accepted, so no key can ever name a place
 * outside a store.
 */
import { InvalidSessionKeyError } from "../errors.js";

/** The pattern an agent id must match. */
export const AGENT_ID_PATTERN: RegExp = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const SEGMENT_PATTERN = /^[a-z0-9._+=@#~!-]+$/;
const MAX_KEY_LENGTH = 512;
/**
 * Any character outside ASCII. Refused before lower-casing: some lower-case to ASCII (the
 * Kelvin sign U+212A to "k"), which would fold a different key into an existing one.
 */
const NON_ASCII = /[\u0080-\uffff]/;

/** What a session key says about its session. */
export interface ParsedSessionKey {
  /** The normalized key. */
  key: string;
  /** The owning agent, or `undefined` for `cron:<jobId>` keys (the job names its agent). */
  agentId: string | undefined;
  kind: "main" | "direct" | "group" | "channel" | "subagent" | "cron" | "other";
  /** The channel of a group key, e.g. `discord` in `agent:ops:discord:group:42`. */
  channel?: string;
  /** The peer of a direct key. */
  peer?: string;
  /** The group id of a group key. */
  groupId?: string;
  /** The thread id when the key ends in `:thread:<id>`. */
  threadId?: string;
  /** The sub-agent id of a sub-agent key. */
  subagentId?: string;
  /** The job id of a `cron:<jobId>` key. */
  jobId?: string;
  /** How deep in sub-agents: 0 for a normal session, 1 for `...:subagent:<id>`. */
  depth: number;
}

/** Checks an agent id; returns it normalized (lower case) or throws `InvalidSessionKeyError`. */
export function normalizeAgentId(agentId: string): string {
  const id = typeof agentId === "string" ? agentId.trim().toLowerCase() : "";
  if (!AGENT_ID_PATTERN.test(id) || NON_ASCII.test(String(agentId).trim())) {
    throw new InvalidSessionKeyError(
      String(agentId),
      `agent id must match ${AGENT_ID_PATTERN.source}`,
    );
  }
  return id;
}

/**
 * Normalizes and validates a session key, returning what it says.
 *
 * @throws InvalidSessionKeyError for anything that is not a well-formed key.
 * @example
 * ```ts
 * parseSessionKey("Agent:Ops:Discord:Group:42:Thread:7");
 * // { key: "agent:ops:discord:group:42:thread:7", agentId: "ops", kind: "group",
 * //   channel: "discord", groupId: "42", threadId: "7", depth: 0 }
 * ```
 */
export function parseSessionKey(raw: string): ParsedSessionKey {
  if (typeof raw !== "string") throw new InvalidSessionKeyError(String(raw), "not a string");
  const trimmed = raw.trim();
  if (NON_ASCII.test(trimmed)) {
    throw new InvalidSessionKeyError(raw.slice(0, 64), "a key may only hold ASCII characters");
  }
  const key = trimmed.toLowerCase();
  if (key.length === 0) throw new InvalidSessionKeyError(raw, "empty");
  if (key.length > MAX_KEY_LENGTH) {
    throw new InvalidSessionKeyError(raw.slice(0, 64), `longer than ${MAX_KEY_LENGTH} characters`);
  }
  const segments = key.split(":");
  for (const segment of segments) {
    if (segment.length === 0) throw new InvalidSessionKeyError(raw, "empty segment");
    if (!SEGMENT_PATTERN.test(segment) || segment.includes("..") || /^\.+$/.test(segment)) {
      throw new InvalidSessionKeyError(
        raw,
        `segment ${JSON.stringify(segment)} has characters that are not allowed`,
      );
    }
  }
  const head = segments[0];
  if (head === "cron") {
    if (segments.length !== 2) throw new InvalidSessionKeyError(raw, "a cron key is cron:<jobId>");
    return { key, agentId: undefined, kind: "cron", jobId: segments[1]!, depth: 0 };
  }
  if (head !== "agent") {
    throw new InvalidSessionKeyError(
      raw,
      'a session key starts with "agent:<agentId>:" or "cron:"',
    );
  }
  if (segments.length < 3)
    throw new InvalidSessionKeyError(raw, "agent:<agentId>:<rest> needs a rest");
  const agentId = segments[1]!;
  if (!AGENT_ID_PATTERN.test(agentId)) {
    throw new InvalidSessionKeyError(raw, `agent id must match ${AGENT_ID_PATTERN.source}`);
  }
  let rest = segments.slice(2);
  const parsed: ParsedSessionKey = { key, agentId, kind: "other", depth: 0 };
  const threadAt = rest.lastIndexOf("thread");
  if (threadAt !== -1 && threadAt === rest.length - 2) {
    parsed.threadId = rest[threadAt + 1]!;
    rest = rest.slice(0, threadAt);
  }
  const subagentAt = rest.indexOf("subagent");
  if (subagentAt !== -1) {
    // A sub-agent of a sub-agent (when deeper nesting is allowed) appends another pair.
    const chain = rest.slice(subagentAt);
    if (chain.length % 2 !== 0 || chain.some((s, i) => (i % 2 === 0) !== (s === "subagent"))) {
      throw new InvalidSessionKeyError(raw, "subagent must be followed by exactly one id");
    }
    parsed.kind = "subagent";
    parsed.subagentId = chain[chain.length - 1]!;
    parsed.depth = chain.length / 2;
    return parsed;
  }
  if (rest.length === 1 && rest[0] === "main") parsed.kind = "main";
  else if (rest[0] === "direct" && rest.length === 2) {
    parsed.kind = "direct";
    parsed.peer = rest[1]!;
  } else if (rest.length >= 3 && rest[rest.length - 2] === "group") {
    parsed.kind = "group";
    parsed.channel = rest.slice(0, -2).join(":");
    parsed.groupId = rest[rest.length - 1]!;
  } else if (rest.length >= 2 && rest[rest.length - 2] === "direct") {
    parsed.kind = "direct";
    parsed.channel = rest.slice(0, -2).join(":");
    parsed.peer = rest[rest.length - 1]!;
  } else if (rest.length >= 1 && parsed.threadId === undefined && rest.length === 1) {
    parsed.kind = "channel";
    parsed.channel = rest[0]!;
  }
  return parsed;
}

/** Normalizes a session key (see {@link parseSessionKey}). */
export function normalizeSessionKey(raw: string): string {
  return parseSessionKey(raw).key;
}

/**
 * Builds `agent:<agentId>:<...rest>`, validating every part.
 *
 * @example
 * ```ts
 * sessionKey("main", "direct", "alice"); // "agent:main:direct:alice"
 * sessionKey("main", "telegram", "group", "-100123"); // "agent:main:telegram:group:-100123"
 * ```
 */
export function sessionKey(agentId: string, ...rest: string[]): string {
  // Each part is one segment: a part holding ":" would smuggle in extra segments.
  for (const part of [agentId, ...rest]) {
    if (typeof part !== "string" || part.includes(":")) {
      throw new InvalidSessionKeyError(String(part), 'a key part may not contain ":"');
    }
  }
  return parseSessionKey(["agent", agentId, ...rest].join(":")).key;
}

/** The key of a new sub-agent session of `parentKey`'s agent. */
export function subagentKey(agentId: string, id: string): string {
  return sessionKey(agentId, "subagent", id);
}
