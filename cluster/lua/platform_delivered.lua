-- Record that a delivery's reply was sent to the chat, for the current
-- holder of the bot's lease only: remove it from the inbox (and its
-- streaming message's id from previews), remember its id
-- (trimmed after the retention) so a redelivery is a duplicate.
--
-- KEYS[1]  lease  hash  fields: token, worker, fence (the holder)
-- KEYS[2]  inbox  hash  message id -> JSON delivery record
-- KEYS[3]  done   zset  message id -> delivered ms
-- KEYS[4]  stats  hash  counters
-- KEYS[5]  previews  hash  message id -> id of the message showing its streamed reply
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  message id
-- ARGV[3]  retention in ms
-- Returns: 1 when recorded, 0 when the caller no longer holds the lease.
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then
  return 0
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
if string.match(ARGV[1], '%p(%x*)/') ~= primary then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[4], 'delivered', 1)
return 1
