-- Set one hash field, fenced by a running-turn lease (used for tool state).
--
-- KEYS[1]  lease  hash  fields: token, worker, fence
-- KEYS[2]  the hash to write
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  field
-- ARGV[3]  value
-- Returns: {1, token} written; {0, current token or "", or "failover" when granted on an earlier primary} lease lost (nothing written).
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
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return {1, current}
