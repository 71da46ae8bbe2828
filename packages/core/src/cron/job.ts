/**
 * Checking job input: the same zod schema as `cron.jobs[]` in `beamclaw.yaml`, then the
 * schedule itself (expression, time zone, dates). Bad input is refused before anything is
 * stored.
 * @internal
 */
import type { z } from "zod";
import { CronJobConfigSchema, CronScheduleShapeSchema } from "../config/schema.js";
import { InvalidArgumentError } from "../errors.js";
import { type CompiledSchedule, compileSchedule } from "./schedule.js";
import type { CronJob, CronJobInput, CronJobPatch } from "./types.js";

// The schedule's shape only: the service compiles it itself, refusing a bad one with
// `INVALID_CRON_SCHEDULE`.
const InputSchema = CronJobConfigSchema.extend({
  agentId: CronJobConfigSchema.shape.agentId.optional(),
  schedule: CronScheduleShapeSchema,
});
const PatchSchema = CronJobConfigSchema.omit({ id: true, agentId: true })
  .partial()
  .extend({
    schedule: CronScheduleShapeSchema.optional(),
    // `null` clears the job's time limit.
    timeoutMs: CronJobConfigSchema.shape.timeoutMs.unwrap().nullable().optional(),
  })
  .strict();

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length === 0 ? "(job)" : issue.path.join(".")}: ${issue.message}`)
    .join("; ");
}

/** Validates `add` input into a new job, with a fresh state. */
export function parseJobInput(
  input: CronJobInput,
  agentId: string,
  now: number,
  source: CronJob["source"],
): { job: CronJob; compiled: CompiledSchedule } {
  const parsed = InputSchema.safeParse(input);
  if (!parsed.success) {
    const id = (input as { id?: unknown } | undefined)?.id;
    throw new InvalidArgumentError(
      `invalid cron job${typeof id === "string" ? ` "${id}"` : ""}: ${describeIssues(parsed.error)}`,
    );
  }
  const data = parsed.data;
  if (data.agentId !== undefined && data.agentId !== agentId) {
    throw new InvalidArgumentError(
      `cron job "${data.id}" names agent "${data.agentId}", but this is the cron service of "${agentId}"`,
    );
  }
  const compiled = compileSchedule(data.schedule, now, data.id);
  return {
    job: {
      id: data.id,
      agentId,
      schedule: data.schedule,
      session: data.session,
      prompt: data.prompt,
      enabled: data.enabled,
      catchUp: data.catchUp,
      catchUpLimit: data.catchUpLimit,
      delivery: data.delivery,
      ...(data.timeoutMs === undefined ? {} : { timeoutMs: data.timeoutMs }),
      source,
      createdAt: now,
      updatedAt: now,
      state: { consecutiveErrors: 0, runCount: 0, missedCount: 0 },
    },
    compiled,
  };
}

/** Validates an `update` patch; returns the fields it sets. */
export function parseJobPatch(patch: CronJobPatch, jobId: string): CronJobPatch {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) {
    throw new InvalidArgumentError(`update of cron job "${jobId}" needs a patch object`);
  }
  const parsed = PatchSchema.safeParse(patch);
  if (!parsed.success) {
    throw new InvalidArgumentError(
      `invalid update of cron job "${jobId}": ${describeIssues(parsed.error)}`,
    );
  }
  // `partial()` keeps defaults out, so only the fields the caller gave are present.
  const out: CronJobPatch = {};
  for (const key of Object.keys(patch) as (keyof CronJobPatch)[]) {
    if (parsed.data[key] !== undefined) (out as Record<string, unknown>)[key] = parsed.data[key];
  }
  return out;
}
