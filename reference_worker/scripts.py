"""The Lua scripts that change a job's Redis state, each in one atomic step.

Every script gets the queue's keys in the same order (``KEY_ORDER``) and names them in its
first line. Times come from Redis ``TIME`` (milliseconds), so leases and retry due times do not
depend on the workers' clocks.
"""

from __future__ import annotations

from typing import Final

from reference_worker.keys import Keys

KEY_ORDER: Final = ("queue", "jobs", "leases", "owners", "attempts", "state", "scheduled", "dead",
                    "locks", "poison")


def key_list(keys: Keys) -> list[str]:
    return [keys.queue, *(getattr(keys, name) for name in KEY_ORDER[1:])]


_HEADER = """
local queue, jobs, leases, owners, attempts, state, scheduled, dead, locks, poison =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Promote due retries back onto the queue, then move one job from the queue into flight with
# its lease, owner and attempt number: the reliable fetch. A duplicate of a job that is in
# flight, scheduled or finished is dropped; a job whose uniqueness lock is held elsewhere is
# scheduled again (no attempt is used up).
# ARGV: worker, lease_ms (0: no lease), lock_ttl_ms (0: no expiry), lock_retry_ms,
#       dedupe (1/0), promote_limit, lock_prefix
# -> {'empty'} | {'poison', raw} | {'duplicate', id, state} | {'locked', id, holder}
#    | {'job', raw, attempt, lease_expiry_ms}
FETCH: Final = _HEADER + """
local worker, lease_ms, lock_ttl_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, ARGV[6])) do
  redis.call('ZREM', scheduled, id)
  local payload = redis.call('HGET', jobs, id)
  if payload then
    redis.call('LPUSH', queue, payload)
    redis.call('HSET', state, id, 'queued')
  end
end

local raw = redis.call('RPOP', queue)
if not raw then return {'empty'} end
local ok, env = pcall(cjson.decode, raw)
if not ok or type(env) ~= 'table' or env['id'] == nil or env['id'] == cjson.null then
  redis.call('LPUSH', poison, raw)
  return {'poison', raw}
end
local id = tostring(env['id'])

local seen = redis.call('HGET', state, id)
if ARGV[5] == '1' and seen and seen ~= 'queued' then
  return {'duplicate', id, seen}
end

local attempt = (tonumber(redis.call('HGET', attempts, id)) or 0) + 1
local token = worker .. '|' .. attempt
local unique_key = env['unique_key']
if type(unique_key) == 'string' then
  local lock = ARGV[7] .. unique_key
  local holder = id .. '|' .. token
  local got
  if lock_ttl_ms > 0 then
    got = redis.call('SET', lock, holder, 'NX', 'PX', lock_ttl_ms)
  else
    got = redis.call('SET', lock, holder, 'NX')
  end
  if not got then
    redis.call('HSET', jobs, id, raw)
    redis.call('ZADD', scheduled, now + tonumber(ARGV[4]), id)
    redis.call('HSET', state, id, 'scheduled')
    return {'locked', id, redis.call('GET', lock) or ''}
  end
  redis.call('SADD', locks, lock)
end

redis.call('HSET', attempts, id, attempt)
redis.call('HSET', jobs, id, raw)
redis.call('HSET', owners, id, token)
redis.call('HSET', state, id, 'leased')
if lease_ms > 0 then
  redis.call('ZADD', leases, now + lease_ms, id)
end
return {'job', raw, attempt, now + lease_ms}
"""

# Extend the lease (and the uniqueness lock) of an attempt that still owns its job. If Redis
# forgot the job entirely (a restart without persistence), put the lease back (unless
# restore is 0: then a forgotten lease counts as lost).
# ARGV: id, token, lease_ms, lock_key ('' none), lock_holder, lock_ttl_ms, payload, attempt,
#       restore (1/0)
# -> 1 extended | 2 restored | 0 lost (reclaimed, or owned by another attempt)
HEARTBEAT: Final = _HEADER + """
local id, token, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lock, holder, lock_ttl_ms = ARGV[4], ARGV[5], tonumber(ARGV[6])
local owner = redis.call('HGET', owners, id)
local result = 1
if owner ~= token then
  if owner or redis.call('HEXISTS', state, id) == 1 or ARGV[9] == '0' then return 0 end
  redis.call('HSET', jobs, id, ARGV[7])
  redis.call('HSET', owners, id, token)
  redis.call('HSET', state, id, 'leased')
  if redis.call('HEXISTS', attempts, id) == 0 then redis.call('HSET', attempts, id, ARGV[8]) end
  if lock ~= '' and redis.call('EXISTS', lock) == 0 then
    redis.call('SET', lock, holder, 'PX', lock_ttl_ms)
    redis.call('SADD', locks, lock)
  end
  result = 2
end
redis.call('ZADD', leases, now + lease_ms, id)
if lock ~= '' and lock_ttl_ms > 0 and redis.call('GET', lock) == holder then
  redis.call('PEXPIRE', lock, lock_ttl_ms)
end
return result
"""

# End an attempt's hold on its job: done, scheduled for retry, or dead-lettered. Only the
# attempt that owns the lease may do it (or anyone, for a job Redis has forgotten, unless
# restore is 0). The uniqueness lock is released only if this attempt holds it.
# ARGV: id, token, disposition (done|retry|dead), payload, attempt, delay_ms, dead_json,
#       lock_key ('' none), lock_holder, force ('1': skip the ownership check; only the
#       zombie_worker bug switch sets it), restore (1/0)
# -> 'ok' | 'not_owner'
SETTLE: Final = _HEADER + """
local id, token, disposition = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('HGET', owners, id)
if ARGV[10] ~= '1' and owner ~= token
    and (owner or redis.call('HEXISTS', state, id) == 1 or ARGV[11] == '0') then
  return 'not_owner'
end
redis.call('ZREM', leases, id)
redis.call('HDEL', owners, id)
if ARGV[8] ~= '' and redis.call('GET', ARGV[8]) == ARGV[9] then
  redis.call('DEL', ARGV[8])
end
if redis.call('HEXISTS', attempts, id) == 0 then redis.call('HSET', attempts, id, ARGV[5]) end
if disposition == 'retry' then
  redis.call('HSET', jobs, id, ARGV[4])
  redis.call('ZADD', scheduled, now + tonumber(ARGV[6]), id)
  redis.call('HSET', state, id, 'scheduled')
elseif disposition == 'dead' then
  redis.call('HDEL', jobs, id)
  redis.call('HSET', dead, id, ARGV[7])
  redis.call('HSET', state, id, 'dead')
else
  redis.call('HDEL', jobs, id)
  redis.call('HSET', state, id, 'done')
end
return 'ok'
"""

# Leases that have expired, with their owner token and envelope: the reaper's candidates.
# ARGV: limit  -> {id, token, payload, id, token, payload, ...}
EXPIRED: Final = _HEADER + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, ARGV[1])) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', owners, id) or ''
  out[#out + 1] = redis.call('HGET', jobs, id) or ''
end
return out
"""
