-- Store a new config document, bump the config version and announce it, atomically.
--
-- KEYS[1]  doc      string  JSON config document
-- KEYS[2]  version  string  config version counter
-- ARGV[1]  JSON config document (validated by the caller)
-- ARGV[2]  events channel name (a channel, not a key: PUBLISH reaches every node)
-- Returns: the new config version.
redis.call('SET', KEYS[1], ARGV[1])
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], '{"type":"config","version":' .. version .. '}')
return version
