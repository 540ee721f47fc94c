-- Store a session's workspace snapshot, fenced by the running-turn lease (the
-- caller's token must be the lease's current token). Tokens only grow and the
-- lease holds the newest one, so a snapshot written under an older token (a
-- stale owner, a paused worker) can never replace a newer one. Ownership is not
-- checked: a draining worker hands a session's queued turns (and so its
-- ownership) on while a turn of it still runs there, and that turn's files
-- must reach the new owner, which cannot start a turn (and restore) before the
-- lease is released. A snapshot whose digest is already stored is not rewritten
-- (the caller reads the stored digest first and then does not send it at all).
--
-- KEYS[1]  lease      hash    fields: token, worker, fence
-- KEYS[2]  owner      hash    fields: worker, epoch
-- KEYS[3]  workspace  hash    digest, data, token, worker, epoch, at (Redis TIME, ms),
--                              files, bytes, omitted
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  caller's worker id
-- ARGV[3]  digest (hex SHA-256 of the uncompressed snapshot)
-- ARGV[4]  compressed snapshot
-- ARGV[5]  number of files and directories in it
-- ARGV[6]  uncompressed size in bytes
-- ARGV[7]  number of entries left out
-- Returns: {1, token} stored; {2, token} same digest already stored (nothing written);
--          {0, current token or "", or "failover" when granted on an earlier primary} lease lost (nothing written).
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
if redis.call('HGET', KEYS[3], 'digest') == ARGV[3] then
  return {2, current}
end
local epoch = redis.call('HGET', KEYS[2], 'epoch') or '0'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[3], 'digest', ARGV[3], 'data', ARGV[4], 'token', current,
  'worker', ARGV[2], 'epoch', epoch, 'at', now, 'files', ARGV[5], 'bytes', ARGV[6],
  'omitted', ARGV[7])
return {1, current}
