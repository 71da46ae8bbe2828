import { clusterCronRunner, clusterCronSyncOf } from "../cluster/cron.js";
import type { AgentRuntime } from "../sessions/runtime.js";
import { sessionKey as agentSessionKey } from "../sessions/session-key.js";
import type { CronJob, CronJobRunner, CronRunContext, CronRunOutcome, CronSync } from "./types.js";

/** A {@link CronJobRunner} that can also delete the isolated sessions it created. */
export interface AgentRuntimeJobRunner extends CronJobRunner {
  /** Deletes a session (its metadata, transcript and queued messages). */
  deleteSession(sessionKey: string): Promise<void>;
  /**
   * The cluster's cron change feed, on the runtime of a `ClusterNode`: a `CronService` given
   * this runner uses it by itself (see {@link CronSync}).
   */
  cronSync?: CronSync;
}

/**
 * Runs cron jobs through an `AgentRuntime`: the job's prompt is sent as a message from
 * `cron:<jobId>` to the session the service chose, and the run's final text is the output.
 *
 * - `main` jobs go to `agent:<agentId>:main` (queued behind a run in progress there).
 * - `isolated` jobs get a fresh `cron:<jobId>.<startedAt>` session per run. The runtime gives
 *   `cron:` keys to its default agent, so for a job of another agent the key becomes
 *   `agent:<agentId>:cron:<jobId>.<startedAt>` (reported back as the run's `sessionKey`).
 *   The service deletes these sessions 24 h after their run through `deleteSession`.
 *
 * A run that ends `completed` is `ok`; `failed`, `aborted` and `max-steps` are errors. A job's
 * `timeoutMs` is the run's `SendOptions.timeoutMs`: a run past it is cancelled by the runtime
 * and recorded as an error `RUN_TIMEOUT: <message>`.
 *
 * The runtime of a `ClusterNode` is cluster-aware: every scheduled and catch-up run is
 * claimed first through the node's `cronGuard`, so with a `CronSupervisor` on every node
 * each job runs once per due time, on one node (the others skip it and record nothing); a
 * job removed, disabled or rescheduled through another node is skipped here too. The runner
 * also carries the node's `cronSync`, so every node's services follow jobs added, changed,
 * run or removed through any node.
 *
 * @example
 * ```ts
 * const crons = await new CronSupervisor({ store, runJob: agentRuntimeJobRunner(runtime) }).start();
 * ```
 */
export function agentRuntimeJobRunner(
  runtime: Pick<AgentRuntime, "session">,
): AgentRuntimeJobRunner {
  const run = async (job: CronJob, context: CronRunContext): Promise<CronRunOutcome> => {
    let key = context.sessionKey;
    let session = runtime.session(key);
    if (job.session === "isolated" && session.agentId !== job.agentId) {
      key = agentSessionKey(job.agentId, "cron", key.slice(key.indexOf(":") + 1));
      session = runtime.session(key);
    }
    const handle = await session.send(
      { text: job.prompt, sender: `cron:${job.id}` },
      {
        signal: context.signal,
        idempotencyKey: `cron:${context.runId}`,
        ...(job.timeoutMs === undefined ? {} : { timeoutMs: job.timeoutMs }),
      },
    );
    const result = await handle.result;
    const sessionKey = key === context.sessionKey ? {} : { sessionKey: key };
    if (result.status === "completed") return { status: "ok", output: result.text, ...sessionKey };
    return {
      status: "error",
      error:
        result.error === undefined
          ? `the run ended with status ${result.status}`
          : `${result.error.code}: ${result.error.message}`,
      ...(result.text === "" ? {} : { output: result.text }),
      ...sessionKey,
    };
  };
  const sync = clusterCronSyncOf(runtime);
  return Object.assign(clusterCronRunner(runtime, run), {
    deleteSession: async (sessionKey: string) => {
      await runtime.session(sessionKey).delete();
    },
    ...(sync === undefined ? {} : { cronSync: sync }),
  });
}
