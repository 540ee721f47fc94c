-- Store a new config document, bump the config version, record it in the bounded
-- history and announce it, atomically.
--
-- KEYS[1]  doc      string  JSON config document (the current one)
-- KEYS[2]  version  string  config version counter
-- KEYS[3]  docs     hash    version -> JSON document (the last ARGV[4] versions)
-- KEYS[4]  history  list    JSON publish records, newest first (at most ARGV[4])
-- ARGV[1]  JSON config document (validated by the caller)
-- ARGV[2]  events channel name (a channel, not a key: PUBLISH reaches every node)
-- ARGV[3]  JSON object describing the publish (author, digest, source, note);
--          the script adds "version" and "at" (Redis TIME, seconds)
-- ARGV[4]  how many versions the history and the docs hash keep
-- ARGV[5]  (optional) the version the caller compared its document with:
--          nothing is published when the current version differs
-- Returns: the new config version; -1 when ARGV[5] is not the current version.
if ARGV[5] and tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[5]) then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1])
local version = redis.call('INCR', KEYS[2])
local keep = tonumber(ARGV[4])
redis.call('HSET', KEYS[3], version, ARGV[1])
if version > keep then
  redis.call('HDEL', KEYS[3], version - keep)
end
local record = cjson.decode(ARGV[3])
local now = redis.call('TIME')
record['version'] = version
record['at'] = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('LPUSH', KEYS[4], cjson.encode(record))
redis.call('LTRIM', KEYS[4], 0, keep - 1)
redis.call('PUBLISH', ARGV[2], '{"type":"config","version":' .. version .. '}')
return version
