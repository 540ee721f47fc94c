-- Heartbeat of a registered worker: push its expiry to now + TTL.
-- "now" is Redis TIME. A worker that was pruned (declared dead) is not
-- revived here, nor is one whose id another process instance registered
-- since: it gets 0 and must register again (or stop).
--
-- KEYS[1]  live      zset  worker id -> heartbeat expiry (ms)
-- KEYS[2]  beats     zset  worker id -> last heartbeat (ms)
-- KEYS[3]  state     hash  worker id -> state
-- KEYS[4]  instance  hash  worker id -> instance token
-- ARGV[1]  worker id
-- ARGV[2]  heartbeat TTL in ms
-- ARGV[3]  instance token of the caller
-- Returns: {1, state} when registered, {0, ""} when not (or not this instance).
local state = redis.call('HGET', KEYS[3], ARGV[1])
if not state or redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[3] then
  return {0, ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then
  -- Expired, so survivors may be recovering this worker's turns right now
  return {0, ''}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return {1, state}
