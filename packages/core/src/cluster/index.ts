export {
  ClusterSingleton,
  type ClusterSingletonOptions,
  CronRunGuard,
  type CronRunGuardOptions,
  clusterCronGuardOf,
  DEFAULT_CRON_CLAIM_RETENTION_MS,
  type Fence,
  guardCronRunner,
  type RunOnceResult,
  type SingletonContext,
} from "./cron.js";
export {
  ClusterNode,
  type ClusterNodeOptions,
  DEFAULT_CLUSTER_REQUEST_TIMEOUT_MS,
  DEFAULT_CLUSTER_SWEEP_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_SESSION_LEASE_MS,
} from "./node.js";
export type { RoutedSessionRequest, SessionOwnership } from "./ownership.js";
export type {
  ClusterBackplane,
  ClusterMember,
  ClusterPresence,
  ClusterPresenceEntry,
  ClusterPresenceEvent,
  ClusterPubSub,
  ClusterRegisterOptions,
  ClusterRegistration,
  ClusterRegistry,
  JoinOptions,
  LocalSubscription,
  MemberStatus,
  MembershipEvent,
  NamedMessageHandler,
  NodeMessage,
  NodeMessageHandler,
} from "./types.js";
