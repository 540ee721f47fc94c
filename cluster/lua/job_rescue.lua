-- Put back on its worker's queue a live job that no list holds, so it runs.
--
-- A queued or started job always sits on its worker's queue or in-flight
-- list (claim, hand-off and recovery move it between them atomically). A
-- Redis failover can break that: the promoted replica may have a claim's job
-- status and lack its in-flight entry, or the reverse, and then every
-- resubmission of the message is told "pending" while no worker will ever
-- run it. Run when a resubmission finds the job pending, and by a worker
-- after a failover for the pending jobs of the sessions it owns: a job of
-- that worker listed in neither of its lists goes to the back of its queue,
-- with its pending entry restored, and runs (a copy a worker still holds in
-- memory finds it answered, or waits for its lease).
--
-- KEYS[1]  inflight  list  the job's worker's in-flight job ids
-- KEYS[2]  queue     list  the job's worker's rq queue
-- KEYS[3]  job       hash  the rq job hash (status, ac_seq)
-- KEYS[4]  pending   zset  the session's pending job ids -> sequence
-- ARGV[1]  job id
-- ARGV[2]  the worker whose lists KEYS[1] and KEYS[2] are
-- Returns: 1 when the job was put back, 0 when it is listed, not live, or
--          another worker's.
local job = redis.call('HMGET', KEYS[3], 'status', 'ac_worker')
if (job[1] ~= 'queued' and job[1] ~= 'started') or job[2] ~= ARGV[2] then
  return 0
end
if redis.call('LPOS', KEYS[1], ARGV[1]) or redis.call('LPOS', KEYS[2], ARGV[1]) then
  return 0
end
local seq = redis.call('HGET', KEYS[3], 'ac_seq')
if seq and not redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  redis.call('ZADD', KEYS[4], seq, ARGV[1])
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'status', 'queued')
return 1
