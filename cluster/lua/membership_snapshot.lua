-- Every registered worker with its expiry, last beat, state and info, plus
-- Redis' "now", in one consistent read. Liveness (expiry > now) is decided by
-- the caller's pure code from these values.
--
-- KEYS[1]  live   zset  worker id -> heartbeat expiry (ms)
-- KEYS[2]  beats  zset  worker id -> last heartbeat (ms)
-- KEYS[3]  state  hash  worker id -> state
-- KEYS[4]  info   hash  worker id -> info JSON
-- (no ARGV)
-- Returns: {now_ms, id1, expiry1, beat1, state1, info1, id2, ...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {tostring(now)}
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #live, 2 do
  local id = live[i]
  out[#out + 1] = id
  out[#out + 1] = live[i + 1]
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[4], id) or ''
end
return out
