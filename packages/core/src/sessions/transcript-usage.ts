import { InvalidArgumentError } from "../errors.js";
import type { JsonObject } from "../providers/types.js";
import type { TranscriptRecord, TranscriptStore } from "../store/types.js";
import type { CallFigures, CallUsage } from "./agent-loop.js";
import { type UsageTotals, usageDay, zeroUsageTotals } from "./usage.js";

/** Transcript entries read per page. */
const PAGE = 1000;
/** Entries {@link summarizeTranscriptUsage} reads when not told otherwise. */
export const TRANSCRIPT_USAGE_MAX_ENTRIES = 100_000;

/** Options of {@link summarizeTranscriptUsage}. */
export interface TranscriptUsageOptions {
  /** Only entries at or after this time (epoch ms). Default: from the first. */
  from?: number;
  /** Only entries before this time (epoch ms). Default: to the last. */
  to?: number;
  /**
   * The most entries read (newest first); past it the summary covers the newest ones only and
   * says `truncated: true`. Default {@link TRANSCRIPT_USAGE_MAX_ENTRIES}.
   */
  maxEntries?: number;
}

/** Messages of a span of a transcript, by kind. */
export interface TranscriptMessageCounts {
  /** `user + assistant + toolResults`. */
  total: number;
  /** What users (and hosts, channels, cron) sent; not the loop's own requests. */
  user: number;
  assistant: number;
  /** Tool calls the model made (several may be in one assistant message). */
  toolCalls: number;
  toolResults: number;
  /** Tool results that were errors. */
  errors: number;
}

/** Model call durations of a span: count and milliseconds. */
export interface CallLatency {
  count: number;
  avgMs: number;
  p95Ms: number;
  minMs: number;
  maxMs: number;
}

/** What {@link summarizeTranscriptUsage} found. */
export interface TranscriptUsageSummary {
  /** Every model call saved in the span (compactions' included). */
  totals: UsageTotals;
  /** Per UTC day (`YYYY-MM-DD`), oldest first; only days with model calls. */
  byDay: Array<{ day: string; totals: UsageTotals }>;
  /** Per provider and model, most costly first. */
  byModel: Array<{ provider: string; model: string; totals: UsageTotals }>;
  /** Per UTC day, provider and model, oldest day first. */
  byDayModel: Array<{ day: string; provider: string; model: string; totals: UsageTotals }>;
  /** Messages of the span, as the conversation shows them (runs discarded after a crash left out). */
  messages: TranscriptMessageCounts;
  /** The same per UTC day, oldest first; only days with messages. */
  messagesByDay: Array<{ day: string } & TranscriptMessageCounts>;
  /** Tool calls by tool name, most called first. */
  tools: Array<{ name: string; calls: number }>;
  /** Model call durations (calls saved with one). */
  latency: CallLatency | undefined;
  /** Model call durations per UTC day, oldest first. */
  latencyByDay: Array<{ day: string } & CallLatency>;
  /** The first and last entry of the span (epoch ms). */
  firstActivity: number | undefined;
  lastActivity: number | undefined;
  /**
   * Assistant messages of the span saved without usage: written before sessions saved it
   * with the message, imported, or answered by a model that reported none. Their calls are
   * not in `totals`.
   */
  unmetered: number;
  /** Entries read. */
  entriesRead: number;
  /** Whether `maxEntries` stopped the scan before the span's start. */
  truncated: boolean;
}

function zeroCounts(): TranscriptMessageCounts {
  return { total: 0, user: 0, assistant: 0, toolCalls: 0, toolResults: 0, errors: 0 };
}

/** A finite, non-negative number from a saved entry, else 0 (an entry may be anything). */
function amount(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : 0;
}

/**
 * A model call's usage as read back from a transcript entry (see {@link savedCallUsage}): a
 * {@link CallUsage} whose `durationMs` may be missing.
 */
export interface SavedCallUsage extends CallFigures {
  durationMs?: number;
}

/**
 * The model call usage saved with a transcript entry (an assistant message's, a
 * compaction's), its numbers checked: a count or cost that is not a finite number >= 0 reads
 * as 0, and `durationMs` is there only when it is one. `undefined` when the entry has none
 * (or one without a provider and model): an entry may have been written by anything.
 */
export function savedCallUsage(entry: JsonObject): SavedCallUsage | undefined {
  const usage = entry.usage;
  if (typeof usage !== "object" || usage === null || Array.isArray(usage)) return undefined;
  if (typeof usage.provider !== "string" || typeof usage.model !== "string") return undefined;
  const saved: SavedCallUsage = {
    provider: usage.provider,
    model: usage.model,
    inputTokens: amount(usage.inputTokens),
    outputTokens: amount(usage.outputTokens),
    cacheReadTokens: amount(usage.cacheReadTokens),
    cacheWriteTokens: amount(usage.cacheWriteTokens),
    costUsd: amount(usage.costUsd),
  };
  const ms = usage.durationMs;
  if (typeof ms === "number" && Number.isFinite(ms) && ms >= 0) saved.durationMs = ms;
  return saved;
}

function addCall(totals: UsageTotals, usage: SavedCallUsage): void {
  totals.calls += 1;
  totals.inputTokens += usage.inputTokens;
  totals.outputTokens += usage.outputTokens;
  totals.cacheReadTokens += usage.cacheReadTokens;
  totals.cacheWriteTokens += usage.cacheWriteTokens;
  totals.costUsd += usage.costUsd;
}

function latencyOf(durations: number[]): CallLatency | undefined {
  if (durations.length === 0) return undefined;
  const sorted = [...durations].sort((a, b) => a - b);
  const sum = sorted.reduce((total, ms) => total + ms, 0);
  return {
    count: sorted.length,
    avgMs: sum / sorted.length,
    p95Ms: sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)]!,
    minMs: sorted[0]!,
    maxMs: sorted[sorted.length - 1]!,
  };
}

function slotOf<T>(map: Map<string, T>, key: string, make: () => T): T {
  let slot = map.get(key);
  if (slot === undefined) {
    slot = make();
    map.set(key, slot);
  }
  return slot;
}

function byDayOrder(a: { day: string }, b: { day: string }): number {
  return a.day < b.day ? -1 : a.day > b.day ? 1 : 0;
}

/**
 * Sums what a session's transcript says it used over a span of time: every model call saved
 * with an assistant message (and with a compaction), per UTC day and per model, with its
 * messages, tool calls and call durations. This is a session's usage per day, which the
 * runtime's {@link UsageMeter} (per day, agent and model) and the session's metadata (its
 * totals) do not keep.
 *
 * Reads the transcript newest first, one page at a time, and stops at the first entry older
 * than `from` (entries are appended in time order) or after `maxEntries`. Model calls of runs
 * discarded after a crash count (they were paid for); their messages do not (the conversation
 * does not show them); the history a fork copied from its parent (`forkedFrom`) is the
 * parent's. Entries that are not what a session writes are skipped, not trusted.
 *
 * @example
 * ```ts
 * const day = Date.UTC(2026, 10, 24);
 * const usage = await summarizeTranscriptUsage(store.transcripts, "agent:main:main", {
 *   from: day,
 *   to: day + 86_400_000,
 * });
 * console.log(usage.totals.costUsd, usage.messages.user, usage.tools);
 * ```
 */
export async function summarizeTranscriptUsage(
  transcripts: Pick<TranscriptStore, "read">,
  sessionKey: string,
  options: TranscriptUsageOptions = {},
): Promise<TranscriptUsageSummary> {
  const from = options.from ?? Number.NEGATIVE_INFINITY;
  const to = options.to ?? Number.POSITIVE_INFINITY;
  const maxEntries = options.maxEntries ?? TRANSCRIPT_USAGE_MAX_ENTRIES;
  if (!(from <= to)) {
    throw new InvalidArgumentError(`summarizeTranscriptUsage: from (${from}) is after to (${to})`);
  }
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
    throw new InvalidArgumentError(
      `summarizeTranscriptUsage: maxEntries must be a positive integer, got ${maxEntries}`,
    );
  }
  const totals = zeroUsageTotals();
  const days = new Map<string, UsageTotals>();
  const models = new Map<string, { provider: string; model: string; totals: UsageTotals }>();
  const dayModels = new Map<
    string,
    { day: string; provider: string; model: string; totals: UsageTotals }
  >();
  const messages = zeroCounts();
  const messageDays = new Map<string, TranscriptMessageCounts>();
  const tools = new Map<string, number>();
  const durations: number[] = [];
  const dayDurations = new Map<string, number[]>();
  const discarded = new Set<string>();
  let firstActivity: number | undefined;
  let lastActivity: number | undefined;
  let unmetered = 0;
  let entriesRead = 0;
  let truncated = false;

  const visit = (record: TranscriptRecord): void => {
    const entry = record.entry;
    const runId = typeof entry.runId === "string" ? entry.runId : undefined;
    if (entry.discarded === true) {
      if (runId !== undefined) discarded.add(runId);
      return;
    }
    // Copied from the session a fork was made of: its calls and messages are that session's.
    if (entry.forkedFrom !== undefined) return;
    const at = entry.at as number;
    const day = usageDay(at);
    lastActivity ??= at;
    firstActivity = at;
    const usage = savedCallUsage(entry);
    if (usage !== undefined) {
      addCall(totals, usage);
      addCall(slotOf(days, day, zeroUsageTotals), usage);
      const { provider, model } = usage;
      const ref = `${provider}/${model}`;
      addCall(
        slotOf(models, ref, () => ({ provider, model, totals: zeroUsageTotals() })).totals,
        usage,
      );
      addCall(
        slotOf(dayModels, `${day} ${ref}`, () => ({
          day,
          provider,
          model,
          totals: zeroUsageTotals(),
        })).totals,
        usage,
      );
      const ms = usage.durationMs;
      if (ms !== undefined) {
        durations.push(ms);
        slotOf(dayDurations, day, () => []).push(ms);
      }
    }
    if (runId !== undefined && discarded.has(runId)) return;
    const message = entry.message;
    if (typeof message !== "object" || message === null || Array.isArray(message)) return;
    const content = Array.isArray(message.content) ? message.content : [];
    const counts = slotOf(messageDays, day, zeroCounts);
    const count = (field: keyof TranscriptMessageCounts, n = 1) => {
      messages[field] += n;
      counts[field] += n;
    };
    switch (message.role) {
      case "user":
        if (entry.retry === true) return;
        count("user");
        count("total");
        return;
      case "assistant": {
        count("assistant");
        count("total");
        if (usage === undefined) unmetered++;
        for (const part of content) {
          if (typeof part !== "object" || part === null || Array.isArray(part)) continue;
          if (part.type !== "tool-call") continue;
          count("toolCalls");
          const name = typeof part.toolName === "string" ? part.toolName : "unknown";
          tools.set(name, (tools.get(name) ?? 0) + 1);
        }
        return;
      }
      case "tool":
        for (const part of content) {
          if (typeof part !== "object" || part === null || Array.isArray(part)) continue;
          if (part.type !== "tool-result") continue;
          count("toolResults");
          count("total");
          if (part.isError === true) count("errors");
        }
        return;
      default:
        return;
    }
  };

  let before: number | undefined;
  scan: while (true) {
    const page = await transcripts.read(sessionKey, {
      order: "desc",
      limit: Math.min(PAGE, maxEntries - entriesRead),
      ...(before === undefined ? {} : { beforeSeq: before }),
    });
    for (const record of page) {
      entriesRead++;
      const at = record.entry.at;
      if (typeof at !== "number" || !Number.isFinite(at)) continue;
      if (at < from) break scan;
      if (at >= to) {
        // Later than the span, but a discard marker there may cancel a run inside it.
        if (record.entry.discarded === true && typeof record.entry.runId === "string") {
          discarded.add(record.entry.runId);
        }
        continue;
      }
      visit(record);
    }
    if (page.length === 0 || page.at(-1)!.seq <= 1) break;
    if (entriesRead >= maxEntries) {
      truncated = true;
      break;
    }
    before = page.at(-1)!.seq;
  }

  const modelList = [...models.values()].sort(
    (a, b) =>
      b.totals.costUsd - a.totals.costUsd ||
      b.totals.inputTokens +
        b.totals.outputTokens -
        (a.totals.inputTokens + a.totals.outputTokens) ||
      (`${a.provider}/${a.model}` < `${b.provider}/${b.model}` ? -1 : 1),
  );
  return {
    totals,
    byDay: [...days.entries()].map(([day, t]) => ({ day, totals: t })).sort(byDayOrder),
    byModel: modelList,
    byDayModel: [...dayModels.values()].sort(
      (a, b) =>
        byDayOrder(a, b) ||
        b.totals.costUsd - a.totals.costUsd ||
        (`${a.provider}/${a.model}` < `${b.provider}/${b.model}` ? -1 : 1),
    ),
    messages,
    messagesByDay: [...messageDays.entries()]
      .map(([day, counts]) => ({ day, ...counts }))
      .sort(byDayOrder),
    tools: [...tools.entries()]
      .map(([name, calls]) => ({ name, calls }))
      .sort((a, b) => b.calls - a.calls || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    latency: latencyOf(durations),
    latencyByDay: [...dayDurations.entries()]
      .map(([day, ms]) => ({ day, ...latencyOf(ms)! }))
      .sort(byDayOrder),
    firstActivity,
    lastActivity,
    unmetered,
    entriesRead,
    truncated,
  };
}
