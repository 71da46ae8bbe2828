/**
 * The backplane's Lua scripts: a heartbeat that also reaps dead members and returns the live
 * ones (one round trip per beat), and a leave. Times come from the Redis server's clock, so
 * every node agrees on heartbeat ages.
 */
import { LuaScript, REFUSE_WRONG_TYPES } from "../scripts.js";

/**
 * Lua: `holderOf(value)` is the node id of a registration in the names hash, or nil when the
 * value is not one (not JSON, or JSON that is not an object with a string `n`: something
 * else wrote it). Never raises: one foreign value must not fail a script for every node.
 */
const HOLDER_OF = `local function holderOf(value)
  local ok, record = pcall(cjson.decode, value)
  if ok and type(record) == 'table' and type(record.n) == 'string' then return record.n end
  return nil
end`;

/**
 * Lua: `isPresenceEntry(value)` is true when a value of a presence hash is one `PRESENCE_TRACK`
 * wrote: JSON, an object with a number `t` and an object `m`. Anything else (something else
 * wrote it) must not be pasted into a notice: it could break the notice's JSON or add fields
 * to it. Never raises.
 */
const IS_PRESENCE_ENTRY = `local function isPresenceEntry(value)
  local ok, record = pcall(cjson.decode, value)
  return ok and type(record) == 'table' and type(record.t) == 'number' and type(record.m) == 'table'
end`;

/**
 * Lua: `forget(id)` removes what node `id` left behind: the names it holds (publishing
 * nothing), its presence entries (publishing a `leave` for each) and its placement
 * counters. A name whose entry is not a registration (see `holderOf`) is left as it is, and a
 * presence entry that is not one (see `isPresenceEntry`) is removed with the node's others but
 * gets no `leave`; each is appended to `skipped` as `{hash key, id, field}`. ARGV[6..11] of
 * the scripts that use it: names hash, names-of key prefix, presence key prefix, presence
 * channel, placements hash, placements-reported hash.
 */
const FORGET_NODE = `${HOLDER_OF}
${IS_PRESENCE_ENTRY}
local skipped = {}
local function skip(key, id, field)
  skipped[#skipped + 1] = key
  skipped[#skipped + 1] = id
  skipped[#skipped + 1] = field
end
local function forget(id)
  local setKey = ARGV[7] .. id
  for _, n in ipairs(redis.call('SMEMBERS', setKey)) do
    local v = redis.call('HGET', ARGV[6], n)
    if v then
      local holder = holderOf(v)
      if holder == nil then
        skip(ARGV[6], id, n)
      elseif holder == id then
        redis.call('HDEL', ARGV[6], n)
      end
    end
  end
  redis.call('DEL', setKey)
  local p = redis.call('HGETALL', ARGV[8] .. id)
  for i = 1, #p, 2 do
    if isPresenceEntry(p[i + 1]) then
      redis.call('PUBLISH', ARGV[9], '{"type":"leave","nodeId":' .. cjson.encode(id) .. ',"key":' .. cjson.encode(p[i]) .. ',"entry":' .. p[i + 1] .. '}')
    else
      skip(ARGV[8] .. id, id, p[i])
    end
  end
  redis.call('DEL', ARGV[8] .. id)
  redis.call('HDEL', ARGV[10], id)
  redis.call('HDEL', ARGV[11], id)
end
local function refuseWrongTypesOfNode(id)
  refuseWrongTypes(ARGV[6], 'hash', ARGV[7] .. id, 'set', ARGV[8] .. id, 'hash', ARGV[10], 'hash', ARGV[11], 'hash')
end`;

/**
 * KEYS: members hash, heartbeats zset. ARGV: nodeId, member JSON, downAfterMs, membership
 * channel, '1' to join (a fresh joinedAt), then those of `forget` (names hash, names-of
 * prefix, presence prefix, presence channel, placements hash, placements-reported hash),
 * then the node's total of sessions started on a placement ('' if it does not count).
 * Records this node's heartbeat and status (and keeps its presence entries for another
 * two downAfterMs), takes the placements it now reports started off its placement count,
 * removes members whose last heartbeat is older than downAfterMs
 * (publishing a `down` notice for each, and forgetting their names and presence), and
 * returns `{ now, wasMember, reapedCount, skippedCount, (id, value) * reaped,
 * (hash key, dead node id, field) * skipped, (id, value, heartbeat) * live }`, where `skipped`
 * are the entries of dead nodes' names and presence that were not theirs to read (see
 * `forget`).
 * A key it writes that holds another type (something else wrote it) fails it with a
 * `WRONGTYPE` error before it writes anything.
 */
export const CLUSTER_HEARTBEAT = new LuaScript(
  "cluster-heartbeat",
  `${REFUSE_WRONG_TYPES}
${FORGET_NODE}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
refuseWrongTypes(KEYS[1], 'hash', KEYS[2], 'zset')
refuseWrongTypesOfNode(ARGV[1])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now - tonumber(ARGV[3])))) do
  refuseWrongTypesOfNode(id)
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
local joined = string.format('%d', now)
if old and ARGV[5] ~= '1' then joined = string.match(old, '^(%d+):') or joined end
redis.call('HSET', KEYS[1], ARGV[1], joined .. ':' .. ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', ARGV[8] .. ARGV[1], 2 * tonumber(ARGV[3]))
if ARGV[12] ~= '' then
  local total = tonumber(ARGV[12])
  local delta = total - tonumber(redis.call('HGET', ARGV[11], ARGV[1]) or '0')
  if delta > 0 and redis.call('HINCRBY', ARGV[10], ARGV[1], -delta) < 0 then
    redis.call('HSET', ARGV[10], ARGV[1], 0)
  end
  redis.call('HSET', ARGV[11], ARGV[1], total)
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now - tonumber(ARGV[3])))
local out = {now, old and 1 or 0, #dead, 0}
for _, id in ipairs(dead) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id) or ''
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('PUBLISH', ARGV[4], '{"type":"down","nodeId":' .. cjson.encode(id) .. '}')
  forget(id)
end
out[4] = #skipped / 3
for _, v in ipairs(skipped) do out[#out + 1] = v end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  out[#out + 1] = all[i]
  out[#out + 1] = all[i + 1]
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], all[i]) or '0'
end
return out`,
);

/**
 * KEYS: members hash, heartbeats zset. ARGV: nodeId, membership channel, 3 to 5 unused,
 * then those of `forget`.
 * Removes the member, its names and presence entries, and publishes a `leave` notice.
 * Returns `{ wasMember (1 or 0), (hash key, node id, field) * skipped }` (see `forget`).
 * Writes nothing when a key it writes holds another type.
 */
export const CLUSTER_LEAVE = new LuaScript(
  "cluster-leave",
  `${REFUSE_WRONG_TYPES}
${FORGET_NODE}
refuseWrongTypes(KEYS[1], 'hash', KEYS[2], 'zset')
refuseWrongTypesOfNode(ARGV[1])
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
forget(ARGV[1])
redis.call('PUBLISH', ARGV[2], '{"type":"leave","nodeId":' .. cjson.encode(ARGV[1]) .. '}')
local out = {n}
for _, v in ipairs(skipped) do out[#out + 1] = v end
return out`,
);

/** Lua: `live(id, now)` is true when node `id` heartbeated within ARGV[1] ms (KEYS[2]: heartbeats). */
const LIVE = `local function live(id, now)
  local hb = redis.call('ZSCORE', KEYS[2], id)
  return hb ~= false and hb ~= nil and now - tonumber(hb) <= tonumber(ARGV[1])
end
local __t = redis.call('TIME')
local now = tonumber(__t[1]) * 1000 + math.floor(tonumber(__t[2]) / 1000)`;

/**
 * KEYS: names hash, heartbeats zset, this node's names-of set.
 * ARGV: downAfterMs, name, this node's id, registration JSON without `t`, names-of prefix.
 * Registers the name to this node unless a live other node holds it (a dead holder's
 * registration is taken over). Returns `{1, value}` or `{0, holder's value}`; an entry that is
 * not a registration is not taken over (`{0, entry}`: nothing of it is lost). Writes nothing
 * when a key it writes holds another type.
 */
export const REGISTRY_REGISTER = new LuaScript(
  "registry-register",
  `${REFUSE_WRONG_TYPES}
${LIVE}
${HOLDER_OF}
refuseWrongTypes(KEYS[1], 'hash', KEYS[3], 'set')
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if cur then
  local holder = holderOf(cur)
  if holder == nil then return {0, cur} end
  if holder ~= ARGV[3] then
    if live(holder, now) then return {0, cur} end
    refuseWrongTypes(ARGV[5] .. holder, 'set')
    redis.call('SREM', ARGV[5] .. holder, ARGV[2])
  end
end
local value = '{"t":' .. string.format('%d', now) .. ',' .. string.sub(ARGV[4], 2)
redis.call('HSET', KEYS[1], ARGV[2], value)
redis.call('SADD', KEYS[3], ARGV[2])
return {1, value}`,
);

/**
 * KEYS: names hash, this node's names-of set. ARGV: name, this node's id.
 * Returns 1 if this node held the name (now removed). An entry that is not a registration is
 * not this node's: left as it is.
 */
export const REGISTRY_UNREGISTER = new LuaScript(
  "registry-unregister",
  `${HOLDER_OF}
local cur = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
if not cur or holderOf(cur) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1`,
);

/**
 * KEYS: names hash, heartbeats zset. ARGV: downAfterMs, name or '' for all, prefix.
 * Returns `{name, value}` flattened for the names held by live nodes (an entry that is not a
 * registration is held by no node).
 */
export const REGISTRY_READ = new LuaScript(
  "registry-read",
  `${LIVE}
${HOLDER_OF}
local out = {}
local function consider(name, value)
  local holder = value and holderOf(value)
  if holder and live(holder, now) then
    out[#out + 1] = name
    out[#out + 1] = value
  end
end
if ARGV[2] ~= '' then
  consider(ARGV[2], redis.call('HGET', KEYS[1], ARGV[2]))
else
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #ARGV[3]) == ARGV[3] then consider(all[i], all[i + 1]) end
  end
end
return out`,
);

/**
 * KEYS: this node's presence hash. ARGV: key, meta JSON, ttl ms, presence channel, node id.
 * Tracks the key and publishes `join` (or `update` when it was tracked). Returns 1.
 */
export const PRESENCE_TRACK = new LuaScript(
  "presence-track",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('HEXISTS', KEYS[1], ARGV[1])
local value = '{"t":' .. string.format('%d', now) .. ',"m":' .. ARGV[2] .. '}'
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local kind = 'join'
if old == 1 then kind = 'update' end
redis.call('PUBLISH', ARGV[4], '{"type":"' .. kind .. '","nodeId":' .. cjson.encode(ARGV[5]) .. ',"key":' .. cjson.encode(ARGV[1]) .. ',"entry":' .. value .. '}')
return 1`,
);

/**
 * KEYS: this node's presence hash. ARGV: key, presence channel, node id.
 * Returns 1 (and publishes `leave`) if the key was tracked, 2 if its value was not a presence
 * entry (see `isPresenceEntry`: removed, no `leave`), 0 if it was not there.
 */
export const PRESENCE_UNTRACK = new LuaScript(
  "presence-untrack",
  `${IS_PRESENCE_ENTRY}
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if not isPresenceEntry(value) then return 2 end
redis.call('PUBLISH', ARGV[2], '{"type":"leave","nodeId":' .. cjson.encode(ARGV[3]) .. ',"key":' .. cjson.encode(ARGV[1]) .. ',"entry":' .. value .. '}')
return 1`,
);

/**
 * KEYS: heartbeats zset. ARGV: downAfterMs, presence key prefix.
 * Returns `{nodeId, key, value}` flattened for every entry of every live node.
 */
export const PRESENCE_LIST = new LuaScript(
  "presence-list",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')) do
  local p = redis.call('HGETALL', ARGV[2] .. id)
  for i = 1, #p, 2 do
    out[#out + 1] = id
    out[#out + 1] = p[i]
    out[#out + 1] = p[i + 1]
  end
end
return out`,
);

/**
 * KEYS: members hash, placements hash, heartbeats zset. ARGV: downAfterMs, then the
 * candidate node ids in order of preference for ties.
 * Picks the live candidate with the smallest load (sessions at its last heartbeat plus the
 * placements onto it not reported started since) and counts the placement. Returns its id,
 * or nil when no candidate is live.
 */
export const CLUSTER_PLACE = new LuaScript(
  "cluster-place",
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best = nil
local bestLoad = nil
for i = 2, #ARGV do
  local id = ARGV[i]
  local v = redis.call('HGET', KEYS[1], id)
  local hb = redis.call('ZSCORE', KEYS[3], id)
  if v and hb and now - tonumber(hb) <= tonumber(ARGV[1]) then
    local sessions = 0
    local ok, record = pcall(cjson.decode, string.match(v, '^%d+:(.*)$') or '')
    if ok and type(record) == 'table' and type(record.sessions) == 'number' then
      sessions = record.sessions
    end
    local load = sessions + tonumber(redis.call('HGET', KEYS[2], id) or '0')
    if bestLoad == nil or load < bestLoad then
      best = id
      bestLoad = load
    end
  end
end
if best == nil then return false end
redis.call('HINCRBY', KEYS[2], best, 1)
return best`,
);
