-- Bump the cluster-wide tool registry generation and announce it, atomically.
--
-- KEYS[1]  registry  string  registry generation counter
-- ARGV[1]  events channel name (a channel, not a key)
-- ARGV[2]  the reason, already JSON-encoded as a string literal by the caller
-- Returns: the new generation.
local generation = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1],
  '{"type":"registry","generation":' .. generation .. ',"reason":' .. ARGV[2] .. '}')
return generation
