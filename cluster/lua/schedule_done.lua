-- A claimed firing's turn is enqueued (or its schedule was cancelled): drop
-- the firing; a schedule with no firing left (a one-shot that fired, a cron
-- that never fires again) is deleted with its index entry.
--
-- KEYS[1]  firing    zset    claimed firing "ID:MS" -> claim deadline (ms)
-- KEYS[2]  due       zset    schedule id -> next firing (ms)
-- KEYS[3]  schedule  hash    the firing's schedule
-- KEYS[4]  index     set     the session's schedule ids
-- ARGV[1]  the firing, "ID:MS"
-- ARGV[2]  schedule id
-- Returns: 1 the firing was pending and is now done, 0 it was not pending
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('DEL', KEYS[3])
  redis.call('SREM', KEYS[4], ARGV[2])
end
return removed
