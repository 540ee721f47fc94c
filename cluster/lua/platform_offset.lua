-- Store a bot's next getUpdates offset, only for the current holder of the
-- bot's lease (a deposed poller's confirmation never counts), and never
-- backwards.
--
-- KEYS[1]  lease   hash    fields: token, worker, fence (the holder)
-- KEYS[2]  offset  string  the next update id to ask Telegram for
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  the new offset (a whole number)
-- Returns: 1 when stored (or already past it), 0 when the caller no longer holds the lease.
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then
  return 0
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
if string.match(ARGV[1], '%p(%x*)/') ~= primary then
  return 0
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > current then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
