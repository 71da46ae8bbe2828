/**
 * Schedules: when a job's next occurrence is. croner computes the next time of a cron
 * expression in a time zone; it never owns a timer here (the service arms one timer per
 * agent for the earliest due job).
 */
import { createHash } from "node:crypto";
import { Cron } from "croner";
import { CronError } from "../errors.js";

/**
 * When a job runs:
 * - `{ at }`: once, at an instant (ISO 8601 date-time with an offset, or epoch ms).
 * - `{ every, anchor? }`: every `every` ms at `anchor + k * every` (k >= 0). The anchor
 *   fixes the phase: it defaults to the job's creation time, so the first run is one
 *   interval after it; an anchor in the future is the first run. Runs end at the last
 *   instant a `Date` can hold (epoch ms 8.64e15): an interval whose first run would be past
 *   it is refused.
 * - `{ cron, timezone? }`: a 5-field (or 6-field, with seconds) cron expression evaluated in
 *   an IANA time zone (default: UTC). A fixed time that falls in a spring-forward gap runs
 *   at the first valid time after it; a fixed time that occurs twice on a fall-back day runs
 *   once. Interval patterns (`*\/30 * * * *`) run on both occurrences of a repeated hour,
 *   and not at all inside a skipped one (`*\/30 2 * * *` does not run on a spring-forward
 *   day whose 02:00-03:00 does not exist).
 *   `staggerMs` spreads the jobs of one expression: each job runs a fixed offset in
 *   `[0, staggerMs)` after every occurrence, the same offset every time, derived from the
 *   job's id (the first 4 bytes of its SHA-256, big-endian, modulo `staggerMs`, as OpenClaw
 *   does), so that many jobs on `0 * * * *` do not all fire at the top of the hour. `0` or
 *   `1` (or absent): no offset. At most {@link MAX_CRON_STAGGER_MS}.
 *
 * @example
 * ```ts
 * const daily: CronSchedule = { cron: "0 9 * * 1-5", timezone: "Europe/Berlin" };
 * const hourly: CronSchedule = { every: 3_600_000, anchor: "2026-01-01T00:30:00Z" };
 * const once: CronSchedule = { at: "2026-12-24T18:00:00+01:00" };
 * ```
 */
export type CronSchedule =
  | { at: string | number }
  | { every: number; anchor?: string | number }
  | { cron: string; timezone?: string; staggerMs?: number };

/** The largest `staggerMs` of a cron schedule: 2,147,483,647 ms (about 24.8 days). */
export const MAX_CRON_STAGGER_MS = 2_147_483_647;

/** A schedule checked and ready to answer "when next?". */
export interface CompiledSchedule {
  readonly kind: "at" | "every" | "cron";
  /** The first occurrence strictly after `afterMs`, or `undefined` when there is none. */
  nextAfter(afterMs: number): number | undefined;
  /**
   * How many occurrences fall in `(fromMs, toMs]`, counting at most `limit`: an exact count
   * for `at` and `every`, enumerated for `cron`.
   */
  countBetween(fromMs: number, toMs: number, limit: number): number;
  /** The `count` most recent occurrences in `(fromMs, toMs]`, oldest first. */
  recentBetween(fromMs: number, toMs: number, count: number): number[];
}

const ISO_INSTANT =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

function invalid(message: string, jobId?: string): CronError {
  return new CronError("INVALID_CRON_SCHEDULE", message, jobId);
}

/**
 * Reads an instant: epoch ms, or an ISO 8601 date-time that names its offset (`Z`,
 * `+01:00`). A date-time without an offset is refused, since it would mean a different
 * instant on every server.
 */
export function parseInstant(value: unknown, what: string, jobId?: string): number {
  if (typeof value === "number") {
    if (Number.isSafeInteger(value) && value >= 0 && value <= MAX_EPOCH_MS) return value;
    throw invalid(
      `${what} must be epoch ms (an integer from 0 to ${MAX_EPOCH_MS}), got ${value}`,
      jobId,
    );
  }
  if (typeof value === "string" && ISO_INSTANT.test(value.trim())) {
    const text = value.trim();
    const ms = Date.parse(text);
    // V8 rolls a day past the month's end over ("2026-02-30" is March 2): refused instead.
    if (Number.isFinite(ms) && isCalendarDate(text)) return ms;
  }
  throw invalid(
    `${what} must be an ISO 8601 date-time with an offset (e.g. "2026-01-01T09:00:00Z") or epoch ms, got ${JSON.stringify(value)}`,
    jobId,
  );
}

/** The last instant a `Date` can hold. */
const MAX_EPOCH_MS = 8.64e15;

/** True when the `YYYY-MM-DD` that starts `text` names a day that exists. */
function isCalendarDate(text: string): boolean {
  const year = Number(text.slice(0, 4));
  const month = Number(text.slice(5, 7));
  const day = Number(text.slice(8, 10));
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return days !== undefined && day >= 1 && day <= days;
}

const zoneCache = new Map<string, boolean>();

/** True when `timezone` is an IANA zone this runtime knows. */
export function isValidTimeZone(timezone: string): boolean {
  let known = zoneCache.get(timezone);
  if (known === undefined) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: timezone });
      known = true;
    } catch {
      known = false;
    }
    if (zoneCache.size < 1000) zoneCache.set(timezone, known);
  }
  return known;
}

/**
 * Checks a schedule and returns its compiled form.
 *
 * @param createdAt - the job's creation time, the default anchor of `every` schedules.
 * @throws CronError `INVALID_CRON_SCHEDULE` naming what is wrong.
 *
 * @example
 * ```ts
 * const schedule = compileSchedule({ cron: "0 9 * * 1-5", timezone: "Europe/Berlin" }, Date.now());
 * schedule.nextAfter(Date.now()); // epoch ms of the next weekday at 09:00 in Berlin
 * ```
 */
export function compileSchedule(
  schedule: CronSchedule,
  createdAt: number,
  jobId?: string,
): CompiledSchedule {
  if (typeof schedule !== "object" || schedule === null || Array.isArray(schedule)) {
    throw invalid(
      "schedule must be { at }, { every, anchor? } or { cron, timezone?, staggerMs? }",
      jobId,
    );
  }
  const kinds = ["at", "every", "cron"].filter((k) => k in schedule);
  if (kinds.length !== 1) {
    throw invalid(
      `schedule must have exactly one of at, every, cron (got ${kinds.length === 0 ? "none" : kinds.join(", ")})`,
      jobId,
    );
  }
  if ("at" in schedule) return compileAt(parseInstant(schedule.at, "schedule.at", jobId));
  if ("every" in schedule) {
    const every = schedule.every;
    if (typeof every !== "number" || !Number.isSafeInteger(every) || every < 1) {
      throw invalid(`schedule.every must be a whole number of ms >= 1, got ${every}`, jobId);
    }
    const anchor =
      schedule.anchor === undefined
        ? createdAt
        : parseInstant(schedule.anchor, "schedule.anchor", jobId);
    const compiled = compileEvery(every, anchor);
    // An interval so long that its first run is past the last instant a Date can hold never runs.
    if (compiled.nextAfter(createdAt) === undefined) {
      throw invalid(
        `schedule.every of ${every} ms puts the first run past the last instant a Date can hold (epoch ms ${MAX_EPOCH_MS})`,
        jobId,
      );
    }
    return compiled;
  }
  const cron = compileCron(schedule.cron, schedule.timezone, jobId);
  const staggerMs = schedule.staggerMs;
  if (
    staggerMs !== undefined &&
    (typeof staggerMs !== "number" ||
      !Number.isSafeInteger(staggerMs) ||
      staggerMs < 0 ||
      staggerMs > MAX_CRON_STAGGER_MS)
  ) {
    throw invalid(
      `schedule.staggerMs must be a whole number of ms from 0 to ${MAX_CRON_STAGGER_MS}, got ${JSON.stringify(staggerMs)}`,
      jobId,
    );
  }
  // Without a job id (a schedule only checked) there is no offset to compute.
  const offset = jobId === undefined ? 0 : staggerOffsetMs(jobId, staggerMs ?? 0);
  return offset === 0 ? cron : shifted(cron, offset);
}

/**
 * A job's offset within its stagger window: the first 4 bytes of the SHA-256 of its id,
 * big-endian, modulo `staggerMs` (0 for a window of 0 or 1 ms).
 * @internal
 */
export function staggerOffsetMs(jobId: string, staggerMs: number): number {
  if (staggerMs <= 1) return 0;
  return createHash("sha256").update(jobId).digest().readUInt32BE(0) % staggerMs;
}

/** `schedule` with every occurrence `offset` ms later. */
function shifted(schedule: CompiledSchedule, offset: number): CompiledSchedule {
  return {
    kind: schedule.kind,
    nextAfter(afterMs) {
      const next = schedule.nextAfter(afterMs - offset);
      return next === undefined ? undefined : next + offset;
    },
    countBetween: (fromMs, toMs, limit) =>
      schedule.countBetween(fromMs - offset, toMs - offset, limit),
    recentBetween: (fromMs, toMs, count) =>
      schedule.recentBetween(fromMs - offset, toMs - offset, count).map((at) => at + offset),
  };
}

function compileAt(atMs: number): CompiledSchedule {
  return {
    kind: "at",
    nextAfter: (afterMs) => (atMs > afterMs ? atMs : undefined),
    countBetween: (fromMs, toMs, limit) => (atMs > fromMs && atMs <= toMs && limit > 0 ? 1 : 0),
    recentBetween: (fromMs, toMs, count) =>
      atMs > fromMs && atMs <= toMs && count > 0 ? [atMs] : [],
  };
}

function compileEvery(every: number, anchor: number): CompiledSchedule {
  // Occurrences end with the last instant a Date can hold.
  const nextAfter = (afterMs: number): number | undefined => {
    const next =
      afterMs < anchor ? anchor : anchor + (Math.floor((afterMs - anchor) / every) + 1) * every;
    return next <= MAX_EPOCH_MS ? next : undefined;
  };
  return {
    kind: "every",
    nextAfter,
    countBetween(fromMs, toMs, limit) {
      const first = nextAfter(fromMs);
      if (first === undefined || first > toMs) return 0;
      return Math.min(limit, Math.floor((Math.min(toMs, MAX_EPOCH_MS) - first) / every) + 1);
    },
    recentBetween(fromMs, toMs, count) {
      const first = nextAfter(fromMs);
      if (first === undefined || first > toMs || count <= 0) return [];
      const last = first + Math.floor((Math.min(toMs, MAX_EPOCH_MS) - first) / every) * every;
      const out: number[] = [];
      for (let at = last; at >= first && out.length < count; at -= every) out.push(at);
      return out.reverse();
    },
  };
}

/**
 * A croner `Cron` holds about 80 KB (its year table alone has 10,000 entries), so jobs with
 * the same expression and zone share one. Without a callback and paused it never arms a
 * timer and `nextRun(from)` depends only on `from`, so sharing is safe. The cache holds
 * them weakly: a `Cron` no compiled schedule uses any more (its jobs were removed, or their
 * services stopped) is collected, and its key with it.
 */
const cronCache = new Map<string, WeakRef<Cron>>();
const cronCollected = new FinalizationRegistry<string>((key) => {
  if (cronCache.get(key)?.deref() === undefined) cronCache.delete(key);
});

function cronFor(expression: string, timezone: string): Cron {
  const key = `${timezone}\u0000${expression}`;
  let cron = cronCache.get(key)?.deref();
  if (cron === undefined) {
    cron = new Cron(expression, { timezone, paused: true, mode: "5-or-6-parts" });
    cronCache.set(key, new WeakRef(cron));
    cronCollected.register(cron, key);
  }
  return cron;
}

function compileCron(expression: unknown, timezone: unknown, jobId?: string): CompiledSchedule {
  if (typeof expression !== "string" || expression.trim() === "") {
    throw invalid("schedule.cron must be a non-empty cron expression", jobId);
  }
  if (timezone !== undefined && (typeof timezone !== "string" || !isValidTimeZone(timezone))) {
    throw invalid(
      `schedule.timezone must be an IANA time zone such as "Europe/Berlin", got ${JSON.stringify(timezone)}`,
      jobId,
    );
  }
  let cron: Cron;
  try {
    cron = cronFor(expression.trim(), (timezone as string | undefined) ?? "UTC");
  } catch (error) {
    throw invalid(
      `schedule.cron ${JSON.stringify(expression)} is not a valid cron expression: ${(error as Error).message}`,
      jobId,
    );
  }
  const nextAfter = (afterMs: number): number | undefined =>
    cron.nextRun(new Date(afterMs))?.getTime();
  // A 5- or 6-field expression that matches nothing after 1970 never matches (`0 0 31 2 *`).
  if (nextAfter(0) === undefined) {
    throw invalid(`schedule.cron ${JSON.stringify(expression)} never matches a time`, jobId);
  }
  return {
    kind: "cron",
    nextAfter,
    countBetween(fromMs, toMs, limit) {
      let count = 0;
      let at = fromMs;
      while (count < limit) {
        const next = nextAfter(at);
        if (next === undefined || next > toMs) break;
        count++;
        at = next;
      }
      return count;
    },
    recentBetween(fromMs, toMs, count) {
      if (count <= 0) return [];
      // croner walks backwards from the end, so a long gap costs `count` steps, not its length.
      return cron
        .previousRuns(count, new Date(toMs + 1))
        .map((date) => date.getTime())
        .filter((ms) => ms > fromMs && ms <= toMs)
        .reverse();
    },
  };
}
