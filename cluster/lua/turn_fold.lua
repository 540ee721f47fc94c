-- Fold queued messages into a running turn (steer, collect), fenced by its lease.
--
-- The messages a turn may take in are the run of its session's pending jobs
-- right after it (by sequence) that carry the wanted mark in the folds hash,
-- stopping at the first that does not: a message queued plainly in between
-- keeps its place, so the session's order holds. Jobs already taken by this
-- turn (lease field "folded": the highest sequence taken) are skipped. Taking
-- only records that sequence on the lease: the jobs stay pending until the
-- turn's commit answers them with its reply (session_commit.lua), so a turn
-- that never commits (crash, cut-off, lost lease) leaves them to run as
-- turns of their own, in order.
--
-- KEYS[1]  lease    hash    the running turn's lease: token, folded
-- KEYS[2]  pending  zset    the session's pending job ids -> sequence
-- KEYS[3]  folds    hash    foldable job ids -> "s" (steer) | "c" .. arrival ms (collect)
-- ARGV[1]  fencing token of the caller
-- ARGV[2]  the running turn's job id
-- ARGV[3]  mark to take: "s" or "c"
-- ARGV[4]  take the run up to this sequence (0: only look)
-- ARGV[5]  look at most this many jobs
-- Returns: {1, now ms, own arrival ms or "", job id, sequence, arrival ms or "", ...}
--          the run (newly taken when ARGV[4] > 0); {0} lease lost; {2} the
--          turn's own job is not pending (nothing to fold into)
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return {0}
end
local own = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not own then
  return {2}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function arrival(mark)
  if mark and string.sub(mark, 1, 1) == 'c' then
    return string.sub(mark, 2)
  end
  return ''
end
local from = tonumber(redis.call('HGET', KEYS[1], 'folded') or own)
local upto = tonumber(ARGV[4])
local after = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. from, '+inf', 'WITHSCORES',
  'LIMIT', 0, tonumber(ARGV[5]))
local out = {1, now, arrival(redis.call('HGET', KEYS[3], ARGV[2]))}
local taken = 0
for i = 1, #after, 2 do
  local mark = redis.call('HGET', KEYS[3], after[i])
  if not mark or string.sub(mark, 1, 1) ~= ARGV[3] then
    break
  end
  local seq = tonumber(after[i + 1])
  if upto > 0 and seq > upto then
    break
  end
  out[#out + 1] = after[i]
  out[#out + 1] = seq
  out[#out + 1] = arrival(mark)
  taken = seq
end
if upto > 0 and taken > 0 then
  redis.call('HSET', KEYS[1], 'folded', taken)
end
return out
