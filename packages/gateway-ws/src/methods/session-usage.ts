/**
 * `sessions.usage`: tokens and cost over a range of days, per session and in aggregate, in
 * OpenClaw's result shape as far as what BeamClaw keeps allows.
 *
 * BeamClaw keeps two kinds of usage figures. The runtime's usage meter keeps totals per UTC
 * day, agent, provider and model in the store's key/value space
 * (`usage:<YYYY-MM-DD>:<agentId>:<provider>:<model>`): exact per day, but not per session. Each
 * session's metadata keeps its own totals since it was created or last reset, but not per day.
 * So the aggregates (totals, by model, provider, agent and day) are exact for the UTC days of
 * the range, while each session's figures are its whole totals, for the sessions active in the
 * range; the two need not add up to each other.
 */
import { parseSessionKey, type SessionRecord, usageDay } from "@beamclaw/core";
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
  const keys = await kv.keys(commonPrefix(`usage:${days.startDay}:`, `usage:${days.endDay}:`));
  const wanted: Array<Omit<MeterRow, "calls" | "totals"> & { key: string }> = [];
  for (const key of keys) {
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

/** Totals and aggregates from the meter's rows, in OpenClaw's `SessionsUsageAggregates` shape. */
function meterAggregates(rows: MeterRow[]) {
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
    // Messages, tool calls and errors per day are not metered.
    daily: [...daily.values()]
      .sort((a, b) => compareText(a.date, b.date))
      .map((day) => ({ ...day, messages: 0, toolCalls: 0, errors: 0 })),
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
 * Only the first `keep` are kept; `matched` counts them all.
 */
async function activeSessions(
  hub: GatewayHub,
  days: DayRange,
  agentId: string | undefined,
  keep: number,
): Promise<{ kept: SessionRecord[]; matched: number; truncated: boolean }> {
  const kept: SessionRecord[] = [];
  let matched = 0;
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
      if (scanned === SESSIONS_USAGE_MAX_SCANNED) return { kept, matched, truncated: true };
      scanned++;
      if (!activeIn(record, days)) continue;
      matched++;
      if (kept.length < keep) kept.push(record);
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { kept, matched, truncated: false };
}

function splitRef(ref: string | undefined): { provider: string; model: string } | undefined {
  const slash = ref?.indexOf("/") ?? -1;
  return ref === undefined || slash <= 0
    ? undefined
    : { provider: ref.slice(0, slash), model: ref.slice(slash + 1) };
}

/** A session as OpenClaw's `SessionUsageEntry`; its `usage` is the session's whole totals. */
function usageEntry(
  hub: GatewayHub,
  record: SessionRecord,
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
    usage: {
      ...totalsOf(r),
      ...(typeof r.lastRunAt === "number" ? { lastActivity: r.lastRunAt } : {}),
    },
    // BeamClaw does not keep a report of what the system prompt weighed.
    ...(includeContextWeight ? { contextWeight: null } : {}),
  };
}

/** The session `key` names (`agentId`, when given, must be its agent), or `SESSION_NOT_FOUND`. */
async function namedSession(
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
 * What is exact and what is not (`basis`):
 * - `totals` and every aggregate are the usage meter's totals of the range's UTC days, exact
 *   (`basis.totals: "daily"`), whatever `limit` and the scan bound leave out of `sessions`.
 * - Each session's `usage` is its totals since it was created or last reset, not cut to the
 *   range (`basis.sessionUsage: "lifetime"`): BeamClaw does not keep usage per session per
 *   day. `sessions` are the sessions active in the range (created before its end, last run
 *   at or after its start), most recently updated first; `aggregates.sessionCount` counts
 *   them before `limit`.
 * - With `key`, `totals` and `aggregates.byAgent` are that session's whole totals
 *   (`basis.totals: "session"`), when it was active in the range (else empty); the
 *   per-model and per-day aggregates are empty, the meter not knowing sessions.
 * - Not metered, answered as zeros or empty: `messages`, `tools`, `byChannel`, latency, and
 *   the per-kind costs (`inputCost`, ...; the cost of a call is one figure, in `totalCost`).
 *   `totalTokens` is input plus output, as in `usage.cost`.
 * - At most {@link SESSIONS_USAGE_MAX_SCANNED} session records are read; past that,
 *   `truncated: true` and `sessions` and `sessionCount` cover the most recently updated.
 *
 * @example
 * ```ts
 * await client.request("sessions.usage", { range: "7d", agentScope: "all", limit: 20 });
 * // { startDate: "2026-03-09", endDate: "2026-03-15", timeZone: "UTC", totals: { input: 1200,
 * //   output: 300, totalTokens: 1500, totalCost: 0.02, ... }, sessions: [{ key:
 * //   "agent:main:main", usage: { input: 400, ... } }], aggregates: { byModel: [...], daily:
 * //   [...], ... }, basis: { sessionUsage: "lifetime", totals: "daily" }, truncated: false }
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

      let sessions: SessionRecord[];
      let sessionCount: number;
      let truncated = false;
      let aggregates: ReturnType<typeof meterAggregates>;
      if (key !== undefined) {
        const record = await namedSession(hub, key, agentId);
        sessions = activeIn(record, days) ? [record] : [];
        sessionCount = sessions.length;
        const totals = zeroTotals();
        for (const s of sessions) addTotals(totals, totalsOf(s));
        aggregates = {
          totals,
          byModel: [],
          byProvider: [],
          byAgent: sessions.map((s) => ({ agentId: s.agentId, totals })),
          modelDaily: [],
          daily: [],
        };
      } else {
        const scope = allAgents ? undefined : (agentId ?? hub.defaultAgentId);
        const [rows, active] = await Promise.all([
          meterRows(hub, days, scope),
          activeSessions(hub, days, scope, limit),
        ]);
        aggregates = meterAggregates(rows);
        sessions = active.kept;
        sessionCount = active.matched;
        truncated = active.truncated;
      }
      const { totals, ...rest } = aggregates;
      return {
        updatedAt: now,
        startDate: days.startDay,
        endDate: days.endDay,
        timeZone: "UTC",
        sessions: sessions.map((s) => usageEntry(hub, s, includeContextWeight)),
        totals,
        aggregates: {
          sessionCount,
          messages: { ...NO_MESSAGES },
          tools: { totalCalls: 0, uniqueTools: 0, tools: [] },
          byModel: rest.byModel,
          byProvider: rest.byProvider,
          byAgent: rest.byAgent,
          byChannel: [],
          modelDaily: rest.modelDaily,
          daily: rest.daily,
        },
        basis: { sessionUsage: "lifetime", totals: key === undefined ? "daily" : "session" },
        truncated,
      };
    },
  },
};
