/**
 * What the gateway needs from a cron service to answer `cron.*`. BeamClaw's core has no cron
 * service yet; until it does, a host may pass any object with this shape (and without one,
 * every `cron.*` method answers `UNAVAILABLE` naming the missing subsystem).
 */

/** A cron service as the gateway drives it. Results are passed to the client as they are. */
export interface GatewayCronBackend {
  /** `cron.list`: `{ jobs, total?, offset?, limit? }`. */
  list(params: Record<string, unknown>): Promise<{ jobs: unknown[]; [key: string]: unknown }>;
  /** `cron.status`: scheduler state (`enabled`, `jobs`, `nextWakeAtMs`, ...). */
  status(): Promise<Record<string, unknown>>;
  /** `cron.add`: the new job. */
  add(params: Record<string, unknown>): Promise<unknown>;
  /** `cron.update`: the updated job. */
  update(id: string, patch: Record<string, unknown>): Promise<unknown>;
  /** `cron.remove`: whether a job was removed. */
  remove(id: string): Promise<{ removed: boolean; [key: string]: unknown }>;
  /** `cron.run`: runs a job now (`mode` `force`, `due` or `if-enabled`). */
  run(id: string, mode: "force" | "due" | "if-enabled"): Promise<unknown>;
  /** `cron.runs`: `{ entries, total? }`, newest first. */
  runs(params: Record<string, unknown>): Promise<{ entries: unknown[]; [key: string]: unknown }>;
  /** Job and run changes, sent to clients as `cron` events. Returns the unsubscribe function. */
  subscribe?(listener: (event: Record<string, unknown>) => void): () => void;
}
