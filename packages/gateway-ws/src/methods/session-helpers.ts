/** What the session, chat and agent methods share: rows, history, and sending a message. */
import { randomUUID } from "node:crypto";
import {
  isBeamClawError,
  type JsonObject,
  type ModelMessage,
  parseSessionKey,
  type QueueMode,
  type SessionRecord,
  type ThinkingLevel,
  type UserMessageInput,
} from "@beamclaw/core";
import { type ChatMessage, toChatMessages } from "../chat-format.js";
import type { GatewayHub } from "../hub.js";
import { ErrorCodes } from "../protocol/constants.js";
import { GatewayError, invalidRequest } from "../protocol/errors.js";

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
  const records = await hub.runtime.store.transcripts.read(sessionKey, {
    order: "desc",
    limit: Math.min(1000, limit + 100),
  });
  // A discard marker cancels the entries of its run written before it (an attempt cut short
  // by a crash); a replay of the run writes after the marker and counts. Newest first:
  const live: typeof records = [];
  const discarded = new Set<string>();
  for (const record of records) {
    if (record.entry.discarded === true) discarded.add(String(record.entry.runId));
    else if (!discarded.has(String(record.entry.runId))) live.push(record);
  }
  const messages: ChatMessage[] = [];
  for (const record of live.reverse()) {
    const entry = record.entry as JsonObject & { message?: unknown; at?: unknown; runId?: unknown };
    if (entry.message === undefined) continue;
    const at = typeof entry.at === "number" ? entry.at : 0;
    for (const message of toChatMessages(entry.message as ModelMessage, at)) {
      messages.push({
        ...message,
        ...(typeof entry.runId === "string" ? { runId: entry.runId } : {}),
      });
    }
  }
  return messages.slice(-limit);
}

/** A user message's text, checked: no NUL bytes, control characters other than tab/newline dropped. */
export function sanitizeMessage(message: string): string {
  const normalized = message.normalize("NFC");
  if (normalized.includes("\u0000")) throw invalidRequest("message must not contain null bytes");
  let out = "";
  for (const char of normalized) {
    const code = char.charCodeAt(0);
    if (code === 9 || code === 10 || code === 13 || (code >= 32 && code !== 127)) out += char;
  }
  return out;
}

/** Chat attachments (images only) as `UserMessageInput.images`. */
export function attachmentImages(attachments: unknown): UserMessageInput["images"] {
  if (attachments === undefined || attachments === null) return undefined;
  if (!Array.isArray(attachments)) throw invalidRequest("attachments must be an array");
  return attachments.map((a, i) => {
    const att = a as { mimeType?: unknown; type?: unknown; content?: unknown };
    const mediaType = typeof att?.mimeType === "string" ? att.mimeType : "";
    if (!mediaType.startsWith("image/") || typeof att.content !== "string") {
      throw invalidRequest(
        `attachments[${i}]: only images (mimeType image/*, base64 content) are supported`,
        { code: "UNSUPPORTED_ATTACHMENT", index: i },
      );
    }
    const data = att.content.replace(/^data:[^;]+;base64,/, "");
    return { mediaType, data };
  });
}

/** What a send to a session answered. */
export interface SendOutcome {
  runId: string;
  status: "started" | "in_flight" | "ok" | "error" | "aborted";
  sessionKey: string;
  disposition?: string;
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
    displayRunId?: string | undefined;
    thinking?: ThinkingLevel | undefined;
    queueMode?: QueueMode | undefined;
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
  let handle: Awaited<ReturnType<typeof session.send>>;
  try {
    handle = await session.send(
      {
        text: input.message,
        ...(input.images === undefined || input.images.length === 0
          ? {}
          : { images: input.images }),
        sender: input.sender,
      },
      {
        idempotencyKey: `gateway:${displayRunId}`,
        ...(input.thinking === undefined ? {} : { thinking: input.thinking }),
        ...(input.queueMode === undefined ? {} : { queueMode: input.queueMode }),
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
  };
}

/** The stored record of a session, or `undefined`. */
export async function storedSession(
  hub: GatewayHub,
  key: string,
): Promise<SessionRecord | undefined> {
  return hub.runtime.store.sessions.get(key);
}

/** `INVALID_REQUEST` for a session that does not exist. */
export function noSuchSession(key: string): GatewayError {
  return new GatewayError(ErrorCodes.INVALID_REQUEST, `no session ${key}`, {
    details: { code: "SESSION_NOT_FOUND", key },
  });
}
