export {
  createRedisBackplane,
  DEFAULT_DOWN_AFTER_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  RedisBackplane,
  type RedisBackplaneBaseOptions,
  type RedisBackplaneClientOptions,
  type RedisBackplaneOptions,
  type RedisBackplaneUrlOptions,
} from "./backplane.js";
export { RedisClusterPresence } from "./presence.js";
export { RedisClusterPubSub } from "./pubsub.js";
export { RedisClusterRegistry } from "./registry.js";
