-- Sticky owner lookup-or-assign for one session, in one atomic step.
-- Keep the current owner while it is eligible (live and not draining);
-- otherwise the proposed worker becomes owner and the epoch goes up by one.
--
-- KEYS[1]  owner     hash  fields: worker, epoch        (session slot)
-- KEYS[2]  owned     set   session keys the proposed worker owns
--                          (NOT on the session's slot: on Redis Cluster this
--                          index write must move out of the script)
-- ARGV[1]  session key (stored in the owned index)
-- ARGV[2]  proposed worker id (the ring's choice among the eligible)
-- ARGV[3..n] eligible worker ids
-- Returns: {owner worker id, epoch, moved (0|1)}
local current = redis.call('HGET', KEYS[1], 'worker')
if current then
  for i = 3, #ARGV do
    if ARGV[i] == current then
      local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
      return {current, epoch, 0}
    end
  end
end
redis.call('HSET', KEYS[1], 'worker', ARGV[2])
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('SADD', KEYS[2], ARGV[1])
return {ARGV[2], epoch, 1}
