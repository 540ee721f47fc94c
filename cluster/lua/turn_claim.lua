-- Claim turn jobs for a worker in one round trip: move up to ARGV[1] job ids
-- from the front of its queue to its in-flight list (stopping at the first
-- empty pop, so an idle queue costs one command, not a storm of empty ones),
-- read each job and mark it started in rq's format (status, started registry).
-- Ids a blocking pop already moved to the in-flight list come in ARGV[9..];
-- with ARGV[8] = "1" the script runs right behind a blocking pop in the same
-- pipeline and first claims the in-flight list's tail when the pop put a job
-- there: its status is still "queued" (every claimed job is "started"), so a
-- pop that timed out claims nothing extra. A wake token (put there to end a
-- blocking pop) is dropped, not claimed. A job whose hash is gone is returned
-- without data and not marked: the caller dead-letters it.
--
-- Keys not in KEYS: the job hashes (rq's "rq:job:" .. id). Which ids are
-- claimed is only known inside the script (they are popped here), so their
-- keys cannot be declared up front; the script derives them from the key
-- prefix ARGV[2] and nothing else. rq's keys carry no hash tag, so this script
-- (like rq) runs on a single Redis, not on Redis Cluster (cluster/transport.py).
--
-- KEYS[1]  queue     list  the worker's rq queue
-- KEYS[2]  inflight  list  the worker's in-flight job ids
-- KEYS[3]  started   zset  rq's started registry of the queue
-- ARGV[1]  most ids to move from the queue
-- ARGV[2]  key prefix: rq's job hashes, ARGV[2] .. id ("rq:job:")
-- ARGV[3]  started_at stamp (rq's format)
-- ARGV[4]  started-registry score (when rq would call the claim abandoned)
-- ARGV[5]  worker name
-- ARGV[6]  execution id prefix of this claim (each job's is prefix .. "-" .. n)
-- ARGV[7]  the wake token
-- ARGV[8]  "1": claim the in-flight tail a blocking pop just put there (see above)
-- ARGV[9..n] ids already on the in-flight list
-- Returns: a flat list, five entries per claimed id:
--          id, execution id, data or nil, sequence or nil, interrupt depth or nil
local out = {}
local n = 0
local function claim(id)
  if id == ARGV[7] then
    redis.call('LREM', KEYS[2], 0, id)
    return
  end
  n = n + 1
  local execution = ARGV[6] .. '-' .. n
  local fields = redis.call('HMGET', ARGV[2] .. id, 'data', 'ac_seq', 'ac_depth')
  if fields[1] then
    redis.call('HSET', ARGV[2] .. id, 'status', 'started', 'started_at', ARGV[3],
      'last_heartbeat', ARGV[3], 'worker_name', ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[4], id .. ':' .. execution)
  end
  out[#out + 1] = id
  out[#out + 1] = execution
  out[#out + 1] = fields[1]
  out[#out + 1] = fields[2]
  out[#out + 1] = fields[3]
end
if ARGV[8] == '1' then
  local tail = redis.call('LINDEX', KEYS[2], -1)
  if tail and (tail == ARGV[7] or redis.call('HGET', ARGV[2] .. tail, 'status') == 'queued') then
    claim(tail)
  end
end
for i = 9, #ARGV do
  claim(ARGV[i])
end
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then
    break
  end
  claim(id)
end
return out
