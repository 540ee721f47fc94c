-- Extend a lease the caller still holds (token compare).
--
-- KEYS[1]  lease  hash  fields: token, worker, fence
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  new TTL in ms (from now)
-- Returns: 1 when extended, 0 when the lease expired or belongs to another token.
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then
  return 0
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
if string.match(ARGV[1], '%p(%x*)/') ~= primary then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
