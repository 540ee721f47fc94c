-- Set a registered worker's state (active / draining).
--
-- KEYS[1]  state  hash  worker id -> state
-- ARGV[1]  worker id
-- ARGV[2]  new state
-- Returns: 1 when the worker is registered (state set), 0 otherwise.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
