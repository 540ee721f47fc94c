-- Accept one platform delivery (a Telegram update, a Slack event) once,
-- whichever gateway receives it and however often: a message id already in
-- the inbox or already delivered is a duplicate.
--
-- KEYS[1]  inbox  hash  message id -> JSON delivery record
-- KEYS[2]  done   zset  message id -> delivered ms
-- KEYS[3]  stats  hash  counters
-- ARGV[1]  message id
-- ARGV[2]  JSON delivery record
-- Returns: 1 when accepted, 0 when it is a duplicate.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('HINCRBY', KEYS[3], 'duplicates', 1)
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'accepted', 1)
return 1
