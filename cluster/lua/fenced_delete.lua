-- Delete keys, fenced by a running-turn lease unless the token is empty
-- (an unfenced administrative delete, e.g. a hard reset from the coordinator).
--
-- KEYS[1]  lease  hash  fields: token, worker
-- KEYS[2..n] keys to delete (all on the lease's slot)
-- ARGV[1]  fencing token of the caller, or "" for no fencing
-- Returns: {1, number of keys deleted}; {0, current token or ""} lease lost (nothing deleted).
if ARGV[1] ~= '' then
  local current = redis.call('HGET', KEYS[1], 'token')
  if current ~= ARGV[1] then
    return {0, current or ''}
  end
end
local deleted = 0
for i = 2, #KEYS do
  deleted = deleted + redis.call('DEL', KEYS[i])
end
return {1, deleted}
