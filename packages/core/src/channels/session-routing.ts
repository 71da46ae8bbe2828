/**
 * Which session an inbound message belongs to: session-key resolution with a DM scope,
 * groups and threads, over ids encoded into the session-key alphabet without collisions.
 */
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "../errors.js";
import { normalizeAgentId, sessionKey } from "../sessions/session-key.js";
import type { InboundMessage } from "./types.js";

/**
 * How direct messages map to sessions:
 * - `main`: every DM of the agent, on every channel, shares its main session
 *   (`agent:<agentId>:main`) — one assistant, one conversation. Pair it with DM policy
 *   `pairing` or `allowlist`: everyone allowed in reads the same history.
 * - `per-peer`: one session per sender, shared across channels (`agent:<id>:direct:<peer>`).
 * - `per-channel-peer`: one per channel and sender (`agent:<id>:<channel>:direct:<peer>`).
 * - `per-account-channel-peer`: one per channel account and sender
 *   (`agent:<id>:<channel>:<account>:direct:<peer>`), for several bots on one channel.
 *
 * Group chats always get one session per channel and group (`agent:<id>:<channel>:group:<chat>`),
 * and a thread appends `:thread:<thread>` to whichever key its chat has.
 */
export type DmScope = "main" | "per-peer" | "per-channel-peer" | "per-account-channel-peer";

/** The DM scopes, for validation. */
export const DM_SCOPES: readonly DmScope[] = [
  "main",
  "per-peer",
  "per-channel-peer",
  "per-account-channel-peer",
];

/** Options of {@link resolveSessionKey}. */
export interface ResolveSessionKeyOptions {
  /** The agent that answers. */
  agentId: string;
  /** Default `main`. */
  dmScope?: DmScope;
  /** The channel's ids ignore case (see `ChannelMeta.caseInsensitiveIds`). Default false. */
  caseInsensitiveIds?: boolean;
}

/** Options of {@link encodeKeySegment}. */
export interface EncodeKeySegmentOptions {
  /** Lower-case A-Z as they are instead of encoding them. Default false. */
  caseInsensitive?: boolean;
}

/** Words the session-key parser gives a meaning; an id equal to one is escaped. */
const RESERVED = new Set(["main", "direct", "group", "thread", "subagent", "agent", "cron"]);
/** Longer encoded ids are replaced by a hash, so that every key stays within 512 characters. */
const MAX_SEGMENT_LENGTH = 96;
const PLAIN = /^[a-z0-9_\-+=@#]$/;

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/**
 * Encodes a platform id (a user, chat, thread or account id) as one session-key segment,
 * injectively: two different ids never give the same segment, so two people never share a
 * session by accident of spelling.
 *
 * `a-z 0-9 _ - + = @ #` stay as they are, and so does `.` except at the start or after
 * another `.`; an upper-case letter becomes `!` and the letter (unless `caseInsensitive`);
 * anything else becomes `~` and two hex digits per UTF-8 byte (`~` itself is `~7e`, a lone
 * surrogate `~s` and four hex digits). An id that would encode to more than 96 characters
 * becomes `~h` and 40 hex digits of its SHA-256.
 *
 * @throws InvalidArgumentError for an empty or non-string id.
 * @example
 * ```ts
 * encodeKeySegment("alice.smith@example.com"); // "alice.smith@example.com"
 * encodeKeySegment("U024BE7LH");               // "!u024!b!e7!l!h"
 * encodeKeySegment("U024BE7LH", { caseInsensitive: true }); // "u024be7lh"
 * encodeKeySegment("room/42 ✓");              // "room~2f42~20~e2~9c~93"
 * ```
 */
export function encodeKeySegment(id: string, options: EncodeKeySegmentOptions = {}): string {
  if (typeof id !== "string" || id.length === 0) {
    throw new InvalidArgumentError(`an id must be a non-empty string, got ${JSON.stringify(id)}`);
  }
  const encoder = new TextEncoder();
  let out = "";
  for (const char of id) {
    if (PLAIN.test(char)) out += char;
    else if (char === ".") out += out.length === 0 || out.endsWith(".") ? "~2e" : ".";
    else if (char >= "A" && char <= "Z") {
      out += options.caseInsensitive ? char.toLowerCase() : `!${char.toLowerCase()}`;
    } else {
      const code = char.codePointAt(0)!;
      if (code >= 0xd800 && code <= 0xdfff) out += `~s${code.toString(16).padStart(4, "0")}`;
      else for (const byte of encoder.encode(char)) out += `~${hex2(byte)}`;
    }
    if (out.length > MAX_SEGMENT_LENGTH) break;
  }
  if (RESERVED.has(out)) out = `~${hex2(out.charCodeAt(0))}${out.slice(1)}`;
  if (out.length > MAX_SEGMENT_LENGTH) {
    return `~h${createHash("sha256").update(id, "utf8").digest("hex").slice(0, 40)}`;
  }
  return out;
}

/**
 * Reverses {@link encodeKeySegment} (for display). Returns `undefined` for a hashed segment
 * (`~h...`) and for anything `encodeKeySegment` cannot have produced. With
 * `caseInsensitive` the original case is gone: the result is lower case.
 *
 * @example
 * ```ts
 * decodeKeySegment("!u024!b!e7!l!h"); // "U024BE7LH"
 * ```
 */
export function decodeKeySegment(segment: string): string | undefined {
  if (segment.startsWith("~h")) return undefined;
  const bytes: number[] = [];
  let out = "";
  const flush = () => {
    if (bytes.length === 0) return true;
    try {
      out += new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
    } catch {
      return false;
    }
    bytes.length = 0;
    return true;
  };
  for (let i = 0; i < segment.length; i++) {
    const char = segment[i]!;
    if (char === "~") {
      if (segment[i + 1] === "s") {
        const code = Number.parseInt(segment.slice(i + 2, i + 6), 16);
        if (!/^[0-9a-f]{4}$/.test(segment.slice(i + 2, i + 6)) || !flush()) return undefined;
        out += String.fromCharCode(code);
        i += 5;
        continue;
      }
      const pair = segment.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(pair)) return undefined;
      bytes.push(Number.parseInt(pair, 16));
      i += 2;
      continue;
    }
    if (!flush()) return undefined;
    if (char === "!") {
      const next = segment[i + 1];
      if (next === undefined || next < "a" || next > "z") return undefined;
      out += next.toUpperCase();
      i += 1;
    } else out += char;
  }
  return flush() ? out : undefined;
}

/**
 * The session key of an inbound message (see {@link DmScope}). Every key it returns is
 * accepted by `parseSessionKey`.
 *
 * @throws InvalidSessionKeyError for an invalid agent id.
 * @example
 * ```ts
 * const dm = { channel: "telegram", accountId: "default", peer: { id: "4711" },
 *   chatType: "direct", chatId: "4711" } as const;
 * resolveSessionKey(dm, { agentId: "main" });                              // "agent:main:main"
 * resolveSessionKey(dm, { agentId: "main", dmScope: "per-channel-peer" }); // "agent:main:telegram:direct:4711"
 * resolveSessionKey({ ...dm, chatType: "group", chatId: "-100", threadId: "7" }, { agentId: "main" });
 * // "agent:main:telegram:group:-100:thread:7"
 * ```
 */
export function resolveSessionKey(
  message: Pick<InboundMessage, "channel" | "accountId" | "peer" | "chatType" | "chatId"> & {
    threadId?: string | undefined;
  },
  options: ResolveSessionKeyOptions,
): string {
  const agentId = normalizeAgentId(options.agentId);
  const scope = options.dmScope ?? "main";
  if (!DM_SCOPES.includes(scope)) {
    throw new InvalidArgumentError(
      `dmScope must be one of ${DM_SCOPES.join(", ")}, got ${JSON.stringify(scope)}`,
    );
  }
  const enc = (id: string) =>
    encodeKeySegment(id, { caseInsensitive: options.caseInsensitiveIds ?? false });
  const channel = message.channel;
  let parts: string[];
  if (message.chatType === "group") {
    parts = [channel, "group", enc(message.chatId)];
  } else if (scope === "main") {
    parts = ["main"];
  } else if (scope === "per-peer") {
    parts = ["direct", enc(message.peer.id)];
  } else if (scope === "per-channel-peer") {
    parts = [channel, "direct", enc(message.peer.id)];
  } else {
    parts = [channel, enc(message.accountId), "direct", enc(message.peer.id)];
  }
  if (message.threadId !== undefined) parts.push("thread", enc(message.threadId));
  return sessionKey(agentId, ...parts);
}
