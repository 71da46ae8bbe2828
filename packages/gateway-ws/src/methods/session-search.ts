/**
 * `sessions.search` (words in the conversations, across sessions) and `sessions.preview` (the
 * last few messages of several sessions at once, for a client's session list).
 *
 * Both show what `chat.history` shows: the messages of discarded runs (rewound, or cut short
 * by a crash) are left out, and a hit's `messageId` is the id `chat.history` and
 * `chat.message.get` know it by. Both read a bounded part of the store, however large it is.
 */
import { describe, parseSessionKey, type SessionRecord } from "@beamclaw/core";
import type { ChatMessage } from "../chat-format.js";
import type { GatewayHub, HubMethod } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { invalidRequest } from "../protocol/errors.js";
import {
  optionalInt,
  optionalString,
  optionalStringArray,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import { liveRecordsNewestFirst, recordMessages } from "./session-helpers.js";

/**
 * The most sessions one `sessions.search` reads: the most recently updated ones (of its
 * `agentId`). Also the most `sessionKeys` it takes (the protocol's `maxItems`).
 */
export const SEARCH_MAX_SESSIONS = 200;
/** The most transcript entries `sessions.search` reads of each session: its newest ones. */
export const SEARCH_MAX_ENTRIES = 200;
/** Hits `sessions.search` answers when not told otherwise (`limit`). */
export const SEARCH_DEFAULT_LIMIT = 10;
/** The most hits `sessions.search` answers (the protocol's `limit` maximum). */
export const SEARCH_MAX_LIMIT = 25;
/** The most words a `sessions.search` query may have. */
export const SEARCH_MAX_WORDS = 32;
/** The most characters of a message a hit's snippet shows (ellipses aside). */
export const SNIPPET_CHARS = 200;
/** The most characters a snippet shows before the first match. */
const SNIPPET_LEAD = 60;
/** How far a snippet's edge moves to fall between words rather than inside one. */
const SNIPPET_WORD_SLACK = 20;
/** Sessions read at the same time. */
const READ_CONCURRENCY = 8;

/** The most `keys` one `sessions.preview` takes (what OpenClaw reads of them). */
export const PREVIEW_MAX_KEYS = 64;
/** Messages per session `sessions.preview` answers when not told otherwise (`limit`). */
export const PREVIEW_DEFAULT_LIMIT = 12;
/** The most messages per session `sessions.preview` answers; a larger `limit` means this. */
export const PREVIEW_MAX_LIMIT = 50;
/** Characters of a preview message's text when not told otherwise (`maxChars`). */
export const PREVIEW_DEFAULT_CHARS = 240;
/** The most characters of a preview message's text; a larger `maxChars` means this. */
export const PREVIEW_MAX_CHARS = 2000;
/** The most transcript entries `sessions.preview` reads of each session: its newest ones. */
export const PREVIEW_MAX_ENTRIES = 200;
const PREVIEW_PAGE = 50;

// ------------------------------------------------------------------ matching

const MARKS = /\p{M}+/gu;
const WORD_CHAR = /[\p{L}\p{N}_]/u;
/** A character that is not printable ASCII or whitespace (those fold to themselves). */
const NOT_PLAIN_ASCII = /[^\t\n\r\x20-\x7e]/;

/**
 * Text as `sessions.search` compares it: accents dropped (compatibility decomposition, then
 * combining marks removed) and lower case, so `Café`, `CAFE` and `café` are the same word.
 *
 * @example
 * ```ts
 * foldText("Crème Brûlée"); // "creme brulee"
 * ```
 */
export function foldText(text: string): string {
  return text.normalize("NFKD").replace(MARKS, "").toLowerCase();
}

/** A query taken apart: its folded words (each once) and the words as one phrase. */
interface SearchQuery {
  words: string[];
  phrase: string;
}

function queryOf(method: string, p: ParamsObject): SearchQuery {
  const raw = requireString(method, p, "query", 4096);
  const words = [...new Set(foldText(raw).split(/\s+/u))].filter((word) => word.length > 0);
  if (words.length === 0) {
    throw invalidRequest(`invalid ${method} params: query has no words to search for`, {
      code: "INVALID_PARAMS",
      field: "query",
    });
  }
  if (words.length > SEARCH_MAX_WORDS) {
    throw invalidRequest(
      `invalid ${method} params: query has ${words.length} words, at most ${SEARCH_MAX_WORDS} are searched for`,
      { code: "INVALID_PARAMS", field: "query", max: SEARCH_MAX_WORDS },
    );
  }
  return { words, phrase: words.join(" ") };
}

function isWordChar(char: string | undefined): boolean {
  return char !== undefined && WORD_CHAR.test(char);
}

/** Whether `word` occurs in `folded` as a whole word (from its first occurrence `at` on). */
function occursAsWord(folded: string, word: string, at: number): boolean {
  for (let i = at; i >= 0; i = folded.indexOf(word, i + 1)) {
    if (!isWordChar(folded[i - 1]) && !isWordChar(folded[i + word.length])) return true;
  }
  return false;
}

/**
 * How well a message's folded text matches: `undefined` unless every word of the query is in
 * it; otherwise the share of the query's words found as whole words (0 to 1), plus 1 when the
 * words are found together, in order, as the query's phrase (a one-word query always is).
 */
function scoreOf(folded: string, query: SearchQuery): number | undefined {
  let whole = 0;
  for (const word of query.words) {
    const at = folded.indexOf(word);
    if (at < 0) return undefined;
    if (occursAsWord(folded, word, at)) whole++;
  }
  const together =
    query.words.length === 1 || folded.replace(/\s+/gu, " ").includes(query.phrase) ? 1 : 0;
  return whole / query.words.length + together;
}

/** Folded characters between two looks for a match while folding a text for its snippet. */
const FOLD_CHUNK = 256;

/**
 * Where in `text` the first of the query's words starts and ends (indexes of `text`), found
 * in its folded form. Folds one code point at a time, to know where each folded character
 * came from, and only as far as the first match (plus the longest word, in case another word
 * starts before it and ends after).
 */
function firstMatch(text: string, words: readonly string[]): { start: number; end: number } {
  if (!NOT_PLAIN_ASCII.test(text)) {
    return earliest(text.toLowerCase(), words, (i) => i, text.length);
  }
  const longest = Math.max(...words.map((w) => w.length));
  let folded = "";
  const origins: number[] = [];
  let searchedFrom = 0;
  let foundAt = -1;
  let i = 0;
  while (i < text.length && (foundAt < 0 || folded.length < foundAt + longest)) {
    const code = text.codePointAt(i)!;
    const char = String.fromCodePoint(code);
    const f = code < 0x80 ? char.toLowerCase() : foldText(char);
    folded += f;
    for (let k = 0; k < f.length; k++) origins.push(i);
    i += char.length;
    if (foundAt < 0 && (folded.length - searchedFrom >= FOLD_CHUNK || i >= text.length)) {
      for (const word of words) {
        const at = folded.indexOf(word, searchedFrom);
        if (at >= 0 && (foundAt < 0 || at < foundAt)) foundAt = at;
      }
      searchedFrom = Math.max(0, folded.length - longest + 1);
    }
  }
  return earliest(folded, words, (n) => (n < origins.length ? origins[n]! : text.length), i);
}

function earliest(
  folded: string,
  words: readonly string[],
  origin: (index: number) => number,
  textLength: number,
): { start: number; end: number } {
  let best: { at: number; length: number } | undefined;
  for (const word of words) {
    const at = folded.indexOf(word);
    if (at >= 0 && (best === undefined || at < best.at)) best = { at, length: word.length };
  }
  if (best === undefined) return { start: 0, end: 0 };
  const start = origin(best.at);
  const end = Math.min(textLength, Math.max(start + 1, origin(best.at + best.length)));
  return { start, end };
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/**
 * The text around the first match: at most {@link SNIPPET_CHARS} characters of `text`, from
 * up to {@link SNIPPET_LEAD} before the match, cut between words where one is near, on one
 * line, with `…` where it was cut.
 *
 * @example
 * ```ts
 * snippetOf(longText, { start: 500, end: 505 }); // "…the words around the match, 505…"
 * ```
 */
export function snippetOf(text: string, match: { start: number; end: number }): string {
  let start = Math.max(0, match.start - SNIPPET_LEAD);
  let end = Math.min(text.length, start + SNIPPET_CHARS);
  start = Math.max(0, Math.min(start, end - SNIPPET_CHARS));
  if (start > 0 && !/\s/u.test(text[start - 1]!)) {
    const space = text
      .slice(start, Math.min(match.start, start + SNIPPET_WORD_SLACK))
      .search(/\s/u);
    if (space >= 0) start += space + 1;
  }
  if (end < text.length && !/\s/u.test(text[end]!)) {
    const from = Math.max(match.end, end - SNIPPET_WORD_SLACK);
    const space = text.slice(from, end).search(/\s\S*$/u);
    if (space >= 0) end = from + space;
  }
  if (start > 0 && isLowSurrogate(text.charCodeAt(start))) start++;
  if (end < text.length && isLowSurrogate(text.charCodeAt(end))) end--;
  const body = text.slice(start, end).replace(/\s+/gu, " ").trim();
  return `${start > 0 ? "…" : ""}${body}${end < text.length ? "…" : ""}`;
}

/** The text a chat message shows: its text blocks (not thinking, not tool calls). */
function shownText(message: ChatMessage): string {
  const content = (message.content as Array<{ type?: unknown; text?: unknown }> | undefined) ?? [];
  return content
    .flatMap((c) => (c.type === "text" && typeof c.text === "string" ? [c.text] : []))
    .join("\n");
}

// ------------------------------------------------------------------ search

interface Hit {
  sessionKey: string;
  messageId: string;
  seq: number;
  part: number;
  role: "user" | "assistant";
  timestamp: number;
  score: number;
  text: string;
}

/** Unicode code point order, as the store's ties use. */
function codePointCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** Best first: higher score, then newer, then by session key, then later in the transcript. */
function byRank(a: Hit, b: Hit): number {
  return (
    b.score - a.score ||
    b.timestamp - a.timestamp ||
    codePointCompare(a.sessionKey, b.sessionKey) ||
    b.seq - a.seq ||
    a.part - b.part
  );
}

/** The best `limit` hits seen, and how many there were. */
class BestHits {
  readonly hits: Hit[] = [];
  matched = 0;

  constructor(private readonly limit: number) {}

  add(hit: Hit): void {
    this.matched++;
    const at = this.hits.findIndex((h) => byRank(hit, h) < 0);
    if (at < 0) {
      if (this.hits.length < this.limit) this.hits.push(hit);
      return;
    }
    this.hits.splice(at, 0, hit);
    if (this.hits.length > this.limit) this.hits.pop();
  }
}

/** Runs `work` on every item, at most `concurrency` at a time. */
async function eachLimited<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

function sessionKeysParam(method: string, p: ParamsObject): string[] | undefined {
  const keys = optionalStringArray(method, p, "sessionKeys");
  if (keys === undefined) return undefined;
  if (keys.length === 0 || keys.length > SEARCH_MAX_SESSIONS) {
    throw invalidRequest(
      `invalid ${method} params: sessionKeys must hold 1 to ${SEARCH_MAX_SESSIONS} keys`,
      { code: "INVALID_PARAMS", field: "sessionKeys", max: SEARCH_MAX_SESSIONS },
    );
  }
  const canonical = keys.map((key, index) => {
    try {
      return parseSessionKey(key).key;
    } catch (error) {
      throw invalidRequest(
        `invalid ${method} params: sessionKeys[${index}] is not a session key: ${describe(error)}`,
        { code: "INVALID_PARAMS", field: "sessionKeys", index },
      );
    }
  });
  return [...new Set(canonical)];
}

/**
 * The sessions to search: the given ones that exist (of `agentId`, when given), or the
 * {@link SEARCH_MAX_SESSIONS} most recently updated (of `agentId`); `cut` when there are more.
 */
async function sessionsToSearch(
  hub: GatewayHub,
  agentId: string | undefined,
  keys: string[] | undefined,
): Promise<{ records: SessionRecord[]; cut: boolean }> {
  const sessions = hub.runtime.store.sessions;
  if (keys !== undefined) {
    const found = await Promise.all(keys.map((key) => sessions.get(key)));
    const records = found.filter(
      (r): r is SessionRecord =>
        r !== undefined && (agentId === undefined || r.agentId === agentId),
    );
    return { records, cut: false };
  }
  const records: SessionRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await sessions.list({
      limit: SEARCH_MAX_SESSIONS + 1 - records.length,
      ...(agentId === undefined ? {} : { agentId }),
      ...(cursor === undefined ? {} : { cursor }),
    });
    records.push(...page.items);
    cursor = page.cursor;
  } while (cursor !== undefined && records.length <= SEARCH_MAX_SESSIONS);
  const cut = records.length > SEARCH_MAX_SESSIONS;
  return { records: records.slice(0, SEARCH_MAX_SESSIONS), cut };
}

/**
 * Searches the user and assistant messages of the sessions for the query's words: the
 * {@link SEARCH_MAX_ENTRIES} newest transcript entries of each of the sessions
 * {@link sessionsToSearch} picks. `truncated` when a bound left messages unread, or when more
 * messages matched than `limit`.
 */
async function searchSessions(
  hub: GatewayHub,
  options: {
    query: SearchQuery;
    agentId: string | undefined;
    sessionKeys: string[] | undefined;
    limit: number;
    signal: AbortSignal;
  },
): Promise<{ hits: Hit[]; truncated: boolean }> {
  const { records, cut } = await sessionsToSearch(hub, options.agentId, options.sessionKeys);
  let truncated = cut;
  const best = new BestHits(options.limit);
  const transcripts = hub.runtime.store.transcripts;
  await eachLimited(records, READ_CONCURRENCY, async (session) => {
    if (options.signal.aborted) return;
    const newest = await transcripts.read(session.key, {
      order: "desc",
      limit: SEARCH_MAX_ENTRIES + 1,
    });
    // One more than the bound: to know whether older entries were left unread.
    if (newest.length > SEARCH_MAX_ENTRIES) truncated = true;
    const entries = newest.slice(0, SEARCH_MAX_ENTRIES);
    for (const record of liveRecordsNewestFirst(entries)) {
      recordMessages(record).forEach((message, part) => {
        if (message.role !== "user" && message.role !== "assistant") return;
        const text = shownText(message);
        const score = text.length === 0 ? undefined : scoreOf(foldText(text), options.query);
        if (score === undefined) return;
        best.add({
          sessionKey: session.key,
          messageId: (message.__openclaw as { id: string }).id,
          seq: record.seq,
          part,
          role: message.role,
          timestamp: Math.max(0, Math.trunc(message.timestamp)),
          score,
          text,
        });
      });
    }
  });
  return { hits: best.hits, truncated: truncated || best.matched > options.limit };
}

// ------------------------------------------------------------------ preview

/** One message of a preview. */
interface PreviewItem {
  role: "user" | "assistant";
  text: string;
}

/** One session's preview, as OpenClaw's `SessionsPreviewEntry`. */
interface PreviewEntry {
  key: string;
  status: "ok" | "empty" | "missing" | "error";
  items: PreviewItem[];
}

/** `text` cut to `maxChars`, ending in `...` where it was cut (as OpenClaw's previews). */
function previewText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let cut = maxChars - 3;
  if (isLowSurrogate(text.charCodeAt(cut))) cut--;
  return `${text.slice(0, cut)}...`;
}

/**
 * The last `limit` user and assistant messages with text of a session (oldest first), from
 * its {@link PREVIEW_MAX_ENTRIES} newest transcript entries, discarded runs left out.
 */
async function previewItems(
  hub: GatewayHub,
  key: string,
  limit: number,
  maxChars: number,
): Promise<PreviewItem[]> {
  const transcripts = hub.runtime.store.transcripts;
  const items: PreviewItem[] = [];
  const discarded = new Set<string>();
  let beforeSeq: number | undefined;
  for (let read = 0; items.length < limit && read < PREVIEW_MAX_ENTRIES; ) {
    const size = Math.min(PREVIEW_PAGE, PREVIEW_MAX_ENTRIES - read);
    const page = await transcripts.read(key, {
      order: "desc",
      limit: size,
      ...(beforeSeq === undefined ? {} : { beforeSeq }),
    });
    read += page.length;
    for (const record of liveRecordsNewestFirst(page, discarded)) {
      const messages = recordMessages(record);
      for (let i = messages.length - 1; i >= 0 && items.length < limit; i--) {
        const message = messages[i]!;
        if (message.role !== "user" && message.role !== "assistant") continue;
        const text = shownText(message).trim();
        if (text.length > 0) items.push({ role: message.role, text: previewText(text, maxChars) });
      }
    }
    if (page.length < size) break;
    beforeSeq = page.at(-1)!.seq;
  }
  return items.reverse();
}

async function previewOf(
  hub: GatewayHub,
  key: string,
  limit: number,
  maxChars: number,
): Promise<PreviewEntry> {
  let canonical: string;
  try {
    canonical = parseSessionKey(key).key;
  } catch {
    return { key, status: "missing", items: [] };
  }
  try {
    if ((await hub.runtime.store.sessions.get(canonical)) === undefined) {
      return { key, status: "missing", items: [] };
    }
    const items = await previewItems(hub, canonical, limit, maxChars);
    return { key, status: items.length > 0 ? "ok" : "empty", items };
  } catch (error) {
    hub.log.warn(`sessions.preview could not read ${canonical}: ${describe(error)}`);
    return { key, status: "error", items: [] };
  }
}

function previewKeysParam(method: string, p: ParamsObject): string[] {
  const keys = optionalStringArray(method, p, "keys");
  if (keys === undefined || keys.length === 0 || keys.length > PREVIEW_MAX_KEYS) {
    throw invalidRequest(
      `invalid ${method} params: keys must be an array of 1 to ${PREVIEW_MAX_KEYS} session keys`,
      { code: "INVALID_PARAMS", field: "keys", max: PREVIEW_MAX_KEYS },
    );
  }
  return keys;
}

// ------------------------------------------------------------------ the methods

/**
 * `sessions.search` and `sessions.preview`, for the gateway's method table.
 *
 * `sessions.search` `{ query, agentId?, sessionKeys?, limit? }` answers OpenClaw's
 * `SessionsSearchResult`: `{ results: [{ sessionKey, sessionId, messageId, role, timestamp,
 * snippet, score }], truncated }`. A message matches when its text holds every word of the
 * query, case and accents aside; `score` is the share of the words found as whole words plus 1
 * when they are found together as the query's phrase; best score first, then newest.
 *
 * `sessions.preview` `{ keys, limit?, maxChars? }` answers OpenClaw's `SessionsPreviewResult`:
 * `{ ts, previews: [{ key, status: "ok" | "empty" | "missing" | "error", items: [{ role,
 * text }] }] }`, one entry per key, in order.
 *
 * @example
 * ```ts
 * await client.request("sessions.search", { query: "invoice march", limit: 5 });
 * // { results: [{ sessionKey: "agent:main:main", messageId: "12-1x9k3f", role: "user",
 * //   snippet: "…send me the invoice for March…", score: 2, ... }], truncated: false }
 * ```
 */
export const sessionSearchMethods: Record<string, HubMethod> = {
  "sessions.search": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const query = queryOf(method, p);
      const agentId = optionalString(method, p, "agentId", { nonEmpty: true });
      const sessionKeys = sessionKeysParam(method, p);
      const limit =
        optionalInt(method, p, "limit", { min: 1, max: SEARCH_MAX_LIMIT }) ?? SEARCH_DEFAULT_LIMIT;
      const { hits, truncated } = await searchSessions(hub, {
        query,
        agentId,
        sessionKeys,
        limit,
        signal: call.signal,
      });
      return {
        results: hits.map((hit) => ({
          sessionKey: hit.sessionKey,
          // A BeamClaw session's id is its key (as `sessions.list` rows have it).
          sessionId: hit.sessionKey,
          messageId: hit.messageId,
          role: hit.role,
          timestamp: hit.timestamp,
          snippet: snippetOf(hit.text, firstMatch(hit.text, query.words)),
          score: hit.score,
        })),
        truncated,
      };
    },
  },

  "sessions.preview": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const keys = previewKeysParam(method, p);
      const limit = Math.min(
        optionalInt(method, p, "limit", { min: 1 }) ?? PREVIEW_DEFAULT_LIMIT,
        PREVIEW_MAX_LIMIT,
      );
      const maxChars = Math.min(
        optionalInt(method, p, "maxChars", { min: 20 }) ?? PREVIEW_DEFAULT_CHARS,
        PREVIEW_MAX_CHARS,
      );
      const previews: PreviewEntry[] = new Array(keys.length);
      await eachLimited(keys, READ_CONCURRENCY, async (key, index) => {
        previews[index] = await previewOf(hub, key, limit, maxChars);
      });
      return { ts: hub.now(), previews };
    },
  },
};
