-- Remove a worker from membership (it is gone: drained or shut down).
--
-- KEYS[1]  live   zset  worker id -> heartbeat expiry (ms)
-- KEYS[2]  beats  zset  worker id -> last heartbeat (ms)
-- KEYS[3]  state  hash  worker id -> state
-- KEYS[4]  info   hash  worker id -> info JSON
-- KEYS[5]  instance  hash  worker id -> instance token
-- ARGV[1]  worker id
-- Returns: 1 when the worker was registered, 0 otherwise.
local existed = redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return existed
