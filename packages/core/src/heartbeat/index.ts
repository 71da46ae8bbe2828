export { type ActiveHours, compileActiveHours, isWithinActiveHours } from "./active-hours.js";
export {
  createHeartbeatClient,
  type HeartbeatBackoff,
  type HeartbeatClient,
  type HeartbeatClientEvents,
  type HeartbeatClientOptions,
  type HeartbeatClientStats,
  type HeartbeatSendContext,
} from "./client.js";
export {
  DEFAULT_MISSED_BEATS_OFFLINE,
  DEFAULT_PRESENCE_INTERVAL_MS,
  type NodePresence,
  PRESENCE_STALL_TOLERANCE_MS,
  type PresenceChange,
  type PresenceEvents,
  type PresenceStats,
  PresenceTracker,
  type PresenceTrackerOptions,
} from "./presence.js";
export {
  DEFAULT_HEARTBEAT_ACK_MAX_CHARS,
  DEFAULT_HEARTBEAT_EVERY_MS,
  DEFAULT_HEARTBEAT_PROMPT,
  DEFAULT_MAX_HEARTBEAT_FILE_BYTES,
  HEARTBEAT_OK,
  HeartbeatFileError,
  type HeartbeatOutcome,
  HeartbeatRunner,
  type HeartbeatRunnerEvents,
  type HeartbeatRunnerOptions,
  type HeartbeatRunnerStats,
  type HeartbeatTurn,
  type HeartbeatTurnResult,
  heartbeatPreview,
  isHeartbeatAck,
  stripHeartbeatAck,
} from "./runner.js";
