-- Take a lease if nobody holds it. The fencing token is the next value of
-- the counter (never reset), so tokens only grow and every older holder
-- fails the fenced scripts' check.
--
-- Failover: the lease is granted under the current primary's epoch, KEYS[3]
-- "N:replid", where replid is this primary's replication id (INFO, read
-- here, not taken from the caller). A primary whose replid is not the one in
-- KEYS[3] was promoted since the last grant: the epoch moves to N+1 under its
-- replid. The caller's fence is "N:replid/token": a promoted replica that
-- missed the newest grants (and re-issues their counter values) still issues
-- other fences, and a lease granted under another replid is void here.
--
-- KEYS[1]  lease  hash    fields: token, worker, fence; expires after the TTL
-- KEYS[2]  fence  string  the fencing counter
-- KEYS[3]  epoch  string  "N:replid" of the primary the last grant ran on
-- ARGV[1]  holder (worker id, or a gateway's id for a platform bot)
-- ARGV[2]  lease TTL in ms
-- Returns: {1, token, holder, fence} when acquired, {0, holder token, holder} when held.
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
local held = redis.call('HMGET', KEYS[1], 'token', 'worker', 'fence')
-- (A lease without a fence is an older version's: it counts as held.)
if held[1] and (not held[3] or string.match(held[3], '%p(%x*)/') == primary) then
  return {0, held[1], held[2] or ''}
end
local epoch = redis.call('GET', KEYS[3]) or ''
if string.match(epoch, '%p(%x*)$') ~= primary then
  epoch = (tonumber(string.match(epoch, '^%d+') or '0') + 1) .. ':' .. primary
  redis.call('SET', KEYS[3], epoch)
end
local token = redis.call('INCR', KEYS[2])
local fence = epoch .. '/' .. token
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', token, 'worker', ARGV[1], 'fence', fence)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, tostring(token), ARGV[1], fence}
