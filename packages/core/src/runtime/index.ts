export {
  Actor,
  type ActorOptions,
  type ActorStatus,
  type CallOptions,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_MAILBOX_LIMIT,
  DEFAULT_SHUTDOWN_MS,
  type DownMessage,
  type NoReply,
  noReply,
  type Process,
  type ReplyTo,
  type StopOptions,
} from "./actor.js";
export { type ExitReason, formatExitReason, isNormalExit, toExitError } from "./exit.js";
export {
  type MemoryMeasure,
  MemoryPressureError,
  type MemoryPressureEvent,
  MemoryPressureMonitor,
  type MemoryPressureOptions,
  type MemoryRecoveryEvent,
  type MemorySample,
} from "./memory-pressure.js";
export { LocalPubSub, type PubSub, type PubSubHandler, type SubscribeOptions } from "./pubsub.js";
export {
  Registry,
  type RegistryEntry,
  type RegistryKeys,
  type RegistryOptions,
} from "./registry.js";
export { settlesWithin } from "./settle.js";
export {
  type ChildCounts,
  type ChildInfo,
  type ChildSpec,
  type DynamicChildSpec,
  DynamicSupervisor,
  type DynamicSupervisorOptions,
  type RestartIntensity,
  type RestartStrategy,
  type RestartType,
  Supervisor,
  type SupervisorOptions,
  type ViaName,
} from "./supervisor.js";
export {
  type TaskContext,
  type TaskOptions,
  TaskSupervisor,
  type TaskSupervisorOptions,
} from "./task-supervisor.js";
