/**
 * The Lua scripts behind every change that touches more than one key, so that each runs
 * atomically on the server (all or nothing, and no other client sees a half-made change).
 * They are sent with `EVALSHA`, falling back to `EVAL` when the server does not know the
 * script yet (a fresh or restarted Redis).
 *
 * Some scripts build key names from a prefix passed in `ARGV` (an index member's record, a
 * message id's hash). That is fine on a standalone Redis or a Sentinel-managed primary; it
 * is why Redis Cluster is not supported (see the README).
 *
 * Conventions: scripts never return Lua booleans (RESP2 and RESP3 clients would see
 * different things), and numbers are formatted with `%d` (plain `..` on a Lua number would
 * round to 14 digits).
 */
import { createHash } from "node:crypto";

/** One Lua script and its SHA1 (computed on first use, not on import). */
export class LuaScript {
  readonly name: string;
  readonly source: string;
  #sha: string | undefined;

  constructor(name: string, source: string) {
    this.name = name;
    this.source = source;
  }

  get sha(): string {
    this.#sha ??= createHash("sha1").update(this.source).digest("hex");
    return this.#sha;
  }
}

/** Redis server time in epoch ms (scripts see a frozen clock, so this is stable per run). */
const NOW_MS = `local __t = redis.call('TIME')
local now = tonumber(__t[1]) * 1000 + math.floor(tonumber(__t[2]) / 1000)`;

/**
 * `refuseWrongTypes(key, type, key, type, ...)`: a `WRONGTYPE` error (which the store reports
 * as `STORE_CORRUPT`) unless each key is absent or of its type. A script calls it before its
 * first write: Redis does not undo the writes a script made before a command of it failed, so
 * a key of the wrong type (written by another program) met half way would leave half a change.
 */
export const REFUSE_WRONG_TYPES = `local function refuseWrongTypes(...)
  local args = {...}
  for i = 1, #args, 2 do
    local t = redis.call('TYPE', args[i])['ok']
    if t ~= 'none' and t ~= args[i + 1] then
      error({err = 'WRONGTYPE Operation against a key holding the wrong kind of value: ' .. args[i] .. ' is a ' .. t .. ', not a ' .. args[i + 1]})
    end
  end
end`;

// ------------------------------------------------------------------ sessions

/**
 * KEYS: record hash, all-sessions index, this agent's index.
 * ARGV: record JSON, score (-updatedAt), session key, agentId, agent-index key prefix.
 */
export const SESSION_PUT = new LuaScript(
  "session-put",
  `${REFUSE_WRONG_TYPES}
local old = redis.call('HGET', KEYS[1], 'a')
refuseWrongTypes(KEYS[2], 'zset', KEYS[3], 'zset')
if old and old ~= ARGV[4] then
  refuseWrongTypes(ARGV[5] .. old, 'zset')
  redis.call('ZREM', ARGV[5] .. old, ARGV[3])
end
redis.call('HSET', KEYS[1], 'a', ARGV[4], 'j', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1`,
);

/** KEYS: record hash, all-sessions index. ARGV: session key, agent-index key prefix. */
export const SESSION_DELETE = new LuaScript(
  "session-delete",
  `${REFUSE_WRONG_TYPES}
local agent = redis.call('HGET', KEYS[1], 'a')
if not agent then return 0 end
refuseWrongTypes(KEYS[2], 'zset', ARGV[2] .. agent, 'zset')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', ARGV[2] .. agent, ARGV[1])
return 1`,
);

/**
 * One page of an index (ascending score = newest first; equal scores by key).
 * KEYS: the index. ARGV: record key prefix, limit, max score or '', cursor score or '',
 * cursor key.
 * Returns the records' JSON, then '1' if there is another page, else '0'.
 *
 * The cursor is the (score, key) of the last item served. If that key is still in the index
 * with that score, the page starts right after it; otherwise (deleted or updated since) the
 * pair is inserted for a moment to learn how many other members rank before it, and the
 * index is put back as it was (all inside this script, so no other client sees it); if the
 * key itself now ranks before the cursor, it counts too.
 */
export const SESSION_LIST = new LuaScript(
  "session-list",
  `local idx = KEYS[1]
local limit = tonumber(ARGV[2])
local start = 0
if ARGV[4] ~= '' then
  local s = tonumber(ARGV[4])
  local k = ARGV[5]
  local cur = redis.call('ZSCORE', idx, k)
  if cur and tonumber(cur) == s then
    start = redis.call('ZRANK', idx, k) + 1
  else
    redis.call('ZADD', idx, ARGV[4], k)
    start = redis.call('ZRANK', idx, k)
    if cur then
      redis.call('ZADD', idx, cur, k)
      -- Moved ahead of the cursor since: it counts among the members before it.
      if tonumber(cur) < s then start = start + 1 end
    else
      redis.call('ZREM', idx, k)
    end
  end
end
local maxScore = nil
if ARGV[3] ~= '' then maxScore = tonumber(ARGV[3]) end
local range = redis.call('ZRANGE', idx, start, start + limit, 'WITHSCORES')
local out = {}
local more = '0'
for i = 1, #range, 2 do
  if maxScore ~= nil and tonumber(range[i + 1]) > maxScore then break end
  if #out == limit then more = '1' break end
  local json = redis.call('HGET', ARGV[1] .. range[i], 'j')
  if json then out[#out + 1] = json end
end
out[#out + 1] = more
return out`,
);

// ------------------------------------------------------------------ transcripts

/**
 * KEYS: transcript list. ARGV: after (integer >= 0), upper bound (largest seq wanted) or '',
 * limit, 'asc' | 'desc'. Returns the first seq, then the entries in ascending seq order.
 */
export const TRANSCRIPT_READ = new LuaScript(
  "transcript-read",
  `local len = redis.call('LLEN', KEYS[1])
local after = tonumber(ARGV[1])
local upper = len
if ARGV[2] ~= '' then upper = math.min(len, tonumber(ARGV[2])) end
local limit = tonumber(ARGV[3])
if upper <= after then return {0} end
local first
local last
if ARGV[4] == 'desc' then
  last = upper
  first = math.max(after + 1, upper - limit + 1)
else
  first = after + 1
  last = math.min(upper, after + limit)
end
local items = redis.call('LRANGE', KEYS[1], first - 1, last - 1)
table.insert(items, 1, first)
return items`,
);

// ------------------------------------------------------------------ cron

/** KEYS: jobs hash, the job's run log. ARGV: job id. Returns 1 if the job existed. */
export const CRON_DELETE_JOB = new LuaScript(
  "cron-delete-job",
  `local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return n`,
);

/**
 * KEYS: the job's run log, the run counter. ARGV: startedAt, run JSON, keep.
 * Members are `<16-digit counter>:<JSON>`: unique even for identical runs, and among runs
 * with the same startedAt the later append sorts last.
 */
export const CRON_APPEND_RUN = new LuaScript(
  "cron-append-run",
  `${REFUSE_WRONG_TYPES}
refuseWrongTypes(KEYS[1], 'zset', KEYS[2], 'string')
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[1], string.format('%016d', n) .. ':' .. ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
return 1`,
);

// ------------------------------------------------------------------ devices

/**
 * KEYS: devices hash, the device's token set. ARGV: device id, token key prefix.
 * Returns 1 if the device existed.
 */
export const DEVICE_DELETE = new LuaScript(
  "device-delete",
  `${REFUSE_WRONG_TYPES}
refuseWrongTypes(KEYS[1], 'hash', KEYS[2], 'set')
local n = redis.call('HDEL', KEYS[1], ARGV[1])
for _, t in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('DEL', ARGV[2] .. t) end
redis.call('DEL', KEYS[2])
return n`,
);

/**
 * KEYS: token hash, the device's token set. ARGV: token hash, device id, token JSON,
 * expiresAt (integer epoch ms) or '', device-token-set key prefix.
 */
export const DEVICE_PUT_TOKEN = new LuaScript(
  "device-put-token",
  `${REFUSE_WRONG_TYPES}
refuseWrongTypes(KEYS[1], 'hash', KEYS[2], 'set')
local old = redis.call('HGET', KEYS[1], 'd')
if old and old ~= ARGV[2] then
  refuseWrongTypes(ARGV[5] .. old, 'set')
  redis.call('SREM', ARGV[5] .. old, ARGV[1])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'j', ARGV[3])
if ARGV[4] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1`,
);

/** KEYS: token hash. ARGV: token hash, device-token-set key prefix. Returns 1 if it existed. */
export const DEVICE_DELETE_TOKEN = new LuaScript(
  "device-delete-token",
  `local device = redis.call('HGET', KEYS[1], 'd')
if not device then return 0 end
redis.call('SREM', ARGV[2] .. device, ARGV[1])
return redis.call('DEL', KEYS[1])`,
);

/**
 * KEYS: the device's token set. ARGV: token key prefix. Returns the tokens' JSON, dropping
 * set members whose token has expired.
 */
export const DEVICE_LIST_TOKENS = new LuaScript(
  "device-list-tokens",
  `local out = {}
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local json = redis.call('HGET', ARGV[1] .. t, 'j')
  if json then out[#out + 1] = json else redis.call('SREM', KEYS[1], t) end
end
return out`,
);

// ------------------------------------------------------------------ approvals

/** KEYS: the session's approvals hash. Returns how many patterns it held. */
export const APPROVALS_CLEAR_ALL = new LuaScript(
  "approvals-clear-all",
  `local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n`,
);

// ------------------------------------------------------------------ queue

/**
 * KEYS: idempotency key, id counter, pending set, session index (`queue:session-of`).
 * ARGV: message key prefix, session-set key prefix, idempotency key, session key,
 * payload JSON, enqueuedAt.
 * Returns {1, id, i, s, p, t, d} for a duplicate, {0, id} for a new message.
 */
export const QUEUE_ENQUEUE = new LuaScript(
  "queue-enqueue",
  `${REFUSE_WRONG_TYPES}
local existing = redis.call('GET', KEYS[1])
if existing then
  local m = redis.call('HMGET', ARGV[1] .. existing, 'i', 's', 'p', 't', 'd')
  if m[1] then return {1, existing, m[1], m[2], m[3], m[4], m[5]} end
end
local nextId = string.format('%016d', (tonumber(redis.call('GET', KEYS[2]) or '0') or 0) + 1)
refuseWrongTypes(KEYS[3], 'zset', ARGV[2] .. ARGV[4], 'zset', ARGV[1] .. nextId, 'hash', KEYS[4], 'hash')
local n = redis.call('INCR', KEYS[2])
local id = string.format('%016d', n)
redis.call('HSET', ARGV[1] .. id, 'i', ARGV[3], 's', ARGV[4], 'p', ARGV[5], 't', ARGV[6], 'd', 0)
redis.call('SET', KEYS[1], id)
redis.call('ZADD', KEYS[3], n, id)
redis.call('ZADD', ARGV[2] .. ARGV[4], n, id)
redis.call('HSET', KEYS[4], id, ARGV[4])
return {0, id}`,
);

/**
 * KEYS: pending set, message hash, session index. ARGV: id, session-set key prefix,
 * idempotency key prefix, dedupe window ms. The message and its idempotency key are kept for
 * the window, so a late duplicate is still recognised. The id leaves both pending sets and
 * the session index; its session comes from the message hash or, when that is gone, from the
 * index. Returns 1 if it was pending.
 */
export const QUEUE_ACK = new LuaScript(
  "queue-ack",
  `${REFUSE_WRONG_TYPES}
refuseWrongTypes(KEYS[1], 'zset', KEYS[2], 'hash', KEYS[3], 'hash')
local m = redis.call('HMGET', KEYS[2], 'i', 's')
local session = m[2] or redis.call('HGET', KEYS[3], ARGV[1])
if session then refuseWrongTypes(ARGV[2] .. session, 'zset') end
if m[1] then refuseWrongTypes(ARGV[3] .. m[1], 'string') end
redis.call('HDEL', KEYS[3], ARGV[1])
if session then redis.call('ZREM', ARGV[2] .. session, ARGV[1]) end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local window = tonumber(ARGV[4])
local idem = nil
if m[1] and redis.call('GET', ARGV[3] .. m[1]) == ARGV[1] then idem = ARGV[3] .. m[1] end
if window > 0 then
  redis.call('PEXPIRE', KEYS[2], window)
  if idem then redis.call('PEXPIRE', idem, window) end
else
  redis.call('DEL', KEYS[2])
  if idem then redis.call('DEL', idem) end
end
return 1`,
);

/**
 * KEYS: pending set (all, or one session's), the all-sessions pending set (the same key when
 * listing all), the session index. ARGV: message key prefix, last rank (limit - 1), '1' to
 * count a delivery, '' or the score (enqueue counter) after which to start, session-set key
 * prefix.
 *
 * Returns {messages, orphans}: messages as {id, i, s, p, t, d} per message, flattened;
 * orphans as {id, other set} per pending id whose message hash is gone (an evicting
 * `maxmemory-policy`, a manual `DEL`), flattened. Orphans do not count towards the page (it
 * is filled from the ids after them, so a short page still means the set has no more) and
 * are removed from every pending set that holds them and from the session index: read
 * through all sessions, the session comes from the index. `other set` is the pending set
 * besides the one read that the id was removed from, or '' if none.
 *
 * An orphan is reported (returned) once: by the read that removes it from the all-sessions
 * set. One met by session that has already left the all-sessions set is returned only if it
 * was in the index; without either it is an id enqueued before the index existed, already
 * reported by the all-sessions read that removed it there (or acknowledged after its hash
 * was gone), and is removed silently.
 *
 * Every message, index entry and key type is read before anything is written (an orphan
 * removed, a delivery counted): a key of the wrong type fails the call with nothing changed.
 */
export const QUEUE_PENDING = new LuaScript(
  "queue-pending",
  `${REFUSE_WRONG_TYPES}
local want = tonumber(ARGV[2]) + 1
local ids, rows, orphans = {}, {}, {}
local seen = 0
while #ids < want do
  local need = want - #ids
  local batch
  if ARGV[4] ~= nil and ARGV[4] ~= '' then
    batch = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[4], '+inf', 'LIMIT', seen, need)
  else
    batch = redis.call('ZRANGE', KEYS[1], seen, seen + need - 1)
  end
  for _, id in ipairs(batch) do
    local m = redis.call('HMGET', ARGV[1] .. id, 'i', 's', 'p', 't', 'd')
    if m[1] then
      ids[#ids + 1] = id
      rows[#rows + 1] = m
    else
      orphans[#orphans + 1] = id
    end
  end
  seen = seen + #batch
  if #batch < need then break end
end
local reported = {}
if #orphans > 0 then
  local byAll = KEYS[1] == KEYS[2]
  refuseWrongTypes(KEYS[2], 'zset', KEYS[3], 'hash')
  local sessionSets, indexed = {}, {}
  for k, id in ipairs(orphans) do
    local s = redis.call('HGET', KEYS[3], id)
    indexed[k] = s ~= false
    if byAll and s then
      sessionSets[k] = ARGV[5] .. s
      refuseWrongTypes(sessionSets[k], 'zset')
    end
  end
  for k, id in ipairs(orphans) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
    local other = ''
    if byAll then
      if sessionSets[k] and redis.call('ZREM', sessionSets[k], id) == 1 then other = sessionSets[k] end
    elseif redis.call('ZREM', KEYS[2], id) == 1 then
      other = KEYS[2]
    end
    if byAll or other ~= '' or indexed[k] then
      reported[#reported + 1] = id
      reported[#reported + 1] = other
    end
  end
end
local out = {}
for r, id in ipairs(ids) do
  local m = rows[r]
  local d = m[5]
  if ARGV[3] == '1' then d = redis.call('HINCRBY', ARGV[1] .. id, 'd', 1) end
  out[#out + 1] = id
  out[#out + 1] = m[1]
  out[#out + 1] = m[2]
  out[#out + 1] = m[3]
  out[#out + 1] = m[4]
  out[#out + 1] = tostring(d)
end
return {out, reported}`,
);

// ------------------------------------------------------------------ key/value

/**
 * KEYS: value key, index, expiry index.
 * ARGV: key, value JSON, ttl ms or '', '1' for if-absent, fence counter key or '', fence
 * token, value key prefix, then optionally '1' to compare and the value JSON the key must
 * hold (compare-and-set: an absent key never matches).
 * Returns {1} when set, {0} when if-absent found the key or the compare failed,
 * {-1, current} when fenced.
 *
 * Each call also reclaims a few index entries of keys that have expired, so keys written
 * with a TTL and never listed do not pile up in the index.
 */
export const KV_SET = new LuaScript(
  "kv-set",
  `${REFUSE_WRONG_TYPES}
refuseWrongTypes(KEYS[2], 'zset', KEYS[3], 'zset')
if ARGV[5] ~= '' then
  local current = tonumber(redis.call('GET', ARGV[5]) or '0')
  if current ~= tonumber(ARGV[6]) then return {-1, current} end
end
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
if ARGV[8] == '1' then
  refuseWrongTypes(KEYS[1], 'string')
  if redis.call('GET', KEYS[1]) ~= ARGV[9] then return {0} end
end
${NOW_MS}
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 16)) do
  if redis.call('EXISTS', ARGV[7] .. k) == 0 then
    redis.call('ZREM', KEYS[2], k)
    redis.call('ZREM', KEYS[3], k)
  end
end
return {1}`,
);

/**
 * KEYS: value key, index, expiry index. ARGV: key, '1' to compare, the value JSON it must hold.
 * Returns 1 if it existed and was deleted; 0 when absent, or (compare) holding another value.
 */
export const KV_DELETE = new LuaScript(
  "kv-delete",
  `${REFUSE_WRONG_TYPES}
refuseWrongTypes(KEYS[2], 'zset', KEYS[3], 'zset')
if ARGV[2] == '1' and redis.call('GET', KEYS[1]) ~= ARGV[3] then return 0 end
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return n`,
);

/** Index entries one `kv.scan` page looks at beyond `limit + 1`, so a page is a short script. */
export const KV_SCAN_EXTRA = 1000;

/**
 * KEYS: index, expiry index. ARGV: value key prefix, lex min, lex max, limit.
 * One page of the live keys in the range, in order: returns `{position, key...}` with up to
 * `limit` keys, where `position` is '' when the range is exhausted, else the key to page on
 * from (exclusive). Entries whose key has expired are dropped from both indexes on the way.
 * It looks at no more than `limit + 1 + KV_SCAN_EXTRA` entries, so it never holds the server
 * long: a page short of live keys then ends early, with a position.
 */
export const KV_SCAN = new LuaScript(
  "kv-scan",
  `local limit = tonumber(ARGV[4])
local budget = limit + 1 + ${KV_SCAN_EXTRA}
local out = {}
local min = ARGV[2]
local last = nil
local seen = 0
while true do
  local want = math.min(limit + 1 - #out, budget - seen)
  if want <= 0 then break end
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[3], 'LIMIT', 0, want)
  for _, k in ipairs(batch) do
    seen = seen + 1
    last = k
    if redis.call('EXISTS', ARGV[1] .. k) == 1 then
      out[#out + 1] = k
    else
      redis.call('ZREM', KEYS[1], k)
      redis.call('ZREM', KEYS[2], k)
    end
  end
  if #batch < want then
    table.insert(out, 1, '')
    return out
  end
  min = '(' .. last
end
if #out > limit then
  out[#out] = nil
  table.insert(out, 1, out[#out])
else
  table.insert(out, 1, last)
end
return out`,
);

// ------------------------------------------------------------------ locks

/**
 * KEYS: lock key, fencing counter. ARGV: owner, ttl ms, counter retention ms.
 * Takes the lock if free: the next fencing token and the lease in one step.
 * Returns {token, expiresAt}, or {} when someone holds it.
 *
 * The counter expires `retention` after the lease (so the counters of locks no longer used,
 * such as the leases of deleted sessions, do not stay for ever). A counter that is not there
 * (never made, or expired) starts at the server time in microseconds: above every token an
 * earlier counter of the lock handed out, since each took a script run of its own and the
 * server runs far fewer than one a microsecond.
 */
export const LOCK_ACQUIRE = new LuaScript(
  "lock-acquire",
  `if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
${NOW_MS}
local token
if redis.call('EXISTS', KEYS[2]) == 1 then
  token = redis.call('INCR', KEYS[2])
else
  token = tonumber(__t[1]) * 1000000 + tonumber(__t[2])
  redis.call('SET', KEYS[2], string.format('%d', token))
end
local expires = now + tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%d:%d:', token, expires) .. ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return {token, expires}`,
);

/**
 * KEYS: lock key, fencing counter. ARGV: owner, token, ttl ms, counter retention ms.
 * Returns {token, expiresAt} if the lease was still held by that owner and token, else {};
 * a renewal also keeps the counter for `retention` after the new expiry.
 */
export const LOCK_RENEW = new LuaScript(
  "lock-renew",
  `local v = redis.call('GET', KEYS[1])
if not v then return {} end
local token, _, owner = string.match(v, '^(%d+):(%d+):(.*)$')
if token ~= ARGV[2] or owner ~= ARGV[1] then return {} end
${NOW_MS}
local expires = now + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%s:%d:', token, expires) .. owner, 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[4]))
return {tonumber(token), expires}`,
);

/** KEYS: lock key. ARGV: owner, token. Returns 1 if the lease was held and is now released. */
export const LOCK_RELEASE = new LuaScript(
  "lock-release",
  `local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local token, _, owner = string.match(v, '^(%d+):(%d+):(.*)$')
if token ~= ARGV[2] or owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`,
);

// ------------------------------------------------------------------ fenced writes

/** KEYS: transcript list. ARGV: the entries' JSON. Returns the new length (last seq). */
export const TRANSCRIPT_APPEND = new LuaScript(
  "transcript-append",
  `local n = redis.call('LLEN', KEYS[1])
for i = 1, #ARGV do n = redis.call('RPUSH', KEYS[1], ARGV[i]) end
return n`,
);

/** KEYS: transcript list. Returns 1 if it existed. */
export const TRANSCRIPT_DELETE = new LuaScript(
  "transcript-delete",
  `return redis.call('DEL', KEYS[1])`,
);

/**
 * The fenced variant of `script`: one more key (last), the lock's fencing counter, and one
 * more argument (last), the token presented. When the counter holds another token (a later
 * holder took the lock) it returns `{-1, current}` and writes nothing; otherwise it runs
 * `script` unchanged (every script fenced this way returns a number, never a table).
 */
export function fencedScript(script: LuaScript): LuaScript {
  return new LuaScript(
    `${script.name}-fenced`,
    `local __fk = KEYS[#KEYS]
local __ft = ARGV[#ARGV]
KEYS[#KEYS] = nil
ARGV[#ARGV] = nil
local __fc = tonumber(redis.call('GET', __fk) or '0')
if __fc ~= tonumber(__ft) then return {-1, __fc} end
${script.source}`,
  );
}
