-- Cancel a schedule of a session: no further firing is claimed. A firing
-- already claimed and enqueued still runs; one claimed by a worker that died
-- before enqueueing it is dropped when it is taken over (its text is gone).
--
-- KEYS[1]  due       zset    schedule id -> next firing (ms)
-- KEYS[2]  schedule  hash    the schedule
-- KEYS[3]  index     set     the session's schedule ids
-- ARGV[1]  schedule id
-- ARGV[2]  session key (a schedule of another session is not touched)
-- Returns: 1 cancelled, 0 no such schedule for this session
if redis.call('HGET', KEYS[2], 'session') ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
