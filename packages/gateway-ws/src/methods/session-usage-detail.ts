/**
 * `sessions.usage.timeseries` and `sessions.usage.logs`: one session's model calls over time
 * and its messages with what each answer cost, from its transcript, as the Control UI's usage
 * page shows a session it opens.
 */
import { type JsonObject, savedCallUsage, type TranscriptRecord } from "@beamclaw/core";
import type { GatewayHub, HubMethod } from "../hub.js";
import { Scopes } from "../protocol/constants.js";
import { optionalInt, optionalString, requireString } from "../protocol/params.js";
import { liveRecordsNewestFirst } from "./session-helpers.js";
import { namedSession } from "./session-usage.js";

/** The most points `sessions.usage.timeseries` answers; more calls are summed into buckets. */
export const USAGE_TIMESERIES_MAX_POINTS = 200;
/** The most transcript entries `sessions.usage.timeseries` reads (the newest). */
export const USAGE_TIMESERIES_MAX_ENTRIES = 50_000;
/** Log entries `sessions.usage.logs` answers when not told otherwise (`limit`). */
export const USAGE_LOGS_DEFAULT_LIMIT = 200;
/** The most log entries `sessions.usage.logs` answers. */
export const USAGE_LOGS_MAX_LIMIT = 1000;
/** The most transcript entries `sessions.usage.logs` reads looking for messages. */
export const USAGE_LOGS_MAX_ENTRIES = 20_000;
/** A log entry's text is cut to this many characters (then ends with `…`). */
export const USAGE_LOG_MAX_CHARS = 2000;

const PAGE = 1000;

/** One model call as a time series point, before cumulative totals. */
interface CallPoint {
  timestamp: number;
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  totalTokens: number;
  cost: number;
}

function objectOf(value: unknown): JsonObject | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as JsonObject)
    : undefined;
}

/**
 * Reads a session's transcript newest first, page by page, handing each entry to `visit`
 * until it answers `false` or `maxEntries` were read. Answers whether entries were left.
 */
async function readNewestFirst(
  hub: GatewayHub,
  sessionKey: string,
  maxEntries: number,
  visit: (record: TranscriptRecord) => boolean,
): Promise<boolean> {
  let read = 0;
  let before: number | undefined;
  while (read < maxEntries) {
    const page = await hub.runtime.store.transcripts.read(sessionKey, {
      order: "desc",
      limit: Math.min(PAGE, maxEntries - read),
      ...(before === undefined ? {} : { beforeSeq: before }),
    });
    for (const record of page) {
      read++;
      if (!visit(record)) return false;
    }
    const last = page.at(-1);
    if (last === undefined || last.seq <= 1) return false;
    before = last.seq;
  }
  return true;
}

/**
 * Points summed into at most `max` buckets of consecutive calls (a bucket's time is its last
 * call's), with running totals: no call is dropped, so the last point's cumulative figures
 * are the whole series'.
 */
export function bucketPoints(
  calls: readonly CallPoint[],
  max: number,
): Array<Record<string, number>> {
  const size = Math.max(1, Math.ceil(calls.length / max));
  const points: Array<Record<string, number>> = [];
  let cumulativeTokens = 0;
  let cumulativeCost = 0;
  for (let at = 0; at < calls.length; at += size) {
    const bucket: CallPoint = {
      timestamp: 0,
      input: 0,
      output: 0,
      cacheRead: 0,
      cacheWrite: 0,
      totalTokens: 0,
      cost: 0,
    };
    for (const call of calls.slice(at, at + size)) {
      bucket.timestamp = call.timestamp;
      bucket.input += call.input;
      bucket.output += call.output;
      bucket.cacheRead += call.cacheRead;
      bucket.cacheWrite += call.cacheWrite;
      bucket.totalTokens += call.totalTokens;
      bucket.cost += call.cost;
    }
    cumulativeTokens += bucket.totalTokens;
    cumulativeCost += bucket.cost;
    points.push({ ...bucket, cumulativeTokens, cumulativeCost });
  }
  return points;
}

/** The text of a message's parts, as the usage page's log shows it. */
function logText(role: string, content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  const lines: string[] = [];
  for (const raw of content) {
    const part = objectOf(raw);
    if (part === undefined) continue;
    switch (part.type) {
      case "text":
        if (typeof part.text === "string") lines.push(part.text);
        break;
      case "image":
        lines.push("[Image]");
        break;
      case "file":
        lines.push(`[File${typeof part.filename === "string" ? `: ${part.filename}` : ""}]`);
        break;
      case "tool-call":
        lines.push(`[Tool: ${typeof part.toolName === "string" ? part.toolName : "tool"}]`);
        break;
      case "tool-result": {
        const name = typeof part.toolName === "string" ? part.toolName : "tool";
        const output =
          typeof part.output === "string" ? part.output : JSON.stringify(part.output ?? null);
        lines.push(`[Tool: ${name}]`, part.isError === true ? "[Tool Error]" : "[Tool Result]");
        if (role === "tool" && output.length > 0) lines.push(output);
        break;
      }
      default:
        break;
    }
  }
  return lines.join("\n").trim();
}

function cut(text: string): string {
  return text.length > USAGE_LOG_MAX_CHARS ? `${text.slice(0, USAGE_LOG_MAX_CHARS)}…` : text;
}

const ROLES: Record<string, "user" | "assistant" | "toolResult"> = {
  user: "user",
  assistant: "assistant",
  tool: "toolResult",
};

/** `key` and `agentId` of a request, and the session record they name. */
async function requestedSession(hub: GatewayHub, method: string, p: Record<string, unknown>) {
  const key = requireString(method, p, "key", 512);
  const agentId = optionalString(method, p, "agentId", {
    nonEmpty: true,
    maxLength: 128,
  })?.toLowerCase();
  return namedSession(hub, key, agentId);
}

/**
 * `sessions.usage.timeseries` and `sessions.usage.logs`, for the gateway's method table (read
 * scope).
 *
 * `sessions.usage.timeseries` `{ key, agentId? }`: the session's model calls as OpenClaw's
 * `SessionUsageTimeSeries`, `{ sessionId, points: [{ timestamp, input, output, cacheRead,
 * cacheWrite, totalTokens, cost, cumulativeTokens, cumulativeCost }] }`, oldest first. More
 * than {@link USAGE_TIMESERIES_MAX_POINTS} calls are summed into as many buckets of
 * consecutive calls (no call dropped); of a longer transcript than
 * {@link USAGE_TIMESERIES_MAX_ENTRIES} entries the newest are read, and the answer says
 * `truncated: true` (the running totals start there).
 *
 * `sessions.usage.logs` `{ key, agentId?, limit? }`: the session's newest `limit` (200, at
 * most 1000) messages, oldest first, as OpenClaw's `{ logs: [{ timestamp, role, content,
 * tokens?, cost? }] }`: `role` `user`, `assistant` or `toolResult`; `content` the text, with
 * `[Tool: name]` for tool calls and results and `[Image]`/`[File: name]` for attachments,
 * cut at {@link USAGE_LOG_MAX_CHARS} characters; `tokens` (input plus output) and `cost` of
 * the model call that wrote an assistant message. Messages of runs discarded after a crash
 * or undone by a rewind are left out.
 *
 * Both: a `key` that names no session is `SESSION_NOT_FOUND`; with `agentId`, a session of
 * another agent is `AGENT_MISMATCH`.
 *
 * @example
 * ```ts
 * await client.request("sessions.usage.timeseries", { key: "agent:main:main" });
 * // { sessionId: "agent:main:main", points: [{ timestamp: 1773576000000, input: 120, output:
 * //   30, cacheRead: 0, cacheWrite: 0, totalTokens: 150, cost: 0.0009, cumulativeTokens: 150,
 * //   cumulativeCost: 0.0009 }, ...] }
 * await client.request("sessions.usage.logs", { key: "agent:main:main", limit: 2 });
 * // { logs: [{ timestamp: ..., role: "user", content: "hi" }, { timestamp: ..., role:
 * //   "assistant", content: "Hello!", tokens: 150, cost: 0.0009 }] }
 * ```
 */
export const sessionUsageDetailMethods: Record<string, HubMethod> = {
  "sessions.usage.timeseries": {
    scope: Scopes.READ,
    async handler({ method, params: p }, hub) {
      const record = await requestedSession(hub, method, p);
      const calls: CallPoint[] = [];
      const truncated = await readNewestFirst(
        hub,
        record.key,
        USAGE_TIMESERIES_MAX_ENTRIES,
        (entry) => {
          const usage = savedCallUsage(entry.entry);
          const at = entry.entry.at;
          if (usage === undefined || typeof at !== "number" || !Number.isFinite(at)) return true;
          calls.push({
            timestamp: at,
            input: usage.inputTokens,
            output: usage.outputTokens,
            cacheRead: usage.cacheReadTokens,
            cacheWrite: usage.cacheWriteTokens,
            totalTokens: usage.inputTokens + usage.outputTokens,
            cost: usage.costUsd,
          });
          return true;
        },
      );
      calls.reverse();
      return {
        sessionId: record.key,
        points: bucketPoints(calls, USAGE_TIMESERIES_MAX_POINTS),
        ...(truncated ? { truncated: true } : {}),
      };
    },
  },
  "sessions.usage.logs": {
    scope: Scopes.READ,
    async handler({ method, params: p }, hub) {
      const record = await requestedSession(hub, method, p);
      const limit =
        optionalInt(method, p, "limit", { min: 1, max: USAGE_LOGS_MAX_LIMIT }) ??
        USAGE_LOGS_DEFAULT_LIMIT;
      const logs: Array<Record<string, unknown>> = [];
      const discarded = new Set<string>();
      await readNewestFirst(hub, record.key, USAGE_LOGS_MAX_ENTRIES, (entry) => {
        const [live] = liveRecordsNewestFirst([entry], discarded);
        const message = objectOf(live?.entry.message);
        const role = typeof message?.role === "string" ? ROLES[message.role] : undefined;
        if (live === undefined || message === undefined || role === undefined) return true;
        if (live.entry.retry === true) return true;
        const content = logText(String(message.role), message.content);
        if (content.length === 0) return true;
        const at = live.entry.at;
        const usage = role === "assistant" ? savedCallUsage(live.entry) : undefined;
        logs.push({
          timestamp: typeof at === "number" && Number.isFinite(at) ? at : 0,
          role,
          content: cut(content),
          ...(usage === undefined
            ? {}
            : {
                tokens: usage.inputTokens + usage.outputTokens,
                cost: usage.costUsd,
              }),
        });
        return logs.length < limit;
      });
      return { logs: logs.reverse() };
    },
  },
};
