export {
  type AgentLoopInput,
  type CallFigures,
  type CallUsage,
  type CostFunction,
  type ModelSource,
  type PersistOptions,
  promptCacheKey,
  runAgentLoop,
  userMessage,
} from "./agent-loop.js";
export {
  type CompactionResult,
  type CompactOptions,
  DEFAULT_KEEP_TURNS,
} from "./compaction.js";
export type { AgentIdentity } from "./identity.js";
export {
  type SessionCleanupOptions,
  type SessionCleanupSummary,
  SessionMaintenance,
  type SessionMaintenanceOptions,
  type SessionMaintenanceSettings,
} from "./maintenance.js";
export type { OutputOf, OutputOption, OutputSpec } from "./output.js";
export { type DeepPartial, parsePartialJson } from "./partial-json.js";
export { RunHandle, type SendDisposition } from "./run-handle.js";
export {
  EVENT_STREAM_HEADERS,
  type RunEventStreamOptions,
  type RunResponseOptions,
  runEventResponse,
  runEventStream,
  type StreamableRun,
} from "./run-stream.js";
export {
  AgentRuntime,
  type AgentRuntimeOptions,
  type AgentRuntimeStatus,
  type SessionHandle,
} from "./runtime.js";
export type { SessionInfoSnapshot, SessionPatch } from "./session-actor.js";
export {
  AGENT_ID_PATTERN,
  normalizeAgentId,
  normalizeSessionKey,
  type ParsedSessionKey,
  parseSessionKey,
  sessionKey,
  subagentKey,
} from "./session-key.js";
export { type AgentTool, BasicToolRunner, type BasicToolRunnerOptions } from "./tools.js";
export {
  type CallLatency,
  type SavedCallUsage,
  savedCallUsage,
  summarizeTranscriptUsage,
  TRANSCRIPT_USAGE_MAX_ENTRIES,
  type TranscriptMessageCounts,
  type TranscriptUsageOptions,
  type TranscriptUsageSummary,
} from "./transcript-usage.js";
export * from "./types.js";
export {
  type UsageEntry,
  type UsageFilter,
  UsageMeter,
  type UsageTotals,
  usageDay,
} from "./usage.js";
