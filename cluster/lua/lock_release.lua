-- Release a lock string if it still holds the caller's token (compare-and-delete).
--
-- KEYS[1]  lock  string  the holder's token; expires after the lock TTL
-- ARGV[1]  the caller's token
-- Returns: 1 when released, 0 when the lock had expired or changed hands.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
