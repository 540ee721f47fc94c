-- Drop a session's owner if it is the given worker (compare-and-delete).
-- The epoch is kept, so the next owner's epoch is still larger.
--
-- KEYS[1]  owner  hash  fields: worker, epoch          (session slot)
-- KEYS[2]  owned  set   session keys the worker owns    (cross-slot index)
-- ARGV[1]  session key
-- ARGV[2]  worker id expected to own the session
-- Returns: 1 when released, 0 when the session had another owner or none.
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], 'worker')
return 1
