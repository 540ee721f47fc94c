-- Create a schedule: store it, index it under its session and put its first
-- firing on the due set, unless the session already has its limit of
-- schedules (then nothing is written).
--
-- KEYS[1]  due       zset    schedule id -> next firing (ms)
-- KEYS[2]  schedule  hash    the new schedule
-- KEYS[3]  index     set     the session's schedule ids
-- ARGV[1]  schedule id
-- ARGV[2]  first firing, epoch ms
-- ARGV[3]  most schedules one session may have
-- ARGV[4..n] schedule hash field, value pairs
-- Returns: {"created", schedules of the session now}
--          {"full", schedules of the session}
local count = redis.call('SCARD', KEYS[3])
if count >= tonumber(ARGV[3]) then
  return {'full', count}
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[2], 'next', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return {'created', count + 1}
