import { InvalidArgumentError } from "../errors.js";

/**
 * A daily window of local time, in a time zone (default: the host's), as `HH:MM`. `start` is
 * inclusive and `end` exclusive; `end` may be `24:00`; a window whose end is before its start
 * wraps past midnight (`22:00`–`06:00`). An empty window (start equal to end) is refused.
 *
 * @example
 * ```ts
 * const office: ActiveHours = { start: "08:00", end: "18:30", timezone: "Europe/Berlin" };
 * isWithinActiveHours(office, Date.parse("2026-06-01T07:00:00Z")); // true (09:00 in Berlin)
 * ```
 */
export interface ActiveHours {
  start: string;
  end: string;
  timezone?: string;
}

const TIME = /^(\d\d):(\d\d)$/;

function minutesOf(value: unknown, what: string, allow24: boolean): number {
  const match = typeof value === "string" ? TIME.exec(value) : null;
  const hours = Number(match?.[1]);
  const minutes = Number(match?.[2]);
  const valid =
    match !== null && minutes < 60 && (hours < 24 || (allow24 && hours === 24 && minutes === 0));
  if (!valid) {
    throw new InvalidArgumentError(
      `activeHours.${what} must be a time "HH:MM" (00:00 to ${allow24 ? "24:00" : "23:59"}), got ${JSON.stringify(value)}`,
    );
  }
  return hours * 60 + minutes;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timezone: string | undefined): Intl.DateTimeFormat {
  // The host's zone has a key no zone name can take: `""` is an invalid zone, not the host's.
  const key = timezone === undefined ? "\u0000host" : timezone;
  let formatter = formatters.get(key);
  if (formatter === undefined) {
    try {
      formatter = new Intl.DateTimeFormat("en-US", {
        timeZone: timezone,
        hour: "2-digit",
        minute: "2-digit",
        hourCycle: "h23",
      });
    } catch {
      throw new InvalidArgumentError(
        `activeHours.timezone must be an IANA time zone such as "Europe/Berlin", got ${JSON.stringify(timezone)}`,
      );
    }
    if (formatters.size < 1000) formatters.set(key, formatter);
  }
  return formatter;
}

/** Minutes since local midnight in `timezone` at `epochMs`. */
function localMinutes(formatter: Intl.DateTimeFormat, epochMs: number): number {
  let hours = 0;
  let minutes = 0;
  for (const part of formatter.formatToParts(epochMs)) {
    if (part.type === "hour") hours = Number(part.value) % 24;
    else if (part.type === "minute") minutes = Number(part.value);
  }
  return hours * 60 + minutes;
}

/**
 * Checks a window and returns a predicate over epoch ms.
 *
 * @throws InvalidArgumentError for a malformed time, an unknown time zone or an empty window.
 */
export function compileActiveHours(hours: ActiveHours): (epochMs: number) => boolean {
  if (typeof hours !== "object" || hours === null) {
    throw new InvalidArgumentError("activeHours must be { start, end, timezone? }");
  }
  const start = minutesOf(hours.start, "start", false);
  const end = minutesOf(hours.end, "end", true);
  if (start === end) {
    throw new InvalidArgumentError(
      `activeHours ${hours.start}–${hours.end} is an empty window; leave activeHours out to be active all day`,
    );
  }
  if (hours.timezone !== undefined && typeof hours.timezone !== "string") {
    throw new InvalidArgumentError("activeHours.timezone must be a string");
  }
  const formatter = formatterFor(hours.timezone);
  return (epochMs) => {
    const now = localMinutes(formatter, epochMs);
    return start < end ? now >= start && now < end : now >= start || now < end;
  };
}

/** True when `epochMs` falls inside the window (see {@link ActiveHours}). */
export function isWithinActiveHours(hours: ActiveHours, epochMs: number): boolean {
  return compileActiveHours(hours)(epochMs);
}
