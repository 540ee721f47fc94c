-- Admit one request of a tenant, or say how long it must wait. Every
-- gateway runs this script, so every gateway applies the same limits.
--
-- Requests per minute: a generic cell rate (GCRA) in one hash field: the
-- theoretical arrival time ("tat", ms on Redis TIME). A request is admitted
-- while tat - now <= 60000 - interval (interval = 60000 / limit), so a
-- tenant may burst its whole minute at once and then one per interval.
-- Turns in flight: a sorted set of the turn's job id -> expiry (ms). An
-- entry leaves it when the worker commits or answers the turn (ZREM), or
-- when it expires (a turn whose worker died and whose job was lost); expired
-- entries are removed here before counting. A job id already in the set (a
-- resubmitted message) is not counted twice.
-- A refused request changes nothing.
--
-- KEYS[1]  tenant rate      hash  field tat: theoretical arrival time (ms)
-- KEYS[2]  tenant in-flight zset  job id -> expiry (ms)
-- ARGV[1]  requests per minute (0: no limit)
-- ARGV[2]  turns in flight (0: no limit)
-- ARGV[3]  job id of the turn this request starts ('': it starts none)
-- ARGV[4]  lifetime of an in-flight entry (ms)
-- Returns: {1, 0, ''} admitted; {0, retry_after_ms, 'requests_per_minute' |
--          'turns_in_flight'} refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local job = ARGV[3]
local lifetime = tonumber(ARGV[4])

local new_tat = nil
if rpm > 0 then
  local interval = 60000 / rpm
  local tolerance = 60000 - interval
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
  if tat < now then
    tat = now
  end
  if tat - now > tolerance then
    return {0, math.ceil(tat - tolerance - now), 'requests_per_minute'}
  end
  new_tat = tat + interval
end

local track = job ~= '' and cap > 0
if track then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if not redis.call('ZSCORE', KEYS[2], job) and redis.call('ZCARD', KEYS[2]) >= cap then
    return {0, 1000, 'turns_in_flight'}
  end
end

if new_tat then
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', new_tat))
  redis.call('PEXPIRE', KEYS[1], math.ceil(new_tat - now) + 1000)
end
if track then
  redis.call('ZADD', KEYS[2], now + lifetime, job)
  redis.call('PEXPIRE', KEYS[2], lifetime)
end
return {1, 0, ''}
