-- Register (or re-register) a worker and record its first heartbeat.
-- "now" is Redis TIME, so every host agrees on expiry instants. A worker id
-- is unique among live workers: while another process instance holds the id
-- with a heartbeat that has not expired, registering is refused (unless the
-- caller forces it, having proved the other instance dead).
--
-- KEYS[1]  live      zset  worker id -> heartbeat expiry (ms)
-- KEYS[2]  beats     zset  worker id -> last heartbeat (ms)
-- KEYS[3]  state     hash  worker id -> "active" | "draining"
-- KEYS[4]  info      hash  worker id -> JSON of static facts (host, pid, queue, started)
-- KEYS[5]  instance  hash  worker id -> instance token of the registered process
-- ARGV[1]  worker id
-- ARGV[2]  info JSON
-- ARGV[3]  heartbeat TTL in ms
-- ARGV[4]  initial state
-- ARGV[5]  instance token of the caller
-- ARGV[6]  "1" to take the id over from a live instance, "0" otherwise
-- Returns: {1, now ms} registered; {0, expiry ms, info JSON of the holder} refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('HGET', KEYS[5], ARGV[1])
if ARGV[6] ~= '1' and holder and holder ~= ARGV[5] then
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if expiry and tonumber(expiry) > now then
    return {0, expiry, redis.call('HGET', KEYS[4], ARGV[1]) or ''}
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
return {1, now}
