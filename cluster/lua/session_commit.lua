-- Commit one turn of a session, fenced by the running-turn lease: append the
-- turn's messages, bump the turn count and last-active time, and remember
-- message id -> reply, take the turn's job off the session's pending set and
-- deliver the reply to the caller's reply list, all or nothing: a crash can
-- never leave a committed turn whose reply nobody will push. A message id
-- already processed writes nothing (a redelivered message is answered from
-- the stored reply).
-- "now" is Redis TIME (ms). Processed ids older than the retention are
-- forgotten, at most 100 per commit so one commit never does unbounded work.
--
-- KEYS[1]  lease      hash    fields: token, worker, fence
-- KEYS[2]  history    list    msgpack message per element
-- KEYS[3]  meta       hash    session_key, created, last_active, turns
-- KEYS[4]  processed  zset    message id -> commit time (ms)
-- KEYS[5]  replies    hash    message id -> msgpack reply
-- KEYS[6]  pending    zset    pending job ids -> sequence
-- KEYS[7]  reply      list    the message's reply list (the caller pops it); after
--                             the push a PUBLISH on the channel of the same name
--                             wakes the gateway waiting on it (Keyspace.wake_channel)
-- KEYS[8]  inflight   list    (optional, with KEYS[9..12]) the worker's in-flight job ids
-- KEYS[9]  started    zset    rq's started registry of the job's queue
-- KEYS[10] job        hash    the rq job
-- KEYS[11] finished   zset    rq's finished registry of the job's queue
-- KEYS[12] result     stream  rq's result records of the job
-- ARGV[1]  fence of the caller ("N:replid/token" from lease_acquire.lua / turn_begin.lua);
--          refused when the lease has another fence, or was granted on another
--          primary (a failover since: the replid in the fence is not this primary's)
-- ARGV[2]  message id
-- ARGV[3]  msgpack reply
-- ARGV[4]  retention of processed ids, ms
-- ARGV[5]  session key (stored in meta)
-- ARGV[6]  job id to take off the pending set ("" for none)
-- ARGV[7]  reply list TTL in ms (0: do not deliver)
-- ARGV[8]  msgpack reply for a rolled-back turn (used when the lease's
--          "interrupt" field says rollback: the turn's messages are discarded)
-- ARGV[9]  k: how many of the next arguments finish the job (0: KEYS[8..12] not given)
-- when k > 0 (else f is ARGV[10]):
-- ARGV[10] job id
-- ARGV[11] its started-registry member
-- ARGV[12] ended_at stamp (rq's format)
-- ARGV[13] result TTL in s
-- ARGV[14] finished-registry score
-- ARGV[15..9+k] rq result fields (name, value, ...)
-- ARGV[10+k] f: how many queued messages the turn folded in (steer, collect)
-- ARGV[11+k..10+k+3f] per folded message: message id, job id, msgpack reply
-- ARGV[11+k+3f..n] msgpack messages to append, in order
-- KEYS[8] (k = 0) or KEYS[13] (k > 0): folds  hash  the session's foldable job ids
-- the f keys after it: the folded messages' reply lists
--
-- A committed turn answers each folded message with its own reply, as if it
-- had run (processed, reply stored and delivered, off the pending set and the
-- folds hash), in the same step: a folded message is answered by this turn or
-- stays queued to run as its own, never both. A rolled-back turn folds
-- nothing (its messages are discarded; the folded ones run on their own).
-- The turn's own job id leaves the folds hash in any case.
--
-- With the job keys the turn ends here too (one round trip for the whole end
-- of a turn): the lease is released and the job completed in rq's format
-- (off the in-flight list and started registry, status finished, into the
-- finished registry, a result record), unless the lease was lost.
-- Returns: {1, turns, token} committed; {2, turns, token} duplicate message id
--          (nothing written); {3, turns, token} rolled back (only the message id
--          and the rollback reply recorded); {0, 0, current token or "", or "failover" when granted on an earlier primary} lease lost
--          (nothing written).
local held = redis.call('HMGET', KEYS[1], 'token', 'fence')
if held[2] ~= ARGV[1] then
  return {0, 0, held[1] or ''}
end
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''
if string.match(ARGV[1], '%p(%x*)/') ~= primary then
  return {0, 0, 'failover'}
end
local current = held[1]
local k = tonumber(ARGV[9])
local f = tonumber(ARGV[10 + k])
local folds_key = 8
if k > 0 then
  folds_key = 13
end
local first_message = 11 + k + 3 * f
local function finish_job()
  if k == 0 then
    return
  end
  redis.call('DEL', KEYS[1])
  local job_id = ARGV[10]
  redis.call('LREM', KEYS[8], 1, job_id)
  redis.call('ZREM', KEYS[9], ARGV[11])
  redis.call('HSET', KEYS[10], 'status', 'finished', 'ended_at', ARGV[12])
  redis.call('EXPIRE', KEYS[10], ARGV[13])
  redis.call('ZADD', KEYS[11], ARGV[14], job_id)
  local fields = {}
  for i = 15, 9 + k do
    fields[#fields + 1] = ARGV[i]
  end
  redis.call('XADD', KEYS[12], 'MAXLEN', 10, '*', unpack(fields))
  redis.call('EXPIRE', KEYS[12], ARGV[13])
end
if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1 then
  if ARGV[6] ~= '' then
    redis.call('ZREM', KEYS[6], ARGV[6])
  end
  finish_job()
  return {2, tonumber(redis.call('HGET', KEYS[3], 'turns') or '0'), current}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rolled_back = redis.call('HGET', KEYS[1], 'interrupt') == 'rollback'
local reply = ARGV[3]
local status = 1
if rolled_back then
  reply = ARGV[8]
  status = 3
else
  for i = first_message, #ARGV do
    redis.call('RPUSH', KEYS[2], ARGV[i])
  end
end
redis.call('HSETNX', KEYS[3], 'session_key', ARGV[5])
redis.call('HSETNX', KEYS[3], 'created', now)
redis.call('HSET', KEYS[3], 'last_active', now)
local turns
if rolled_back then
  turns = tonumber(redis.call('HGET', KEYS[3], 'turns') or '0')
else
  turns = redis.call('HINCRBY', KEYS[3], 'turns', 1)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - tonumber(ARGV[4])),
  'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZREM', KEYS[4], id)
end
redis.call('ZADD', KEYS[4], now, ARGV[2])
redis.call('HSET', KEYS[5], ARGV[2], reply)
if ARGV[6] ~= '' then
  redis.call('ZREM', KEYS[6], ARGV[6])
end
if tonumber(ARGV[7]) > 0 then
  redis.call('RPUSH', KEYS[7], reply)
  redis.call('PEXPIRE', KEYS[7], ARGV[7])
  redis.call('PUBLISH', KEYS[7], '')
end
redis.call('HDEL', KEYS[folds_key], ARGV[6])
if not rolled_back then
  for i = 1, f do
    local at = 10 + k + 3 * (i - 1)
    local folded_id, folded_job, folded_reply = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
    redis.call('ZADD', KEYS[4], now, folded_id)
    redis.call('HSET', KEYS[5], folded_id, folded_reply)
    redis.call('ZREM', KEYS[6], folded_job)
    redis.call('HDEL', KEYS[folds_key], folded_job)
    local list = folds_key + i
    if tonumber(ARGV[7]) > 0 then
      redis.call('RPUSH', KEYS[list], folded_reply)
      redis.call('PEXPIRE', KEYS[list], ARGV[7])
    end
  end
end
finish_job()
return {status, turns, current}
