-- Start a claimed turn: check that it may run here and now, then take the
-- session's running-turn lease, in one atomic step.
--
-- A turn runs only on the session's owner (a job left on a worker the
-- session moved away from is handed on), only when its job is the lowest
-- sequence among the session's pending jobs (the session's earlier messages,
-- wherever they are, run first), and only when no other worker holds the
-- lease. A lease still held by this same worker is a leftover of a turn of
-- this worker that was cut off (the worker runs one turn per session at a
-- time), so it is taken over at once instead of waiting out its TTL. A lease
-- granted on another primary (before a failover) is void: see lease_acquire.lua
-- for the epoch KEYS[8] and the fence "N:replid/token".
--
-- KEYS[1]  lease    hash    fields: token, worker, fence, depth; expires after the TTL
-- KEYS[2]  fence    string  the session's fencing counter
-- KEYS[3]  owner    hash    fields: worker, epoch, seq
-- KEYS[4]  pending  zset    pending job ids -> sequence
-- KEYS[5]  replies  hash    message id -> msgpack reply
-- KEYS[6]  meta     hash    the session's meta (its committed turn count)
-- KEYS[7]  workspace hash   the session's workspace snapshot (its digest)
-- KEYS[8]  epoch    string  "N:replid" of the primary the session's last grant ran on
-- ARGV[1]  worker id
-- ARGV[2]  lease TTL in ms
-- ARGV[3]  job id
-- ARGV[4]  message id
-- ARGV[5]  interrupt depth of the turn (kept on the lease for double texting)
-- Returns: {1, token, "", turns, digest, fence}  acquired; turns: the session's
--          committed turns; digest: its stored workspace snapshot's ("" when none)
--          {0, holder token, holder worker}  another worker holds the lease
--          {2, "", ""}             already answered (reply stored): nothing to run
--          {3, owner or "", ""}    the session is owned by another worker: hand the job on
--          {4, head job id, ""}    an earlier message of the session must run first
--          {5, "", ""}             the job is not pending any more (answered or dropped)
if redis.call('HEXISTS', KEYS[5], ARGV[4]) == 1 then
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {2, '', ''}
end
local owner = redis.call('HGET', KEYS[3], 'worker')
if owner ~= ARGV[1] then
  return {3, owner or '', ''}
end
local head = redis.call('ZRANGE', KEYS[4], 0, 0)
if head[1] == nil or redis.call('ZSCORE', KEYS[4], ARGV[3]) == false then
  return {5, '', ''}
end
if head[1] ~= ARGV[3] then
  return {4, head[1], ''}
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
local held = redis.call('HMGET', KEYS[1], 'token', 'worker', 'fence')
if held[1] and held[2] ~= ARGV[1]
    and (not held[3] or string.match(held[3], '%p(%x*)/') == primary) then
  return {0, held[1], held[2] or ''}
end
local epoch = redis.call('GET', KEYS[8]) or ''
if string.match(epoch, '%p(%x*)$') ~= primary then
  epoch = (tonumber(string.match(epoch, '^%d+') or '0') + 1) .. ':' .. primary
  redis.call('SET', KEYS[8], epoch)
end
local token = redis.call('INCR', KEYS[2])
local fence = epoch .. '/' .. token
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', token, 'worker', ARGV[1], 'depth', ARGV[5], 'fence', fence)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, tostring(token), '', tostring(redis.call('HGET', KEYS[6], 'turns') or '0'),
  redis.call('HGET', KEYS[7], 'digest') or '', fence}
