-- Accept one message: route its session and queue its turn job, in one
-- atomic step, so a job is never placed on the queue of a worker that is dead
-- or draining at that instant (nobody would drain that queue).
--
-- Routing: the current owner keeps the session while it is eligible (live
-- heartbeat by Redis TIME, state "active"). A session without an eligible
-- owner goes to the ring's proposal (epoch + 1). An eligible owner that is
-- not the ring's proposal gives the session up to it (lazy rebalance) only
-- between turns: no pending job, no lease, idle for the rebalance time.
-- The job is written only when the resulting owner is the worker whose
-- queue the caller passed; otherwise the caller is told whom to retry with.
--
-- A message id already answered is answered again from the stored reply
-- (pushed to its reply list here, no job); one whose job is still pending on
-- a live worker keeps its place; one stranded on a dead worker is reported
-- so the caller recovers that worker first.
--
-- Double texting (a turn of the session is running: its lease exists):
-- "enqueue" runs the message after it; "reject" refuses it (nothing written);
-- "interrupt" marks the running turn interrupted (lease field "interrupt",
-- announced on the events channel so its worker stops it at the next safe
-- point) and the message runs next at the running turn's depth + 1 (past
-- depth 3 it is queued without interrupting); "rollback" interrupts and the
-- running turn's messages are discarded at its commit; "stop" interrupts
-- and queues nothing. "steer" queues the message like "enqueue" and marks it
-- foldable ("s" in the folds hash) and, while a turn runs, tells that turn's
-- worker (event "steer"): the turn may take it in at its next safe point
-- (turn_fold.lua), else it runs as its own turn. "collect" queues it too and,
-- while a turn runs or messages wait, marks it "c" + arrival ms: the next
-- turn joins the run of such messages (after a debounce window).
--
-- KEYS[1]  owner     hash    session owner: worker, epoch, seq
-- KEYS[2]  pending   zset    session's pending job ids -> sequence
-- KEYS[3]  meta      hash    session meta (last_active, ms)
-- KEYS[4]  lease     hash    session running-turn lease
-- KEYS[5]  replies   hash    session message id -> msgpack reply
-- KEYS[6]  reply     list    this message's reply list
-- KEYS[7]  live      zset    worker id -> heartbeat expiry (ms)
-- KEYS[8]  state     hash    worker id -> active | draining
-- KEYS[9]  job       hash    the rq job hash
-- KEYS[10] queue     list    the target worker's rq queue
-- KEYS[11] owned     set     the target worker's owned-sessions index
-- KEYS[12] folds     hash    session's foldable job ids -> "s" | "c" .. arrival ms
-- ARGV[1]  session key
-- ARGV[2]  target worker id (whose queue is KEYS[10])
-- ARGV[3]  ring proposal among the active workers ("" when unknown)
-- ARGV[4]  rebalance idle time, ms (0: never move a session with an eligible owner)
-- ARGV[5]  message id
-- ARGV[6]  job id
-- ARGV[7]  reply TTL, ms
-- ARGV[8]  strategy: enqueue | interrupt | reject | rollback | stop | steer | collect
-- ARGV[9]  events channel name (a channel, not a key)
-- ARGV[10..n] rq job hash field, value pairs
-- Returns: {"queued", owner, epoch, seq, primary}
--          {"busy", holder worker, 0, 0, primary}     reject: a turn of the session runs
--          {"stopped", holder or "", 0, 0, primary}   stop: the running turn (if any) was told to stop
--          {"answered", "", 0, 0, primary}            stored reply pushed again
--          {"pending", worker, 0, 0, primary}         job still queued/running on a live worker
--          {"stranded", worker, 0, 0, primary}        job on a dead worker: recover it, then retry
--          {"reroute", worker, 0, 0, primary}         retry with this target ("" = no eligible proposal)
--          primary: the replication id of the server this ran on ("" where INFO is refused):
--          the caller's wait notices a failover that lost the message by it changing
--          (cluster/lost_messages.py)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local info = redis.pcall('INFO', 'replication')
local primary = type(info) == 'string' and string.match(info, 'master_replid%p(%x+)') or ''

local function live(w)
  local expiry = redis.call('ZSCORE', KEYS[7], w)
  return expiry and tonumber(expiry) > now
end
local function eligible(w)
  return w and w ~= '' and live(w) and redis.call('HGET', KEYS[8], w) == 'active'
end

local stored = redis.call('HGET', KEYS[5], ARGV[5])
if stored then
  if redis.call('LLEN', KEYS[6]) == 0 then
    redis.call('RPUSH', KEYS[6], stored)
    redis.call('PEXPIRE', KEYS[6], ARGV[7])
  end
  return {'answered', '', 0, 0, primary}
end

local status = redis.call('HGET', KEYS[9], 'status')
if status == 'queued' or status == 'started' then
  local holder = redis.call('HGET', KEYS[9], 'ac_worker') or ''
  if holder ~= '' and live(holder) then
    return {'pending', holder, 0, 0, primary}
  end
  return {'stranded', holder, 0, 0, primary}
end
if status then
  -- An earlier job of this id ended without a stored reply (it failed), so
  -- this submission runs it again.
  redis.call('DEL', KEYS[9])
  redis.call('ZREM', KEYS[2], ARGV[6])
end

local strategy = ARGV[8]
local running = redis.call('EXISTS', KEYS[4]) == 1
local depth = 0
local held = {}
if running then
  held = redis.call('HMGET', KEYS[4], 'worker', 'token', 'depth')
  if strategy == 'reject' then
    return {'busy', held[1] or '', 0, 0, primary}
  end
  local current_depth = tonumber(held[3] or '0')
  if strategy == 'stop' or strategy == 'rollback'
      or (strategy == 'interrupt' and current_depth < 3) then
    redis.call('HSET', KEYS[4], 'interrupt', strategy)
    redis.call('PUBLISH', ARGV[9], cjson.encode({type = 'interrupt', session = ARGV[1],
      token = tonumber(held[2]), worker = held[1], mode = strategy}))
    if strategy == 'interrupt' then
      depth = current_depth + 1
    end
  end
  if strategy == 'stop' then
    return {'stopped', held[1] or '', 0, 0, primary}
  end
elseif strategy == 'stop' then
  return {'stopped', '', 0, 0, primary}
end

local proposal = ARGV[3]
local current = redis.call('HGET', KEYS[1], 'worker')
local owner = nil
if eligible(current) then
  owner = current
  local idle_ms = tonumber(ARGV[4])
  if idle_ms > 0 and proposal ~= current and eligible(proposal)
      and redis.call('ZCARD', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[4]) == 0 then
    local last = tonumber(redis.call('HGET', KEYS[3], 'last_active') or '0')
    if now - last >= idle_ms then
      owner = nil
    end
  end
end

local epoch
if owner == nil then
  if not eligible(proposal) then
    return {'reroute', '', 0, 0, primary}
  end
  if proposal ~= ARGV[2] then
    return {'reroute', proposal, 0, 0, primary}
  end
  redis.call('HSET', KEYS[1], 'worker', proposal)
  epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('SADD', KEYS[11], ARGV[1])
  owner = proposal
else
  if owner ~= ARGV[2] then
    return {'reroute', owner, 0, 0, primary}
  end
  epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
end

local waiting = redis.call('ZCARD', KEYS[2]) > 0
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('DEL', KEYS[9])
for i = 10, #ARGV, 2 do
  redis.call('HSET', KEYS[9], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[9], 'status', 'queued', 'ac_worker', owner, 'ac_seq', seq, 'ac_depth', depth)
redis.call('RPUSH', KEYS[10], ARGV[6])
redis.call('ZADD', KEYS[2], seq, ARGV[6])
if strategy == 'steer' then
  redis.call('HSET', KEYS[12], ARGV[6], 's')
  redis.call('PEXPIRE', KEYS[12], ARGV[7])
  if running then
    redis.call('PUBLISH', ARGV[9], cjson.encode({type = 'steer', session = ARGV[1],
      token = tonumber(held[2]), worker = held[1]}))
  end
elseif strategy == 'collect' and (running or waiting) then
  redis.call('HSET', KEYS[12], ARGV[6], 'c' .. now)
  redis.call('PEXPIRE', KEYS[12], ARGV[7])
end
return {'queued', owner, epoch, seq, primary}
