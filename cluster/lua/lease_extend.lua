-- Extend a lease the caller still holds (token compare).
--
-- KEYS[1]  lease  hash  fields: token, worker
-- ARGV[1]  fencing token of the caller
-- ARGV[2]  new TTL in ms (from now)
-- Returns: 1 when extended, 0 when the lease expired or belongs to another token.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
