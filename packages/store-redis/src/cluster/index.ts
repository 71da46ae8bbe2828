export {
  createRedisBackplane,
  DEFAULT_DOWN_AFTER_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  REDIS_BACKPLANE_SKIPPED_ENTRY_CHANNEL,
  RedisBackplane,
  type RedisBackplaneBaseOptions,
  type RedisBackplaneClientOptions,
  type RedisBackplaneOptions,
  type RedisBackplaneSkippedEntry,
  type RedisBackplaneUrlOptions,
} from "./backplane.js";
export { RedisClusterPresence } from "./presence.js";
export { RedisClusterPubSub } from "./pubsub.js";
export { RedisClusterRegistry } from "./registry.js";
