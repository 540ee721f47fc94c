-- Release a lease the caller holds (compare-and-delete on the token).
--
-- KEYS[1]  lease  hash  fields: token, worker
-- ARGV[1]  fencing token of the caller
-- Returns: 1 when released, 0 when it was not the caller's any more.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
