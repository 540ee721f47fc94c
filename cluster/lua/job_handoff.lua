-- Hand a claimed turn job from a worker's in-flight list to another worker's
-- queue (front: it is older than what was queued there since), atomically.
-- Used when a worker finds the session of a claimed job owned by another
-- worker. A job no longer on the source's in-flight list was already moved
-- (recovery, drain) and is left alone.
--
-- KEYS[1]  inflight  list  the source worker's in-flight job ids
-- KEYS[2]  queue     list  the target worker's rq queue
-- KEYS[3]  job       hash  the rq job hash
-- KEYS[4]  started   zset  the source queue's rq started registry
-- ARGV[1]  job id
-- ARGV[2]  target worker id
-- ARGV[3]  target rq queue name (the job's "origin")
-- ARGV[4]  the claim's started-registry member (job id:execution id)
-- Returns: 1 when moved, 0 when the job was not on the source's in-flight list.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[4], ARGV[4])
if redis.call('EXISTS', KEYS[3]) == 0 then
  return 1
end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'status', 'queued', 'ac_worker', ARGV[2], 'origin', ARGV[3])
return 1
