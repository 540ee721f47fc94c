-- Take over a claimed firing whose claimer missed its deadline (it died, or
-- Redis restarted under it): the firing gets a new deadline and a new
-- claimer, who delivers it under the same message id.
--
-- KEYS[1]  firing    zset    claimed firing "ID:MS" -> claim deadline (ms)
-- KEYS[2]  schedule  hash    the firing's schedule
-- ARGV[1]  the firing, "ID:MS"
-- ARGV[2]  claiming worker id
-- ARGV[3]  claim TTL, ms
-- Returns: 1 taken over, 0 not (delivered meanwhile, or its deadline is still ahead)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) > now then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'claimed_by', ARGV[2])
end
return 1
