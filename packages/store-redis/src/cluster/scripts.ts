/**
 * The backplane's Lua scripts: a heartbeat that also reaps dead members and returns the live
 * ones (one round trip per beat), and a leave. Times come from the Redis server's clock, so
 * every node agrees on heartbeat ages.
 */
import { LuaScript } from "../scripts.js";

/**
 * KEYS: members hash, heartbeats zset. ARGV: nodeId, member JSON, downAfterMs, membership
 * channel, '1' to join (a fresh joinedAt).
 * Records this node's heartbeat and status, removes members whose last heartbeat is older
 * than downAfterMs (publishing a `down` notice for each), and returns
 * `{ now, wasMember, reapedCount, (id, value) * reaped, (id, value, heartbeat) * live }`.
 */
export const CLUSTER_HEARTBEAT = new LuaScript(
  "cluster-heartbeat",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('HGET', KEYS[1], ARGV[1])
local joined = string.format('%d', now)
if old and ARGV[5] ~= '1' then joined = string.match(old, '^(%d+):') or joined end
redis.call('HSET', KEYS[1], ARGV[1], joined .. ':' .. ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now - tonumber(ARGV[3])))
local out = {now, old and 1 or 0, #dead}
for _, id in ipairs(dead) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id) or ''
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('PUBLISH', ARGV[4], '{"type":"down","nodeId":' .. cjson.encode(id) .. '}')
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  out[#out + 1] = all[i]
  out[#out + 1] = all[i + 1]
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], all[i]) or '0'
end
return out`,
);

/**
 * KEYS: members hash, heartbeats zset. ARGV: nodeId, membership channel.
 * Removes the member and publishes a `leave` notice. Returns 1 if it was a member.
 */
export const CLUSTER_LEAVE = new LuaScript(
  "cluster-leave",
  `local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], '{"type":"leave","nodeId":' .. cjson.encode(ARGV[1]) .. '}')
return n`,
);
