/** Durations on the soak's command line and in its environment. */

/** `90`, `90s`, `5m`, `1h`, `1500ms` -> milliseconds; a bare number is milliseconds. */
export function parseDuration(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/.exec(String(text));
  if (match === null) throw new Error(`not a duration: "${text}" (use e.g. 90s, 5m, 1h)`);
  const factor = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }[match[2] ?? "ms"];
  return Math.round(Number(match[1]) * factor);
}

/** The soak's duration: `--duration`, else `SOAK_DURATION`, else 8 s (quick) or 1 h. */
export function soakDurationMs(quick, flag = undefined, env = process.env) {
  return parseDuration(flag ?? env.SOAK_DURATION ?? (quick ? "8s" : "1h"));
}
