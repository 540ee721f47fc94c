-- Register (or re-register) a worker and record its first heartbeat.
-- "now" is Redis TIME, so every host agrees on expiry instants.
--
-- KEYS[1]  live   zset  worker id -> heartbeat expiry (ms)
-- KEYS[2]  beats  zset  worker id -> last heartbeat (ms)
-- KEYS[3]  state  hash  worker id -> "active" | "draining"
-- KEYS[4]  info   hash  worker id -> JSON of static facts (host, pid, queue, started)
-- ARGV[1]  worker id
-- ARGV[2]  info JSON
-- ARGV[3]  heartbeat TTL in ms
-- ARGV[4]  initial state
-- Returns: now in ms (Redis clock).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
return now
