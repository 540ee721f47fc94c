-- Set one hash field, fenced by a running-turn lease (used for tool state).
--
-- KEYS[1]  lease  hash  fields: token, worker
-- KEYS[2]  the hash to write
-- ARGV[1]  fencing token of the caller
-- ARGV[2]  field
-- ARGV[3]  value
-- Returns: {1, token} written; {0, current token or ""} lease lost (nothing written).
local current = redis.call('HGET', KEYS[1], 'token')
if current ~= ARGV[1] then
  return {0, current or ''}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return {1, current}
