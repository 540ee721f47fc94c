-- Take a session's running-turn lease if nobody holds it. The fencing token
-- is the next value of the session's counter (never reset), so tokens only
-- grow and every older holder fails the fenced scripts' check.
--
-- KEYS[1]  lease  hash    fields: token, worker; expires after the TTL
-- KEYS[2]  fence  string  the session's fencing counter
-- ARGV[1]  worker id
-- ARGV[2]  lease TTL in ms
-- Returns: {1, token, worker} when acquired, {0, holder token, holder worker} when held.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local held = redis.call('HMGET', KEYS[1], 'token', 'worker')
  return {0, held[1] or '', held[2] or ''}
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'token', token, 'worker', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, tostring(token), ARGV[1]}
