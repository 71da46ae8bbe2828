export {
  type Clock,
  createManualClock,
  ManualClock,
  systemClock,
  type TimerHandle,
  WALL_CLOCK_CHECK_MS,
} from "./clock.js";
export type { CronWebhookPayload } from "./delivery.js";
export { type AgentRuntimeJobRunner, agentRuntimeJobRunner } from "./runtime-runner.js";
export {
  type CompiledSchedule,
  type CronSchedule,
  compileSchedule,
  isValidTimeZone,
  MAX_CRON_STAGGER_MS,
  parseInstant,
} from "./schedule.js";
export {
  CronService,
  type CronServiceOptions,
  type CronServiceStatus,
  DEFAULT_CRON_BACKOFF_MS,
  DEFAULT_ISOLATED_SESSION_TTL_MS,
  DEFAULT_MAX_CONSECUTIVE_ERRORS,
  DEFAULT_STUCK_RUN_MS,
} from "./service.js";
export { CronSupervisor, type CronSupervisorOptions } from "./supervisor.js";
export type {
  CronCatchUpPolicy,
  CronDeliver,
  CronDelivery,
  CronDeliveryResult,
  CronJob,
  CronJobChange,
  CronJobInput,
  CronJobPatch,
  CronJobRunner,
  CronJobState,
  CronRun,
  CronRunContext,
  CronRunNotStarted,
  CronRunOutcome,
  CronRunStart,
  CronRunStarted,
  CronRunTrigger,
  CronSessionTarget,
  CronStartOptions,
  CronSync,
} from "./types.js";
