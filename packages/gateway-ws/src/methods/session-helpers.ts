/** What the session, chat and agent methods share: rows, history, and sending a message. */
import { randomUUID } from "node:crypto";
import {
  decodeTextFile,
  detectMediaType,
  isBeamClawError,
  isTextMediaType,
  MAX_RUN_TIMEOUT_MS,
  MODEL_IMAGE_TYPES,
  type ModelMessage,
  parseSessionKey,
  type QueueMode,
  type RunHandle,
  type RunResult,
  type SessionRecord,
  type ThinkingLevel,
  type TranscriptRecord,
  textAttachmentBlock,
  transcriptLine,
  type UserMessageInput,
  userMessage,
} from "@beamclaw/core";
import { type ChatMessage, toChatMessage, toChatMessages } from "../chat-format.js";
import type { GatewayHub } from "../hub.js";
import {
  fingerprint,
  isEntryOf,
  messageIdOf,
  parseMessageId,
  type TranscriptEntry,
} from "../message-ids.js";
import { ErrorCodes } from "../protocol/constants.js";
import { GatewayError, invalidRequest } from "../protocol/errors.js";
import {
  optionalInt,
  optionalString,
  type ParamsObject,
  requireString,
} from "../protocol/params.js";
import type { MethodCall } from "./types.js";

export const THINKING_LEVELS: readonly ThinkingLevel[] = [
  "off",
  "minimal",
  "low",
  "medium",
  "high",
];
export const QUEUE_MODES: readonly QueueMode[] = ["steer", "followup", "collect", "interrupt"];

function rowKind(key: string): "direct" | "group" | "global" | "unknown" {
  try {
    const kind = parseSessionKey(key).kind;
    if (kind === "main" || kind === "direct") return "direct";
    if (kind === "group" || kind === "channel") return "group";
    return "unknown";
  } catch {
    return "unknown";
  }
}

/** A stored session as a protocol `SessionRow`. */
export function sessionRow(hub: GatewayHub, record: SessionRecord): Record<string, unknown> {
  const r = record as SessionRecord & Record<string, unknown>;
  const agent = hub.runtime.agents.find((a) => a.id === record.agentId);
  const modelRef =
    typeof r.modelOverride === "string" ? r.modelOverride : (agent?.model ?? undefined);
  const slash = modelRef?.indexOf("/") ?? -1;
  const input = typeof r.inputTokens === "number" ? r.inputTokens : 0;
  const output = typeof r.outputTokens === "number" ? r.outputTokens : 0;
  const active = hub.runs.active(record.key)[0];
  const row: Record<string, unknown> = {
    key: record.key,
    sessionId: record.key,
    kind: rowKind(record.key),
    agentId: record.agentId,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    inputTokens: input,
    outputTokens: output,
    totalTokens: input + output,
    estimatedCostUsd: typeof r.costUsd === "number" ? r.costUsd : 0,
    isMain: record.key === `agent:${record.agentId}:main`,
  };
  if (typeof r.displayName === "string") {
    row.displayName = r.displayName;
    row.label = r.displayName;
  }
  if (typeof r.channel === "string") row.channel = r.channel;
  if (modelRef !== undefined && slash > 0) {
    row.model = modelRef.slice(slash + 1);
    row.modelProvider = modelRef.slice(0, slash);
  }
  if (typeof r.modelOverride === "string") row.modelOverrideSource = "user";
  if (typeof r.thinkingLevel === "string") row.thinkingLevel = r.thinkingLevel;
  if (typeof r.verboseLevel === "string") row.verboseLevel = r.verboseLevel;
  if (typeof r.runs === "number") row.runs = r.runs;
  if (typeof r.lastRunAt === "number") row.lastInteractionAt = r.lastRunAt;
  if (typeof r.parentKey === "string") row.parentSessionKey = r.parentKey;
  if (active !== undefined) {
    row.status = "running";
    row.lastRunId = active.runId;
  }
  return row;
}

/**
 * The recent messages of a session in chat form (oldest first): at most `limit`, leaving out
 * the output of runs that were discarded after a crash.
 */
export async function chatHistory(
  hub: GatewayHub,
  sessionKey: string,
  limit: number,
): Promise<ChatMessage[]> {
  return (await chatHistoryPage(hub, sessionKey, limit)).messages;
}

/** A delta cursor: where in a session's transcript a client's copy of the history ends. */
interface HistoryCursor {
  /** The session it belongs to. */
  k: string;
  /** The seq of the last transcript entry the client has (0: none). */
  s: number;
  /** That entry's fingerprint: a reset rewrites seqs, this tells the new entries apart. */
  f: string;
}

function encodeCursor(cursor: HistoryCursor): string {
  return Buffer.from(JSON.stringify({ v: 1, ...cursor }), "utf8").toString("base64url");
}

/** Reads a cursor `chat.history` gave out; `INVALID_REQUEST` for anything else. */
export function decodeHistoryCursor(sessionKey: string, text: string): HistoryCursor {
  let value: { v?: unknown; k?: unknown; s?: unknown; f?: unknown } | undefined;
  try {
    value = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    value = undefined;
  }
  if (
    value?.v !== 1 ||
    typeof value.k !== "string" ||
    typeof value.s !== "number" ||
    !Number.isInteger(value.s) ||
    value.s < 0 ||
    typeof value.f !== "string"
  ) {
    throw invalidRequest("invalid chat.history params: cursor is not a chat.history cursor", {
      code: "INVALID_CURSOR",
      field: "cursor",
    });
  }
  if (value.k !== sessionKey) {
    throw invalidRequest("invalid chat.history params: cursor belongs to another session", {
      code: "CURSOR_SESSION_MISMATCH",
      field: "cursor",
    });
  }
  return { k: value.k, s: value.s, f: value.f };
}

/**
 * The chat messages of one transcript record, each with its id and seq under `__openclaw`
 * (as OpenClaw's `chat.history` carries them) and its run.
 */
export function recordMessages(record: TranscriptRecord): ChatMessage[] {
  const entry = record.entry as TranscriptEntry;
  if (entry.message === undefined) return [];
  const at = typeof entry.at === "number" ? entry.at : 0;
  return toChatMessages(entry.message as ModelMessage, at).map((message, part) => ({
    ...message,
    ...(typeof entry.runId === "string" ? { runId: entry.runId } : {}),
    __openclaw: { id: messageIdOf(record.seq, entry, part), seq: record.seq },
  }));
}

/**
 * Transcript records read newest first, without the discard markers and the entries they
 * cancel. A marker cancels the entries of its run written before it (an attempt cut short by a
 * crash, a rewound run); a replay of the run writes after the marker and counts. `discarded`
 * holds the runs of the markers seen so far: pass the same set for each older page when
 * reading a transcript backwards page by page.
 */
export function liveRecordsNewestFirst(
  records: readonly TranscriptRecord[],
  discarded: Set<string> = new Set(),
): TranscriptRecord[] {
  const live: TranscriptRecord[] = [];
  for (const record of records) {
    if (record.entry.discarded === true) discarded.add(String(record.entry.runId));
    else if (!discarded.has(String(record.entry.runId))) live.push(record);
  }
  return live;
}

/**
 * The page of `chat.history` around one message (its `messageId` param, e.g. a
 * `sessions.search` hit): up to `limit` messages with that one in it, as many newer ones after
 * it as older ones before it where the session has them, oldest first; `newer` is how many
 * messages are newer than the page (the `offset` that continues it). `undefined` when the id
 * names no message of the session that `chat.history` shows.
 */
export async function chatHistoryAround(
  hub: GatewayHub,
  sessionKey: string,
  messageId: string,
  limit: number,
): Promise<{ messages: ChatMessage[]; anchor: ChatMessage; newer: number } | undefined> {
  const parts = parseMessageId(messageId);
  if (parts === undefined) return undefined;
  const transcripts = hub.runtime.store.transcripts;
  // From the message to the end: later markers may cancel it or what is before it.
  const from: TranscriptRecord[] = [];
  for (let after = parts.seq - 1; ; ) {
    const page = await transcripts.read(sessionKey, { afterSeq: after, limit: 1000 });
    from.push(...page);
    if (page.length < 1000) break;
    after = page.at(-1)!.seq;
  }
  const anchor = from[0];
  if (anchor?.seq !== parts.seq || !isEntryOf(parts, anchor.seq, anchor.entry as TranscriptEntry)) {
    return undefined;
  }
  const discarded = new Set<string>();
  const live = liveRecordsNewestFirst(from.reverse(), discarded).reverse();
  if (live[0] !== anchor) return undefined;
  const own = recordMessages(anchor);
  if (parts.part >= own.length) return undefined;
  const later = [...own.slice(parts.part + 1)];
  for (const record of live.slice(1)) {
    later.push(...recordMessages(record));
    if (later.length >= limit) break;
  }
  const newerTotal =
    own.length - parts.part - 1 + live.slice(1).reduce((n, r) => n + recordMessages(r).length, 0);
  const after = later.slice(0, Math.min(later.length, Math.floor((limit - 1) / 2)));
  const earlier: ChatMessage[] = [...own.slice(0, parts.part)].reverse();
  for (let before = parts.seq; earlier.length < limit - 1 - after.length && before > 1; ) {
    const page = await transcripts.read(sessionKey, {
      order: "desc",
      beforeSeq: before,
      limit: 200,
    });
    if (page.length === 0) break;
    for (const record of liveRecordsNewestFirst(page, discarded)) {
      earlier.push(...recordMessages(record).reverse());
    }
    before = page.at(-1)!.seq;
  }
  // Where the session has fewer older messages, more newer ones fill the page.
  const room = limit - 1 - Math.min(earlier.length, limit - 1 - after.length);
  const shownAfter = later.slice(0, Math.max(after.length, Math.min(later.length, room)));
  const shownBefore = earlier.slice(0, limit - 1 - shownAfter.length).reverse();
  const message = own[parts.part]!;
  return {
    messages: [...shownBefore, message, ...shownAfter],
    anchor: message,
    newer: newerTotal - shownAfter.length,
  };
}

/** The most queued messages `chat.history`'s `pendingInputs` lists. */
const PENDING_LISTED = 50;

/**
 * The messages accepted into a session's durable queue that it has not taken into its
 * transcript yet (waiting behind the active run), as OpenClaw's `pendingInputs`: the newest
 * `limit` of them (at most 50), oldest first, each with its run id as the client knows it,
 * when it was accepted, and the message in chat form; `total` counts them all (of the first
 * 1,000 in the queue).
 */
export async function pendingInputs(
  hub: GatewayHub,
  sessionKey: string,
  limit: number,
): Promise<{ items: Array<Record<string, unknown>>; total: number }> {
  const queued = await hub.runtime.store.queue.pending({ sessionKey, limit: 1000 });
  if (queued.length === 0) return { items: [], total: 0 };
  const taken = new Set<string>();
  const records = await hub.runtime.store.transcripts.read(sessionKey, {
    order: "desc",
    limit: RECEIPT_SCAN,
  });
  for (const record of liveRecordsNewestFirst(records)) {
    const entry = record.entry as TranscriptEntry;
    const role = (entry.message as { role?: unknown } | undefined)?.role;
    if (role === "user" && typeof entry.runId === "string") taken.add(entry.runId);
  }
  const waiting = queued.filter((m) => {
    const runId = m.payload.runId;
    return typeof runId !== "string" || !taken.has(runId);
  });
  const items = waiting.slice(-Math.min(limit, PENDING_LISTED)).flatMap((m) => {
    const input = m.payload.input as UserMessageInput | undefined;
    if (typeof input !== "object" || input === null || typeof input.text !== "string") return [];
    const key = m.idempotencyKey;
    const coreRunId = typeof m.payload.runId === "string" ? m.payload.runId : undefined;
    const runId = key.startsWith("gateway:")
      ? key.slice("gateway:".length)
      : coreRunId === undefined
        ? m.id
        : hub.runs.displayId(coreRunId);
    const message = toChatMessage(userMessage(input), m.enqueuedAt);
    return message === undefined ? [] : [{ runId, acceptedAt: m.enqueuedAt, message }];
  });
  return { items, total: waiting.length };
}

/** What `chat.history` answers for its `inputRunIds`: where each message sent stands. */
export interface InputReceipts {
  /** Per id asked for that this gateway knows, in the order asked. */
  inputReceipts: Array<
    | { runId: string; state: "consumed"; consumedByEventId: string }
    | { runId: string; state: "pending" }
  >;
  /** The consumed ones: which transcript message (its message id) took each. */
  inputConsumptions: Array<{ runId: string; consumedByEventId: string }>;
}

/** How far back `inputReceipts` looks for the user messages of the runs asked about. */
const RECEIPT_SCAN = 1000;

/**
 * Where the messages a client sent with these run ids (`chat.send` idempotency keys, or the
 * runtime's run ids) stand, for a client that shows them before the gateway confirms them
 * (OpenClaw's `inputRunIds`): `consumed` once the session took the message into its
 * transcript (with that user message's id), `pending` while it waits in the durable queue,
 * and left out when this gateway knows nothing of it (never sent, or sent so long ago that
 * neither its run nor its message is within reach: the newest 1,000 transcript entries and
 * the runs this gateway process remembers).
 */
export async function inputReceipts(
  hub: GatewayHub,
  sessionKey: string,
  runIds: readonly string[],
): Promise<InputReceipts> {
  const asked = new Map<string, string>();
  for (const id of runIds) {
    asked.set(id, id);
    asked.set(hub.runs.coreId(id), id);
  }
  const consumed = new Map<string, string>();
  const records = await hub.runtime.store.transcripts.read(sessionKey, {
    order: "desc",
    limit: RECEIPT_SCAN,
  });
  // Newest first: the last one seen of a run is its first user message.
  for (const record of liveRecordsNewestFirst(records)) {
    const entry = record.entry as TranscriptEntry;
    const id = typeof entry.runId === "string" ? asked.get(entry.runId) : undefined;
    if (id === undefined || (entry.message as { role?: unknown } | undefined)?.role !== "user") {
      continue;
    }
    consumed.set(id, messageIdOf(record.seq, entry));
  }
  const pending = new Set<string>();
  for (const message of await hub.runtime.store.queue.pending({ sessionKey, limit: 1000 })) {
    const key = message.idempotencyKey;
    const byKey = key.startsWith("gateway:") ? asked.get(key.slice("gateway:".length)) : undefined;
    const runId = message.payload.runId;
    const id = byKey ?? (typeof runId === "string" ? asked.get(runId) : undefined);
    if (id !== undefined && !consumed.has(id)) pending.add(id);
  }
  const receipts: InputReceipts = { inputReceipts: [], inputConsumptions: [] };
  for (const id of new Set(runIds)) {
    const by = consumed.get(id);
    if (by !== undefined) {
      receipts.inputReceipts.push({ runId: id, state: "consumed", consumedByEventId: by });
      receipts.inputConsumptions.push({ runId: id, consumedByEventId: by });
    } else if (pending.has(id)) {
      receipts.inputReceipts.push({ runId: id, state: "pending" });
    }
  }
  return receipts;
}

/**
 * Like {@link chatHistory}, with the delta cursor of the transcript's end (for `chat.history`
 * clients that then ask only for what is new).
 */
export async function chatHistoryPage(
  hub: GatewayHub,
  sessionKey: string,
  limit: number,
): Promise<{ messages: ChatMessage[]; deltaCursor: string }> {
  const transcripts = hub.runtime.store.transcripts;
  const pageSize = Math.min(1000, limit + 100);
  let records = await transcripts.read(sessionKey, { order: "desc", limit: pageSize });
  const newest = records[0];
  const deltaCursor = encodeCursor({
    k: sessionKey,
    s: newest?.seq ?? 0,
    f: newest === undefined ? "" : fingerprint(newest.entry as TranscriptEntry),
  });
  // Read back page by page until `limit` messages (or the start of the transcript): one read
  // holds at most 1,000 records, and an `offset` may reach further back than that.
  const discarded = new Set<string>();
  const pages: ChatMessage[][] = [];
  let count = 0;
  for (;;) {
    const page: ChatMessage[] = [];
    for (const record of liveRecordsNewestFirst(records, discarded).reverse()) {
      page.push(...recordMessages(record));
    }
    pages.unshift(page);
    count += page.length;
    const oldest = records.at(-1);
    if (count >= limit || records.length < pageSize || oldest === undefined) break;
    records = await transcripts.read(sessionKey, {
      order: "desc",
      beforeSeq: oldest.seq,
      limit: pageSize,
    });
  }
  return { messages: pages.flat().slice(-limit), deltaCursor };
}

/**
 * What was added to a session's transcript after `cursor`: at most `maxRecords` entries (and,
 * with `maxChars`, the oldest whole entries whose text fits, at least one, cut to fit) and a
 * cursor after them; `reset` when the client's copy no longer fits (the session was reset or
 * deleted since, or a crashed run's output it already has was discarded).
 */
export async function chatHistoryDelta(
  hub: GatewayHub,
  sessionKey: string,
  cursor: HistoryCursor,
  maxRecords: number,
  maxChars?: number,
): Promise<{ kind: "reset" } | { kind: "delta"; messages: ChatMessage[]; deltaCursor: string }> {
  const transcripts = hub.runtime.store.transcripts;
  const lastSeq = await transcripts.lastSeq(sessionKey);
  if (lastSeq < cursor.s) return { kind: "reset" };
  if (cursor.s > 0) {
    const [anchor] = await transcripts.read(sessionKey, { afterSeq: cursor.s - 1, limit: 1 });
    if (anchor?.seq !== cursor.s || fingerprint(anchor.entry as TranscriptEntry) !== cursor.f) {
      return { kind: "reset" };
    }
  }
  const records = await transcripts.read(sessionKey, {
    afterSeq: cursor.s,
    limit: Math.min(1000, maxRecords),
  });
  const messages: ChatMessage[] = [];
  let last: TranscriptRecord | undefined;
  let chars = 0;
  for (const record of records) {
    if (record.entry.discarded === true) return { kind: "reset" };
    const own = recordMessages(record);
    if (maxChars !== undefined) {
      // Oldest first, whole entries while they fit: the cursor stops after the last one
      // given, so that what did not fit comes with the next delta instead of never.
      const n = own.reduce((sum, m) => sum + messageChars(m), 0);
      if (last !== undefined && chars + n > maxChars) break;
      if (chars + n > maxChars) {
        // A first entry over the limit alone: its text cut to fit (whole in `chat.message.get`).
        let left = maxChars;
        for (const message of own) {
          const cut = messageChars(message) > left ? cutText(message, left) : message;
          left = Math.max(0, left - messageChars(cut));
          messages.push(cut);
        }
        last = record;
        break;
      }
      chars += n;
    }
    messages.push(...own);
    last = record;
  }
  return {
    kind: "delta",
    messages,
    deltaCursor:
      last === undefined
        ? encodeCursor(cursor)
        : encodeCursor({
            k: sessionKey,
            s: last.seq,
            f: fingerprint(last.entry as TranscriptEntry),
          }),
  };
}

/**
 * Keeps the newest messages whose text fits in `maxChars` (at least the newest one, its text
 * cut to fit).
 */
export function capHistoryChars(messages: ChatMessage[], maxChars: number): ChatMessage[] {
  const kept: ChatMessage[] = [];
  let total = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]!;
    const n = messageChars(message);
    if (total + n > maxChars) {
      if (kept.length === 0) kept.push(cutText(message, maxChars));
      break;
    }
    total += n;
    kept.push(message);
  }
  return kept.reverse();
}

/** The characters of a chat message's text and thinking (what `maxChars` limits). */
function messageChars(message: ChatMessage): number {
  return (
    (message.content as Array<{ text?: unknown; thinking?: unknown }> | undefined) ?? []
  ).reduce(
    (n, c) =>
      n +
      (typeof c.text === "string" ? c.text.length : 0) +
      (typeof c.thinking === "string" ? c.thinking.length : 0),
    0,
  );
}

/** `chat.message.get`'s answer: the message, or why it cannot be had. */
export type ChatMessageLookup =
  | { ok: true; message: ChatMessage }
  | { ok: false; unavailableReason: "not_found" | "oversized" | "not_visible" };

/**
 * One chat message of a session by its id (see `message-ids.ts`): `not_found` for an id
 * that names no message of this transcript (a malformed one, one of another session, one
 * the session lost to a reset), `not_visible` for one of a run undone since (a rewind, a
 * crash), `oversized` for one whose text is longer than `maxChars`.
 */
export async function chatMessageById(
  hub: GatewayHub,
  sessionKey: string,
  messageId: string,
  maxChars: number,
): Promise<ChatMessageLookup> {
  const notFound = { ok: false, unavailableReason: "not_found" } as const;
  const parts = parseMessageId(messageId);
  if (parts === undefined) return notFound;
  const transcripts = hub.runtime.store.transcripts;
  const [record] = await transcripts.read(sessionKey, { afterSeq: parts.seq - 1, limit: 1 });
  if (record === undefined || !isEntryOf(parts, record.seq, record.entry as TranscriptEntry)) {
    return notFound;
  }
  const message = recordMessages(record)[parts.part];
  if (message === undefined) return notFound;
  const runId = record.entry.runId;
  if (typeof runId === "string" && (await discardedAfter(hub, sessionKey, record.seq, runId))) {
    return { ok: false, unavailableReason: "not_visible" };
  }
  if (messageChars(message) > maxChars) return { ok: false, unavailableReason: "oversized" };
  return { ok: true, message };
}

/**
 * A session's compactions as OpenClaw's `sessions.compaction.list` checkpoints, oldest first:
 * each named by its transcript entry's id (as message ids are), with its summary, what asked
 * for it (`manual`: `sessions.compact` or `session.compact`; `auto-threshold`: the agent's
 * `autoCompact`), the estimated tokens before and after, and the id of the first message it
 * kept. The session stays the same one across a compaction (BeamClaw keeps one transcript),
 * so `preCompaction` and `postCompaction` both name it.
 */
export async function compactionCheckpoints(
  hub: GatewayHub,
  sessionKey: string,
): Promise<Array<Record<string, unknown>>> {
  const transcripts = hub.runtime.store.transcripts;
  const checkpoints: Array<Record<string, unknown>> = [];
  for (let after = 0; ; ) {
    const page = await transcripts.read(sessionKey, { afterSeq: after, limit: 1000 });
    for (const record of page) {
      const entry = record.entry as TranscriptEntry & { compaction?: unknown };
      const compaction = entry.compaction as
        | { summary?: unknown; firstKeptSeq?: unknown; trigger?: unknown }
        | undefined;
      if (typeof compaction !== "object" || compaction === null) continue;
      const checkpoint: Record<string, unknown> = {
        checkpointId: messageIdOf(record.seq, entry),
        sessionKey,
        sessionId: sessionKey,
        createdAt: typeof entry.at === "number" ? entry.at : 0,
        reason: compaction.trigger === "auto" ? "auto-threshold" : "manual",
        preCompaction: { sessionId: sessionKey },
        postCompaction: { sessionId: sessionKey },
      };
      for (const field of ["tokensBefore", "tokensAfter"] as const) {
        const value = (compaction as Record<string, unknown>)[field];
        if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) {
          checkpoint[field] = value;
        }
      }
      if (checkpoint.tokensBefore !== undefined || checkpoint.tokensAfter !== undefined) {
        checkpoint.tokensVersion = 1;
      }
      if (typeof compaction.summary === "string") checkpoint.summary = compaction.summary;
      if (typeof compaction.firstKeptSeq === "number") {
        const [kept] = await transcripts.read(sessionKey, {
          afterSeq: compaction.firstKeptSeq - 1,
          limit: 1,
        });
        if (kept !== undefined && kept.seq === compaction.firstKeptSeq) {
          checkpoint.firstKeptEntryId = messageIdOf(kept.seq, kept.entry as TranscriptEntry);
        }
      }
      checkpoints.push(checkpoint);
    }
    if (page.length < 1000) return checkpoints;
    after = page.at(-1)!.seq;
  }
}

/** Whether a discard marker for `runId` follows transcript entry `seq` (its run was undone). */
async function discardedAfter(
  hub: GatewayHub,
  sessionKey: string,
  seq: number,
  runId: string,
): Promise<boolean> {
  const transcripts = hub.runtime.store.transcripts;
  for (let after = seq; ; ) {
    const page = await transcripts.read(sessionKey, { afterSeq: after, limit: 1000 });
    for (const record of page) {
      if (record.entry.discarded === true && record.entry.runId === runId) return true;
    }
    if (page.length < 1000) return false;
    after = page.at(-1)!.seq;
  }
}

function cutText(message: ChatMessage, maxChars: number): ChatMessage {
  let left = maxChars;
  const content = ((message.content as Array<Record<string, unknown>> | undefined) ?? []).map(
    (c) => {
      if (typeof c.text !== "string") return c;
      const text = c.text.slice(0, Math.max(0, left));
      left -= text.length;
      return { ...c, text };
    },
  );
  return { ...message, content, truncated: true };
}

/** A user message's text, checked: no NUL bytes, control characters other than tab/newline dropped. */
export function sanitizeMessage(message: string): string {
  const normalized = message.normalize("NFC");
  if (normalized.includes("\u0000")) {
    throw invalidRequest("message must not contain null bytes", {
      code: "INVALID_PARAMS",
      field: "message",
    });
  }
  let out = "";
  for (const char of normalized) {
    const code = char.charCodeAt(0);
    if (code === 9 || code === 10 || code === 13 || (code >= 32 && code !== 127)) out += char;
  }
  return out;
}

/** Attachment limits (decoded bytes), as `hello-ok.policy.attachments` announces them. */
export function attachmentPolicy(maxPayloadBytes: number): {
  maxBytes: number;
  maxImageBytes: number;
} {
  // Base64 in a frame of maxPayloadBytes decodes to at most three quarters of it.
  const fits = Math.max(1, Math.floor((maxPayloadBytes * 3) / 4));
  return {
    maxBytes: Math.min(MAX_FILE_ATTACHMENT_BYTES, fits),
    maxImageBytes: Math.min(MAX_IMAGE_ATTACHMENT_BYTES, fits),
  };
}

/** Largest text file attached to a message, decoded. */
const MAX_FILE_ATTACHMENT_BYTES = 512 * 1024;
/** Largest image attached to a message, decoded. */
const MAX_IMAGE_ATTACHMENT_BYTES = 5 * 1024 * 1024;
/** Attachments one message may carry. */
const MAX_ATTACHMENTS = 16;

const EXTENSION_TYPES: Record<string, string> = {
  txt: "text/plain",
  md: "text/markdown",
  csv: "text/csv",
  tsv: "text/tab-separated-values",
  html: "text/html",
  css: "text/css",
  log: "text/plain",
  json: "application/json",
  yaml: "application/yaml",
  yml: "application/yaml",
  toml: "application/toml",
  xml: "application/xml",
  js: "application/javascript",
  mjs: "application/javascript",
  ts: "application/typescript",
  py: "text/x-python",
  sh: "application/x-sh",
  sql: "application/sql",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  pdf: "application/pdf",
  mp3: "audio/mpeg",
  wav: "audio/wav",
  ogg: "audio/ogg",
  m4a: "audio/mp4",
};

function attachmentError(
  index: number,
  code: string,
  message: string,
  extra: Record<string, unknown> = {},
): GatewayError {
  return invalidRequest(`attachments[${index}]: ${message}`, { code, index, ...extra });
}

/**
 * A message's attachments, checked: images and PDFs for the model, text files for the
 * message.
 */
export interface ParsedAttachments {
  images: NonNullable<UserMessageInput["images"]>;
  /** Text files, each as a block to add to the message. */
  files: Array<{ name: string; mimeType: string; text: string }>;
  /** PDFs, as the message's file parts (the providers read them page by page). */
  documents: NonNullable<UserMessageInput["files"]>;
  /** Audio, for the gateway's transcriber (only when `limits.audio`). */
  audio: Array<{ name: string | undefined; mimeType: string; data: Buffer }>;
}

/**
 * Checks chat attachments (`{ type?, mimeType?, fileName?, content }` with base64 or data-URL
 * content). Images (PNG, JPEG, GIF, WebP; the bytes must match the type) go to the model as
 * images; PDFs (the bytes must start `%PDF-`; up to the image limit) as file parts; text files
 * (UTF-8: `text/*`, JSON, YAML, XML, code, ...) are added to the message.
 * Anything else, oversized files and content that is not what it claims are refused with
 * `INVALID_REQUEST` (`details.code`: `UNSUPPORTED_ATTACHMENT`, `ATTACHMENT_TOO_LARGE`,
 * `ATTACHMENT_INVALID`), before anything is sent.
 */
export function parseAttachments(
  attachments: unknown,
  limits: { maxBytes: number; maxImageBytes: number; audio?: boolean },
): ParsedAttachments {
  const parsed: ParsedAttachments = { images: [], files: [], documents: [], audio: [] };
  if (attachments === undefined || attachments === null) return parsed;
  if (!Array.isArray(attachments)) {
    throw invalidRequest("attachments must be an array", {
      code: "INVALID_PARAMS",
      field: "attachments",
    });
  }
  if (attachments.length > MAX_ATTACHMENTS) {
    throw invalidRequest(`at most ${MAX_ATTACHMENTS} attachments per message`, {
      code: "TOO_MANY_ATTACHMENTS",
      max: MAX_ATTACHMENTS,
    });
  }
  attachments.forEach((raw, index) => {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw attachmentError(index, "ATTACHMENT_INVALID", "must be an object");
    }
    const att = raw as {
      type?: unknown;
      mimeType?: unknown;
      fileName?: unknown;
      content?: unknown;
    };
    if (typeof att.content !== "string" || att.content.length === 0) {
      throw attachmentError(index, "ATTACHMENT_INVALID", "content must be a base64 string");
    }
    const dataUrl = /^data:([^;,]+)?(;[^,]*)?,/.exec(att.content);
    if (dataUrl !== null && !(dataUrl[2] ?? "").includes(";base64")) {
      throw attachmentError(index, "ATTACHMENT_INVALID", "data URLs must be base64");
    }
    const base64 = (dataUrl === null ? att.content : att.content.slice(dataUrl[0].length)).replace(
      /\s+/g,
      "",
    );
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64) || base64.length % 4 === 1) {
      throw attachmentError(index, "ATTACHMENT_INVALID", "content is not valid base64");
    }
    const fileName =
      typeof att.fileName === "string" && att.fileName.length > 0
        ? att.fileName.slice(0, 255)
        : undefined;
    const extension = fileName?.includes(".")
      ? fileName.slice(fileName.lastIndexOf(".") + 1).toLowerCase()
      : undefined;
    const declared = typeof att.mimeType === "string" ? att.mimeType : undefined;
    const mimeType = (
      declared ??
      dataUrl?.[1] ??
      (extension === undefined ? undefined : EXTENSION_TYPES[extension]) ??
      (att.type === "image" ? "image/png" : "")
    )
      .split(";")[0]!
      .trim()
      .toLowerCase();
    if (mimeType === "") {
      throw attachmentError(index, "UNSUPPORTED_ATTACHMENT", "mimeType is required", {
        mimeType: null,
      });
    }
    const isImage = mimeType.startsWith("image/") && mimeType !== "image/svg+xml";
    const isPdf = mimeType === "application/pdf";
    const isAudio = mimeType.startsWith("audio/") && limits.audio === true;
    // A PDF is a binary document, read by the model like images: it gets their limit (and
    // audio too, on its way to the transcriber).
    const max = isImage || isPdf || isAudio ? limits.maxImageBytes : limits.maxBytes;
    // The decoded size, before decoding anything large.
    const bytes =
      Math.floor((base64.length * 3) / 4) -
      (base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0);
    if (bytes > max) {
      throw attachmentError(
        index,
        "ATTACHMENT_TOO_LARGE",
        `${bytes} bytes is over the ${max}-byte limit for ${isImage ? "images" : isPdf ? "PDFs" : isAudio ? "audio" : "files"}`,
        { bytes, maxBytes: max },
      );
    }
    const data = Buffer.from(base64, "base64");
    if (isAudio) {
      if (data.length === 0)
        throw attachmentError(index, "ATTACHMENT_INVALID", "the audio is empty");
      parsed.audio.push({ name: fileName, mimeType, data });
      return;
    }
    if (isImage) {
      if (!MODEL_IMAGE_TYPES.has(mimeType)) {
        throw attachmentError(
          index,
          "UNSUPPORTED_ATTACHMENT",
          `image type ${mimeType} is not supported (PNG, JPEG, GIF or WebP)`,
          { mimeType },
        );
      }
      if (detectMediaType(data) !== mimeType) {
        throw attachmentError(index, "ATTACHMENT_INVALID", `content is not a ${mimeType} image`, {
          mimeType,
        });
      }
      parsed.images.push({ mediaType: mimeType, data: base64 });
      return;
    }
    if (isPdf) {
      if (detectMediaType(data) !== "application/pdf") {
        throw attachmentError(index, "ATTACHMENT_INVALID", "content is not a PDF", { mimeType });
      }
      parsed.documents.push({
        mediaType: mimeType,
        data: base64,
        ...(fileName === undefined ? {} : { filename: fileName }),
      });
      return;
    }
    if (!isTextMediaType(mimeType)) {
      const why = mimeType.startsWith("audio/")
        ? "audio needs transcription, and this gateway has no transcriber (beamclaw.yaml: transcription)"
        : `files of type ${mimeType} cannot be given to the model (text files, PDFs and images can)`;
      throw attachmentError(index, "UNSUPPORTED_ATTACHMENT", why, { mimeType });
    }
    const text = decodeTextFile(data);
    if (text === undefined) {
      throw attachmentError(
        index,
        "ATTACHMENT_INVALID",
        `content of a ${mimeType} file is not UTF-8 text (or holds a null byte)`,
        { mimeType },
      );
    }
    parsed.files.push({ name: fileName ?? `attachment-${index + 1}`, mimeType, text });
  });
  return parsed;
}

/**
 * The words of a message's audio attachments, each as `[audio: <name>, transcribed]` and the
 * text, through the gateway's transcriber (60 s each). A failure refuses the whole message
 * with a retryable `UNAVAILABLE` (`details.code` `TRANSCRIPTION_FAILED`): nothing is sent.
 */
export async function transcribeAudio(
  hub: GatewayHub,
  audio: ParsedAttachments["audio"],
  signal?: AbortSignal,
): Promise<string[]> {
  const transcriber = hub.transcriber;
  if (audio.length === 0 || transcriber === undefined) return [];
  const lines: string[] = [];
  for (const [i, clip] of audio.entries()) {
    const timeout = AbortSignal.timeout(TRANSCRIBE_TIMEOUT_MS);
    try {
      lines.push(
        await transcriptLine(
          transcriber,
          {
            data: clip.data,
            mediaType: clip.mimeType,
            ...(clip.name === undefined ? {} : { filename: clip.name }),
          },
          { signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]) },
        ),
      );
    } catch (error) {
      throw new GatewayError(
        ErrorCodes.UNAVAILABLE,
        `audio attachment ${i + 1} could not be transcribed: ${error instanceof Error ? error.message : String(error)}`,
        { details: { code: "TRANSCRIPTION_FAILED", transcriber: transcriber.id }, retryable: true },
      );
    }
  }
  return lines;
}

/** Time limit of one transcription of a `chat.send` audio attachment. */
const TRANSCRIBE_TIMEOUT_MS = 60_000;

/** The message with its text files appended, each in an `<attachment>` block. */
export function messageWithFiles(message: string, files: ParsedAttachments["files"]): string {
  if (files.length === 0) return message;
  const blocks = files.map((f) => textAttachmentBlock(f.name, f.mimeType, f.text));
  return [message, ...blocks].filter((part) => part.length > 0).join("\n\n");
}

/** Chat attachments that must all be images, as `UserMessageInput.images` (`sessions.*`, `agent`). */
export function attachmentImages(
  attachments: unknown,
  limits: { maxBytes: number; maxImageBytes: number } = attachmentPolicy(4 * 1024 * 1024),
): UserMessageInput["images"] {
  if (attachments === undefined || attachments === null) return undefined;
  const { images, files, documents } = parseAttachments(attachments, limits);
  if (files.length > 0 || documents.length > 0) {
    throw invalidRequest(
      "only image attachments are supported here (chat.send takes text files and PDFs)",
      { code: "UNSUPPORTED_ATTACHMENT" },
    );
  }
  return images;
}

/** What a send to a session answered. */
export interface SendOutcome {
  runId: string;
  status: "started" | "in_flight" | "ok" | "error" | "aborted";
  sessionKey: string;
  disposition?: string;
  /** How the run this send started ends (only when it started one). */
  result?: Promise<RunResult>;
}

/**
 * A run time limit in `field` (`chat.send` / `sessions.send` `timeoutMs`; `agent` `timeout`
 * in seconds): an integer from 0, where 0 means no limit of the message's own (the agent's
 * `timeoutMs`, if any, still applies). Returns it in ms, or undefined for none.
 */
export function runTimeoutParam(
  method: string,
  p: ParamsObject,
  field: string,
  unit: "ms" | "s" = "ms",
): number | undefined {
  const max = unit === "ms" ? MAX_RUN_TIMEOUT_MS : Math.floor(MAX_RUN_TIMEOUT_MS / 1000);
  const value = optionalInt(method, p, field, { min: 0, max });
  if (value === undefined || value === 0) return undefined;
  return unit === "ms" ? value : value * 1000;
}

/**
 * Sends a user message to a session on behalf of a client. `displayRunId` is the id the client
 * will see the run under (its idempotency key, for `chat.send` and `agent`). A repeated id
 * does not send again: it answers `in_flight` while the run goes on, or how it ended.
 */
export async function sendToSession(
  hub: GatewayHub,
  input: {
    sessionKey: string;
    agentId?: string | undefined;
    message: string;
    images?: UserMessageInput["images"];
    /** Documents (PDFs) for the model. */
    files?: UserMessageInput["files"];
    displayRunId?: string | undefined;
    thinking?: ThinkingLevel | undefined;
    queueMode?: QueueMode | undefined;
    /** The run's time limit (`SendOptions.timeoutMs`); none of its own when undefined. */
    timeoutMs?: number | undefined;
    /** The model of this run (`SendOptions.model`). */
    model?: string | undefined;
    /** The caller's span (`SendOptions.traceparent`, `MethodCall.traceparent`). */
    traceparent?: string | undefined;
    /** Its vendors' state (`SendOptions.tracestate`), with `traceparent` only. */
    tracestate?: string | undefined;
    sender: string;
  },
): Promise<SendOutcome> {
  const session = hub.session(input.sessionKey, input.agentId);
  const displayRunId = input.displayRunId ?? randomUUID();
  const existing = hub.runs.find(displayRunId);
  if (existing !== undefined && !existing.done) {
    return { runId: displayRunId, status: "in_flight", sessionKey: session.key };
  }
  const finished = hub.runs.finished(displayRunId);
  if (finished !== undefined) {
    return { runId: displayRunId, status: finished.status, sessionKey: session.key };
  }
  const claim = hub.runs.claim(session.key, displayRunId);
  let handle: RunHandle;
  try {
    handle = await session.send(
      {
        text: input.message,
        ...(input.images === undefined || input.images.length === 0
          ? {}
          : { images: input.images }),
        ...(input.files === undefined || input.files.length === 0 ? {} : { files: input.files }),
        sender: input.sender,
      },
      {
        idempotencyKey: `gateway:${displayRunId}`,
        ...(input.thinking === undefined ? {} : { thinking: input.thinking }),
        ...(input.queueMode === undefined ? {} : { queueMode: input.queueMode }),
        ...(input.timeoutMs === undefined ? {} : { timeoutMs: input.timeoutMs }),
        ...(input.model === undefined ? {} : { model: input.model }),
        ...(input.traceparent === undefined ? {} : { traceparent: input.traceparent }),
        ...(input.traceparent === undefined || input.tracestate === undefined
          ? {}
          : { tracestate: input.tracestate }),
      },
    );
  } catch (error) {
    claim.settle(undefined);
    throw error;
  }
  claim.settle(handle.runId);
  if (handle.disposition === "duplicate") {
    // Sent before under the same id: nothing runs again. Either it is still going, it ended
    // while this gateway watched, or it was handled long ago (e.g. before a restart).
    const done = hub.runs.finished(handle.runId);
    const settledLongAgo = await Promise.race([
      handle.result.then(
        () => false,
        (error: unknown) => isBeamClawError(error, "DUPLICATE"),
      ),
      new Promise<false>((resolve) => setImmediate(() => resolve(false))),
    ]);
    return {
      runId: hub.runs.displayId(handle.runId),
      status: done?.status ?? (settledLongAgo ? "ok" : "in_flight"),
      sessionKey: session.key,
      disposition: "duplicate",
    };
  }
  return {
    runId: hub.runs.displayId(handle.runId),
    status: "started",
    sessionKey: session.key,
    disposition: handle.disposition,
    result: handle.result,
  };
}

/**
 * The session a request names: its `field` (`sessionKey`, or `key` for the `sessions.*`
 * methods that call it so) and `agentId`, which must be that key's agent when given.
 */
export function requestedSession(
  hub: GatewayHub,
  call: MethodCall,
  field: "sessionKey" | "key" = "sessionKey",
): ReturnType<GatewayHub["session"]> {
  const { method, params: p } = call;
  return hub.session(
    requireString(method, p, field, 512),
    optionalString(method, p, "agentId", { nonEmpty: true }),
  );
}

/** The stored record of a session, or `undefined`. */
export async function storedSession(
  hub: GatewayHub,
  key: string,
): Promise<SessionRecord | undefined> {
  return hub.runtime.store.sessions.get(key);
}

/**
 * Whether session `key` exists: it has a stored record, or it has a run (a new session's
 * record is written a moment after its first message is saved).
 */
export async function sessionExists(hub: GatewayHub, key: string): Promise<boolean> {
  return (await storedSession(hub, key)) !== undefined || hub.runs.active(key).length > 0;
}

/** `INVALID_REQUEST` for a session that does not exist. */
export function noSuchSession(key: string): GatewayError {
  return new GatewayError(ErrorCodes.INVALID_REQUEST, `no session ${key}`, {
    details: { code: "SESSION_NOT_FOUND", key },
  });
}
