-- Delete keys, fenced by a running-turn lease unless the token is empty
-- (an unfenced administrative delete, e.g. a hard reset from the coordinator).
--
-- KEYS[1]  lease  hash  fields: token, worker, fence
-- KEYS[2..n] keys to delete (all on the lease's slot)
-- ARGV[1]  fence of the caller ("N:replid/token", see fenced_hset.lua), or "" for no fencing
-- Returns: {1, number of keys deleted}; {0, current token or "", or "failover" when granted on an earlier primary} lease lost (nothing deleted).
if ARGV[1] ~= '' then
  local held = redis.call('HMGET', KEYS[1], 'token', 'fence')
  if held[2] ~= ARGV[1] then
    return {0, held[1] or ''}
  end
  local info = redis.pcall('INFO', 'replication')
  local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
  if string.match(ARGV[1], '%p(%x*)/') ~= primary then
    return {0, 'failover'}
  end
end
local deleted = 0
for i = 2, #KEYS do
  deleted = deleted + redis.call('DEL', KEYS[i])
end
return {1, deleted}
