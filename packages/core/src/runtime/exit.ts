/**
 * Exit reasons, as in Erlang/OTP.
 *
 * - `"normal"`: the process finished its work.
 * - `"shutdown"`: its owner (a supervisor, the host app) asked it to stop.
 * - `"killed"`: it was force-stopped (`kill()`, or a shutdown that overran `shutdownMs`);
 *   `terminate` did not run to completion.
 * - an `Error`: it crashed.
 *
 * `normal` and `shutdown` are normal exits; `killed` and errors are abnormal, which is what
 * `transient` children are restarted for.
 */
export type ExitReason = "normal" | "shutdown" | "killed" | Error;

/** True for `normal` and `shutdown`, the exits a `transient` child is not restarted after. */
export function isNormalExit(reason: ExitReason): boolean {
  return reason === "normal" || reason === "shutdown";
}

/** Turns any thrown value into an `Error` exit reason, keeping the original as `cause`. */
export function toExitError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  let text: string;
  try {
    text = typeof thrown === "string" ? thrown : (JSON.stringify(thrown) ?? String(thrown));
  } catch {
    text = String(thrown);
  }
  return new Error(`non-error thrown: ${text}`, { cause: thrown });
}

/** A short description of an exit reason for logs and error messages. */
export function formatExitReason(reason: ExitReason): string {
  return typeof reason === "string" ? reason : `${reason.name}: ${reason.message}`;
}
