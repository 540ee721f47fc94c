-- Claim one due firing of a schedule, exactly once across the cluster.
--
-- The firing is claimed only if the schedule's next firing is still the one
-- the caller read (another worker's claim or a cancel moved it: "moved") and
-- is due by Redis' clock. The claim records the firing ("ID:MS") with a
-- deadline on the firing set, and in the same step moves the schedule to its
-- next firing (computed by the caller from the cron expression; "" for a
-- one-shot schedule, which leaves the due set). The claimer then enqueues
-- the firing's turn under a message id derived from the firing and removes
-- it from the firing set (schedule_done.lua); a claimer that dies before that
-- leaves the firing to whichever worker finds its deadline passed
-- (schedule_reclaim.lua), and the message id makes a second enqueue a no-op.
--
-- KEYS[1]  due       zset    schedule id -> next firing (ms)
-- KEYS[2]  firing    zset    claimed firing "ID:MS" -> claim deadline (ms)
-- KEYS[3]  schedule  hash    the schedule
-- KEYS[4]  index     set     the session's schedule ids
-- ARGV[1]  schedule id
-- ARGV[2]  the firing the caller read (epoch ms, its score on the due set)
-- ARGV[3]  next firing, epoch ms ("" when this is the last)
-- ARGV[4]  claiming worker id
-- ARGV[5]  claim TTL, ms
-- Returns: {"claimed", "ID:MS"} | {"moved", ""} | {"early", ""} | {"gone", ""}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then
  return {'moved', ''}
end
if tonumber(score) > now then
  return {'early', ''}
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[4], ARGV[1])
  return {'gone', ''}
end
local firing = ARGV[1] .. ':' .. ARGV[2]
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), firing)
redis.call('HSET', KEYS[3], 'last_fire', ARGV[2], 'claimed_by', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'fired', 1)
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[3], 'next', ARGV[3])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[3], 'next', '')
end
return {'claimed', firing}
