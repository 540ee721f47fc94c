-- Store a session's frozen system prompt + tool schemas, fenced by the lease.
-- "now" is Redis TIME (ms), used for the session's creation time.
--
-- KEYS[1]  lease   hash    fields: token, worker
-- KEYS[2]  prompt  string  msgpack {system_prompt, tool_schemas}
-- KEYS[3]  meta    hash    session_key, created, last_active, turns
-- ARGV[1]  fencing token of the caller
-- ARGV[2]  msgpack blob
-- ARGV[3]  session key (stored in meta)
-- Returns: {1, token} stored; {0, current token or ""} lease lost (nothing written).
local current = redis.call('HGET', KEYS[1], 'token')
if current ~= ARGV[1] then
  return {0, current or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSETNX', KEYS[3], 'session_key', ARGV[3])
redis.call('HSETNX', KEYS[3], 'created', now)
redis.call('HSETNX', KEYS[3], 'last_active', now)
redis.call('HSETNX', KEYS[3], 'turns', 0)
return {1, current}
