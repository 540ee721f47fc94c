-- Reset a session (/new, /reset, /clear), fenced by the running-turn lease:
-- delete its history, frozen prompt, meta, processed ids, stored replies, tool
-- state and workspace snapshot, then record the reset message as answered and deliver its
-- reply, all or nothing. The owner record, the lease and the fencing counter
-- are kept, so tokens stay monotonic across resets.
--
-- KEYS[1]  lease      hash    fields: token, worker, fence
-- KEYS[2]  history    list
-- KEYS[3]  prompt     string
-- KEYS[4]  meta       hash
-- KEYS[5]  processed  zset    message id -> commit time (ms)
-- KEYS[6]  replies    hash    message id -> msgpack reply
-- KEYS[7]  tools      hash    tool state
-- KEYS[8]  pending    zset    pending job ids -> sequence
-- KEYS[9]  reply      list    the reset message's reply list; after the push a
--                             PUBLISH on the channel of the same name wakes the
--                             gateway waiting on it (Keyspace.wake_channel)
-- KEYS[10] workspace  hash    the workspace snapshot
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  message id of the reset command
-- ARGV[3]  msgpack reply
-- ARGV[4]  job id to take off the pending set
-- ARGV[5]  reply list TTL in ms
-- Returns: {1, token} reset; {0, current token or "", or "failover" when granted on an earlier primary} lease lost (nothing written).
local held = redis.call('HMGET', KEYS[1], 'token', 'fence')
if held[2] ~= ARGV[1] then
  return {0, held[1] or ''}
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
if string.match(ARGV[1], '%p(%x*)/') ~= primary then
  return {0, 'failover'}
end
local current = held[1]
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[10])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[5], now, ARGV[2])
redis.call('HSET', KEYS[6], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[8], ARGV[4])
redis.call('RPUSH', KEYS[9], ARGV[3])
redis.call('PEXPIRE', KEYS[9], ARGV[5])
redis.call('PUBLISH', KEYS[9], '')
return {1, current}
