-- Break a session's lease held by a worker declared dead or cut off, so the
-- session's next turn need not wait out the lease TTL. The fencing counter
-- is untouched: the old holder's token stays stale for every fenced write.
--
-- KEYS[1]  lease  hash  fields: token, worker
-- ARGV[1]  worker id whose lease to break
-- Returns: 1 when a lease of that worker was deleted, 0 otherwise.
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
