/**
 * `sessions.usage`: tokens and cost over a range of days, per session and in aggregate, in
 * OpenClaw's result shape.
 *
 * BeamClaw keeps usage in two places. The runtime's usage meter keeps totals per UTC day,
 * agent, provider and model in the store's key/value space
 * (`usage:<YYYY-MM-DD>:<agentId>:<provider>:<model>`), counting every session, kept or
 * deleted. Each session's transcript keeps every model call with the assistant message it
 * produced (`usage` of the entry: tokens, cost, duration, provider and model), with its
 * messages and tool calls. So the totals and the per model, provider, agent and day
 * aggregates are the meter's, exact for the UTC days of the range; each session's figures,
 * and the message, tool and channel aggregates, are summed from the transcripts of the
 * sessions active in the range (`summarizeTranscriptUsage`).
 */
import {
  iterateKvKeys,
  parseSessionKey,
  type SessionRecord,
  summarizeTranscriptUsage,
  type TranscriptUsageSummary,
  usageDay,
} from "@beamclaw/core";
import type { GatewayHub, HubMethod } from "../hub.js";
import { ErrorCodes, Scopes } from "../protocol/constants.js";
import { GatewayError, invalidRequest } from "../protocol/errors.js";
import {
  optionalBool,
  optionalEnum,
  optionalInt,
  optionalString,
  type ParamsObject,
} from "../protocol/params.js";
import { noSuchSession } from "./session-helpers.js";

/** Sessions `sessions.usage` answers when not told otherwise (`limit`). */
export const SESSIONS_USAGE_DEFAULT_LIMIT = 50;
/** The most sessions `sessions.usage` answers (the largest `limit` it takes). */
export const SESSIONS_USAGE_MAX_LIMIT = 1000;
/** Days `sessions.usage` covers when given neither dates nor `range`: the last 30, today's too. */
export const SESSIONS_USAGE_DEFAULT_DAYS = 30;
/** The most days one `sessions.usage` covers; `range: "all"` means the last this many. */
export const SESSIONS_USAGE_MAX_DAYS = 366;
/**
 * The most session records one `sessions.usage` reads: the most recently updated ones active
 * since the range's start. Past it the answer says `truncated: true`.
 */
export const SESSIONS_USAGE_MAX_SCANNED = 10_000;
/**
 * The most transcript entries one `sessions.usage` reads, over all its sessions: the listed
 * sessions' first, then the others' for the aggregates. Past it the answer says
 * `truncated: true`.
 */
export const SESSIONS_USAGE_MAX_ENTRIES = 500_000;
/** The most transcript entries read of one session (its newest in the range). */
export const SESSIONS_USAGE_MAX_SESSION_ENTRIES = 50_000;
/** The fewest entries a listed session is read for, however little of the budget is left. */
const MIN_SESSION_ENTRIES = 1000;

const DAY_MS = 86_400_000;
const SESSION_PAGE = 500;
/** Meter totals read at the same time. */
const READ_CONCURRENCY = 16;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const UTC_OFFSET = /^UTC([+-])(\d{1,2})(?::([0-5]\d))?$/;

const RANGES = ["7d", "30d", "90d", "1y", "all"] as const;
const RANGE_DAYS: Record<(typeof RANGES)[number], number> = {
  "7d": 7,
  "30d": 30,
  "90d": 90,
  "1y": 365,
  all: SESSIONS_USAGE_MAX_DAYS,
};

/** UTC days from `startDay` to `endDay`; `startMs` inclusive, `endMs` exclusive. */
export interface DayRange {
  startDay: string;
  endDay: string;
  startMs: number;
  endMs: number;
}

/** OpenClaw's `CostUsageTotals`. */
export interface CostTotals {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  totalTokens: number;
  totalCost: number;
  inputCost: number;
  outputCost: number;
  cacheReadCost: number;
  cacheWriteCost: number;
  missingCostEntries: number;
}

/** One meter total: a day, agent, provider and model, and what the meter summed for them. */
export interface MeterRow {
  day: string;
  agentId: string;
  provider: string;
  model: string;
  calls: number;
  totals: CostTotals;
}

function zeroTotals(): CostTotals {
  return {
    input: 0,
    output: 0,
    cacheRead: 0,
    cacheWrite: 0,
    totalTokens: 0,
    totalCost: 0,
    // BeamClaw meters a call's cost as one figure: there is no breakdown by kind of token.
    inputCost: 0,
    outputCost: 0,
    cacheReadCost: 0,
    cacheWriteCost: 0,
    missingCostEntries: 0,
  };
}

function addTotals(total: CostTotals, more: CostTotals): void {
  total.input += more.input;
  total.output += more.output;
  total.cacheRead += more.cacheRead;
  total.cacheWrite += more.cacheWrite;
  total.totalTokens += more.totalTokens;
  total.totalCost += more.totalCost;
}

/** A count from the store: written by hand or by an older version, it may be anything. */
function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/** Totals from the meter's or a session's fields (`inputTokens`, ..., `costUsd`). */
function totalsOf(source: Record<string, unknown>): CostTotals {
  const totals = zeroTotals();
  totals.input = count(source.inputTokens);
  totals.output = count(source.outputTokens);
  totals.cacheRead = count(source.cacheReadTokens);
  totals.cacheWrite = count(source.cacheWriteTokens);
  // As `usage.cost` and session rows count them: what was read and written, caches aside.
  totals.totalTokens = totals.input + totals.output;
  totals.totalCost = count(source.costUsd);
  return totals;
}

function badParam(method: string, field: string, why: string, extra: object = {}): GatewayError {
  return invalidRequest(`invalid ${method} params: ${why}`, {
    code: "INVALID_PARAMS",
    field,
    ...extra,
  });
}

// ------------------------------------------------------------------ days

/** The start (epoch ms) of the UTC day `value` names; a non-date is `INVALID_PARAMS`. */
function dayStartOf(method: string, field: string, value: string): number {
  const match = DATE.exec(value);
  if (match !== null) {
    const start = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
    // Date.UTC rolls 2026-02-30 over to March and maps years below 100 to the 1900s.
    if (usageDay(start) === value) return start;
  }
  throw badParam(method, field, `${field} must be a calendar date, YYYY-MM-DD`);
}

/** The `days` UTC days from the one starting at `startMs`. */
export function dayRange(startMs: number, days: number): DayRange {
  const endMs = startMs + days * DAY_MS;
  return { startDay: usageDay(startMs), endDay: usageDay(endMs - 1), startMs, endMs };
}

/**
 * The days a request covers: `startDate` and `endDate` (both or neither, at most
 * {@link SESSIONS_USAGE_MAX_DAYS} days), else `range`'s last days, else the last 30, up to
 * and with today (UTC).
 */
function requestedDays(method: string, p: ParamsObject, now: number): DayRange {
  const startDate = optionalString(method, p, "startDate");
  const endDate = optionalString(method, p, "endDate");
  const range = optionalEnum(method, p, "range", RANGES);
  if (startDate === undefined && endDate === undefined) {
    const days = range === undefined ? SESSIONS_USAGE_DEFAULT_DAYS : RANGE_DAYS[range];
    const todayStart = Math.floor(now / DAY_MS) * DAY_MS;
    return dayRange(todayStart - (days - 1) * DAY_MS, days);
  }
  if (startDate === undefined || endDate === undefined) {
    throw badParam(
      method,
      startDate === undefined ? "startDate" : "endDate",
      "startDate and endDate must be given together",
    );
  }
  const startMs = dayStartOf(method, "startDate", startDate);
  const endStart = dayStartOf(method, "endDate", endDate);
  if (startMs > endStart) {
    throw badParam(method, "startDate", "startDate must not be after endDate");
  }
  const days = (endStart - startMs) / DAY_MS + 1;
  if (days > SESSIONS_USAGE_MAX_DAYS) {
    throw badParam(
      method,
      "endDate",
      `a range covers at most ${SESSIONS_USAGE_MAX_DAYS} days (this one ${days})`,
      { maxDays: SESSIONS_USAGE_MAX_DAYS },
    );
  }
  return dayRange(startMs, days);
}

/** A `UTC±H[:MM]` offset in minutes east of UTC; anything else is `INVALID_PARAMS`. */
function utcOffsetParam(method: string, p: ParamsObject): number | undefined {
  const text = optionalString(method, p, "utcOffset", { maxLength: 16 });
  if (text === undefined) return undefined;
  const match = UTC_OFFSET.exec(text);
  const minutes =
    match === null
      ? Number.NaN
      : (match[1] === "+" ? 1 : -1) * (Number(match[2]) * 60 + Number(match[3] ?? "0"));
  if (!(minutes >= -12 * 60 && minutes <= 14 * 60)) {
    throw badParam(method, "utcOffset", "utcOffset must be UTC-12:00 through UTC+14:00");
  }
  return minutes;
}

/** The offset (minutes east of UTC) of an IANA zone at a time, from `longOffset` (`GMT+05:30`). */
function zoneOffsetReader(timeZone: string): ((at: number) => number) | undefined {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat("en-US", { timeZone, timeZoneName: "longOffset" });
  } catch {
    return undefined;
  }
  return (at) => {
    const name = format.formatToParts(at).find((part) => part.type === "timeZoneName")?.value;
    const match = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(name ?? "");
    if (match === null) return Number.NaN;
    if (match[1] === undefined) return 0;
    return (match[1] === "+" ? 1 : -1) * (Number(match[2]) * 60 + Number(match[3]));
  };
}

/**
 * Checks that the days the caller means are UTC days, the only ones the meter keeps. OpenClaw
 * reads the dates in UTC (`mode` absent or `utc`), in the gateway host's zone (`gateway`), or
 * in `timeZone` (else `utcOffset`) with `specific`. A zone is honoured when it is UTC on every
 * day of the range (then its days are the UTC days: `Europe/London` in January); any other is
 * refused (`UNSUPPORTED_TIME_ZONE`) rather than answered with days it did not ask for.
 */
function checkUtcDays(method: string, p: ParamsObject, days: DayRange): void {
  const mode = optionalEnum(method, p, "mode", ["utc", "gateway", "specific"] as const);
  const timeZone = optionalString(method, p, "timeZone", { nonEmpty: true, maxLength: 100 });
  const utcOffset = utcOffsetParam(method, p);
  let offsetAt: (at: number) => number;
  let field: string;
  let zone: string;
  if (mode === undefined || mode === "utc") return;
  if (mode === "gateway") {
    offsetAt = (at) => -new Date(at).getTimezoneOffset();
    field = "mode";
    zone = `the gateway's time zone (${Intl.DateTimeFormat().resolvedOptions().timeZone})`;
  } else {
    const reader = timeZone === undefined ? undefined : zoneOffsetReader(timeZone.trim());
    if (reader !== undefined) {
      offsetAt = reader;
      field = "timeZone";
      zone = timeZone!;
    } else if (utcOffset !== undefined) {
      // As OpenClaw: a zone this gateway's ICU does not know falls back to the offset.
      offsetAt = () => utcOffset;
      field = "utcOffset";
      zone = p.utcOffset as string;
    } else if (timeZone !== undefined) {
      throw badParam(method, "timeZone", "timeZone must be an IANA time zone");
    } else {
      return;
    }
  }
  for (let at = days.startMs; at < days.endMs; at += DAY_MS) {
    if (offsetAt(at) !== 0 || offsetAt(at + DAY_MS - 1) !== 0) {
      throw invalidRequest(
        `invalid ${method} params: usage is kept per UTC day, and ${zone} is not UTC on ` +
          `${usageDay(at)}; ask with mode "utc" (or a zone that is UTC on every day asked for)`,
        { code: "UNSUPPORTED_TIME_ZONE", field, timeZone: "UTC" },
      );
    }
  }
}

// ------------------------------------------------------------------ the meter's totals

/** The longest common start of two strings. */
function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

/**
 * The meter's totals of the range's days (of `agentId`, when given), from the store, so
 * every process sharing it is counted. One listing of the keys the range's days share a
 * prefix with, rather than one per day.
 */
export async function meterRows(
  hub: GatewayHub,
  days: DayRange,
  agentId?: string,
): Promise<MeterRow[]> {
  await hub.runtime.usage.flush();
  const kv = hub.runtime.store.kv;
  const prefix = commonPrefix(`usage:${days.startDay}:`, `usage:${days.endDay}:`);
  const wanted: Array<Omit<MeterRow, "calls" | "totals"> & { key: string }> = [];
  // Page by page: the shared prefix of a long range can hold every usage key there is.
  for await (const key of iterateKvKeys(kv, prefix)) {
    // usage:<day>:<agentId>:<provider>:<model>; a model's name may hold colons (`llama3:8b`).
    const [, day, agent, provider, ...model] = key.split(":");
    if (day === undefined || agent === undefined || provider === undefined) continue;
    if (!DATE.test(day) || day < days.startDay || day > days.endDay || model.length === 0) {
      continue;
    }
    if (agentId !== undefined && agent !== agentId) continue;
    wanted.push({ key, day, agentId: agent, provider, model: model.join(":") });
  }
  const rows: MeterRow[] = [];
  for (let at = 0; at < wanted.length; at += READ_CONCURRENCY) {
    const batch = wanted.slice(at, at + READ_CONCURRENCY);
    const values = await Promise.all(batch.map((w) => kv.get(w.key)));
    for (const [i, w] of batch.entries()) {
      const value = values[i];
      if (typeof value !== "object" || value === null || Array.isArray(value)) continue;
      const source = value as Record<string, unknown>;
      rows.push({
        day: w.day,
        agentId: w.agentId,
        provider: w.provider,
        model: w.model,
        calls: count(source.calls),
        totals: totalsOf(source),
      });
    }
  }
  return rows;
}

type ModelUsage = { provider: string; model?: string; count: number; totals: CostTotals };

/** Code unit order (day keys, provider and model names), for stable answers. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byCostThenTokens(
  a: { totals: CostTotals; name: string },
  b: { totals: CostTotals; name: string },
): number {
  return (
    b.totals.totalCost - a.totals.totalCost ||
    b.totals.totalTokens - a.totals.totalTokens ||
    compareText(a.name, b.name)
  );
}

/** Messages, tool calls and tool errors of one day, from the transcripts read. */
type DayMessages = { messages: number; toolCalls: number; errors: number };

/**
 * Totals and aggregates from the meter's rows (or rows made of one session's transcript), in
 * OpenClaw's `SessionsUsageAggregates` shape; `dayMessages` fills each day's message counts.
 */
function meterAggregates(rows: MeterRow[], dayMessages: Map<string, DayMessages> = new Map()) {
  const totals = zeroTotals();
  const byModel = new Map<string, ModelUsage>();
  const byProvider = new Map<string, ModelUsage>();
  const byAgent = new Map<string, CostTotals>();
  const daily = new Map<string, { date: string; tokens: number; cost: number }>();
  const modelDaily = new Map<
    string,
    { date: string; provider: string; model: string; tokens: number; cost: number; count: number }
  >();
  for (const row of rows) {
    addTotals(totals, row.totals);
    const modelKey = `${row.provider}/${row.model}`;
    const model = byModel.get(modelKey) ?? {
      provider: row.provider,
      model: row.model,
      count: 0,
      totals: zeroTotals(),
    };
    model.count += row.calls;
    addTotals(model.totals, row.totals);
    byModel.set(modelKey, model);
    const provider = byProvider.get(row.provider) ?? {
      provider: row.provider,
      count: 0,
      totals: zeroTotals(),
    };
    provider.count += row.calls;
    addTotals(provider.totals, row.totals);
    byProvider.set(row.provider, provider);
    const agent = byAgent.get(row.agentId) ?? zeroTotals();
    addTotals(agent, row.totals);
    byAgent.set(row.agentId, agent);
    const day = daily.get(row.day) ?? { date: row.day, tokens: 0, cost: 0 };
    day.tokens += row.totals.totalTokens;
    day.cost += row.totals.totalCost;
    daily.set(row.day, day);
    const dayModelKey = `${row.day} ${modelKey}`;
    const dayModel = modelDaily.get(dayModelKey) ?? {
      date: row.day,
      provider: row.provider,
      model: row.model,
      tokens: 0,
      cost: 0,
      count: 0,
    };
    dayModel.tokens += row.totals.totalTokens;
    dayModel.cost += row.totals.totalCost;
    dayModel.count += row.calls;
    modelDaily.set(dayModelKey, dayModel);
  }
  const sorted = (map: Map<string, ModelUsage>) =>
    [...map.entries()]
      .map(([name, usage]) => ({ name, usage, totals: usage.totals }))
      .sort(byCostThenTokens)
      .map((entry) => entry.usage);
  return {
    totals,
    byModel: sorted(byModel),
    byProvider: sorted(byProvider),
    byAgent: [...byAgent.entries()]
      .map(([name, agentTotals]) => ({ name, totals: agentTotals }))
      .sort(byCostThenTokens)
      .map(({ name, totals: agentTotals }) => ({ agentId: name, totals: agentTotals })),
    modelDaily: [...modelDaily.values()].sort(
      (a, b) =>
        compareText(a.date, b.date) ||
        b.cost - a.cost ||
        compareText(`${a.provider}/${a.model}`, `${b.provider}/${b.model}`),
    ),
    // A day may have messages without model calls (an injection, a failed call).
    daily: [...new Set([...daily.keys(), ...dayMessages.keys()])].sort(compareText).map((date) => ({
      ...(daily.get(date) ?? { date, tokens: 0, cost: 0 }),
      ...(dayMessages.get(date) ?? { messages: 0, toolCalls: 0, errors: 0 }),
    })),
  };
}

// ------------------------------------------------------------------ sessions

/**
 * Whether a session was active in the range, as far as its metadata tells: created before the
 * range's end, last run (or, for a record without `lastRunAt` that has usage, last updated)
 * at or after its start.
 */
function activeIn(record: SessionRecord, days: DayRange): boolean {
  const r = record as SessionRecord & Record<string, unknown>;
  const hasUsage = count(r.inputTokens) + count(r.outputTokens) + count(r.costUsd) > 0;
  const lastActive =
    typeof r.lastRunAt === "number" ? r.lastRunAt : hasUsage ? record.updatedAt : undefined;
  return lastActive !== undefined && lastActive >= days.startMs && record.createdAt < days.endMs;
}

/**
 * The sessions active in the range (of `agentId`, when given), newest update first: the
 * records updated since the range's start, at most {@link SESSIONS_USAGE_MAX_SCANNED} read.
 */
async function activeSessions(
  hub: GatewayHub,
  days: DayRange,
  agentId: string | undefined,
): Promise<{ matched: SessionRecord[]; truncated: boolean }> {
  const matched: SessionRecord[] = [];
  let scanned = 0;
  let cursor: string | undefined;
  do {
    // One record past the bound is enough to know that there are more.
    const page = await hub.runtime.store.sessions.list({
      limit: Math.min(SESSION_PAGE, SESSIONS_USAGE_MAX_SCANNED - scanned + 1),
      updatedSince: days.startMs,
      ...(agentId === undefined ? {} : { agentId }),
      ...(cursor === undefined ? {} : { cursor }),
    });
    for (const record of page.items) {
      if (scanned === SESSIONS_USAGE_MAX_SCANNED) return { matched, truncated: true };
      scanned++;
      if (activeIn(record, days)) matched.push(record);
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { matched, truncated: false };
}

/**
 * The transcripts of `records` summed over the range, in order: the first `listed` always
 * (each read for at least {@link MIN_SESSION_ENTRIES} entries), the rest while
 * {@link SESSIONS_USAGE_MAX_ENTRIES} lasts. `complete` says whether every record was read
 * whole over the range.
 */
async function transcriptUsage(
  hub: GatewayHub,
  records: readonly SessionRecord[],
  days: DayRange,
  listed: number,
): Promise<{ summaries: Map<string, TranscriptUsageSummary>; complete: boolean }> {
  const summaries = new Map<string, TranscriptUsageSummary>();
  const transcripts = hub.runtime.store.transcripts;
  let budget = SESSIONS_USAGE_MAX_ENTRIES;
  let complete = true;
  for (let at = 0; at < records.length; at += READ_CONCURRENCY) {
    if (budget <= 0 && at >= listed) return { summaries, complete: false };
    const batch = records.slice(at, at + READ_CONCURRENCY);
    const maxEntries = Math.min(
      SESSIONS_USAGE_MAX_SESSION_ENTRIES,
      Math.max(MIN_SESSION_ENTRIES, Math.floor(budget / batch.length)),
    );
    const read = await Promise.all(
      batch.map((record) =>
        summarizeTranscriptUsage(transcripts, record.key, {
          from: days.startMs,
          to: days.endMs,
          maxEntries,
        }),
      ),
    );
    for (const [i, summary] of read.entries()) {
      summaries.set(batch[i]!.key, summary);
      budget -= summary.entriesRead;
      if (summary.truncated) complete = false;
    }
  }
  return { summaries, complete };
}

/** Totals of a transcript summary (`inputTokens`, ...), with its answers saved without usage. */
function summaryTotals(summary: TranscriptUsageSummary): CostTotals {
  const totals = totalsOf(summary.totals);
  totals.missingCostEntries = summary.unmetered;
  return totals;
}

/** One session's transcript as meter rows (one per day and model), for {@link meterAggregates}. */
function summaryRows(summary: TranscriptUsageSummary, agentId: string): MeterRow[] {
  return summary.byDayModel.map((row) => ({
    day: row.day,
    agentId,
    provider: row.provider,
    model: row.model,
    calls: row.totals.calls,
    totals: totalsOf(row.totals),
  }));
}

/** `tokens` as every figure here counts them: input plus output. */
function tokensOf(totals: { inputTokens: number; outputTokens: number }): number {
  return totals.inputTokens + totals.outputTokens;
}

/** A session's usage over the range, as OpenClaw's `SessionCostSummary`. */
function sessionCostSummary(summary: TranscriptUsageSummary): Record<string, unknown> {
  const { firstActivity, lastActivity, latency } = summary;
  const activity = new Set([
    ...summary.byDay.map((d) => d.day),
    ...summary.messagesByDay.map((d) => d.day),
  ]);
  return {
    ...summaryTotals(summary),
    ...(firstActivity === undefined ? {} : { firstActivity }),
    ...(lastActivity === undefined ? {} : { lastActivity }),
    ...(firstActivity === undefined || lastActivity === undefined
      ? {}
      : { durationMs: lastActivity - firstActivity }),
    activityDates: [...activity].sort(compareText),
    dailyBreakdown: summary.byDay.map((d) => ({
      date: d.day,
      tokens: tokensOf(d.totals),
      cost: d.totals.costUsd,
    })),
    dailyMessageCounts: summary.messagesByDay.map(({ day, ...counts }) => ({
      date: day,
      ...counts,
    })),
    dailyLatency: summary.latencyByDay.map(({ day, ...stats }) => ({ date: day, ...stats })),
    dailyModelUsage: summary.byDayModel.map((d) => ({
      date: d.day,
      provider: d.provider,
      model: d.model,
      tokens: tokensOf(d.totals),
      cost: d.totals.costUsd,
      count: d.totals.calls,
    })),
    messageCounts: summary.messages,
    toolUsage: {
      totalCalls: summary.messages.toolCalls,
      uniqueTools: summary.tools.length,
      tools: summary.tools.map((t) => ({ name: t.name, count: t.calls })),
    },
    modelUsage: summary.byModel.map((m) => ({
      provider: m.provider,
      model: m.model,
      count: m.totals.calls,
      totals: totalsOf(m.totals),
    })),
    ...(latency === undefined ? {} : { latency }),
    // More entries in the range than one session is read for: the newest of them.
    ...(summary.truncated ? { truncated: true } : {}),
  };
}

/** The message, tool and channel aggregates of the transcripts read. */
function transcriptAggregates(
  records: readonly SessionRecord[],
  summaries: ReadonlyMap<string, TranscriptUsageSummary>,
) {
  const messages = { ...NO_MESSAGES };
  const tools = new Map<string, number>();
  const channels = new Map<string, CostTotals>();
  const dayMessages = new Map<string, DayMessages>();
  for (const record of records) {
    const summary = summaries.get(record.key);
    if (summary === undefined) continue;
    for (const field of Object.keys(messages) as Array<keyof typeof messages>) {
      messages[field] += summary.messages[field];
    }
    for (const tool of summary.tools)
      tools.set(tool.name, (tools.get(tool.name) ?? 0) + tool.calls);
    for (const day of summary.messagesByDay) {
      const slot = dayMessages.get(day.day) ?? { messages: 0, toolCalls: 0, errors: 0 };
      slot.messages += day.total;
      slot.toolCalls += day.toolCalls;
      slot.errors += day.errors;
      dayMessages.set(day.day, slot);
    }
    const channel = (record as SessionRecord & { channel?: unknown }).channel;
    if (typeof channel === "string" && summary.totals.calls > 0) {
      const totals = channels.get(channel) ?? zeroTotals();
      addTotals(totals, summaryTotals(summary));
      channels.set(channel, totals);
    }
  }
  const toolList = [...tools.entries()]
    .map(([name, count]) => ({ name, count }))
    .sort((a, b) => b.count - a.count || compareText(a.name, b.name));
  return {
    messages,
    tools: { totalCalls: messages.toolCalls, uniqueTools: toolList.length, tools: toolList },
    byChannel: [...channels.entries()]
      .map(([name, totals]) => ({ name, totals }))
      .sort(byCostThenTokens)
      .map(({ name, totals }) => ({ channel: name, totals })),
    dayMessages,
  };
}

function splitRef(ref: string | undefined): { provider: string; model: string } | undefined {
  const slash = ref?.indexOf("/") ?? -1;
  return ref === undefined || slash <= 0
    ? undefined
    : { provider: ref.slice(0, slash), model: ref.slice(slash + 1) };
}

/**
 * A session as OpenClaw's `SessionUsageEntry`; its `usage` is its transcript's over the range
 * (`null` when it was not read).
 */
function usageEntry(
  hub: GatewayHub,
  record: SessionRecord,
  summary: TranscriptUsageSummary | undefined,
  includeContextWeight: boolean,
): Record<string, unknown> {
  const r = record as SessionRecord & Record<string, unknown>;
  const override = splitRef(typeof r.modelOverride === "string" ? r.modelOverride : undefined);
  const current =
    override ?? splitRef(hub.runtime.agents.find((a) => a.id === record.agentId)?.model);
  return {
    key: record.key,
    // A BeamClaw session's id is its key; it keeps no earlier instances (a reset clears its
    // counters), so every row is an instance, whatever `groupBy` asks.
    sessionId: record.key,
    scope: "instance",
    ...(typeof r.displayName === "string" ? { label: r.displayName } : {}),
    updatedAt: record.updatedAt,
    agentId: record.agentId,
    ...(typeof r.channel === "string" ? { channel: r.channel } : {}),
    ...(current === undefined ? {} : { modelProvider: current.provider, model: current.model }),
    ...(override === undefined
      ? {}
      : { providerOverride: override.provider, modelOverride: override.model }),
    usage: summary === undefined ? null : sessionCostSummary(summary),
    // BeamClaw does not keep a report of what the system prompt weighed.
    ...(includeContextWeight ? { contextWeight: null } : {}),
  };
}

/** The session `key` names (`agentId`, when given, must be its agent), or `SESSION_NOT_FOUND`. */
export async function namedSession(
  hub: GatewayHub,
  key: string,
  agentId: string | undefined,
): Promise<SessionRecord> {
  // Parsed, not opened: a read must not start a session (nor refuse one of an agent that is
  // no longer configured, whose usage is still in the store).
  const parsed = parseSessionKey(key);
  const mismatch = (owner: string) =>
    new GatewayError(
      ErrorCodes.INVALID_REQUEST,
      `session ${parsed.key} belongs to agent ${owner}, not ${agentId}`,
      { details: { code: "AGENT_MISMATCH" } },
    );
  if (agentId !== undefined && parsed.agentId !== undefined && parsed.agentId !== agentId) {
    throw mismatch(parsed.agentId);
  }
  const record = await hub.runtime.store.sessions.get(parsed.key);
  if (record === undefined) throw noSuchSession(parsed.key);
  if (agentId !== undefined && record.agentId !== agentId) throw mismatch(record.agentId);
  return record;
}

const NO_MESSAGES = { total: 0, user: 0, assistant: 0, toolCalls: 0, toolResults: 0, errors: 0 };

/**
 * `sessions.usage`, for the gateway's method table (read scope).
 *
 * Params (OpenClaw's `SessionsUsageParams`): `startDate`/`endDate` (`YYYY-MM-DD`, both or
 * neither, at most 366 days), else `range` (`7d`, `30d`, `90d`, `1y`; `all` means the last
 * 366 days), else the last 30 days, up to and with today; `key` (one session: one that does
 * not exist is `SESSION_NOT_FOUND`), `agentId`, `agentScope: "all"` (every agent; not with
 * `key` or `agentId`; without any of the three, the default agent's usage, as OpenClaw);
 * `limit` (sessions answered, 50, at most 1000); `mode`, `timeZone`, `utcOffset` (days are
 * UTC days: a zone that is not UTC on every day of the range is `UNSUPPORTED_TIME_ZONE`);
 * `groupBy`, `includeHistorical` (rows are always `scope: "instance"`: a session keeps no
 * earlier instances), `includeContextWeight` (`contextWeight: null`: not kept).
 *
 * Answers OpenClaw's `SessionsUsageResult`: `{ updatedAt, startDate, endDate, sessions,
 * totals, aggregates: { sessionCount, messages, tools, byModel, byProvider, byAgent,
 * byChannel, modelDaily, daily } }`, plus `timeZone: "UTC"`, `truncated` and `basis`.
 *
 * Where the figures come from (`basis`):
 * - `totals` and the per model, provider, agent and day aggregates are the usage meter's
 *   totals of the range's UTC days (`basis.totals: "daily"`): every session's, deleted ones
 *   too, whatever `limit` and the scan bounds leave out of `sessions`.
 * - Each session's `usage` is summed from its transcript over the range
 *   (`basis.sessionUsage: "transcript"`), as OpenClaw's `SessionCostSummary`: tokens and cost
 *   (`missingCostEntries` counts answers saved without usage, by versions before transcripts
 *   kept it), first and last activity, per day tokens, messages, latency and models,
 *   message counts, tool usage, models, and model call latency. `sessions` are the sessions
 *   active in the range (created before its end, last run at or after its start), most
 *   recently updated first; `aggregates.sessionCount` counts them before `limit`.
 * - `aggregates.messages`, `tools`, `byChannel` and each day's `messages`, `toolCalls` and
 *   `errors` (tool results that were errors) are summed from the transcripts of all those
 *   sessions, the listed ones and the others.
 * - With `key`, everything is that session's transcript over the range
 *   (`basis.totals: "transcript"`), when it was active in the range (else empty).
 * - Not kept, answered as zeros: the per-kind costs (`inputCost`, ...; the cost of a call is
 *   one figure, in `totalCost`). `totalTokens` is input plus output, as in `usage.cost`.
 * - At most {@link SESSIONS_USAGE_MAX_SCANNED} session records and
 *   {@link SESSIONS_USAGE_MAX_ENTRIES} transcript entries ({@link
 *   SESSIONS_USAGE_MAX_SESSION_ENTRIES} of one session) are read; past that, `truncated:
 *   true`, and what was left out is the least recently updated sessions (their usage
 *   `null`), or the oldest entries of a session (its usage says `truncated: true`).
 *
 * @example
 * ```ts
 * await client.request("sessions.usage", { range: "7d", agentScope: "all", limit: 20 });
 * // { startDate: "2026-03-09", endDate: "2026-03-15", timeZone: "UTC", totals: { input: 1200,
 * //   output: 300, totalTokens: 1500, totalCost: 0.02, ... }, sessions: [{ key:
 * //   "agent:main:main", usage: { input: 400, ... } }], aggregates: { byModel: [...], daily:
 * //   [...], ... }, basis: { sessionUsage: "transcript", totals: "daily" }, truncated: false }
 * ```
 */
export const sessionUsageMethods: Record<string, HubMethod> = {
  "sessions.usage": {
    scope: Scopes.READ,
    async handler(call, hub) {
      const { method, params: p } = call;
      const now = hub.now();
      const key = optionalString(method, p, "key", { nonEmpty: true, maxLength: 512 });
      const agentId = optionalString(method, p, "agentId", {
        nonEmpty: true,
        maxLength: 128,
      })?.toLowerCase();
      const allAgents = optionalEnum(method, p, "agentScope", ["all"] as const) === "all";
      if (allAgents && (key !== undefined || agentId !== undefined)) {
        throw badParam(
          method,
          "agentScope",
          "agentScope all cannot be combined with key or agentId",
        );
      }
      const limit =
        optionalInt(method, p, "limit", { min: 1, max: SESSIONS_USAGE_MAX_LIMIT }) ??
        SESSIONS_USAGE_DEFAULT_LIMIT;
      optionalEnum(method, p, "groupBy", ["instance", "family"] as const);
      optionalBool(method, p, "includeHistorical");
      const includeContextWeight = optionalBool(method, p, "includeContextWeight") === true;
      const days = requestedDays(method, p, now);
      checkUtcDays(method, p, days);

      let records: SessionRecord[];
      let truncated = false;
      let meter: MeterRow[] | undefined;
      if (key !== undefined) {
        const record = await namedSession(hub, key, agentId);
        records = activeIn(record, days) ? [record] : [];
      } else {
        const scope = allAgents ? undefined : (agentId ?? hub.defaultAgentId);
        const [rows, active] = await Promise.all([
          meterRows(hub, days, scope),
          activeSessions(hub, days, scope),
        ]);
        meter = rows;
        records = active.matched;
        truncated = active.truncated;
      }
      const { summaries, complete } = await transcriptUsage(hub, records, days, limit);
      if (!complete) truncated = true;
      const read = transcriptAggregates(records, summaries);
      const [only] = records;
      const onlySummary = only === undefined ? undefined : summaries.get(only.key);
      const { totals, ...rest } = meterAggregates(
        meter ??
          (only === undefined || onlySummary === undefined
            ? []
            : summaryRows(onlySummary, only.agentId)),
        read.dayMessages,
      );
      // One session's totals count its answers saved without usage as well.
      if (meter === undefined && onlySummary !== undefined) {
        totals.missingCostEntries = onlySummary.unmetered;
      }
      return {
        updatedAt: now,
        startDate: days.startDay,
        endDate: days.endDay,
        timeZone: "UTC",
        sessions: records
          .slice(0, limit)
          .map((s) => usageEntry(hub, s, summaries.get(s.key), includeContextWeight)),
        totals,
        aggregates: {
          sessionCount: records.length,
          messages: read.messages,
          tools: read.tools,
          byModel: rest.byModel,
          byProvider: rest.byProvider,
          byAgent: rest.byAgent,
          byChannel: read.byChannel,
          ...(onlySummary?.latency === undefined || meter !== undefined
            ? {}
            : { latency: onlySummary.latency }),
          modelDaily: rest.modelDaily,
          daily: rest.daily,
        },
        basis: {
          sessionUsage: "transcript",
          totals: key === undefined ? "daily" : "transcript",
        },
        truncated,
      };
    },
  },
};
