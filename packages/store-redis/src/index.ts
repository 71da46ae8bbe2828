/**
 * `@beamclaw/store-redis`: BeamClaw's Redis store, and the cluster backplane.
 *
 * @packageDocumentation
 */
export * from "./cluster/index.js";
export { DEFAULT_RUNS_KEPT } from "./cron.js";
export {
  DEFAULT_DEDUPE_WINDOW_MS,
  REDIS_QUEUE_ORPHAN_ID_CHANNEL,
  type RedisQueueOrphanId,
} from "./queue.js";
export {
  createRedisStore,
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PREFIX,
  RedisStore,
  type RedisStoreBaseOptions,
  type RedisStoreClientOptions,
  type RedisStoreOptions,
  type RedisStoreUrlOptions,
} from "./redis-store.js";
