-- Remove every worker whose heartbeat expiry has passed (Redis TIME).
-- The ownership index of a pruned worker is left alone: recovery reads it
-- to move the dead worker's sessions.
--
-- KEYS[1]  live   zset  worker id -> heartbeat expiry (ms)
-- KEYS[2]  beats  zset  worker id -> last heartbeat (ms)
-- KEYS[3]  state  hash  worker id -> state
-- KEYS[4]  info   hash  worker id -> info JSON
-- KEYS[5]  instance  hash  worker id -> instance token
-- (no ARGV)
-- Returns: the ids removed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
end
return dead
