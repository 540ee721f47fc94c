-- Release a lease the caller holds (compare-and-delete on the token).
--
-- KEYS[1]  lease  hash  fields: token, worker, fence
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- Returns: 1 when released, 0 when it was not the caller's any more.
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then
  return 0
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
if string.match(ARGV[1], '%p(%x*)/') ~= primary then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
