-- Store a session's frozen system prompt + tool schemas, fenced by the lease.
-- "now" is Redis TIME (ms), used for the session's creation time.
--
-- KEYS[1]  lease   hash    fields: token, worker, fence
-- KEYS[2]  prompt  string  msgpack {system_prompt, tool_schemas}
-- KEYS[3]  meta    hash    session_key, created, last_active, turns
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  msgpack blob
-- ARGV[3]  session key (stored in meta)
-- Returns: {1, token} stored; {0, current token or "", or "failover" when granted on an earlier primary} lease lost (nothing written).
local held = redis.call('HMGET', KEYS[1], 'token', 'fence')
if held[2] ~= ARGV[1] then
  return {0, held[1] or ''}
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
if string.match(ARGV[1], '%p(%x*)/') ~= primary then
  return {0, 'failover'}
end
local current = held[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSETNX', KEYS[3], 'session_key', ARGV[3])
redis.call('HSETNX', KEYS[3], 'created', now)
redis.call('HSETNX', KEYS[3], 'last_active', now)
redis.call('HSETNX', KEYS[3], 'turns', 0)
return {1, current}
